"""The experiment scripts run on the real configs (with the fast test overrides) and write their tables."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import FAST, ROOT


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *FAST, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_stage0_skills(tmp_path):
    done = _run("stage0_skills.py", "--samples", "24", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "stage0_skills.json").read_text())
    assert sum(r["n"] for r in rows) == 24
    assert all(0 <= r["accuracy"] <= 100 and 0 < r["majority"] <= 100 for r in rows)
    assert len({r["kind"] for r in rows}) == len(rows) >= 5
    table = (tmp_path / "stage0_skills.md").read_text()
    assert all(f"| {r['kind']} |" in table for r in rows)


def test_single_task_subset(tmp_path):
    done = _run("single_task.py", "benchmark.num_tasks=null", "--tasks", "Renditions", "--out", str(tmp_path))
    # the exit status says whether every task was learnable; a 10-step model is not
    assert done.returncode in (0, 1), done.stderr[-3000:]
    rows = json.loads((tmp_path / "single_task.json").read_text())
    assert [r["task"] for r in rows] == ["Renditions"] and rows[0]["chance"] == 10.0
    assert rows[0]["learnable"] == (rows[0]["single_task"] >= 50 and rows[0]["single_task"] >= 20)
    assert (tmp_path / "Renditions" / "metrics.json").is_file()


def test_hide_inference_variants(tmp_path):
    done = _run("hide_inference.py", "--variants", "top:sum_ab", "all:sum_ab", "0:sum_ba", "none:mean", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "hide_inference.json").read_text())
    assert len(rows[0]["per_layer"]) == 2 and all(v > 0 for v in rows[0]["per_layer"])
    assert [r["variant"] for r in rows[1:]] == ["top:sum_ab", "all:sum_ab", "0:sum_ba", "none:mean"]
    assert all(set(r["scores"]) == {"Renditions", "FigureQA"} for r in rows[1:])
    assert rows[4]["routing_accuracy"] is None  # nothing routed when every layer fuses
    # every layer routed is the run's own final model: its scores are the matrix's last row
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["matrix"][-1]
    assert [rows[2]["scores"][n] for n in ("Renditions", "FigureQA")] == final
