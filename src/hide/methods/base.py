"""The method interface: hooks that the one task loop (`hide.loop.run_continual`) calls.

A method decides which parameters train (it injects its adapters in `attach`), what each stage
trains on (`stages`), and may add loss terms and begin/end-of-task work. Everything else (data,
optimisation, evaluation, metrics) is shared, so methods differ only where they really differ.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from hide.generation import PrefixPlan
from hide.models.backbone import Backbone
from hide.models.family import family_of
from hide.models.lora import LoRALinear, MergedSlotsLoRALinear, inject_lora
from hide.models.translation import entry_factor


class ContinualMethod:
    """Base class. Subclasses override the hooks they need.

    Args (conf/adapter/lora.yaml, which every method's config includes; a subclass takes its own
    arguments and passes these on):
        rank, alpha, dropout, init_std: the LoRA adapters on every language-model linear
            (scale s = alpha / rank; see `LoRALinear`). init_std is a published value: each
            layer's A gets it carried to the layer's width (`init_std_of`).
        published_fan_in: the input width of each target where the settings were published
            (LLaVA-1.5-7B's); entry-sized settings are carried from it by `hide.models.translation`
            (null: taken as numbers).
        targets: names of the linears that get adapters (None: the model family's decoder linears,
            `ModelFamily.lora_targets`).
        train_projector: train the multimodal projector (at `optim.projector_lr`) on every task.
    """

    name = "base"

    def __init__(self, rank: int = 8, alpha: float = 16.0, dropout: float = 0.05,
                 init_std: float | None = None, targets: tuple[str, ...] | None = None,
                 train_projector: bool = True, published_fan_in: dict[str, int] | None = None):
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.init_std = init_std
        self.published_fan_in = dict(published_fan_in) if published_fan_in is not None else None
        self.targets = tuple(targets) if targets is not None else None
        self.train_projector = train_projector
        self.adapters: dict[str, LoRALinear] = {}

    # -- set-up -----------------------------------------------------------------------------
    def num_slots(self, num_tasks: int) -> int:
        """How many expert slots each adapted linear holds (one shared adapter by default)."""
        return 1

    def attach(self, backbone: Backbone, num_tasks: int) -> None:
        """Freeze the backbone, then inject this method's adapters and unfreeze what trains."""
        backbone.model.requires_grad_(False)
        slots = self.num_slots(num_tasks)
        self.adapters = inject_lora(backbone.language_model,
                                    lambda linear, name: self.make_layer(linear, slots, self.init_std_of(name, linear)),
                                    targets=self.targets or backbone.family.lora_targets)
        for layer in self.adapters.values():
            layer.lora_A.requires_grad_(True)
            layer.lora_B.requires_grad_(True)
        backbone.projector.requires_grad_(self.train_projector)

    def init_std_of(self, name: str, linear: nn.Linear) -> float | None:
        """The std of A for the linear `name`: `init_std` carried from its published width to this
        one (the same size relative to the Kaiming init); None: Kaiming-uniform."""
        if self.init_std is None:
            return None
        return self.init_std * entry_factor(name, linear.in_features, self.published_fan_in)

    def make_layer(self, linear: nn.Linear, num_slots: int, init_std: float | None) -> LoRALinear:
        """The adapter layer that replaces `linear`, its A drawn with `init_std` (None: Kaiming)."""
        return LoRALinear(linear, self.rank, self.alpha, num_slots, self.dropout, init_std)

    # -- the schedule -----------------------------------------------------------------------
    def stages(self, num_tasks: int) -> list[list[int] | None]:
        """What stage t (1..T) trains on: a list of task indices. [] = no training (the model is
        unchanged, so its row equals row 0); None = no model exists at that stage (row absent)."""
        return [[t] for t in range(num_tasks)]

    # -- hooks ------------------------------------------------------------------------------
    def on_task_start(self, module, task_index: int, train_loader) -> None:
        """Before training on a task (e.g. activate a fresh expert); `train_loader` gives the
        stage's training data in a fixed order (e.g. for a gradient estimated before training)."""

    def extra_train_items(self, tasks: list, task_indices: list[int]) -> list[tuple[int, object]]:
        """(task index, record) pairs mixed into a stage's training data besides its own tasks (replay)."""
        return []

    def extra_loss(self, module, batch: dict, outputs) -> torch.Tensor | None:
        """A regularisation term added to the answer-token cross-entropy."""
        return None

    def on_task_end(self, module, task_index: int, train_loader) -> None:
        """After training on a task (e.g. freeze its expert, compute a Fisher, store anchors)."""

    def on_eval_start(self, module, trained_tasks: list[int]) -> None:
        """Before generating answers (e.g. set up routing or fused weights)."""

    def answering(self, module, batch: dict) -> AbstractContextManager[PrefixPlan | None]:
        """The context in which one evaluation batch is answered (e.g. per-sample routing weights
        that hold for this call only); it gives how generation may run the prompt prefix that
        the batch's rows share once for all of them (`hide.generation.PrefixPlan`), or None when
        every row's adapters act alike."""
        return nullcontext(None)

    def eval_facts(self, task_names: list[str]) -> dict:
        """Facts about the evaluation just finished, recorded in metrics.json (e.g. routing accuracy)."""
        return {}

    # -- checkpoints (hide.checkpoint) ------------------------------------------------------
    def checkpoint_modules(self, model: nn.Module) -> list[nn.Module]:
        """The modules a checkpoint saves: the adapters (not the frozen linears they wrap) and the
        projector. A method that adds modules of its own to the model adds them here; state kept
        outside the model (EWC's Fisher, anchors) goes in `state_dict`."""
        return [*self.adapters.values(), family_of(model).projector(model)]

    def checkpoint_keys(self, model: nn.Module) -> set[str]:
        """model.state_dict() keys of `checkpoint_modules`, the wrapped frozen linears left out."""
        wanted = {id(m) for m in self.checkpoint_modules(model)}
        keys = set()
        for prefix, module in model.named_modules():
            if id(module) in wanted:
                keys |= {f"{prefix}.{k}" for k in module.state_dict() if not k.startswith("base.")}
        return keys

    def state_dict(self) -> dict:
        """What the method keeps outside the model between tasks (EWC's Fisher, replay's finished
        tasks); saved after every stage and given back to `load_state_dict` by a resumed run.
        Whatever `on_task_start` derives from the model (LwF's teacher) needs no saving."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # -- exports (hide.export) --------------------------------------------------------------
    # Whether a merged export may keep the layers that no single weight expresses apart (one
    # expert slot per task: HiDe's routed layers), written beside the checkpoint as peft adapters
    # named by task, with the method's state, and rebuilt by `hide.load_run`.
    writes_unmerged_layers = False

    def export_settings(self, backbone: Backbone) -> dict:
        """Settings that replace the method's config when a merged export rebuilds it (what the
        run resolved, what the merged checkpoint no longer holds)."""
        return {}

    # -- reporting --------------------------------------------------------------------------
    def run_facts(self) -> dict:
        """Facts about the attached method recorded once in metrics.json (e.g. HiDe's chosen layers)."""
        return {}

    def projector_parameters(self, model: nn.Module) -> int:
        """The projector's size if it trains (it is then stored beside the adapters), else 0."""
        return sum(p.numel() for p in family_of(model).projector(model).parameters()) if self.train_projector else 0

    def expert_parameters(self) -> int:
        """One expert slot (A_0, B_0) in every adapted linear."""
        return sum(a.lora_A[0].numel() + a.lora_B[0].numel() for a in self.adapters.values())

    def trainable_parameters(self, model: nn.Module) -> int:
        """Parameters trained on one task."""
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def stored_parameters(self, model: nn.Module, num_tasks: int) -> int:
        """Parameters kept beside the frozen base model after `num_tasks` tasks (adapters and projector)."""
        return self.trainable_parameters(model)


class MergedPerTaskSlots(ContinualMethod):
    """The layout of the methods that train a fresh LoRA per task on the model with every earlier
    task's LoRA merged in (O-LoRA, RegLoRA, KeepLoRA): one slot per task in every adapted linear
    (`MergedSlotsLoRALinear`); task t trains slot t, the earlier slots are frozen and act as part
    of W. Inference uses every trained slot. Subclasses add their loss or their end-of-task step."""

    def __init__(self, **lora):
        super().__init__(**lora)
        self.current = 0  # the task being trained

    def num_slots(self, num_tasks: int) -> int:
        return num_tasks

    def make_layer(self, linear: nn.Linear, num_slots: int, init_std: float | None) -> MergedSlotsLoRALinear:
        return MergedSlotsLoRALinear(linear, self.rank, self.alpha, num_slots, self.dropout, init_std)

    def on_task_start(self, module, task_index: int, train_loader) -> None:
        self.current = task_index
        layer: MergedSlotsLoRALinear
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
        layer: MergedSlotsLoRALinear
        for layer in self.adapters.values():
            layer.active_slot, layer.merged_slots = trained_tasks[-1], list(trained_tasks[:-1])

    def trainable_parameters(self, model) -> int:
        """The current task's slot in every adapted linear, plus the projector (at every stage)."""
        return self.expert_parameters() + self.projector_parameters(model)

    def stored_parameters(self, model, num_tasks: int) -> int:
        """Every task's slot (a merged model would hold them in W instead) and the projector."""
        return num_tasks * self.expert_parameters() + self.projector_parameters(model)
