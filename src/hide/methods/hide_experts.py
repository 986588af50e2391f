"""HiDe's expert layer: a `LoRALinear` with one expert per task and two inference modes over the
trained experts,

    routed:  y = W x + s * sum_t w_t B_t A_t x   (w: one row per sample; the task-specific layers)
    fused:   y = W x + s * B_f A_f x             (`fuse_experts`; every other layer)

and `routed_by`, which sets the routing for one call. `hide.methods.hide` uses them.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from hide.models.lora import LoRALinear

FUSION_RULES = ("sum_ab", "sum_ba", "mean")


def fuse_experts(A: list[torch.Tensor], B: list[torch.Tensor], rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One low-rank pair (A_f, B_f) whose product B_f A_f is the fused update of experts 1..T:

        sum_ab: (sum_i B_i)(sum_j A_j)        the published rule, cross terms B_i A_j included
        sum_ba: sum_i B_i A_i                 no cross terms (A_f, B_f concatenate the experts: rank T*r)
        mean:   (sum_i B_i / T)(sum_j A_j / T)

    Kept low-rank rather than as a d_out x d_in matrix so that a 7B model's fused layers cost
    no more memory than its adapters."""
    if rule not in FUSION_RULES:
        raise ValueError(f"fusion rule {rule!r}; choose one of {FUSION_RULES}")
    if not A:
        raise ValueError("fuse_experts needs at least one expert")
    if rule == "sum_ba":
        return torch.cat(list(A), dim=0), torch.cat(list(B), dim=1)
    A_sum, B_sum = torch.stack(list(A)).sum(0), torch.stack(list(B)).sum(0)
    if rule == "mean":
        return A_sum / len(A), B_sum / len(B)
    return A_sum, B_sum


class MultiExpertLoRALinear(LoRALinear):
    """A `LoRALinear` with one expert per task and three modes:

    - `use_single(slot)`: training (and the default): only that expert, `LoRALinear.forward`;
    - `use_routed(slots)` + `set_routing_weights(w)`: per-sample mixture of the trained experts,
      w of shape (batch, len(slots)), rows summing to 1. Experts whose column is all zero are
      skipped, so a one-hot row gives exactly the single expert's output;
    - `use_fused(slots, rule, fold)`: the trained experts fused by `fuse_experts`; with `fold`
      the update is added into a copy of W once, so a forward costs one matmul.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mode = "single"
        self.fusion = "sum_ab"  # the fused mode's rule (`use_fused`)
        self.slots: list[int] = []
        self.routing_weights: torch.Tensor | None = None
        self._weighted_columns: list[int] = []  # columns of routing_weights with any non-zero weight
        self._stacked: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # dense mixtures
        # The fused pair and the folded weight are buffers, not plain attributes: they are made
        # between stages, where Lightning has moved the model back to the CPU, and must follow the
        # model onto the GPU (and into its dtype) for evaluation. Not saved: rebuilt from the experts.
        self.register_buffer("_fused_A", None, persistent=False)
        self.register_buffer("_fused_B", None, persistent=False)
        self.register_buffer("_folded_weight", None, persistent=False)

    def use_single(self, slot: int) -> None:
        self.mode, self.active_slot = "single", slot
        self.slots, self.routing_weights = [slot], None
        self._fused_A = self._fused_B = self._folded_weight = None

    def use_routed(self, slots: list[int]) -> None:
        self.mode, self.slots, self.routing_weights = "routed", list(slots), None
        self._fused_A = self._fused_B = self._folded_weight = self._stacked = None

    def set_routing_weights(self, weights: torch.Tensor | None) -> None:
        if weights is not None and weights.shape[-1] != len(self.slots):
            raise ValueError(f"routing weights have {weights.shape[-1]} columns for {len(self.slots)} experts")
        self.routing_weights = weights
        # once per batch, not in every forward of every generated token
        self._weighted_columns = [] if weights is None else torch.any(weights != 0, dim=0).nonzero().flatten().tolist()
        self._stacked = None
        if weights is not None and not bool(((weights == 0) | (weights == 1)).all()):
            # a dense mixture: every expert in two matmuls over the stacked ranks, not two per expert
            # (one-hot rows keep the per-expert path, so that they equal the single expert exactly)
            A = torch.cat([self.lora_A[self.slots[c]] for c in self._weighted_columns])        # (E r, d_in)
            B = torch.cat([self.lora_B[self.slots[c]] for c in self._weighted_columns], dim=1)  # (d_out, E r)
            rank_weights = weights[:, self._weighted_columns].repeat_interleave(self.rank, dim=1)  # (batch, E r)
            self._stacked = (A.detach(), B.detach(), rank_weights * self.scale)

    @torch.no_grad()
    def use_fused(self, slots: list[int], rule: str = "sum_ab", fold: bool = False) -> None:
        self.mode, self.slots, self.routing_weights, self.fusion = "fused", list(slots), None, rule
        self._fused_A = self._fused_B = self._folded_weight = None
        if not slots:
            return
        A_f, B_f = self.fused_pair()
        if fold:
            self._folded_weight = self.base.weight + self.scale * (B_f @ A_f)
        else:
            self._fused_A, self._fused_B = A_f, B_f

    def fused_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        return fuse_experts([self.lora_A[i].detach() for i in self.slots],
                            [self.lora_B[i].detach() for i in self.slots], self.fusion)

    def low_rank_update(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        if self.mode == "single":
            return super().low_rank_update()
        if self.mode == "fused" and self.slots:
            return (*self.fused_pair(), self.scale)
        if not self.slots:  # no expert trained yet: W itself
            return torch.zeros_like(self.lora_A[0]).detach(), torch.zeros_like(self.lora_B[0]).detach(), self.scale
        if len(self.slots) == 1:  # routed to one expert: its weight is 1 for every sample
            return self.lora_A[self.slots[0]].detach(), self.lora_B[self.slots[0]].detach(), self.scale
        return None  # routed: a per-sample mixture

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "single" or self.disabled:
            return super().forward(x)
        if self.mode == "fused":
            if self._folded_weight is not None:
                return F.linear(x, self._folded_weight, self.base.bias)
            out = self.base(x)
            if self._fused_A is not None:
                out = out + self.scale * (x @ self._fused_A.T @ self._fused_B.T)
            return out
        out = self.base(x)
        if not self.slots:
            return out
        weights = self.routing_weights
        if weights is None:
            raise RuntimeError("routed mode needs set_routing_weights(w) before the forward")
        if weights.shape[0] != x.shape[0]:
            raise ValueError(f"routing weights for {weights.shape[0]} samples, input batch of {x.shape[0]}")
        if self._stacked is not None:
            A, B, rank_weights = self._stacked
            hidden = self.dropout(x) @ A.T.to(x.dtype)  # (batch, ..., E r)
            hidden = hidden * rank_weights.to(x.dtype).view(x.shape[0], *([1] * (x.dim() - 2)), -1)
            return out + hidden @ B.T.to(x.dtype)
        per_sample = weights.to(x.dtype).view(weights.shape[0], *([1] * (x.dim() - 1)), weights.shape[1])
        for column in self._weighted_columns:
            out = out + per_sample[..., column] * self.delta(x, self.slots[column])
        return out


@contextmanager
def routed_by(layers, weights: torch.Tensor):
    """Within the block the routed `layers` mix their experts by `weights` (one row per sample);
    after it they hold the routing they had before (none, outside a call): routing lasts one
    call, it is not state a layer keeps."""
    layers = list(layers)
    previous = [layer.routing_weights for layer in layers]
    for layer in layers:
        layer.set_routing_weights(weights)
    try:
        yield
    finally:
        for layer, weights_before in zip(layers, previous):
            layer.set_routing_weights(weights_before)
