"""Benchmark formats, the synthetic benchmark, prompts and the continual datamodule."""
