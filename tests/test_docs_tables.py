"""The measured tables in docs/ are generated from result files kept in the repository
(experiments/docs_tables.py), and those files from the runs whose files are kept beside them."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import ROOT

from hide.metrics.calibration import regime_statistics

sys.path.insert(0, str(ROOT / "experiments"))
import docs_tables  # noqa: E402

sys.path.pop(0)

RESULTS = ROOT / "docs" / "results"


def test_every_generated_table_is_what_its_files_give():
    assert docs_tables.main(["--check"]) == 0


def test_a_stale_block_is_found_and_rewritten():
    text = "before\n<!-- table: mixture-overlap -->\n| old |\n<!-- end table -->\nafter\n"
    new, changed = docs_tables.regenerate(text, "x.md")
    assert changed == ["mixture-overlap"]
    assert new.startswith("before\n<!-- table: mixture-overlap -->\nMixture: ") and new.endswith("<!-- end table -->\nafter\n")
    assert docs_tables.regenerate(new, "x.md") == (new, [])
    with pytest.raises(SystemExit, match="unknown generated table 'nope'"):
        docs_tables.regenerate("<!-- table: nope -->\n<!-- end table -->", "x.md")


def test_the_tables_in_docs_are_generated():
    """Each table has its block in a document (a table left out of every document is not checked)."""
    text = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    assert all(f"<!-- table: {name} -->" in text for name in docs_tables.TABLES)


def test_the_forgetting_splits_each_sum_to_r2():
    """Either split of sequential LoRA's MFT - Last (by the task that loses, by the training that
    takes it) adds up to the file's R2, to the rounding of the printed cells."""
    rows = docs_tables.forgetting().splitlines()[2:]
    assert len(rows) >= 4  # the default's seeds at least
    T = len(docs_tables._seed_files()[0]["tasks"])
    for row in rows:
        cells = [float(c) for c in row.strip("|").split("|")[1:]]
        r2, lost, taken = cells[0], cells[1:T], cells[T:]
        assert len(lost) == len(taken) == T - 1
        assert abs(sum(lost) - r2) <= 0.05 * T and abs(sum(taken) - r2) <= 0.05 * T, row


def calibration_files():
    return sorted([*(RESULTS / "calibration").glob("seed*.json"), *(RESULTS / "levers").glob("*.json"),
                   *(RESULTS / "families").glob("*.json")])


@pytest.mark.parametrize("path", calibration_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_calibration_is_its_kept_runs(path):
    """The matrices and statistics of a calibration file are those of the runs kept for it."""
    result = json.loads(path.read_text())
    runs = RESULTS / "runs" / path.parent.name / path.stem
    metrics = {name: json.loads((runs / name / "metrics.json").read_text()) for name in ("lora", "multitask")}
    assert result["matrices"]["lora"] == metrics["lora"]["matrix"]
    assert result["matrices"]["multitask"] == metrics["multitask"]["matrix"]
    assert metrics["lora"]["seed"] == result["seed"]
    kwargs = {}
    if "hide_variants" in result:
        kwargs = {"fuse_all_last": result["hide_variants"]["none:sum_ab"]["Last"],
                  "expand_all_last": result["hide_variants"]["all:sum_ab"]["Last"],
                  "single_task": [r["single_task"] for r in result["single_task"]],
                  "chance": [r["chance"] for r in result["single_task"]]}
        hide = json.loads(next((runs / "hide").rglob("metrics.json")).read_text())
        assert result["matrices"]["hide_expand_all"] == hide["matrix"]
        for row in result["single_task"]:
            alone = json.loads(next((runs / "single_task").glob(f"*{row['task']}*/metrics.json")).read_text())
            assert alone["matrix"][-1][-1] == pytest.approx(row["single_task"])
    stats = regime_statistics(zero_shot=metrics["lora"]["matrix"][0], multitask=metrics["multitask"]["matrix"][-1],
                              lora_matrix=metrics["lora"]["matrix"], **kwargs)
    assert stats == result["statistics"]


def _fake_run(folder, method, seed, final_row, wall):
    tasks = ["A", "B"]
    matrix = [[10.0, 20.0], [50.0, 20.0], final_row]
    metrics = {"tasks": tasks, "matrix": matrix, "method": method, "seed": seed, "Last": sum(final_row) / 2,
               "params_trainable": 10, "params_stored": 20}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "timing.json").write_text(json.dumps({"wall_seconds": wall}))
    (folder / "config_resolved.yaml").write_text(f"seed: {seed}\n")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.pt").write_text("not kept")


def test_kept_comparison_runs_give_the_comparison_tables(tmp_path, monkeypatch):
    """keep_runs keeps a run's metrics, time and config (not its checkpoints) and the HiDe inference
    files; the comparison tables are the mean over the kept seeds."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import keep_runs

    sys.path.pop(0)
    out = tmp_path / "outputs"
    _fake_run(out / "methods" / "lora_s0", "lora", 0, [40.0, 60.0], 60.0)
    _fake_run(out / "methods" / "lora_s1", "lora", 1, [30.0, 70.0], 180.0)
    variant = {"variant": "top:sum_ab", "Last": 55.0, "scores": {"A": 50.0, "B": 60.0}}
    (out / "hide_ablations" / "s0").mkdir(parents=True)
    (out / "hide_ablations" / "s0" / "hide_inference.json").write_text(json.dumps([{"overrides": []}, variant]))
    kept = tmp_path / "kept"
    assert [p.name for p in keep_runs.keep_runs(out, kept)] == ["lora_s0", "lora_s1"]
    assert sorted(p.name for p in (kept / "methods" / "lora_s0").iterdir()) == [
        "config_resolved.yaml", "metrics.json", "timing.json"]
    monkeypatch.setattr(docs_tables, "COMPARISON", kept)
    per_task = docs_tables.comparison_per_task().splitlines()
    assert per_task[0] == "| method | A | B |" and per_task[2] == "| lora | 35.0 | 65.0 |"
    table = docs_tables.comparison()
    # Last 50.0 on both seeds; wall 1 and 3 minutes: mean 2.0, sample std 1.4
    assert "| lora | 2 | 50.0 ± 0.0 |" in table and table.splitlines()[2].endswith("| 10 | 20 | 2.0 ± 1.4 |")
    assert "| top:sum_ab | 1 | 50.0 ± 0.0 | 60.0 ± 0.0 | 55.0 ± 0.0 |" in docs_tables.hide_ablations()
    monkeypatch.setattr(docs_tables, "COMPARISON", tmp_path / "none")
    assert docs_tables.comparison() == docs_tables.NO_COMPARISON
