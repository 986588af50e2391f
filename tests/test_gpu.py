"""The 7B code path: bf16 on CPU with the tiny model (always), and a LLaVA-1.5-7B-shaped model with
random weights on a CUDA GPU (skipped without one; nothing is downloaded)."""

import time

import pytest
import torch

from hide.loop import run_continual


def test_tiny_model_trains_and_evaluates_under_bf16_autocast(fast_cfg, tmp_path):
    metrics = run_continual(fast_cfg("method=hide", "trainer.precision=bf16-mixed", "trainer.max_epochs=1"), tmp_path)
    assert all(v is not None for row in metrics["matrix"] for v in row)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_llava_7b_shaped_lora_step_and_batched_generation_in_bf16():
    from transformers import LlavaForConditionalGeneration

    from hide.methods.lora import SequentialLoRA
    from hide.models.backbone import Backbone, enable_activation_checkpointing
    from hide.models.llava import llava_1_5_7b_config

    torch.manual_seed(0)
    config = llava_1_5_7b_config()
    with torch.device("cuda"):
        model = LlavaForConditionalGeneration(config).to(torch.bfloat16)
    backbone = Backbone(model=model, tokenizer=None, image_processor=None, name="llava-1.5-7b (random)")
    method = SequentialLoRA(rank=8, alpha=16)
    method.attach(backbone, 6)
    enable_activation_checkpointing(model)
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
@pytest.mark.parametrize("method", ["hide", "ewc", "keeplora"])
def test_a_continual_run_on_one_gpu(method, fast_cfg, tmp_path):
    """Each fit and predict ends with Lightning moving the model back to the CPU: the methods'
    passes between fits (anchors, Fisher information, gradients), HiDe's fused experts and its
    cached anchor features must still meet the model on the GPU."""
    metrics = run_continual(fast_cfg(f"method={method}", "trainer=gpu"), tmp_path)
    assert all(v is not None for row in metrics["matrix"] for v in row)
