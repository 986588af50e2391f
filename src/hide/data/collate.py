"""Turning records into model inputs: images prepared as the model's family does (LLaVA: padded to
square and processed), the image placeholder expanded to one token per image feature, labels only
on answer tokens, right padding for training and left padding for generation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hide.data.formats import IMAGE_PROCESSING, DataFormatError, TestRecord, TrainRecord
from hide.data.prompt import ConversationTemplate
from hide.models.family import ModelFamily

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


def load_image(path: Path | Image.Image, image_processor, record: str = "", processing: str = "pad") -> Image.Image:
    """The record's image (a file, or an image already in memory), RGB and, with processing "pad",
    padded to a square with the processor's mean colour (LLaVA's `process_images` under
    image_aspect_ratio=pad); "crop" leaves it as it is, for the processor's own resize of the
    shortest side and centre crop (LLaVA's `image_processor.preprocess` alone)."""
    if isinstance(path, Image.Image):
        image = to_rgb(path)
        return _square(image, image_processor) if processing == "pad" else image
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
    return _square(image, image_processor) if processing == "pad" else image


def _square(image: Image.Image, image_processor) -> Image.Image:
    mean = getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    return expand2square(image, tuple(int(255 * m) for m in mean))


def has_image(records) -> torch.Tensor:
    """Which of a batch's records have an image (a text-only record has none)."""
    return torch.tensor([record.image is not None for record in records], dtype=torch.bool)


@dataclass
class Encoder:
    """Tokenises conversations in one backbone's template and prepares their images as its family
    does."""

    tokenizer: object
    image_processor: object
    family: ModelFamily
    model_config: object
    max_length: int
    template: ConversationTemplate

    @classmethod
    def for_backbone(cls, backbone, max_length: int = 2048) -> "Encoder":
        return cls(backbone.tokenizer, backbone.image_processor, backbone.family, backbone.model.config, max_length,
                   backbone.template)

    def _ids(self, text: str, image_tokens: int | None) -> list[int]:
        """The text's token ids, the family's image placeholder expanded to `image_tokens` image
        tokens (None: the family's fixed number). The pieces on each side of the placeholder are
        tokenised on their own, as LLaVA's `tokenizer_image_token` (llava/mm_utils.py) forms an
        evaluation prompt's ids."""
        placeholder = self.family.image_placeholder
        pieces = text.split(placeholder)
        if len(pieces) > 1 and image_tokens is None:
            image_tokens = self.family.fixed_image_tokens(self.model_config)
        image = self.tokenizer.convert_tokens_to_ids(placeholder)
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            if i:
                ids += [image] * image_tokens
            if piece:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
        return ids

    def _bos(self) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return [] if bos is None else [bos]

    def training_example(self, record: TrainRecord, image_tokens: int | None = None) -> tuple[list[int], list[int]]:
        """input_ids and labels; labels are IGNORE_INDEX except on the answers (with the end of
        their turn). Pieces are tokenised separately so that the prompt's tokens are exactly what
        generation sees. `image_tokens`: how many tokens the record's image expands to (None: the
        family's fixed number)."""
        input_ids, labels = self._bos(), [IGNORE_INDEX] * len(self._bos())
        for text, is_target in self.template.segments(record.turns, image=record.image is not None):
            ids = self._ids(text, image_tokens)
            input_ids += ids
            labels += ids if is_target else [IGNORE_INDEX] * len(ids)
        if len(input_ids) > self.max_length:
            # Truncation would cut the image tokens or the answer; it means max_length is wrong.
            raise DataFormatError(
                f"Record {record.id} ({record.image}) is {len(input_ids)} tokens long, over "
                f"max_length={self.max_length}; raise data.max_length or shorten the record."
            )
        return input_ids, labels

    def prompt_ids(self, instruction: str, image: bool = True, image_tokens: int | None = None) -> list[int]:
        return self._bos() + self._ids(self.template.generation_prompt(instruction, image=image), image_tokens)

    def images(self, paths: list, ids: list[str] | None = None, processing: str = "pad") -> tuple[dict, list[int]]:
        """The batch's images as the family's model inputs (records without one, `None`, have
        none), and how many image tokens each image expands to, in order."""
        images = [load_image(p, self.image_processor, rid, self.family.image_loading(processing))
                  for p, rid in zip(paths, ids or [""] * len(paths)) if p is not None]
        return self.family.prepare_images(self.image_processor, self.model_config, images)


def _image_tokens(records, counts: list[int]) -> list[int | None]:
    """Each record's image-token count (None for a record without an image), from the counts of
    the images that the records have, in order."""
    counts = iter(counts)
    return [next(counts) if record.image is not None else None for record in records]


@dataclass
class TrainCollator:
    """Right-padded training batches: input_ids, attention_mask, labels, pixel_values, ids, task."""

    encoder: Encoder

    def __call__(self, items: list[tuple[int, TrainRecord]]) -> dict:
        records = [record for _, record in items]
        images, counts = self.encoder.images([r.image for r in records], [r.id for r in records])
        encoded = [self.encoder.training_example(r, n) for r, n in zip(records, _image_tokens(records, counts))]
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
            **images,
            "has_image": has_image(record for _, record in items),
            "task": torch.tensor([task for task, _ in items], dtype=torch.long),
            "ids": [record.id for _, record in items],
            # the first instruction alone (no system prompt, no answer): the anchor encoders' text feature
            "instructions": [record.turns[0].instruction for _, record in items],
        }


@dataclass
class EvalCollator:
    """Left-padded prompts for batched generation, so that every row's answer starts at the same
    column; a task's evaluation settings (`TaskSpec`) as its official script asks: the suffix
    appended to each instruction, how images are processed, and the generation budget (None:
    the benchmark's), which the batch carries to the decoder."""

    encoder: Encoder
    prompt_suffix: str = ""
    image_processing: str = "pad"
    max_new_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.image_processing not in IMAGE_PROCESSING:
            raise ValueError(f"image_processing={self.image_processing!r}; choose one of {IMAGE_PROCESSING}")

    @classmethod
    def for_task(cls, encoder: Encoder, spec=None) -> "EvalCollator":
        """The collator of a task's evaluation settings (`TaskSpec`; None: the defaults)."""
        if spec is None:
            return cls(encoder)
        return cls(encoder, spec.prompt_suffix, spec.image_processing, spec.max_new_tokens)

    def __call__(self, items: list[tuple[int, TestRecord]]) -> dict:
        records = [record for _, record in items]
        images, counts = self.encoder.images([r.image for r in records], [r.question_id for r in records],
                                             self.image_processing)
        prompts = [self.encoder.prompt_ids(r.text + self.prompt_suffix, image=r.image is not None, image_tokens=n)
                   for r, n in zip(records, _image_tokens(records, counts))]
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
            **images,
            "has_image": has_image(record for _, record in items),
            "task": torch.tensor([task for task, _ in items], dtype=torch.long),
            "ids": [record.question_id for _, record in items],
            "instructions": [record.text for _, record in items],
            "max_new_tokens": self.max_new_tokens,
        }
