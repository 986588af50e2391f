"""RegLoRA (the regulariser of SEFE, Chen et al., ICML 2025): keep each new LoRA off the weight
positions that earlier tasks changed most.

Each task trains a fresh LoRA on the model with every earlier task's LoRA merged in, and is merged
after it (`MergedPerTaskSlots`). After task t, every adapted linear records the positions of the
top `top_fraction` of |B_t A_t| (2%), kept as a union over tasks. While a later task trains, the
loss adds

    reg_weight * mean over adapted linears of ( mean of |B A| at the recorded positions )

for its own B A, unscaled by alpha / r (as published), so the new update leaves the entries that
carry the earlier tasks alone. The weight is published for LLaVA-1.5-7B's widths, where an entry of
an update of a given size relative to W is smaller: each linear's mean is measured in units of its
Kaiming std relative to the published width's (`hide.models.translation`), so the same relative
update costs the same at every width. Inference: the single merged model. (SEFE's other part, rewriting
the answers of the training data into a common style, changes the data, not the training, and is
not run here, as in MCITlib.)

Args (besides the LoRA ones of `ContinualMethod`):
    reg_weight: the penalty's weight (2500 published).
    top_fraction: share of each linear's entries recorded per task (0.02 published).
"""

from __future__ import annotations

import math

import torch

from hide.errors import ConfigError
from hide.methods.base import MergedPerTaskSlots
from hide.models.translation import entry_factor


def top_positions(update: torch.Tensor, fraction: float) -> torch.Tensor:
    """A boolean mask of the ceil(fraction * numel) entries of largest |update|."""
    flat = update.detach().abs().flatten()
    k = min(flat.numel(), max(1, math.ceil(fraction * flat.numel())))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(k).indices] = True
    return mask.view_as(update)


def recorded_position_penalty(updates: list[torch.Tensor], masks: list[torch.Tensor],
                              entry_units: list[float] | None = None) -> torch.Tensor:
    """Mean over linears of the mean |update| at each linear's recorded positions, each divided by
    its linear's `entry_units` (how much larger an entry of the same relative size is there than
    where the weight was published; 1 when not given)."""
    units = entry_units or [1.0] * len(updates)
    terms = [update.abs()[mask].mean() / unit for update, mask, unit in zip(updates, masks, units)]
    return torch.stack(terms).mean()


class RegLoRA(MergedPerTaskSlots):
    name = "reglora"

    def __init__(self, reg_weight: float = 2500.0, top_fraction: float = 0.02, **lora):
        super().__init__(**lora)
        if reg_weight < 0 or not 0 < top_fraction <= 1:
            raise ConfigError(f"method.reg_weight must be >= 0 and method.top_fraction in (0, 1]; "
                              f"got {reg_weight}, {top_fraction}")
        self.reg_weight = reg_weight
        self.top_fraction = top_fraction
        # adapted linear -> union of the tasks' top positions: a boolean per weight entry, kept on the
        # weight's device (about 6.5 G booleans at 7B; the penalty reads them at every step)
        self.recorded: dict[str, torch.Tensor] = {}

    def extra_loss(self, module, batch: dict, outputs) -> torch.Tensor | None:
        if not self.recorded or self.reg_weight == 0:
            return None
        names = list(self.recorded)
        updates = [self.adapters[n].lora_B[self.current] @ self.adapters[n].lora_A[self.current] for n in names]
        for name, update in zip(names, updates):
            if self.recorded[name].device != update.device:  # once, after a resume loaded them on the CPU
                self.recorded[name] = self.recorded[name].to(update.device)
        units = [entry_factor(n, self.adapters[n].base.in_features, self.published_fan_in) for n in names]
        return self.reg_weight * recorded_position_penalty(updates, [self.recorded[n] for n in names], units)

    @torch.no_grad()
    def on_task_end(self, module, task_index: int, train_loader) -> None:
        for name, layer in self.adapters.items():
            top = top_positions(layer.lora_B[task_index] @ layer.lora_A[task_index], self.top_fraction)
            self.recorded[name] = top | self.recorded[name] if name in self.recorded else top

    def state_dict(self) -> dict:
        return {"recorded": {name: mask.cpu() for name, mask in self.recorded.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.recorded = state["recorded"]
