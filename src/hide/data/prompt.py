"""Conversation templates: how a checkpoint was taught to read a conversation (docs/protocol.md).

A template belongs to its checkpoint, as Hugging Face keeps a chat template with the tokenizer:
a model is trained and evaluated with the one it was taught with. Each model family defines its
own (LLaVA-1.5's vicuna_v1 in `hide.models.llava`). A conversation is written as

    system_format(system)  user_format(image_text + q1)  answer_format(a1)
    turn_separator  user_format(q2)  answer_format(a2) ...

Training computes the loss on the answer pieces only (each answer with the end of its turn);
generation feeds the system text and one user turn, which ends where the answer begins. A record
without an image has no image text.
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
    """A conversation format: each piece is a format string (`{system}`, `{question}`,
    `{answer}`) placed as the module docstring shows."""

    name: str
    system: str
    system_format: str
    user_format: str
    answer_format: str
    turn_separator: str = ""
    image_text: str = ""  # what stands for the image, before the first question

    def segments(self, turns: list[Turn], image: bool = True) -> list[tuple[str, bool]]:
        """Split a conversation into (text, is_target) pieces in order; the image text opens the
        first instruction when the record has an image. Concatenating the texts gives the full
        conversation."""
        segments: list[tuple[str, bool]] = []
        for i, turn in enumerate(turns):
            question = f"{self.image_text}{turn.instruction}" if i == 0 and image else turn.instruction
            prefix = self.system_format.format(system=self.system) if i == 0 else self.turn_separator
            segments.append((prefix + self.user_format.format(question=question), False))
            segments.append((self.answer_format.format(answer=turn.answer), True))
        return segments

    def generation_prompt(self, instruction: str, image: bool = True) -> str:
        """The prompt for answering one instruction (about one image, if `image`)."""
        question = f"{self.image_text}{instruction}" if image else instruction
        return self.system_format.format(system=self.system) + self.user_format.format(question=question)

    def save(self, folder: str | Path) -> None:
        """Keep the template with a checkpoint (`load_template` reads it back)."""
        Path(folder, TEMPLATE_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")


TEMPLATES: dict[str, ConversationTemplate] = {}  # by name; each family registers its own


def register_template(template: ConversationTemplate) -> ConversationTemplate:
    TEMPLATES[template.name] = template
    return template


def template_named(name: str) -> ConversationTemplate:
    from hide.models.family import load_families

    load_families()
    if name not in TEMPLATES:
        from hide.errors import ConfigError

        raise ConfigError(f"model.template={name!r} is not a known conversation template; choose one of "
                          f"{sorted(TEMPLATES)} (or null: the checkpoint's own)")
    return TEMPLATES[name]


def from_vicuna_fields(name: str, system: str, user: str, assistant: str, sep: str, sep2: str) -> dict:
    """The fields of a vicuna_v1-style conversation given by its roles and separators, as LLaVA's
    Conversation holds it (a template file may keep these instead of the format strings):
    "{system}{sep}{user}: <image>\\n{q}{sep}{assistant}: {a}{sep2}{user}: ..."."""
    return dict(name=name, system=system, system_format="{system}" + sep,
                user_format=f"{user}: {{question}}{sep}{assistant}:", answer_format=f" {{answer}}{sep2}",
                image_text=f"{IMAGE_TOKEN}\n")


def load_template(folder: str | Path, default: ConversationTemplate) -> ConversationTemplate:
    """The template a checkpoint folder keeps (`TEMPLATE_FILE`), else `default`."""
    path = Path(folder, TEMPLATE_FILE)
    if not path.is_file():
        return default
    try:
        fields = json.loads(path.read_text())
        if "sep2" in fields:  # a file in the vicuna-style fields (user, assistant, sep, sep2)
            fields = from_vicuna_fields(**fields)
        return ConversationTemplate(**fields)
    except (ValueError, TypeError) as err:
        from hide.data.formats import DataFormatError

        raise DataFormatError(f"{path} is not a conversation template ({err}); delete it to use "
                              f"{default.name!r}, or write the fields of hide.data.prompt.ConversationTemplate.") from err
