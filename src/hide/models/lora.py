"""LoRA adapter layers (the math) and their injection into a language model (where they go).

`LoRALinear` holds one (A, B) pair per expert slot so that methods that add an expert per task
(HiDe, O-LoRA) and methods with one adapter (sequential LoRA) share one layer class:

    y = W x + s * B_k A_k dropout(x),   s = alpha / rank,   k = the active slot.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """A frozen linear layer plus `num_slots` low-rank experts, one of which is active.

    `init_std`: A ~ N(0, init_std^2) (HiDe's published init uses 0.01); None gives the
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
        return self.base(x) + self.delta(x, self.active_slot)


def inject_lora(language_model: nn.Module, make_layer, targets=LLAMA_LINEARS,
                layers: list[int] | None = None) -> dict[str, nn.Module]:
    """Replace every target linear of the decoder layers (all, or the given layer indices) by
    `make_layer(linear, layer_index)`. Returns {qualified name: new module}."""
    pattern = re.compile(r"layers\.(\d+)\..*\.(" + "|".join(targets) + r")$")
    replaced: dict[str, nn.Module] = {}
    for name, module in list(language_model.named_modules()):
        match = pattern.search(name)
        if not match or not isinstance(module, nn.Linear):
            continue
        layer_index = int(match.group(1))
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
