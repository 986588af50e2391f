"""The tiny offline LLaVA (`model=tiny`): built from a config, given a short full-parameter
"stage-0" instruction tuning on a generic synthetic mixture (not any continual task, as LLaVA-1.5
had its own instruction tuning before continual tuning), saved with `save_pretrained` to a cache
directory keyed by its config, and from then on loaded with `from_pretrained` like any llava-hf
checkpoint.

A random-init model cannot learn the tasks through LoRA alone: stage 0 is what gives its vision
tower the shapes, colours, bars and counts that the tasks ask about.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from hide.data import synthetic
from hide.data.collate import Encoder, TrainCollator
from hide.data.formats import IMAGE_TOKEN, load_train_file
from hide.data.prompt import SYSTEM
from hide.models.backbone import Backbone, load_pretrained_backbone

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN]
WORD_PATTERN = r"\w+|[^\w\s]"
# Bump when the tokenizer, the stage-0 mixture or the training recipe changes meaning,
# so that stale cached models are not reused.
RECIPE_VERSION = 1


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A lowercase word-level tokenizer over the synthetic benchmark's vocabulary and the prompt."""
    words = set(synthetic.vocabulary())
    words.update(re.findall(WORD_PATTERN, (SYSTEM + " USER: ASSISTANT:").lower()))
    words.update("0123456789abcdefghijklmnopqrstuvwxyz")
    words = sorted(w.lower() for w in words)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",
    )
    return tokenizer


def build_model(tokenizer, image_size: int, patch_size: int, vision: dict, text: dict) -> LlavaForConditionalGeneration:
    """A random-init LLaVA: CLIP-style vision tower, 2-layer MLP projector, LLaMA-style decoder."""
    vision_config = CLIPVisionConfig(image_size=image_size, patch_size=patch_size, **vision)
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        **text,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    return LlavaForConditionalGeneration(config)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )


def train_stage0(backbone: Backbone, data_dir: Path, epochs: int, batch_size: int, lr: float,
                 warmup_ratio: float, weight_decay: float, seed: int, progress: bool = True) -> list[float]:
    """Full-parameter instruction tuning on the stage-0 mixture; returns the per-step losses."""
    records = load_train_file(data_dir / "instructions" / "Stage0" / "train.json", data_dir / "datasets")
    encoder = Encoder(backbone.tokenizer, backbone.image_processor, backbone.image_seq_length)
    collate = TrainCollator(encoder)
    model = backbone.model
    model.train()
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        [(0, r) for r in records], batch_size=batch_size, shuffle=True, generator=generator,
        collate_fn=collate, drop_last=True,
    )
    total = epochs * len(loader)
    warmup = max(1, int(warmup_ratio * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))
        if step >= warmup else (step + 1) / warmup,
    )
    losses: list[float] = []
    with _progress() as bar:
        job = bar.add_task("stage-0 tuning", total=total, info="", visible=progress)
        for _ in range(epochs):
            for batch in loader:
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            pixel_values=batch["pixel_values"], labels=batch["labels"])
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(out.loss.item())
                recent = losses[-20:]
                bar.update(job, advance=1, info=f"loss {sum(recent) / len(recent):.3f}")
                if len(losses) % max(1, total // 10) == 0:  # a trace in logs, where no bar is drawn
                    log.info("stage-0 step %d/%d: loss %.3f", len(losses), total, sum(recent) / len(recent))
    model.eval()
    return losses


def tiny_cache_key(spec: dict) -> str:
    payload = json.dumps({**spec, "recipe": RECIPE_VERSION, "generator": synthetic.GENERATOR_VERSION,
                          "vocab": synthetic.vocabulary()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_tiny_backbone(
    cache_dir: str,
    image_size: int = 64,
    patch_size: int = 8,
    vision: dict | None = None,
    text: dict | None = None,
    stage0: dict | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Backbone:
    """Load the tiny LLaVA from the cache, building it (with stage 0) on first use."""
    vision = dict(vision or {})
    text = dict(text or {})
    stage0 = dict(stage0 or {})
    spec = {"image_size": image_size, "patch_size": patch_size, "vision": vision, "text": text,
            "stage0": stage0, "seed": seed}
    path = Path(cache_dir).expanduser() / f"tiny-llava-{tiny_cache_key(spec)}"
    if not (path / "stage0.json").exists():
        _build_tiny(path, spec, progress)
    return load_pretrained_backbone(str(path), dtype="float32", attn_implementation="sdpa")


def _build_tiny(path: Path, spec: dict, progress: bool) -> None:
    log.info("Building the tiny LLaVA backbone in %s (first use of this config)", path)
    torch.manual_seed(spec["seed"])
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, spec["image_size"], spec["patch_size"], spec["vision"], spec["text"])
    size = spec["image_size"]
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    backbone = Backbone(model=model, tokenizer=tokenizer, image_processor=image_processor, name="tiny")
    stage0 = dict(spec["stage0"])
    num_samples = stage0.pop("num_samples", 6000)
    data_dir = path.parent / f"stage0-data-{num_samples}-{size}-{spec['seed']}"
    synthetic.generate_stage0(data_dir, num_samples=num_samples, image_size=size, seed=spec["seed"],
                              progress=progress)
    losses = train_stage0(backbone, data_dir, seed=spec["seed"], progress=progress, **stage0)
    # Write beside the final path and rename, so an interrupted build is never mistaken for a model.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    image_processor.save_pretrained(tmp)
    with open(tmp / "stage0.json", "w") as f:
        json.dump({"spec": spec, "losses": losses}, f)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
