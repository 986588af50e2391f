"""The task loop's evaluation (`hide.generation.greedy_answers`: batch 32, left padding, KV cache,
the shared system-prompt prefix run once per batch) against one sample at a time through Hugging
Face's `generate` (what research code does), on the default tiny model and the same prompts: the
answers must be the same and ours at least 10x faster. Batching without the shared prefix is
timed beside them, to show what each part gives.

On a small model on CPU the batched prefill is compute-bound, so the ratio has a ceiling: the
one-by-one time over the time the batched prefill's matmuls alone take at this machine's measured
matmul peak (`ratio_ceiling`). It is reported with the result."""

from __future__ import annotations

import time

import torch
from torch import nn

from bench.common import alternate, eval_batches, result, tiny_backbone
from hide.generation import greedy_answers, shared_prefix_length

GOAL = 10.0
MAX_NEW_TOKENS = 32  # the synthetic benchmark's budget


def hf_generate(model, tokenizer, batch: dict) -> list[str]:
    output = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            pixel_values=batch["pixel_values"], max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                            use_cache=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    answers = output[:, batch["input_ids"].shape[1]:]
    return [text.strip() for text in tokenizer.batch_decode(answers, skip_special_tokens=True)]


def matmul_peak_gflops(size: int = 1024, repeats: int = 20) -> float:
    """fp32 matmul throughput of this machine (all threads torch uses), the best of `repeats`."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def prefill_gflop(model, batches: list[dict]) -> float:
    """The matmul work of our batched prefills (shared prefix once, the rest of every row padded
    to its batch's longest, the vision tower and projector on every image); decoding not counted."""
    linear = lambda module: sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))  # noqa: E731
    language = linear(model.model.language_model)
    vision = linear(model.model.vision_tower)
    projector = linear(model.model.multi_modal_projector)
    image_tokens = model.config.image_seq_length
    flops = 0.0
    for batch in batches:
        rows = batch["input_ids"].shape[0]
        lengths = batch["attention_mask"].sum(1)
        shared = shared_prefix_length(batch["input_ids"], batch["attention_mask"], model.config.image_token_id)
        text_tokens = shared + rows * (int(lengths.max()) - shared)
        flops += 2 * (language * text_tokens + vision * rows * (image_tokens + 1) + projector * rows * image_tokens)
    return flops / 1e9


def run(quick: bool = False) -> dict:
    torch.manual_seed(0)
    backbone = tiny_backbone()
    model, tokenizer = backbone.model.eval(), backbone.tokenizer
    n = 96 if quick else 192  # 16 or 32 prompts per task
    batched = eval_batches(backbone, n, 32)
    singles = eval_batches(backbone, n, 1)
    answers = {}

    def ours():
        answers["ours"] = [a for b in batched for a in greedy_answers(model, tokenizer, b, MAX_NEW_TOKENS)]

    def batched_no_prefix():
        answers["batched_no_prefix"] = [
            a for b in batched for a in greedy_answers(model, tokenizer, b, MAX_NEW_TOKENS, share_prefix=False)]

    def hf_one_by_one():
        answers["one_by_one"] = [a for b in singles for a in hf_generate(model, tokenizer, b)]

    seconds = alternate({"ours": ours, "batched_no_prefix": batched_no_prefix, "one_by_one": hf_one_by_one},
                        repeats=1 if quick else 3)
    same = sum(a == b for a, b in zip(answers["ours"], answers["one_by_one"]))
    same_no_prefix = sum(a == b for a, b in zip(answers["batched_no_prefix"], answers["one_by_one"]))
    ratio = seconds["one_by_one"] / seconds["ours"]
    peak = matmul_peak_gflops()
    floor_s = prefill_gflop(model, batched) / peak
    return result("eval_speedup", f">= {GOAL:.0f}x, same answers", ratio >= GOAL and same == n, ratio,
                  model="tiny (default)", prompts=n, ours_s=seconds["ours"],
                  batched_no_prefix_s=seconds["batched_no_prefix"], one_by_one_s=seconds["one_by_one"],
                  ratio_no_prefix=seconds["one_by_one"] / seconds["batched_no_prefix"],
                  same_answers=f"{same}/{n}", same_answers_no_prefix=f"{same_no_prefix}/{n}",
                  matmul_peak_gflops=peak, prefill_at_peak_s=floor_s,
                  ratio_ceiling=seconds["one_by_one"] / floor_s)
