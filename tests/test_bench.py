"""The benchmarks under bench/ are run by `make bench`, not by the suite (they take minutes and
need the default tiny model); the suite only checks that they import and that the runner's
side-by-side timer does what it says."""

from __future__ import annotations

import importlib

from bench.common import alternate
from bench.run import BENCHMARKS


def test_every_benchmark_imports_and_has_run():
    for name in BENCHMARKS:
        assert callable(importlib.import_module(f"bench.{name}").run)


def test_alternate_warms_up_then_takes_the_median_of_interleaved_rounds():
    calls = []
    seconds = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b"] * 4  # one warm-up round, then 3 interleaved rounds
    assert set(seconds) == {"a", "b"} and all(s >= 0 for s in seconds.values())


def test_the_gpu_step_benchmark_runs_its_small_shape():
    """bench/gpu_step.py times the 7B shape on a GPU; its small shape runs the same code here."""
    from bench.gpu_step import measure

    outcome = measure("small", batch=1, text_tokens=4, warmup=1, steps=1, gen_batch=2, new_tokens=2)
    assert outcome["train_tokens_per_s"] > 0 and outcome["model_tflops"] > 0
    assert outcome["generation"]["new_tokens_per_s"] > 0
