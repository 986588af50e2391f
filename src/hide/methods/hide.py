"""HiDe (HiDe-LLaVA, Guo et al., ACL 2025): hierarchical decoupling of task-specific and
task-general knowledge; the method as implemented, where it departs from the published code, and
its ablations: docs/method.md.

Training task t: every language-model linear trains expert t alone; after it, the task's anchors
(exact means of an image and an instruction feature over its training set) are stored. Inference:
the task-specific layers (default: the top one) mix the experts per sample by anchor similarity
(`hide.methods.anchors`); every other layer fuses them into one (`fuse_experts`).
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from pytorch_lightning.utilities import move_data_to_device
from torch import nn

from hide.distributed import gather_objects
from hide.methods.anchors import AnchorBank, OwnTowersEncoder, encode_task_anchors, routing_weights
from hide.methods.base import ContinualMethod
from hide.models.backbone import Backbone
from hide.errors import ConfigError
from hide.generation import PrefixPlan
from hide.methods.hide_experts import FUSION_RULES, MultiExpertLoRALinear, routed_by
from hide.models.lora import decoder_layer_index
from hide.modes import model_mode

ROUTINGS = ("anchors", "oracle")


def layers_from_cka(cka_file: str, k: int, kind: str, num_layers: int, num_tasks: int) -> tuple[list[int], list[float]]:
    """The k decoder layers with the lowest mean cross-task CKA in experiments/cka_analysis.py's
    cka.json, and that per-layer mean."""
    path = Path(cka_file).expanduser()
    if not path.exists():
        raise ConfigError(
            f"method.task_specific_layers=auto reads the CKA analysis from {path}, which does not exist: run "
            f"`python experiments/cka_analysis.py --out {path.parent}` with this run's model and benchmark "
            f"overrides, or set method.cka_file")
    analysis = json.loads(path.read_text())
    if kind not in analysis:
        raise ConfigError(f"{path} has no {kind!r} CKA (method.cka_kind); it has "
                         f"{[k for k in ('kernel', 'linear') if k in analysis]}")
    means = analysis[kind]["mean_cross_task_cka"]
    if len(means) != num_layers or len(analysis["tasks"]) != num_tasks:
        raise ConfigError(f"{path} analysed {len(means)} decoder layers and {len(analysis['tasks'])} tasks, this run "
                         f"has {num_layers} and {num_tasks}: analyse this model and benchmark first")
    if not 1 <= k <= num_layers:
        raise ConfigError(f"method.auto_layers={k} must be between 1 and the model's {num_layers} layers")
    return sorted(analysis[kind]["layers_least_similar_first"][:k]), means


def resolve_layers(spec, num_layers: int) -> list[int]:
    """`task_specific_layers` -> sorted layer indices: "all", a list of indices (negative counts
    from the top, so [-1] is the last layer), or [] (none)."""
    if isinstance(spec, str):
        if spec == "all":
            return list(range(num_layers))
        raise ConfigError(f"method.task_specific_layers={spec!r}; give 'all', 'auto' or a list of layer indices")
    if isinstance(spec, int):
        spec = [spec]
    layers = set()
    for index in spec:
        if not -num_layers <= int(index) < num_layers:
            raise ConfigError(f"task-specific layer {index} is outside the model's {num_layers} decoder layers")
        layers.add(int(index) % num_layers)
    return sorted(layers)


def _check_inference(fusion: str, routing: str, top_k: int | None) -> None:
    if fusion not in FUSION_RULES:
        raise ConfigError(f"method.fusion={fusion!r}; choose one of {FUSION_RULES}")
    if routing not in ROUTINGS:
        raise ConfigError(f"method.routing={routing!r}; choose one of {ROUTINGS}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"method.top_k must be >= 1 or null, got {top_k}")


class HiDe(ContinualMethod):
    """Args (besides the LoRA ones of `ContinualMethod`, whose init_std is 0.01 here, the published
    init at LLaVA-1.5-7B's widths, carried to the model's widths by `published_fan_in`; the scale
    is s = alpha / rank):
        task_specific_layers: decoder layers whose experts are routed ([-1]: the top one; "all"; []).
        fusion: how the other layers fuse their experts: sum_ab (published), sum_ba, mean.
        fold_fused: add the fused update into a copy of W at evaluation (one matmul per forward).
        routing: "anchors" (the method) or "oracle" (the sample's true task, a reference bound).
        temperature, image_weight, text_weight, top_k: the routing softmax (top_k None: dense).
        anchor_encoder: a callable backbone -> encoder with `encode(batch)`, `image_dim`,
            `text_dim` (Hydra: a `_partial_` config); default `OwnTowersEncoder`.
        cka_file, auto_layers, cka_kind: with task_specific_layers="auto", the auto_layers decoder
            layers of lowest mean cross-task CKA (cka_kind: kernel | linear) in cka_file, the
            output of experiments/cka_analysis.py.
    """

    name = "hide"

    def __init__(self, task_specific_layers=(-1,), fusion: str = "sum_ab", fold_fused: bool = True,
                 routing: str = "anchors", temperature: float = 0.1, image_weight: float = 0.5,
                 text_weight: float = 0.5, top_k: int | None = None, anchor_encoder=None,
                 cka_file: str = "outputs/cka_analysis/cka.json", auto_layers: int = 1, cka_kind: str = "kernel",
                 **lora):
        super().__init__(**{"init_std": 0.01, **lora})  # the published init unless set
        _check_inference(fusion, routing, top_k)
        if temperature <= 0:
            raise ConfigError(f"method.temperature must be > 0, got {temperature}")
        self.task_specific_layers = task_specific_layers
        self.cka_file, self.auto_layers, self.cka_kind = cka_file, auto_layers, cka_kind
        self.cka_means: list[float] | None = None
        self.fusion, self.fold_fused, self.routing, self.top_k = fusion, fold_fused, routing, top_k
        self.temperature, self.image_weight, self.text_weight = temperature, image_weight, text_weight
        self.make_anchor_encoder = anchor_encoder or OwnTowersEncoder
        self.trained: list[int] = []
        self.routing_picks: Counter = Counter()  # (sample's task, task of its most similar anchors) -> n

    # -- set-up -----------------------------------------------------------------------------
    def num_slots(self, num_tasks: int) -> int:
        return num_tasks

    def make_layer(self, linear: nn.Linear, num_slots: int, init_std: float | None) -> MultiExpertLoRALinear:
        return MultiExpertLoRALinear(linear, self.rank, self.alpha, num_slots, self.dropout, init_std)

    def attach(self, backbone: Backbone, num_tasks: int) -> None:
        super().attach(backbone, num_tasks)  # one expert slot per task in every linear
        self.num_layers = backbone.language_model.config.num_hidden_layers
        self.decoder_layers = backbone.language_model.layers
        self.num_tasks = num_tasks
        self.configure_inference(self.task_specific_layers, self.fusion, self.routing, self.top_k)
        self.encoder = self.make_anchor_encoder(backbone)
        self.anchors = AnchorBank(num_tasks, self.encoder.image_dim, self.encoder.text_dim)

    def configure_inference(self, task_specific_layers, fusion: str, routing: str = "anchors",
                            top_k: int | None = None) -> None:
        """Which layers route, how the others fuse, and how the routed layers pick their experts.
        Training never depends on it (every layer trains expert t alone), so one training run can
        be evaluated under every choice (experiments/hide_inference.py); takes effect at the next
        `on_eval_start`."""
        _check_inference(fusion, routing, top_k)
        self.task_specific_layers, self.fusion, self.routing, self.top_k = task_specific_layers, fusion, routing, top_k
        if task_specific_layers == "auto":
            self.layers, self.cka_means = layers_from_cka(self.cka_file, self.auto_layers, self.cka_kind,
                                                          self.num_layers, self.num_tasks)
        else:
            self.layers = resolve_layers(task_specific_layers, self.num_layers)
        self.routed = {n: a for n, a in self.adapters.items() if decoder_layer_index(n) in self.layers}
        self.fused = {n: a for n, a in self.adapters.items() if n not in self.routed}

    # -- training ---------------------------------------------------------------------------
    def on_task_start(self, module, task_index: int, train_loader) -> None:
        for adapter in self.adapters.values():
            adapter.use_single(task_index)
            for slot in range(adapter.num_slots):
                adapter.lora_A[slot].requires_grad_(slot == task_index)
                adapter.lora_B[slot].requires_grad_(slot == task_index)

    def on_task_end(self, module, task_index: int, train_loader) -> None:
        for adapter in self.adapters.values():
            adapter.lora_A[task_index].requires_grad_(False)
            adapter.lora_B[task_index].requires_grad_(False)
        with model_mode(module.model, training=False):
            batches = (move_data_to_device(batch, module.model.device) for batch in train_loader)
            encode_task_anchors(self.anchors, task_index, batches, self.encoder, module.model.device)

    # -- inference --------------------------------------------------------------------------
    def on_eval_start(self, module, trained_tasks: list[int]) -> None:
        self.trained = list(trained_tasks)
        for adapter in self.routed.values():
            adapter.use_routed(self.trained)
        for adapter in self.fused.values():
            adapter.use_fused(self.trained, self.fusion, self.fold_fused)
        self.routing_picks = Counter()
        if hasattr(self.encoder, "clear_cache"):
            self.encoder.clear_cache()

    @contextmanager
    def answering(self, module, batch: dict):
        """Per-sample routing weights for this batch, set on the routed layers for this call only;
        gives the prefix plan for them."""
        weights = self.routing_weights_for(batch)
        if weights is None:
            yield None
            return
        with routed_by(self.routed.values(), weights):
            yield self.prefix_plan(weights)

    def routing_weights_for(self, batch: dict) -> torch.Tensor | None:
        """(batch, trained tasks) routing weights, or None when nothing routes (no task-specific
        layers, or no expert trained yet); counts how often the anchors pick each sample's task."""
        if not self.routed or not self.trained:
            return None
        image, text = self.encoder.encode(batch)
        similarity = self.anchors.similarity(image, text, self.trained, self.image_weight, self.text_weight)
        weights = routing_weights(similarity, self.temperature, self.top_k)
        chosen = [self.trained[pick] for pick in similarity.argmax(-1).tolist()]
        self.routing_picks.update(zip(batch["task"].tolist(), chosen))
        if self.routing == "oracle":
            # a task not trained yet has no expert of its own (the full schedule scores every task
            # at every stage): the anchors route it, and metrics.json counts it
            for row, task in enumerate(batch["task"].tolist()):
                if task in self.trained:
                    weights[row] = 0.0
                    weights[row, self.trained.index(task)] = 1.0
        return weights

    def prefix_plan(self, weights: torch.Tensor) -> PrefixPlan:
        """The prompt prefix under per-sample routing `weights`: run once up to the first routed
        layer, as basis rows from there on. A routed top layer alone is affine in the weights (they
        sum to 1): one basis row per expert, mixed per row, is exact; otherwise one basis row per
        distinct routing."""
        adapters = list(self.routed.values())
        routed_layers = {decoder_layer_index(name) for name in self.routed}
        ones = torch.ones(len(weights), dtype=weights.dtype, device=weights.device)
        if routed_layers == {self.num_layers - 1} and torch.allclose(weights.sum(-1), ones):
            experts = torch.any(weights != 0, dim=0).nonzero().flatten()
            basis = torch.nn.functional.one_hot(experts, weights.shape[1]).to(weights.dtype)  # one row per expert
            mix = weights[:, experts]
        else:
            basis, row_basis = torch.unique(weights, dim=0, return_inverse=True)
            mix = torch.nn.functional.one_hot(row_basis, len(basis)).to(weights.dtype)
        first_routed = self.decoder_layers[min(routed_layers)]
        return PrefixPlan(mix=mix, context=partial(self._widened_prefix, first_routed, basis, adapters))

    @staticmethod
    @contextmanager
    def _widened_prefix(first_routed: nn.Module, basis: torch.Tensor, adapters: list[MultiExpertLoRALinear]):
        """Within the block a batch of one becomes len(basis) rows at `first_routed`'s input,
        routed by the rows of `basis`; the batch's own routing after."""
        def widen(module, args, kwargs):
            if args:
                args = (args[0].expand(len(basis), *args[0].shape[1:]).contiguous(), *args[1:])
            else:
                hidden = kwargs["hidden_states"]
                kwargs["hidden_states"] = hidden.expand(len(basis), *hidden.shape[1:]).contiguous()
            return args, kwargs

        handle = first_routed.register_forward_pre_hook(widen, with_kwargs=True)
        try:
            with routed_by(adapters, basis):
                yield
        finally:
            handle.remove()

    def eval_facts(self, task_names: list[str]) -> dict:
        """Routing accuracy (%) per trained task: how often the anchors' most similar task is the
        sample's own (reported under oracle routing too, where it is not used), and the confusion
        counts {true task: {picked task: n}}."""
        # under DDP each rank routed its own shard of the test sets: sum the counts of all ranks
        self.routing_picks = sum(gather_objects(self.routing_picks), Counter())
        confusion: dict[int, dict[int, int]] = {}
        for (task, picked), n in sorted(self.routing_picks.items()):
            confusion.setdefault(task, {})[picked] = n
        own = {t: 100.0 * picks.get(t, 0) / sum(picks.values()) for t, picks in confusion.items() if t in self.trained}
        if not own:
            return {}
        facts = {
            "routing_accuracy": {task_names[t]: accuracy for t, accuracy in own.items()},
            "routing_confusion": {task_names[t]: {task_names[p]: n for p, n in picks.items()}
                                  for t, picks in confusion.items()},
        }
        if self.routing == "oracle":
            # the oracle has no expert for a task not yet trained: how many of its samples the anchors routed
            facts["routed_by_anchors_under_oracle"] = {task_names[t]: sum(picks.values())
                                                        for t, picks in confusion.items() if t not in self.trained}
        return facts

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The anchors (every expert is in the model's adapters)."""
        return {"anchors": self.anchors.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.anchors.load_state_dict(state["anchors"])

    # -- exports ----------------------------------------------------------------------------
    writes_unmerged_layers = True  # a merged export folds the fused layers and keeps the routed ones

    def export_settings(self, backbone: Backbone) -> dict:
        """The layers this run routed; the fused ones are folded in the checkpoint already (no copy
        of W to fold into); the own-towers encoder reads the base language model, which a merged
        checkpoint no longer holds: from the base checkpoint."""
        towers = {"anchor_encoder": {"base_model": backbone.name}} if isinstance(self.encoder, OwnTowersEncoder) else {}
        return {"task_specific_layers": list(self.layers), "fold_fused": False, **towers}

    # -- reporting --------------------------------------------------------------------------
    def run_facts(self) -> dict:
        facts = {"task_specific_layers": list(self.layers)}
        if self.cka_means is not None:
            facts["task_specific_layers_from"] = {"cka_file": str(self.cka_file), "cka_kind": self.cka_kind,
                                                  "mean_cross_task_cka": self.cka_means}
        return facts

    def trainable_parameters(self, model: nn.Module) -> int:
        """One expert in every adapted linear, plus the projector."""
        return self.expert_parameters() + self.projector_parameters(model)

    def stored_parameters(self, model: nn.Module, num_tasks: int) -> int:
        """After T tasks: T experts in each task-specific linear; in each task-general linear one
        fused pair (sum_ab, mean), or all T experts (sum_ba has no rank-r form); the projector."""
        per_expert = {n: a.lora_A[0].numel() + a.lora_B[0].numel() for n, a in self.adapters.items()}
        routed = sum(num_tasks * per_expert[n] for n in self.routed)
        fused = sum((num_tasks if self.fusion == "sum_ba" else 1) * per_expert[n] for n in self.fused)
        return routed + fused + self.projector_parameters(model)
