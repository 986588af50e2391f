"""Bad settings and bad data through the real entry points: each gets the project's own error with a
one-paragraph message (the data-file cases are in test_formats.py's table), `train.py` prints it
without a traceback, data.on_bad_record=skip runs on and reports, and a non-finite loss stops the
run with the last good checkpoint intact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import instantiate

from conftest import FAST, ROOT, TEST_CACHE, compose_config
from hide.checkpoint import CheckpointError
from hide.errors import ConfigError, HideError, TrainingDivergedError
from hide.loop import run_continual

# (overrides, error type, regex on the message)
SETTING_CASES = {
    "unknown_task_name": (["benchmark.select=[Renditions,Nope]"], ConfigError,
                          r"benchmark\.select names unknown task\(s\) \['Nope'\]; this benchmark's tasks are \['Renditions', "),
    "more_tasks_than_the_benchmark": (["benchmark.num_tasks=9"], ConfigError,
                                      r"benchmark\.num_tasks=9, but the benchmark has 6 tasks"),
    "rank_not_split_over_experts": (["method=moelora", "method.rank=6", "method.num_experts=4"], ConfigError,
                                    r"method\.rank=6 must be a multiple of method\.num_experts=4"),
    "hide_layer_outside_the_model": (["method=hide", "method.task_specific_layers=[5]"], ConfigError,
                                     r"task-specific layer 5 is outside the model's 2 decoder layers"),
    "hide_auto_layers_without_analysis": (["method=hide", "method.task_specific_layers=auto",
                                           "method.cka_file=/nonexistent/cka.json"], ConfigError,
                                          r"reads the CKA analysis from /nonexistent/cka\.json, which does not exist"),
    "unknown_fusion": (["method=hide", "method.fusion=max"], ConfigError, r"method\.fusion='max'; choose one of"),
    "unknown_eval_schedule": (["eval.schedule=sometimes"], ConfigError, r"eval\.schedule='sometimes'; choose one of"),
    "unknown_on_bad_record": (["data.on_bad_record=ignore"], ConfigError, r"data\.on_bad_record='ignore'; choose one of"),
    "unknown_method_setting": (["method=lora", "+method.nope=1"], ConfigError, r"method: .*unexpected keyword argument 'nope'"),
    "resume_from_a_directory_without_checkpoint": (["resume=/nonexistent/run"], CheckpointError,
                                                   r"resume=/nonexistent/run: /nonexistent/run holds no checkpoint"),
}


@pytest.mark.parametrize("name", SETTING_CASES)
def test_bad_setting(name, fast_cfg, tmp_path):
    overrides, error, match = SETTING_CASES[name]
    with pytest.raises(error, match=match) as info:
        run_continual(fast_cfg(*overrides), tmp_path / "run")
    assert isinstance(info.value, HideError) and "\n" not in str(info.value)


@pytest.mark.parametrize("group, value", [("method", "hidee"), ("benchmark", "ucit2")])
def test_unknown_choice_lists_the_choices(group, value, tmp_path):
    with pytest.raises(MissingConfigException) as info:
        compose_config([f"{group}={value}"], tmp_path)
    message = str(info.value)
    assert f"Could not find '{group}/{value}'" in message and f"Available options in '{group}'" in message
    choices = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
    assert all(choice in message for choice in choices)


def test_train_py_prints_the_message_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", *FAST, "benchmark.select=[Nope]", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: benchmark.select names unknown task(s) ['Nope']; this benchmark's tasks are "
        "['Renditions', 'FigureQA', 'ObjectCaption', 'IconQA', 'ClevrMath', 'SceneCaption']"]
    proc = subprocess.run([sys.executable, "train.py", "method=hidee", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Could not find 'method/hidee'" in proc.stderr and "Available options in 'method'" in proc.stderr


def test_on_bad_record_skip_runs_and_reports(fast_cfg, tmp_path):
    """A benchmark copy with a record missing its image key, an unreadable image and a truncated
    one: the run leaves those 3 records out, finishes, and reports them."""
    cfg = fast_cfg()
    source = Path(instantiate(cfg.benchmark).data_dir)  # the folder named by the benchmark's sizes and seed
    if not (source / ".complete.json").exists():
        run_continual(fast_cfg("method=zeroshot", "benchmark.num_tasks=1"), tmp_path / "generate")
    root = tmp_path / "synth"
    shutil.copytree(source, root / source.name)
    folder = root / source.name
    train_file = folder / "instructions" / "Renditions" / "train.json"
    test_file = folder / "instructions" / "Renditions" / "test.json"
    train, test = json.loads(train_file.read_text()), json.loads(test_file.read_text())
    del train[0]["image"]
    (folder / "datasets" / train[1]["image"]).write_bytes(b"not a png")
    truncated = folder / "datasets" / test[2]["image"]
    truncated.write_bytes(truncated.read_bytes()[:200])
    train_file.write_text(json.dumps(train))
    expected = {"count": 3, "ids": [train[0]["id"], train[1]["id"], str(test[2]["question_id"])]}

    with pytest.raises(HideError, match=r"train\.json: record at index 0 .* is missing the key\(s\) 'image'"):
        run_continual(fast_cfg(f"benchmark.root={root}", "method=lora"), tmp_path / "strict")
    metrics = run_continual(fast_cfg(f"benchmark.root={root}", "method=lora", "data.on_bad_record=skip"), tmp_path / "run")
    assert metrics["skipped_records"] == {"Renditions": expected}
    reasons = json.loads((tmp_path / "run" / "skipped_records.json").read_text())
    assert [r["id"] for r in reasons] == expected["ids"]
    assert "cannot be read as an image" in reasons[1]["reason"] and "truncated" in reasons[2]["reason"]
    assert metrics["Last"] is not None


def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(fast_cfg, tmp_path, monkeypatch):
    from hide.methods.base import ContinualMethod

    def poisoned(self, module, batch, outputs):
        return torch.tensor(float("nan")) if module.global_step == 4 else None

    monkeypatch.setattr(ContinualMethod, "extra_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as info:
        run_continual(fast_cfg("method=lora", "checkpoint.every_n_steps=3"), run)
    message = str(info.value)
    assert "Non-finite loss (nan) at optimizer step 4 of task 'Renditions' (stage 1), batch 0 with record ids [" in message
    assert "\n" not in message
    checkpoint = torch.load(run / "checkpoints" / "task.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3 and checkpoint["hide"]["finished"] is False
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert not list((run / "checkpoints").glob(".*tmp"))  # no half-written file left beside it
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["matrix"][1] == [None, None]  # nothing recorded for the failed stage


def test_a_fault_inside_a_constructor_keeps_its_traceback():
    """Only the project's own validation errors (and keywords a constructor does not take) read as
    a bad setting; a ValueError raised inside a constructor's code is a bug and stays one."""
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf

    from hide.run import build

    faulty = OmegaConf.create({"_target_": "fractions.Fraction", "_args_": ["two thirds"]})  # raises inside __new__
    with pytest.raises(InstantiationException) as info:
        build(faulty, "benchmark")
    assert not isinstance(info.value, HideError) and isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ConfigError, match=r"^benchmark: .*unexpected keyword argument 'nope'$"):
        build(OmegaConf.create({"_target_": "hide.data.synth.generate_benchmark", "root": "/x", "nope": 1}),
              "benchmark")
