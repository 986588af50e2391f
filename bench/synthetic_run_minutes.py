"""The default `python train.py` (HiDe, six synthetic tasks, the tiny model) on this machine, with
its phase breakdown from timing.json: as a user's second run sees it (model and data cached), and,
with --fresh, as a first run on a new machine sees it (the backbone's build of the tiny model and the
benchmark generation included, in an empty cache). Goal: at most 10 minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import result
from hide.config import ROOT

GOAL_MINUTES = 10.0


def one_run(cache: str | None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        if cache is not None:
            env["HIDE_CACHE"] = cache
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "train.py", f"hydra.run.dir={out}", "trainer.enable_progress_bar=false", "trainer.callbacks=[]"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"python train.py failed:\n{proc.stderr[-3000:]}")
        timing = json.loads((Path(out) / "timing.json").read_text())
        last = json.loads((Path(out) / "metrics.json").read_text())["Last"]
    phases = {k: round(v / 60, 2) for k, v in timing["phases"].items() if k != "total"}
    return {"minutes": round(wall / 60, 2), "phases_minutes": phases, "Last": last}


def run(quick: bool = False, fresh: bool = False) -> dict:
    cached = one_run(None)
    measured = {"cached": cached}
    if fresh:
        with tempfile.TemporaryDirectory() as cache:
            measured["fresh"] = one_run(cache)
    worst = max(m["minutes"] for m in measured.values())
    return result("synthetic_run_minutes", f"<= {GOAL_MINUTES:.0f} min", worst <= GOAL_MINUTES, None, **measured)
