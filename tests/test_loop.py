"""Evaluation schedules and how each method's stages fill the accuracy matrix."""

import pytest

from hide.loop import tasks_to_evaluate
from hide.methods.lora import SequentialLoRA
from hide.methods.multitask import Multitask
from hide.methods.zeroshot import ZeroShot
from hide.metrics.continual import continual_metrics


def test_schedules():
    assert tasks_to_evaluate("full", 0, 3) == [0, 1, 2]
    assert tasks_to_evaluate("full", 1, 3) == [0, 1, 2]
    assert tasks_to_evaluate("seen", 0, 3) == []
    assert tasks_to_evaluate("seen", 2, 3) == [0, 1]
    assert tasks_to_evaluate("seen_next", 0, 3) == [0, 1, 2]
    assert tasks_to_evaluate("seen_next", 1, 3) == [0, 1]
    assert tasks_to_evaluate("seen_next", 3, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="eval.schedule"):
        tasks_to_evaluate("sometimes", 1, 3)


def _matrix(schedule, T=3):
    rows = [[None] * T for _ in range(T + 1)]
    for stage in range(T + 1):
        for t in tasks_to_evaluate(schedule, stage, T):
            rows[stage][t] = 10.0 * stage + t
    return rows


def test_cheaper_schedules_report_absent_metrics():
    seen = continual_metrics(_matrix("seen"))
    assert seen["FWT"] is None and seen["Last"] is not None and seen["BWT"] is not None
    seen_next = continual_metrics(_matrix("seen_next"))
    assert all(v is not None for v in seen_next.values())


def test_method_stages():
    assert SequentialLoRA().stages(3) == [[0], [1], [2]]
    assert Multitask().stages(3) == [None, None, [0, 1, 2]]
    assert ZeroShot().stages(3) == [[], [], []]
