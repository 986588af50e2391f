"""Batched greedy generation for evaluation: left-padded prompts, a KV cache, and the prompt
prefix that every row shares (the system prompt, up to the first image token) run once per batch
instead of once per row.

Every evaluation prompt starts with the same system prompt; on the tiny model it is about half
of the prompt's tokens, and the prefill is compute-bound (its matmuls run at the machine's peak,
bench/eval_speedup.py), so not repeating it is the largest saving left after batching. The cache
is laid out `[prefix | padding | rest of the prompt]`, with the padding masked and the positions
counted over real tokens only, so every row sees exactly the tokens and positions it would alone.

Rows whose adapters act differently (a method that routes each sample to its own mixture of experts) get
the prefix once below the first layer that differs and as a small batch of basis rows (one per
expert) from there on, mixed per row: the method says how (`ContinualMethod.answering`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from hide.distributed import world_size
from hide.models.family import family_of


@dataclass
class PrefixPlan:
    """How to run the shared prompt prefix for a batch whose rows' adapters act differently.

    The prefix runs as a batch of one under `context`, in which the method may widen it to
    `basis` rows from some layer on (the layers below act alike for every row). Each layer's
    cache then has 1 row, copied to every row of the batch, or `basis` rows, mixed per row:
    row r's keys and values are `mix[r] @ basis rows`. One-hot rows of `mix` pick a basis row;
    dense rows are exact only where keys and values are affine in the mixture (the method
    decides; a routed top layer is)."""

    mix: torch.Tensor  # (rows, basis)
    context: Callable[[], AbstractContextManager] = nullcontext


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor, stop_token: int) -> int:
    """How many leading tokens every row of a left-padded batch has in common, stopping before
    the first `stop_token` (image tokens: one id, a different image in every row) and leaving
    every row at least one token of its own (the prefill must produce each row's next-token logits)."""
    lengths = attention_mask.sum(dim=1)
    shortest = int(lengths.min())
    if shortest < 2:
        return 0
    starts = input_ids.shape[1] - lengths
    columns = starts[:, None] + torch.arange(shortest - 1, device=input_ids.device)
    aligned = input_ids.gather(1, columns)  # each row's first tokens, side by side
    common = (aligned == aligned[:1]).all(dim=0) & (aligned[0] != stop_token)
    differing = (~common).nonzero()
    return int(differing[0]) if len(differing) else shortest - 1


def _max_over_ranks(value: int, device: torch.device) -> int:
    """The largest `value` of all ranks. Under a strategy that shards parameters (FSDP, ZeRO-3)
    every forward gathers them from every rank, so all ranks must run the same number of forwards;
    one rank stopping early would leave the others waiting forever. (The task loop refuses such
    strategies across GPUs: `hide.distributed.check_strategy`.)"""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    backend_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([value], device=backend_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def _prefix_cache(model, prefix: torch.Tensor, batch_size: int, plan: PrefixPlan | None) -> DynamicCache:
    """The KV cache of `prefix` (1-D token ids) for every row of the batch."""
    cache = DynamicCache(config=model.config)
    positions = family_of(model).text_positions(torch.ones_like(prefix)[None])
    with nullcontext() if plan is None else plan.context():
        model(input_ids=prefix[None], position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1)
    if plan is not None and plan.mix.shape[0] != batch_size:
        raise ValueError(f"a prefix plan for {plan.mix.shape[0]} rows, a batch of {batch_size}")
    layers = []
    for layer, (keys, values, _) in enumerate(cache):
        if keys.shape[0] == 1:  # alike for every row
            layers.append((keys.expand(batch_size, *keys.shape[1:]), values.expand(batch_size, *values.shape[1:])))
        elif plan is not None and keys.shape[0] == plan.mix.shape[1]:
            mix = plan.mix.to(device=keys.device, dtype=keys.dtype)
            layers.append(tuple(torch.einsum("rb,b...->r...", mix, kv) for kv in (keys, values)))
        else:
            raise ValueError(f"layer {layer}'s prefix cache has {keys.shape[0]} rows; expected 1 or the "
                             f"plan's {None if plan is None else plan.mix.shape[1]} basis rows")
    return DynamicCache(ddp_cache_data=layers, config=model.config)


@torch.no_grad()
def greedy_answers(model, tokenizer, batch: dict, max_new_tokens: int, prefix_plan: PrefixPlan | None = None,
                   share_prefix: bool = True, stop_at_eos: bool = True) -> list[str]:
    """Greedy answers for a left-padded batch of `EvalCollator` (KV cache, the shared prompt
    prefix run once), decoded and stripped. Stops when every row has produced the tokenizer's end
    of sequence.

    Args:
        prefix_plan: how rows whose adapters differ get the prefix (None: every row's adapters
            act alike); a plan with more basis rows than the batch has rows is not used.
        share_prefix: run the common prefix once (False: every row's whole prompt, as one-by-one
            generation would).
        stop_at_eos: False generates exactly `max_new_tokens` (benchmarks: equal work on both sides).
    """
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    batch_size, width = input_ids.shape
    device = input_ids.device
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    lengths = attention_mask.sum(dim=1)

    if prefix_plan is not None and prefix_plan.mix.shape[1] > batch_size:
        share_prefix = False
    family = family_of(model)
    shared = shared_prefix_length(input_ids, attention_mask, family.image_token_id(model)) if share_prefix else 0
    # equal prefix forwards on every rank: a rank without a shared prefix runs none, so all do
    if world_size() > 1 and _max_over_ranks(int(shared == 0), device):
        shared = 0
    if shared:
        first = width - int(lengths[0])
        cache = _prefix_cache(model, input_ids[0, first:first + shared], batch_size, prefix_plan)
    else:
        cache = DynamicCache(config=model.config)

    # The rest of each prompt, left padded behind the prefix: [prefix | pads | rest].
    rest = int(lengths.max()) - shared
    rest_ids = input_ids[:, width - rest:].clone()
    rest_mask = attention_mask[:, width - rest:].clone()
    own_start = (width - lengths + shared) - (width - rest)  # column where each row's own tokens begin
    before = torch.arange(rest, device=device)[None, :] < own_start[:, None]
    rest_mask[before] = 0
    rest_ids[before] = pad
    mask = torch.cat([torch.ones(batch_size, shared, dtype=attention_mask.dtype, device=device), rest_mask], dim=1)
    # each row's own positions, as the whole prompt alone has them (the prefix's are 0 .. shared - 1)
    positions = family.positions(model, batch)[..., width - rest:]

    output = model(input_ids=rest_ids, attention_mask=mask, position_ids=positions,
                   **family.image_inputs(model, batch), past_key_values=cache,
                   use_cache=True, logits_to_keep=1)
    next_position = positions[..., -1:] + 1
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    tokens = []
    for step in range(max_new_tokens):
        token = output.logits[:, -1].argmax(dim=-1).masked_fill(finished, pad)
        tokens.append(token)
        if stop_at_eos:
            finished |= token == eos
        if step + 1 == max_new_tokens or not _max_over_ranks(int(not bool(finished.all())), device):
            break
        mask = torch.cat([mask, torch.ones(batch_size, 1, dtype=mask.dtype, device=device)], dim=1)
        output = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_position,
                       past_key_values=cache, use_cache=True)
        next_position = next_position + 1
    answers = torch.stack(tokens, dim=1) if tokens else input_ids.new_zeros((batch_size, 0))
    return [text.strip() for text in tokenizer.batch_decode(answers, skip_special_tokens=True)]
