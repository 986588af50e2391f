"""Loading a backbone with `from_pretrained`, its family's model class chosen by the checkpoint's
config: the same code path for the tiny offline models (built and cached by `hide.models.tiny`)
and for released checkpoints such as llava-hf/llava-1.5-7b-hf."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

from hide.data.prompt import ConversationTemplate, load_template, template_named
from hide.errors import HideError
from hide.models.family import ModelFamily, family_named, family_of, known_families

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class BackboneError(HideError, RuntimeError):
    """A checkpoint path or its contents are not what a backbone needs."""


@dataclass
class Backbone:
    """A model of a known family with the tokenizer, image processor and conversation template that
    go with it."""

    model: torch.nn.Module  # a transformers model of a known family
    tokenizer: object  # a transformers tokenizer
    image_processor: object
    name: str
    template: ConversationTemplate | None = None  # None: the family's default

    def __post_init__(self):
        if self.template is None:
            self.template = self.family.default_template

    @property
    def family(self) -> ModelFamily:
        return family_of(self.model)

    @property
    def image_token_id(self) -> int:
        return self.family.image_token_id(self.model)

    @property
    def image_seq_length(self) -> int:
        """How many image tokens every image expands to (a family whose count depends on the image
        has none)."""
        return self.family.fixed_image_tokens(self.model.config)

    @property
    def projector(self) -> torch.nn.Module:
        return self.family.projector(self.model)

    @property
    def language_model(self) -> torch.nn.Module:
        return self.family.language_model(self.model)

    @property
    def vision_tower(self) -> torch.nn.Module:
        return self.family.vision_tower(self.model)


def _attn_implementation(requested: str) -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def missing_checkpoint_parts(folder: Path) -> list[str]:
    """What a local llava-hf checkpoint directory lacks, each named (empty when complete)."""
    parts = {
        "the weights (model.safetensors, model-*.safetensors or pytorch_model*.bin)":
            ["model.safetensors", "model-*.safetensors", "pytorch_model*.bin"],
        "the tokenizer (tokenizer.json or tokenizer.model)": ["tokenizer.json", "tokenizer.model"],
        "the image processor (preprocessor_config.json)": ["preprocessor_config.json"],
    }
    return [name for name, patterns in parts.items() if not any(any(folder.glob(p)) for p in patterns)]


def load_pretrained_backbone(
    path: str,
    dtype: str = "float32",
    attn_implementation: str = "auto",
    gradient_checkpointing: bool = False,
    template: str | None = None,
    default_template: ConversationTemplate | None = None,
    image_processor: dict | None = None,
) -> Backbone:
    """Load model, tokenizer and image processor from a hub id or a local directory.

    `image_processor`: settings that replace the checkpoint's own image processor's (Qwen2.5-VL's
    `max_pixels`: the pixel budget that decides how many image tokens an image gives).

    `template` names the conversation template (`hide.data.prompt.TEMPLATES`); None: the one the
    checkpoint folder keeps (`conversation_template.json`), else `default_template` (None: the
    family's, LLaVA-1.5's vicuna_v1 for LLaVA, which llava-hf checkpoints do not store)."""
    local = Path(path)
    if local.exists() and not (local / "config.json").exists():
        raise BackboneError(
            f"{local} exists but holds no config.json: point model.path at a llava-hf checkpoint "
            f"directory (config.json, *.safetensors, tokenizer and preprocessor files)."
        )
    if local.is_dir():
        missing = missing_checkpoint_parts(local)
        if missing:
            raise BackboneError(
                f"The checkpoint directory {local} lacks {'; '.join(missing)}. Copy the complete llava-hf "
                f"checkpoint (e.g. llava-hf/llava-1.5-7b-hf: config.json, model-*.safetensors with their index, "
                f"tokenizer.json or tokenizer.model, preprocessor_config.json)."
            )
    try:
        config = AutoConfig.from_pretrained(path)  # read once: its model_type names the family
        family = family_named(config.model_type)
        model = family.model_class.from_pretrained(
            path, config=config, dtype=DTYPES[dtype], attn_implementation=_attn_implementation(attn_implementation)
        )
        tokenizer = AutoTokenizer.from_pretrained(path)
        processor = AutoImageProcessor.from_pretrained(path, backend="pil", **(image_processor or {}))
    except (OSError, ValueError) as err:
        kinds = " or ".join(f"a {f.display_name} checkpoint" for f in known_families())
        raise BackboneError(
            f"Could not load {kinds} from {path!r}: {err}. Give a local directory with the checkpoint's "
            f"files (e.g. llava-hf's), or a hub id on a machine that can reach the hub."
        ) from err
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token
    default_template = default_template or family_of(model).default_template
    if template:
        chosen = template_named(template)
    else:
        chosen = load_template(local, default_template) if local.is_dir() else default_template
    return Backbone(model=model, tokenizer=tokenizer, image_processor=processor, name=str(path), template=chosen)


def enable_activation_checkpointing(model) -> None:
    """Recompute each layer's activations in the backward pass (non-reentrant), through
    `activation_checkpointing_enable` where the installed transformers has it (its older name,
    `gradient_checkpointing_enable`, then warns that it is deprecated)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
