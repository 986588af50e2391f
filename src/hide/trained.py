"""A finished run's model, rebuilt for use: `hide.load_run(run_dir, stage=None)`.

    model = hide.load_run("outputs/hide-synth/2026-12-02_10-00-00")        # the last stage
    model.predict(["cat.png", image], ["What is in the image?", "Describe it."])

The model is rebuilt from the run's own config (`config_resolved.yaml`) and the stage's saved
state (`checkpoints/stage<t>.pt`, or `run_state.pt` for the last finished stage), with the
method's inference in place (HiDe's fused layers and per-sample routing, MoELoRA's router,
O-LoRA's slots). It answers with the evaluation's prompt, batching and greedy decoding, so its
answers on the run's own test sets are the run's `predictions/stage<t>.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image
from torch.utils.data import DataLoader

from hide.checkpoint import (CHECKPOINT_DIR, RUN_CONFIG, RUN_STATE, CheckpointError, load_checkpoint,
                             load_trained_state, stage_model_file)
from hide.console import quiet_library_chatter
from hide.data.collate import EvalCollator
from hide.data.formats import TaskData, TestRecord
from hide.run import Run, build_run

UNKNOWN_TASK = -1  # the task index of a question that belongs to no task of the run


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


def trained_stages(run: Run) -> list[list[int] | None]:
    """What each stage 1..T trained on (the method's `stages`)."""
    return run.method.stages(len(run.tasks))


def model_file(run_dir: Path, run: Run, stage: int | None) -> tuple[int, Path]:
    """The stage whose model is asked for (None: the last finished one) and the file holding it.
    A stage that trained nothing has the model of the stage before it."""
    folder = run_dir / CHECKPOINT_DIR
    if not (folder / RUN_STATE).is_file():
        raise CheckpointError(f"{run_dir} has no finished stage ({folder / RUN_STATE} does not exist): the run "
                              f"stopped before its base model was evaluated")
    finished = int(load_checkpoint(folder / RUN_STATE)["stage"])
    stages = trained_stages(run)
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
        return wanted, folder / RUN_STATE
    path = folder / stage_model_file(saved)
    if not path.is_file():
        raise CheckpointError(f"stage={wanted}: {path} does not exist (the run kept only its latest model: "
                              f"checkpoint.keep_stage_models=false); its last finished stage is {finished}")
    return wanted, path


@dataclass
class TrainedModel:
    """The model of one stage of a finished run; `run` is the rebuilt run (config, method,
    backbone, its tasks)."""

    run: Run
    run_dir: Path
    stage: int

    @property
    def task_names(self) -> list[str]:
        return self.run.task_names

    def predict(self, images: list, instructions: list[str], batch_size: int | None = None) -> list[str]:
        """Greedy answers, one per (image, instruction): an image is a file path or a PIL image;
        an instruction is the question alone (the prompt template and the image token are added
        as in training). `batch_size` defaults to the run's `data.eval_batch_size`."""
        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images for {len(instructions)} instructions")
        records = [TestRecord(question_id=str(i), image=image if isinstance(image, Image.Image) else Path(image),
                              text=text, answer="") for i, (image, text) in enumerate(zip(images, instructions))]
        answers = self._answer([(UNKNOWN_TASK, r) for r in records], batch_size)
        return [answers[r.question_id] for r in records]

    def predict_task(self, task: TaskData, task_index: int = UNKNOWN_TASK,
                     batch_size: int | None = None) -> dict[str, str]:
        """{question_id: answer} on a task's test set. `task_index`: its index among the run's
        tasks, if it is one of them (HiDe's oracle routing and its routing counts use it)."""
        return self._answer([(task_index, r) for r in task.test], batch_size)

    def _answer(self, items: list, batch_size: int | None) -> dict[str, str]:
        if not items:
            return {}
        datamodule = self.run.datamodule
        loader = DataLoader(items, batch_size=batch_size or datamodule.eval_batch_size, shuffle=False,
                            collate_fn=EvalCollator(datamodule.encoder))
        outputs = self.run.trainer().predict(self.run.module, dataloaders=loader, return_predictions=True)
        return {qid: text for batch in outputs for _, qid, text in batch}


def load_run(run_dir, stage: int | None = None, overrides: dict | None = None) -> TrainedModel:
    """The model of `stage` (0: the base model; None: the last finished stage) of the run in
    `run_dir`. `overrides`: config settings to change for inference only, as {"dotted.key": value}
    (e.g. {"data.eval_batch_size": 8, "trainer.accelerator": "cpu"})."""
    quiet_library_chatter()
    run_dir = Path(run_dir).expanduser()
    cfg = run_config(run_dir)
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, force_add=True)
    run = build_run(cfg)
    wanted, path = model_file(run_dir, run, stage)
    state = load_checkpoint(path)
    load_trained_state(run.module, state["trained"], path)
    run.method.load_state_dict(state["method"])
    trained = sorted({t for s in trained_stages(run)[:wanted] if s for t in s})
    run.method.on_eval_start(run.module, trained)
    run.module.eval()
    return TrainedModel(run=run, run_dir=run_dir, stage=wanted)
