"""Writing the benchmark and the pretraining mixture to disk: each sample's own random stream, the completion
marker, the progress bar, `generate_benchmark` and `generate_mixture`."""

from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from hide.cache import build_once
from hide.data.formats import (
    IMAGE_TOKEN,
    write_caption_references,
    write_json_atomic,
    write_test_file,
    write_train_file,
)
from hide.data.synth import mixture
from hide.data.synth.tasks import TASK_NAMES, TASKS
from hide.errors import ConfigError

# Bump when any generated image or text of the six tasks changes, so that stale data is regenerated.
GENERATOR_VERSION = 11
# Bump when anything the pretraining mixture draws or asks changes (its scenes share the tasks' drawing code):
# it is part of the tiny model's cache key, so the base model is rebuilt.
MIXTURE_VERSION = 11
MARKER = ".complete.json"
MIXTURE = "Mixture"  # its folder under datasets/ and instructions/
# the name that keys the mixture's random streams (`sample_rng`): changing it draws other data
MIXTURE_STREAM = "Stage0"

_SPLITS = {"train": 0, "test": 1}


def sample_rng(seed: int, stream: str, split: str, index: int, attempt: int = 0) -> np.random.Generator:
    """Each sample's own stream: a function of (seed, task, split, index), so that subsets and
    shorter runs reproduce exactly the samples they share with longer ones."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode()), _SPLITS[split], int(index), int(attempt)])


def _image_key(img: Image.Image) -> bytes:
    return hashlib.blake2b(img.tobytes(), digest_size=16).digest()


# Test images and pretraining-mixture images are drawn from two halves of the image space, split by
# one bit of the pixels' digest: no test image can equal an image the base model was pretrained on,
# whatever the mixture's size, seed or repeat share, and neither generator needs the other's files.
# (Training images come from the whole space; test images are also kept distinct from them.)
TEST_HALF, MIXTURE_HALF = 1, 0


def image_half(img: Image.Image) -> int:
    """Which half of the image space an image is in (`TEST_HALF` or `MIXTURE_HALF`)."""
    return _image_key(img)[-1] & 1


def _save_png(img: Image.Image, path: Path) -> None:
    img.save(path, format="PNG", compress_level=6)


def _read_marker(root: Path) -> dict:
    try:
        marker = json.loads((root / MARKER).read_text())
        return marker if isinstance(marker, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_marker(root: Path, key: str, params: dict | None) -> None:
    """The marker holds one entry per generator ('benchmark', 'mixture'), so both can share a root."""
    marker = _read_marker(root)
    if params is None:
        if key not in marker:
            return
        marker.pop(key)
    else:
        marker[key] = params
    if marker:
        write_json_atomic(root / MARKER, marker, indent=2)
    else:
        (root / MARKER).unlink(missing_ok=True)


def _is_complete(root: Path, key: str, params: dict) -> bool:
    return _read_marker(root).get(key) == json.loads(json.dumps(params))


class _Progress:
    """A rich progress bar, or nothing."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn())

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def add(self, description: str, total: int):
        return self.bar.add_task(description, total=total) if self.bar else None

    def advance(self, job) -> None:
        if self.bar:
            self.bar.advance(job)


def _clear_task(root: Path, name: str, split: str | None = None) -> None:
    """Remove a task's generated files (only one split's, if `split` is given)."""
    if split is None:
        shutil.rmtree(root / "datasets" / name, ignore_errors=True)
        shutil.rmtree(root / "instructions" / name, ignore_errors=True)
        return
    shutil.rmtree(root / "datasets" / name / split, ignore_errors=True)
    (root / "instructions" / name / f"{split}.json").unlink(missing_ok=True)


def _generate_task(root: Path, task, n_train: int, n_test: int, size: int, seed: int, progress: _Progress,
                   options: dict | None = None) -> None:
    options = options or {}
    name, spec = task.NAME, task.SPEC
    _clear_task(root, name)
    for split in ("train", "test"):
        (root / "datasets" / name / split).mkdir(parents=True, exist_ok=True)
    job = progress.add(name, n_train + n_test)
    seen: set[bytes] = set()
    train, test, file_names, references = [], [], [], []
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            if split == "train":
                img, text, answer, refs, meta = task.sample(sample_rng(seed, name, split, i), size, **options)
                seen.add(_image_key(img))
            else:
                img, text, answer, refs, meta = draw_test_sample(task, seed, i, size, seen, options)
            rel = f"{name}/{split}/{i}.png"
            _save_png(img, root / "datasets" / rel)
            if split == "train":
                train.append({"id": f"{name}_train_{i}", "image": rel, "conversations": [
                    {"from": "human", "value": f"{IMAGE_TOKEN}\n{text}"}, {"from": "gpt", "value": answer}],
                    "meta": meta})
            else:
                test.append({"question_id": f"{name}_test_{i}", "image": rel, "text": text,
                             "answer": refs[0] if refs else answer, "meta": meta})
                if refs:
                    file_names.append(rel)
                    references.append(refs)
            progress.advance(job)
    folder = root / "instructions" / name
    write_train_file(folder / spec["train_file"], train)
    write_test_file(folder / spec["test_file"], test)
    if spec["references_file"]:
        write_caption_references(folder / spec["references_file"], file_names, references)


def draw_test_sample(task, seed: int, index: int, size: int, train_keys: set[bytes] = frozenset(),
                     options: dict | None = None):
    """Test sample `index` of a task: drawn again (the next attempt's stream) until its image is in
    the test half of the image space and none of the task's training images (`train_keys`)."""
    attempt = 0
    while True:
        sample = task.sample(sample_rng(seed, task.NAME, "test", index, attempt), size, **(options or {}))
        key = _image_key(sample[0])
        if key not in train_keys and key[-1] & 1 == TEST_HALF:
            return sample
        attempt += 1


def draw_mixture_sample(seed: int, split: str, index: int, size: int, repeat_share: float = 0.0):
    """Mixture conversation `index` (`mixture.sample`): drawn again until its image is in the
    mixture's half of the image space."""
    attempt = 0
    while True:
        sample = mixture.sample(sample_rng(seed, MIXTURE_STREAM, split, index, attempt), size, repeat_share)
        if image_half(sample[0]) == MIXTURE_HALF:
            return sample
        attempt += 1


def _check_count(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def generate_benchmark(root, train_per_task: int = 600, test_per_task: int = 200, image_size: int = 64,
                       seed: int = 0, tasks: list[str] | None = None, progress: bool = True,
                       train_sizes: dict[str, int] | None = None, task_options: dict[str, dict] | None = None) -> Path:
    """Write the six-task synthetic benchmark (or the named subset, kept in benchmark order) in
    the UCIT layout under `root`, and return `root`.

    `task_options`: keyword arguments of a task's `sample` by task name (ObjectCaption's
    `references` and `color_share`); they are part of the marker, so other options regenerate.

    Idempotent: a marker `root/.complete.json` records the parameters, written last; when it holds
    the same parameters nothing is done, otherwise the requested tasks are regenerated from scratch.
    """
    _check_count("train_per_task", train_per_task)
    _check_count("test_per_task", test_per_task)
    _check_count("image_size", image_size, 8)
    _check_count("seed", seed, 0)
    names = TASK_NAMES if tasks is None else list(tasks)
    unknown = [t for t in names if t not in TASK_NAMES]
    if unknown or not names:
        raise ConfigError(f"unknown synthetic task(s) {unknown}; the tasks are {TASK_NAMES}")
    names = [t for t in TASK_NAMES if t in names]
    root = Path(root).expanduser()
    params = {"version": GENERATOR_VERSION, "train_per_task": train_per_task, "test_per_task": test_per_task,
              "image_size": image_size, "seed": int(seed), "tasks": names}
    if train_sizes:  # tasks with a training set of their own size (the others: train_per_task)
        params["train_sizes"] = {name: int(n) for name, n in sorted(train_sizes.items())}
    unknown = sorted(set(task_options or {}) - set(TASK_NAMES))
    if unknown:
        raise ConfigError(f"task options for unknown task(s) {unknown}; the tasks are {TASK_NAMES}")
    if task_options:
        params["task_options"] = {name: dict(sorted(o.items())) for name, o in sorted(task_options.items())}

    def build():
        root.mkdir(parents=True, exist_ok=True)
        _write_marker(root, "benchmark", None)  # an interrupted regeneration is never taken as complete
        with _Progress(progress) as bar:
            for task in TASKS:
                if task.NAME in names:
                    _generate_task(root, task, (train_sizes or {}).get(task.NAME, train_per_task), test_per_task, image_size,
                                   int(seed), bar, (task_options or {}).get(task.NAME))
        _write_marker(root, "benchmark", params)

    build_once(root, lambda: _is_complete(root, "benchmark", params), build)
    return root


def generate_mixture(root, num_samples: int = 6000, image_size: int = 64, seed: int = 0,
                     progress: bool = True, split: str = "train", repeat_share: float = 0.0) -> Path:
    """Write the pretraining mixture, the base model's own instruction data
    (`datasets/Mixture/<split>/<n>.png`, `instructions/Mixture/<split>.json`) under `root`, with the same marker logic as
    `generate_benchmark` (its own entry in `root/.complete.json`), and return `root`.
    `split="test"` draws held-out conversations from their own random streams (for probing
    what the base model learned). `repeat_share`: the share of conversations with a repeat turn
    (`mixture.sample`)."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    _check_count("num_samples", num_samples)
    _check_count("image_size", image_size, 8)
    _check_count("seed", seed, 0)
    root = Path(root).expanduser()
    marker = "mixture" if split == "train" else f"mixture-{split}"
    params = {"version": MIXTURE_VERSION, "num_samples": num_samples, "image_size": image_size,
              "seed": int(seed), "split": split}
    if repeat_share:
        params["repeat_share"] = float(repeat_share)

    def build():
        root.mkdir(parents=True, exist_ok=True)
        _write_marker(root, marker, None)
        _clear_task(root, MIXTURE, split)
        (root / "datasets" / MIXTURE / split).mkdir(parents=True, exist_ok=True)
        records = []
        with _Progress(progress) as bar:
            job = bar.add(MIXTURE, num_samples)
            for i in range(num_samples):
                img, qa, meta = draw_mixture_sample(seed, split, i, image_size, repeat_share)
                rel = f"{MIXTURE}/{split}/{i}.png"
                _save_png(img, root / "datasets" / rel)
                conv = []
                for t, (q, a) in enumerate(qa):
                    conv.append({"from": "human", "value": f"{IMAGE_TOKEN}\n{q}" if t == 0 else q})
                    conv.append({"from": "gpt", "value": a})
                records.append({"id": f"{MIXTURE}_{split}_{i}", "image": rel, "conversations": conv, "meta": meta})
                bar.advance(job)
        write_train_file(root / "instructions" / MIXTURE / f"{split}.json", records)
        _write_marker(root, marker, params)

    build_once(root, lambda: _is_complete(root, marker, params), build)
    return root
