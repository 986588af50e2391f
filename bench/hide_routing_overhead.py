"""HiDe's inference cost against one merged LoRA: the task-general layers' experts folded into the
base weights, the task-specific (top) layer routed per sample over 6 experts, and the routing
features (`OwnTowersEncoder`: the vision tower's patch mean and the base language model's last
instruction token) computed for every batch. The merged LoRA costs exactly the base model (its
update is added into W), so the base model with the adapters bypassed is the reference. Goal: at
most 1.05x, on the LARGER model (hidden 1024, 8 layers) where matrix work dominates as at 7B; the
tiny model's ratio beside it, where Python overhead dominates."""

from __future__ import annotations

import torch

from bench.common import LARGER, alternate, eval_batches, larger_backbone, result, tiny_backbone
from hide.generation import greedy_answers
from hide.methods.hide import HiDe
from hide.models.lora import adapters_disabled

GOAL = 1.05
NUM_TASKS = 6


def prepared_hide(backbone) -> HiDe:
    """HiDe after 6 tasks: non-zero experts and anchors (random: only the cost matters)."""
    torch.manual_seed(0)
    method = HiDe()
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
    groups = method.prefix_groups(batch["input_ids"].shape[0]) if method is not None else None
    return greedy_answers(model, tokenizer, batch, new_tokens, prefix_groups=groups, stop_at_eos=False)


def measure(backbone, label: str, n: int, repeats: int, new_tokens: int = 32) -> dict:
    method = prepared_hide(backbone)
    model, tokenizer = backbone.model.eval(), backbone.tokenizer
    batches = eval_batches(backbone, n, 32)

    @torch.no_grad()
    def hide():
        for batch in batches:
            method.before_generate(None, batch)
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
    larger = measure(larger_backbone(), f"larger (text hidden {LARGER['text']['hidden_size']}, "
                     f"{LARGER['text']['num_hidden_layers']} layers)", 96 if quick else 192, 1 if quick else 3)
    tiny = measure(tiny_backbone(), "tiny (default)", 96 if quick else 192, 1 if quick else 3)
    return result("hide_routing_overhead", f"<= {GOAL}x on the larger model", larger["ratio"] <= GOAL,
                  larger["ratio"], larger=larger, tiny=tiny)
