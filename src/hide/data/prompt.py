"""Conversation templates: how a checkpoint was taught to read a conversation (docs/protocol.md).

A template belongs to its checkpoint, as Hugging Face keeps a chat template with the tokenizer:
a model is trained and evaluated with the one it was taught with. LLaVA-1.5 uses LLaVA's
"vicuna_v1" conversation (its `llava/conversation.py`, `conv_vicuna_v1`, which HiDe-LLaVA's and
CoIN's evaluation scripts select with `--conv-mode vicuna_v1`):

    {system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>...

Training computes the loss on the answers and their `</s>` only; generation feeds everything up
to and including the last "ASSISTANT:". A record without an image has no `<image>\\n`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hide.data.formats import IMAGE_TOKEN, Turn

# The file a checkpoint folder keeps its template in (written beside the weights).
TEMPLATE_FILE = "conversation_template.json"


@dataclass(frozen=True)
class ConversationTemplate:
    """A vicuna_v1-style conversation: `system`, then per turn "{user}: {question}{sep}{assistant}:"
    and " {answer}{sep2}"."""

    name: str
    system: str
    user: str = "USER"
    assistant: str = "ASSISTANT"
    sep: str = " "
    sep2: str = "</s>"

    def segments(self, turns: list[Turn], image: bool = True) -> list[tuple[str, bool]]:
        """Split a conversation into (text, is_target) pieces in order; the image token opens the
        first instruction when the record has an image. Concatenating the texts gives the full
        prompt, as LLaVA's `Conversation.get_prompt` writes it."""
        segments: list[tuple[str, bool]] = []
        for i, turn in enumerate(turns):
            question = f"{IMAGE_TOKEN}\n{turn.instruction}" if i == 0 and image else turn.instruction
            prefix = f"{self.system}{self.sep}{self.user}: " if i == 0 else f"{self.user}: "
            segments.append((f"{prefix}{question}{self.sep}{self.assistant}:", False))
            segments.append((f" {turn.answer}{self.sep2}", True))
        return segments

    def generation_prompt(self, instruction: str, image: bool = True) -> str:
        """The prompt for answering one instruction (about one image, if `image`)."""
        question = f"{IMAGE_TOKEN}\n{instruction}" if image else instruction
        return f"{self.system}{self.sep}{self.user}: {question}{self.sep}{self.assistant}:"

    def save(self, folder: str | Path) -> None:
        """Keep the template with a checkpoint (`load_template` reads it back)."""
        Path(folder, TEMPLATE_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")


# LLaVA-1.5's template (LLaVA's llava/conversation.py, conv_vicuna_v1).
VICUNA_V1 = ConversationTemplate(
    "vicuna_v1",
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
)
# vicuna_v1's turns and separators under vicuna_v0's system sentence ("a curious human"): the
# template the shipped tiny backbone was instruction-tuned with (`hide.models.tiny`).
TINY_V1 = ConversationTemplate(
    "tiny_v1",
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
)
TEMPLATES = {t.name: t for t in (VICUNA_V1, TINY_V1)}


def template_named(name: str) -> ConversationTemplate:
    if name not in TEMPLATES:
        from hide.errors import ConfigError

        raise ConfigError(f"model.template={name!r} is not a known conversation template; choose one of "
                          f"{sorted(TEMPLATES)} (or null: the checkpoint's own)")
    return TEMPLATES[name]


def load_template(folder: str | Path, default: ConversationTemplate) -> ConversationTemplate:
    """The template a checkpoint folder keeps (`TEMPLATE_FILE`), else `default`."""
    path = Path(folder, TEMPLATE_FILE)
    if not path.is_file():
        return default
    try:
        return ConversationTemplate(**json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        from hide.data.formats import DataFormatError

        raise DataFormatError(f"{path} is not a conversation template ({err}); delete it to use "
                              f"{default.name!r}, or write the fields of hide.data.prompt.ConversationTemplate.") from err
