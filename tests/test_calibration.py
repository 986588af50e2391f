"""The regime statistics (hide.metrics.calibration) against matrices worked by hand, and the
calibration script through the real configs."""

import json
import subprocess
import sys

import pytest

from hide.config import compose_config
from hide.metrics.calibration import in_band, learnable, regime_settings, regime_statistics

from conftest import FAST, ROOT

# Two tasks. Zero-shot 20, 40 (mean 30); multitask 80, 100 (mean 90).
# Sequential LoRA: 70 on task 1 after it, 90 on task 2 after it (MFT 80); at the end 50, 90 (Last 70).
ZERO_SHOT = [20.0, 40.0]
MULTITASK = [80.0, 100.0]
LORA = [[20.0, 40.0], [70.0, 45.0], [50.0, 90.0]]


def test_statistics_of_a_hand_worked_example():
    stats = regime_statistics(ZERO_SHOT, MULTITASK, LORA, fuse_all_last=45.0, expand_all_last=60.0,
                              single_task=[60.0, 55.0], chance=[25.0, 30.0])
    assert stats["zero_shot"] == 30.0 and stats["multitask"] == 90.0
    assert stats["R1"] == pytest.approx(1 / 3)
    assert stats["R1_per_task"] == pytest.approx([0.25, 0.4]) and stats["R1_per_task_ok"] is True
    assert (stats["lora_MFT"], stats["lora_Last"]) == (80.0, 70.0)
    assert stats["R2"] == 10.0
    assert stats["R3"] == pytest.approx((70 - 30) / (80 - 30))  # 0.8
    assert stats["R4"] == pytest.approx(0.75)
    # task 2 alone reaches 55 >= 50 but not 2 x its chance of 30
    assert stats["R5_per_task"] == [True, False] and stats["R5"] is False
    assert stats["in_band"] == {"R1": True, "R2": True, "R3": True, "R4": False}


def test_bands_and_learnability_at_their_edges():
    assert in_band("R1", 0.25) and in_band("R1", 0.5) and not in_band("R1", 0.51) and not in_band("R1", 0.249)
    assert in_band("R2", 6.0) and in_band("R2", 25.0) and not in_band("R2", 5.9)
    assert in_band("R3", 0.85) and not in_band("R3", 0.86)
    assert in_band("R4", 0.8) and in_band("R4", 1.2) and not in_band("R4", 0.79)
    assert in_band("R4", None) is None
    assert learnable(50.0, 25.0) and not learnable(49.9, 10.0) and not learnable(59.0, 30.0)


def test_a_task_solved_zero_shot_fails_the_per_task_ratio():
    stats = regime_statistics([80.0, 10.0], [100.0, 90.0], LORA)
    assert stats["R1_per_task"] == pytest.approx([0.8, 1 / 9]) and stats["R1_per_task_ok"] is False
    assert stats["R4"] is None and stats["R5"] is None  # not measured: absent, not a number


def test_statistics_need_every_entry_they_read():
    with pytest.raises(ValueError, match="score for every task"):
        regime_statistics([20.0, None], MULTITASK, LORA)
    with pytest.raises(ValueError, match="diagonal and its last row"):
        regime_statistics(ZERO_SHOT, MULTITASK, [[20.0, 40.0], [None, 45.0], [50.0, 90.0]])
    with pytest.raises(ValueError, match="one chance level per task"):
        regime_statistics(ZERO_SHOT, MULTITASK, LORA, single_task=[60.0, 55.0], chance=[25.0])


def test_calibration_script_writes_every_number_it_used(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "calibrate.py"), *FAST, "logger=none",
                           "benchmark.select=[Renditions,ObjectCaption]",  # a caption task: no zero Last
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "calibration.json").read_text())
    for key in ("R1", "R2", "R3", "R4"):
        assert isinstance(result[key], float), key
    assert isinstance(result["R5"], bool)
    assert result["tasks"] == ["Renditions", "ObjectCaption"]
    lora = json.loads((tmp_path / "lora" / "metrics.json").read_text())
    multitask = json.loads((tmp_path / "multitask" / "metrics.json").read_text())
    expected = regime_statistics(lora["matrix"][0], multitask["matrix"][-1], lora["matrix"],
                                 result["hide_variants"]["none:sum_ab"]["Last"],
                                 result["hide_variants"]["all:sum_ab"]["Last"],
                                 [r["single_task"] for r in result["single_task"]],
                                 [r["chance"] for r in result["single_task"]])
    assert result["statistics"] == json.loads(json.dumps(expected))
    assert len(result["update_sizes"]["functional"]) == len(result["update_sizes"]["frobenius"]) == 2
    assert all(v > 0 for v in result["update_sizes"]["functional"])
    assert result["settings"]["benchmark"]["train_per_task"] == 16  # debug=fast's count, as run
    table = (tmp_path / "calibration.md").read_text()
    assert "| R1 zero-shot / multitask |" in table and "| Renditions |" in table and "| ObjectCaption |" in table


DEFAULT_CALIBRATIONS = sorted((ROOT / "docs" / "results" / "calibration").glob("seed*.json"))


def test_the_default_has_a_calibration():
    assert "seed0" in [p.stem for p in DEFAULT_CALIBRATIONS]



@pytest.mark.parametrize("path", DEFAULT_CALIBRATIONS, ids=lambda p: p.stem)
def test_the_committed_calibrations_describe_the_default_config(path, tmp_path):
    """docs/ claims these files measure the default config: a change of the defaults the regime
    depends on (optimiser, epochs, sample counts, adapters, backbone, data) fails here until the
    calibration is rerun."""
    committed = json.loads(path.read_text())
    assert [o for o in committed["overrides"] if o != "resume=true"] == ["logger=none", f"seed={path.stem[4:]}"]
    assert committed["settings"] == regime_settings(compose_config(["method=lora"], tmp_path))
