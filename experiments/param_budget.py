"""Trainable and stored parameters of every method, on the tiny model and on LLaVA-1.5-7B.

    python experiments/param_budget.py [HYDRA OVERRIDES ...] [--tasks T] [--out DIR]

Each method's config (conf/method/*.yaml) is attached to the model as a run would attach it. The
7B model is built on the meta device from LLaVA-1.5-7B's published shapes (CLIP ViT-L/14-336,
2-layer MLP projector, a 32-layer 4096-wide LLaMA), so nothing is downloaded or allocated.
Writes DIR/param_budget.json and DIR/param_budget.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra.utils import instantiate
from transformers import LlavaForConditionalGeneration

from hide.config import compose_config
from hide.models.backbone import Backbone, llava_1_5_7b_config

METHODS = ["lora", "moelora", "olora", "ewc", "lwf", "replay", "reglora", "keeplora", "disco", "hide", "multitask"]


def llava_7b_on_meta() -> Backbone:
    """LLaVA-1.5-7B's architecture with no weights."""
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_1_5_7b_config())
    return Backbone(model=model, tokenizer=None, image_processor=None, name="llava-1.5-7b (meta)")


def count(make_backbone, overrides: list[str], num_tasks: int, out: Path) -> dict[str, dict[str, int]]:
    rows = {}
    for name in METHODS:
        cfg = compose_config([f"method={name}", *overrides], out / "cfg")
        backbone = make_backbone(cfg)
        method = instantiate(cfg.method)
        method.attach(backbone, num_tasks)
        rows[name] = {"trainable": method.trainable_parameters(backbone.model),
                      "stored": method.stored_parameters(backbone.model, num_tasks)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--out", default="outputs/param_budget")
    args, overrides = parser.parse_known_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tiny = count(lambda cfg: instantiate(cfg.model), overrides, args.tasks, out)
    big = count(lambda cfg: llava_7b_on_meta(), overrides, args.tasks, out)
    result = {"tasks": args.tasks, "tiny": tiny, "llava-1.5-7b": big}
    (out / "param_budget.json").write_text(json.dumps(result, indent=2))
    lines = [f"| method | tiny: per task | tiny: stored after {args.tasks} | 7B: per task | 7B: stored after {args.tasks} |",
             "|---|---:|---:|---:|---:|"]
    for name in METHODS:
        lines.append(f"| {name} | {tiny[name]['trainable']:,} | {tiny[name]['stored']:,} | "
                     f"{big[name]['trainable']:,} | {big[name]['stored']:,} |")
    (out / "param_budget.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
