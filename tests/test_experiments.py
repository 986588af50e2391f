"""The experiment scripts run on the real configs (with the fast test overrides) and write their tables."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FAST, ROOT


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *FAST, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mixture_skills(tmp_path):
    done = _run("mixture_skills.py", "--samples", "24", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "mixture_skills.json").read_text())
    rows, image_free = result["kinds"], {"option_lookup (image-free)", "repeat (image-free)"}
    # every conversation's first question, and as many of each image-free skill
    assert sum(r["n"] for r in rows if r["kind"] not in image_free) == 24
    assert sorted(r["n"] for r in rows if r["kind"] in image_free) == [24, 24]
    assert all(0 <= r["accuracy"] <= 100 and 0 < r["majority"] <= 100 for r in rows)
    assert len({r["kind"] for r in rows}) == len(rows) >= 7 and 0 <= result["copy"] <= 100
    table = (tmp_path / "mixture_skills.md").read_text()
    assert all(f"| {r['kind']} |" in table for r in rows) and "copying" in table


def test_single_task_subset(tmp_path):
    done = _run("single_task.py", "benchmark.num_tasks=null", "--tasks", "Renditions", "--out", str(tmp_path))
    # the exit status says whether every task was learnable; a 10-step model is not
    assert done.returncode in (0, 1), done.stderr[-3000:]
    rows = json.loads((tmp_path / "single_task.json").read_text())
    assert [r["task"] for r in rows] == ["Renditions"] and rows[0]["chance"] == 10.0
    assert rows[0]["learnable"] == (rows[0]["single_task"] >= 50 and rows[0]["single_task"] >= 20)
    assert (tmp_path / "Renditions" / "metrics.json").is_file()


def test_hide_inference_variants(tmp_path):
    variants = ["top:sum_ab", "all:sum_ab", "0:sum_ba", "none:mean", "all:sum_ab:oracle", "top:sum_ab:top_k=1"]
    done = _run("hide_inference.py", "--variants", *variants, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "hide_inference.json").read_text())
    assert len(rows[0]["per_layer"]) == 2 and all(v > 0 for v in rows[0]["per_layer"])
    assert [r["variant"] for r in rows[1:]] == variants
    assert all(set(r["scores"]) == {"Renditions", "FigureQA"} for r in rows[1:])
    assert rows[4]["routing_accuracy"] is None  # nothing routed when every layer fuses
    # every layer routed is the run's own final model: its scores are the matrix's last row
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["matrix"][-1]
    assert [rows[2]["scores"][n] for n in ("Renditions", "FigureQA")] == final
    # a second call with variants it already holds does not train again
    again = _run("hide_inference.py", "--variants", "top:sum_ab", "--out", str(tmp_path))
    assert again.returncode == 0 and "not run again" in again.stdout, again.stderr[-3000:]

    # two runs summarised: a mean and a std per variant
    other = tmp_path / "other"
    other.mkdir()
    shifted = [rows[0]] + [{**r, "Last": r["Last"] + 2.0, "scores": {n: v + 2.0 for n, v in r["scores"].items()}}
                           for r in rows[1:]]
    (other / "hide_inference.json").write_text(json.dumps(shifted))
    done = _run("hide_inference.py", "--summarize", str(tmp_path), str(other), "--out", str(tmp_path / "sum"))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "sum" / "hide_inference_summary.json").read_text())
    assert [r["variant"] for r in summary] == variants
    for row, run in zip(summary, rows[1:]):
        assert row["runs"] == 2
        assert row["Last"][0] == pytest.approx(run["Last"] + 1.0) and row["Last"][1] == pytest.approx(2 ** 0.5)
    assert "| all:sum_ab:oracle | 2 |" in (tmp_path / "sum" / "hide_inference_summary.md").read_text()


def test_hide_inference_variant_syntax():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        from hide_inference import parse_variant
    finally:
        sys.path.pop(0)
    assert parse_variant("top:sum_ba") == {"task_specific_layers": [-1], "fusion": "sum_ba", "routing": "anchors",
                                           "top_k": None}
    assert parse_variant("all", "oracle", 2) == {"task_specific_layers": "all", "fusion": "sum_ab",
                                                 "routing": "oracle", "top_k": 2}
    assert parse_variant("0,1:mean:oracle")["routing"] == "oracle"
    assert parse_variant("top:sum_ab:top_k=1")["top_k"] == 1
    with pytest.raises(ValueError, match="option"):
        parse_variant("top:sum_ab:greedy")


def test_multirun_sweep_and_comparison_report(tmp_path):
    """A real `train.py --multirun` over two methods x two seeds, then experiments/compare.py."""
    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--multirun", *FAST, "method=lora,hide",
                           "seed=0,1", "logger=none", f"hydra.sweep.dir={sweep}", "trainer.max_epochs=1",
                           "benchmark.select=[Renditions,ObjectCaption]"],  # captions: scores that differ by seed
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(sweep.rglob("metrics.json"))
    assert len(runs) == 4
    lasts = [json.loads(p.read_text())["Last"] for p in runs]
    assert len(set(lasts)) > 2, lasts  # the means and deviations checked below are not those of constants
    # a run that crashed after its first evaluation is reported as incomplete, not averaged
    broken = sweep / "9_lora_s7"
    broken.mkdir()
    partial = json.loads(runs[0].read_text())
    partial["matrix"][-1] = [None] * len(partial["tasks"])
    (broken / "metrics.json").write_text(json.dumps(partial))

    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "compare.py"), str(sweep)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((sweep / "comparison.json").read_text())
    rows = {r["label"]: r for r in report["rows"]}
    assert list(rows) == ["lora", "hide"]  # baselines first, in METHOD_ORDER
    for label, row in rows.items():
        per_seed = [json.loads(p.read_text()) for p in runs if json.loads(p.read_text())["method"] == label]
        lasts = [m["Last"] for m in per_seed]
        mean = sum(lasts) / 2
        std = (sum((x - mean) ** 2 for x in lasts) / 1) ** 0.5
        assert row["seeds"] == [0, 1]
        assert row["Last"][0] == pytest.approx(mean) and row["Last"][1] == pytest.approx(std)
        assert row["params_trainable"] == per_seed[0]["params_trainable"]
        finals = [m["retention"]["General"]["final"]["accuracy"] for m in per_seed]
        assert row["retention"]["General accuracy"]["final"][0] == pytest.approx(sum(finals) / 2)
    assert any("9_lora_s7" in x for x in report["incomplete"])
    assert "General accuracy (final) | change" in (sweep / "comparison.md").read_text()
    table = (sweep / "comparison.md").read_text()
    assert "| lora | 2 |" in table and "incomplete" in table
    for name in ("comparison_last_avg.png", "comparison_matrices.png", "comparison_per_task.png"):
        assert (sweep / name).stat().st_size > 10_000


def test_compare_names_what_is_missing(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "compare.py"), str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no complete run" in done.stderr and str(tmp_path) in done.stderr


def test_param_budget_on_the_tiny_and_the_7b_model(tmp_path):
    done = _run("param_budget.py", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    budget = json.loads((tmp_path / "param_budget.json").read_text())
    big = budget["llava-1.5-7b"]
    # LoRA r=8 on every linear of LLaMA-7B: 32 layers x 8 x (4 x (4096 + 4096) + 2 x (4096 + 11008)
    # + (11008 + 4096)), plus the 2-layer projector 1024 -> 4096 -> 4096 with biases
    lora_7b = 32 * 8 * (4 * 8192 + 2 * 15104 + 15104)
    projector_7b = 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    assert big["lora"]["trainable"] == lora_7b + projector_7b
    for method in ("olora", "ewc", "lwf", "replay", "hide", "multitask"):
        assert big[method]["trainable"] == big["lora"]["trainable"], method  # equal budgets
    # MoELoRA: the same expert parameters plus a 4-expert router on every linear's input
    assert big["moelora"]["trainable"] == big["lora"]["trainable"] + 32 * 4 * (6 * 4096 + 11008)
    assert big["olora"]["stored"] == 6 * lora_7b + projector_7b
    assert big["hide"]["stored"] == lora_7b + projector_7b + 5 * 8 * (4 * 8192 + 2 * 15104 + 15104)
    assert budget["tiny"]["lora"]["trainable"] > 0
    qwen = budget["qwen2.5-vl-7b"]
    # Qwen2.5-VL-7B's decoder: 28 layers 3584 wide, k and v to 4 key-value heads of 128 (512), MLP 18944;
    # its projector, the patch merger: RMSNorm(1280), then 4 x 1280 -> 5120 -> 3584 with biases
    lora_qwen = 28 * 8 * (2 * (3584 + 3584) + 2 * (3584 + 512) + 2 * (3584 + 18944) + (18944 + 3584))
    merger = 1280 + 5120 * 5120 + 5120 + 5120 * 3584 + 3584
    assert lora_qwen == 20_185_088  # 20.2M, against LLaVA-1.5-7B's 20.0M
    assert qwen["lora"]["trainable"] == lora_qwen + merger
    assert qwen["olora"]["stored"] == 6 * lora_qwen + merger


def test_cka_analysis_trains_one_model_per_task_and_writes_the_arrays(tmp_path):
    done = _run("cka_analysis.py", "--out", str(tmp_path), "--probe-per-task", "6", "trainer.max_epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    import numpy as np

    arrays = np.load(tmp_path / "cka.npz")
    assert list(arrays["tasks"]) == ["Renditions", "FigureQA"]
    for kind in ("kernel", "linear"):
        assert arrays[kind].shape == (2, 2, 2)  # tasks x tasks x decoder layers
        assert np.allclose(np.diagonal(arrays[kind], axis1=0, axis2=1), 1.0)
    summary = json.loads((tmp_path / "cka.json").read_text())
    means = summary["kernel"]["mean_cross_task_cka"]
    assert means == pytest.approx([arrays["kernel"][0, 1, l] for l in range(2)])
    assert sorted(summary["kernel"]["layers_least_similar_first"]) == [0, 1]
    features = np.load(tmp_path / "features.npz")
    assert features["Renditions"].shape[:2] == (2, 6)
    for name in ("cka_layer0.png", "cka_layer1.png", "cka_by_layer.png", "linear/cka_by_layer.png"):
        assert (tmp_path / name).stat().st_size > 5000


def test_cka_analysis_on_shared_inputs(tmp_path):
    done = _run("cka_analysis.py", "--out", str(tmp_path), "--probe-per-task", "4", "--inputs", "shared",
                "trainer.max_epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    import numpy as np

    features = np.load(tmp_path / "features.npz")
    assert features["Renditions"].shape[:2] == (2, 8)  # every model encodes 4 prompts of each of 2 tasks
    assert json.loads((tmp_path / "cka.json").read_text())["inputs"] == "shared"


def test_retention_of_finished_runs_equals_retention_scored_during_the_run(tmp_path):
    """A run made without eval.retention, scored afterwards from its stage models, gets exactly the
    scores a run scoring them during the run writes; compare.py reads them."""
    for name, extra in (("during", []), ("after", ["eval.retention=[]"])):
        done = subprocess.run([sys.executable, str(ROOT / "train.py"), *FAST, "method=lora", "logger=none",
                               f"hydra.run.dir={tmp_path / name}", *extra], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert "retention" not in json.loads((tmp_path / "after" / "metrics.json").read_text())
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "retention_of_runs.py"), str(tmp_path / "after")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    during = json.loads((tmp_path / "during" / "metrics.json").read_text())["retention"]
    assert json.loads((tmp_path / "after" / "retention.json").read_text()) == during
    assert "General accuracy" in done.stdout
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "compare.py"), str(tmp_path / "after"),
                           "--out", str(tmp_path / "cmp")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"][0]
    assert row["retention"]["General accuracy"]["final"][0] == during["General"]["final"]["accuracy"]
