"""The 7B code path: bf16 on CPU with the tiny model (always), and LLaVA-1.5-7B- and
Qwen2.5-VL-7B-shaped models with random weights on a CUDA GPU (skipped without one; nothing is
downloaded)."""

import time

import pytest
import torch

from hide.loop import run_continual


def test_tiny_model_trains_and_evaluates_under_bf16_autocast(fast_cfg, tmp_path):
    metrics = run_continual(fast_cfg("method=hide", "trainer.precision=bf16-mixed", "trainer.max_epochs=1"), tmp_path)
    assert all(v is not None for row in metrics["matrix"] for v in row)


def _random_7b_with_lora(model_class, config, name: str):
    """A 7B-shaped model of random bf16 weights on the GPU with rank-8 sequential LoRA attached
    (6 tasks) and activation checkpointing on; returns (backbone, method)."""
    from hide.methods.lora import SequentialLoRA
    from hide.models.backbone import Backbone, enable_activation_checkpointing

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = model_class(config).to(torch.bfloat16)
    backbone = Backbone(model=model, tokenizer=None, image_processor=None, name=name)
    method = SequentialLoRA(rank=8, alpha=16)
    method.attach(backbone, 6)
    enable_activation_checkpointing(model)
    return backbone, method


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_llava_7b_shaped_lora_step_and_batched_generation_in_bf16():
    from transformers import LlavaForConditionalGeneration

    from hide.models.llava import llava_1_5_7b_config

    config = llava_1_5_7b_config()
    backbone, _ = _random_7b_with_lora(LlavaForConditionalGeneration, config, "llava-1.5-7b (random)")
    model = backbone.model
    batch, prompt = 4, 64
    image_tokens = (336 // 14) ** 2
    ids = torch.randint(0, 32000, (batch, prompt + image_tokens), device="cuda")
    ids[:, 1:1 + image_tokens] = config.image_token_index
    pixels = torch.randn(batch, 3, 336, 336, device="cuda", dtype=torch.bfloat16)
    labels = ids.clone()
    labels[:, : 1 + image_tokens] = -100
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4)
    torch.cuda.reset_peak_memory_stats()
    model.train()
    start = time.perf_counter()
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, labels=labels).loss
    loss.backward()
    optimizer.step()
    torch.cuda.synchronize()
    step_seconds = time.perf_counter() - start
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                             max_new_tokens=32, min_new_tokens=32, do_sample=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert out.shape == (batch, ids.shape[1] + 32)
    print(f"\n7B-shaped, bf16: train step {step_seconds:.2f} s (batch {batch} x {ids.shape[1]} tokens); "
          f"generation {batch * 32 / seconds:.1f} new tokens/s (batch {batch}); "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qwen2_5_vl_7b_shaped_lora_step_in_bf16():
    """One LoRA training step of a Qwen2.5-VL-7B-shaped model in bf16 through the family's model
    inputs and positions (M-RoPE from the image grid), the LoRA on its decoder's linears only."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from hide.models.family import model_inputs
    from hide.models.qwen2_5_vl import qwen2_5_vl_7b_config

    config = qwen2_5_vl_7b_config()
    backbone, method = _random_7b_with_lora(Qwen2_5_VLForConditionalGeneration, config, "qwen2.5-vl-7b (random)")
    model = backbone.model
    assert len(method.adapters) == config.text_config.num_hidden_layers * len(backbone.family.lora_targets)
    # a 224 x 224 image: 16 x 16 patches of 14 px, 64 image tokens after the 2 x 2 merger
    batch, prompt, side = 2, 64, 16
    image_tokens = side * side // 4
    ids = torch.randint(0, 151000, (batch, prompt + image_tokens + 2), device="cuda")
    ids[:, 0], ids[:, image_tokens + 1] = config.vision_start_token_id, config.vision_end_token_id
    ids[:, 1:1 + image_tokens] = config.image_token_id
    patch = 3 * config.vision_config.temporal_patch_size * config.vision_config.patch_size ** 2
    collated = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "pixel_values": torch.randn(batch * side * side, patch, device="cuda"),
                "image_grid_thw": torch.tensor([[1, side, side]] * batch, device="cuda")}
    labels = ids.clone()
    labels[:, : image_tokens + 2] = -100
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4)
    torch.cuda.reset_peak_memory_stats()
    model.train()
    start = time.perf_counter()
    positions = backbone.family.positions(model, collated)
    loss = model(**model_inputs(model, collated), position_ids=positions, labels=labels).loss
    loss.backward()
    optimizer.step()
    torch.cuda.synchronize()
    step_seconds = time.perf_counter() - start
    assert positions.shape == (3, batch, ids.shape[1]) and torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    print(f"\nQwen2.5-VL-7B-shaped, bf16: train step {step_seconds:.2f} s (batch {batch} x {ids.shape[1]} tokens); "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["hide", "ewc", "keeplora"])
def test_a_continual_run_on_one_gpu(method, fast_cfg, tmp_path):
    """Each fit and predict ends with Lightning moving the model back to the CPU: the methods'
    passes between fits (anchors, Fisher information, gradients), HiDe's fused experts and its
    cached anchor features must still meet the model on the GPU."""
    metrics = run_continual(fast_cfg(f"method={method}", "trainer=gpu"), tmp_path)
    assert all(v is not None for row in metrics["matrix"] for v in row)
