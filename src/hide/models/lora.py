"""LoRA adapter layers (the math) and their injection into a language model (where they go).

`LoRALinear` holds one (A, B) pair per expert slot, so that methods that add an expert per task
and methods with one adapter (sequential LoRA) share one layer class:

    y = W x + s * B_k A_k dropout(x),   s = alpha / rank,   k = the active slot.

`MergedSlotsLoRALinear` adds the earlier tasks' frozen slots to every output (a LoRA merged per
task). `MoELoRALinear` is CoIN's MoELoRA: the rank split over experts mixed per token by a softmax
router. HiDe's expert layer, which routes and fuses the experts, is HiDe's own
(`hide.methods.hide_experts`). Every adapter layer is an `AdapterLayer`.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager

import torch
from torch import nn


class AdapterLayer(nn.Module):
    """What every adapter layer is: a frozen `base` layer plus a trained update, and a `disabled`
    flag that makes it the base layer alone (`adapters_disabled`). A new layer class subclasses it."""

    disabled: bool = False


class LoRALinear(AdapterLayer):
    """A frozen linear layer plus `num_slots` low-rank experts, one of which is active.

    `init_std`: A ~ N(0, init_std^2) (a method's published init, carried to this layer's width by
    `hide.models.translation`); None gives the Kaiming-uniform init of nn.Linear (and of peft),
    which scales with the input width.
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


def inject_lora(language_model: nn.Module, make_layer, targets: tuple[str, ...],
                layers: list[int] | None = None) -> dict[str, nn.Module]:
    """Replace every target linear of the decoder layers (all, or the given layer indices) by
    `make_layer(linear, name)` (its qualified name). Returns {qualified name: new module}."""
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
        new = make_layer(module, name)
        setattr(parent, child, new)
        replaced[name] = new
    if not replaced:
        raise ValueError(f"No linear layer named one of {targets} found in the language model")
    return replaced
