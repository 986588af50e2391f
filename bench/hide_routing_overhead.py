"""HiDe's inference cost against one merged LoRA: the task-general layers' experts folded into the
base weights, the task-specific (top) layer routed per sample over 6 experts, and the routing
features computed for every batch, all through the task loop's generation. The merged LoRA costs
exactly the base model (its update is added into W), so the base model with the adapters
bypassed is the reference. Goal: at most 1.05x, on the LARGER model (hidden 1024, 8 layers) where
matrix work dominates as at 7B; the tiny model's ratio beside it, where Python overhead dominates.

The routing features come from one of two encoders:
- `clip`, what HiDe uses at 7B (`experiment=ucit_paper`): a separate CLIP. At 7B its vision
  tower is the same ViT-L/14-336 as LLaVA's and its text tower (123M) is 1.8% of LLaMA-7B, so
  here it is a random CLIP with the LARGER model's vision tower and a text tower of 1.8% of its
  language model (hidden 256, 2 layers): the headline ratio.
- `own_towers`, the tiny model's encoder (no CLIP offline): the backbone's own vision tower and
  a forward of its whole language model over each instruction, a cost that does not exist at 7B.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import torch

from bench.common import LARGER, alternate, eval_batches, larger_backbone, result, tiny_backbone
from hide.generation import greedy_answers
from hide.methods.anchors import ClipAnchorEncoder
from hide.methods.hide import HiDe
from hide.models.lora import adapters_disabled

GOAL = 1.05
NUM_TASKS = 6


def clip_encoder(backbone, directory: Path):
    """A random CLIP shaped as HiDe's anchor CLIP is beside LLaVA-1.5-7B (module docstring), saved
    and loaded through `ClipAnchorEncoder` as a local checkpoint."""
    from transformers import CLIPConfig, CLIPModel

    vision = backbone.model.config.vision_config
    config = CLIPConfig(
        text_config={"vocab_size": len(backbone.tokenizer), "hidden_size": 256, "intermediate_size": 1024,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
                     "eos_token_id": backbone.tokenizer.eos_token_id},
        vision_config={"hidden_size": vision.hidden_size, "intermediate_size": vision.intermediate_size,
                       "num_hidden_layers": vision.num_hidden_layers, "num_attention_heads": vision.num_attention_heads,
                       "image_size": vision.image_size, "patch_size": vision.patch_size},
        projection_dim=256,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    backbone.tokenizer.save_pretrained(directory)
    return partial(ClipAnchorEncoder, path=str(directory))


def prepared_hide(backbone, anchor_encoder=None) -> HiDe:
    """HiDe after 6 tasks: non-zero experts and anchors (random: only the cost matters)."""
    torch.manual_seed(0)
    method = HiDe(anchor_encoder=anchor_encoder)
    method.attach(backbone, NUM_TASKS)
    with torch.no_grad():
        for adapter in method.adapters.values():
            for B in adapter.lora_B:
                B.normal_(std=0.01)
        bank = method.anchors
        bank.image_sum.normal_()
        bank.text_sum.normal_()
        bank.count.fill_(100)
    method.on_eval_start(None, list(range(NUM_TASKS)))
    return method


def generate(model, tokenizer, batch, new_tokens: int, method: HiDe | None = None):
    """The task loop's generation (`ContinualModule.generate`), `new_tokens` for every row."""
    if method is None:
        return greedy_answers(model, tokenizer, batch, new_tokens, stop_at_eos=False)
    with method.answering(None, batch) as plan:
        return greedy_answers(model, tokenizer, batch, new_tokens, prefix_plan=plan, stop_at_eos=False)


def measure(backbone, label: str, n: int, repeats: int, new_tokens: int = 32, anchor_encoder=None) -> dict:
    method = prepared_hide(backbone, anchor_encoder)
    model, tokenizer = backbone.model.eval(), backbone.tokenizer
    batches = eval_batches(backbone, n, 32)

    @torch.no_grad()
    def hide():
        if hasattr(method.encoder, "clear_cache"):
            method.encoder.clear_cache()  # one evaluation: a fresh instruction cache
        for batch in batches:
            generate(model, tokenizer, batch, new_tokens, method)

    @torch.no_grad()
    def merged_lora():
        with adapters_disabled(backbone.language_model):
            for batch in batches:
                generate(model, tokenizer, batch, new_tokens)

    seconds = alternate({"hide": hide, "merged_lora": merged_lora}, repeats)
    return {"model": label, "hide_s": seconds["hide"], "merged_lora_s": seconds["merged_lora"],
            "ratio": seconds["hide"] / seconds["merged_lora"]}


def run(quick: bool = False) -> dict:
    n, repeats = (96, 1) if quick else (192, 3)
    larger = larger_backbone()
    name = f"larger (text hidden {LARGER['text']['hidden_size']}, {LARGER['text']['num_hidden_layers']} layers)"
    with tempfile.TemporaryDirectory() as directory:
        clip = measure(larger, f"{name}, clip anchors", n, repeats, anchor_encoder=clip_encoder(larger, Path(directory)))
    larger = larger_backbone()  # without the first HiDe's adapters
    own = measure(larger, f"{name}, own_towers anchors", n, repeats)
    tiny = measure(tiny_backbone(), "tiny (default), own_towers anchors", n, repeats)
    return result("hide_routing_overhead", f"<= {GOAL}x on the larger model (clip anchors, as at 7B)",
                  clip["ratio"] <= GOAL, clip["ratio"], larger=clip, larger_own_towers=own, tiny=tiny)
