"""The LLaVA-1.5 "vicuna_v1" conversation template (docs/protocol.md).

    {SYSTEM} USER: <image>\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>...

Training computes the loss on the answers and their `</s>` only; generation feeds everything up
to and including the last "ASSISTANT:".
"""

from __future__ import annotations

from hide.data.formats import IMAGE_TOKEN, Turn

SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
EOS = "</s>"


def conversation_segments(turns: list[Turn]) -> list[tuple[str, bool]]:
    """Split a conversation into (text, is_target) pieces in order; the image token opens the
    first instruction. Concatenating the texts gives the full vicuna_v1 prompt."""
    segments: list[tuple[str, bool]] = []
    for i, turn in enumerate(turns):
        user = f"{IMAGE_TOKEN}\n{turn.instruction}" if i == 0 else turn.instruction
        prefix = f"{SYSTEM} USER: " if i == 0 else "USER: "
        segments.append((f"{prefix}{user} ASSISTANT:", False))
        segments.append((f" {turn.answer}{EOS}", True))
    return segments


def generation_prompt(instruction: str) -> str:
    """The prompt for answering one instruction about one image."""
    return f"{SYSTEM} USER: {IMAGE_TOKEN}\n{instruction} ASSISTANT:"
