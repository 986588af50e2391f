"""LwF (Li & Hoiem, 2016) for instruction tuning: distil the previous model while learning the new task.

One LoRA adapter (and the projector) trains on every task, as in sequential LoRA. From the second
task on, the model as it was at the end of the previous task is a frozen teacher, and the loss adds

    alpha * tau^2 * mean over answer tokens of KL(softmax(z_teacher / tau) || softmax(z_student / tau))

on the current task's own data. The teacher is not a copy of the model: it is the previous state
of the trainable parameters only (adapter and projector), substituted into the same module for a
no-grad forward (`torch.func.functional_call`), so it costs a forward, not a second model.

Args (besides the LoRA ones of `ContinualMethod`):
    distill_weight: alpha.
    temperature: tau.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from hide.errors import ConfigError
from hide.methods.base import ContinualMethod
from hide.models.family import model_inputs
from hide.modes import model_mode


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """tau^2 * mean over answer tokens of KL(teacher || student) at temperature tau. Logits at
    position i predict token i + 1, so position i counts where labels[i + 1] is an answer token."""
    mask = labels[:, 1:] != -100
    if not mask.any():
        return student_logits.new_zeros(())
    s = student_logits[:, :-1][mask].float() / temperature
    t = teacher_logits[:, :-1][mask].float() / temperature
    kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True, reduction="batchmean")
    return kl * temperature ** 2


class LwF(ContinualMethod):
    name = "lwf"

    def __init__(self, distill_weight: float = 1.0, temperature: float = 2.0, **lora):
        super().__init__(**lora)
        if distill_weight < 0 or temperature <= 0:
            raise ConfigError(f"method.distill_weight must be >= 0 and method.temperature > 0; "
                             f"got {distill_weight}, {temperature}")
        self.distill_weight = distill_weight
        self.temperature = temperature
        self.teacher: dict[str, torch.Tensor] | None = None

    def on_task_start(self, module, task_index: int, train_loader) -> None:
        # the state reached after the previous task (none before the first)
        trainable = {n: p.detach().clone() for n, p in module.model.named_parameters() if p.requires_grad}
        self.teacher = trainable if task_index > 0 else None

    def teacher_logits(self, module, batch: dict) -> torch.Tensor:
        model = module.model
        # functional_call skips names the model does not have (strict=False: buffers are not
        # passed), which would make the teacher the student itself and the loss zero
        unknown = self.teacher.keys() - dict(model.named_parameters()).keys()
        if unknown:
            raise RuntimeError(f"LwF's teacher state names {len(unknown)} parameter(s) the model does not have "
                               f"(e.g. {sorted(unknown)[:3]}): the model's parameters were renamed since the task began")
        with model_mode(model, training=False), torch.no_grad():  # the teacher answers without dropout
            out = functional_call(model, self.teacher, args=(), kwargs=model_inputs(model, batch), strict=False)
        return out.logits

    def extra_loss(self, module, batch: dict, outputs) -> torch.Tensor | None:
        if self.teacher is None or self.distill_weight == 0:
            return None
        teacher = self.teacher_logits(module, batch)
        return self.distill_weight * distillation_loss(outputs.logits, teacher, batch["labels"], self.temperature)
