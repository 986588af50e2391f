"""One run's parts, wired in one place: `build_run(cfg)` turns a composed config into the benchmark,
its data, the method, the backbone with the method's adapters and the LightningModule that trains
them. The task loop (`hide.loop`), the tests, the benchmarks and the experiment scripts all start
from it, so that a run is always put together the same way (settings checked before minutes of
model building, the seed set again after it).
"""

from __future__ import annotations

import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from hide.data.collate import EvalCollator
from hide.data.datamodule import ContinualDataModule
from hide.data.formats import TaskData
from hide.data.retention import RetentionSet
from hide.distributed import check_strategy, gather_objects
from hide.errors import ConfigError, HideError
from hide.methods.base import ContinualMethod
from hide.models.backbone import Backbone
from hide.module import ContinualModule

EVAL_SCHEDULES = ("full", "seen", "seen_next")


@dataclass
class Run:
    """Everything a run is made of. `tasks` are the loaded tasks (`datamodule.tasks`)."""

    cfg: DictConfig
    benchmark: object
    datamodule: ContinualDataModule
    method: ContinualMethod
    backbone: Backbone
    module: ContinualModule
    tasks: list[TaskData]
    loggers: list = field(default_factory=list)
    retention: list[RetentionSet] = field(default_factory=list)  # eval.retention's sets, loaded

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def trainer(self, for_training: bool = False, extra_callbacks: list | None = None) -> pl.Trainer:
        """A fresh Trainer from cfg.trainer. A training one gets the loggers, the `callbacks`
        group's callbacks (e.g. the CKA analysis) and `extra_callbacks` (the task checkpoint); an
        evaluation one gets none of them."""
        if not for_training:
            return instantiate(self.cfg.trainer, logger=False)
        if not (self.cfg.get("callbacks") or extra_callbacks):
            return instantiate(self.cfg.trainer, logger=self.loggers or False)
        callbacks = [instantiate(c) for c in self.cfg.trainer.get("callbacks") or []]
        callbacks += [instantiate(c) for c in (self.cfg.get("callbacks") or {}).values() if c is not None]
        return instantiate(self.cfg.trainer, logger=self.loggers or False,
                           callbacks=callbacks + list(extra_callbacks or []))

    def to_compute_device(self) -> torch.device:
        """Put the model where Lightning runs it in this process (cuda:<local rank>, or the CPU)
        and return that device. Lightning's strategies (FSDP's aside) end each fit and predict
        with the model moved back to the CPU; the methods' own passes over a task's data between
        fits (HiDe's anchors, whose cached text features then stay on one device, EWC's Fisher
        information, KeepLoRA's gradients) must run on the accelerator, and under DDP their
        all-reduces need tensors on the process group's device."""
        trainer = self.module._trainer or self.trainer()
        device = trainer.strategy.root_device
        self.module.to(device)
        return device

    def predict(self, task_indices: list[int]) -> dict[int, dict[str, str]]:
        """Batched greedy answers for each task's test set: {task index: {question_id: answer}}."""
        if not task_indices:
            return {}
        return self._answers([self.datamodule.test_dataloader(t) for t in task_indices], task_indices)

    def answer_records(self, records: list, max_new_tokens: int, prompt_suffix: str = "",
                       image_processing: str = "pad") -> dict[str, str]:
        """Batched greedy answers to test prompts outside the benchmark (a general-ability set)."""
        collate = EvalCollator(self.datamodule.encoder, prompt_suffix, image_processing, max_new_tokens)
        loader = self.datamodule.records_dataloader(records, collate=collate)
        return self._answers([loader], [-1])[-1]

    def _answers(self, loaders: list, task_indices: list[int]) -> dict[int, dict[str, str]]:
        outputs = self.trainer().predict(self.module, dataloaders=loaders, return_predictions=True)
        if len(loaders) == 1:
            outputs = [outputs]
        local = [(task, qid, text) for per_loader in outputs for batch in per_loader for task, qid, text in batch]
        # Under DDP each rank answered its own shard (`ContinualDataModule.test_dataloader`): gather
        # them all, so that every rank scores the whole test sets exactly as one process would, in
        # the test files' order.
        said = {(task, qid): text for shard in gather_objects(local) for task, qid, text in shard}
        return {t: {record.question_id: said[(t, record.question_id)] for _, record in loader.dataset}
                for t, loader in zip(task_indices, loaders)}


def retention_names(cfg: DictConfig, benchmark) -> list[str]:
    """The general-ability sets eval.retention asks for: a list of names in retention_sets, or
    "auto" (the benchmark's own: the synthetic benchmark's `general`, none for UCIT)."""
    spec = cfg.eval.get("retention", "auto")
    known = list(cfg.get("retention_sets") or {})
    # auto: the benchmark's own sets that the config defines (a run saved before they existed has none)
    names = [n for n in benchmark.general_ability if n in known] if spec == "auto" else list(spec or [])
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"eval.retention names unknown set(s) {unknown}; choose from {known} (retention_sets), "
                          f"or auto")
    return names


def build_run(cfg: DictConfig, timer=None) -> Run:
    """The run `cfg` describes. Settings are built first, so that a bad one fails before minutes
    of model building; `timer(phase)`, if given, times the backbone and the data."""
    timed = timer or (lambda phase: nullcontext())
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    benchmark = build(cfg.benchmark, "benchmark")
    datamodule: ContinualDataModule = build(cfg.data, "data", benchmark=benchmark, seed=cfg.seed)
    method = build(cfg.method, "method")
    tasks_to_evaluate(cfg.eval.schedule, 0, 1)  # a bad eval.schedule fails here, not after training
    check_strategy(cfg.trainer)
    retention = retention_names(cfg, benchmark)
    with timed("backbone"):
        backbone = build(cfg.model, "model")
    with timed("data"):
        tasks = datamodule.load(backbone)
        retention_sets = [build(cfg.retention_sets[name], f"retention_sets.{name}") for name in retention]
    # Building the tiny backbone consumes random numbers that loading it from the cache does not:
    # seed again so that adapter inits and dropout masks do not depend on the cache's state.
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    method.attach(backbone, len(tasks))
    module = ContinualModule(backbone, method, max_new_tokens=benchmark.max_new_tokens, **cfg.optim)
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values() if c is not None]
    return Run(cfg=cfg, benchmark=benchmark, datamodule=datamodule, method=method, backbone=backbone,
               module=module, tasks=tasks, loggers=loggers, retention=retention_sets)


def trained_tasks(method: ContinualMethod, num_tasks: int, stage: int) -> list[int]:
    """The tasks the model after `stage` (0 = the base model) was trained on, in order."""
    return sorted({t for tasks in method.stages(num_tasks)[:stage] if tasks for t in tasks})


def tasks_to_evaluate(schedule: str, stage: int, num_tasks: int) -> list[int]:
    """Which tasks are scored after `stage` (0 = the base model). `full` scores every task at every
    stage; `seen` only the tasks trained so far; `seen_next` those plus the next one (and the base
    model on every task), which still gives FWT."""
    if schedule == "full" or (schedule == "seen_next" and stage == 0) or stage == num_tasks:
        return list(range(num_tasks))
    if schedule == "seen":
        return list(range(stage))
    if schedule == "seen_next":
        return list(range(min(stage + 1, num_tasks)))
    raise ConfigError(f"eval.schedule={schedule!r}; choose one of {EVAL_SCHEDULES}")


def build(node: DictConfig, key: str, **kwargs):
    """instantiate(node), raising the project's own errors as they are: Hydra wraps a constructor's
    exception in a multi-line InstantiationException, and a bad setting should read as one line.
    Only settings are reported that way: the project's own validation errors (`HideError`) and
    a keyword the constructor does not take. Any other exception from inside a constructor is a
    fault in the code and keeps Hydra's exception, with its traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, HideError):
            raise cause from None
        if isinstance(cause, TypeError) and _raised_by_the_call_itself(cause):
            raise ConfigError(f"{key}: {cause}") from None  # e.g. +method.nope=1
        raise


def _raised_by_the_call_itself(error: BaseException) -> bool:
    """Python refuses a call's arguments before the callee runs, so such an error's traceback ends
    in the caller (Hydra); an error from the constructor's body has a frame of the constructor."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and "hydra" in Path(frames[-1].filename).parts
