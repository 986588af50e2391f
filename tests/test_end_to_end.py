"""The real entry point and configs, run on two tiny tasks."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from hide.loop import run_continual, run_sequence

from conftest import FAST, ROOT


def test_lora_run_writes_matrix_and_metrics(fast_cfg, tmp_path):
    cfg = fast_cfg("method=lora", "benchmark.test_per_task=24")  # 8 letters of one kind can all miss
    metrics = run_continual(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["tasks"] == ["Renditions", "FigureQA"]
    assert len(on_disk["matrix"]) == 3 and all(len(r) == 2 for r in on_disk["matrix"])
    assert all(v is not None and 0 <= v <= 100 for row in on_disk["matrix"] for v in row)
    assert any(v > 0 for row in on_disk["matrix"][1:] for v in row)  # the trained model answers some right
    for key in ("Last", "Avg", "MFT", "BWT", "FWT", "Forgetting"):
        assert isinstance(on_disk[key], float), key
    assert on_disk["Last"] == pytest.approx(sum(on_disk["matrix"][2]) / 2)
    assert metrics["params_trainable"] > 0
    assert (tmp_path / "matrix.csv").read_text().splitlines()[0] == "after,Renditions,FigureQA"
    assert (tmp_path / "accuracy_matrix.png").stat().st_size > 1000
    assert set(json.loads((tmp_path / "predictions" / "stage2.json").read_text())) == {"Renditions", "FigureQA"}


# Lines the libraries print around a run that say nothing about it (each silenced at its source).
CHATTER = ["GPU available", "TPU available", "Tip:", "litlogger", "treespec", "`weights_only` was not set",
           "Loading weights", "Loading `train_dataloader`", "`Trainer.fit` stopped"]


def test_train_py_entry_point(tmp_path):
    """`python train.py ...` as a user runs it, with a caption task so COCO scoring runs too. The
    console shows the run and real warnings (here Lightning's, about a logging interval longer
    than a task's epoch), not the libraries' routine lines."""
    overrides = [o for o in FAST if not o.startswith(("benchmark.num_tasks", "trainer.log_every_n_steps"))]
    cmd = [sys.executable, "train.py", *overrides, "benchmark.num_tasks=3", "benchmark.test_per_task=4",
           "trainer.log_every_n_steps=50", f"hydra.run.dir={tmp_path}"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["tasks"] == ["Renditions", "FigureQA", "ObjectCaption"]
    caption = metrics["details"]["3"]["ObjectCaption"]
    assert {"BLEU-4", "ROUGE-L", "CIDEr", "METEOR"} <= set(caption)
    java = shutil.which("java") is not None
    assert caption["METEOR_available"] is java and (caption["METEOR"] is not None) is java
    assert "continual-learning metrics" in proc.stdout
    console = proc.stdout + proc.stderr
    assert [line for line in console.splitlines() if any(c in line for c in CHATTER)] == []
    assert "smaller than the logging interval Trainer(log_every_n_steps=50)" in console


def test_multitask_row_absent_until_joint_model(fast_cfg, tmp_path):
    metrics = run_continual(fast_cfg("method=multitask"), tmp_path)
    assert metrics["matrix"][1] == [None, None]
    assert all(v is not None for v in metrics["matrix"][2])
    assert metrics["Last"] is not None
    assert metrics["MFT"] is None and metrics["BWT"] is None and metrics["Avg"] is None


def test_zeroshot_rows_equal_base_row(fast_cfg, tmp_path):
    metrics = run_continual(fast_cfg("method=zeroshot", "benchmark.num_tasks=3"), tmp_path)
    assert metrics["matrix"][0][2] > 0  # the caption task scores above zero untrained
    assert metrics["matrix"][1] == metrics["matrix"][0] == metrics["matrix"][2] == metrics["matrix"][3]
    assert metrics["BWT"] == 0 and metrics["params_trainable"] == 0
    # the base row is scored once and copied: nothing is generated again for the later rows
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == [  # the benchmark once, the general set twice
        "retention_General_base.json", "retention_General_final.json", "stage0.json"]
    assert metrics["retention"]["General"]["base"] == metrics["retention"]["General"]["final"]


def test_wandb_logger_offline(fast_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_continual(fast_cfg("logger=wandb", "benchmark.num_tasks=1", "callbacks=cka",
                           "callbacks.cka.probe_per_task=4"), tmp_path)
    import wandb

    wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs, list(tmp_path.iterdir())
    assert any(p.suffix == ".wandb" for p in runs[0].iterdir())
    media = list(runs[0].rglob("accuracy_matrix*"))
    assert media, "the heatmap and the matrix table are logged"
    assert list(runs[0].rglob("cka_before_after*")), "the CKA callback's heatmap is logged"


def test_multirun_sweep_over_methods(tmp_path):
    """`python train.py --multirun method=a,b` runs each job into its own folder."""
    cmd = [sys.executable, "train.py", "--multirun", "method=lora,zeroshot", *FAST, "benchmark.num_tasks=1",
           f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == ["0_lora_s0", "1_zeroshot_s0"]
    for run in runs:
        assert json.loads((tmp_path / run / "metrics.json").read_text())["method"] == run.split("_")[1]


def test_results_do_not_depend_on_whether_the_backbone_was_cached(fast_cfg, tmp_path):
    """A run that builds the tiny backbone and one that loads it from the cache train the same
    adapters (the build's random numbers must not leak into the method's init and dropout)."""
    cache = tmp_path / "cache"
    weights = []

    for name in ("fresh", "cached"):
        run, _ = run_sequence(fast_cfg("method=lora", "benchmark.num_tasks=1", f"paths.cache_dir={cache}"),
                              tmp_path / name)
        weights.append([p.detach().clone() for a in run.method.adapters.values() for p in (a.lora_A[0], a.lora_B[0])])
    assert len(weights) == 2 and weights[0]
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_meteor_lost_mid_run_stops_rather_than_mixing_definitions(fast_cfg, tmp_path, monkeypatch):
    """Caption scores with METEOR (mean of 7) and without (mean of 6) never share a matrix: the run
    stops with its checkpoints, every cell written so far says which it was, and the run continues
    with resume=true once METEOR answers again."""
    from hide.errors import ScoringError
    from hide.metrics import captions

    calls = []

    def meteor_fails_after_the_first_call(gts, res):
        calls.append(len(gts))
        return 0.25 if len(calls) == 1 else None

    monkeypatch.setattr(captions, "_meteor_score", meteor_fails_after_the_first_call)
    settings = ["method=lora", "benchmark.select=[Renditions,ObjectCaption]"]
    with pytest.raises(ScoringError, match=r"ObjectCaption after stage 1 was scored without METEOR, but ObjectCaption "
                                           r"after stage 0 with it: one matrix would mix two definitions"):
        run_continual(fast_cfg(*settings), tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["details"]["0"]["ObjectCaption"]["METEOR_available"] is True
    assert written["details"]["0"]["ObjectCaption"]["METEOR"] == 25.0
    assert written["matrix"][1] == [None, None]
    monkeypatch.setattr(captions, "_meteor_score", lambda gts, res: 0.25)
    resumed = run_continual(fast_cfg(*settings, "resume=true"), tmp_path)
    assert all(resumed["details"][str(s)]["ObjectCaption"]["METEOR_available"] for s in range(3))


def test_wandb_gets_the_config_and_each_stage_as_it_is_scored(fast_cfg, tmp_path, monkeypatch):
    """The resolved config goes to the logger at the start; each stage's row and the seen-task
    average are logged as they are scored, against the stage."""
    import pytorch_lightning.loggers
    from pytorch_lightning.loggers.logger import Logger

    calls = {"hyperparams": [], "logged": [], "defined": []}

    class Experiment:
        def define_metric(self, name, step_metric=None):
            calls["defined"].append((name, step_metric))

        def log(self, data):
            calls["logged"].append(data)

    class WandbLogger(Logger):  # the name the run looks for; records what it is given
        def __init__(self, **kwargs):
            super().__init__()
            self.experiment = Experiment()

        name, version = "fake", 0

        def log_hyperparams(self, params, *args, **kwargs):
            calls["hyperparams"].append(params)

        def log_metrics(self, metrics, step=None):
            pass

        def log_table(self, **kwargs):
            pass

        def log_image(self, **kwargs):
            pass

    monkeypatch.setattr(pytorch_lightning.loggers, "WandbLogger", WandbLogger)
    metrics = run_continual(fast_cfg("logger=wandb", "method=lora"), tmp_path)
    config = calls["hyperparams"][0]
    assert config["method"]["_target_"].endswith("LoRA") and config["seed"] == 0
    stages = [entry for entry in calls["logged"] if "stage" in entry]
    assert [entry["stage"] for entry in stages] == [0, 1, 2]
    for entry, row in zip(stages, metrics["matrix"]):
        assert {k: v for k, v in entry.items() if k.startswith("scores/") and k != "scores/seen_average"} == {
            f"scores/{task}": value for task, value in zip(metrics["tasks"], row)}
    assert "scores/seen_average" not in stages[0]
    assert stages[2]["scores/seen_average"] == sum(metrics["matrix"][2]) / 2
    assert ("scores/*", "stage") in calls["defined"]
