"""Processes that start on a fresh cache together build each artefact once: the first builds,
the others wait for it and then use what it wrote."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

from hide.cache import build_lock
from hide.data.synth import generate_benchmark

HOLD = """
import sys, time
from pathlib import Path
from hide.cache import build_lock
with build_lock(sys.argv[1]):
    Path(sys.argv[2]).write_text("held")
    time.sleep(1.5)
    Path(sys.argv[2]).write_text("released")
"""

BUILD = """
import sys
from hide.data.synth import generate_benchmark
generate_benchmark(sys.argv[1], train_per_task=150, test_per_task=2, image_size=32, tasks=["Renditions"], progress=False)
"""


def _wait_for(path, text, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text() == text:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never said {text!r}")


def test_a_second_process_waits_for_the_lock(tmp_path):
    state = tmp_path / "state"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "thing"), str(state)])
    try:
        _wait_for(state, "held")
        with build_lock(tmp_path / "thing"):
            assert state.read_text() == "released"  # we got the lock only after the holder let go
    finally:
        holder.wait(timeout=120)
    assert holder.returncode == 0


def test_a_benchmark_being_generated_elsewhere_is_waited_for_not_regenerated(tmp_path, caplog):
    root = tmp_path / "synth"
    builder = subprocess.Popen([sys.executable, "-c", BUILD, str(root)])
    deadline = time.time() + 120
    while not (root / "datasets").exists() and builder.poll() is None and time.time() < deadline:
        time.sleep(0.01)  # the builder holds the lock once it writes data
    assert builder.poll() is None, "the builder finished before the race could start: nothing was tested"
    with caplog.at_level(logging.INFO, logger="hide.cache"):
        generate_benchmark(root, train_per_task=150, test_per_task=2, image_size=32, tasks=["Renditions"], progress=False)
    assert any("Waiting for another process" in r.getMessage() for r in caplog.records)
    assert builder.wait(timeout=120) == 0
    finished = max(p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file())
    time.sleep(0.05)
    generate_benchmark(root, train_per_task=150, test_per_task=2, image_size=32, tasks=["Renditions"], progress=False)
    assert max(p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()) == finished  # complete: reused
    images = sorted((root / "datasets" / "Renditions").rglob("*.png"))
    assert len(images) == 152


def test_build_once_builds_what_is_missing_and_nothing_else(tmp_path):
    from hide.cache import build_once

    target, built = tmp_path / "thing", []

    def build():
        built.append(1)
        target.write_text("done")

    assert build_once(target, target.exists, build) is True
    assert build_once(target, target.exists, build) is False
    assert built == [1] and target.read_text() == "done"
