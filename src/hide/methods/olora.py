"""O-LoRA (Wang et al., 2023): orthogonal subspaces for continual learning.

Each task gets a fresh LoRA slot in every language-model linear; earlier slots are frozen and stay
in the forward pass as if merged into W (`MergedPerTaskSlots`). While task t trains, the loss adds

    lambda * sum over adapted linears, j < t of  sum |A_t A_j^T|     (L1 of the r x r product)

which pushes the new expert's input subspace (the rows of A_t) away from the earlier ones, so
that its update disturbs what they read less. Inference uses every trained slot.

Args (besides the LoRA ones of `ContinualMethod`):
    orthogonal_weight: lambda (the official coefficient is 0.05).
"""

from __future__ import annotations

import torch

from hide.errors import ConfigError
from hide.methods.base import MergedPerTaskSlots


def orthogonality_loss(A_current: torch.Tensor, A_earlier: list[torch.Tensor]) -> torch.Tensor:
    """sum_j sum |A_current A_j^T| over the earlier experts' A_j (0 when there are none)."""
    total = A_current.new_zeros(())
    for A in A_earlier:
        total = total + (A_current @ A.T).abs().sum()
    return total


class OLoRA(MergedPerTaskSlots):
    name = "olora"

    def __init__(self, orthogonal_weight: float = 0.05, **lora):
        super().__init__(**lora)
        if orthogonal_weight < 0:
            raise ConfigError(f"method.orthogonal_weight must be >= 0, got {orthogonal_weight}")
        self.orthogonal_weight = orthogonal_weight

    def extra_loss(self, module, batch: dict, outputs) -> torch.Tensor | None:
        if self.current == 0 or self.orthogonal_weight == 0:
            return None
        total = sum(orthogonality_loss(layer.lora_A[self.current],
                                       [layer.lora_A[j].detach() for j in range(self.current)])
                    for layer in self.adapters.values())
        return self.orthogonal_weight * total
