"""O-LoRA (Wang et al., 2023): orthogonal subspaces for continual learning.

Each task gets a fresh LoRA slot in every language-model linear; earlier slots are frozen and stay
in the forward pass (as if merged into W). While task t trains, the loss adds

    lambda * sum over adapted linears, j < t of  sum |A_t A_j^T|     (L1 of the r x r product)

which pushes the new expert's input subspace (the rows of A_t) away from the earlier ones, so
that its update disturbs what they read less. Inference uses every trained slot.

Args (besides the LoRA ones of `ContinualMethod`):
    orthogonal_weight: lambda (the official coefficient is 0.05).
"""

from __future__ import annotations

import torch

from hide.methods.base import ContinualMethod
from hide.errors import ConfigError
from hide.models.lora import LoRALinear


class OLoRALinear(LoRALinear):
    """A `LoRALinear` whose `merged_slots` (the earlier tasks' frozen experts) add to every output,
    as if merged into W: y = W x + s B_k A_k dropout(x) + s sum_{j in merged} B_j A_j x."""

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


def orthogonality_loss(A_current: torch.Tensor, A_earlier: list[torch.Tensor]) -> torch.Tensor:
    """sum_j sum |A_current A_j^T| over the earlier experts' A_j (0 when there are none)."""
    total = A_current.new_zeros(())
    for A in A_earlier:
        total = total + (A_current @ A.T).abs().sum()
    return total


class OLoRA(ContinualMethod):
    name = "olora"

    def __init__(self, orthogonal_weight: float = 0.05, **lora):
        super().__init__(**lora)
        if orthogonal_weight < 0:
            raise ConfigError(f"method.orthogonal_weight must be >= 0, got {orthogonal_weight}")
        self.orthogonal_weight = orthogonal_weight
        self.current = 0

    def num_slots(self, num_tasks: int) -> int:
        return num_tasks

    def make_layer(self, linear, num_slots: int) -> OLoRALinear:
        return OLoRALinear(linear, self.rank, self.alpha, num_slots, self.dropout, self.init_std)

    def on_task_start(self, module, task_index: int) -> None:
        self.current = task_index
        layer: OLoRALinear
        for layer in self.adapters.values():
            layer.active_slot = task_index
            layer.merged_slots = list(range(task_index))
            for slot in range(layer.num_slots):
                trains = slot == task_index
                layer.lora_A[slot].requires_grad_(trains)
                layer.lora_B[slot].requires_grad_(trains)

    def on_eval_start(self, module, trained_tasks: list[int]) -> None:
        """The model after the trained tasks: the last one's slot active, the earlier ones merged
        (as training left it; set here too, so that a model rebuilt from a checkpoint is the same)."""
        if not trained_tasks:
            return
        layer: OLoRALinear
        for layer in self.adapters.values():
            layer.active_slot, layer.merged_slots = trained_tasks[-1], list(trained_tasks[:-1])

    def extra_loss(self, module, batch: dict, outputs) -> torch.Tensor | None:
        if self.current == 0 or self.orthogonal_weight == 0:
            return None
        total = sum(orthogonality_loss(layer.lora_A[self.current],
                                       [layer.lora_A[j].detach() for j in range(self.current)])
                    for layer in self.adapters.values())
        return self.orthogonal_weight * total

    def trainable_parameters(self, model) -> int:
        """The current task's slot in every adapted linear, plus the projector (at every stage)."""
        return self.expert_parameters() + self.projector_parameters(model)

    def stored_parameters(self, model, num_tasks: int) -> int:
        return num_tasks * self.expert_parameters() + self.projector_parameters(model)
