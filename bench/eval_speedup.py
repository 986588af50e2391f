"""Batched generation (batch 32, left padding, KV cache: what the task loop does) against one
sample at a time (what research code does) on the default tiny model, same prompts: the answers
must be the same and the batched side at least 10x faster."""

from __future__ import annotations

import torch

from bench.common import alternate, eval_batches, result, tiny_backbone
from hide.module import greedy_answers

GOAL = 10.0


def run(quick: bool = False) -> dict:
    torch.manual_seed(0)
    backbone = tiny_backbone()
    model, tokenizer = backbone.model.eval(), backbone.tokenizer
    n = 96 if quick else 192  # 16 or 32 prompts per task
    batched = eval_batches(backbone, n, 32)
    singles = eval_batches(backbone, n, 1)
    max_new = 32  # the synthetic benchmark's budget
    answers = {}

    def ours():
        answers["batched"] = [a for b in batched for a in greedy_answers(model, tokenizer, b, max_new)]

    def one_by_one():
        answers["single"] = [a for b in singles for a in greedy_answers(model, tokenizer, b, max_new)]

    seconds = alternate({"batched": ours, "single": one_by_one}, repeats=1 if quick else 3)
    same = sum(a == b for a, b in zip(answers["batched"], answers["single"]))
    ratio = seconds["single"] / seconds["batched"]
    return result("eval_speedup", f">= {GOAL:.0f}x, same answers", ratio >= GOAL and same == n, ratio,
                  model="tiny (default)", prompts=n, batched_s=seconds["batched"], single_s=seconds["single"],
                  same_answers=f"{same}/{n}")
