"""A model family: the one place that knows how a kind of multimodal model is put together.

Everything outside a family's own file reaches the model through its `ModelFamily`: the named
parts (language model, vision tower, projector, and their paths inside the model for exports),
the model inputs of a collated batch, its images' preparation, its positions and its image token.
A family is found from the model itself (`config.model_type`), so code that holds only the model
needs no more than `family_of(model)`.
"""

from __future__ import annotations

import torch
from torch import nn

from hide.data.prompt import ConversationTemplate
from hide.errors import ConfigError


class ModelFamily:
    """What one family supplies; `hide.models.llava.LlavaFamily` is the reference."""

    model_type: str  # the transformers config's model_type of the family's checkpoints
    model_class: type  # the transformers class that loads them (from_pretrained)
    display_name: str
    language_model_path: str  # the decoder's path inside the model (peft's module names start with it)
    projector_path: str  # the projector's path inside the model (peft's modules_to_save)
    vision_tower_path: str
    default_template: ConversationTemplate  # for a checkpoint folder that keeps none
    image_placeholder: str  # the token of the template's image text that expands to the image's tokens
    tiny_name: str  # the folder prefix of the family's tiny backbones (hide.models.tiny)
    # the decoder layers' linears that get LoRA adapters unless a method's `targets` names others
    # (looked up in the language model only: never the vision tower's or the projector's)
    lora_targets: tuple[str, ...]

    def new_tiny(self, spec: dict):
        """The family's untrained tiny backbone of a tiny spec (`hide.models.tiny.tiny_spec`),
        which the tiny recipe then pretrains."""
        raise NotImplementedError

    def language_model(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.language_model_path)

    def vision_tower(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.vision_tower_path)

    def projector(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.projector_path)

    def vision_shape(self, model: nn.Module) -> tuple[int, int]:
        """The vision tower's (number of layers, hidden width)."""
        raise NotImplementedError

    def pooled_vision_state(self, model: nn.Module, batch: dict, layer: int) -> torch.Tensor:
        """(images, width) float32: the mean over each image's patches of the vision tower's hidden
        state `layer` (0: the patch embeddings, l: layer l's output), for a batch's images."""
        raise NotImplementedError

    def image_loading(self, processing: str) -> str:
        """How `hide.data.collate.load_image` reads a task's images under its evaluation setting
        ("pad": padded to square, "crop": as they are)."""
        return processing

    def prepare_images(self, image_processor, config, images: list) -> tuple[dict, list[int]]:
        """The model inputs of a batch's images (RGB PIL images, in order; none when the batch has
        none), and how many image tokens each expands to."""
        raise NotImplementedError

    def fixed_image_tokens(self, config) -> int:
        """How many image tokens every image expands to, for a family where that does not depend on
        the image."""
        raise ConfigError(f"{self.model_type}: an image's token count depends on the image; pass it")

    # -- the tiny backbones' vision pretraining (hide.models.tiny.pretrain_vision) ----------------
    def pretraining_width(self, model: nn.Module) -> int:
        """The width of the image tokens that the pretraining heads read."""
        raise NotImplementedError

    def token_grid_side(self, model: nn.Module, image_size: int) -> int:
        """How many image tokens one side of a square `image_size` image gives (in raster order)."""
        raise NotImplementedError

    def pretraining_states(self, model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For normalised square images (batch, 3, side, side): every token the vision side gives
        (batch, tokens, width), and the image tokens alone in raster order (batch, cells, width)."""
        raise NotImplementedError

    def image_token_id(self, model: nn.Module) -> int:
        """The id every image-feature placeholder of a prompt has."""
        raise NotImplementedError

    def image_inputs(self, model: nn.Module, batch: dict) -> dict:
        """The keyword arguments that give the model a collated batch's images, in the model's
        dtype."""
        raise NotImplementedError

    def model_inputs(self, model: nn.Module, batch: dict) -> dict:
        """Keyword arguments of the model's forward for a collated batch: its tokens, their mask
        and its images (the model places them itself)."""
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                **self.image_inputs(model, batch)}

    def positions(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """The position ids of every column of a left-padded batch (any value at padding), in the
        shape the model's forward takes them: what the model computes itself when given none."""
        return self.text_positions(batch["attention_mask"])

    def text_positions(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The position ids of a left-padded batch of text alone: each row's first real token is
        position 0, so the padding does not shift the positions."""
        return (attention_mask.cumsum(-1) - 1).clamp(min=0)


FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    FAMILIES[family.model_type] = family
    return family


FAMILY_MODULES = ("hide.models.llava", "hide.models.qwen2_5_vl")  # each registers its family and templates


def load_families() -> None:
    """Register the families shipped with hide."""
    import importlib

    for module in FAMILY_MODULES:
        importlib.import_module(module)


def known_families() -> list[ModelFamily]:
    load_families()
    return list(FAMILIES.values())


def family_named(model_type: str | None) -> ModelFamily:
    """The family of a transformers config's model_type."""
    load_families()
    if model_type not in FAMILIES:
        raise ConfigError(f"no model family knows model_type {model_type!r}; hide knows {sorted(FAMILIES)}")
    return FAMILIES[model_type]


def family_of(model: nn.Module) -> ModelFamily:
    """The family of a model (unwrapped by peft or not), by its config's model_type."""
    return family_named(getattr(getattr(model, "config", None), "model_type", None))


def model_inputs(model: nn.Module, batch: dict) -> dict:
    """`family_of(model).model_inputs` of a batch."""
    return family_of(model).model_inputs(model, batch)
