"""Full-size synthetic runs of the default config (minutes each): `make test-slow`."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def _run(method: str, out, *overrides: str) -> dict:
    subprocess.run([sys.executable, "train.py", f"method={method}", *overrides, f"hydra.run.dir={out}"], cwd=ROOT,
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


@pytest.fixture(scope="module")
def hide(tmp_path_factory):
    return _run("hide", tmp_path_factory.mktemp("hide"))


def test_hide_routes_every_task(hide):
    assert min(hide["routing_accuracy"].values()) >= 95, hide["routing_accuracy"]


def test_hide_forgets_less_than_sequential_lora(hide, lora):
    assert abs(hide["BWT"]) < abs(lora["BWT"])


@pytest.mark.xfail(strict=True, reason="on the default proxy HiDe as published is below sequential LoRA (45.2 vs "
                   "56.1 on seed 0): fusing the experts into the lower layers costs the tiny decoder "
                   "much of what they learnt (docs/results.md)")
def test_hide_beats_sequential_lora_by_10(hide, lora):
    assert hide["Last"] >= lora["Last"] + 10


def test_hide_is_within_5_of_oracle_routing(hide, tmp_path):
    oracle = _run("hide", tmp_path, "method.routing=oracle")
    assert hide["Last"] >= oracle["Last"] - 5
