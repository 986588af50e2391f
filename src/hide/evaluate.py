"""Score a finished run on a benchmark or task it was not trained on, without training.

    python -m hide.evaluate RUN_DIR [stage=T] [out=DIR] BENCHMARK OVERRIDES ...
    python -m hide.evaluate outputs/hide-ucit/2026-12-02_10-00-00 benchmark=ucit \\
        paths.data_dir=/data/new_tasks 'benchmark.tasks=[{name: ChartQA, kind: qa, train_file: train.json, test_file: test.json}]'

The run's model of stage T (default: its last) answers every test question of the benchmark the
overrides compose (the project's `conf/` with them, as `train.py` would; only `benchmark` and
`paths` are read from it) with the evaluation's prompt and decoding; each task is scored by its
own metric. Written beside the run, in `RUN_DIR/evaluations/stage<T>-<tasks>/`: `metrics.json`
(the matrix row: one score per task, its breakdown, the stage, the overrides) and
`predictions.json`. An on-disk benchmark is checked first (`python -m hide.data.check`), so a bad
folder is reported whole, every fault named.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from hide.atomic import write_json_atomic
from hide.config import compose_config
from hide.data.check import format_reports
from hide.data.formats import DataFormatError
from hide.errors import exit_status
from hide.loop import score_task
from hide.run import build
from hide.trained import UNKNOWN_TASK, TrainedModel, load_run


def load_benchmark_tasks(model: TrainedModel, overrides: list[str]) -> list:
    """The tasks of the benchmark `overrides` compose, checked and loaded for the run's backbone."""
    cfg = compose_config(list(overrides), tempfile.mkdtemp(prefix="hide-evaluate-"))
    benchmark = build(cfg.benchmark, "benchmark")
    benchmark.prepare()
    problems = [r for r in benchmark.check() if r.problems]
    if problems:
        raise DataFormatError(f"{benchmark.data_dir} cannot be evaluated on (python -m hide.data.check):\n"
                              + format_reports(problems))
    data = model.run.cfg.data if model.run is not None else cfg.data  # a run's own settings where it has them
    datamodule = instantiate(data, benchmark=benchmark, seed=0)
    return datamodule.load(model.module.backbone)


def evaluate_run(run_dir, overrides: list[str], stage: int | None = None, out_dir=None) -> dict:
    """Score the run's model of `stage` on the composed benchmark; returns metrics.json's content."""
    model = load_run(run_dir, stage)
    tasks = load_benchmark_tasks(model, overrides)
    names = [t.name for t in tasks]
    shown = names if len(names) <= 4 else [*names[:4], f"and{len(names) - 4}more"]
    out = Path(out_dir) if out_dir else model.run_dir / "evaluations" / f"stage{model.stage}-{'-'.join(shown)}"
    predictions, details = {}, {}
    for task in tasks:
        index = model.task_names.index(task.name) if task.name in model.task_names else UNKNOWN_TASK
        predictions[task.name] = model.predict_task(task, index)
        details[task.name] = score_task(task, predictions[task.name])
    metrics = {"run": str(model.run_dir), "method": model.module.method.name, "stage": model.stage,
               "trained_on": [model.task_names[t] for t in model.trained], "overrides": list(overrides), "tasks": names,
               "row": [details[n]["score"] for n in names], "details": details}
    write_json_atomic(out / "predictions.json", predictions)
    write_json_atomic(out / "metrics.json", metrics, indent=2)
    table = Table(title=f"{metrics['method']} after stage {model.stage} ({model.run_dir})")
    for name in names:
        table.add_column(name, justify="right")
    table.add_row(*(f"{s:.1f}" for s in metrics["row"]))
    Console().print(table)
    Console().print(f"results in {out}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or "=" in args[0]:
        print(__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    run_dir, overrides = args[0], args[1:]
    stage = next((o.split("=", 1)[1] for o in overrides if o.startswith("stage=")), None)
    if stage is not None and not stage.isdigit():
        print(f"error: stage={stage}: give a stage number (0 = the base model)", file=sys.stderr)
        return 2
    stage = None if stage is None else int(stage)
    out = next((o.split("=", 1)[1] for o in overrides if o.startswith("out=")), None)
    overrides = [o for o in overrides if not o.startswith(("stage=", "out="))]
    return exit_status(evaluate_run, run_dir, overrides, stage, out)


if __name__ == "__main__":
    sys.exit(main())
