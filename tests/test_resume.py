"""Resuming a killed run: real `python train.py` processes are SIGKILLed inside training, inside
evaluation and while a checkpoint is being written, then continued with `resume=...`; the result
must be byte-for-byte the uninterrupted run's metrics.json and predictions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FAST, ROOT, compose_config

# 2 tasks x 16 training samples, batch 8, 3 epochs: 6 optimizer steps per task; a task checkpoint
# every 3 steps lands mid-epoch (epoch 1, batch 1) and at the task's end.
RUN = [sys.executable, "train.py", *FAST, "checkpoint.every_n_steps=3", "logger=none"]


def train(run_dir: Path, *overrides: str, kill_at: str | None = None, resume=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HIDE_KILL_AT", None)
    if kill_at:
        env["HIDE_KILL_AT"] = kill_at
    cmd = [*RUN, *overrides, f"hydra.run.dir={run_dir}"]
    if resume is not None:
        cmd.append(f"resume={resume}")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])


def assert_same_results(done: Path, reference: Path) -> None:
    assert (done / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()
    for stage in sorted((reference / "predictions").iterdir()):
        assert (done / "predictions" / stage.name).read_bytes() == stage.read_bytes(), stage.name
    assert (done / "matrix.csv").read_bytes() == (reference / "matrix.csv").read_bytes()
    # The tiny model's answers can hide a small difference: the trained weights (adapters, projector,
    # anchors) and the method's state after the last stage must be bit-identical too.
    ours, theirs = (torch.load(d / "checkpoints" / "run_state.pt", weights_only=False) for d in (done, reference))
    assert ours["trained"].keys() == theirs["trained"].keys()
    for key, tensor in theirs["trained"].items():
        assert torch.equal(ours["trained"][key], tensor), key
    assert_equal_nested(ours["method"], theirs["method"])


def assert_equal_nested(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_equal_nested(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal_nested(x, y)
    else:
        assert a == b


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """method -> the run directory of an uninterrupted run."""
    runs = {}

    def get(method: str) -> Path:
        if method not in runs:
            run_dir = tmp_path_factory.mktemp(f"uninterrupted_{method}")
            proc = train(run_dir, f"method={method}")
            assert proc.returncode == 0, proc.stderr[-3000:]
            runs[method] = run_dir
        return runs[method]

    return get


def test_hide_killed_in_training_evaluation_and_checkpoint_write_resumes_to_identical_results(tmp_path, uninterrupted):
    run = tmp_path / "run"
    # 1. killed at stage 1's 5th batch (epoch 1): the checkpoint of step 3 stands at epoch 1, batch 1
    assert_killed(train(run, "method=hide", kill_at="train_batch:5"))
    meta = torch.load(run / "checkpoints" / "task.ckpt", weights_only=False)["hide"]
    assert (meta["stage"], meta["data_position"], meta["finished"]) == (1, (1, 1), False)
    assert json.loads((run / "metrics.json").read_text())["matrix"][1] == [None, None]  # only row 0 written
    # 2. resumed, then killed inside stage 1's evaluation (after its training finished)
    proc = train(run, "method=hide", kill_at="predict_batch:2", resume=True)
    assert_killed(proc)
    assert "continuing from" in proc.stdout
    assert torch.load(run / "checkpoints" / "task.ckpt", weights_only=False)["hide"]["finished"] is True
    # 3. resumed (training is not redone), then killed while writing stage 2's first task checkpoint:
    #    the run state and the model of stage 1 were written (checkpoint writes 1 and 2), task.ckpt's
    #    temporary file (write 3) was not renamed
    proc = train(run, "method=hide", kill_at="checkpoint_write:3", resume=str(run))
    assert_killed(proc)
    assert "training had finished before the interruption" in proc.stdout
    assert torch.load(run / "checkpoints" / "run_state.pt", weights_only=False)["stage"] == 1
    assert not (run / "checkpoints" / "task.ckpt").exists()
    # 4. resumed to the end: stage 2 restarts from its beginning
    proc = train(run, "method=hide", resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_results(run, uninterrupted("hide"))
    timing = json.loads((run / "timing.json").read_text())
    assert timing["resumes"] == 3 and timing["wall_seconds"] > 0


def test_killed_after_a_checkpoint_at_an_epoch_boundary(tmp_path, uninterrupted):
    """A checkpoint every 2 steps lands at the end of epoch 0 (2 batches of 8): the resumed fit must
    start epoch 1 at its first batch, not repeat or skip one; checkpointing more often changes
    nothing in the results."""
    run = tmp_path / "run"
    every_2 = "checkpoint.every_n_steps=2"
    assert_killed(train(run, "method=hide", every_2, kill_at="train_batch:4"))
    meta = torch.load(run / "checkpoints" / "task.ckpt", weights_only=False)
    assert (meta["hide"]["stage"], meta["hide"]["data_position"], meta["global_step"]) == (1, (0, 2), 2)
    # resumed: epoch 1's two batches train and checkpoint at its end, then a kill in epoch 2
    proc = train(run, "method=hide", every_2, kill_at="train_batch:3", resume=True)
    assert_killed(proc)
    assert "continuing from" in proc.stdout and "(epoch 0, batch 2)" in proc.stdout
    meta = torch.load(run / "checkpoints" / "task.ckpt", weights_only=False)
    assert (meta["hide"]["data_position"], meta["global_step"]) == ((1, 2), 4)
    proc = train(run, "method=hide", every_2, resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_results(run, uninterrupted("hide"))


@pytest.mark.parametrize("method, position", [
    ("ewc", (1, 1)), ("lwf", (1, 1)),
    ("replay", (0, 3)),  # task 1's 16 replayed samples double stage 2's epoch: 4 batches
    ("olora", (1, 1)), ("moelora", (1, 1)),
    ("reglora", (1, 1)), ("keeplora", (1, 1)), ("disco", (1, 1)),
])
def test_method_state_survives_a_kill_in_the_second_task(method, position, tmp_path, uninterrupted):
    """Killed at stage 2's 5th batch: the Fisher / teacher / replay buffer / frozen slots /
    recorded positions / protected subspace / anchors of task 1 come back from run_state.pt, the
    adapters and optimizer from step 3 of task 2."""
    run = tmp_path / "run"
    assert_killed(train(run, f"method={method}", kill_at="train_batch:11"))
    meta = torch.load(run / "checkpoints" / "task.ckpt", weights_only=False)["hide"]
    assert (meta["stage"], meta["data_position"], meta["finished"]) == (2, position, False)
    proc = train(run, f"method={method}", resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_results(run, uninterrupted(method))


def test_external_sigkill_while_training(tmp_path, uninterrupted):
    """Killed from outside (no kill point) as soon as the first task checkpoint exists."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HIDE_KILL_AT", None)
    proc = subprocess.Popen([*RUN, "method=hide", f"hydra.run.dir={run}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "task.ckpt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    done = train(run, "method=hide", resume=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_results(run, uninterrupted("hide"))


def test_resume_refuses_a_run_with_other_settings(tmp_path):
    run = tmp_path / "run"
    assert_killed(train(run, "method=lora", kill_at="train_batch:2"))
    proc = train(run, "method=lora", "optim.lr=0.1", resume=str(run))
    assert proc.returncode != 0
    started = compose_config(FAST, tmp_path / "cfg").optim.lr
    assert "was started with other settings" in proc.stderr and f"optim.lr: {started} -> 0.1" in proc.stderr


def test_a_torn_checkpoint_is_named_not_loaded(tmp_path):
    run = tmp_path / "run"
    assert_killed(train(run, "method=lora", kill_at="train_batch:4"))
    state = run / "checkpoints" / "run_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # damaged after it was written
    proc = train(run, "method=lora", resume=True)
    assert proc.returncode != 0
    assert f"The checkpoint {state} cannot be read" in proc.stderr


def test_resuming_a_finished_run_rewrites_the_same_results(fast_cfg, tmp_path):
    from hide.loop import run_continual

    run = tmp_path / "run"
    first = run_continual(fast_cfg("method=lora"), run)
    written = (run / "metrics.json").read_bytes()
    again = run_continual(fast_cfg("method=lora", "resume=true"), run)
    assert again == first and (run / "metrics.json").read_bytes() == written
    assert json.loads((run / "timing.json").read_text())["resumes"] == 1


def test_resume_true_without_a_matching_run_starts_fresh(fast_cfg, tmp_path):
    from hide.loop import run_continual

    metrics = run_continual(fast_cfg("method=zeroshot", "resume=true"), tmp_path / "new")
    assert metrics["method"] == "zeroshot"
    assert json.loads((tmp_path / "new" / "timing.json").read_text())["resumes"] == 0
