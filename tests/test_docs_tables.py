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


def calibration_files():
    return sorted([*(RESULTS / "calibration").glob("seed*.json"), *(RESULTS / "levers").glob("*.json")])


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
