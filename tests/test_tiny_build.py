"""The two pretraining phases of the tiny backbone touch exactly the parts they should."""

import json

import pytest
import torch
from transformers import CLIPImageProcessorPil

from hide.data import synth
from hide.data.formats import load_train_file
from hide.models.backbone import Backbone
from hide.models.tiny import _patch_cells, build_model, build_tokenizer, pretrain_vision, train_stage0

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]


def _backbone_and_stage0(root, patch_size: int, num_samples: int):
    """A random-init 32-px backbone and a stage-0 mixture written under `root`."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, 32, patch_size, VISION, TEXT)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    synth.generate_stage0(root, num_samples=num_samples, image_size=32, seed=0, progress=False)
    records = load_train_file(root / "instructions" / "Stage0" / "train.json", root / "datasets")
    return Backbone(model, tokenizer, processor, "tiny"), records


def test_pretraining_phases(tmp_path):
    backbone, records = _backbone_and_stage0(tmp_path, patch_size=16, num_samples=48)

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


def test_patch_cells_follow_the_layout_grid():
    assert _patch_cells(4, 4).tolist() == list(range(16))  # patch 16 on 64 px: one patch per cell
    fine = _patch_cells(4, 8).view(8, 8)  # patch 8: 2x2 patches per cell
    assert fine[::2, ::2].flatten().tolist() == list(range(16))
    assert fine[1, 1].item() == 0 and fine[6, 7].item() == 15 and fine[0, 2].item() == 1


def test_dense_vision_pretraining(tmp_path):
    """With per-cell labels (None for free scenes) and counts, the extra heads add to every
    step's loss; a label list that does not match the records is refused."""
    backbone, records = _backbone_and_stage0(tmp_path, patch_size=8, num_samples=24)
    path = tmp_path / "instructions" / "Stage0" / "train.json"
    labels = [synth.stage0_cell_labels(r["meta"]) for r in json.loads(path.read_text())]
    assert any(c is None for c in labels) and any(c is not None for c in labels)

    vision = _snapshot(backbone.vision_tower)
    plain = pretrain_vision(backbone, records, steps=6, batch_size=8, lr=1e-3, seed=0, progress=False)
    backbone.vision_tower.load_state_dict(vision)
    counts = [synth.stage0_counts(r["meta"]) for r in json.loads(path.read_text())]
    dense = pretrain_vision(backbone, records, steps=6, batch_size=8, lr=1e-3, seed=0, progress=False,
                            cell_labels=labels, dense_weight=1.0, counts=counts)
    assert all(torch.isfinite(torch.tensor(dense)))
    # the same batches with the dense and count terms added: each step costs more
    assert sum(d > p for d, p in zip(dense, plain)) >= 4
    with pytest.raises(ValueError, match="cell_labels"):
        pretrain_vision(backbone, records, steps=1, batch_size=8, lr=1e-3, seed=0, progress=False,
                        cell_labels=labels[:-1])


def test_task_preview_build_keeps_previews_out_of_vision_pretraining(tmp_path, monkeypatch):
    """With stage0.task_preview the previews join stage 0 but not the vision tower's classifier."""
    import hide.models.tiny as tiny

    seen = {}
    original_vision, original_stage0 = tiny.pretrain_vision, tiny.train_stage0

    def vision(backbone, records, **kwargs):
        seen["vision"] = [r.id for r in records]
        return original_vision(backbone, records, **kwargs)

    def stage0(backbone, records, **kwargs):
        seen["stage0"] = [r.id for r in records]
        return original_stage0(backbone, records, **kwargs)

    monkeypatch.setattr(tiny, "pretrain_vision", vision)
    monkeypatch.setattr(tiny, "train_stage0", stage0)
    tiny.load_tiny_backbone(str(tmp_path), image_size=32, patch_size=16, vision=VISION, text=TEXT,
                            vision_pretrain={"steps": 2, "batch_size": 4, "lr": 1e-3, "dense": True, "counts": True},
                            stage0={"num_samples": 12, "task_preview": 2, "epochs": 1, "batch_size": 4, "lr": 1e-3,
                                    "warmup_ratio": 0.0, "weight_decay": 0.0},
                            progress=False)
    previews = [i for i in seen["stage0"] if not i.startswith("Stage0_train_")]
    assert len(previews) == 2 * len(synth.TASK_NAMES)
    assert seen["vision"] == [i for i in seen["stage0"] if i.startswith("Stage0_train_")]
    assert (tmp_path / "stage0-data-12-32-0-preview2").is_dir()
