"""Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration): a ViT over 14-pixel patches of the image at
its own aspect ratio, whose patch merger (2 x 2 patches to one token) is the projector, and a
Qwen2 decoder with multimodal rotary positions (M-RoPE: time, height and width for image tokens,
one position repeated three times for text).

An image becomes as many `<|image_pad|>` tokens as it has merged patches, so the count depends on
its size (`prepare_images`). The positions of a prompt with images come from the model's own
`get_rope_index`, given the image tokens' places (`mm_token_type_ids`) and each image's grid:
without them the model falls back to text positions and answers differently.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration

from hide.data.prompt import ConversationTemplate, register_template
from hide.models.family import ModelFamily, register

IMAGE_PAD = "<|image_pad|>"
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", IMAGE_PAD]

# Qwen2.5-VL-Instruct's chat template (its chat_template.json) for one image before the question:
# "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{q}
# <|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"; the loss on each "{answer}<|im_end|>".
CHATML = register_template(ConversationTemplate(
    "qwen2_5_vl_chatml", "You are a helpful assistant.",
    system_format="<|im_start|>system\n{system}<|im_end|>\n",
    user_format="<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
    answer_format="{answer}<|im_end|>", turn_separator="\n",
    image_text=f"<|vision_start|>{IMAGE_PAD}<|vision_end|>"))


class QwenVLFamily(ModelFamily):
    model_type = "qwen2_5_vl"
    model_class = Qwen2_5_VLForConditionalGeneration
    display_name = "Qwen2.5-VL"
    language_model_path = "model.language_model"
    projector_path = "model.visual.merger"
    vision_tower_path = "model.visual"
    default_template = CHATML
    image_placeholder = IMAGE_PAD
    tiny_name = "tiny-qwen"
    # Qwen2's attention and MLP linears (the vision blocks' MLPs share three names: only the decoder is adapted)
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def new_tiny(self, spec: dict):
        from hide.models.tiny_qwen import new_tiny_qwen

        return new_tiny_qwen(spec)

    def vision_shape(self, model: nn.Module) -> tuple[int, int]:
        config = model.config.vision_config
        return config.depth, config.hidden_size

    def pooled_vision_state(self, model: nn.Module, batch: dict, layer: int) -> torch.Tensor:
        """The patch states before the merger, pooled per image (the images' patches are one
        sequence, each image's `t * h * w` of them in turn)."""
        tower = self.vision_tower(model)
        grid = batch["image_grid_thw"]
        states = {}

        def keep(index):
            return lambda module, args, out: states.__setitem__(index, out)

        hooks = [tower.patch_embed.register_forward_hook(keep(0))]
        hooks += [block.register_forward_hook(keep(i + 1)) for i, block in enumerate(tower.blocks)]
        try:
            tower(batch["pixel_values"].to(tower.dtype), grid_thw=grid)
        finally:
            for hook in hooks:
                hook.remove()
        hidden = states[layer % (len(tower.blocks) + 1)]
        # the blocks see each image's patches in window order, but every image's patches stay
        # together and in the images' order: the mean of each image's rows is its patches' mean
        sizes = grid.prod(-1).tolist()
        return torch.stack([part.float().mean(0) for part in hidden.split(sizes)])

    def pretraining_width(self, model: nn.Module) -> int:
        return model.config.vision_config.out_hidden_size  # the merger's output: what the decoder reads

    def token_grid_side(self, model: nn.Module, image_size: int) -> int:
        vision = model.config.vision_config
        return image_size // (vision.patch_size * vision.spatial_merge_size)

    def pretraining_states(self, model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The merged tokens (2 x 2 patches each), from the images cut into patches as the image
        processor cuts them (each patch repeated over the 2 time steps of a still image)."""
        vision = model.config.vision_config
        size, merge, steps = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        batch, channels, height, width = pixels.shape
        rows, cols = height // size, width // size
        patches = pixels[:, None].expand(batch, steps, channels, height, width).reshape(
            batch, steps, channels, rows // merge, merge, size, cols // merge, merge, size)
        patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(batch * rows * cols, -1)
        grid = torch.tensor([[1, rows, cols]] * batch, device=pixels.device)
        merged = self.vision_tower(model)(patches, grid_thw=grid).pooler_output
        merged = merged.reshape(batch, rows * cols // merge ** 2, -1)
        return merged, merged

    def image_token_id(self, model: nn.Module) -> int:
        return model.config.image_token_id

    def image_loading(self, processing: str) -> str:
        return "crop"  # the image as it is: the processor resizes it to its pixel budget, any aspect

    def prepare_images(self, image_processor, config, images: list) -> tuple[dict, list[int]]:
        if not images:
            return {"pixel_values": None, "image_grid_thw": None}, []
        out = image_processor(images=images, return_tensors="pt")
        merge = config.vision_config.spatial_merge_size ** 2
        counts = [int(t * h * w) // merge for t, h, w in out["image_grid_thw"].tolist()]
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}, counts

    def image_inputs(self, model: nn.Module, batch: dict) -> dict:
        pixels = batch["pixel_values"]
        if pixels is None:
            return {"pixel_values": None}
        return {"pixel_values": pixels.to(model.dtype), "image_grid_thw": batch["image_grid_thw"]}

    def model_inputs(self, model: nn.Module, batch: dict) -> dict:
        return {**super().model_inputs(model, batch), "mm_token_type_ids": self._token_types(model, batch)}

    def _token_types(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return (batch["input_ids"] == self.image_token_id(model)).int()  # 1: an image token, 0: text

    def positions(self, model: nn.Module, batch: dict) -> torch.Tensor:
        if batch["pixel_values"] is None:
            return self.text_positions(batch["attention_mask"]).expand(3, -1, -1)
        positions, _ = model.model.get_rope_index(batch["input_ids"], self._token_types(model, batch),
                                                  image_grid_thw=batch["image_grid_thw"],
                                                  attention_mask=batch["attention_mask"])
        return positions


QWEN2_5_VL = register(QwenVLFamily())


def qwen2_5_vl_7b_config():
    """Qwen2.5-VL-7B-Instruct's architecture (its config.json's values: a 32-block 1280-wide ViT with
    window attention, the 2 x 2 merger to 3584, a 28-layer Qwen2 decoder with 4 key-value heads),
    for building it without a download: on the meta device to count parameters, or with random
    weights for GPU tests."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000,
                         rope_theta=1000000.0, tie_word_embeddings=False,
                         rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu", tokens_per_second=2),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
