"""HiDe through the real configs, the task loop and the tiny backbone."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.core.global_hydra import GlobalHydra

from hide.config import compose_config
from hide.data.collate import EvalCollator, TrainCollator
from hide.errors import ConfigError
from hide.loop import run_continual
from hide.run import build_run
from hide.methods.anchors import AnchorBank, OwnTowersEncoder, encode_task_anchors
from hide.methods.hide import HiDe


def _setup(make_cfg, *overrides):
    """Backbone, datamodule (tasks loaded) and an attached HiDe from the composed configs
    (`make_cfg`: the fast_cfg fixture, or another composer of overrides)."""
    run = build_run(make_cfg("method=hide", *overrides))
    return run.backbone, run.datamodule, run.tasks, run.method, run.module


def test_hide_is_the_default_method(fast_cfg):
    cfg = fast_cfg()
    assert cfg.method._target_ == "hide.methods.hide.HiDe"
    assert list(cfg.method.task_specific_layers) == [-1] and cfg.method.fusion == "sum_ab"


def test_earlier_experts_bit_for_bit_unchanged_and_metrics_reported(fast_cfg, tmp_path, monkeypatch):
    snapshots = {}
    original = HiDe.on_task_end

    def snapshot_after_task(self, module, task_index, loader):
        original(self, module, task_index, loader)
        snapshots[task_index] = {name: (a.lora_A[task_index].detach().clone(), a.lora_B[task_index].detach().clone())
                                 for name, a in self.adapters.items()}
        snapshots.setdefault("method", self)

    monkeypatch.setattr(HiDe, "on_task_end", snapshot_after_task)
    metrics = run_continual(fast_cfg("method=hide"), tmp_path)
    method = snapshots["method"]
    for name, adapter in method.adapters.items():
        A0, B0 = snapshots[0][name]
        assert torch.equal(adapter.lora_A[0], A0) and torch.equal(adapter.lora_B[0], B0), name
    # ...while task 0's expert did train during task 0, and task 1's during task 1
    assert any(torch.count_nonzero(B).item() for _, B in snapshots[0].values())
    assert any(not torch.equal(a.lora_B[1], torch.zeros_like(a.lora_B[1])) for a in method.adapters.values())

    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert set(on_disk["routing_accuracy"]) == {"Renditions", "FigureQA"}
    assert all(0 <= v <= 100 for v in on_disk["routing_accuracy"].values())
    assert set(on_disk["routing_accuracy_by_stage"]["1"]) == {"Renditions"}
    assert sum(on_disk["routing_confusion"]["FigureQA"].values()) == 8
    # one expert per linear trains per task, as many as sequential LoRA; T experts are stored on
    # the top layer, one fused pair below
    lora = run_continual(fast_cfg("method=lora"), tmp_path / "lora")
    assert on_disk["params_trainable"] == lora["params_trainable"]
    per_layer = sum(a.lora_A[0].numel() + a.lora_B[0].numel() for a in method.routed.values())
    assert on_disk["params_stored"] == on_disk["params_trainable"] + per_layer  # T = 2: one extra expert


def test_anchors_are_the_exact_means_over_the_training_set(fast_cfg):
    backbone, datamodule, tasks, method, module = _setup(fast_cfg, "data.batch_size=5")
    datamodule.set_stage(1, [1])
    method.on_task_end(module, 1, datamodule.train_dataloader())
    items = [(1, r) for r in tasks[1].train]
    image, text = method.encoder.encode(TrainCollator(datamodule.encoder)(items))  # all in one batch
    image_mean, text_mean = method.anchors.means([1])
    assert int(method.anchors.count[1]) == len(tasks[1].train) == 16
    torch.testing.assert_close(image_mean[0], image.double().mean(0).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(text_mean[0], text.double().mean(0).float(), rtol=1e-5, atol=1e-6)
    assert torch.equal(method.state_dict()["anchors"]["count"], method.anchors.count)  # saved with the method


def _randomise_experts(method, std=0.5):
    """Every expert's A and B from a generator of its own, so that the test does not depend on the
    state of the global one."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for adapter in method.adapters.values():
            for slot in range(adapter.num_slots):
                adapter.lora_A[slot].copy_(torch.randn(adapter.lora_A[slot].shape, generator=generator) * 0.01)
                adapter.lora_B[slot].copy_(torch.randn(adapter.lora_B[slot].shape, generator=generator) * std)


def test_batched_generation_with_per_sample_routing_equals_one_by_one(fast_cfg):
    backbone, datamodule, tasks, method, module = _setup(fast_cfg, "benchmark.max_new_tokens=6")
    _randomise_experts(method)
    for t in range(2):
        datamodule.set_stage(t + 1, [t])
        method.on_task_end(module, t, datamodule.train_dataloader())
    module.model.eval()
    method.on_eval_start(module, [0, 1])
    collate = EvalCollator(datamodule.encoder)
    items = [(t, r) for t in (0, 1) for r in tasks[t].test[:4]]
    items = items[::2] + items[1::2]  # interleave the tasks in one batch
    batch = collate(items)
    batched = module.predict_step(batch, 0)
    with method.answering(module, batch):  # the routing the batch was answered with
        weights = method.routed[next(iter(method.routed))].routing_weights
    assert weights.argmax(-1).tolist() == batch["task"].tolist()  # each sample routed to its own task
    one_by_one = [module.predict_step(collate([item]), 0)[0] for item in items]
    assert batched == one_by_one
    assert len({answer for _, _, answer in batched}) >= 4  # rows answer differently: a row mix-up would show
    # dense routing with the top layer routed: the prompt prefix runs as one row per expert,
    # mixed by each row's weights (the equality with one-by-one above covers it)
    with method.answering(module, batch) as plan:
        pass
    torch.testing.assert_close(plan.mix, weights)
    # routed below the top too: one basis row per distinct routing, exact for one-hot routing
    method.configure_inference([0, 1], method.fusion, top_k=1)
    method.on_eval_start(module, [0, 1])
    with method.answering(module, batch) as plan:
        pass
    assert plan.mix.shape == (len(items), 2) and bool(((plan.mix == 0) | (plan.mix == 1)).all())
    assert len(set(zip(plan.mix.argmax(1).tolist(), batch["task"].tolist()))) == 2  # one basis row per task
    assert module.predict_step(batch, 0) == [module.predict_step(collate([item]), 0)[0] for item in items]
    # the experts matter: routing every sample to task 0's expert changes some answers
    method.configure_inference([-1], method.fusion, routing="oracle")
    method.on_eval_start(module, [0, 1])
    assert method.top_k is None
    forced = collate([(0, r) for _, r in items])
    forced["task"] = torch.zeros_like(forced["task"])
    assert [a for _, _, a in module.predict_step(forced, 0)] != [a for _, _, a in batched]


def test_oracle_routing_is_one_hot_on_the_true_task(fast_cfg):
    backbone, datamodule, tasks, method, module = _setup(fast_cfg, "method.routing=oracle")
    for t in range(2):
        datamodule.set_stage(t + 1, [t])
        method.on_task_end(module, t, datamodule.train_dataloader())
    method.on_eval_start(module, [0, 1])
    batch = EvalCollator(datamodule.encoder)([(1, tasks[1].test[0]), (0, tasks[0].test[0])])
    with method.answering(module, batch):
        weights = next(iter(method.routed.values())).routing_weights
    assert torch.equal(weights, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_oracle_routing_reports_the_samples_it_routes_by_anchors(fast_cfg, tmp_path):
    """A task not trained yet has no expert for the oracle to pick: the anchors route its samples,
    and metrics.json says how many, stage by stage."""
    metrics = run_continual(fast_cfg("method=hide", "method.routing=oracle"), tmp_path)
    by_stage = metrics["routed_by_anchors_under_oracle_by_stage"]
    assert by_stage == {"1": {"FigureQA": 8}, "2": {}}
    assert metrics["routed_by_anchors_under_oracle"] == {}
    anchors = run_continual(fast_cfg("method=hide"), tmp_path / "anchors")
    assert not any(key.startswith("routed_by_anchors") for key in anchors)


def test_anchor_routing_separates_the_six_synthetic_tasks(tmp_path):
    """HiDe's default anchors (image and text features of the model's own towers, equal weights)
    on the default, shipped backbone route >= 95% of every task's test samples to that task, with
    anchors from 40 training samples per task (measured: 100% on each). Neither modality does it
    alone (text only: ClevrMath 65%; image only: Renditions 77.5%). The fast test backbone is not
    used: its towers are trained for a few steps."""
    from conftest import TEST_CACHE

    def default_cfg(*overrides):
        return compose_config([f"paths.cache_dir={TEST_CACHE}", "model.progress=false", *overrides], tmp_path)

    backbone, datamodule, tasks, method, module = _setup(
        default_cfg, "benchmark.train_per_task=40", "benchmark.test_per_task=40", "data.eval_batch_size=40")
    assert len(tasks) == 6 and method.image_weight == method.text_weight == 0.5
    for t in range(6):
        datamodule.set_stage(t + 1, [t])
        method.on_task_end(module, t, datamodule.train_dataloader())
    method.on_eval_start(module, list(range(6)))
    for t in range(6):
        for batch in datamodule.test_dataloader(t):
            with method.answering(module, batch):
                pass
    facts = method.eval_facts([task.name for task in tasks])
    assert min(facts["routing_accuracy"].values()) >= 95, (facts["routing_accuracy"], facts["routing_confusion"])
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("overrides, routed, extra_experts", [
    (["method.task_specific_layers=all"], True, 2),       # expand every layer, no fusion
    (["method.task_specific_layers=[]"], False, 0),       # fuse every layer, no expansion
    (["method.fusion=sum_ba", "method.top_k=1"], True, 2),  # sum_ba keeps every expert below too
    (["method.fusion=mean", "method.fold_fused=false"], True, 1),
])
def test_ablations_are_config_swaps(fast_cfg, tmp_path, overrides, routed, extra_experts):
    """Each ablation runs through the loop; stored parameters = one expert per linear per task in
    routed layers (and in sum_ba's fused ones), one fused pair elsewhere (2 layers, 2 tasks here)."""
    cfg = fast_cfg("method=hide", *overrides)
    metrics = run_continual(cfg, tmp_path)
    assert all(v is not None for v in metrics["matrix"][2])
    assert ("routing_accuracy" in metrics) == routed
    vision, text = cfg.model.vision.hidden_size, cfg.model.text.hidden_size
    projector = vision * text + text + text * text + text
    expert_per_layer = (metrics["params_trainable"] - projector) // cfg.model.text.num_hidden_layers
    assert metrics["params_stored"] == metrics["params_trainable"] + extra_experts * expert_per_layer


def _ddp_worker(rank, world, init_file, features, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        class FakeEncoder:
            def encode(self, batch):
                return batch["image"], batch["text"]

        bank = AnchorBank(2, features[0]["image"].shape[1], features[0]["text"].shape[1])
        encode_task_anchors(bank, 1, features, FakeEncoder())
        torch.save(bank.state_dict(), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_anchors_all_reduced_across_data_parallel_ranks(tmp_path):
    """Two gloo ranks each encode half the batches; both end with the exact mean of all of them."""
    torch.manual_seed(0)
    features = [{"image": torch.randn(n, 6) + 50, "text": torch.randn(n, 3)} for n in (4, 5, 3, 7, 2)]
    mp.spawn(_ddp_worker, args=(2, tmp_path / "init", features, tmp_path / "bank"), nprocs=2, join=True)
    image = torch.cat([f["image"] for f in features]).double()
    for rank in range(2):
        state = torch.load(f"{tmp_path / 'bank'}.{rank}")
        assert int(state["count"][1]) == 21 and int(state["count"][0]) == 0
        torch.testing.assert_close(state["image_sum"][1].double() / 21, image.mean(0), rtol=0, atol=1e-5)


def test_clip_anchor_encoder_loads_a_local_clip(tiny_backbone, tmp_path):
    """The full-scale encoder (projected CLIP image embedding, pooled text output) through
    from_pretrained of a tiny CLIP saved locally: no download."""
    from transformers import CLIPConfig, CLIPModel

    from hide.methods.anchors import ClipAnchorEncoder

    image_size = tiny_backbone.model.config.vision_config.image_size
    config = CLIPConfig(
        text_config={"vocab_size": len(tiny_backbone.tokenizer), "hidden_size": 24, "intermediate_size": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 80,
                     "eos_token_id": tiny_backbone.tokenizer.eos_token_id},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": image_size, "patch_size": 16},
        projection_dim=12,
    )
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    tiny_backbone.tokenizer.save_pretrained(tmp_path / "clip")
    encoder = ClipAnchorEncoder(tiny_backbone, path=str(tmp_path / "clip"))
    batch = {"pixel_values": torch.randn(3, 3, image_size, image_size),
             "instructions": ["what is this ?", "describe the image .", "how many stars are there ?"]}
    image, text = encoder.encode(batch)
    assert image.shape == (3, 12) and text.shape == (3, 24) and image.dtype == torch.float32
    with pytest.raises(ValueError, match="px"):
        encoder.encode({**batch, "pixel_values": torch.randn(1, 3, image_size * 2, image_size * 2)})
    with pytest.raises(OSError, match="anchor encoder"):
        ClipAnchorEncoder(tiny_backbone, path=str(tmp_path / "missing"))


def test_own_towers_encoder_ignores_padding(tiny_backbone):
    encoder = OwnTowersEncoder(tiny_backbone)
    size = tiny_backbone.model.config.vision_config.image_size
    pixels = torch.randn(2, 3, size, size)
    _, both = encoder.encode({"pixel_values": pixels, "instructions": ["what is this ?", "a much longer question here ?"]})
    encoder.clear_cache()
    _, alone = encoder.encode({"pixel_values": pixels[:1], "instructions": ["what is this ?"]})
    torch.testing.assert_close(both[0], alone[0])


def test_own_towers_encoder_encodes_each_instruction_once_per_evaluation(tiny_backbone):
    encoder = OwnTowersEncoder(tiny_backbone)
    rows = []
    hook = tiny_backbone.language_model.register_forward_hook(lambda m, args, out: rows.append(out[0].shape[0]))
    questions = ["what is this ?", "how many stars ?", "what is this ?", "what is this ?"]
    try:
        first = encoder.text_features(questions, "cpu")
        again = encoder.text_features(questions[:2], "cpu")
        uncached = OwnTowersEncoder(tiny_backbone, text_cache_mb=0).text_features(questions, "cpu")
    finally:
        hook.remove()
    assert rows == [2, 2]  # two distinct questions; the second call is all cached; no cache: 2 again
    torch.testing.assert_close(first, uncached)
    assert torch.equal(first[0], first[2]) and torch.equal(again, first[:2])
    encoder.clear_cache()
    assert not encoder.text_cache


def test_bad_settings_are_named(fast_cfg):
    from hide.run import build

    for override, message in [
        ("method.fusion=prod", r"method\.fusion='prod'; choose one of \('sum_ab', 'sum_ba', 'mean'\)"),
        ("method.routing=random", r"method\.routing='random'; choose one of \('anchors', 'oracle'\)"),
        ("method.temperature=0", r"method\.temperature must be > 0, got 0"),
        ("method.top_k=0", r"method\.top_k must be >= 1 or null, got 0"),
    ]:
        with pytest.raises(ConfigError, match=f"^{message}$"):
            build(fast_cfg("method=hide", override).method, "method")
