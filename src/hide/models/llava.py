"""LLaVA-1.5 (LlavaForConditionalGeneration): a CLIP vision tower, a two-layer MLP projector and a
LLaMA decoder; each image becomes one placeholder token per patch, replaced by its projected
features in the decoder's input."""

from __future__ import annotations

import torch
from torch import nn

from hide.models.family import ModelFamily, register

LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LlavaFamily(ModelFamily):
    model_type = "llava"
    language_model_path = "model.language_model"
    projector_path = "model.multi_modal_projector"
    vision_tower_path = "model.vision_tower"
    lora_targets = LLAMA_LINEARS

    def vision_shape(self, model: nn.Module) -> tuple[int, int]:
        config = model.config.vision_config
        return config.num_hidden_layers, config.hidden_size

    def vision_hidden_states(self, model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tower = self.vision_tower(model)
        out = tower(pixel_values=pixels.to(tower.dtype), output_hidden_states=True)
        return tuple(hidden[:, 1:] for hidden in out.hidden_states)  # CLIP's CLS token dropped

    def image_token_id(self, model: nn.Module) -> int:
        return model.config.image_token_index

    def image_inputs(self, batch: dict, dtype: torch.dtype) -> dict:
        pixels = batch["pixel_values"]  # one image per record that has one; None when none has
        return {"pixel_values": None if pixels is None else pixels.to(dtype)}


LLAVA = register(LlavaFamily())
