"""LLaVA-1.5 (LlavaForConditionalGeneration): a CLIP vision tower, a two-layer MLP projector and a
LLaMA decoder; each image becomes one placeholder token per patch, replaced by its projected
features in the decoder's input."""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlavaForConditionalGeneration

from hide.data.formats import IMAGE_TOKEN
from hide.data.prompt import ConversationTemplate, register_template
from hide.models.family import ModelFamily, register


def vicuna_v1_style(name: str, system: str) -> ConversationTemplate:
    """LLaVA's vicuna_v1 conversation (llava/conversation.py, conv_vicuna_v1, SeparatorStyle.TWO):
    "{system} USER: <image>\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>...", the loss on
    each " {answer}</s>"."""
    return ConversationTemplate(name, system, system_format="{system} ", user_format="USER: {question} ASSISTANT:",
                                answer_format=" {answer}</s>", image_text=f"{IMAGE_TOKEN}\n")


# LLaVA-1.5's template, which HiDe-LLaVA's and CoIN's evaluation scripts select with --conv-mode vicuna_v1.
VICUNA_V1 = register_template(vicuna_v1_style(
    "vicuna_v1",
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."))
# vicuna_v1's turns and separators under vicuna_v0's system sentence ("a curious human"): the
# template the shipped tiny backbone was instruction-tuned with (`hide.models.tiny`).
TINY_V1 = register_template(vicuna_v1_style(
    "tiny_v1",
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."))


class LlavaFamily(ModelFamily):
    model_type = "llava"
    model_class = LlavaForConditionalGeneration
    display_name = "LLaVA"
    language_model_path = "model.language_model"
    projector_path = "model.multi_modal_projector"
    vision_tower_path = "model.vision_tower"
    default_template = VICUNA_V1  # llava-hf checkpoints keep no template of their own
    image_placeholder = IMAGE_TOKEN
    tiny_name = "tiny-llava"
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # LLaMA's attention and MLP linears

    def new_tiny(self, spec: dict):
        from hide.models.tiny import new_tiny_llava

        return new_tiny_llava(spec)

    def fixed_image_tokens(self, config) -> int:
        """One token per patch ("default" feature strategy: CLIP's CLS dropped)."""
        vision = config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        return patches if config.vision_feature_select_strategy == "default" else patches + 1

    def prepare_images(self, image_processor, config, images: list) -> tuple[dict, list[int]]:
        if not images:
            return {"pixel_values": None}, []
        pixels = image_processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels}, [self.fixed_image_tokens(config)] * len(images)

    def vision_shape(self, model: nn.Module) -> tuple[int, int]:
        config = model.config.vision_config
        return config.num_hidden_layers, config.hidden_size

    def pooled_vision_state(self, model: nn.Module, batch: dict, layer: int) -> torch.Tensor:
        tower = self.vision_tower(model)
        out = tower(pixel_values=batch["pixel_values"].to(tower.dtype), output_hidden_states=True)
        return out.hidden_states[layer][:, 1:].float().mean(1)  # patch tokens, CLIP's CLS dropped

    def pretraining_width(self, model: nn.Module) -> int:
        return model.config.vision_config.hidden_size

    def token_grid_side(self, model: nn.Module, image_size: int) -> int:
        return image_size // model.config.vision_config.patch_size

    def pretraining_states(self, model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vision_tower(model)(pixel_values=pixels).last_hidden_state
        return tokens, tokens[:, 1:]  # token 0 is CLS; LLaVA's "default" strategy drops it

    def image_token_id(self, model: nn.Module) -> int:
        return model.config.image_token_index

    def image_inputs(self, model: nn.Module, batch: dict) -> dict:
        pixels = batch["pixel_values"]  # one image per record that has one; None when none has
        return {"pixel_values": None if pixels is None else pixels.to(model.dtype)}


LLAVA = register(LlavaFamily())


def llava_1_5_7b_config():
    """LLaVA-1.5-7B's architecture (llava-hf/llava-1.5-7b-hf's config values: CLIP ViT-L/14-336,
    2-layer GELU projector, 32-layer 4096-wide LLaMA), for building it without a download: on the
    meta device to count parameters, or with random weights for GPU tests."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    return LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=32, vocab_size=32064),
        image_token_index=32000, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
