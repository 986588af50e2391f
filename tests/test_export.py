"""Exports of a finished run, loaded back by plain transformers and peft, answer as the run did."""

import json
from pathlib import Path

import pytest
import torch
from pytorch_lightning.utilities import move_data_to_device

from hide.checkpoint import CheckpointError
from hide.errors import ConfigError
from hide.export import export_run, main

TASKS = "benchmark.select=[Renditions,ObjectCaption]"


def _finished_run(finished_run, tmp_path, method: str):
    return finished_run(tmp_path, f"method={method}", TASKS, "benchmark.test_per_task=12")


def _answers_one_by_one(model, tokenizer, items, collate, max_new_tokens: int) -> dict[str, str]:
    """Hugging Face `generate`, greedy, one prompt at a time."""
    answers = {}
    for item in items:
        batch = move_data_to_device(collate([item]), model.device)
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             pixel_values=batch["pixel_values"], max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        answers[item[1].question_id] = tokenizer.decode(out[0, batch["input_ids"].shape[1]:],
                                                        skip_special_tokens=True).strip()
    return answers


def _test_prompts(fast_cfg):
    """The run's test questions as model inputs (the project's prompt and image processing)."""
    from hydra.utils import instantiate

    from hide.data.collate import EvalCollator

    cfg = fast_cfg(TASKS, "benchmark.test_per_task=12")
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, benchmark=instantiate(cfg.benchmark), seed=0)
    tasks = datamodule.load(backbone)
    return tasks, EvalCollator(datamodule.encoder), cfg.benchmark.max_new_tokens


@pytest.mark.parametrize("method", ["lora", "olora", "keeplora"])  # merged slots: one adapter per linear
def test_peft_export_loads_with_plain_peft_and_answers_as_the_run_did(finished_run, fast_cfg, tmp_path, method):
    run_dir = _finished_run(finished_run, tmp_path / "run", method)
    out = tmp_path / "adapter"
    assert main([str(run_dir), "--format", "peft", "--out", str(out)]) == 0
    tasks, collate, max_new = _test_prompts(fast_cfg)
    # loading: transformers and peft alone
    from peft import PeftModel
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    base_path = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(base_path), out).eval()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    recorded = json.loads((run_dir / "predictions" / "stage2.json").read_text())
    for index, task in enumerate(tasks):
        items = [(index, r) for r in task.test]
        assert _answers_one_by_one(model, tokenizer, items, collate, max_new) == recorded[task.name], method
    # the adapters and the projector matter: the base model alone answers otherwise
    with model.disable_adapter():
        plain = {t.name: _answers_one_by_one(model, tokenizer, [(i, r) for r in t.test], collate, max_new)
                 for i, t in enumerate(tasks)}
    assert plain != recorded


def test_merged_export_loads_with_plain_transformers_and_answers_as_the_run_did(finished_run, fast_cfg, tmp_path):
    import hide

    run_dir = _finished_run(finished_run, tmp_path / "run", "lora")
    out = export_run(run_dir, "merged", tmp_path / "merged")
    tasks, collate, max_new = _test_prompts(fast_cfg)
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    merged = LlavaForConditionalGeneration.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    recorded = json.loads((run_dir / "predictions" / "stage2.json").read_text())
    for index, task in enumerate(tasks):
        assert _answers_one_by_one(merged, tokenizer, [(index, r) for r in task.test], collate, max_new) \
            == recorded[task.name]
    # the logits of the run's own model, up to the rounding of W + s B A
    run = hide.load_run(run_dir).run
    batch = collate([(0, r) for r in tasks[0].test])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        ours, theirs = run.module.model(**inputs).logits, merged(**inputs).logits
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    assert (out / "tokenizer.json").is_file() and (out / "preprocessor_config.json").is_file()


def test_export_errors_name_the_problem(finished_run, tmp_path, capsys):
    moelora = _finished_run(finished_run, tmp_path / "moelora", "moelora")
    for fmt in ("peft", "merged"):
        with pytest.raises(ConfigError, match=f"moelora cannot be exported as {fmt}.*per token or per sample.*Formats it supports: none"):
            export_run(moelora, fmt, tmp_path / f"out-{fmt}")
    hide_run = _finished_run(finished_run, tmp_path / "hide", "hide")
    with pytest.raises(ConfigError, match="hide cannot be exported as peft.*Formats it supports: merged"):
        export_run(hide_run, "peft", tmp_path / "out-hide")
    # an unfinished run: its run state is the one stage 1 left
    lora = _finished_run(finished_run, tmp_path / "lora", "lora")
    checkpoints = lora / "checkpoints"
    state = torch.load(checkpoints / "run_state.pt", weights_only=False)
    stage1 = torch.load(checkpoints / "stage1.pt", weights_only=False)
    torch.save({**state, **stage1}, checkpoints / "run_state.pt")
    (checkpoints / "stage2.pt").unlink()
    with pytest.raises(CheckpointError, match=r"unfinished \(stages 0\.\.1 of 2 done\)"):
        export_run(lora, "peft", tmp_path / "out-unfinished")
    # a finished stage exports: its own weights
    from safetensors.torch import load_file

    out = export_run(lora, "peft", tmp_path / "out-stage1", stage=1)
    exported = load_file(out / "adapter_model.safetensors")
    name = "model.language_model.layers.0.self_attn.q_proj"
    assert torch.equal(exported[f"base_model.model.{name}.lora_A.weight"], stage1["trained"][f"{name}.lora_A.0"])
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_run(lora, "peft", out, stage=1)
    zeroshot = _finished_run(finished_run, tmp_path / "zeroshot", "zeroshot")
    with pytest.raises(ConfigError, match="trains no adapters"):
        export_run(zeroshot, "merged", tmp_path / "out-zeroshot")
    # no checkpoint at all
    (checkpoints / "run_state.pt").unlink()
    assert main([str(lora), "--format", "merged", "--out", str(tmp_path / "out-none")]) == 1
    assert "no finished stage" in capsys.readouterr().err


def test_hide_after_one_task_is_one_lora(finished_run, fast_cfg, tmp_path):
    """After one task HiDe's routed layers hold one expert with weight 1: a standard peft adapter."""
    from peft import PeftModel
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    run_dir = _finished_run(finished_run, tmp_path / "run", "hide")
    out = export_run(run_dir, "peft", tmp_path / "adapter", stage=1)
    base_path = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(base_path), out).eval()
    tasks, collate, max_new = _test_prompts(fast_cfg)
    recorded = json.loads((run_dir / "predictions" / "stage1.json").read_text())
    for index, task in enumerate(tasks):
        assert _answers_one_by_one(model, AutoTokenizer.from_pretrained(base_path), [(index, r) for r in task.test],
                                   collate, max_new) == recorded[task.name]


def test_export_of_the_7b_layout(tmp_path, tiny_backbone):
    """LLaVA-1.5-7B's module names and shapes scaled down (no download): the peft export's keys
    are the ones peft maps onto llava-hf's model, and loaded back it gives the adapted logits."""
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    from hide.export import export_merged, export_peft
    from hide.methods.olora import OLoRA
    from hide.models.backbone import Backbone
    from hide.models.llava import llava_1_5_7b_config

    config = llava_1_5_7b_config()
    config.text_config.update({"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "num_key_value_heads": 4})
    config.vision_config.update({"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                                 "num_attention_heads": 2, "image_size": 28, "patch_size": 14})
    torch.manual_seed(0)
    base_dir = tmp_path / "base"
    LlavaForConditionalGeneration(config).save_pretrained(base_dir)
    input_ids = torch.randint(0, 32000, (2, 9))

    def adapted():
        model = LlavaForConditionalGeneration.from_pretrained(base_dir).eval()
        backbone = Backbone(model=model, tokenizer=tiny_backbone.tokenizer,
                            image_processor=tiny_backbone.image_processor, name=str(base_dir))
        method = OLoRA(rank=4, alpha=8)
        method.attach(backbone, num_tasks=2)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for layer in method.adapters.values():
                for slot in range(2):
                    layer.lora_B[slot].normal_(0, 0.5, generator=generator)
            model.model.multi_modal_projector.linear_2.bias.add_(1.0)
        method.on_eval_start(None, [0, 1])
        model.eval()  # the adapters' dropout too
        with torch.no_grad():
            logits = model(input_ids=input_ids).logits
        return backbone, method, logits

    backbone, method, logits = adapted()
    assert len(method.adapters) == 2 * 7
    export_peft(backbone, method, tmp_path / "peft")
    saved = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert saved["r"] == 8 and saved["lora_alpha"] == 16  # two slots of rank 4 concatenated, s = 2
    loaded = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(base_dir), tmp_path / "peft").eval()
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=input_ids).logits, logits, atol=1e-5)
        assert not torch.allclose(LlavaForConditionalGeneration.from_pretrained(base_dir)(input_ids=input_ids).logits,
                                  logits, atol=1e-3)
    backbone, method, logits = adapted()
    export_merged(backbone, method, tmp_path / "merged")
    merged = LlavaForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=input_ids).logits, logits, atol=1e-4)


def test_hide_merged_export_folds_the_fused_layers_and_load_run_routes_as_the_run_did(finished_run, fast_cfg, tmp_path):
    """HiDe's fused layers are folded into the checkpoint; its routed layers' experts are peft
    adapters named by task, beside the anchors; hide.load_run reads the folder back and answers
    exactly as the run did."""
    import hide
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    run_dir = _finished_run(finished_run, tmp_path / "run", "hide")
    out = export_run(run_dir, "merged", tmp_path / "merged")
    assert sorted(p.name for p in (out / "experts").iterdir() if p.is_dir()) == ["ObjectCaption", "Renditions"]
    model = hide.load_run(out)
    assert model.run is None and model.task_names == ["Renditions", "ObjectCaption"] and model.stage == 2
    with pytest.raises(CheckpointError, match="holds the model of stage 2 only"):
        hide.load_run(out, stage=1)
    # the fused layers are folded into the checkpoint, the routed (top) layer is the base one
    from safetensors.torch import load_file

    base_path = json.loads((out / "hide_export.json").read_text())["method"]["anchor_encoder"]["base_model"]
    merged, base = load_file(out / "model.safetensors"), load_file(Path(base_path) / "model.safetensors")
    fused, routed = "language_model.model.layers.0.mlp.up_proj.weight", "language_model.model.layers.1.mlp.up_proj.weight"
    assert not torch.equal(merged[fused], base[fused]) and torch.equal(merged[routed], base[routed])
    recorded = json.loads((run_dir / "predictions" / "stage2.json").read_text())
    tasks, _, _ = _test_prompts(fast_cfg)
    for index, task in enumerate(tasks):
        assert model.predict_task(task, index) == recorded[task.name]
    # each expert alone is a standard peft adapter on the merged checkpoint (hard routing)
    plain = LlavaForConditionalGeneration.from_pretrained(out)
    expert = PeftModel.from_pretrained(plain, out / "experts" / "Renditions", adapter_name="Renditions")
    assert any("lora_A" in n for n, _ in expert.named_parameters())
