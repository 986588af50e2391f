"""Steady-state speed of a LLaVA-1.5-7B-shaped model (random weights, bf16) on one GPU: LoRA
training tokens/s and MFU, peak memory, and greedy generation tokens/s.

    python -m bench.gpu_step                  # on a CUDA GPU; prints the result as JSON
    python -m bench.gpu_step --out r.json     # and writes it
    python -m bench.gpu_step --shape small    # a small model of the same layout (runs on a CPU)

Training is the 7B protocol's step: LoRA (rank 8) on every language-model linear, the projector
training too, gradient checkpointing, AdamW, one image (576 tokens) and 64 text tokens a sample.
Model FLOPs per step, counted as MFU counts them (the recomputation that checkpointing adds is
not counted): the language model's matmuls 2 N T forward and 2 N T for the input gradients (its
weights are frozen: no weight gradients), attention's scores and mixing 4 L d S^2 per sequence
forward and twice that backward, and the vision tower's matmuls forward only. MFU divides them by
the dense bf16 peak: NVIDIA's 989 TFLOP/s for the H100 and H200 SXM, and the rate this script
measures on an 8192^3 bf16 matmul, the attainable one.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SPEC_PEAK_TFLOPS = 989.0  # H100 / H200 SXM, dense bf16


def build(shape: str, device: str):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from hide.models.llava import llava_1_5_7b_config

    if shape == "7b":
        config = llava_1_5_7b_config()
    else:  # the same layout, small: a smoke test of this script
        config = LlavaConfig(
            vision_config=CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=64, patch_size=8),
            text_config=LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=4, vocab_size=32064),
            image_token_index=32000, vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(torch.bfloat16)
    return model, config


def linear_params(module: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def matmul_tflops(device: str, n: int = 8192, repeats: int = 10) -> float | None:
    if device != "cuda":
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(shape: str = "7b", batch: int = 8, text_tokens: int = 64, warmup: int = 2, steps: int = 5,
            gen_batch: int = 32, new_tokens: int = 32) -> dict:
    from hide.methods.lora import SequentialLoRA
    from hide.models.backbone import Backbone, enable_activation_checkpointing

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, config = build(shape, device)
    SequentialLoRA(rank=8, alpha=16).attach(Backbone(model=model, tokenizer=None, image_processor=None,
                                                     name=f"llava-{shape} (random)"), 1)
    for p in model.model.multi_modal_projector.parameters():
        p.requires_grad_(True)
    enable_activation_checkpointing(model)
    vision = config.vision_config
    image_tokens = (vision.image_size // vision.patch_size) ** 2
    seq = 1 + image_tokens + text_tokens

    def inputs(rows: int, length: int):
        ids = torch.randint(0, 32000, (rows, length), device=device)
        ids[:, 1:1 + image_tokens] = config.image_token_index
        pixels = torch.randn(rows, 3, vision.image_size, vision.image_size, device=device, dtype=torch.bfloat16)
        return ids, pixels

    ids, pixels = inputs(batch, seq)
    labels = ids.clone()
    labels[:, :1 + image_tokens] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    step_seconds = (time.perf_counter() - start) / steps
    train_peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else None

    text = config.text_config
    lm = linear_params(model.model.language_model) + model.lm_head.weight.numel()
    vision_flops = 2 * linear_params(model.model.vision_tower) * (image_tokens + 1) * batch
    attention = 4 * text.num_hidden_layers * text.hidden_size * seq ** 2 * batch
    model_flops = 4 * lm * seq * batch + 3 * attention + vision_flops
    achieved = model_flops / step_seconds / 1e12
    attainable = matmul_tflops(device)

    model.eval()
    del optimizer, labels
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    gen_ids, gen_pixels = inputs(gen_batch, 1 + image_tokens + 16)
    with torch.no_grad():
        def generate():
            return model.generate(input_ids=gen_ids, attention_mask=torch.ones_like(gen_ids),
                                  pixel_values=gen_pixels, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  do_sample=False)
        generate()
        sync(device)
        start = time.perf_counter()
        generate()
        sync(device)
        gen_seconds = time.perf_counter() - start
    return {
        "shape": shape, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__, "batch": batch, "tokens_per_sample": seq,
        "step_seconds": step_seconds, "train_tokens_per_s": batch * seq / step_seconds,
        "model_tflops": achieved,
        "mfu_vs_spec": achieved / SPEC_PEAK_TFLOPS if device == "cuda" else None,
        "matmul_tflops": attainable,
        "mfu_vs_matmul": achieved / attainable if attainable else None,
        "train_peak_memory_gib": train_peak,
        "generation": {"batch": gen_batch, "new_tokens": new_tokens, "seconds": gen_seconds,
                       "new_tokens_per_s": gen_batch * new_tokens / gen_seconds,
                       "peak_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("7b", "small"), default="7b")
    parser.add_argument("--batch", type=int, default=8, help="training samples per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 2 untimed)")
    parser.add_argument("--out", help="also write the result here (JSON)")
    args = parser.parse_args()
    outcome = measure(args.shape, batch=args.batch, steps=args.steps)
    text = json.dumps(outcome, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
