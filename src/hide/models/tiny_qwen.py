"""A tiny offline Qwen2.5-VL: built from a config alone, with a word-level tokenizer that carries
Qwen's special tokens and its ChatML template, and Qwen's own image processor (the PIL one, which
needs no torchvision)."""

from __future__ import annotations

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

from hide.models.backbone import Backbone
from hide.models.qwen2_5_vl import CHATML, IMAGE_PAD, QWEN_SPECIAL_TOKENS
from hide.models.tiny import word_level_tokenizer


def build_qwen_tokenizer():
    """The tiny LLaVA's word-level vocabulary under Qwen's special tokens; `<|im_end|>` ends an answer."""
    return word_level_tokenizer(["<pad>", "<unk>", *QWEN_SPECIAL_TOKENS], CHATML.system,
                                eos_token="<|im_end|>", unk_token="<unk>", pad_token="<pad>",
                                extra_special_tokens={"image_token": IMAGE_PAD, "im_start": "<|im_start|>",
                                                      "vision_start": "<|vision_start|>",
                                                      "vision_end": "<|vision_end|>", "endoftext": "<|endoftext|>"})


def build_qwen_model(tokenizer, vision: dict, text: dict, patch_size: int = 8,
                     merge_size: int = 2) -> Qwen2_5_VLForConditionalGeneration:
    """A random-init Qwen2.5-VL. `text` sets the decoder (hidden_size, intermediate_size,
    num_hidden_layers, num_attention_heads, num_key_value_heads, ...), `vision` the ViT in the tiny
    LLaVA's names (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads), so one
    setting sizes both families; M-RoPE's sections split the head dimension's half as
    Qwen2.5-VL-7B's [16, 24, 24] of 64."""
    vision = dict(vision)
    vision["depth"] = vision.pop("num_hidden_layers")
    vision["num_heads"] = vision.pop("num_attention_heads")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    half = text["hidden_size"] // text["num_attention_heads"] // 2
    sections = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    text_config = dict(vocab_size=len(tokenizer), max_position_embeddings=1024, tie_word_embeddings=False,
                       rope_scaling={"type": "mrope", "mrope_section": sections}, bos_token_id=None,
                       eos_token_id=ids["<|im_end|>"], pad_token_id=tokenizer.pad_token_id, **text)
    vision_config = dict(patch_size=patch_size, spatial_merge_size=merge_size, temporal_patch_size=2,
                         out_hidden_size=text["hidden_size"], window_size=patch_size * merge_size * 2,
                         fullatt_block_indexes=[vision["depth"] - 1], **vision)
    config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, image_token_id=ids[IMAGE_PAD],
                              video_token_id=ids["<|endoftext|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"])
    return Qwen2_5_VLForConditionalGeneration(config)


def build_qwen_processor(image_size: int, patch_size: int = 8, merge_size: int = 2) -> Qwen2VLImageProcessorPil:
    """Qwen's image processor with a pixel budget of about one `image_size` square: an image keeps
    its aspect ratio, resized to multiples of patch_size x merge_size."""
    side = patch_size * merge_size
    return Qwen2VLImageProcessorPil(patch_size=patch_size, merge_size=merge_size, temporal_patch_size=2,
                                    min_pixels=side * side, max_pixels=image_size * image_size)


def new_tiny_qwen(spec: dict) -> Backbone:
    """The untrained tiny Qwen of a tiny spec (`hide.models.tiny.tiny_spec`): its sizes, image size
    and patch size (two by two patches merge into one image token)."""
    tokenizer = build_qwen_tokenizer()
    model = build_qwen_model(tokenizer, spec["vision"], spec["text"], patch_size=spec["patch_size"])
    return Backbone(model=model, tokenizer=tokenizer,
                    image_processor=build_qwen_processor(spec["image_size"], spec["patch_size"]), name="tiny-qwen")
