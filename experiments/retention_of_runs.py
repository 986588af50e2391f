"""Score finished runs on general-ability sets afterwards: the base model (stage 0) and the final
model of each run, as `eval.retention` does during a run.

    python experiments/retention_of_runs.py RUN_DIR [RUN_DIR ...] [--sets general mme ...] [--overwrite]

For runs made without `eval.retention` (or to add sets to a finished run). The final model is
rebuilt with `hide.load_run`, the base model is the run's config built afresh (its model before
any training, as the task loop scores stage 0); the sets are built as the run's
config defines them (`retention_sets`), or from the project's `conf/` for a run made before it. Writes RUN_DIR/retention.json in the
layout of metrics.json's `retention` (set -> base / final / headline); experiments/compare.py reads
it where a run's metrics.json has none. A run whose metrics.json already holds a set is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from hide.atomic import write_json_atomic
from hide.config import compose_config
from hide.run import build, build_run
from hide.trained import load_run, run_config


def final_stage(run_dir: Path) -> int:
    """The last stage the run finished (metrics.json's matrix has one row per stage)."""
    return len(json.loads((run_dir / "metrics.json").read_text())["matrix"]) - 1


def general_sets(names: list[str], run_cfg) -> list:
    """The sets as the run's config defines them, or as the project's conf/ does for a run made
    before `retention_sets` existed (with the run's paths)."""
    cfg = run_cfg
    if "retention_sets" not in run_cfg:
        paths = [f"paths.{k}={v}" for k, v in run_cfg.paths.items() if k in ("cache_dir", "retention_dir")]
        cfg = compose_config(paths, tempfile.mkdtemp(prefix="hide-retention-"))
    unknown = [n for n in names if n not in cfg.retention_sets]
    if unknown:
        raise SystemExit(f"retention_of_runs: unknown set(s) {unknown}; choose from {list(cfg.retention_sets)}")
    return [build(cfg.retention_sets[name], f"retention_sets.{name}") for name in names]


def base_answers(run_dir: Path, general) -> dict[str, str]:
    """The base model's answers: the run's config built afresh is its model before any training
    (adapters that add nothing), evaluated as the task loop evaluates stage 0."""
    run = build_run(run_config(run_dir))
    run.method.on_eval_start(run.module, [])
    return run.answer_records(general.records, general.max_new_tokens, general.prompt_suffix, general.image_processing)


def score_run(run_dir: Path, names: list[str], overwrite: bool = False) -> dict:
    """The run's retention entries (those of its metrics.json and retention.json, plus the ones
    scored here); writes the ones its metrics.json lacks to retention.json."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    in_run = {} if overwrite else metrics.get("retention", {})
    out = run_dir / "retention.json"
    scored = json.loads(out.read_text()) if out.exists() and not overwrite else {}
    final = load_run(run_dir, final_stage(run_dir))
    for general in general_sets(names, final.run.cfg):
        have = {**in_run, **scored}.get(general.name, {})
        entry = scored.setdefault(general.name, {"headline": list(general.headline)})
        if "final" not in have:
            entry["final"] = general.score(final.predict_records(
                general.records, prompt_suffix=general.prompt_suffix, image_processing=general.image_processing,
                max_new_tokens=general.max_new_tokens))
        if "base" not in have:
            entry["base"] = general.score(base_answers(run_dir, general))
    scored = {name: entry for name, entry in scored.items() if len(entry) > 1}
    if scored:
        write_json_atomic(out, scored, indent=2)
    return {**in_run, **scored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--sets", nargs="+", default=["general"], help="names in retention_sets (default: general)")
    parser.add_argument("--overwrite", action="store_true", help="score again the sets a run already has")
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        scores = score_run(run_dir, args.sets, args.overwrite)
        shown = ", ".join(f"{name} {key} " + " -> ".join(f"{entry[m][key]:.1f}" for m in ("base", "final") if m in entry)
                          for name, entry in scores.items() for key in entry["headline"])
        print(f"{run_dir}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
