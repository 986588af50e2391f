"""Model families: what each supplies, and the batched decoder on a second family (Qwen2.5-VL,
whose image token counts depend on the image and whose positions are 3-D)."""

import pytest
import torch
from conftest import hide_with_random_experts
from PIL import Image

from hide.data.collate import Encoder, EvalCollator, TrainCollator
from hide.data.formats import TestRecord, TrainRecord, Turn
from hide.generation import greedy_answers
from hide.models.family import family_of, model_inputs


@pytest.fixture(scope="module")
def tiny_qwen():
    from hide.models.tiny import tiny_spec
    from hide.models.tiny_qwen import new_tiny_qwen

    torch.manual_seed(0)
    spec = tiny_spec(image_size=64, patch_size=8, family="qwen2_5_vl",
                     vision={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
                     text={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "num_key_value_heads": 2})
    backbone = new_tiny_qwen(spec)  # untrained: the family's plumbing, not its answers
    backbone.model.eval()
    return backbone


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


@pytest.mark.parametrize("which", ["llava", "qwen"])
def test_lora_goes_on_the_familys_decoder_linears_only(tiny_qwen, tiny_backbone, which):
    """A method with no `targets` (the adapter config's default) adapts exactly its family's
    decoder linears, every layer's, and nothing of the vision tower or projector (Qwen's vision
    blocks have linears of the same names)."""
    import copy

    from hide.methods.lora import SequentialLoRA

    backbone = copy.deepcopy(tiny_qwen if which == "qwen" else tiny_backbone)
    method = SequentialLoRA(rank=2, alpha=4)
    method.attach(backbone, num_tasks=2)
    targets = backbone.family.lora_targets
    layers = backbone.language_model.config.num_hidden_layers
    assert len(method.adapters) == layers * len(targets)
    assert {name.rsplit(".", 1)[-1] for name in method.adapters} == set(targets)
    adapted = {id(m) for m in method.adapters.values()}
    in_language_model = {id(m) for m in backbone.language_model.modules()}
    assert adapted <= in_language_model
    assert not adapted & {id(m) for m in backbone.family.vision_tower(backbone.model).modules()}
    assert not adapted & {id(m) for m in backbone.projector.modules()}


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


def _saved_tiny_qwen(tiny_qwen, folder):
    tiny_qwen.model.save_pretrained(folder)
    tiny_qwen.tokenizer.save_pretrained(folder)
    tiny_qwen.image_processor.save_pretrained(folder)
    return str(folder)


def test_a_saved_qwen_loads_through_the_one_loading_path(tiny_qwen, tmp_path):
    from hide.models.backbone import load_pretrained_backbone

    loaded = load_pretrained_backbone(_saved_tiny_qwen(tiny_qwen, tmp_path / "base"))
    assert type(loaded.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(loaded.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert loaded.template.name == "qwen2_5_vl_chatml"  # the family's, the folder keeping none
    assert loaded.tokenizer.convert_tokens_to_ids("<|image_pad|>") == loaded.image_token_id
    # a pixel budget of its own (model.image_processor.max_pixels) gives a 64 px image fewer tokens
    small = load_pretrained_backbone(str(tmp_path / "base"), image_processor={"max_pixels": 32 * 32})
    grids = [b.image_processor(images=[Image.new("RGB", (64, 64))], return_tensors="pt")["image_grid_thw"].tolist()
             for b in (loaded, small)]
    assert grids == [[[1, 8, 8]], [[1, 4, 4]]]


def test_the_qwen_7b_configuration_composes(tmp_path):
    from hide.config import compose_config

    cfg = compose_config(["model=qwen2.5-vl-7b", "method=hide"], tmp_path)
    assert cfg.model._target_ == "hide.models.backbone.load_pretrained_backbone"
    assert cfg.model.path == "Qwen/Qwen2.5-VL-7B-Instruct" and cfg.model.image_processor.max_pixels == 1280 * 28 * 28


@pytest.mark.parametrize("fmt", ["peft", "merged"])
def test_qwen_exports_load_with_plain_transformers_and_peft(tiny_qwen, tmp_path, fmt):
    """A LoRA on the Qwen decoder's seven linears (and the trained merger), exported as a peft
    adapter on the base Qwen checkpoint or merged into a Qwen checkpoint, gives the adapted model's
    logits when loaded by peft or by Qwen2_5_VLForConditionalGeneration alone."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from hide.export import export_merged, export_peft
    from hide.methods.lora import SequentialLoRA
    from hide.models.backbone import load_pretrained_backbone

    base = _saved_tiny_qwen(tiny_qwen, tmp_path / "base")
    backbone = load_pretrained_backbone(base)
    method = SequentialLoRA(rank=4, alpha=8, dropout=0.0)
    method.attach(backbone, 2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in method.adapters.values():
            for B in layer.lora_B:
                B.copy_(torch.randn(B.shape, generator=generator) * 0.05)
        for p in backbone.projector.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.01)
    records = [TrainRecord(id=str(i), image=p, turns=[Turn("what is it ?", "a red star")])
               for i, p in enumerate(_images(tmp_path))]
    batch = TrainCollator(Encoder.for_backbone(backbone))([(0, r) for r in records])
    backbone.model.eval()
    with torch.no_grad():
        adapted = backbone.model(**model_inputs(backbone.model, batch)).logits
        plain = tiny_qwen.model(**model_inputs(tiny_qwen.model, batch)).logits
    assert not torch.allclose(adapted, plain, atol=1e-4)
    out = tmp_path / fmt
    if fmt == "peft":
        from peft import PeftModel

        export_peft(backbone, method, out)
        model = PeftModel.from_pretrained(Qwen2_5_VLForConditionalGeneration.from_pretrained(base), out).eval()
    else:
        export_merged(backbone, method, out)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
    with torch.no_grad():
        loaded = model(**model_inputs(model, batch)).logits
    torch.testing.assert_close(loaded, adapted, atol=1e-4, rtol=1e-4)


def test_qwen_pretraining_states_cut_images_as_its_processor_does(tiny_qwen):
    """The vision pretraining feeds normalised image tensors; cut into patches by the family they
    give the merged tokens that the image processor's own patches give."""
    import numpy as np

    processor = tiny_qwen.image_processor
    images = [Image.fromarray(np.random.RandomState(i).randint(0, 255, (64, 64, 3), dtype=np.uint8)) for i in range(2)]
    processed = processor(images=images, return_tensors="pt")
    pixels = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255.0
    pixels = (pixels - torch.tensor(processor.image_mean).view(1, 3, 1, 1)) / torch.tensor(processor.image_std).view(1, 3, 1, 1)
    family, model = tiny_qwen.family, tiny_qwen.model
    with torch.no_grad():
        tokens, cells = family.pretraining_states(model, pixels)
        expected = family.vision_tower(model)(processed["pixel_values"], grid_thw=processed["image_grid_thw"]).pooler_output
    assert cells.shape == (2, family.token_grid_side(model, 64) ** 2, family.pretraining_width(model)) == (2, 16, 64)
    torch.testing.assert_close(cells.reshape(-1, 64), expected, atol=1e-5, rtol=1e-5)


# -- the second family through the real configs, loop, resume and load_run --------------------
QWEN = "model=tiny-qwen"


@pytest.mark.parametrize("method", ["zeroshot", "lora", "moelora", "olora", "ewc", "lwf", "replay", "reglora",
                                    "keeplora", "disco", "hide", "multitask"])
def test_every_method_runs_two_tasks_on_qwen(fast_cfg, tmp_path, method):
    from hide.loop import run_continual

    metrics = run_continual(fast_cfg(QWEN, f"method={method}", "trainer.max_epochs=1"), tmp_path / "run")
    assert metrics["method"] == method
    assert len(metrics["matrix"]) == 3 and all(v is not None for v in metrics["matrix"][-1])
    assert (metrics["params_trainable"] > 0) == (method != "zeroshot")
    if method == "hide":  # the anchors route on Qwen's own towers
        assert set(metrics["routing_accuracy"]) == {"Renditions", "FigureQA"}


def test_qwen_load_run_answers_as_the_run_did(finished_run, tmp_path):
    import json

    import hide

    run_dir = finished_run(tmp_path, QWEN, "method=hide", "benchmark.test_per_task=12")
    model = hide.load_run(run_dir)
    recorded = json.loads((run_dir / "predictions" / "stage2.json").read_text())
    for index, task in enumerate(model.run.tasks):
        answers = model.predict([r.image for r in task.test], [r.text for r in task.test])
        assert dict(zip([r.question_id for r in task.test], answers)) == recorded[task.name]
    assert any(answer for answers in recorded.values() for answer in answers.values())


def test_qwen_run_killed_in_training_resumes_to_identical_results(tmp_path):
    from test_resume import assert_killed, assert_same_results, train

    reference, run = tmp_path / "reference", tmp_path / "run"
    assert train(reference, QWEN, "method=hide").returncode == 0
    assert_killed(train(run, QWEN, "method=hide", kill_at="train_batch:5"))
    done = train(run, QWEN, "method=hide", resume=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_results(run, reference)


def test_qwen_per_row_experts_in_the_shared_prefix_equal_generate_one_by_one(tmp_path):
    """HiDe's prefix plan on Qwen2.5-VL: three random experts in the routed top layer and a
    different mixture in every row; the batched answers are each row's answer from `generate`
    with its own mixture, alone (3-D positions behind the shared prefix included)."""
    from hide.models.tiny import tiny_spec
    from hide.models.tiny_qwen import new_tiny_qwen

    torch.manual_seed(0)
    backbone = new_tiny_qwen(tiny_spec(
        image_size=64, patch_size=8, family="qwen2_5_vl",
        vision={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        text={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
              "num_key_value_heads": 2}))
    model, tokenizer = backbone.model.eval(), backbone.tokenizer
    method, generator = hide_with_random_experts(backbone)
    records = [TestRecord(question_id=str(i), image=p, text=text, answer="", source_id=None)
               for i, (p, text) in enumerate(zip(_images(tmp_path), ["what is the object in the image ?",
                                                                     "how many stars ?", "what colour is it ?"]))]
    collate = EvalCollator(Encoder.for_backbone(backbone))
    items = [(0, r) for r in records]
    weights = torch.softmax(torch.randn(len(items), 3, generator=generator) * 2, dim=-1)

    def set_routing(w):
        for adapter in method.routed.values():
            adapter.set_routing_weights(w)

    def alone(item):
        one = collate([item])
        out = model.generate(**model_inputs(model, one), max_new_tokens=6, do_sample=False)
        return tokenizer.decode(out[0, one["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    reference = []
    for i, item in enumerate(items):
        set_routing(weights[i:i + 1])
        reference.append(alone(item))
    set_routing(weights)
    assert len(set(reference)) > 1 and all(reference)  # varied answers: a wrong position or cache row shows
    assert greedy_answers(model, tokenizer, collate(items), 6, prefix_plan=method.prefix_plan(weights)) == reference
    set_routing(weights[:1])  # every row routed as the first: other answers, so the mixtures matter
    assert [alone(item) for item in items] != reference
