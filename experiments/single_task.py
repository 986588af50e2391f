"""Train each task alone from the base model and compare its score with its chance level.

    python experiments/single_task.py [HYDRA OVERRIDES ...] [--out DIR] [--tasks NAME ...]

Runs `method=lora` (unless overridden) once per task with `benchmark.select=[TASK]`, through the
same configs and task loop as train.py, and writes DIR/single_task.json and DIR/single_task.md.
Chance: QA tasks, the expected exact match of a uniform guess among each question's valid
answers; caption tasks, the score of answering every image with another test image's caption.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from hydra.utils import instantiate

from hide.config import compose_config
from hide.data import synth
from hide.loop import run_continual
from hide.metrics.calibration import learnable
from hide.metrics.captions import score_captions


def caption_chance(test_records, references: dict[str, list[str]], seed: int = 0) -> float:
    """Score of predicting, for every image, the first reference of a different test image."""
    ids = [r.question_id for r in test_records]
    shuffled = ids[:]
    random.Random(seed).shuffle(shuffled)
    shuffled = shuffled[1:] + shuffled[:1]  # a derangement of the shuffled order
    predictions = {qid: references[other][0] for qid, other in zip(ids, shuffled)}
    return score_captions(predictions, {qid: references[qid] for qid in ids}, meteor=True)["score"]


def train_alone(name: str, overrides: list[str], out: Path) -> dict:
    """Train one task alone from the base model (sequential LoRA on a one-task benchmark) and
    compare its score with the task's chance level."""
    cfg = compose_config(["method=lora", *overrides, "benchmark.num_tasks=null", f"benchmark.select=[{name}]"], out / name)
    metrics = run_continual(cfg, out / name)
    score, base = metrics["matrix"][1][0], metrics["matrix"][0][0]
    task = instantiate(cfg.benchmark).load()[0]
    if task.kind == "caption":
        chance = caption_chance(task.test, task.references)
    else:
        chance = synth.chance_level(name, task.test)
    return {"task": name, "kind": task.kind, "base": base, "single_task": score, "chance": chance,
            "ratio": score / chance if chance else None, "learnable": learnable(score, chance)}


def table(rows: list[dict]) -> str:
    lines = ["| task | kind | base model | trained alone | chance | ratio | >= 50 and >= 2x chance |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['kind']} | {r['base']:.1f} | {r['single_task']:.1f} | {r['chance']:.1f} "
                     f"| {r['ratio']:.1f}x | {'yes' if r['learnable'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/single_task")
    parser.add_argument("--tasks", nargs="+", default=None, choices=synth.TASK_NAMES,
                        help="only these tasks (default: all six)")
    args, overrides = parser.parse_known_args()
    out = Path(args.out)
    rows = []
    for name in synth.TASK_NAMES:
        if args.tasks and name not in args.tasks:
            continue
        rows.append(train_alone(name, overrides, out))
        print(rows[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "single_task.json").write_text(json.dumps(rows, indent=2))
    (out / "single_task.md").write_text(table(rows))
    print(table(rows))
    sys.exit(0 if all(r["learnable"] for r in rows) else 1)


if __name__ == "__main__":
    main()
