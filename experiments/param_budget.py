"""Trainable and stored parameters of every method, on the tiny model, LLaVA-1.5-7B and
Qwen2.5-VL-7B.

    python experiments/param_budget.py [HYDRA OVERRIDES ...] [--tasks T] [--out DIR]

Each method's config (conf/method/*.yaml) is attached to the model as a run would attach it. The
7B models are built on the meta device from their published shapes (LLaVA-1.5-7B: CLIP
ViT-L/14-336, 2-layer MLP projector, a 32-layer 4096-wide LLaMA; Qwen2.5-VL-7B: its ViT and merger,
a 28-layer 3584-wide Qwen2), so nothing is downloaded or allocated. Writes DIR/param_budget.json
(docs/results/ by default: the table in docs/design.md is generated from it) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from transformers import LlavaForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

from hide.config import compose_config
from hide.models.backbone import Backbone
from hide.models.llava import llava_1_5_7b_config
from hide.models.qwen2_5_vl import qwen2_5_vl_7b_config

METHODS = ["lora", "moelora", "olora", "ewc", "lwf", "replay", "reglora", "keeplora", "disco", "hide", "multitask"]


def llava_7b_on_meta() -> Backbone:
    """LLaVA-1.5-7B's architecture with no weights."""
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_1_5_7b_config())
    return Backbone(model=model, tokenizer=None, image_processor=None, name="llava-1.5-7b (meta)")


def qwen_7b_on_meta() -> Backbone:
    """Qwen2.5-VL-7B's architecture with no weights."""
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qwen2_5_vl_7b_config())
    return Backbone(model=model, tokenizer=None, image_processor=None, name="qwen2.5-vl-7b (meta)")


def count(make_backbone, overrides: list[str], num_tasks: int) -> dict[str, dict[str, int]]:
    rows = {}
    for name in METHODS:
        cfg = compose_config([f"method={name}", *overrides], Path(tempfile.mkdtemp(prefix="param-budget-")))
        backbone = make_backbone(cfg)
        method = instantiate(cfg.method)
        method.attach(backbone, num_tasks)
        rows[name] = {"trainable": method.trainable_parameters(backbone.model),
                      "stored": method.stored_parameters(backbone.model, num_tasks)}
    return rows


def markdown(result: dict) -> str:
    tasks = result["tasks"]
    models = [("tiny", "tiny"), ("llava-1.5-7b", "LLaVA-1.5-7B"), ("qwen2.5-vl-7b", "Qwen2.5-VL-7B")]
    lines = ["| method | " + " | ".join(f"{label}: per task | {label}: stored after {tasks}" for _, label in models) + " |",
             "|---|" + "---:|---:|" * len(models)]
    for name in METHODS:
        lines.append(f"| {name} | " + " | ".join(f"{result[key][name]['trainable']:,} | {result[key][name]['stored']:,}"
                                                 for key, _ in models) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--out", default="docs/results")
    args, overrides = parser.parse_known_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tiny = count(lambda cfg: instantiate(cfg.model), overrides, args.tasks)
    llava = count(lambda cfg: llava_7b_on_meta(), overrides, args.tasks)
    qwen = count(lambda cfg: qwen_7b_on_meta(), overrides, args.tasks)
    result = {"tasks": args.tasks, "tiny": tiny, "llava-1.5-7b": llava, "qwen2.5-vl-7b": qwen}
    (out / "param_budget.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result), end="")


if __name__ == "__main__":
    main()
