"""On-disk formats of UCIT (docs/protocol.md), read and written by one module.

Train file:   JSON list of {"id", "image", "conversations": [{"from": "human"|"gpt", "value"}, ...]}
Test file:    JSON list of {"question_id", "image", "text", "answer"}
Caption refs: COCO {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]},
              matched to the test file by position (image ids 1..N in test-file order).

Image paths in both files are relative to `<data_dir>/datasets/`; the instruction files of a task
live in `<data_dir>/instructions/<task dir>/`.

The loaders validate every record and raise `DataFormatError` with a one-paragraph message that
names the file, the record (index and id when known), what is wrong and what to do about it.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from PIL import Image

from hide.atomic import write_json_atomic
from hide.errors import ConfigError, HideError

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"


class DataFormatError(HideError, ValueError):
    """A benchmark file or record is malformed; the message names the file, the record and the fix."""


@dataclass
class Turn:
    """One human instruction and the assistant's answer to it."""

    instruction: str
    answer: str


@dataclass
class TrainRecord:
    """A training conversation. Every `Turn.instruction` is the plain instruction text: the loader
    strips the `<image>` token (and the newline next to it) from the first one, and the prompt
    builder puts the token back."""

    id: str
    image: Path | None  # absolute path; None: a text-only conversation
    turns: list[Turn]


@dataclass
class TestRecord:
    """A test question with its reference answer (for caption tasks the references live elsewhere)."""

    __test__ = False  # not a pytest test class, despite the name

    question_id: str  # unique within the task (a repeated id in the file is made unique: `source_id`)
    image: Path | None  # absolute path; None: a text-only question, answered without an image
    text: str  # the instruction, without the <image> token
    answer: str  # "" for a caption test record that has none (its references live elsewhere)
    source_id: str | None = None  # the file's question_id, where it repeats an earlier record's


@dataclass
class TaskData:
    """Everything one continual task needs: its training conversations, test questions and,
    for caption tasks, the reference captions of each test item (keyed by question_id)."""

    name: str
    kind: str  # "qa" or "caption"
    train: list[TrainRecord]
    test: list[TestRecord]
    references: dict[str, list[str]] | None = field(default=None)
    # a benchmark's own metric for the task: predictions {question_id: answer} -> {"score": 0-100, ...}
    # (None: exact match for QA, the caption metrics for captions)
    scorer: Callable[[dict[str, str]], dict] | None = field(default=None)
    # QA exact match as the official scorer ("original") or with its faults fixed ("corrected")
    scoring: str = "original"
    # where the task's files are and how it is evaluated (prompt suffix, images, budget)
    spec: TaskSpec | None = None


def write_train_file(path: str | os.PathLike, records: list[dict]) -> None:
    """`records`: dicts in the LLaVA training format (id, image relative to datasets/, conversations)."""
    write_json_atomic(path, records)


def write_test_file(path: str | os.PathLike, records: list[dict]) -> None:
    """`records`: dicts {question_id, image (relative to datasets/), text, answer}."""
    write_json_atomic(path, records)


def write_caption_references(
    path: str | os.PathLike, file_names: list[str], captions: list[list[str]]
) -> None:
    """COCO-format references; image ids are 1..N in the order of the test file."""
    if len(file_names) != len(captions):
        raise ValueError(f"{len(file_names)} file names but {len(captions)} caption lists")
    images = [{"id": i + 1, "file_name": name} for i, name in enumerate(file_names)]
    annotations = []
    for i, caps in enumerate(captions):
        for cap in caps:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "caption": cap})
    write_json_atomic(path, {"images": images, "annotations": annotations})


# ---------------------------------------------------------------------------------------------
# Task description
# ---------------------------------------------------------------------------------------------

TASK_KINDS = ("qa", "caption")
IMAGE_PROCESSING = ("pad", "crop")


@dataclass(frozen=True)
class TaskSpec:
    """Where one task's files are and how it is scored.

    `train_file`, `test_file` and `references_file` are relative to `<data_dir>/instructions/<dir>/`;
    `dir` defaults to `name`, and `alt_dirs` are read when `dir` does not exist (the names another
    release uses). Caption tasks need `references_file` (the COCO-format captions); QA tasks must
    not have one.

    How the task is evaluated, as its official script does (docs/protocol.md): `prompt_suffix` is
    appended to every test instruction, `image_processing` is "pad" (padded to a square with the
    processor's mean colour, then processed) or "crop" (the processor's own resize and centre
    crop), `max_new_tokens` the generation budget (None: the benchmark's).

    What the official files hold: with `text_only`, a record without an `image` is a text-only
    question or conversation (CoIN's ScienceQA); with `repeated_ids`, the test file may repeat a
    question_id (HiDe-LLaVA's scorer keeps every answer and looks each up in a dict by id, so the
    last record's answer is the reference: `hide.metrics.qa.official_answers`); without them
    either is an error naming the record.
    """

    name: str
    kind: str
    train_file: str
    test_file: str
    references_file: str | None = None
    dir: str | None = None
    alt_dirs: tuple[str, ...] = ()
    prompt_suffix: str = ""
    image_processing: str = "pad"
    max_new_tokens: int | None = None
    text_only: bool = False
    repeated_ids: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataFormatError(
                f"task spec: name must be a non-empty string, got {self.name!r}. Give every task a name."
            )
        if self.kind not in TASK_KINDS:
            raise DataFormatError(
                f"task {self.name!r}: kind must be one of {', '.join(map(repr, TASK_KINDS))}, "
                f"got {self.kind!r}. Set kind to 'qa' for exact-match tasks or 'caption' for "
                f"captioning tasks scored with the COCO caption metrics."
            )
        if self.dir is None:
            object.__setattr__(self, "dir", self.name)
        for attr in ("train_file", "test_file", "dir"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value:
                raise DataFormatError(
                    f"task {self.name!r}: {attr} must be a non-empty string, got {value!r}. "
                    f"Set it to the file (or folder) name under instructions/."
                )
        object.__setattr__(self, "alt_dirs", tuple(self.alt_dirs or ()))
        if self.image_processing not in IMAGE_PROCESSING:
            raise DataFormatError(f"task {self.name!r}: image_processing must be one of {IMAGE_PROCESSING}, "
                                  f"got {self.image_processing!r}.")
        if self.max_new_tokens is not None and (not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1):
            raise DataFormatError(f"task {self.name!r}: max_new_tokens must be a positive integer or null, "
                                  f"got {self.max_new_tokens!r}.")
        if self.kind == "caption":
            if not isinstance(self.references_file, str) or not self.references_file:
                raise DataFormatError(
                    f"task {self.name!r} is a caption task but has no references_file. Set "
                    f"references_file to its COCO-format reference captions (in UCIT: "
                    f"val_coco_type_3000.json) under instructions/{self.dir}/."
                )
        elif self.references_file is not None:
            raise DataFormatError(
                f"task {self.name!r} is a QA task but has references_file="
                f"{self.references_file!r}; only caption tasks use reference captions. Remove "
                f"references_file or set kind to 'caption'."
            )


# The six UCIT tasks in the benchmark's order; folders under instructions/ as HiDe-LLaVA's
# scripts name them (scripts/HiDe/Train_UCIT, Eval_UCIT), else as its README's layout does.
UCIT_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("ImageNet-R", "qa", "train.json", "test_3000.json"),
    TaskSpec("ArxivQA", "qa", "train_4w.json", "test_3000.json"),
    TaskSpec("VizWiz", "caption", "train.json", "test_3000.json", "val_coco_type_3000.json",
             dir="VizWiz-caption", alt_dirs=("VizWiz",)),
    TaskSpec("IconQA", "qa", "train.json", "test_3000.json"),
    TaskSpec("CLEVR", "qa", "train_4w.json", "test_3000.json", dir="CLEVR-Math", alt_dirs=("CLEVR",)),
    TaskSpec("Flickr30k", "caption", "train_brief_4w.json", "test_3000.json", "val_coco_type_3000.json",
             dir="Flickr30k-cap", alt_dirs=("Flickr30k",)),
)


def task_folder(instructions_dir: str | os.PathLike, spec: TaskSpec) -> Path:
    """The task's folder: `spec.dir`, or the first of `spec.alt_dirs` that exists (else `spec.dir`,
    for the error that names it)."""
    for name in (spec.dir, *spec.alt_dirs):
        if (Path(instructions_dir) / name).is_dir():
            return Path(instructions_dir) / name
    return Path(instructions_dir) / spec.dir


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


def _describe_dir(folder: Path, limit: int = 30) -> str:
    """'folder X contains: a, b, c' (or says that it is missing / empty), for error messages."""
    if not folder.exists():
        parent = folder.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return f"the folder {folder} does not exist ({_describe_dir(parent, limit)})"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name + ("/" if e.is_dir() else "") for e in it)
    except OSError as e:
        return f"the folder {folder} cannot be listed ({e})"
    if not names:
        return f"the folder {folder} is empty"
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"the folder {folder} contains: {shown}{more}"


def _read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; every failure is a DataFormatError naming the file."""
    if not path.is_file():
        if path.exists():
            raise DataFormatError(
                f"The {what} {path} is not a regular file. Point the task at the JSON file itself."
            )
        raise DataFormatError(
            f"The {what} {path} does not exist; {_describe_dir(path.parent)}. Check paths.data_dir "
            f"and the task's file names, or download the missing file."
        )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(
            f"The {what} {path} cannot be read as UTF-8 text ({e}). Check the file's permissions "
            f"and that it is the JSON file and not an archive."
        ) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"The {what} {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno} "
            f"(char {e.pos}). Fix the JSON syntax there or download the file again (a truncated "
            f"download is a common cause)."
        ) from e


def _expect_list(obj: Any, path: Path, what: str, item: str) -> list:
    if not isinstance(obj, list):
        raise DataFormatError(
            f"The {what} {path} must hold a JSON list of {item} at the top level, but it holds "
            f"{_json_type(obj)}. Use the file in the UCIT format (a list of records)."
        )
    return obj


def _json_type(obj: Any) -> str:
    """The JSON type of `obj` with its article, for messages ('a list', 'an object', 'null')."""
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, (int, float)):
        return "a number"
    if isinstance(obj, str):
        return "a string"
    if isinstance(obj, list):
        return "a list"
    if isinstance(obj, dict):
        return "an object"
    return f"a {type(obj).__name__}"


def _record_label(index: int, rid: Any = None) -> str:
    return f"record at index {index}" + ("" if rid is None else f" (id {rid!r})")


@dataclass(frozen=True)
class BadRecord:
    """A record left out under `data.on_bad_record=skip`, and why."""

    file: str
    index: int
    id: str | None
    reason: str


def _skip_or_raise(err: DataFormatError, skipped: list[BadRecord] | None, path: Path, index: int, rec: Any,
                   id_key: str) -> None:
    if skipped is None:
        raise err
    rid = rec.get(id_key) if isinstance(rec, dict) else None
    skipped.append(BadRecord(str(path), index, None if rid is None else str(rid), str(err)))


def _check_not_all_skipped(good: list, skipped: list[BadRecord] | None, path: Path) -> None:
    if not good and skipped:
        raise DataFormatError(
            f"Every record of {path} is bad ({len([b for b in skipped if b.file == str(path)])} left out under "
            f"data.on_bad_record=skip); the first: {next(b.reason for b in skipped if b.file == str(path))}"
        )


def _is_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _resolve_image(
    image: Any, datasets_dir: Path, check_images: bool, where: str
) -> Path:
    if not isinstance(image, str) or not image.strip():
        raise DataFormatError(
            f"{where}: 'image' must be a non-empty string (a path relative to datasets/), got "
            f"{image!r}. Fix or remove the record."
        )
    resolved = Path(os.path.abspath(datasets_dir / image))
    if check_images:
        _check_image(resolved, datasets_dir, where)
    return resolved


def _check_image(resolved: Path, datasets_dir: Path, where: str, max_pixels: int | None = None,
                 decode: bool = False) -> None:
    """The image exists, its header reads, it has at most `max_pixels` pixels and, with `decode`,
    its pixel data decodes (a truncated file passes the header check and fails only here)."""
    if not resolved.is_file():
        raise DataFormatError(
            f"{where}: the image {resolved} does not exist ({_describe_dir(resolved.parent, limit=10)}). "
            f"Download/extract the images under {datasets_dir}, fix the record's image path, or "
            f"load with check_images=False."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            with Image.open(resolved) as im:
                width, height = im.size
                if max_pixels is not None and width * height > max_pixels:
                    raise DataFormatError(
                        f"{where}: the image {resolved} is {width}x{height} = {width * height:,} pixels, more "
                        f"than data.max_image_pixels={max_pixels:,}. Downscale the file (the model resizes it "
                        f"to a few hundred pixels anyway), leave the record out with data.on_bad_record=skip, "
                        f"or raise data.max_image_pixels."
                    )
                if decode:
                    im.load()
    except Image.DecompressionBombError as err:
        raise DataFormatError(
            f"{where}: the image {resolved} is too large to open safely ({err}). Downscale the file or leave "
            f"the record out with data.on_bad_record=skip."
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DataFormatError(
            f"{where}: the image {resolved} cannot be read as an image ({type(err).__name__}: {err}). Replace "
            f"the file (a truncated or failed download is the usual cause) or leave the record out with "
            f"data.on_bad_record=skip."
        ) from err


def _strip_image_token(value: str) -> str:
    """Remove the one `<image>` token and the newline next to it (after it, or before it when the
    token ends the text)."""
    if IMAGE_TOKEN + "\n" in value:
        return value.replace(IMAGE_TOKEN + "\n", "", 1)
    if value.endswith("\n" + IMAGE_TOKEN):
        return value[: -len(IMAGE_TOKEN) - 1]
    return value.replace(IMAGE_TOKEN, "", 1)


def load_train_file(
    path: str | os.PathLike,
    datasets_dir: str | os.PathLike,
    check_images: bool = True,
    *,
    task_name: str | None = None,
    skipped: list[BadRecord] | None = None,
    text_only: bool = False,
    repeats: dict[str, list[int]] | None = None,
) -> list[TrainRecord]:
    """Load and validate a LLaVA-format training file.

    A record without an `id` is named by its index ("#i"); with `text_only`, a record without an
    `image` is a text-only conversation (no `<image>` token), as LLaVA's trainer reads one; with
    `repeats`, a repeated id is kept (named "<id>#<index>") and listed there, as in `_record_id`.

    Image paths are resolved against `datasets_dir` (checked to exist when `check_images`).
    The `<image>` token (exactly one, in the first human turn) is stripped from the instruction.
    `task_name` only improves the message of the empty-file error. With a `skipped` list, a bad
    record is appended to it and left out instead of raising (`data.on_bad_record=skip`).
    """
    path = Path(path)
    datasets_dir = Path(datasets_dir)
    what = "training file"
    records = _expect_list(_read_json(path, what), path, what, "conversation records")
    if not records:
        who = f"task {task_name!r}" if task_name else "the task"
        raise DataFormatError(
            f"{who} has no training records in {path} (the file holds an empty list). Use the "
            f"full training file or remove the task from the sequence."
        )
    out: list[TrainRecord] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        try:
            out.append(_train_record(rec, i, path, datasets_dir, check_images, seen, text_only, repeats))
        except DataFormatError as err:
            _skip_or_raise(err, skipped, path, i, rec, "id")
    _check_not_all_skipped(out, skipped, path)
    return out


def _record_id(rec: Any, i: int, path: Path, keys: tuple[str, ...], kind: str, seen: dict[str, int],
               repeats: dict[str, list[int]] | None = None) -> tuple[str, str]:
    """Check what every record needs (an object with `keys`, a unique string or integer id under
    keys[0]) and return (the id as a string, the 'file: record' label for messages).

    A training record without an id (LLaVA's trainer needs none) is named by its index, "#i".
    With `repeats`, a repeated id is allowed (HiDe-LLaVA's and CoIN's test files repeat some
    question ids, and their scorers keep every answer): the record is named "<id>#<index>" and
    its index is listed under the id in `repeats`."""
    id_key = keys[0]
    listed = f"{', '.join(keys[:-1])} and {keys[-1]}" if kind == "training" else ", ".join(keys)
    if not isinstance(rec, dict):
        raise DataFormatError(
            f"{path}: {_record_label(i)} must be a JSON object with keys {listed}, but it is "
            f"{_json_type(rec)}. Fix or remove the record."
        )
    unnamed = kind == "training" and id_key not in rec
    rid = rec.get(id_key)
    where = f"{path}: {_record_label(i, rid)}"
    missing = [k for k in keys if k not in rec and not (unnamed and k == id_key)]
    if missing:
        raise DataFormatError(
            f"{where} is missing the key(s) {', '.join(map(repr, missing))} (it has "
            f"{', '.join(map(repr, rec)) or 'no keys'}). Every {kind} record needs {listed}; fix or "
            f"remove the record."
        )
    if unnamed:
        return _new_name(f"#{i}", i, seen), where
    if not _is_id(rid):
        raise DataFormatError(
            f"{where}: {id_key!r} must be a string or an integer, got {_json_type(rid)}. "
            f"Give the record a unique string or integer {id_key}."
        )
    rid = str(rid)
    if rid in seen and repeats is not None:
        repeats.setdefault(rid, [seen[rid]]).append(i)
        return _new_name(f"{rid}#{i}", i, seen), where
    if rid in seen:
        label = "Ids" if id_key == "id" else "Question ids"
        raise DataFormatError(
            f"{where}: duplicate {id_key} {rid!r}, already used by the record at index {seen[rid]}. "
            f"{label} must be unique within a file; renumber or remove the duplicate."
        )
    seen[rid] = i
    return rid, where


def repeated_ids(repeats: dict[str, list[int]], limit: int = 5) -> str:
    """The repeated question ids of a file and where they stand, for messages:
    "'a' at records 0, 3; 'b' at records 1, 2; ... (4 more)"."""
    shown = "; ".join(f"{qid!r} at records {', '.join(map(str, where))}" for qid, where in list(repeats.items())[:limit])
    return shown + (f"; ... ({len(repeats) - limit} more)" if len(repeats) > limit else "")


def _new_name(name: str, i: int, seen: dict[str, int]) -> str:
    """`name`, made unique among the file's ids and names so far (a "#" more while it is taken),
    and taken: no two records share a name, so no answer is lost."""
    while name in seen:
        name += "#"
    seen[name] = i
    return name


TRAIN_KEYS = ("id", "image", "conversations")


def _train_record(rec: Any, i: int, path: Path, datasets_dir: Path, check_images: bool,
                  seen: dict[str, int], text_only: bool = False,
                  repeats: dict[str, list[int]] | None = None) -> TrainRecord:
    keys = tuple(k for k in TRAIN_KEYS if not (k == "image" and text_only))
    rid, where = _record_id(rec, i, path, keys, "training", seen, repeats)
    image = _resolve_image(rec["image"], datasets_dir, check_images, where) if "image" in rec else None
    turns = _parse_conversations(rec["conversations"], where, image=image is not None)
    return TrainRecord(id=rid, image=image, turns=turns)


def _parse_conversations(conv: Any, where: str, image: bool = True) -> list[Turn]:
    fix = (
        "A conversation is a list of {\"from\", \"value\"} turns alternating human/gpt, starting "
        "with human and ending with gpt, with one <image> token in the first human value"
    )
    if not isinstance(conv, list):
        raise DataFormatError(
            f"{where}: 'conversations' must be a list, got {_json_type(conv)}. {fix}; fix or "
            f"remove the record."
        )
    if not conv:
        raise DataFormatError(f"{where}: 'conversations' is empty. {fix}; fix or remove the record.")
    values: list[str] = []
    for j, turn in enumerate(conv):
        if not isinstance(turn, dict):
            raise DataFormatError(
                f"{where}: turn {j} of 'conversations' must be an object with 'from' and 'value', "
                f"got {_json_type(turn)}. {fix}; fix or remove the record."
            )
        missing = [k for k in ("from", "value") if k not in turn]
        if missing:
            raise DataFormatError(
                f"{where}: turn {j} of 'conversations' is missing the key(s) "
                f"{', '.join(map(repr, missing))}. {fix}; fix or remove the record."
            )
        expected = "human" if j % 2 == 0 else "gpt"
        if turn["from"] != expected:
            raise DataFormatError(
                f"{where}: turn {j} of 'conversations' is from {turn['from']!r} but {expected!r} was "
                f"expected (turns must alternate). {fix}; fix or remove the record."
            )
        value = turn["value"]
        if not isinstance(value, str):
            raise DataFormatError(
                f"{where}: the 'value' of turn {j} of 'conversations' must be a string, got "
                f"{_json_type(value)}. {fix}; fix or remove the record."
            )
        n_tokens = value.count(IMAGE_TOKEN)
        if j == 0 and not image and n_tokens:
            raise DataFormatError(
                f"{where}: the record has no 'image' but its first human turn holds {n_tokens} {IMAGE_TOKEN} "
                f"token(s). Give the record its image, or remove the token from a text-only conversation."
            )
        if j == 0 and image and n_tokens != 1:
            raise DataFormatError(
                f"{where}: the first human turn must contain exactly one {IMAGE_TOKEN} token, but it "
                f"contains {n_tokens}. {fix}; fix or remove the record."
            )
        if j > 0 and n_tokens:
            raise DataFormatError(
                f"{where}: turn {j} of 'conversations' contains {n_tokens} {IMAGE_TOKEN} token(s); "
                f"only the first human turn may hold one. {fix}; fix or remove the record."
            )
        values.append(value)
    if len(values) % 2:
        raise DataFormatError(
            f"{where}: 'conversations' ends with a human turn (turn {len(values) - 1}) that has no "
            f"gpt answer. {fix}; fix or remove the record."
        )
    if image:
        values[0] = _strip_image_token(values[0])
    return [Turn(instruction=values[k], answer=values[k + 1]) for k in range(0, len(values), 2)]


def load_test_file(
    path: str | os.PathLike,
    datasets_dir: str | os.PathLike,
    check_images: bool = True,
    *,
    task_name: str | None = None,
    skipped: list[BadRecord] | None = None,
    caption: bool = False,
    repeats: dict[str, list[int]] | None = None,
    text_only: bool = False,
) -> list[TestRecord]:
    """Load and validate a test file (list of {question_id, image, text, answer}).

    A leading `<image>` token (with its newline) is stripped from `text`; any other `<image>` token
    is an error. `task_name` only improves the message of the empty-file error; `skipped` as in
    `load_train_file`. A `caption` task's records need no `answer` (HiDe-LLaVA's caption test
    files have none: the references are a file of their own). With `repeats`, a repeated
    question_id is kept (`_record_id`) and listed there; with `text_only`, a record without an
    image is a text-only question (CoIN's ScienceQA has them).
    """
    return [r for _, r in _indexed_test_records(path, datasets_dir, check_images, task_name, skipped,
                                                caption, repeats, text_only)]


def _indexed_test_records(path, datasets_dir, check_images: bool, task_name: str | None,
                          skipped: list[BadRecord] | None, caption: bool = False,
                          repeats: dict[str, list[int]] | None = None,
                          text_only: bool = False) -> list[tuple[int, TestRecord]]:
    """(index in the file, record) of the good records: caption references match by index."""
    path = Path(path)
    datasets_dir = Path(datasets_dir)
    what = "test file"
    records = _expect_list(_read_json(path, what), path, what, "test records")
    if not records:
        who = f"task {task_name!r}" if task_name else "the task"
        raise DataFormatError(
            f"{who} has no test records in {path} (the file holds an empty list). Use the full "
            f"test file or remove the task from the sequence."
        )
    out: list[tuple[int, TestRecord]] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        try:
            out.append((i, _test_record(rec, i, path, datasets_dir, check_images, seen, caption, repeats,
                                        text_only)))
        except DataFormatError as err:
            _skip_or_raise(err, skipped, path, i, rec, "question_id")
    _check_not_all_skipped(out, skipped, path)
    return out


TEST_KEYS = ("question_id", "image", "text", "answer")


def _test_record(rec: Any, i: int, path: Path, datasets_dir: Path, check_images: bool,
                 seen: dict[str, int], caption: bool = False, repeats: dict[str, list[int]] | None = None,
                 text_only: bool = False) -> TestRecord:
    keys = tuple(k for k in TEST_KEYS if not (k == "answer" and caption) and not (k == "image" and text_only))
    qid, where = _record_id(rec, i, path, keys, "test", seen, repeats)
    for key in ("text", "answer"):
        if key in rec and not isinstance(rec[key], str):
            raise DataFormatError(
                f"{where}: {key!r} must be a string, got {_json_type(rec[key])}. Fix the "
                f"record (write numbers and options as text)."
            )
    text = rec["text"]
    if text.startswith(IMAGE_TOKEN):
        text = text[len(IMAGE_TOKEN):]
        if text.startswith("\n"):
            text = text[1:]
    if IMAGE_TOKEN in text:
        raise DataFormatError(
            f"{where}: 'text' contains an {IMAGE_TOKEN} token other than a leading one. The "
            f"prompt builder adds the image token itself; remove it from the text."
        )
    image = _resolve_image(rec["image"], datasets_dir, check_images, where) if "image" in rec else None
    source = str(rec["question_id"]) if qid != str(rec["question_id"]) else None
    return TestRecord(question_id=qid, image=image, text=text, answer=rec.get("answer", ""), source_id=source)


def load_caption_references(
    path: str | os.PathLike,
    test_records: list[TestRecord],
    *,
    test_file: str | os.PathLike | None = None,
    positions: list[int] | None = None,
    file_count: int | None = None,
    skipped: list[BadRecord] | None = None,
) -> dict[str, list[str]]:
    """Load COCO-format reference captions and key them by the test records' question_id.

    Matching is by position: the image ids, sorted ascending, are matched to `test_records` in
    order, so the counts must agree. `test_file` (where `test_records` came from) only improves
    the messages. When bad test records were left out, `positions` gives each kept record's index
    in its file of `file_count` records, and a record without captions is added to `skipped`.
    """
    path = Path(path)
    what = "caption reference file"
    test_desc = f"the test file {test_file}" if test_file is not None else "the test records"
    data = _read_json(path, what)
    coco_fix = (
        "The file must be COCO caption format: {\"images\": [{\"id\", \"file_name\"}], "
        "\"annotations\": [{\"image_id\", \"caption\"}]}"
    )
    if not isinstance(data, dict):
        raise DataFormatError(
            f"The {what} {path} must hold a JSON object at the top level, but it holds "
            f"{_json_type(data)}. {coco_fix}."
        )
    for key in ("images", "annotations"):
        if key not in data:
            raise DataFormatError(f"The {what} {path} has no {key!r} key. {coco_fix}.")
        if not isinstance(data[key], list):
            raise DataFormatError(
                f"The {what} {path}: {key!r} must be a list, got {_json_type(data[key])}. {coco_fix}."
            )
    captions: dict[int, list[str]] = {}
    for i, img in enumerate(data["images"]):
        where = f"{path}: image entry at index {i}"
        if not isinstance(img, dict) or "id" not in img:
            raise DataFormatError(f"{where} must be an object with an 'id', got {img!r}. {coco_fix}.")
        iid = img["id"]
        if not isinstance(iid, int) or isinstance(iid, bool):
            raise DataFormatError(
                f"{where} (id {iid!r}): 'id' must be an integer, got {_json_type(iid)}. "
                f"Number the images 1..N in test-file order."
            )
        if iid in captions:
            raise DataFormatError(
                f"{where}: duplicate image id {iid}. Image ids must be unique; number the images "
                f"1..N in test-file order."
            )
        captions[iid] = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotation at index {i}"
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise DataFormatError(
                f"{where} must be an object with 'image_id' and 'caption', got {ann!r}. {coco_fix}."
            )
        iid, cap = ann["image_id"], ann["caption"]
        if not isinstance(cap, str):
            raise DataFormatError(
                f"{where} (image_id {iid!r}): 'caption' must be a string, got {_json_type(cap)}. "
                f"Fix or remove the annotation."
            )
        if isinstance(iid, bool) or iid not in captions:
            raise DataFormatError(
                f"{where}: image_id {iid!r} is not the id of any entry in 'images'. Add the image "
                f"or fix/remove the annotation."
            )
        captions[iid].append(cap)
    count = len(test_records) if file_count is None else file_count
    if len(captions) != count:
        raise DataFormatError(
            f"The {what} {path} has {len(captions)} images but {test_desc} has "
            f"{count} records; references are matched to test records by position, so "
            f"the counts must be equal. Use the reference file that belongs to this test file."
        )
    ids = sorted(captions)
    out: dict[str, list[str]] = {}
    for position, rec in zip(positions if positions is not None else range(count), test_records):
        iid = ids[position]
        if not captions[iid]:
            err = DataFormatError(
                f"{path}: image id {iid} (matched to test question_id {rec.question_id!r}) has no "
                f"caption in 'annotations'. Every image needs at least one reference caption; add "
                f"one or use the complete reference file."
            )
            _skip_or_raise(err, skipped, path, position, {"question_id": rec.question_id}, "question_id")
            continue
        out[rec.question_id] = captions[iid]
    # In the file's image order: pycocoevalcap tokenises and scores the images in the order COCO's
    # getImgIds gives them (the annotation file's 'images' list), and its tokenizer reads each
    # line in the context of the next, so the order is part of the score.
    in_file = {iid: i for i, iid in enumerate(captions)}
    matched = {rec.question_id: ids[position] for position, rec in zip(positions if positions is not None
                                                                         else range(count), test_records)}
    return dict(sorted(out.items(), key=lambda item: in_file[matched[item[0]]]))


def _check_limit(name: str, value: int | None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be None or a positive integer, got {value!r}")


ON_BAD_RECORD = ("error", "skip")


def readable_image(path: Path | None, datasets_dir: Path, file: Path, index: int, rid: str,
                   max_image_pixels: int | None, skipped: list[BadRecord] | None) -> bool:
    """Whether a kept record's image opens (a text-only record, `path` None, has none to open); a
    bad one raises, or with a `skipped` list (data.on_bad_record=skip, which also decodes every
    image in full) is listed there and False."""
    if path is None:
        return True
    try:
        _check_image(path, datasets_dir, f"{file}: {_record_label(index, rid)}", max_image_pixels,
                     decode=skipped is not None)
        return True
    except DataFormatError as err:
        _skip_or_raise(err, skipped, file, index, {"id": rid}, "id")
        return False


def load_task(
    data_dir: str | os.PathLike,
    spec: TaskSpec,
    train_limit: int | None = None,
    test_limit: int | None = None,
    check_images: bool = True,
    *,
    on_bad_record: str = "error",
    max_image_pixels: int | None = None,
    skipped: list[BadRecord] | None = None,
    instructions_dir: str | os.PathLike | None = None,
    datasets_dir: str | os.PathLike | None = None,
) -> TaskData:
    """Load one task: files under `<data_dir>/instructions/<spec.dir>/`, images under
    `<data_dir>/datasets/` (another layout gives `instructions_dir` and `datasets_dir`). The limits keep the first K records of each file (deterministic);
    references are checked against the full test file and then restricted to the kept records.
    Every record of both files is validated; with `check_images` the images of the kept records
    must exist and open as images of at most `max_image_pixels` pixels.

    on_bad_record="skip" leaves bad records out (appended to `skipped`) instead of raising, and
    then also decodes each kept image in full, so that a truncated one is found here rather than
    in the middle of training; file-level faults (missing file, malformed JSON, a wrong reference
    count) still raise."""
    if on_bad_record not in ON_BAD_RECORD:
        raise ConfigError(f"data.on_bad_record={on_bad_record!r}; choose one of {ON_BAD_RECORD}")
    _check_limit("train_limit", train_limit)
    _check_limit("test_limit", test_limit)
    skip = on_bad_record == "skip"
    bad: list[BadRecord] | None = [] if skip else None
    data_dir = Path(data_dir)
    folder = task_folder(instructions_dir or data_dir / "instructions", spec)
    datasets_dir = Path(datasets_dir or data_dir / "datasets")
    test_path = folder / spec.test_file
    train_path = folder / spec.train_file
    # Every record is validated, but only the images of the kept records are checked (a debug run
    # on a few records works with a partial download, and 40k file opens are skipped).
    train = load_train_file(train_path, datasets_dir, check_images=False, task_name=spec.name, skipped=bad,
                            text_only=spec.text_only)
    repeats: dict[str, list[int]] | None = {} if spec.repeated_ids else None
    indexed = _indexed_test_records(test_path, datasets_dir, False, spec.name, bad, spec.kind == "caption",
                                    repeats, spec.text_only)
    if repeats:
        scored = ("caption references are matched by position, whatever the ids" if spec.kind == "caption" else
                  "each is scored against the last record of its id under scoring=original, as the official "
                  "scorer does, and against its own answer under corrected")
        log.warning("%s: %d question id(s) repeat (%s): every record is answered; %s", test_path, len(repeats),
                    repeated_ids(repeats), scored)
    test = [r for _, r in indexed]
    references = None
    if spec.kind == "caption":
        references = load_caption_references(
            folder / spec.references_file, test, test_file=test_path, positions=[i for i, _ in indexed],
            file_count=len(_read_json(test_path, "test file")) if skip else None, skipped=bad)
        test = [r for r in test if r.question_id in references]
    if train_limit is not None:
        train = train[:train_limit]
    if test_limit is not None:
        test = test[:test_limit]
    if check_images:
        train = [r for i, r in enumerate(train)
                 if readable_image(r.image, datasets_dir, train_path, i, r.id, max_image_pixels, bad)]
        test = [r for i, r in enumerate(test)
                if readable_image(r.image, datasets_dir, test_path, i, r.question_id, max_image_pixels, bad)]
    if references is not None:
        kept = {r.question_id for r in test}
        references = {qid: refs for qid, refs in references.items() if qid in kept}
    if skip:
        for kind, records in (("training", train), ("test", test)):
            if not records:
                raise DataFormatError(
                    f"task {spec.name!r} has no usable {kind} record left: all were left out under "
                    f"data.on_bad_record=skip (first reason: {bad[0].reason if bad else '?'})")
        if skipped is not None:
            skipped.extend(bad)
    return TaskData(name=spec.name, kind=spec.kind, train=train, test=test, references=references, spec=spec)
