"""Keep the run files behind a result in the repository: every run's metrics.json, wall time and
saved config (timing.json, config_resolved.yaml, and .hydra/overrides.yaml where Hydra wrote one),
and every HiDe inference file (hide_inference.json), nothing else.

    python experiments/keep_runs.py SRC DEST

Copies them from under SRC into DEST with the same relative paths; checkpoints, predictions and
plots stay behind. A few kB per run.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KEPT = ("metrics.json", "timing.json", "config_resolved.yaml", ".hydra/overrides.yaml")  # per run folder
RESULT_FILES = ("hide_inference.json",)  # wherever they are under SRC


def keep_runs(src: Path, dest: Path) -> list[Path]:
    """Copy each run's KEPT files and every RESULT_FILES file from under `src` to `dest`; returns
    the run folders (folders holding metrics.json) copied."""
    src, dest = Path(src), Path(dest)
    runs = sorted(p.parent for p in src.rglob("metrics.json"))
    if not runs:
        raise SystemExit(f"no run (a folder holding metrics.json) under {src}")
    files = [run / name for run in runs for name in KEPT if (run / name).is_file()]
    files += [p for name in RESULT_FILES for p in sorted(src.rglob(name))]
    for path in files:
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
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
