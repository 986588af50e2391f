"""Full-size synthetic runs behind the issue's acceptance figures (minutes each): `make test-slow`."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def _run(method: str, out) -> dict:
    subprocess.run([sys.executable, "train.py", f"method={method}", f"hydra.run.dir={out}"], cwd=ROOT,
                   check=True, timeout=30 * 60)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    return _run("lora", tmp_path_factory.mktemp("lora"))


def test_sequential_lora_forgets(lora):
    assert len(lora["matrix"]) == 7 and all(len(r) == 6 for r in lora["matrix"])
    assert lora["Last"] <= lora["MFT"] - 10


def test_multitask_upper_bound_beats_sequential_lora(lora, tmp_path):
    multitask = _run("multitask", tmp_path)
    assert multitask["Last"] >= lora["Last"] + 10
