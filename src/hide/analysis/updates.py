"""How large the experts' updates are, per decoder layer.

Two measures of expert t in an adapted linear W (scale s):
- `frobenius_update_sizes`: ||s B_t A_t||_F / ||W||_F, a property of the weights alone. It does not
  transfer across widths (a rank-r update of a d-wide W has an operator-norm ratio of roughly this
  times sqrt(d / r) / 2), so it cannot be compared with a 7B model's.
- `functional_update_sizes`: ||s B_t A_t x|| / ||W x|| on the layer's real inputs x (the prompt
  tokens of task t's test set, with expert t in every layer): how much the expert changes what the
  layer computes, which is what summing experts disturbs.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from pytorch_lightning.utilities import move_data_to_device

from hide.data.collate import EvalCollator
from hide.methods.hide_experts import MultiExpertLoRALinear
from hide.models.family import model_inputs
from hide.models.lora import decoder_layer_index
from hide.modes import model_mode


def _per_layer_mean(values: dict[int, list[float]]) -> list[float]:
    return [sum(v) / len(v) for _, v in sorted(values.items())]


@torch.no_grad()
def frobenius_update_sizes(adapters: dict[str, MultiExpertLoRALinear], slots: list[int] | None = None) -> list[float]:
    """Per decoder layer: the mean over its linears and the experts of ||s B_t A_t||_F / ||W||_F."""
    per_layer: dict[int, list[float]] = defaultdict(list)
    for name, adapter in adapters.items():
        weight = adapter.base.weight.norm().item()
        for slot in range(adapter.num_slots) if slots is None else slots:
            update = adapter.scale * adapter.lora_B[slot] @ adapter.lora_A[slot]
            per_layer[decoder_layer_index(name)].append(update.norm().item() / weight)
    return _per_layer_mean(per_layer)


@torch.no_grad()
def functional_update_sizes(model, adapters: dict[str, MultiExpertLoRALinear], encoder, tasks,
                            samples_per_task: int = 32, batch_size: int = 16) -> list[float]:
    """Per decoder layer: the mean over its linears, the tasks and every prompt token of task t's
    first `samples_per_task` test prompts of ||s B_t A_t x|| / ||W x||, each task's prompts run
    through the model with expert t alone in every layer (its single-task model). `tasks` are the
    loaded `TaskData`, one expert slot per task in order. Leaves every adapter on its last slot."""
    per_layer: dict[int, list[float]] = defaultdict(list)
    collate = EvalCollator(encoder)
    state = {"slot": 0, "mask": None}

    def measure(name: str):
        layer = decoder_layer_index(name)

        def hook(adapter, args, output):
            x = args[0]
            delta = adapter.delta(x, state["slot"]).norm(dim=-1)
            base = adapter.base(x).norm(dim=-1).clamp_min(1e-12)
            mask = state["mask"]
            per_layer[layer].append(float(((delta / base) * mask).sum() / mask.sum()))
        return hook

    handles = [adapter.register_forward_hook(measure(name)) for name, adapter in adapters.items()]
    try:
        with model_mode(model, training=False):
            for slot, task in enumerate(tasks):
                state["slot"] = slot
                for adapter in adapters.values():
                    adapter.use_single(slot)
                records = task.test[:samples_per_task]
                for start in range(0, len(records), batch_size):
                    batch = collate([(slot, r) for r in records[start:start + batch_size]])
                    batch = move_data_to_device(batch, model.device)
                    state["mask"] = batch["attention_mask"].to(torch.float32)
                    model(**model_inputs(model, batch))
    finally:
        for handle in handles:
            handle.remove()
    return _per_layer_mean(per_layer)
