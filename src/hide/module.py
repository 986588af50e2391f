"""The LightningModule shared by every method: answer-token cross-entropy plus the method's own
loss term, AdamW with the projector at its own learning rate and a cosine schedule with warmup,
and batched greedy generation (`hide.generation`) for evaluation."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from hide.checkpoint import kill_point
from hide.models.family import model_inputs
from hide.distributed import clip_grad_norm_sharded, reinstall_output_capturing
from hide.errors import TrainingDivergedError
from hide.generation import greedy_answers
from hide.methods.base import ContinualMethod
from hide.models.backbone import Backbone


def cosine_with_warmup(total_steps: int, warmup_ratio: float):
    warmup = max(1, math.ceil(warmup_ratio * total_steps)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class ContinualModule(pl.LightningModule):
    """One backbone + one method, trained task after task by fresh `Trainer.fit` calls.

    Args:
        backbone: model, tokenizer and image processor.
        method: the continual-learning method (its adapters are already attached).
        lr: learning rate of the adapters (and of any other trainable non-projector weight).
        projector_lr: learning rate of the multimodal projector (LLaVA trains it lower).
        weight_decay, warmup_ratio: AdamW decay and the share of steps with linear warmup.
        max_new_tokens: greedy generation budget at evaluation.
    """

    def __init__(self, backbone: Backbone, method: ContinualMethod, lr: float = 2e-4,
                 projector_lr: float = 2e-5, weight_decay: float = 0.0, warmup_ratio: float = 0.03,
                 max_new_tokens: int = 128):
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model
        self.method = method
        self.lr = lr
        self.projector_lr = projector_lr
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.max_new_tokens = max_new_tokens
        self.stage, self.current_task = 0, 0  # what is training now (the task loop sets them)
        # Checkpoints hold only what the method trains or adds (`ContinualMethod.checkpoint_keys`);
        # the frozen backbone comes from the config.
        self.strict_loading = False

    # -- training ---------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # from_pretrained and predict leave modules in eval mode, and Lightning keeps each
        # submodule's mode; LoRA dropout must be on while training.
        self.model.train()
        reinstall_output_capturing(self.model)

    def on_predict_start(self) -> None:
        # Lightning's DeepSpeed strategy has just removed every module hook, transformers' too
        reinstall_output_capturing(self.model)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's FSDP plugin refuses clipping by norm; FSDP clips the norm over all shards itself
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and clip_grad_norm_sharded(
                self.trainer.strategy, gradient_clip_val):
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep = {f"model.{k}" for k in self.method.checkpoint_keys(self.model)}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def answer_outputs(self, batch: dict):
        """The model's outputs on a training batch; `.loss` is the answer-token cross-entropy."""
        return self.model(**model_inputs(self.model, batch), labels=batch["labels"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        outputs = self.answer_outputs(batch)
        loss = outputs.loss
        self.log("train/ce", loss.detach(), prog_bar=True, batch_size=len(batch["ids"]))
        extra = self.method.extra_loss(self, batch, outputs)
        if extra is not None:
            self.log("train/extra", extra.detach(), prog_bar=True, batch_size=len(batch["ids"]))
            loss = loss + extra
        if not torch.isfinite(loss):
            names = self.trainer.datamodule.benchmark.task_names if self.trainer.datamodule else []
            task = names[self.current_task] if self.current_task < len(names) else self.current_task
            raise TrainingDivergedError(
                f"Non-finite loss ({loss.item()}) at optimizer step {self.global_step} of task {task!r} (stage "
                f"{self.stage}), batch {batch_idx} with record ids {list(batch['ids'])}. The run stopped "
                f"before this step changed any weight, and the checkpoints written before it are intact. Lower "
                f"optim.lr (or raise trainer.gradient_clip_val), or check these records."
            )
        return loss

    def configure_optimizers(self):
        projector = {id(p) for p in self.backbone.projector.parameters()}
        adapter_params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in projector]
        projector_params = [p for p in self.backbone.projector.parameters() if p.requires_grad]
        groups = [g for g in (
            {"params": adapter_params, "lr": self.lr},
            {"params": projector_params, "lr": self.projector_lr},
        ) if g["params"]]
        optimizer = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, self.warmup_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- evaluation -------------------------------------------------------------------------
    def generate(self, batch: dict) -> list[str]:
        """Greedy answers for a left-padded batch, decoded and stripped, in the method's context
        for it (`ContinualMethod.answering`)."""
        with self.method.answering(self, batch) as prefix_plan:
            # a task's own budget (its official script's) where it has one
            budget = batch.get("max_new_tokens") or self.max_new_tokens
            return greedy_answers(self.model, self.backbone.tokenizer, batch, budget, prefix_plan=prefix_plan)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[tuple[int, str, str]]:
        kill_point("predict_batch")
        texts = self.generate(batch)
        return list(zip(batch["task"].tolist(), batch["ids"], texts))
