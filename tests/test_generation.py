"""Batched greedy generation (`hide.generation`): the shared prompt prefix run once, the rest of
each prompt behind it, gives every row the answer it gets alone from Hugging Face's `generate`."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from conftest import hide_with_random_experts
from hydra.utils import instantiate
from pytorch_lightning.utilities import move_data_to_device

from hide.data.collate import EvalCollator
from hide.generation import PrefixPlan, greedy_answers, shared_prefix_length
from hide.models.tiny import build_model

IMAGE = 9


def test_shared_prefix_stops_at_the_first_difference_or_image_token():
    pad = 0
    ids = torch.tensor([[pad, pad, 1, 2, 3, IMAGE, 5, 6],
                        [1, 2, 3, IMAGE, 7, 7, 7, 7],
                        [pad, 1, 2, 3, IMAGE, 8, 8, 8]])
    mask = (ids != pad).long()
    mask[1] = 1
    assert shared_prefix_length(ids, mask, IMAGE) == 3  # 1 2 3, then the image
    ids[2, 3] = 4
    assert shared_prefix_length(ids, mask, IMAGE) == 2  # row 2 differs at its third token
    same = torch.tensor([[1, 2, 3], [1, 2, 3]])
    assert shared_prefix_length(same, torch.ones_like(same), IMAGE) == 2  # each row keeps one token
    assert shared_prefix_length(same[:, :1], torch.ones_like(same[:, :1]), IMAGE) == 0


def _widened(layer, rows: int):
    """A plan context: the prefix's batch of one becomes `rows` rows at `layer`'s input."""
    @contextmanager
    def context():
        def widen(module, args, kwargs):
            return (args[0].expand(rows, *args[0].shape[1:]), *args[1:]), kwargs
        handle = layer.register_forward_pre_hook(widen, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
    return context


def _hf_one_by_one(model, tokenizer, collate, items, max_new):
    answers = []
    for item in items:
        batch = move_data_to_device(collate([item]), model.device)
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             pixel_values=batch["pixel_values"], max_new_tokens=max_new, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        answers.append(tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])])
def test_batched_answers_with_the_shared_prefix_equal_hugging_face_one_by_one(fast_cfg, device):
    cfg = fast_cfg()
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, benchmark=instantiate(cfg.benchmark), seed=0)
    tasks = datamodule.load(backbone)
    tokenizer = backbone.tokenizer
    # The fast backbone answers nearly everything alike; random weights with a wide init give
    # confident, varied answers that any wrong position, mask or cache row would change.
    torch.manual_seed(0)
    text = {**cfg.model.text, "initializer_range": 0.2}
    model = build_model(tokenizer, cfg.model.image_size, cfg.model.patch_size, dict(cfg.model.vision), text)
    model = model.eval().to(device)
    collate = EvalCollator(datamodule.encoder)
    items = [(t, r) for t in range(len(tasks)) for r in tasks[t].test[:5]]  # prompts of unequal length
    batch = move_data_to_device(collate(items), device)
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1
    shared = shared_prefix_length(batch["input_ids"], batch["attention_mask"], backbone.image_token_id)
    assert shared > 20  # the system prompt
    reference = _hf_one_by_one(model, tokenizer, collate, items, 8)
    print(reference)
    assert len(set(reference)) > len(items) // 2
    assert greedy_answers(model, tokenizer, batch, 8) == reference
    assert greedy_answers(model, tokenizer, batch, 8, share_prefix=False) == reference
    # a plan's checks (its mixing is tested with per-row experts below)
    rows = len(items)
    top = model.model.language_model.layers[-1]
    one_hot = torch.nn.functional.one_hot(torch.arange(rows, device=device) % 2, 2).float()
    with pytest.raises(ValueError, match="a prefix plan for 3 rows"):
        greedy_answers(model, tokenizer, batch, 8, prefix_plan=PrefixPlan(one_hot[:3], _widened(top, 2)))
    with pytest.raises(ValueError, match=r"layer 1's prefix cache has 3 rows; expected 1 or the plan's 2"):
        greedy_answers(model, tokenizer, batch, 8, prefix_plan=PrefixPlan(one_hot, _widened(top, 3)))
    # without stopping at </s> (benchmarks' equal work) each answer goes on past its end
    longer = greedy_answers(model, tokenizer, batch, 12, stop_at_eos=False)
    assert all(a.startswith(r) for a, r in zip(longer, reference))
    assert sum(len(a) > len(r) for a, r in zip(longer, reference)) > 0


def test_prefix_plan_with_per_row_experts_equals_hugging_face_one_by_one(fast_cfg):
    """HiDe's plan for the shared prefix: one basis row per expert in the routed top layer, each
    row's keys and values mixed by its own routing weights. Here three random experts that change
    the answers and a different mixture in every row: the batched answers must be each row's
    answer from `generate` with its own mixture, alone."""
    from hide.models.backbone import Backbone

    cfg = fast_cfg("benchmark.num_tasks=null")  # prompts of every kind: a random model answers by the prompt
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, benchmark=instantiate(cfg.benchmark), seed=0)
    tasks = datamodule.load(backbone)
    tokenizer = backbone.tokenizer
    torch.manual_seed(0)
    text = {**cfg.model.text, "initializer_range": 0.2}
    model = build_model(tokenizer, cfg.model.image_size, cfg.model.patch_size, dict(cfg.model.vision), text).eval()
    wide = Backbone(model=model, tokenizer=tokenizer, image_processor=backbone.image_processor, name="wide")
    method, generator = hide_with_random_experts(wide)
    collate = EvalCollator(datamodule.encoder)
    items = [(t, r) for t in range(len(tasks)) for r in tasks[t].test[:2]]
    batch = collate(items)
    weights = torch.softmax(torch.randn(len(items), 3, generator=generator) * 2, dim=-1)  # every row its own mixture

    def set_routing(w):
        for adapter in method.routed.values():
            adapter.set_routing_weights(w)

    reference = []
    for i, item in enumerate(items):
        set_routing(weights[i:i + 1])
        reference += _hf_one_by_one(model, tokenizer, collate, [item], 8)
    set_routing(weights)
    plan = method.prefix_plan(weights)
    assert plan.mix.shape == (len(items), 3)
    assert greedy_answers(model, tokenizer, batch, 8, prefix_plan=plan) == reference
    assert len(set(reference)) >= len(items) // 2
    # the experts and the mixtures matter: every row routed alike, or rows given each other's
    # mixtures, answer otherwise
    alike = []
    for item in items:
        set_routing(weights[:1])
        alike += _hf_one_by_one(model, tokenizer, collate, [item], 8)
    assert alike != reference
    set_routing(weights)
    swapped = method.prefix_plan(weights)
    swapped = PrefixPlan(swapped.mix.roll(1, dims=0), swapped.context)
    assert greedy_answers(model, tokenizer, batch, 8, prefix_plan=swapped) != reference
