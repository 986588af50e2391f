"""Turning records into model inputs: images padded to square and processed, `<image>` expanded
to one token per image feature, labels only on answer tokens, right padding for training and
left padding for generation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hide.data.formats import IMAGE_TOKEN, DataFormatError, TestRecord, TrainRecord
from hide.data.prompt import conversation_segments, generation_prompt

IGNORE_INDEX = -100


def expand2square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Pad to a square canvas, centred, as LLaVA-1.5 does before the image processor."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as LLaVA sees it. 16-bit images are scaled by 65535, and 32-bit integer and float
    images (depth maps) by their maximum (at least 1, so [0, 1] floats scale by 255) into 0..255
    first: PIL's own conversion clips them, which turns most 16-bit images white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        image = Image.fromarray(np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8), mode="L")
    return image.convert("RGB")


def load_image(path: Path | Image.Image, image_processor, record: str = "") -> Image.Image:
    """The record's image (a file, or an image already in memory), RGB and padded to a square
    with the processor's mean colour."""
    if isinstance(path, Image.Image):
        return _square(to_rgb(path), image_processor)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sizes are checked at load
            with Image.open(path) as im:
                image = to_rgb(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataFormatError(
            f"The image {path}{f' of record {record!r}' if record else ''} cannot be decoded "
            f"({type(err).__name__}: {err}). Replace the file (a truncated download is the usual cause), or set "
            f"data.on_bad_record=skip, which decodes every image at load and leaves such records out."
        ) from err
    return _square(image, image_processor)


def _square(image: Image.Image, image_processor) -> Image.Image:
    mean = getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    return expand2square(image, tuple(int(255 * m) for m in mean))


@dataclass
class Encoder:
    """Tokenises vicuna_v1 conversations for one backbone."""

    tokenizer: object
    image_processor: object
    image_seq_length: int
    max_length: int = 2048

    def _ids(self, text: str) -> list[int]:
        text = text.replace(IMAGE_TOKEN, IMAGE_TOKEN * self.image_seq_length)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _bos(self) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return [] if bos is None else [bos]

    def training_example(self, record: TrainRecord) -> tuple[list[int], list[int]]:
        """input_ids and labels; labels are IGNORE_INDEX except on the answers and their `</s>`.
        Pieces are tokenised separately so that the prompt's tokens are exactly what generation sees."""
        input_ids, labels = self._bos(), [IGNORE_INDEX] * len(self._bos())
        for text, is_target in conversation_segments(record.turns):
            ids = self._ids(text)
            input_ids += ids
            labels += ids if is_target else [IGNORE_INDEX] * len(ids)
        if len(input_ids) > self.max_length:
            # Truncation would cut the image tokens or the answer; it means max_length is wrong.
            raise DataFormatError(
                f"Record {record.id} ({record.image}) is {len(input_ids)} tokens long, over "
                f"max_length={self.max_length}; raise data.max_length or shorten the record."
            )
        return input_ids, labels

    def prompt_ids(self, instruction: str) -> list[int]:
        return self._bos() + self._ids(generation_prompt(instruction))

    def pixel_values(self, paths: list[Path], ids: list[str] | None = None) -> torch.Tensor:
        images = [load_image(p, self.image_processor, rid) for p, rid in zip(paths, ids or [""] * len(paths))]
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]


@dataclass
class TrainCollator:
    """Right-padded training batches: input_ids, attention_mask, labels, pixel_values, ids, task."""

    encoder: Encoder

    def __call__(self, items: list[tuple[int, TrainRecord]]) -> dict:
        encoded = [self.encoder.training_example(record) for _, record in items]
        length = max(len(ids) for ids, _ in encoded)
        pad = self.encoder.tokenizer.pad_token_id
        input_ids = torch.full((len(items), length), pad, dtype=torch.long)
        labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(items), length), dtype=torch.long)
        for row, (ids, labs) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(labs)] = torch.tensor(labs)
            attention_mask[row, : len(ids)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "pixel_values": self.encoder.pixel_values([record.image for _, record in items],
                                                      [record.id for _, record in items]),
            "task": torch.tensor([task for task, _ in items], dtype=torch.long),
            "ids": [record.id for _, record in items],
            # the first instruction alone (no system prompt, no answer): the anchor encoders' text feature
            "instructions": [record.turns[0].instruction for _, record in items],
        }


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: each row's first real token is position 0, so the
    padding does not shift the positions (for forwards outside `generate`, which does this itself)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


@dataclass
class EvalCollator:
    """Left-padded prompts for batched generation, so that every row's answer starts at the same column."""

    encoder: Encoder

    def __call__(self, items: list[tuple[int, TestRecord]]) -> dict:
        prompts = [self.encoder.prompt_ids(record.text) for _, record in items]
        length = max(len(p) for p in prompts)
        pad = self.encoder.tokenizer.pad_token_id
        input_ids = torch.full((len(items), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(items), length), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, length - len(ids) :] = torch.tensor(ids)
            attention_mask[row, length - len(ids) :] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": self.encoder.pixel_values([record.image for _, record in items],
                                                      [record.question_id for _, record in items]),
            "task": torch.tensor([task for task, _ in items], dtype=torch.long),
            "ids": [record.question_id for _, record in items],
            "instructions": [record.text for _, record in items],
        }
