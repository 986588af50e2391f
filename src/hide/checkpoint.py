"""Resuming a killed run: what is saved, when, and which run a `resume=...` continues.

Two checkpoints live in `<run dir>/checkpoints/`, each written to a temporary file and renamed into
place, so a kill in the middle of a write leaves the previous file, never a torn one:

- `run_state.pt`, after every stage's evaluation: what the method trained (adapters, projector:
  `ContinualMethod.checkpoint_keys`), the method's own state (EWC's Fisher, replay's finished
  tasks, per-task anchors: `ContinualMethod.state_dict`), the results so far, the random
  number generators and the time spent. A resumed run restores it and skips the finished stages.
- `stage<t>.pt`, after stage t's evaluation (unless `checkpoint.keep_stage_models=false`): the
  model of that stage, its trained state and the method's state, which `hide.load_run` rebuilds.
- `task.ckpt`, every `checkpoint.every_n_steps` optimizer steps while a stage trains and once when
  its training ends: a Lightning checkpoint (the same trained state, the optimizer, the learning
  rate schedule, the loop's epoch and step) plus the data position and the generators. A resumed
  run hands it to `Trainer.fit(ckpt_path=...)`, which continues at the next batch.

The frozen backbone is never saved: the config rebuilds it (from the cache or the same seed), so a
checkpoint costs the adapters, not the 7B model.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from hide.atomic import atomic_path
from hide.errors import HideError

CHECKPOINT_DIR = "checkpoints"
RUN_STATE = "run_state.pt"
TASK_CHECKPOINT = "task.ckpt"
RUN_CONFIG = "config_resolved.yaml"
NOT_COMPARED = ("resume", "hydra", "checkpoint")  # settings a resumed run may change (no result depends on them)


def stage_model_file(stage: int) -> str:
    return f"stage{stage}.pt"


class CheckpointError(HideError, RuntimeError):
    """A checkpoint or run directory cannot be resumed from; the message says which and why."""


# -- random number generators -----------------------------------------------------------------
def capture_rng() -> dict:
    """Every generator a training step or an end-of-task hook may draw from (dropout, shuffles)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- files --------------------------------------------------------------------------------------
def kill_point(name: str) -> None:
    """Where tests SIGKILL a real run (tests/test_resume.py): with HIDE_KILL_AT=<name>:<n> in the
    environment the process kills itself the n-th time it passes `name`. A no-op otherwise."""
    wanted = os.environ.get("HIDE_KILL_AT")
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    kill_point.passed[name] = kill_point.passed.get(name, 0) + 1
    if kill_point.passed[name] >= int(count or 1):
        os.kill(os.getpid(), 9)


kill_point.passed = {}


def save_atomic(obj, path: Path) -> None:
    """torch.save through `atomic_path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        kill_point("checkpoint_write")


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by this module; an unreadable one is an error that says what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a bad file
        raise CheckpointError(
            f"The checkpoint {path} cannot be read ({type(err).__name__}: {err}). Checkpoints are written "
            f"through a rename, so this file was damaged after it was written (disk, copy). Delete it to "
            f"resume from the stage before it (or the run's start), or start a fresh run without resume."
        ) from err


def trained_state(module) -> dict[str, torch.Tensor]:
    """The model's state_dict entries that the method trains or adds (`checkpoint_keys`)."""
    keys = module.method.checkpoint_keys(module.model)
    return {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items() if k in keys}


def load_trained_state(module, state: dict[str, torch.Tensor], where: Path) -> None:
    expected = module.method.checkpoint_keys(module.model)
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CheckpointError(
            f"{where} does not fit this run's model (missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}): it was written by another method "
            f"or model. Resume with the run's own settings, or start a fresh run.")
    module.model.load_state_dict(state, strict=False)


# -- which run to continue -------------------------------------------------------------------
def comparable_config(cfg: DictConfig) -> dict:
    plain = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in plain.items() if k not in NOT_COMPARED}


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def config_differences(saved: dict, current: dict) -> list[str]:
    a, b = dict(_flatten(saved)), dict(_flatten(current))
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, "<unset>") != b.get(k, "<unset>")]


def has_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / CHECKPOINT_DIR
    return (folder / RUN_STATE).exists() or (folder / TASK_CHECKPOINT).exists()


def resume_directory(resume, out_dir: Path, cfg: DictConfig) -> Path | None:
    """The run directory to continue, or None to start fresh in `out_dir`.

    resume=false: start fresh. resume=true: this run's own directory if it holds a checkpoint (a
    multirun job's fixed directory), else the newest sibling directory (`python train.py`'s
    timestamped ones) whose run had the same config; none: start fresh, with a warning.
    resume=<path>: that run directory, which must hold a checkpoint of the same config."""
    if resume in (None, False) or str(resume).lower() == "false":
        return None
    current = comparable_config(cfg)
    if resume is True or str(resume).lower() == "true":
        siblings = [p for p in out_dir.parent.iterdir() if p.is_dir() and p != out_dir] if out_dir.parent.exists() else []
        for run_dir in [out_dir] + sorted(siblings, key=lambda p: p.stat().st_mtime, reverse=True):
            saved = run_dir / RUN_CONFIG
            if has_checkpoint(run_dir) and saved.exists() and not config_differences(
                    OmegaConf.to_container(OmegaConf.load(saved)), current):
                return run_dir
        return None
    run_dir = Path(str(resume)).expanduser()
    if not has_checkpoint(run_dir):
        raise CheckpointError(
            f"resume={resume}: {run_dir} holds no checkpoint ({run_dir / CHECKPOINT_DIR}/{RUN_STATE} or "
            f"{TASK_CHECKPOINT}); give the directory of a run that was started by this version of train.py, "
            f"or resume=true to find one, or resume=false to start fresh.")
    saved = run_dir / RUN_CONFIG
    differences = config_differences(OmegaConf.to_container(OmegaConf.load(saved)), current) if saved.exists() \
        else ["(no config_resolved.yaml)"]
    if differences:
        raise CheckpointError(
            f"resume={resume}: the run in {run_dir} was started with other settings ({'; '.join(differences[:8])}"
            f"{'; ...' if len(differences) > 8 else ''}). Resume with the same overrides it was started with, "
            f"or start a fresh run.")
    return run_dir


# -- the mid-task checkpoint ------------------------------------------------------------------
class TaskCheckpoint(pl.Callback):
    """Writes `task.ckpt` every `every_n_steps` optimizer steps and when a stage's training ends
    (Lightning's `ModelCheckpoint` writes in place, and a kill mid-write would leave a torn file),
    and holds what Lightning does not restore by itself: the data position within the epoch and
    the random generators. Both travel in the checkpoint under "hide", with the stage, its task
    and whether its training had finished; a fit given the checkpoint continues at the next batch
    with the generators where the killed run had them."""

    def __init__(self, path: Path, every_n_steps: int | None, stage: int = 0, task: int = 0):
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.stage, self.task = stage, task
        self.last_saved = -1
        self.finished = False
        self.epoch_batches = 0  # batches trained in the current epoch: the data position
        self.resume_batches = 0  # batches of the current epoch a resumed fit had trained before
        self.pending_rng: dict | None = None  # the generators a resumed fit starts from

    # -- the checkpoint's own part ------------------------------------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["hide"] = {"stage": self.stage, "task": self.task, "finished": self.finished,
                              "data_position": (trainer.current_epoch, self.epoch_batches), "rng": capture_rng()}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.pending_rng = checkpoint["hide"]["rng"]
        self.resume_batches = checkpoint["hide"]["data_position"][1]

    # -- the data position and the generators -------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self.last_saved = trainer.global_step  # a resumed fit starts at a saved step
        # A resumed fit draws dropout masks from where the checkpointed run stood.
        if self.pending_rng is not None:
            restore_rng(self.pending_rng)
            self.pending_rng = None
            if self.resume_batches >= trainer.num_training_batches:
                # The checkpoint closed an epoch. After it, the uninterrupted run started the next
                # epoch's DataLoader iterator, which draws its base seed from the global generator;
                # here that iterator was made before the generators were restored: replay the draw.
                torch.empty((), dtype=torch.int64).random_()
                self.resume_batches = 0  # and the next epoch starts at its first batch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_batches, self.resume_batches = self.resume_batches, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.epoch_batches += 1
        # Restarted from a checkpoint that closed an epoch, Lightning 2.6 runs the next epoch
        # without counting it as started; a checkpoint taken in it would then make a second
        # restart run that epoch again. Count it (a no-op whenever Lightning already has).
        for counter in (trainer.fit_loop.epoch_progress.current, trainer.fit_loop.epoch_progress.total):
            counter.ready = max(counter.ready, trainer.current_epoch + 1)
            counter.started = max(counter.started, trainer.current_epoch + 1)
        kill_point("train_batch")

    # -- writing ------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step != self.last_saved and step % self.every_n_steps == 0:
            self.save(trainer, finished=False)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer, finished=True)

    def save(self, trainer, finished: bool) -> None:
        self.finished = finished
        with atomic_path(self.path, commit=trainer.is_global_zero) as tmp:
            trainer.save_checkpoint(tmp, weights_only=False)  # the loop's state and the generators too
            if trainer.is_global_zero:
                kill_point("checkpoint_write")
        trainer.strategy.barrier("task_checkpoint")
        self.last_saved = trainer.global_step
