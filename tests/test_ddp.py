"""The multi-process path on CPU (trainer=ddp_cpu: 2 gloo processes) through the real train.py."""

import json
import subprocess
import sys

import pytest

from conftest import FAST, ROOT


def _train(out, *overrides):
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *FAST, "logger=none", f"hydra.run.dir={out}",
                           *overrides], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    if "trainer=ddp_cpu" in overrides:
        assert "Starting with 2 processes" in done.stdout + done.stderr
    return json.loads((out / "metrics.json").read_text())


def test_sharded_evaluation_equals_one_process(tmp_path):
    """A fixed model (zero-shot) evaluated by 2 processes, each on its shard, gives exactly the
    single-process answers and metrics."""
    one = _train(tmp_path / "one", "method=zeroshot")
    two = _train(tmp_path / "two", "method=zeroshot", "trainer=ddp_cpu")
    assert two["matrix"] == one["matrix"]
    for stage in (0,):
        a = json.loads((tmp_path / "one" / "predictions" / f"stage{stage}.json").read_text())
        b = json.loads((tmp_path / "two" / "predictions" / f"stage{stage}.json").read_text())
        assert a == b and sum(len(v) for v in a.values()) == 16


@pytest.mark.timeout(900)
def test_two_process_hide_training_matches_one_process(tmp_path):
    """Same global batch (2 x 4 vs 1 x 8): the anchors are exact sums, so routing is identical;
    the accuracy matrix agrees within 2 points per entry."""
    one = _train(tmp_path / "one", "method=hide", "data.batch_size=8")
    two = _train(tmp_path / "two", "method=hide", "data.batch_size=4", "trainer=ddp_cpu")
    assert two["routing_confusion_by_stage"] == one["routing_confusion_by_stage"]
    for row_one, row_two in zip(one["matrix"], two["matrix"]):
        for a, b in zip(row_one, row_two):
            assert abs(a - b) <= 2.0
