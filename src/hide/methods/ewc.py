"""EWC (Kirkpatrick et al., 2017): elastic weight consolidation on the trainable parameters.

One LoRA adapter (and the projector) trains on every task, as in sequential LoRA. After each task
the diagonal Fisher information of every trainable parameter is estimated as the mean squared
gradient of the training loss over that task's data, and the parameters are held near their
values at that point (the reference weights theta*):

    penalty = lambda * sum_k F_k (theta - theta*_k)^2

- `separate`: one (F_k, theta*_k) per finished task, a sum over tasks;
- `online`: one running pair, F <- gamma F + F_new and theta* <- theta after each task.

Args (besides the LoRA ones of `ContinualMethod`):
    ewc_lambda: the penalty's weight.
    mode: "separate" or "online".
    gamma: online mode's decay of the earlier Fisher.
    fisher_batches: estimate the Fisher on at most this many training batches (None: all).
"""

from __future__ import annotations

import torch
from pytorch_lightning.utilities import move_data_to_device

from hide.methods.base import ContinualMethod
from hide.errors import ConfigError
from hide.modes import model_mode

MODES = ("separate", "online")


def diagonal_fisher(model: torch.nn.Module, loss_fn, batches, params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Mean over `batches` of the squared gradient of loss_fn(model, batch) for each named parameter."""
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    count = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach().float() ** 2
        count += 1
    model.zero_grad(set_to_none=True)
    if count == 0:
        raise RuntimeError("diagonal_fisher got no batches")
    return {n: f / count for n, f in fisher.items()}


def ewc_penalty(params: dict[str, torch.Tensor], consolidated: list[tuple[dict, dict]]) -> torch.Tensor:
    """sum over (F, theta*) in consolidated of sum F (theta - theta*)^2."""
    total = next(iter(params.values())).new_zeros((), dtype=torch.float32)
    for fisher, star in consolidated:
        for n, p in params.items():
            total = total + (fisher[n] * (p.float() - star[n]) ** 2).sum()
    return total


class EWC(ContinualMethod):
    name = "ewc"

    def __init__(self, ewc_lambda: float = 1e5, mode: str = "online", gamma: float = 1.0, fisher_batches: int | None = 50, **lora):
        super().__init__(**lora)
        if mode not in MODES:
            raise ConfigError(f"method.mode={mode!r}; choose one of {MODES}")
        if ewc_lambda < 0 or not 0 <= gamma <= 1:
            raise ConfigError(f"method.ewc_lambda must be >= 0 and method.gamma in [0, 1]; got {ewc_lambda}, {gamma}")
        self.ewc_lambda = ewc_lambda
        self.mode = mode
        self.gamma = gamma
        self.fisher_batches = fisher_batches
        # (Fisher, reference weights) per finished task, or one running pair in online mode
        self.consolidated: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    @staticmethod
    def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def extra_loss(self, module, batch: dict, outputs) -> torch.Tensor | None:
        if not self.consolidated or self.ewc_lambda == 0:
            return None
        params = self.trainable(module.model)
        self._follow(next(iter(params.values())).device)
        return self.ewc_lambda * ewc_penalty(params, self.consolidated)

    def _follow(self, device: torch.device) -> None:
        """Put the kept pairs where the parameters are (once, after a resume loaded them on the CPU)."""
        first_fisher, _ = self.consolidated[0]
        if next(iter(first_fisher.values())).device != device:
            def moved(tensors: dict) -> dict:
                return {n: t.to(device) for n, t in tensors.items()}

            self.consolidated = [(moved(fisher), moved(star)) for fisher, star in self.consolidated]

    def on_task_end(self, module, task_index: int, train_loader) -> None:
        model = module.model
        params = self.trainable(model)
        def batches():
            for i, batch in enumerate(train_loader):
                if self.fisher_batches is not None and i >= self.fisher_batches:
                    return
                yield move_data_to_device(batch, model.device)

        # the loss the parameters were trained on (dropout included)
        with model_mode(model, training=True), torch.enable_grad():
            fisher = diagonal_fisher(model, lambda _, batch: module.answer_outputs(batch).loss, batches(), params)
        star = {n: p.detach().float().clone() for n, p in params.items()}
        if self.mode == "online" and self.consolidated:
            self._follow(next(iter(fisher.values())).device)
            previous, _ = self.consolidated[0]
            fisher = {n: self.gamma * previous[n] + fisher[n] for n in fisher}
            self.consolidated = [(fisher, star)]
        else:
            self.consolidated.append((fisher, star))

    def state_dict(self) -> dict:
        return {"consolidated": self.consolidated}

    def load_state_dict(self, state: dict) -> None:
        self.consolidated = state["consolidated"]

    def stored_parameters(self, model, num_tasks: int) -> int:
        """The adapter and projector, plus a Fisher and a reference copy of them per kept pair
        (one in online mode, one per task in separate mode): what training further needs."""
        kept = 1 if self.mode == "online" else num_tasks
        return self.trainable_parameters(model) * (1 + 2 * kept)
