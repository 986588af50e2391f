"""The two pretraining phases of the tiny backbone touch exactly the parts they should."""

import torch
from transformers import CLIPImageProcessorPil

from hide.data import synthetic
from hide.data.formats import load_train_file
from hide.models.backbone import Backbone
from hide.models.tiny import build_model, build_tokenizer, pretrain_vision, train_stage0

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]


def test_pretraining_phases(tmp_path):
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, 32, 16, VISION, TEXT)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    backbone = Backbone(model, tokenizer, processor, "tiny")
    synthetic.generate_stage0(tmp_path, num_samples=48, image_size=32, seed=0, progress=False)
    records = load_train_file(tmp_path / "instructions" / "Stage0" / "train.json", tmp_path / "datasets")

    vision, language = _snapshot(backbone.vision_tower), _snapshot(backbone.language_model)
    losses = pretrain_vision(backbone, records, steps=4, batch_size=8, lr=1e-3, seed=0, progress=False)
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert _changed(vision, backbone.vision_tower), "vision pretraining trains the vision tower"
    assert not _changed(language, backbone.language_model), "and nothing else"

    vision, language = _snapshot(backbone.vision_tower), _snapshot(backbone.language_model)
    projector = _snapshot(backbone.projector)
    train_stage0(backbone, records, epochs=1, batch_size=16, lr=1e-3, warmup_ratio=0.1, weight_decay=0.0,
                 seed=0, train_vision=False, progress=False)
    assert not _changed(vision, backbone.vision_tower), "stage 0 keeps the vision tower frozen"
    assert _changed(language, backbone.language_model) and _changed(projector, backbone.projector)
