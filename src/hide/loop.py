"""The task loop: one function that takes a composed config through a whole task sequence.

    base model -> evaluate (row 0)
    for each stage t: method.on_task_start -> Trainer.fit -> method.on_task_end -> evaluate (row t)

and writes the accuracy matrix with every continual-learning metric after each evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from hide.checkpoint import (CHECKPOINT_DIR, RUN_CONFIG, RUN_STATE, TASK_CHECKPOINT, CheckpointError, TaskCheckpoint,
                             capture_rng, comparable_config, load_checkpoint, load_trained_state, restore_rng,
                             resume_directory, save_atomic, trained_state)
from hide.console import quiet_library_chatter
from hide.data.datamodule import ContinualDataModule
from hide.data.formats import TaskData, write_json_atomic
from hide.errors import ConfigError, HideError
from hide.distributed import barrier, gather_objects, is_main_process, world_size
from hide.metrics.captions import score_captions
from hide.metrics.qa import exact_match_score
from hide.module import ContinualModule
from hide.report import ContinualResults

log = logging.getLogger(__name__)

EVAL_SCHEDULES = ("full", "seen", "seen_next")


class PhaseTimer:
    """Wall seconds spent per phase (backbone, training, evaluation, scoring)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


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


def score_task(task: TaskData, predictions: dict[str, str]) -> dict:
    """The task's score (0-100) and its breakdown: exact match for QA, COCO caption metrics
    (mean of BLEU-1..4, METEOR, ROUGE-L, CIDEr) for captions."""
    if task.kind == "caption":
        return score_captions(predictions, {r.question_id: task.references[r.question_id] for r in task.test})
    return {"score": exact_match_score(predictions, {r.question_id: r.answer for r in task.test})}


def make_trainer(cfg: DictConfig, loggers: list, with_callbacks: bool = False,
                 extra_callbacks: list | None = None) -> pl.Trainer:
    """A fresh Trainer from cfg.trainer; `with_callbacks` adds the `callbacks` group's (e.g. the
    CKA analysis), which the training trainers get and the evaluation ones do not, and
    `extra_callbacks` (the task checkpoint)."""
    if not with_callbacks or not (cfg.get("callbacks") or extra_callbacks):
        return instantiate(cfg.trainer, logger=loggers or False)
    callbacks = [instantiate(c) for c in cfg.trainer.get("callbacks") or []]
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks + list(extra_callbacks or []))


def evaluate(trainer: pl.Trainer, module: ContinualModule, datamodule: ContinualDataModule,
             task_indices: list[int]) -> dict[int, dict[str, str]]:
    """Batched greedy answers for each task's test set: {task index: {question_id: answer}}."""
    if not task_indices:
        return {}
    loaders = [datamodule.test_dataloader(t) for t in task_indices]
    outputs = trainer.predict(module, dataloaders=loaders, return_predictions=True)
    if len(loaders) == 1:
        outputs = [outputs]
    local = [(task, qid, text) for per_loader in outputs for batch in per_loader for task, qid, text in batch]
    # Under DDP each rank answered its own shard (`ContinualDataModule.test_dataloader`): gather them all,
    # so that every rank scores the whole test sets exactly as one process would.
    predictions: dict[int, dict[str, str]] = {t: {} for t in task_indices}
    for shard in gather_objects(local):
        for task, qid, text in shard:
            predictions[task][qid] = text
    return predictions


def run_continual(cfg: DictConfig, out_dir: str | Path, on_finish=None) -> dict:
    """Run the configured method through the benchmark's task sequence; return metrics.json's content.
    With `cfg.resume` (true or a run directory) a killed run continues where its checkpoints stood
    (`hide.checkpoint`). `on_finish(module, datamodule, make_trainer)`, if given, is called with
    the final model (for experiment scripts that evaluate it further)."""
    quiet_library_chatter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console()
    timer = PhaseTimer()
    start = time.perf_counter()
    resumed_dir = resume_directory(cfg.get("resume"), out_dir, cfg)
    if resumed_dir is not None:
        out_dir = resumed_dir
    elif cfg.get("resume") not in (None, False):
        log.warning("resume=%s: no checkpoint of a run with this config under %s; starting fresh in %s",
                    cfg.resume, out_dir.parent, out_dir)
    checkpoints = out_dir / CHECKPOINT_DIR
    if resumed_dir is None and is_main_process():
        shutil.rmtree(checkpoints, ignore_errors=True)  # a fresh run in a reused (multirun) directory
        OmegaConf.save(comparable_config(cfg), out_dir / RUN_CONFIG)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)

    # settings first, so that a bad one fails before minutes of model building
    benchmark = build(cfg.benchmark, "benchmark")
    datamodule: ContinualDataModule = build(cfg.data, "data", benchmark=benchmark, seed=cfg.seed)
    method = build(cfg.method, "method")
    tasks_to_evaluate(cfg.eval.schedule, 0, 1)
    with timer("backbone"):
        backbone = build(cfg.model, "model")
    with timer("data"):
        tasks = datamodule.load(backbone)
    names = [t.name for t in tasks]
    num_tasks = len(tasks)

    # Building the tiny backbone consumes random numbers that loading it from the cache does not:
    # seed again so that adapter inits and dropout masks do not depend on the cache's state.
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    method.attach(backbone, num_tasks)
    module = ContinualModule(backbone, method, max_new_tokens=benchmark.max_new_tokens, **cfg.optim)
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values() if c is not None]

    results = ContinualResults(names, out_dir)
    results.extra.update({
        "method": method.name,
        "benchmark": type(benchmark).__name__,
        "seed": int(cfg.seed),
        "params_trainable": method.trainable_parameters(backbone.model),
        "params_stored": method.stored_parameters(backbone.model, num_tasks),
        "eval_schedule": cfg.eval.schedule,
        **method.run_facts(),
    })
    if datamodule.skipped:
        report_skipped(datamodule.skipped, results, out_dir, console)
    schedule = cfg.eval.schedule
    predictions_dir = out_dir / "predictions"
    every_n_steps = cfg.get("checkpoint", {}).get("every_n_steps")
    done_stage, earlier_seconds, resumes = -1, {}, 0
    if (checkpoints / RUN_STATE).exists():
        state = load_checkpoint(checkpoints / RUN_STATE)
        load_trained_state(module, state["trained"], checkpoints / RUN_STATE)
        method.load_state_dict(state["method"])
        results.load_state(state["results"])
        restore_rng(state["rng"])
        done_stage, earlier_seconds = state["stage"], state["timing"]
    if resumed_dir is not None:
        count_file = checkpoints / "resumes.json"
        resumes = (json.loads(count_file.read_text())["resumes"] if count_file.exists() else 0) + 1
        if is_main_process():
            write_json_atomic(count_file, {"resumes": resumes})
        console.print(f"[bold]resuming[/] {out_dir}: stages 0..{done_stage} done" if done_stage >= 0
                      else f"[bold]resuming[/] {out_dir} in its first stage")

    def timing() -> dict:
        """Wall seconds per phase, this process's plus those the processes it resumes had saved
        (the work a killed process did after its last stage is not counted)."""
        seconds = {k: earlier_seconds.get(k, 0.0) + timer.seconds.get(k, 0.0)
                   for k in {*earlier_seconds, *timer.seconds} if k != "total"}
        return {**seconds, "total": earlier_seconds.get("total", 0.0) + time.perf_counter() - start}

    def save_run_state(stage: int) -> None:
        """After stage `stage` is evaluated and written: what a resumed run continues from."""
        if is_main_process():
            phases = timing()  # one reading of the clock for the checkpoint and timing.json
            save_atomic({"stage": stage, "trained": trained_state(module), "method": method.state_dict(),
                         "results": results.state(), "rng": capture_rng(), "timing": phases},
                        checkpoints / RUN_STATE)
            (checkpoints / TASK_CHECKPOINT).unlink(missing_ok=True)
            write_timing(phases)
        barrier()

    def write_timing(phases: dict) -> None:
        write_json_atomic(out_dir / "timing.json", {"wall_seconds": phases["total"], "phases": phases,
                                                    "resumes": resumes}, indent=2)

    def evaluate_stage(stage: int) -> None:
        trained = sorted({t for s in method.stages(num_tasks)[:stage] if s for t in s})
        method.on_eval_start(module, trained)
        wanted = tasks_to_evaluate(schedule, stage, num_tasks)
        with timer("evaluation"):
            predictions = evaluate(make_trainer(cfg, []), module, datamodule, wanted)
        with timer("scoring"):
            for t, preds in predictions.items():
                results.record(stage, t, score_task(tasks[t], preds))
        for key, value in method.eval_facts(names).items():
            results.extra[key] = value  # the latest stage's; every stage's under <key>_by_stage
            results.extra.setdefault(f"{key}_by_stage", {})[str(stage)] = value
        if is_main_process():  # every rank holds the same results; one writes them
            write_json_atomic(predictions_dir / f"stage{stage}.json",
                              {names[t]: p for t, p in predictions.items()})
            results.write()
            if stage == 0 and world_size() > 1:  # the processes exist from the first Trainer call on
                console.print(f"running on {world_size()} processes")
            shown = ", ".join(f"{names[t]} {results.matrix[stage][t]:.1f}" for t in wanted)
            console.print(f"[bold]after {'base' if stage == 0 else names[stage - 1]}[/]: {shown}")
        save_run_state(stage)

    def train_stage(stage: int, train_on: list[int]) -> None:
        """Fit the stage, continuing from its task checkpoint when a killed run left one."""
        task_ckpt = checkpoints / TASK_CHECKPOINT
        saved = load_checkpoint(task_ckpt) if task_ckpt.exists() else None
        resume_from = saved["hide"] if saved is not None else None
        if resume_from is not None and resume_from["stage"] != stage:
            raise CheckpointError(f"{task_ckpt} is from stage {resume_from['stage']}, but {RUN_STATE} says stage "
                                  f"{stage} is next: the checkpoints disagree; delete {task_ckpt} to redo stage {stage}")
        if resume_from is not None and resume_from["finished"]:
            # the stage's training had ended: take its weights and generators, skip the fit
            weights = {k.removeprefix("model."): v for k, v in saved["state_dict"].items()}
            load_trained_state(module, weights, task_ckpt)
            restore_rng(resume_from["rng"])
            console.print(f"stage {stage}: training had finished before the interruption ({task_ckpt})")
            return
        trainer = make_trainer(cfg, loggers, with_callbacks=True,
                               extra_callbacks=[TaskCheckpoint(task_ckpt, every_n_steps)])
        if resume_from is not None:
            datamodule.resume_at(*resume_from["data_position"])
            console.print(f"stage {stage}: continuing from {task_ckpt} (epoch {resume_from['data_position'][0]}, "
                          f"batch {resume_from['data_position'][1]})")
        module.checkpoint_stage = stage
        with timer("training"):
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(task_ckpt) if resume_from else None,
                        weights_only=False)  # our own file: it holds the generators' states

    if done_stage < 0:
        evaluate_stage(0)
    for stage, train_on in enumerate(method.stages(num_tasks), start=1):
        if stage <= done_stage:
            continue  # finished before a resume: its weights, method state and results are restored
        if train_on is None:
            continue  # no model exists at this stage (joint training): the row stays absent
        if not train_on:
            results.copy_row(stage - 1, stage)  # nothing trained: the model is the previous one
            continue
        console.rule(f"stage {stage}/{num_tasks}: training on {', '.join(names[t] for t in train_on)}")
        module.current_task = train_on[-1]
        datamodule.set_stage(stage, train_on, method.extra_train_items(datamodule.tasks, train_on))
        method.on_task_start(module, train_on[-1])
        train_stage(stage, train_on)
        method.on_task_end(module, train_on[-1], datamodule.full_train_dataloader())
        evaluate_stage(stage)

    if is_main_process():
        results.write()
        phases = timing()
        write_timing(phases)
        heatmap = results.heatmap(title=f"{method.name} on {type(benchmark).__name__}")
        for logger in loggers:
            log_to_wandb(logger, results, heatmap)
        console.print(results.table())
        console.print(results.summary_table())
        console.print(f"results in {out_dir} ({phases['total'] / 60:.1f} min)")
    if on_finish is not None:
        on_finish(module, datamodule, lambda: make_trainer(cfg, []))
    return results.to_dict()


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


def report_skipped(skipped: list, results: ContinualResults, out_dir: Path, console: Console) -> None:
    """Records left out under data.on_bad_record=skip: count and ids per task in metrics.json,
    every reason in skipped_records.json, one line on the console."""
    by_task: dict[str, list] = {}
    for task, bad in skipped:
        by_task.setdefault(task, []).append(bad)
    results.extra["skipped_records"] = {task: {"count": len(bad), "ids": [b.id for b in bad]}
                                        for task, bad in by_task.items()}
    if is_main_process():
        write_json_atomic(out_dir / "skipped_records.json",
                          [{"task": task, **dataclasses.asdict(b)} for task, b in skipped], indent=2)
    counts = ", ".join(f"{task} {len(bad)}" for task, bad in by_task.items())
    console.print(f"[yellow]data.on_bad_record=skip left out {len(skipped)} bad records[/] ({counts}); "
                  f"ids in metrics.json, reasons in {out_dir / 'skipped_records.json'}")


def log_to_wandb(logger, results: ContinualResults, heatmap: Path) -> None:
    """The matrix as a wandb table and the heatmap as an image, when that logger is on."""
    if type(logger).__name__ != "WandbLogger":
        return
    rows = [["base" if s == 0 else results.tasks[s - 1]] + row for s, row in enumerate(results.matrix)]
    logger.log_table(key="accuracy_matrix", columns=["after"] + results.tasks, data=rows)
    logger.log_image(key="accuracy_matrix_heatmap", images=[str(heatmap)])
    logger.log_metrics({k: v for k, v in results.metrics().items() if v is not None})
