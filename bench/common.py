"""What the benchmarks share: the models they time, the prompts they answer, and a timer that
runs the two sides alternately so that a noisy machine slows both alike."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from hide.config import ROOT, compose_config
from hide.data.collate import Encoder, EvalCollator, TrainCollator
from hide.models.backbone import Backbone

# "Large enough that matrix work, not Python overhead, dominates": a LLaMA-style decoder of hidden
# 1024 and 8 layers (about 100M parameters, 1/64 of LLaVA-1.5-7B's width x depth product) behind a
# small ViT; random weights (only the cost is measured).
LARGER = {
    "image_size": 64, "patch_size": 8,  # 64 image tokens per prompt
    "vision": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4},
    "text": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8, "num_attention_heads": 16,
             "num_key_value_heads": 16},
}


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def default_config(*overrides: str):
    """conf/train.yaml as `python train.py` composes it (the default tiny model and benchmark)."""
    return compose_config(list(overrides), ROOT / "outputs" / "bench")


def tiny_backbone() -> Backbone:
    """The default tiny LLaVA (built on first use, then loaded from .cache)."""
    return instantiate(default_config().model)


def larger_backbone(seed: int = 0) -> Backbone:
    """A random-weight LLaVA of the LARGER shape with the tiny model's tokenizer and processor."""
    from transformers import CLIPImageProcessorPil

    from hide.models.tiny import build_model, build_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, LARGER["image_size"], LARGER["patch_size"], LARGER["vision"], LARGER["text"])
    size = LARGER["image_size"]
    processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return Backbone(model=model.eval(), tokenizer=tokenizer, image_processor=processor, name="larger")


def benchmark_tasks(backbone: Backbone):
    """The default synthetic benchmark's tasks (generated on first use) and an encoder for them."""
    cfg = default_config()
    tasks = instantiate(cfg.benchmark).load()
    encoder = Encoder.for_backbone(backbone, cfg.data.max_length)
    return tasks, encoder


def eval_batches(backbone: Backbone, n: int, batch_size: int) -> list[dict]:
    """n test prompts, n / 6 from each of the six tasks, collated (left padding) in batches of one
    task each, as the task loop evaluates (one test loader per task)."""
    tasks, encoder = benchmark_tasks(backbone)
    per_task = n // len(tasks)
    batches = []
    collate = EvalCollator(encoder)
    for t, task in enumerate(tasks):
        items = [(t, r) for r in task.test[:per_task]]
        batches += [collate(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]
    return batches


def train_batches(backbone: Backbone, n_batches: int, batch_size: int) -> list[dict]:
    tasks, encoder = benchmark_tasks(backbone)
    records = [(0, r) for r in tasks[0].train[: n_batches * batch_size]]
    collate = TrainCollator(encoder)
    return [collate(records[i:i + batch_size]) for i in range(0, len(records), batch_size)]


def alternate(sides: dict, repeats: int) -> dict[str, float]:
    """Run each side once to warm up, then `repeats` rounds of every side in turn; the median
    seconds of each side."""
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def result(name: str, goal: str, met: bool | None, ratio: float | None, **measured) -> dict:
    return {"name": name, "goal": goal, "met": met, "ratio": ratio, **measured}


BENCH_DIR = Path(__file__).resolve().parent
