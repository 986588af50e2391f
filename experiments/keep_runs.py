"""Keep the run files behind a result in the repository: every run's metrics.json and saved
config (config_resolved.yaml, and .hydra/overrides.yaml where Hydra wrote one), nothing else.

    python experiments/keep_runs.py SRC DEST

Copies them from every run folder under SRC (a folder holding metrics.json) into DEST with the
same relative paths; checkpoints, predictions and plots stay behind. A few kB per run.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KEPT = ("metrics.json", "config_resolved.yaml", ".hydra/overrides.yaml")


def keep_runs(src: Path, dest: Path) -> list[Path]:
    """Copy each run's KEPT files from under `src` to `dest`; returns the run folders copied."""
    src, dest = Path(src), Path(dest)
    runs = sorted(p.parent for p in src.rglob("metrics.json"))
    if not runs:
        raise SystemExit(f"no run (a folder holding metrics.json) under {src}")
    for run in runs:
        for name in KEPT:
            if (run / name).is_file():
                target = dest / run.relative_to(src) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run / name, target)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    runs = keep_runs(args.src, args.dest)
    print(f"kept {len(runs)} runs' files in {args.dest}")


if __name__ == "__main__":
    main()
