"""KeepLoRA (ICLR 2026): LoRA in the residual subspace of the gradient, with A frozen.

Every adapted linear keeps a protected subspace of its input space, the columns of U:

- before the first task, the input directions of the pretrained W that hold `base_energy` (60%)
  of its energy (the top right singular vectors of W);
- before task t, the gradient of the loss with respect to W, averaged over the first
  `gradient_fraction` (20%) of the task's training batches, has U projected out,
  G' = G (I - U U^T); its top-r right singular vectors become A_t, which stays frozen: only B_t
  trains (from zero), so the update s B_t A_t reads no protected direction;
- after the task its update is merged (`MergedPerTaskSlots`) and U grows by the update's input
  directions outside U until U holds `task_energy` (99%) of the update's energy, so later tasks
  leave it alone too.

Read here as implemented: the gradient is taken with the model in eval mode (no dropout), so it
draws nothing from the random generators and a resumed run finds the same A; the growth
criterion is the one of gradient projection memory (the share of the new update's energy that U
captures), applied to each task's merged update. Under data parallelism every rank estimates
the gradient on the same batches and finds the same A.

Args (besides the LoRA ones of `ContinualMethod`; init_std is unused: A comes from the gradient,
and alpha is replaced by `scale`):
    scale: s in s B A, published as alpha = rank / 4; A's rows are orthonormal, a size relative
        to the Kaiming init that is the same at every width, so 0.25 holds at every width.
    base_energy: share of the pretrained W's energy whose input directions are protected.
    task_energy: share of each merged update's energy whose input directions are added.
    gradient_fraction: share of the task's training batches the gradient is averaged over.
"""

from __future__ import annotations

import math

import torch
from pytorch_lightning.utilities import move_data_to_device

from hide.errors import ConfigError
from hide.methods.base import MergedPerTaskSlots
from hide.modes import model_mode


def energy_directions(matrix: torch.Tensor, energy: float, captured: float = 0.0) -> torch.Tensor:
    """The fewest top right singular vectors of `matrix` (as columns, d_in x k) whose squared
    singular values, added to `captured` (energy already held elsewhere), reach `energy` of
    `total`; total is ||matrix||^2 + captured."""
    _, S, Vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    squares = S ** 2
    total = float(squares.sum()) + captured
    if total == 0:
        return matrix.new_zeros(matrix.shape[1], 0)
    reached = (captured + torch.cumsum(squares, 0)) / total
    k = min(int((reached < energy).sum()) + 1, len(S)) if captured / total < energy else 0
    return Vh[:k].T.to(matrix.dtype)


def residual_gradient_directions(gradient: torch.Tensor, protected: torch.Tensor, rank: int) -> torch.Tensor:
    """A (rank x d_in, orthonormal rows): the top right singular vectors of the gradient with the
    protected input directions (columns of `protected`) projected out."""
    residual = gradient.double() - (gradient.double() @ protected.double()) @ protected.double().T
    _, _, Vh = torch.linalg.svd(residual, full_matrices=False)
    return Vh[:rank].to(gradient.dtype)


def grow_protected(protected: torch.Tensor, update: torch.Tensor, energy: float) -> torch.Tensor:
    """U with the input directions of `update` (d_out x d_in) outside U added, until U holds
    `energy` of the update's energy."""
    update = update.double()
    U = protected.double()
    inside = update @ U
    outside = update - inside @ U.T
    added = energy_directions(outside, energy, captured=float((inside ** 2).sum()))
    grown = torch.cat([U, added.double()], dim=1)
    Q, _ = torch.linalg.qr(grown)  # re-orthonormalised against round-off
    return Q.to(protected.dtype)


class KeepLoRA(MergedPerTaskSlots):
    name = "keeplora"

    def __init__(self, base_energy: float = 0.6, task_energy: float = 0.99, gradient_fraction: float = 0.2,
                 scale: float = 0.25, **lora):
        if scale <= 0:
            raise ConfigError(f"method.scale must be > 0, got {scale}")
        super().__init__(**{**lora, "alpha": scale * lora.get("rank", 8)})
        for key, value in (("base_energy", base_energy), ("task_energy", task_energy),
                           ("gradient_fraction", gradient_fraction)):
            if not 0 < value <= 1:
                raise ConfigError(f"method.{key} must be in (0, 1], got {value}")
        self.base_energy, self.task_energy, self.gradient_fraction = base_energy, task_energy, gradient_fraction
        self.protected: dict[str, torch.Tensor] = {}  # adapted linear -> U (d_in x k, orthonormal columns)

    def attach(self, backbone, num_tasks: int) -> None:
        super().attach(backbone, num_tasks)
        for name, layer in self.adapters.items():
            if layer.rank > layer.base.in_features:
                raise ConfigError(f"method.rank={layer.rank} exceeds the input width of {name}")

    def on_task_start(self, module, task_index: int, train_loader) -> None:
        super().on_task_start(module, task_index, train_loader)
        for name, layer in self.adapters.items():
            if name not in self.protected:  # before the first task (a resumed run has them from its state)
                self.protected[name] = energy_directions(layer.base.weight.detach().float(), self.base_energy).cpu()
        gradients = self.weight_gradients(module, train_loader)
        with torch.no_grad():
            for name, layer in self.adapters.items():
                U = self.protected[name].to(gradients[name].device)
                layer.lora_A[task_index].copy_(residual_gradient_directions(gradients[name], U, layer.rank))
                layer.lora_B[task_index].zero_()
                layer.lora_A[task_index].requires_grad_(False)  # only B trains

    def weight_gradients(self, module, train_loader) -> dict[str, torch.Tensor]:
        """The mean over the first gradient_fraction of the batches of d loss / d W for every
        adapted linear's frozen weight (the model as it stands: the earlier tasks merged)."""
        model = module.model
        weights = {name: layer.base.weight for name, layer in self.adapters.items()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        sums = {name: torch.zeros_like(w, dtype=torch.float32) for name, w in weights.items()}
        count = max(1, math.ceil(self.gradient_fraction * len(train_loader)))
        for p in trainable:
            p.requires_grad_(False)
        for w in weights.values():
            w.requires_grad_(True)
        try:
            with model_mode(model, training=False), torch.enable_grad():
                for index, batch in enumerate(train_loader):
                    if index == count:
                        break
                    grads = torch.autograd.grad(module.answer_outputs(move_data_to_device(batch, model.device)).loss,
                                                list(weights.values()))
                    for name, grad in zip(weights, grads):
                        sums[name] += grad.float()
        finally:
            for w in weights.values():
                w.requires_grad_(False)
            for p in trainable:
                p.requires_grad_(True)
        return {name: total / count for name, total in sums.items()}

    @torch.no_grad()
    def on_task_end(self, module, task_index: int, train_loader) -> None:
        for name, layer in self.adapters.items():
            update = layer.scale * (layer.lora_B[task_index] @ layer.lora_A[task_index]).float().cpu()
            self.protected[name] = grow_protected(self.protected[name], update, self.task_energy)

    def state_dict(self) -> dict:
        return {"protected": self.protected}

    def load_state_dict(self, state: dict) -> None:
        self.protected = state["protected"]

    def trainable_parameters(self, model) -> int:
        """B of the current task's slot in every adapted linear, plus the projector."""
        return sum(a.lora_B[0].numel() for a in self.adapters.values()) + self.projector_parameters(model)
