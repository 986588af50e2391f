"""Batched greedy generation (`hide.generation`): the shared prompt prefix run once, the rest of
each prompt behind it, gives every row the answer it gets alone from Hugging Face's `generate`."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
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
    # a plan: the prefix widened to basis rows at the top layer, each row's cache mixed from them
    rows = len(items)
    top = model.model.language_model.layers[-1]
    one_hot = torch.nn.functional.one_hot(torch.arange(rows, device=device) % 2, 2).float()
    halves = torch.full((rows, 2), 0.5, device=device)  # two identical basis rows: any mixture summing to 1 is the same
    assert greedy_answers(model, tokenizer, batch, 8, prefix_plan=PrefixPlan(one_hot, _widened(top, 2))) == reference
    assert greedy_answers(model, tokenizer, batch, 8, prefix_plan=PrefixPlan(halves, _widened(top, 2))) == reference
    doubled = greedy_answers(model, tokenizer, batch, 8, prefix_plan=PrefixPlan(halves * 4, _widened(top, 2)))
    assert doubled != reference  # the mixture is used (the top layer's keys and values 4 times as large)
    with pytest.raises(ValueError, match="a prefix plan for 3 rows"):
        greedy_answers(model, tokenizer, batch, 8, prefix_plan=PrefixPlan(one_hot[:3], _widened(top, 2)))
    with pytest.raises(ValueError, match=r"layer 1's prefix cache has 3 rows; expected 1 or the plan's 2"):
        greedy_answers(model, tokenizer, batch, 8, prefix_plan=PrefixPlan(one_hot, _widened(top, 3)))
    # without stopping at </s> (benchmarks' equal work) each answer goes on past its end
    longer = greedy_answers(model, tokenizer, batch, 12, stop_at_eos=False)
    assert all(a.startswith(r) for a, r in zip(longer, reference))
    assert sum(len(a) > len(r) for a, r in zip(longer, reference)) > 0
