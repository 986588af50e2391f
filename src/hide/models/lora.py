"""LoRA adapter layers (the math) and their injection into a language model (where they go).

`LoRALinear` holds one (A, B) pair per expert slot, so that methods that add an expert per task
and methods with one adapter (sequential LoRA) share one layer class:

    y = W x + s * B_k A_k dropout(x),   s = alpha / rank,   k = the active slot.

`MergedSlotsLoRALinear` adds the earlier tasks' frozen slots to every output (a LoRA merged per
task). `MoELoRALinear` is CoIN's MoELoRA: the rank split over experts mixed per token by a softmax
router. `MultiExpertLoRALinear` adds two inference modes over the trained experts:

    routed:  y = W x + s * sum_t w_t B_t A_t x   (w: one row per sample)
    fused:   y = W x + s * B_f A_f x             (`fuse_experts`)
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class AdapterLayer(nn.Module):
    """What every adapter layer is: a frozen `base` layer plus a trained update, and a `disabled`
    flag that makes it the base layer alone (`adapters_disabled`). A new layer class subclasses it."""

    disabled: bool = False


class LoRALinear(AdapterLayer):
    """A frozen linear layer plus `num_slots` low-rank experts, one of which is active.

    `init_std`: A ~ N(0, init_std^2) (0.01 in the per-task-expert method's publication); None gives the
    Kaiming-uniform init of nn.Linear (and of peft), which scales with the input width.
    B starts at zero, so a fresh expert leaves the layer's output unchanged.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, num_slots: int = 1,
                 dropout: float = 0.0, init_std: float | None = None):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        self.init_std = init_std
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        dtype, device = base.weight.dtype, base.weight.device
        self.lora_A = nn.ParameterList(
            nn.Parameter(torch.empty(rank, base.in_features, dtype=dtype, device=device)) for _ in range(num_slots)
        )
        self.lora_B = nn.ParameterList(
            nn.Parameter(torch.zeros(base.out_features, rank, dtype=dtype, device=device)) for _ in range(num_slots)
        )
        for slot in range(num_slots):
            self.reset_slot(slot)
        self.active_slot = 0
        self.disabled = False  # see `adapters_disabled`

    @property
    def num_slots(self) -> int:
        return len(self.lora_A)

    def reset_slot(self, slot: int) -> None:
        with torch.no_grad():
            if self.init_std is None:
                nn.init.kaiming_uniform_(self.lora_A[slot], a=math.sqrt(5))
            else:
                nn.init.normal_(self.lora_A[slot], std=self.init_std)
            self.lora_B[slot].zero_()

    def delta(self, x: torch.Tensor, slot: int) -> torch.Tensor:
        """s * B_slot A_slot dropout(x): the expert's contribution to the output."""
        return self.scale * (self.dropout(x) @ self.lora_A[slot].T @ self.lora_B[slot].T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.disabled:
            return self.base(x)
        return self.base(x) + self.delta(x, self.active_slot)

    def low_rank_update(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """(A, B, s) with y = W x + s B A x at evaluation: what exports write as one LoRA or fold
        into W. None when no single low-rank product gives the layer's output (a per-sample or
        per-token mixture)."""
        return self.lora_A[self.active_slot].detach(), self.lora_B[self.active_slot].detach(), self.scale


class MergedSlotsLoRALinear(LoRALinear):
    """A `LoRALinear` whose `merged_slots` (earlier tasks' frozen experts) add to every output, as
    if merged into W, while the active slot trains:

        y = W x + s B_k A_k dropout(x) + s sum_{j in merged} B_j A_j x

    The methods that merge each task's LoRA into the model (O-LoRA, RegLoRA, KeepLoRA) keep the
    merged experts in this low-rank form rather than adding them into W: checkpoints and exports
    then store adapters, never a copy of W, and the result is W + sum_j s B_j A_j all the same."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.merged_slots: list[int] = []

    def low_rank_update(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Every slot in use concatenated: s [B_1 .. B_k] [A_1; ..; A_k] = s sum_j B_j A_j."""
        slots = [*self.merged_slots, self.active_slot]
        return (torch.cat([self.lora_A[j].detach() for j in slots]),
                torch.cat([self.lora_B[j].detach() for j in slots], dim=1), self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.disabled:
            return out
        for slot in self.merged_slots:  # no dropout, no gradient wanted
            out = out + self.scale * (x @ self.lora_A[slot].T @ self.lora_B[slot].T)
        return out


class MoELoRALinear(AdapterLayer):
    """CoIN's MoELoRA: the rank split over `num_experts` experts of rank rank / num_experts, mixed
    per token by a softmax router on the layer input; router and every expert train on every task:

        y = W x + s * sum_e g_e(x) B_e A_e dropout(x),   g(x) = softmax(R x),   s = alpha / rank.

    With the same `rank` its experts hold exactly the parameters of one rank-`rank` LoRA; the
    router adds num_experts x d_in."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, num_experts: int, dropout: float = 0.0,
                 init_std: float | None = None):
        super().__init__()
        if num_experts < 1 or rank % num_experts:
            raise ValueError(f"rank {rank} must split evenly over num_experts={num_experts}")
        self.base = base
        self.rank = rank
        self.num_experts = num_experts
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        dtype, device = base.weight.dtype, base.weight.device
        expert_rank = rank // num_experts
        self.lora_A = nn.Parameter(torch.empty(num_experts, expert_rank, base.in_features, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(num_experts, base.out_features, expert_rank, dtype=dtype, device=device))
        self.router = nn.Linear(base.in_features, num_experts, bias=False, dtype=dtype, device=device)
        with torch.no_grad():
            if init_std is None:  # Kaiming-uniform per expert, as one nn.Linear of its rank would get
                for e in range(num_experts):
                    nn.init.kaiming_uniform_(self.lora_A[e], a=math.sqrt(5))
            else:
                nn.init.normal_(self.lora_A, std=init_std)
        self.disabled = False

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token expert weights (..., num_experts), each row summing to 1."""
        return torch.softmax(self.router(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.disabled:
            return self.base(x)
        hidden = torch.einsum("...i,eri->...er", self.dropout(x), self.lora_A)
        hidden = hidden * self.gates(x).unsqueeze(-1)
        return self.base(x) + self.scale * torch.einsum("...er,eor->...o", hidden, self.lora_B)

    def low_rank_update(self) -> None:
        return None  # the router mixes the experts per token


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


@contextmanager
def adapters_disabled(model: nn.Module):
    """Within the block every adapter layer of `model` is its frozen base layer (e.g. to encode
    with the base language model while its adapters hold trained experts)."""
    layers = [m for m in model.modules() if isinstance(m, AdapterLayer)]
    previous = [m.disabled for m in layers]
    for layer in layers:
        layer.disabled = True
    try:
        yield
    finally:
        for layer, state in zip(layers, previous):
            layer.disabled = state


def decoder_layer_index(name: str) -> int:
    """The decoder layer of a qualified module name ("...layers.3.mlp.up_proj" -> 3)."""
    match = re.search(r"layers\.(\d+)\.", name)
    if match is None:
        raise ValueError(f"{name!r} is not inside a decoder layer")
    return int(match.group(1))


def inject_lora(language_model: nn.Module, make_layer, targets=LLAMA_LINEARS,
                layers: list[int] | None = None) -> dict[str, nn.Module]:
    """Replace every target linear of the decoder layers (all, or the given layer indices) by
    `make_layer(linear, layer_index)`. Returns {qualified name: new module}."""
    pattern = re.compile(r"layers\.\d+\..*\.(" + "|".join(targets) + r")$")
    replaced: dict[str, nn.Module] = {}
    for name, module in list(language_model.named_modules()):
        match = pattern.search(name)
        if not match or not isinstance(module, nn.Linear):
            continue
        layer_index = decoder_layer_index(name)
        if layers is not None and layer_index not in layers:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = language_model.get_submodule(parent_name)
        new = make_layer(module, layer_index)
        setattr(parent, child, new)
        replaced[name] = new
    if not replaced:
        raise ValueError(f"No linear layer named one of {targets} found in the language model")
    return replaced
