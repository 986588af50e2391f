"""The tiny backbone goes through the same from_pretrained path as llava-hf checkpoints."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import LlavaForConditionalGeneration

from hide.models.backbone import BackboneError, load_pretrained_backbone
from hide.models.tiny import build_tokenizer

from conftest import CONF


def test_tiny_is_a_real_llava_loaded_from_its_cache(tiny_backbone):
    model = tiny_backbone.model
    assert isinstance(model, LlavaForConditionalGeneration)
    path = Path(model.config._name_or_path)
    assert (path / "config.json").exists() and (path / "build.json").exists()
    assert tiny_backbone.image_seq_length == model.config.image_seq_length
    again = load_pretrained_backbone(str(path))
    for (name, a), (_, b) in zip(model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_tiny_forward_and_generate(tiny_backbone):
    tok = tiny_backbone.tokenizer
    size = tiny_backbone.image_processor.crop_size["height"]
    prompt = tok("<image>" * tiny_backbone.image_seq_length + " what is it ?", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[tok.bos_token_id] + prompt])
    out = tiny_backbone.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                       pixel_values=torch.zeros(1, 3, size, size), max_new_tokens=3,
                                       do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] <= ids.shape[1] + 3


def test_tokenizer_round_trip(tmp_path):
    tok = build_tokenizer()
    text = "Subtract all red cubes . How many objects are left ?"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text.lower()
    assert tok("<image><image>", add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids("<image>")] * 2
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path)(text, add_special_tokens=False)["input_ids"] == ids


def test_wrong_paths_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match="no config.json"):
        load_pretrained_backbone(str(tmp_path))
    with pytest.raises(BackboneError, match="Could not load a LLaVA checkpoint"):
        load_pretrained_backbone(str(tmp_path / "does-not-exist"))


@pytest.mark.parametrize("part, named", [("model.safetensors", "the weights"), ("tokenizer.json", "the tokenizer"),
                                         ("preprocessor_config.json", "the image processor")])
def test_a_checkpoint_lacking_a_part_names_it(tiny_backbone, tmp_path, part, named):
    import shutil

    folder = tmp_path / "ckpt"
    tiny_backbone.model.save_pretrained(folder)
    tiny_backbone.tokenizer.save_pretrained(folder)
    tiny_backbone.image_processor.save_pretrained(folder)
    load_pretrained_backbone(str(folder))  # complete: loads
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / part).unlink()
    with pytest.raises(BackboneError, match=f"{broken} lacks {named}"):
        load_pretrained_backbone(str(broken))


def test_llava_7b_config_composes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model=llava-1.5-7b", "benchmark=ucit", "paths.data_dir=/data/ucit"])
    assert cfg.model.path == "llava-hf/llava-1.5-7b-hf"
    assert cfg.model.dtype == "bfloat16"
    assert cfg.benchmark.data_dir == "/data/ucit"
    assert [t.name for t in cfg.benchmark.tasks] == ["ImageNet-R", "ArxivQA", "VizWiz", "IconQA", "CLEVR", "Flickr30k"]


def test_activation_checkpointing_recomputes_without_a_deprecation_warning(tiny_backbone):
    import copy
    import warnings

    from hide.models.backbone import enable_activation_checkpointing

    model = copy.deepcopy(tiny_backbone.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        enable_activation_checkpointing(model)
    assert model.is_gradient_checkpointing
