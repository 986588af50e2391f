"""MoELoRA (CoIN's mixture-of-LoRA-experts baseline).

Every language-model linear holds `num_experts` LoRA experts that share the rank (rank / num_experts
each) and a per-token softmax router on the layer input (`MoELoRALinear`). Router and experts all
keep training on every task, so nothing ties an expert to a task: the router only lets tasks use
different mixtures, which is why it forgets less than one LoRA but far more than per-task experts.

Args (besides the LoRA ones of `ContinualMethod`; s = alpha / rank):
    num_experts: how many experts the rank is split over (rank must be a multiple of it).
"""

from __future__ import annotations

from torch import nn

from hide.errors import ConfigError
from hide.methods.base import ContinualMethod
from hide.models.lora import MoELoRALinear


class MoELoRA(ContinualMethod):
    name = "moelora"

    def __init__(self, num_experts: int = 4, **lora):
        super().__init__(**lora)
        if num_experts < 1 or self.rank % num_experts:
            raise ConfigError(f"method.rank={self.rank} must be a multiple of method.num_experts={num_experts}")
        self.num_experts = num_experts

    def make_layer(self, linear: nn.Linear, num_slots: int, init_std: float | None) -> MoELoRALinear:
        """Experts and router train on every task (the base attach leaves the router trainable)."""
        return MoELoRALinear(linear, self.rank, self.alpha, self.num_experts, self.dropout, init_std)
