"""Model families: what each supplies, and the batched decoder on a second family (Qwen2.5-VL,
whose image token counts depend on the image and whose positions are 3-D)."""

import pytest
import torch
from PIL import Image

from hide.data.collate import Encoder, EvalCollator, TrainCollator
from hide.data.formats import TestRecord, TrainRecord, Turn
from hide.generation import greedy_answers
from hide.models.family import family_of, model_inputs


@pytest.fixture(scope="module")
def tiny_qwen():
    from hide.models.tiny_qwen import random_tiny_qwen

    torch.manual_seed(0)
    return random_tiny_qwen()


def _images(tmp_path):
    sizes = [(64, 64), (64, 40), (48, 64)]  # different grids: 16, 8 and 12 image tokens
    paths = []
    for i, size in enumerate(sizes):
        Image.new("RGB", size, (50 * i, 100, 200 - 50 * i)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    return paths


def test_qwen_parts_and_chatml(tiny_qwen):
    family = tiny_qwen.family
    assert family.model_type == "qwen2_5_vl" and tiny_qwen.template.name == "qwen2_5_vl_chatml"
    assert tiny_qwen.projector is tiny_qwen.model.model.visual.merger
    assert tiny_qwen.language_model is tiny_qwen.model.model.language_model
    # Qwen2.5-VL-Instruct's chat template with one image before the question
    assert tiny_qwen.template.generation_prompt("what is it ?") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>what is it ?<|im_end|>\n<|im_start|>assistant\n")
    turns = [Turn("q1", "a1"), Turn("q2", "a2")]
    pieces = tiny_qwen.template.segments(turns, image=False)
    assert [p for p, target in pieces if target] == ["a1<|im_end|>", "a2<|im_end|>"]
    assert pieces[2][0].startswith("\n<|im_start|>user\nq2")


def test_qwen_image_tokens_follow_each_images_grid(tiny_qwen, tmp_path):
    paths = _images(tmp_path)
    encoder = Encoder.for_backbone(tiny_qwen)
    records = [TrainRecord(id=str(i), image=p, turns=[Turn("what is it ?", "a red star")]) for i, p in enumerate(paths)]
    batch = TrainCollator(encoder)([(0, r) for r in records])
    image = tiny_qwen.image_token_id
    counts = (batch["input_ids"] == image).sum(1).tolist()
    assert counts == [g.prod().item() // 4 for g in batch["image_grid_thw"]] == [16, 8, 12]
    loss = tiny_qwen.model(**model_inputs(tiny_qwen.model, batch), labels=batch["labels"]).loss
    assert torch.isfinite(loss)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_qwen_batched_decoding_equals_generate_one_by_one(tiny_qwen, tmp_path, share_prefix):
    """Left-padded rows of different image sizes and a text-only row: the 3-D positions of each row
    are the model's own (get_rope_index), so the answers are `generate`'s, one prompt at a time."""
    paths = _images(tmp_path)
    records = [TestRecord(question_id=str(i), image=p, text="what is the object in the image ?", answer="",
                          source_id=None) for i, p in enumerate(paths)]
    records.append(TestRecord(question_id="3", image=None, text="how many stars ?", answer="", source_id=None))
    collate = EvalCollator(Encoder.for_backbone(tiny_qwen))
    model, tokenizer = tiny_qwen.model, tiny_qwen.tokenizer
    batched = greedy_answers(model, tokenizer, collate([(0, r) for r in records]), max_new_tokens=6,
                             share_prefix=share_prefix)
    alone = []
    for record in records:
        one = collate([(0, record)])
        inputs = {k: v for k, v in model_inputs(model, one).items() if v is not None}
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        alone.append(tokenizer.decode(out[0, one["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    assert batched == alone


def test_a_model_of_no_known_family_is_refused():
    from transformers import LlamaConfig, LlamaForCausalLM

    from hide.errors import ConfigError

    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=10))
    with pytest.raises(ConfigError, match="no model family knows model_type 'llama'"):
        family_of(model)
