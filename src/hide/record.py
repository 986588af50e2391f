"""What a run leaves on disk and what a resumed run picks up from it: the run directory, the
results (metrics.json, matrix.csv, each stage's predictions), the time spent, and the run state
saved after every stage (`hide.checkpoint`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from hide.atomic import write_json_atomic
from hide.checkpoint import (CHECKPOINT_DIR, RUN_CONFIG, RUN_STATE, TASK_CHECKPOINT, CheckpointError, capture_rng,
                             comparable_config,
                             load_checkpoint, load_trained_state, restore_rng, resume_directory, save_atomic,
                             stage_model_file, trained_state)
from hide.distributed import barrier, is_main_process, world_size
from hide.report import ContinualResults

log = logging.getLogger(__name__)


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


class RunRecord:
    """The run directory of one config: the constructor picks it (a fresh one, or the run that
    `cfg.resume` continues), `start` sets up the results of a built run and restores what a
    killed run had finished, `stage_done` writes a stage's results and the state to resume from,
    `finish` writes the final files."""

    def __init__(self, cfg: DictConfig, out_dir: str | Path):
        self.console = Console()
        self.timer = PhaseTimer()
        self.started = time.perf_counter()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        resumed_dir = resume_directory(cfg.get("resume"), out_dir, cfg)
        if resumed_dir is None and cfg.get("resume") not in (None, False):
            log.warning("resume=%s: no checkpoint of a run with this config under %s; starting fresh in %s",
                        cfg.resume, out_dir.parent, out_dir)
        self.resumed = resumed_dir is not None
        self.out_dir = resumed_dir or out_dir
        self.checkpoints = self.out_dir / CHECKPOINT_DIR
        self.task_checkpoint = self.checkpoints / TASK_CHECKPOINT
        if not self.resumed and is_main_process():
            shutil.rmtree(self.checkpoints, ignore_errors=True)  # a fresh run in a reused (multirun) directory
            OmegaConf.save(comparable_config(cfg), self.out_dir / RUN_CONFIG)
        self.keep_stage_models = bool(cfg.get("checkpoint", {}).get("keep_stage_models", True))
        self.done_stage, self.earlier_seconds, self.resumes = -1, {}, 0
        self.results: ContinualResults | None = None

    def start(self, run) -> None:
        """The results of `run` with the facts recorded once; a resumed run's weights, method
        state, results and generators as its last finished stage left them."""
        method = run.method
        self.results = ContinualResults(run.task_names, self.out_dir)
        self.results.extra.update({
            "method": method.name,
            "benchmark": type(run.benchmark).__name__,
            "seed": int(run.cfg.seed),
            "params_trainable": method.trainable_parameters(run.backbone.model),
            "params_stored": method.stored_parameters(run.backbone.model, len(run.tasks)),
            "eval_schedule": run.cfg.eval.schedule,
            **method.run_facts(),
        })
        if run.datamodule.skipped:
            self.report_skipped(run.datamodule.skipped)
        if is_main_process():  # a sweep's dashboard groups runs by their settings (method, seed, ...)
            for logger in run.loggers:
                logger.log_hyperparams(OmegaConf.to_container(run.cfg, resolve=True))
        if (self.checkpoints / RUN_STATE).exists():
            state = load_checkpoint(self.checkpoints / RUN_STATE)
            load_trained_state(run.module, state["trained"], self.checkpoints / RUN_STATE)
            method.load_state_dict(state["method"])
            self.results.load_state(state["results"])
            restore_rng(state["rng"])
            self.done_stage, self.earlier_seconds = state["stage"], state["timing"]
            if not (self.checkpoints / stage_model_file(self.done_stage)).exists() and is_main_process():
                # killed between the run state's write and the stage model's
                self.keep_stage_model({k: state[k] for k in ("stage", "trained", "method")})
        if self.resumed:
            count_file = self.checkpoints / "resumes.json"
            self.resumes = (json.loads(count_file.read_text())["resumes"] if count_file.exists() else 0) + 1
            if is_main_process():
                write_json_atomic(count_file, {"resumes": self.resumes})
            self.console.print(f"[bold]resuming[/] {self.out_dir}: stages 0..{self.done_stage} done"
                               if self.done_stage >= 0 else f"[bold]resuming[/] {self.out_dir} in its first stage")

    def copy_row(self, source: int, stage: int) -> None:
        """A stage that trained nothing: its model is the previous stage's, and so are its scores."""
        self.results.copy_row(source, stage)

    def scored(self, stage: int, task: int, result: dict) -> None:
        """A task's score (and its breakdown) on the model after `stage`."""
        self.results.record(stage, task, result)

    def method_facts(self, stage: int, facts: dict) -> None:
        """Facts the method reports about an evaluation (routing accuracy...): the latest stage's
        under each key, every stage's under <key>_by_stage."""
        for key, value in facts.items():
            self.results.extra[key] = value
            self.results.extra.setdefault(f"{key}_by_stage", {})[str(stage)] = value

    def final_retention_missing(self, run) -> bool:
        """Whether a general-ability set has no score of the final model yet."""
        retention = self.results.extra.get("retention", {})
        return any("final" not in retention.get(general.name, {}) for general in run.retention)

    def stage_checkpoint(self, stage: int) -> dict | None:
        """The task checkpoint a killed run left inside `stage` (None: none): its weights, data
        position and generators (`saved["hide"]`: stage, finished, data_position, rng)."""
        path = self.task_checkpoint
        if not path.exists():
            return None
        saved = load_checkpoint(path)
        if saved["hide"]["stage"] != stage:
            raise CheckpointError(f"{path} is from stage {saved['hide']['stage']}, but {RUN_STATE} says stage "
                                  f"{stage} is next: the checkpoints disagree; delete {path} to redo stage {stage}")
        return saved

    def rule(self, text: str) -> None:
        """A stage's heading on the console, once: every rank runs the loop, rank 0 speaks."""
        if is_main_process():
            self.console.rule(text)

    def stage_done(self, run, stage: int, predictions: dict[int, dict[str, str]], shown: list[int]) -> None:
        """After stage `stage` is evaluated and scored: its predictions, the results so far, and
        what a resumed run continues from."""
        if is_main_process():  # every rank holds the same results; one writes them
            names = run.task_names
            write_json_atomic(self.out_dir / "predictions" / f"stage{stage}.json",
                              {names[t]: p for t, p in predictions.items()})
            self.results.write()
            if stage == 0 and world_size() > 1:  # the processes exist from the first Trainer call on
                self.console.print(f"running on {world_size()} processes")
            for logger in run.loggers:
                log_stage_to_wandb(logger, self.results, stage)
            scores = ", ".join(f"{names[t]} {self.results.matrix[stage][t]:.1f}" for t in shown)
            self.console.print(f"[bold]after {'base' if stage == 0 else names[stage - 1]}[/]: {scores}")
            phases = self.timing()  # one reading of the clock for the checkpoint and timing.json
            model = {"stage": stage, "trained": trained_state(run.module), "method": run.method.state_dict()}
            save_atomic({**model, "results": self.results.state(), "rng": capture_rng(), "timing": phases},
                        self.checkpoints / RUN_STATE)
            self.task_checkpoint.unlink(missing_ok=True)
            self.keep_stage_model(model)
            self.write_timing(phases)
        barrier()

    def retention_done(self, general, model: str, answers: dict[str, str], scores: dict) -> None:
        """A general-ability set scored on the "base" or "final" model: its answers, and its scores
        in metrics.json (`retention`: set -> base / final / headline)."""
        entry = self.results.extra.setdefault("retention", {}).setdefault(general.name, {})
        entry[model], entry["headline"] = scores, list(general.headline)
        if is_main_process():
            write_json_atomic(self.out_dir / "predictions" / f"retention_{general.name}_{model}.json", answers)
            shown = ", ".join(f"{key} {scores[key]:.1f}" for key in general.headline)
            self.console.print(f"[bold]{general.name}[/] ({model} model): {shown}")

    def retention_answers(self, general, model: str) -> dict[str, str]:
        return json.loads((self.out_dir / "predictions" / f"retention_{general.name}_{model}.json").read_text())

    def keep_stage_model(self, model: dict) -> None:
        """The stage's model on its own (`checkpoints/stage<t>.pt`), which `hide.load_run` rebuilds."""
        if self.keep_stage_models:
            save_atomic(model, self.checkpoints / stage_model_file(model["stage"]))

    def finish(self, run) -> dict:
        """metrics.json, matrix.csv, timing.json and the heatmap; the tables on the console and in
        wandb. Returns metrics.json's content."""
        if is_main_process():
            self.results.write()
            phases = self.timing()
            self.write_timing(phases)
            heatmap = self.results.heatmap(title=f"{run.method.name} on {type(run.benchmark).__name__}")
            for logger in run.loggers:
                log_to_wandb(logger, self.results, heatmap)
            self.console.print(self.results.table())
            self.console.print(self.results.summary_table())
            self.console.print(f"results in {self.out_dir} ({phases['total'] / 60:.1f} min)")
        return self.results.to_dict()

    def timing(self) -> dict:
        """Wall seconds per phase, this process's plus those the processes it resumes had saved
        (the work a killed process did after its last stage is not counted)."""
        earlier, now = self.earlier_seconds, self.timer.seconds
        seconds = {k: earlier.get(k, 0.0) + now.get(k, 0.0) for k in {*earlier, *now} if k != "total"}
        return {**seconds, "total": earlier.get("total", 0.0) + time.perf_counter() - self.started}

    def write_timing(self, phases: dict) -> None:
        write_json_atomic(self.out_dir / "timing.json", {"wall_seconds": phases["total"], "phases": phases,
                                                         "resumes": self.resumes}, indent=2)

    def report_skipped(self, skipped: list) -> None:
        """Records left out under data.on_bad_record=skip: count and ids per task in metrics.json,
        every reason in skipped_records.json, one line on the console."""
        by_task: dict[str, list] = {}
        for task, bad in skipped:
            by_task.setdefault(task, []).append(bad)
        self.results.extra["skipped_records"] = {task: {"count": len(bad), "ids": [b.id for b in bad]}
                                                 for task, bad in by_task.items()}
        path = self.out_dir / "skipped_records.json"
        if is_main_process():
            write_json_atomic(path, [{"task": task, **dataclasses.asdict(b)} for task, b in skipped], indent=2)
        counts = ", ".join(f"{task} {len(bad)}" for task, bad in by_task.items())
        self.console.print(f"[yellow]data.on_bad_record=skip left out {len(skipped)} bad records[/] ({counts}); "
                           f"ids in metrics.json, reasons in {path}")


def log_stage_to_wandb(logger, results: ContinualResults, stage: int) -> None:
    """A stage's row as it is scored (`scores/<task>`, and `scores/seen_average` over the tasks
    trained so far), with the stage as the step, when that logger is on."""
    if type(logger).__name__ != "WandbLogger":
        return
    row = results.matrix[stage]
    scores = {f"scores/{task}": value for task, value in zip(results.tasks, row) if value is not None}
    seen = [row[i] for i in range(min(stage, len(row))) if row[i] is not None]
    if seen:
        scores["scores/seen_average"] = sum(seen) / len(seen)
    experiment = logger.experiment
    experiment.define_metric("stage")
    experiment.define_metric("scores/*", step_metric="stage")
    experiment.log({**scores, "stage": stage})


def log_to_wandb(logger, results: ContinualResults, heatmap: Path) -> None:
    """The matrix as a wandb table and the heatmap as an image, when that logger is on."""
    if type(logger).__name__ != "WandbLogger":
        return
    rows = [["base" if s == 0 else results.tasks[s - 1]] + row for s, row in enumerate(results.matrix)]
    logger.log_table(key="accuracy_matrix", columns=["after"] + results.tasks, data=rows)
    logger.log_image(key="accuracy_matrix_heatmap", images=[str(heatmap)])
    logger.log_metrics({k: v for k, v in results.metrics().items() if v is not None})
