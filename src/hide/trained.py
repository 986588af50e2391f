"""A finished run's model, rebuilt for use: `hide.load_run(run_dir, stage=None)`.

    model = hide.load_run("outputs/hide-synth/2026-12-02_10-00-00")        # the last stage
    model.predict(["cat.png", image], ["What is in the image?", "Describe it."])

The model is rebuilt from the run's own config (`config_resolved.yaml`) and the stage's saved
state (`checkpoints/stage<t>.pt`, or `run_state.pt` for the last finished stage), with the
method's inference in place (fused layers and per-sample routing, a router, O-LoRA's slots). It
answers with the evaluation's prompt, batching and greedy decoding, so its answers on the run's
own test sets are the run's `predictions/stage<t>.json`. A merged export that keeps routed layers
apart (`python -m hide.export --format merged`) is read back the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from hide.checkpoint import (CHECKPOINT_DIR, RUN_CONFIG, RUN_STATE, CheckpointError, load_checkpoint,
                             load_trained_state, stage_model_file)
from hide.console import quiet_library_chatter
from hide.data.collate import Encoder, EvalCollator
from hide.data.formats import TaskData, TaskSpec, TestRecord
from hide.errors import ConfigError
from hide.models.backbone import load_pretrained_backbone
from hide.module import ContinualModule
from hide.run import Run, build_run, trained_tasks

UNKNOWN_TASK = -1  # the task index of a question that belongs to no task of the run
# Beside a merged export whose method keeps some layers apart (`ContinualMethod.
# writes_unmerged_layers`): how to rebuild it, each task's expert in those layers as a peft adapter
# named by the task, and the method's state.
EXPORT_FILE = "hide_export.json"
EXPERTS_DIR = "experts"
METHOD_STATE = "method_state.pt"


def run_config(run_dir: Path) -> DictConfig:
    """The config a run was trained with, as `train.py` saved it, set up to rebuild its model (no
    resume, no loggers)."""
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: it has no {RUN_CONFIG} (train.py writes one "
                              f"at a run's start)")
    cfg = OmegaConf.load(path)
    with open_dict(cfg):
        cfg.resume = False
        cfg.logger = {}
    return cfg


def model_file(run_dir: Path, run: Run, stage: int | None) -> tuple[int, Path, dict | None]:
    """The stage whose model is asked for (None: the last finished one), the file holding it, and
    that file's content when it is the run state (read here already). A stage that trained
    nothing has the model of the stage before it."""
    folder = run_dir / CHECKPOINT_DIR
    if not (folder / RUN_STATE).is_file():
        raise CheckpointError(f"{run_dir} has no finished stage ({folder / RUN_STATE} does not exist): the run "
                              f"stopped before its base model was evaluated")
    run_state = load_checkpoint(folder / RUN_STATE)
    finished = int(run_state["stage"])
    stages = run.method.stages(len(run.tasks))
    last = finished
    while last < len(stages) and stages[last] == []:  # later stages that trained nothing: same model
        last += 1
    wanted = last if stage is None else int(stage)
    if not 0 <= wanted <= last:
        raise CheckpointError(f"stage={wanted}: {run_dir} has stages 0..{last} finished (of {len(stages)})")
    if wanted > 0 and stages[wanted - 1] is None:
        raise CheckpointError(f"stage={wanted}: {run.method.name} has no model after stage {wanted} "
                              f"(it trains once on every task; its model is stage {len(stages)})")
    saved = wanted
    while saved > 0 and stages[saved - 1] == []:
        saved -= 1
    if saved == finished:
        return wanted, folder / RUN_STATE, run_state
    path = folder / stage_model_file(saved)
    if not path.is_file():
        raise CheckpointError(f"stage={wanted}: {path} does not exist (a run with checkpoint.keep_stage_models=false "
                              f"keeps only its latest model, or the file was removed); its last finished stage, "
                              f"{finished}, can be loaded")
    return wanted, path, None


@dataclass
class TrainedModel:
    """The model of one stage of a finished run (or of a merged export that keeps routing): the
    LightningModule with the method's inference in place, and what its prompts are made with.
    `run` is the rebuilt run (config, benchmark, data) when the model comes from a run directory."""

    module: ContinualModule
    encoder: Encoder
    task_names: list[str]
    stage: int
    source: Path
    eval_batch_size: int
    make_trainer: Callable[[], pl.Trainer]
    trained: list[int]  # the tasks (indices into task_names) the model was trained on
    run: Run | None = None

    @property
    def run_dir(self) -> Path:
        return self.source

    def predict(self, images: list, instructions: list[str], batch_size: int | None = None) -> list[str]:
        """Greedy answers, one per (image, instruction): an image is a file path, a PIL image or
        None (a text-only question); an instruction is the question alone (the prompt template and
        the image token are added as in training). `batch_size` defaults to the run's
        `data.eval_batch_size`."""
        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images for {len(instructions)} instructions")
        records = [TestRecord(question_id=str(i), image=image if image is None or isinstance(image, Image.Image)
                              else Path(image), text=text, answer="") for i, (image, text) in enumerate(zip(images, instructions))]
        answers = self._answer([(UNKNOWN_TASK, r) for r in records], batch_size)
        return [answers[r.question_id] for r in records]

    def predict_task(self, task: TaskData, task_index: int = UNKNOWN_TASK, batch_size: int | None = None,
                     spec: TaskSpec | None = None) -> dict[str, str]:
        """{question_id: answer} on a task's test set. `task_index`: its index among the run's
        tasks, if it is one of them (oracle routing and routing counts use it). `spec`: the task's
        evaluation settings (prompt suffix, image processing, budget; default: the task's own)."""
        collate = EvalCollator.for_task(self.encoder, spec or task.spec)
        return self._answer([(task_index, r) for r in task.test], batch_size, collate)

    def predict_records(self, records: list[TestRecord], batch_size: int | None = None, prompt_suffix: str = "",
                        image_processing: str = "pad", max_new_tokens: int | None = None) -> dict[str, str]:
        """{question_id: answer} on test records outside the run's tasks, with a general-ability
        set's settings (prompt suffix, image processing, budget: `EvalCollator`'s)."""
        collate = EvalCollator(self.encoder, prompt_suffix, image_processing, max_new_tokens)
        return self._answer([(UNKNOWN_TASK, r) for r in records], batch_size, collate)

    def _answer(self, items: list, batch_size: int | None, collate: EvalCollator | None = None) -> dict[str, str]:
        if not items:
            return {}
        loader = DataLoader(items, batch_size=batch_size or self.eval_batch_size, shuffle=False,
                            collate_fn=collate or EvalCollator(self.encoder))
        outputs = self.make_trainer().predict(self.module, dataloaders=loader, return_predictions=True)
        return {qid: text for batch in outputs for _, qid, text in batch}


def load_run(path, stage: int | None = None, overrides: dict | None = None) -> TrainedModel:
    """The model of `stage` (0: the base model; None: the last finished stage) of the run in the
    directory `path`, or the model a merged export with routing (`python -m hide.export`) holds.
    `overrides`: config settings to change for inference only, as {"dotted.key": value} (e.g.
    {"data.eval_batch_size": 8, "trainer.accelerator": "cpu"})."""
    quiet_library_chatter()
    path = Path(path).expanduser()
    if (path / EXPORT_FILE).is_file():
        return load_export(path, stage, overrides)
    cfg = run_config(path)
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, force_add=True)
    run = build_run(cfg)
    wanted, file, state = model_file(path, run, stage)
    state = state if state is not None else load_checkpoint(file)
    load_trained_state(run.module, state["trained"], file)
    run.method.load_state_dict(state["method"])
    trained = trained_tasks(run.method, len(run.tasks), wanted)
    run.method.on_eval_start(run.module, trained)
    run.module.eval()
    return TrainedModel(module=run.module, encoder=run.datamodule.encoder, task_names=run.task_names, stage=wanted,
                        source=path, eval_batch_size=run.datamodule.eval_batch_size, make_trainer=run.trainer,
                        trained=trained, run=run)


def load_export(folder: Path, stage: int | None = None, overrides: dict | None = None) -> TrainedModel:
    """A merged export whose method keeps layers apart (`EXPORT_FILE` beside the checkpoint): the
    merged checkpoint, the method rebuilt from its saved settings, and what it wrote beside it.
    `overrides`: "trainer.<key>" and "data.eval_batch_size" (the run's own by default)."""
    saved = json.loads((folder / EXPORT_FILE).read_text())
    if stage not in (None, saved["stage"]):
        raise CheckpointError(f"stage={stage}: the export in {folder} holds the model of stage {saved['stage']} only")
    trainer, eval_batch_size = dict(saved["trainer"]), saved["eval_batch_size"]
    for key, value in (overrides or {}).items():
        if key.startswith("trainer."):
            trainer[key.removeprefix("trainer.")] = value
        elif key == "data.eval_batch_size":
            eval_batch_size = value
        else:
            raise ConfigError(f"{key}: an export's model takes only trainer.* and data.eval_batch_size overrides")
    backbone = load_pretrained_backbone(str(folder), dtype=saved["dtype"])
    method = instantiate(saved["method"])
    method.attach(backbone, len(saved["tasks"]))
    with torch.no_grad():
        for task in saved["trained"]:
            weights = load_file(folder / EXPERTS_DIR / saved["experts"][str(task)] / "adapter_model.safetensors")
            for name in saved["unmerged"]:
                key = f"base_model.model.{backbone.family.language_model_path}.{name}"  # peft's names of the layer's weights
                method.adapters[name].lora_A[task].copy_(weights[f"{key}.lora_A.weight"])
                method.adapters[name].lora_B[task].copy_(weights[f"{key}.lora_B.weight"])
    method.load_state_dict(torch.load(folder / METHOD_STATE, map_location="cpu", weights_only=False))
    module = ContinualModule(backbone, method, max_new_tokens=saved["max_new_tokens"])
    method.on_eval_start(module, saved["trained"])
    module.eval()
    encoder = Encoder.for_backbone(backbone, saved["max_length"])
    return TrainedModel(module=module, encoder=encoder, task_names=saved["tasks"], stage=saved["stage"],
                        source=folder, eval_batch_size=eval_batch_size,
                        make_trainer=lambda: instantiate(trainer, logger=False), trained=saved["trained"])
