"""A procedurally generated six-task benchmark that mirrors UCIT, small enough for the tiny LLaVA.

Each task is an analog of one UCIT task, in UCIT's order, written in UCIT's on-disk layout
(`datasets/<Task>/{train,test}/<n>.png`, `instructions/<Task>/{train,test}.json` and, for the
caption tasks, `test_coco_refs.json` in COCO format):

| task          | UCIT analog          | kind    | what is asked                                        |
| Renditions    | ImageNet-R           | qa      | which of 10 shapes, drawn in one of 7 renditions     |
| FigureQA      | ArxivQA              | qa (MC) | which bar of a bar chart is the tallest / shortest   |
| ObjectCaption | VizWiz-Caption       | caption | one or two coloured objects on a table               |
| IconQA        | IconQA               | qa      | count icons of one kind (digit) / most frequent (MC) |
| ClevrMath     | CLEVR-Math           | qa      | "Subtract all red cubes. How many objects are left?",|
|               |                      |         | "Add 2 blue spheres. How many objects are there?"    |
| SceneCaption  | Flickr30k (brief)    | caption | an outdoor scene: sky, trees, house, person, water   |

The answer formats are shared the way UCIT shares them (letters for FigureQA and IconQA's
multiple choice, digits for IconQA's counting and ClevrMath), so that learning one task can
interfere with another. `generate_stage0` writes the base model's own instruction-tuning mixture:
the same visual primitives under different instructions and answer formats (yes/no, "it is red",
number words), never one of the six tasks.

Layouts are patch-friendly for a ViT trained from scratch (64 px images, 8- or 16-px patches): a
4x4 layout grid of cells of image_size/4 px (at 64 px one 16-px patch, or 2x2 8-px patches) holds
the objects. FigureQA's 3-4 bars stand in their own column cells and grow from the bottom edge;
ClevrMath puts each object in its own cell (70-78% of a cell, jitter at most 8% of a cell); IconQA
is always a 4x4 grid over the whole canvas, one icon (75% of a cell) per occupied cell: its
counting images hold one kind of icon (as IconQA's do), its multiple-choice ones three kinds; Renditions
draws one large object (55-85% of the canvas) near the centre, with strokes of at least
image_size/16 so that outlines and dots survive the downsampling. The two caption tasks are free
scenes. Stage 0 uses the same layouts (its multi-shape scenes put shapes in 2x2-cell blocks) and is
weighted towards what the vision tower learns slowly: single shapes ("What shape is this?" is
asked of nearly every one), bar heights and counts. A stage-0 conversation asks up to
STAGE0_TURNS questions about its image; `stage0_cell_labels` and `stage0_counts` give the vision
tower's dense pretraining what each layout cell holds and how many objects of each kind there are.

Images are drawn at 4x resolution with PIL and downsampled with LANCZOS. Everything is a function
of the seed: every sample has its own random stream, derived from (seed, task, split, index), so
that generating a subset of the tasks, or fewer samples, gives the same data for what is generated.
The texts use a closed vocabulary (`vocabulary()`) for the word-level tokenizer of the tiny model;
answers are written as that tokenizer decodes them (punctuation surrounded by spaces).
Every record keeps the scene it was drawn from under an extra key "meta" (the loaders ignore it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import shutil
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from hide.data.formats import (
    IMAGE_TOKEN,
    write_caption_references,
    write_json_atomic,
    write_test_file,
    write_train_file,
)
from hide.errors import ConfigError

# Bump when any generated image or text of the six tasks changes, so that stale data is regenerated.
GENERATOR_VERSION = 4
# Bump when anything stage 0 draws or asks changes (its scenes share the tasks' drawing code):
# it is part of the tiny model's cache key, so the base model is rebuilt.
STAGE0_VERSION = 5
SUPERSAMPLE = 4
MARKER = ".complete.json"
TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")
# The layout grid: GRID x GRID cells of image_size / GRID pixels each.
GRID = 4

# ---------------------------------------------------------------------------------------------
# Texts. Every fixed string and word list that can reach a generated text goes through `_texts`,
# which is what `vocabulary()` tokenizes (placeholders `{name}` removed).
# ---------------------------------------------------------------------------------------------

_REGISTERED: list[str] = []


def _texts(obj):
    """Register every string inside `obj` (str, list, tuple, dict keys and values) for the
    vocabulary and return `obj` unchanged."""
    if isinstance(obj, str):
        _REGISTERED.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _texts(k)
            _texts(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _texts(v)
    return obj


SINGLE_WORD = _texts("\nAnswer the question using a single word or phrase.")
MC_SUFFIX = _texts("\nAnswer with the option's letter from the given choices directly.")
LETTERS = _texts(["A", "B", "C", "D"])
DIGITS = _texts([str(i) for i in range(10)])
NUMBER_WORDS = _texts(["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "blue": (38, 84, 220),
    "green": (34, 150, 56),
    "yellow": (238, 200, 20),
    "orange": (245, 135, 20),
    "purple": (135, 55, 190),
    "pink": (240, 100, 170),
    "brown": (130, 78, 40),
    "gray": (110, 110, 110),
    "black": (25, 25, 25),
}
_texts(list(COLORS))

# Task 1: Renditions
SHAPES = _texts(["circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "heart", "arrow", "moon"])
SHAPE_PLURALS = _texts({s: s + ("es" if s.endswith("ss") else "s") for s in SHAPES})
RENDITIONS = ("solid", "outline", "striped", "dotted", "sketch", "noisy", "twotone")
RENDITION_COLORS = ("red", "blue", "green", "orange", "purple", "pink", "brown", "black")
DARK_COLORS = ("red", "blue", "green", "purple", "black", "brown")  # on textured backgrounds
# Largest rotation (degrees) that keeps each class unambiguous (a square turned 45 degrees is a diamond).
MAX_ROTATION = {"circle": 0, "square": 12, "triangle": 25, "star": 36, "cross": 12, "diamond": 12,
                "hexagon": 30, "heart": 20, "arrow": 180, "moon": 180}
RENDITIONS_Q = _texts("What is the object in the image?") + SINGLE_WORD
RENDITION_SIZE = (0.55, 0.85)  # of the canvas
RENDITION_JITTER = 0.04  # largest offset of the centre, of the canvas

# Task 2: FigureQA
BAR_COLORS = ("red", "blue", "green", "orange", "purple", "pink", "brown", "black")
BAR_QUESTIONS = _texts({"tallest": "Which bar is the tallest?", "shortest": "Which bar is the shortest?"})
_texts(["{L}. {c}", "{question}"])

# Task 3: ObjectCaption
TABLE_OBJECTS = _texts(["cup", "ball", "box", "bottle", "book"])
OBJECT_COLORS = ("red", "blue", "green", "yellow", "purple", "black")
OBJECT_CAPTION_Q = _texts("Generate a caption for the image.")
OBJECT_CAPTIONS_1 = _texts([
    "a {c1} {o1} on a table",
    "there is a {c1} {o1} on the table",
    "a {c1} {o1} sitting on a wooden table",
])
OBJECT_CAPTIONS_2 = _texts([
    "a {c1} {o1} next to a {c2} {o2} on a table",
    "there is a {c1} {o1} and a {c2} {o2} on the table",
    "a {c1} {o1} beside a {c2} {o2}",
])

# Task 4: IconQA. Each icon kind has its own colour, as icons in a worksheet usually do.
ICON_KINDS = _texts(["star", "heart", "circle", "square", "triangle", "moon"])
ICON_PLURALS = _texts({k: k + "s" for k in ICON_KINDS})
ICON_COLORS = {"star": (235, 180, 0), "heart": (220, 35, 60), "circle": (35, 95, 220),
               "square": (30, 150, 60), "triangle": (245, 120, 15), "moon": (130, 55, 190)}
ICON_COUNT_Q = _texts("How many {plural} are there?") + SINGLE_WORD
ICON_MC_Q = _texts("Which icon appears most often?")
ICON_MAX_COUNT = 5  # per kind, in the multiple-choice grids and in stage 0
# Counting questions show one kind of icon, 1..ICON_COUNT_MAX of it (as IconQA's counting images do).
ICON_COUNT_MAX = 6
ICON_MC_KINDS = 3  # kinds in a "most often" grid; the most frequent leads the next by ICON_MC_MARGIN
ICON_MC_MARGIN = 2

# Task 5: ClevrMath
CLEVR_SHAPES = _texts(["cube", "sphere", "cylinder"])
CLEVR_PLURALS = _texts({s: s + "s" for s in CLEVR_SHAPES})
CLEVR_COLORS = ("red", "blue", "green", "yellow", "purple", "gray")
CLEVR_RGB = {"red": (200, 40, 40), "blue": (40, 80, 210), "green": (35, 150, 55),
             "yellow": (230, 195, 30), "purple": (135, 60, 180), "gray": (88, 88, 92)}
CLEVR_Q = _texts("Subtract all {what}. How many objects are left?") + SINGLE_WORD
CLEVR_ADD_Q = _texts("Add {k} {what}. How many objects are there?") + SINGLE_WORD
CLEVR_MAX_ADD = 3
_texts(["objects", "{color} {plural}", "{color} objects"])
CLEVR_MIN_OBJECTS, CLEVR_MAX_OBJECTS = 3, 6
CLEVR_SIZE = (0.70, 0.78)  # of a cell
CLEVR_JITTER = 0.08  # largest offset of an object's centre from its cell's centre, of a cell

# Task 6: SceneCaption
SCENE_Q = _texts("Write a brief caption for the image.")
TIMES = ("day", "night", "sunset")
GROUNDS = ("grass", "water")
TREE_PHRASES = _texts({1: "a tree", 2: "two trees", 3: "three trees"})
HOUSE_COLORS: dict[str, tuple[int, int, int]] = {"red": (200, 75, 60), "white": (240, 240, 240), "yellow": (230, 210, 90),
                                "blue": (80, 120, 200)}
_texts(list(HOUSE_COLORS))
SCENE_WORDS = _texts(["a {color} house", "a person", "a {color} house with {rest}", "a person standing near {trees}",
                      "a person standing", "{a} and {b}", "{a} , {b} and {c}", "there is {s}", "there are {s}"])
TIME_PHRASES = _texts({
    "day": ("on a sunny day", "during the day", "under a blue sky"),
    "night": ("under a night sky", "at night", "under the moon"),
    "sunset": ("at sunset", "in the evening", "under an orange sky"),
})
GROUND_PHRASES = _texts({"grass": ("on the grass", "in a green field"), "water": ("by the water", "near a lake")})

SYNTH_TASKS: list[dict] = [
    {"name": "Renditions", "kind": "qa", "train_file": "train.json", "test_file": "test.json",
     "references_file": None},
    {"name": "FigureQA", "kind": "qa", "train_file": "train.json", "test_file": "test.json",
     "references_file": None},
    {"name": "ObjectCaption", "kind": "caption", "train_file": "train.json", "test_file": "test.json",
     "references_file": "test_coco_refs.json"},
    {"name": "IconQA", "kind": "qa", "train_file": "train.json", "test_file": "test.json",
     "references_file": None},
    {"name": "ClevrMath", "kind": "qa", "train_file": "train.json", "test_file": "test.json",
     "references_file": None},
    {"name": "SceneCaption", "kind": "caption", "train_file": "train.json", "test_file": "test.json",
     "references_file": "test_coco_refs.json"},
]
TASK_NAMES = [t["name"] for t in SYNTH_TASKS]
STAGE0 = "Stage0"

# ---------------------------------------------------------------------------------------------
# Drawing primitives
# ---------------------------------------------------------------------------------------------

RGB = tuple[int, int, int]


def _darker(c: RGB, f: float = 0.55) -> RGB:
    return tuple(int(v * f) for v in c)


def _lighter(c: RGB, f: float = 0.5) -> RGB:
    return tuple(int(v + (255 - v) * f) for v in c)


def _jitter_color(rng, c: RGB, amount: int = 12) -> RGB:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)


def _canvas(size: int, bg: RGB | Image.Image):
    S = size * SUPERSAMPLE
    img = bg if isinstance(bg, Image.Image) else Image.new("RGB", (S, S), bg)
    return img, ImageDraw.Draw(img), S


def _finish(img: Image.Image, size: int) -> Image.Image:
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _vertical_gradient(S: int, top: RGB, bottom: RGB) -> Image.Image:
    t = np.linspace(0.0, 1.0, S, dtype=np.float32)[:, None]
    col = (np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(col[:, None, :], (S, S, 3))), "RGB")


def _normalize(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    p = p - (p.min(0) + p.max(0)) / 2
    return p / np.abs(p).max()


def _ring(n: int, r: float = 1.0, start_deg: float = -90.0) -> np.ndarray:
    t = np.deg2rad(start_deg) + np.arange(n) * 2 * np.pi / n
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


@functools.lru_cache(maxsize=None)
def _unit_shape(name: str) -> np.ndarray:
    """The outline of a shape as a polygon centred on its bounding box, extent [-1, 1], y down."""
    if name == "circle":
        p = _ring(72)
    elif name == "square":
        p = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif name == "triangle":
        p = _ring(3)
    elif name == "star":
        p = _ring(10) * np.where(np.arange(10) % 2 == 0, 1.0, 0.45)[:, None]
    elif name == "cross":
        a = 0.34
        p = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]
    elif name == "diamond":
        p = [(0, -1), (0.62, 0), (0, 1), (-0.62, 0)]
    elif name == "hexagon":
        p = _ring(6, start_deg=0)
    elif name == "heart":
        t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
        p = np.stack([16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], 1)
    elif name == "arrow":
        p = [(-1, -0.22), (0.15, -0.22), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, 0.22), (-1, 0.22)]
    elif name == "moon":  # a crescent: the unit disc minus a disc of radius r shifted by d, opening right
        r, d = 0.82, 0.45
        xi = (d * d + 1 - r * r) / (2 * d)
        yi = math.sqrt(1 - xi * xi)
        t0, f0 = math.atan2(yi, xi), math.atan2(yi, xi - d)
        outer = np.linspace(t0, 2 * np.pi - t0, 40)
        inner = np.linspace(2 * np.pi - f0, f0, 40)
        p = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], 1),
                            np.stack([d + r * np.cos(inner), r * np.sin(inner)], 1)])
    else:
        raise ValueError(f"unknown shape {name!r}")
    p = _normalize(p)
    p.setflags(write=False)
    return p


def _rotated(name: str, angle: float) -> np.ndarray:
    p = _unit_shape(name)
    if angle:
        a = np.deg2rad(angle)
        c, s = math.cos(a), math.sin(a)
        p = p @ np.array([[c, s], [-s, c]])
        p = _normalize(p)
    return p


def _place(p: np.ndarray, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    q = p * r + (cx, cy)
    return [tuple(v) for v in q.tolist()]


def _closed_line(draw: ImageDraw.ImageDraw, pts, color: RGB, width: int) -> None:
    pts = [tuple(v) for v in pts]
    draw.line(pts + pts[:2], fill=color, width=max(1, int(width)), joint="curve")


def _poly_mask(S: int, pts) -> Image.Image:
    mask = Image.new("L", (S, S), 0)
    ImageDraw.Draw(mask).polygon(pts, fill=255)
    return mask


def _resample_closed(pts, step: float) -> np.ndarray:
    """Points at equal arc length along a closed polygon."""
    P = np.asarray(pts + pts[:1], dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(P, axis=0).T))])
    n = max(8, int(round(cum[-1] / step)))
    s = np.arange(n) * cum[-1] / n
    return np.stack([np.interp(s, cum, P[:, 0]), np.interp(s, cum, P[:, 1])], 1)


def _texture(rng, size: int, S: int) -> Image.Image:
    """A light, blotchy, grainy background (the 'noisy' rendition)."""
    lum = rng.integers(165, 240, (4, 4, 1))
    tint = rng.integers(-25, 26, (4, 4, 3))
    low = Image.fromarray(np.clip(lum + tint, 0, 255).astype(np.uint8), "RGB")
    base = np.asarray(low.resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-30, 31, (size, size, 1), dtype=np.int16)
    arr = np.clip(base + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((S, S), Image.Resampling.NEAREST)


def _draw_rendition(img, draw, S, pts, rendition: str, color: RGB, bg: RGB, rng, color2: RGB | None = None,
                    stroke: float | None = None) -> None:
    """Draw the polygon `pts` in one rendition. For 'noisy' the caller has drawn the texture.
    `stroke` (supersampled px; default S/16, 4 px at 64 px) sets the outline width, the stripe
    width and the dots' diameter, thick enough to survive the downsampling."""
    w = S / 16 if stroke is None else stroke
    if rendition == "solid":
        draw.polygon(pts, fill=color)
    elif rendition == "outline":
        _closed_line(draw, pts, color, round(w))
    elif rendition == "striped":
        layer = Image.new("RGB", (S, S), bg)
        ld = ImageDraw.Draw(layer)
        period = 2 * w
        theta = np.deg2rad(rng.choice([0, 45, 90, 135]))
        d = np.array([math.cos(theta), math.sin(theta)])
        n = np.array([-d[1], d[0]])
        for k in range(-int(S / period) - 1, int(S / period) + 2):
            c = np.array([S / 2, S / 2]) + n * k * period
            ld.line([tuple(c - d * S), tuple(c + d * S)], fill=color, width=round(period / 2))
        img.paste(layer, (0, 0), _poly_mask(S, pts))
        _closed_line(draw, pts, color, round(w / 2))
    elif rendition == "dotted":
        rad = 0.5 * w
        for x, y in _resample_closed(pts, 3.4 * rad):
            draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=color)
    elif rendition == "sketch":
        base = _resample_closed(pts, 0.05 * S)
        for _ in range(2):
            noise = rng.normal(0, 0.012 * S, base.shape)
            noise = (noise + np.roll(noise, 1, 0) + np.roll(noise, -1, 0)) / 2
            _closed_line(draw, (base + noise + rng.normal(0, 0.006 * S, 2)).tolist(), color, round(0.7 * w))
    elif rendition == "noisy":
        draw.polygon(pts, fill=color)
        _closed_line(draw, pts, _darker(color), round(w / 2))
    elif rendition == "twotone":
        draw.polygon(pts, fill=color)
        c = np.mean(np.asarray(pts), axis=0)
        theta = rng.uniform(0, 2 * np.pi)
        d = np.array([math.cos(theta), math.sin(theta)]) * 2 * S
        n = np.array([-d[1], d[0]])
        half = Image.new("L", (S, S), 0)
        ImageDraw.Draw(half).polygon([tuple(c - d), tuple(c + d), tuple(c + d + n), tuple(c - d + n)], fill=255)
        img.paste(color2, (0, 0, S, S), ImageChops.multiply(_poly_mask(S, pts), half))
        _closed_line(draw, pts, _darker(color, 0.4), max(2, round(w / 3)))
    else:
        raise ValueError(f"unknown rendition {rendition!r}")


def _light_bg(rng) -> RGB:
    return tuple(int(v) for v in rng.integers(228, 256, 3))


# ---------------------------------------------------------------------------------------------
# Scenes. Each returns (image, meta); meta holds what the texts are computed from.
# ---------------------------------------------------------------------------------------------


def _scene_rendition(rng, size: int) -> tuple[Image.Image, dict]:
    """One object of one of 10 classes in one of 7 renditions, 55-85% of the canvas, centred
    with a small jitter."""
    cls = SHAPES[rng.integers(len(SHAPES))]
    rendition = RENDITIONS[rng.integers(len(RENDITIONS))]
    S = size * SUPERSAMPLE
    if rendition == "noisy":
        bg = (235, 235, 235)
        img, draw, S = _canvas(size, _texture(rng, size, S))
        color_name = DARK_COLORS[rng.integers(len(DARK_COLORS))]
    else:
        bg = _light_bg(rng)
        img, draw, S = _canvas(size, bg)
        color_name = RENDITION_COLORS[rng.integers(len(RENDITION_COLORS))]
    color2_name = None
    if rendition == "twotone":
        others = [c for c in RENDITION_COLORS if c != color_name]
        color2_name = others[rng.integers(len(others))]
    max_rot = MAX_ROTATION[cls]
    angle = float(rng.uniform(-max_rot, max_rot)) if max_rot else 0.0
    frac = float(rng.uniform(*RENDITION_SIZE))
    p = _rotated(cls, angle)
    r = frac * S / 2
    cx, cy = S / 2 + rng.uniform(-RENDITION_JITTER, RENDITION_JITTER, 2) * S
    pts = _place(p, cx, cy, r)
    _draw_rendition(img, draw, S, pts, rendition, COLORS[color_name], bg, rng,
                    COLORS[color2_name] if color2_name else None)
    meta = {"class": cls, "rendition": rendition, "color": color_name, "angle": round(angle, 1),
            "size": round(frac, 3), "x": round(float(cx) / S, 3), "y": round(float(cy) / S, 3)}
    return _finish(img, size), meta


def _bar_heights(rng, n: int, size: int, gap_extreme: float, gap: float) -> list[float]:
    """n distinct bar heights (fractions of the canvas, whole pixels, 12-94% of it); the tallest
    and the shortest differ from the next by at least `gap_extreme`, any two by at least `gap`."""
    lo, hi = math.ceil(0.12 * size), math.floor(0.94 * size)
    g_ext, g = math.ceil(gap_extreme * size - 1e-9), math.ceil(gap * size - 1e-9)
    while True:
        h = rng.integers(lo, hi + 1, n)
        d = np.diff(np.sort(h))
        if d.min() >= g and d[0] >= g_ext and d[-1] >= g_ext:
            return [round(float(v) / size, 4) for v in h]


def _scene_bars(rng, size: int, n: int, gap_extreme: float = 0.125, gap: float = 0.06) -> tuple[Image.Image, dict]:
    """A bar chart on the layout grid: n (<= 4) bars of distinct colours, each centred in its own
    column cell (left to right in the order of `colors`), 60-70% of a cell wide, growing from a
    thin axis line along the bottom edge; a thin left axis in the leftmost pixel column."""
    img, draw, S = _canvas(size, (255, 255, 255))
    idx = rng.permutation(len(BAR_COLORS))[:n]
    colors = [BAR_COLORS[i] for i in idx]
    # The leftmost n columns, so that a bar's option letter is its column: a tiny ViT reads
    # "which column holds the tallest bar" far sooner than "which of the occupied columns".
    columns = list(range(n))
    rng.permutation(GRID)  # keeps the random stream of earlier versions' other draws aligned
    heights = _bar_heights(rng, n, size, gap_extreme, gap)
    cell, px = S / GRID, S / size
    bw = cell * rng.uniform(0.6, 0.7)
    axis_w = min(px, (cell - bw) / 4)
    for col, h, c in zip(columns, heights, colors):
        x0 = (col + 0.5) * cell - bw / 2
        draw.rectangle([round(x0), round(S - h * S), round(x0 + bw) - 1, S - 1], fill=COLORS[c])
    draw.rectangle([0, S - px, S - 1, S - 1], fill=(0, 0, 0))
    draw.rectangle([0, 0.04 * S, round(axis_w) - 1, S - 1], fill=(0, 0, 0))
    return _finish(img, size), {"heights": heights, "colors": colors, "columns": columns,
                                "width": round(bw / cell, 3)}


def _draw_table_object(draw, kind: str, cx: float, base: float, h: float, color: RGB) -> None:
    """Everyday objects from simple shapes; `base` is where the object touches the table."""
    dark, light = _darker(color, 0.6), _lighter(color, 0.45)
    ow = max(1, round(0.04 * h))
    if kind == "cup":
        top = base - 0.62 * h
        draw.ellipse([cx + 0.12 * h, top + 0.1 * h, cx + 0.52 * h, top + 0.48 * h], outline=color, width=round(0.09 * h))
        draw.polygon([(cx - 0.32 * h, top), (cx + 0.32 * h, top), (cx + 0.24 * h, base), (cx - 0.24 * h, base)],
                     fill=color, outline=dark, width=ow)
        draw.ellipse([cx - 0.32 * h, top - 0.07 * h, cx + 0.32 * h, top + 0.07 * h], fill=dark)
    elif kind == "ball":
        r = 0.33 * h
        cy = base - r
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color, outline=dark, width=ow)
        draw.ellipse([cx - 0.55 * r, cy - 0.6 * r, cx - 0.1 * r, cy - 0.15 * r], fill=light)
    elif kind == "box":
        s, d = 0.56 * h, 0.18 * h
        x0, y0 = cx - s / 2 - d / 2, base - s
        draw.rectangle([x0, y0, x0 + s, base], fill=color, outline=dark, width=ow)
        draw.polygon([(x0, y0), (x0 + d, y0 - d), (x0 + s + d, y0 - d), (x0 + s, y0)], fill=light, outline=dark, width=ow)
        draw.polygon([(x0 + s, y0), (x0 + s + d, y0 - d), (x0 + s + d, base - d), (x0 + s, base)], fill=dark)
    elif kind == "bottle":
        bw, nw = 0.17 * h, 0.07 * h
        body_top, neck_top = base - 0.6 * h, base - 0.88 * h
        draw.rectangle([cx - bw, body_top, cx + bw, base], fill=color)
        draw.polygon([(cx - bw, body_top), (cx + bw, body_top), (cx + nw, body_top - 0.14 * h), (cx - nw, body_top - 0.14 * h)], fill=color)
        draw.rectangle([cx - nw, neck_top, cx + nw, body_top - 0.13 * h], fill=color)
        draw.rectangle([cx - nw * 1.2, neck_top - 0.09 * h, cx + nw * 1.2, neck_top], fill=dark)
        draw.rectangle([cx - bw, base - 0.42 * h, cx + bw, base - 0.22 * h], fill=(245, 245, 235))
    elif kind == "book":  # lying flat, seen from a little above: a coloured cover, white page edges
        w, d, th = 0.95 * h, 0.2 * h, 0.24 * h
        x0, x1, y0 = cx - w / 2 - d / 2, cx + w / 2 - d / 2, base - th
        draw.polygon([(x0, y0), (x0 + d, y0 - d), (x1 + d, y0 - d), (x1, y0)], fill=color, outline=dark, width=ow)
        draw.rectangle([x0, y0, x1, base], fill=color)
        draw.rectangle([x0 + 0.07 * h, y0 + 0.05 * h, x1, base - 0.05 * h], fill=(250, 248, 235))
        draw.polygon([(x1, y0), (x1 + d, y0 - d), (x1 + d, base - d), (x1, base)], fill=(225, 222, 205))
        y = (y0 + base) / 2
        draw.line([(x0 + 0.09 * h, y), (x1, y)], fill=(180, 175, 160), width=max(1, round(0.015 * h)))
    else:
        raise ValueError(kind)


def _scene_table(rng, size: int, n_objects: int | None = None) -> tuple[Image.Image, dict]:
    """One or two coloured everyday objects on a brown table in front of a plain wall."""
    wall = _jitter_color(rng, [(235, 225, 205), (222, 222, 228), (208, 222, 236), (218, 232, 212)][rng.integers(4)], 8)
    img, draw, S = _canvas(size, wall)
    table_y = rng.uniform(0.56, 0.64) * S
    wood = _jitter_color(rng, (150, 100, 55), 12)
    draw.rectangle([0, table_y, S, S], fill=wood)
    draw.line([(0, table_y), (S, table_y)], fill=_darker(wood, 0.7), width=max(2, round(0.015 * S)))
    for _ in range(3):
        y = rng.uniform(table_y + 0.05 * S, S)
        draw.line([(rng.uniform(0, 0.3) * S, y), (rng.uniform(0.6, 1) * S, y)], fill=_darker(wood, 0.85),
                  width=max(1, round(0.006 * S)))
    n = n_objects if n_objects is not None else (1 if rng.random() < 0.4 else 2)
    centers = [rng.uniform(0.38, 0.62)] if n == 1 else [rng.uniform(0.22, 0.32), rng.uniform(0.68, 0.78)]
    objects = []
    for cx in centers:
        kind = TABLE_OBJECTS[rng.integers(len(TABLE_OBJECTS))]
        cname = OBJECT_COLORS[rng.integers(len(OBJECT_COLORS))]
        objects.append({"kind": kind, "color": cname})
    if n == 2 and objects[0] == objects[1]:  # two identical objects would not read as a pair of things
        others = [c for c in OBJECT_COLORS if c != objects[0]["color"]]
        objects[1]["color"] = others[rng.integers(len(others))]
    for cx, o in zip(centers, objects):
        h = rng.uniform(0.36, 0.42) * S
        base = table_y + rng.uniform(0.08, 0.16) * S
        _draw_table_object(draw, o["kind"], cx * S, base, h, COLORS[o["color"]])
    return _finish(img, size), {"objects": objects}


def _icon_counts(rng, n_kinds: int, cells: int, min_count: int, unique_max: bool,
                 max_count: int = ICON_MAX_COUNT, margin: int = 1) -> list[int]:
    """Counts per kind in min_count..max_count; with `unique_max`, the largest leads the next by
    at least `margin`."""
    while True:
        counts = rng.integers(min_count, max_count + 1, n_kinds)
        if counts.sum() > cells or counts.sum() == 0:
            continue
        if unique_max and n_kinds > 1 and np.diff(np.sort(counts))[-1] < margin:
            continue
        if unique_max and (counts == counts.max()).sum() != 1:
            continue
        return [int(c) for c in counts]


def _scene_icons(rng, size: int, n_kinds: int = 4, min_count: int = 1, unique_max: bool = True,
                 max_count: int = ICON_MAX_COUNT, margin: int = 1) -> tuple[Image.Image, dict]:
    """The 4x4 layout grid over the whole canvas, one icon (75% of a cell, coloured by kind) in
    each occupied cell, faint cell borders along each cell's top and left pixel; kinds are listed
    in canonical order."""
    img, draw, S = _canvas(size, (255, 255, 255))
    grid = GRID
    chosen = np.sort(rng.permutation(len(ICON_KINDS))[:n_kinds])
    kinds = [ICON_KINDS[i] for i in chosen]
    counts = _icon_counts(rng, n_kinds, grid * grid, min_count, unique_max, max_count, margin)
    cell, px = S / grid, S / size
    for k in range(grid):
        v = round(k * cell)
        draw.rectangle([0, v, S - 1, v + round(px) - 1], fill=(222, 222, 228))
        draw.rectangle([v, 0, v + round(px) - 1, S - 1], fill=(222, 222, 228))
    slots = rng.permutation(grid * grid)
    cells_meta = []
    i = 0
    for kind, count in zip(kinds, counts):
        for _ in range(count):
            row, col = divmod(int(slots[i]), grid)
            i += 1
            cx, cy = (col + 0.5) * cell, (row + 0.5) * cell
            draw.polygon(_place(_unit_shape(kind), cx, cy, 0.375 * cell), fill=ICON_COLORS[kind])
            cells_meta.append([row, col, kind])
    meta = {"grid": grid, "kinds": kinds, "counts": dict(zip(kinds, counts)), "cells": sorted(cells_meta)}
    return _finish(img, size), meta


def _draw_clevr_object(draw, shape: str, x: float, y: float, d: float, color: RGB) -> None:
    dark = _darker(color, 0.6)
    ow = max(1, round(0.05 * d))
    if shape == "cube":
        draw.rectangle([x - d / 2, y - d / 2, x + d / 2, y + d / 2], fill=color, outline=dark, width=ow)
    elif shape == "sphere":  # shaded: concentric discs towards an upper-left highlight
        r = d / 2
        steps = 6
        for k in range(steps):
            f = k / steps
            rr = r * (1 - 0.8 * f)
            ox, oy = x - 0.3 * r * f, y - 0.3 * r * f
            c = tuple(int(v * (0.7 + 0.3 * f) + (255 - v) * 0.45 * f * f) for v in color)
            draw.ellipse([ox - rr, oy - rr, ox + rr, oy + rr], fill=c)
    elif shape == "cylinder":
        w, eh = 0.4 * d, 0.13 * d
        top, bottom = y - d / 2 + eh, y + d / 2 - eh
        draw.ellipse([x - w, bottom - eh, x + w, bottom + eh], fill=dark)
        draw.rectangle([x - w, top, x + w, bottom], fill=color)
        draw.ellipse([x - w, top - eh, x + w, top + eh], fill=_lighter(color, 0.45), outline=dark, width=ow)
    else:
        raise ValueError(shape)


def _scene_clevr(rng, size: int) -> tuple[Image.Image, dict]:
    """3-6 cubes, spheres and cylinders on a gray gradient floor, each in its own cell of the
    layout grid (70-78% of a cell, its centre at most 8% of a cell off the cell's centre, so it
    stays inside its cell)."""
    shift = int(rng.integers(-12, 13))
    floor = _vertical_gradient(size * SUPERSAMPLE, (150 + shift,) * 3, (212 + shift,) * 3)
    img, draw, S = _canvas(size, floor)
    n = int(rng.integers(CLEVR_MIN_OBJECTS, CLEVR_MAX_OBJECTS + 1))
    cell = S / GRID
    objects = []
    for c in rng.permutation(GRID * GRID)[:n]:
        row, col = divmod(int(c), GRID)
        d = rng.uniform(*CLEVR_SIZE) * cell
        x, y = (np.array([col, row]) + 0.5 + rng.uniform(-CLEVR_JITTER, CLEVR_JITTER, 2)) * cell
        shape = CLEVR_SHAPES[rng.integers(len(CLEVR_SHAPES))]
        color = CLEVR_COLORS[rng.integers(len(CLEVR_COLORS))]
        objects.append({"shape": shape, "color": color, "x": round(float(x) / S, 4), "y": round(float(y) / S, 4),
                        "size": round(float(d) / S, 4), "cell": [row, col]})
    for o in objects:
        _draw_clevr_object(draw, o["shape"], o["x"] * S, o["y"] * S, o["size"] * S, CLEVR_RGB[o["color"]])
    return _finish(img, size), {"objects": objects}


def _draw_tree(draw, cx, base, S, night: bool):
    th = 0.3 * S
    trunk = (95, 60, 35) if not night else (55, 38, 25)
    leaves = (35, 125, 45) if not night else (20, 75, 35)
    draw.rectangle([cx - 0.022 * S, base - 0.5 * th, cx + 0.022 * S, base], fill=trunk)
    r = 0.3 * th
    draw.ellipse([cx - r * 1.1, base - 0.72 * th - r, cx + r * 1.1, base - 0.72 * th + r], fill=leaves)


def _draw_house(draw, cx, base, S, wall: RGB, night: bool):
    hw, bh, rh = 0.12 * S, 0.16 * S, 0.11 * S
    draw.rectangle([cx - hw, base - bh, cx + hw, base], fill=wall)
    draw.polygon([(cx - hw - 0.025 * S, base - bh), (cx + hw + 0.025 * S, base - bh), (cx, base - bh - rh)],
                 fill=(120, 45, 35))
    draw.rectangle([cx - 0.03 * S, base - 0.09 * S, cx + 0.03 * S, base], fill=(80, 50, 30))
    win = (250, 225, 110) if night else (170, 210, 240)
    draw.rectangle([cx + 0.05 * S, base - 0.12 * S, cx + 0.1 * S, base - 0.07 * S], fill=win)


def _draw_person(draw, cx, base, S, night: bool):
    color = (240, 240, 240) if night else (25, 25, 25)
    w = max(2, round(0.018 * S))
    ph = 0.22 * S
    hip, neck = base - 0.45 * ph, base - 0.8 * ph
    r = 0.1 * ph
    draw.ellipse([cx - r, neck - 2 * r, cx + r, neck], fill=color)
    draw.line([(cx, neck), (cx, hip)], fill=color, width=w)
    draw.line([(cx - 0.22 * ph, neck + 0.2 * ph), (cx, neck + 0.08 * ph), (cx + 0.22 * ph, neck + 0.2 * ph)], fill=color, width=w)
    draw.line([(cx - 0.17 * ph, base), (cx, hip), (cx + 0.17 * ph, base)], fill=color, width=w)


def _scene_outdoor(rng, size: int) -> tuple[Image.Image, dict]:
    """Sky (day / night / sunset) with the sun or the moon, 0-3 trees, maybe a house and a
    person, on grass or on a shore in front of water."""
    time = TIMES[rng.integers(3)]
    ground = GROUNDS[rng.integers(2)]
    while True:
        n_trees = int(rng.integers(0, 4))
        house = bool(rng.random() < 0.5)
        person = bool(rng.random() < 0.5)
        if n_trees or house or person:
            break
    S = size * SUPERSAMPLE
    night = time == "night"
    sky = {"day": ((95, 160, 235), (175, 215, 245)), "night": ((10, 14, 45), (35, 45, 95)),
           "sunset": ((225, 95, 70), (252, 190, 95))}[time]
    img, draw, S = _canvas(size, _vertical_gradient(S, *sky))
    horizon = rng.uniform(0.62, 0.7) * S
    if time == "day":
        r, x, y = 0.075 * S, rng.uniform(0.12, 0.88) * S, rng.uniform(0.1, 0.25) * S
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 222, 40))
    elif time == "sunset":
        r, x = 0.11 * S, rng.uniform(0.15, 0.85) * S
        y = horizon - 0.04 * S
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 238, 160))
    else:
        for _ in range(int(rng.integers(4, 9))):
            x, y, rs = rng.uniform(0, S), rng.uniform(0, horizon * 0.7), 0.008 * S
            draw.ellipse([x - rs, y - rs, x + rs, y + rs], fill=(230, 230, 250))
        x, y = rng.uniform(0.15, 0.85) * S, rng.uniform(0.1, 0.22) * S
        draw.polygon(_place(_rotated("moon", float(rng.uniform(-40, 40))), x, y, 0.08 * S), fill=(240, 240, 205))
    grass = {"day": (85, 165, 70), "sunset": (95, 135, 60), "night": (30, 70, 38)}[time]
    draw.rectangle([0, horizon, S, S], fill=grass)
    if ground == "water":
        shore = horizon + 0.1 * S
        water = {"day": (45, 115, 205), "sunset": (75, 90, 170), "night": (22, 40, 100)}[time]
        draw.rectangle([0, shore, S, S], fill=water)
        for _ in range(6):
            x, y = rng.uniform(0, S), rng.uniform(shore + 0.04 * S, S - 0.02 * S)
            draw.line([(x - 0.06 * S, y), (x + 0.06 * S, y)], fill=_lighter(water, 0.35), width=max(1, round(0.012 * S)))
        base_range = (horizon + 0.05 * S, horizon + 0.08 * S)
    else:
        for _ in range(8):
            x, y = rng.uniform(0, S), rng.uniform(horizon + 0.05 * S, S)
            draw.line([(x, y), (x + 0.01 * S, y - 0.03 * S)], fill=_darker(grass, 0.75), width=max(1, round(0.01 * S)))
        base_range = (horizon + 0.05 * S, horizon + 0.14 * S)
    # items along the ground, left to right in a random order, with random gaps
    items = ["tree"] * n_trees + (["house"] if house else []) + (["person"] if person else [])
    items = [items[i] for i in rng.permutation(len(items))]
    widths = {"tree": 0.19, "house": 0.3, "person": 0.12}
    free = 0.94 - sum(widths[i] for i in items)
    gaps = rng.dirichlet(np.ones(len(items) + 1)) * free
    x = 0.03
    placed = []
    for item, g in zip(items, gaps):
        x += g
        placed.append((item, (x + widths[item] / 2) * S, rng.uniform(*base_range)))
        x += widths[item]
    house_color = list(HOUSE_COLORS)[rng.integers(len(HOUSE_COLORS))]
    wall = _jitter_color(rng, HOUSE_COLORS[house_color], 10)
    order = {"house": 0, "tree": 1, "person": 2}
    for item, cx, base in sorted(placed, key=lambda t: order[t[0]]):
        if item == "tree":
            _draw_tree(draw, cx, base, S, night)
        elif item == "house":
            _draw_house(draw, cx, base, S, wall, night)
        else:
            _draw_person(draw, cx, base, S, night)
    meta = {"time": time, "ground": ground, "trees": n_trees, "house": house, "person": person,
            "house_color": house_color if house else None,
            "layout": [it for it, _, _ in placed]}
    return _finish(img, size), meta


# ---------------------------------------------------------------------------------------------
# The six tasks: scene -> (image, instruction, answer, references, meta)
# ---------------------------------------------------------------------------------------------


def _options(names: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {n}" for i, n in enumerate(names))


def _sample_renditions(rng, size):
    img, meta = _scene_rendition(rng, size)
    return img, RENDITIONS_Q, meta["class"], None, meta


def _sample_figureqa(rng, size):
    n = 3 if rng.random() < 0.5 else 4
    img, meta = _scene_bars(rng, size, n, gap_extreme=0.25)
    which = "tallest" if rng.random() < 0.5 else "shortest"
    h = meta["heights"]
    pos = int(np.argmax(h) if which == "tallest" else np.argmin(h))
    text = f"{BAR_QUESTIONS[which]}\n{_options(meta['colors'])}{MC_SUFFIX}"
    meta["question"] = which
    return img, text, LETTERS[pos], None, meta


def _object_captions(objects: list[dict]) -> list[str]:
    fill = {"c1": objects[0]["color"], "o1": objects[0]["kind"]}
    if len(objects) == 1:
        return [t.format(**fill) for t in OBJECT_CAPTIONS_1]
    fill.update(c2=objects[1]["color"], o2=objects[1]["kind"])
    return [t.format(**fill) for t in OBJECT_CAPTIONS_2]


def _sample_object_caption(rng, size):
    img, meta = _scene_table(rng, size)
    refs = _object_captions(meta["objects"])
    return img, OBJECT_CAPTION_Q, refs[rng.integers(len(refs))], refs, meta


def _sample_iconqa(rng, size):
    """Half counting (one kind of icon, 1..ICON_COUNT_MAX of it: "How many stars are there?"),
    half multiple choice ("Which icon appears most often?" over a grid of ICON_MC_KINDS kinds)."""
    if rng.random() < 0.5:
        img, meta = _scene_icons(rng, size, n_kinds=1, max_count=ICON_COUNT_MAX)
        kind = meta["kinds"][0]
        meta["question"] = {"type": "count", "kind": kind}
        return img, ICON_COUNT_Q.format(plural=ICON_PLURALS[kind]), str(meta["counts"][kind]), None, meta
    img, meta = _scene_icons(rng, size, n_kinds=ICON_MC_KINDS, margin=ICON_MC_MARGIN)
    kinds, counts = meta["kinds"], meta["counts"]
    best = max(kinds, key=lambda k: counts[k])
    meta["question"] = {"type": "most"}
    text = f"{ICON_MC_Q}\n{_options(kinds)}{MC_SUFFIX}"
    return img, text, LETTERS[kinds.index(best)], None, meta


def clevr_matches(obj: dict, subtract: dict) -> bool:
    """Whether an object of a ClevrMath scene belongs to the subtracted set {color, shape} (None: any)."""
    return all(subtract[k] is None or obj[k] == subtract[k] for k in ("color", "shape"))


def _clevr_phrase(subject: dict, count: int = 2) -> str:
    """"red cubes", "cubes", "red objects" (singular for a count of 1: "red cube")."""
    noun = subject["shape"] or "object"
    noun = noun if count == 1 else CLEVR_PLURALS.get(noun, noun + "s")
    return f"{subject['color']} {noun}" if subject["color"] else noun


def _sample_clevr(rng, size):
    """CLEVR-Math's two kinds of question. Subtraction: "Subtract all red cubes. How many objects
    are left?", where the named set is one object of the scene (picked out by its colour, its
    shape, or both, whichever is unique in the scene). Addition: "Add 2 blue spheres. How many
    objects are there?" (1..CLEVR_MAX_ADD objects of any kind)."""
    img, meta = _scene_clevr(rng, size)
    objs = meta["objects"]
    n = len(objs)
    if rng.random() < 0.5:
        k = int(rng.integers(1, CLEVR_MAX_ADD + 1))
        subject = {"color": None, "shape": None}
        u = rng.random()
        if u < 0.5:
            subject["color"] = CLEVR_COLORS[rng.integers(len(CLEVR_COLORS))]
        if u >= 0.25:
            subject["shape"] = CLEVR_SHAPES[rng.integers(len(CLEVR_SHAPES))]
        meta["add"] = {**subject, "count": k}
        return img, CLEVR_ADD_Q.format(k=k, what=_clevr_phrase(subject, k)), str(n + k), None, meta
    keys = [("color",), ("shape",), ("color", "shape")]
    subject = None
    for i in rng.permutation(n):  # the first object (in random order) that some description singles out
        target = objs[int(i)]
        unique = [ks for ks in keys if sum(all(o[x] == target[x] for x in ks) for o in objs) == 1]
        if unique:
            chosen = unique[rng.integers(len(unique))]
            subject = {"color": None, "shape": None, **{x: target[x] for x in chosen}}
            break
    if subject is None:  # every object has a twin: subtract one pair
        subject = {"color": objs[0]["color"], "shape": objs[0]["shape"]}
    meta["subtract"] = subject
    removed = sum(clevr_matches(o, subject) for o in objs)
    return img, CLEVR_Q.format(what=_clevr_phrase(subject)), str(n - removed), None, meta


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return f"{items[0]} , {items[1]} and {items[2]}"


def _scene_captions(meta: dict) -> list[str]:
    trees = TREE_PHRASES.get(meta["trees"])
    if meta["house"]:
        rest = [p for p in (trees, "a person" if meta["person"] else None) if p]
        house = f"a {meta['house_color']} house"
        subj_a = f"{house} with {_join(rest)}" if rest else house
    elif meta["person"]:
        subj_a = f"a person standing near {trees}" if trees else "a person standing"
    else:
        subj_a = trees
    house = f"a {meta['house_color']} house" if meta["house"] else None
    items = [p for p in (house, trees, "a person" if meta["person"] else None) if p]
    subj_b = _join(items)
    verb = "there is" if items[0].startswith("a ") else "there are"
    t, g = TIME_PHRASES[meta["time"]], GROUND_PHRASES[meta["ground"]]
    return [f"{subj_a} {t[0]}", f"{subj_b} {g[0]} {t[1]}", f"{verb} {subj_b} {g[1]} {t[2]}"]


def _sample_scene_caption(rng, size):
    img, meta = _scene_outdoor(rng, size)
    refs = _scene_captions(meta)
    return img, SCENE_Q, refs[rng.integers(len(refs))], refs, meta


_TASK_SAMPLERS: dict[str, Callable] = {
    "Renditions": _sample_renditions,
    "FigureQA": _sample_figureqa,
    "ObjectCaption": _sample_object_caption,
    "IconQA": _sample_iconqa,
    "ClevrMath": _sample_clevr,
    "SceneCaption": _sample_scene_caption,
}

# ---------------------------------------------------------------------------------------------
# Stage 0: the base model's own instruction tuning (same primitives, other questions and formats)
# ---------------------------------------------------------------------------------------------

# (Keys are names, not text: only the values are registered for the vocabulary.)
S0 = {
    "shape_there": "Is there {art} {shape} in the picture?",
    "largest_color": "What color is the largest shape?",
    "name_lr": "Name the shapes from left to right.",
    "n_shapes": "How many shapes are there?",
    "what_shape": "What shape is this?",
    "is_shape": "Is the shape {art} {shape}?",
    "shape_color": "What color is the shape?",
    "how_drawn": "How is the shape drawn?",
    "count": "Count the {plural}.",
    "icon_there": "Is there {art} {kind} in the grid?",
    "more_icons": "Are there more {a} or {b}?",
    "higher": "Which bar is higher, the left one or the right one?",
    "highest": "Which bar is the highest?",
    "lowest": "Which bar is the lowest?",
    "tallest_color": "What color is the tallest bar?",
    "shortest_color": "What color is the shortest bar?",
    "n_bars": "How many bars are there?",
    "bar_colors": "List the bar colors from left to right.",
    "describe": "Describe the objects.",
    "on_table": "What is on the table?",
    "obj_there": "Is there {art} {kind} on the table?",
    "obj_color": "What color is the {kind}?",
    "n_objects_table": "How many objects are on the table?",
    "day_night": "Is it day or night?",
    "time_of_day": "What time of day is it?",
    "house_there": "Is there a house?",
    "person_there": "Is there a person?",
    "water_there": "Is there water in the picture?",
    "clevr_there": "Is there {art} {color} {shape}?",
    "clevr_shape_of": "What shape is the {color} object?",
    "n_objects": "How many objects are there?",
    "how_many_color": "How many {color} objects are there?",
}
S0_ANSWERS = {
    "yes": "yes", "no": "no", "it_is": "it is {x}", "this_is": "this is {art} {x}",
    "count0": "there are no {plural}", "count1": "there is one {sing}", "countn": "there are {num} {plural}",
    "left": "the left one", "right": "the right one", "nth_bar": "the {ordinal} bar from the left",
    "more": "there are more {plural}",
    "tallest": "the tallest bar is {color}", "shortest": "the shortest bar is {color}",
    "the_is": "the {kind} is {color}", "and": "{a} and {b}", "list": "{items}", "sep": " , ",
    "a_obj": "a {color} {kind}", "daytime": "it is daytime", "night": "it is night", "day": "it is day",
    "sunset": "it is sunset",
}
ORDINALS = _texts(["first", "second", "third", "fourth"])
# Bare number words (stage 0's "How many red objects are there?"), "zero" for none.
COUNT_WORDS = _texts(["zero"]) + NUMBER_WORDS[1:]
RENDITION_PHRASES = {
    "solid": "it is filled with one color", "outline": "only its outline is drawn",
    "striped": "it is filled with stripes", "dotted": "its outline is drawn with dots",
    "sketch": "it is a rough sketch", "noisy": "it is on a noisy background", "twotone": "it has two colors",
}
_texts([list(S0.values()), list(S0_ANSWERS.values()), list(RENDITION_PHRASES.values())])
_texts(["shape", "shapes", "bar", "bars", "object", "objects", "tree", "trees", "a", "an", "{color} object",
        "{color} objects"])


def _art(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _count_answer(n: int, sing: str, plural: str) -> str:
    if n == 0:
        return S0_ANSWERS["count0"].format(plural=plural)
    if n == 1:
        return S0_ANSWERS["count1"].format(sing=sing)
    return S0_ANSWERS["countn"].format(num=NUMBER_WORDS[n], plural=plural)


def _yes_no(flag: bool) -> str:
    return S0_ANSWERS["yes"] if flag else S0_ANSWERS["no"]


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _scene_shape_blocks(rng, size: int) -> tuple[Image.Image, dict]:
    """2-4 shapes of distinct classes and colours, each in its own block of 2x2 layout cells:
    two side by side (each block at its own height), or three or four in the quadrants. The
    largest one (by area) is at least 1.6 times the area of the next; shapes under 70% of their
    block are never dotted. Listed left to right (then top to bottom)."""
    u = rng.random()
    k = 2 if u < 0.5 else 3 if u < 0.75 else 4
    if k == 2:
        blocks = [(int(rng.integers(0, GRID - 1)), 0), (int(rng.integers(0, GRID - 1)), 2)]
    else:
        quads = sorted(int(q) for q in rng.permutation(4)[:k])
        blocks = sorted(((q // 2) * 2, (q % 2) * 2) for q in quads)
        blocks.sort(key=lambda b: (b[1], b[0]))
    classes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:k]]
    colors = [RENDITION_COLORS[i] for i in rng.permutation(len(RENDITION_COLORS))[:k]]
    angles = [float(rng.uniform(-MAX_ROTATION[c], MAX_ROTATION[c])) if MAX_ROTATION[c] else 0.0 for c in classes]
    polys = [_rotated(c, a) for c, a in zip(classes, angles)]
    while True:
        fracs = rng.uniform(0.5, 0.95, k)
        areas = sorted((_polygon_area(p) * f * f for p, f in zip(polys, fracs)), reverse=True)
        if areas[0] >= 1.6 * areas[1]:
            break
    noisy = rng.random() < 0.15
    S = size * SUPERSAMPLE
    bg = (235, 235, 235) if noisy else _light_bg(rng)
    img, draw, S = _canvas(size, _texture(rng, size, S) if noisy else bg)
    plain = [r for r in RENDITIONS if r != "noisy"]
    cell = S / GRID
    shapes = []
    for i, (row, col) in enumerate(blocks):
        usable = plain if fracs[i] >= 0.7 else [x for x in plain if x != "dotted"]  # dots need room
        rendition = "noisy" if noisy else usable[rng.integers(len(usable))]
        r = cell * fracs[i]
        cx, cy = (np.array([col, row]) + 1 + rng.uniform(-0.05, 0.05, 2) * (1 - fracs[i])) * cell
        pts = _place(polys[i], cx, cy, r)
        others = [c for c in RENDITION_COLORS if c != colors[i]]
        color2 = others[rng.integers(len(others))]
        _draw_rendition(img, draw, S, pts, rendition, COLORS[colors[i]], bg, rng, COLORS[color2],
                        stroke=max(0.75 * S / 16, 0.25 * r))
        shapes.append({"class": classes[i], "color": colors[i], "rendition": rendition,
                       "area": round(_polygon_area(polys[i]) * float(fracs[i]) ** 2, 4), "block": [row, col]})
    return _finish(img, size), {"layout": "blocks", "shapes": shapes}


def _s0_shapes(rng, size):
    """Two thirds single objects drawn exactly as Renditions draws them (its classes, renditions
    and code), asked mostly "What shape is this?"; one third 2-4 shapes in 2x2-cell blocks."""
    if rng.random() < 2 / 3:
        img, meta = _scene_rendition(rng, size)
        meta = {"layout": "single", **meta}
        cls = meta["class"]
        ask = cls if rng.random() < 0.5 else [c for c in SHAPES if c != cls][rng.integers(len(SHAPES) - 1)]
        qa = [("what_shape", S0["what_shape"], S0_ANSWERS["this_is"].format(art=_art(cls), x=cls), 6.0),
              ("is_shape", S0["is_shape"].format(art=_art(ask), shape=ask), _yes_no(ask == cls), 2.0),
              ("shape_color", S0["shape_color"], S0_ANSWERS["it_is"].format(x=meta["color"]), 1.0),
              ("how_drawn", S0["how_drawn"], RENDITION_PHRASES[meta["rendition"]], 1.0)]
        return img, qa, meta
    img, meta = _scene_shape_blocks(rng, size)
    shapes = meta["shapes"]
    classes = [s["class"] for s in shapes]
    ask = classes[rng.integers(len(classes))] if rng.random() < 0.5 else \
        [c for c in SHAPES if c not in classes][rng.integers(len(SHAPES) - len(classes))]
    largest = max(shapes, key=lambda s: s["area"])
    qa = [("shape_there", S0["shape_there"].format(art=_art(ask), shape=ask), _yes_no(ask in classes), 1.0),
          ("n_shapes", S0["n_shapes"], _count_answer(len(shapes), "shape", "shapes"), 1.0),
          ("largest_color", S0["largest_color"], S0_ANSWERS["it_is"].format(x=largest["color"]), 1.0)]
    if len(shapes) == 2:
        qa.append(("name_lr", S0["name_lr"], S0_ANSWERS["sep"].join(classes), 1.0))
    return img, qa, meta


def _s0_icons(rng, size):
    img, meta = _scene_icons(rng, size, n_kinds=int(rng.integers(1, 5)), min_count=0, unique_max=False)
    counts = meta["counts"]
    kind = ICON_KINDS[rng.integers(len(ICON_KINDS))]
    n = counts.get(kind, 0)
    qa = [("count", S0["count"].format(plural=ICON_PLURALS[kind]), _count_answer(n, kind, ICON_PLURALS[kind]), 1.0),
          ("icon_there", S0["icon_there"].format(art=_art(kind), kind=kind), _yes_no(n > 0), 1.0)]
    pairs = [(a, b) for a in ICON_KINDS for b in ICON_KINDS
             if a != b and counts.get(a, 0) != counts.get(b, 0) and (a in counts or b in counts)]
    if pairs:
        a, b = pairs[rng.integers(len(pairs))]
        more = a if counts.get(a, 0) > counts.get(b, 0) else b
        qa.append(("more_icons", S0["more_icons"].format(a=ICON_PLURALS[a], b=ICON_PLURALS[b]),
                   S0_ANSWERS["more"].format(plural=ICON_PLURALS[more]), 1.0))
    return img, qa, meta


def _s0_bars(rng, size):
    """2-4 bars on the layout grid; two bars 40% of the time, then mostly asked which is higher."""
    u = rng.random()
    n = 2 if u < 0.4 else 3 if u < 0.7 else 4
    img, meta = _scene_bars(rng, size, n, gap_extreme=0.125, gap=0.1)
    h, colors = meta["heights"], meta["colors"]
    hi, lo = int(np.argmax(h)), int(np.argmin(h))
    qa = [("highest", S0["highest"], S0_ANSWERS["nth_bar"].format(ordinal=ORDINALS[hi]), 2.0),
          ("lowest", S0["lowest"], S0_ANSWERS["nth_bar"].format(ordinal=ORDINALS[lo]), 1.0),
          ("tallest_color", S0["tallest_color"], S0_ANSWERS["tallest"].format(color=colors[hi]), 1.0),
          ("shortest_color", S0["shortest_color"], S0_ANSWERS["shortest"].format(color=colors[lo]), 1.0),
          ("n_bars", S0["n_bars"], _count_answer(n, "bar", "bars"), 1.0),
          ("bar_colors", S0["bar_colors"], S0_ANSWERS["sep"].join(colors), 1.0)]
    if n == 2:
        qa.append(("higher", S0["higher"], S0_ANSWERS["left"] if h[0] > h[1] else S0_ANSWERS["right"], 8.0))
    return img, qa, meta


def _s0_table(rng, size):
    img, meta = _scene_table(rng, size)
    objs = meta["objects"]
    described = [S0_ANSWERS["the_is"].format(kind=o["kind"], color=o["color"]) for o in objs]
    listed = [S0_ANSWERS["a_obj"].format(color=o["color"], kind=o["kind"]) for o in objs]
    qa = [("describe", S0["describe"],
           S0_ANSWERS["and"].format(a=described[0], b=described[1]) if len(objs) == 2 else described[0], 1.0),
          ("on_table", S0["on_table"],
           S0_ANSWERS["and"].format(a=listed[0], b=listed[1]) if len(objs) == 2 else listed[0], 1.0),
          ("n_objects_table", S0["n_objects_table"], _count_answer(len(objs), "object", "objects"), 1.0)]
    kinds = [o["kind"] for o in objs]
    ask = TABLE_OBJECTS[rng.integers(len(TABLE_OBJECTS))]
    qa.append(("obj_there", S0["obj_there"].format(art=_art(ask), kind=ask), _yes_no(ask in kinds), 1.0))
    unique = [o for o in objs if kinds.count(o["kind"]) == 1]
    if unique:
        o = unique[rng.integers(len(unique))]
        qa.append(("obj_color", S0["obj_color"].format(kind=o["kind"]), S0_ANSWERS["it_is"].format(x=o["color"]), 1.0))
    return img, qa, meta


def _s0_outdoor(rng, size):
    img, meta = _scene_outdoor(rng, size)
    time = meta["time"]
    qa = [("time_of_day", S0["time_of_day"], S0_ANSWERS["daytime" if time == "day" else time], 1.0),
          ("house_there", S0["house_there"], _yes_no(meta["house"]), 1.0),
          ("person_there", S0["person_there"], _yes_no(meta["person"]), 1.0),
          ("water_there", S0["water_there"], _yes_no(meta["ground"] == "water"), 1.0),
          ("count", S0["count"].format(plural="trees"), _count_answer(meta["trees"], "tree", "trees"), 1.0)]
    if time != "sunset":
        qa.append(("day_night", S0["day_night"], S0_ANSWERS[time], 1.0))
    return img, qa, meta


def _s0_clevr(rng, size):
    img, meta = _scene_clevr(rng, size)
    objs = meta["objects"]
    shape = CLEVR_SHAPES[rng.integers(3)]
    color = CLEVR_COLORS[rng.integers(len(CLEVR_COLORS))]
    n_shape = sum(o["shape"] == shape for o in objs)
    n_color = sum(o["color"] == color for o in objs)
    o = objs[rng.integers(len(objs))]
    ask_c, ask_s = (o["color"], o["shape"]) if rng.random() < 0.5 else (color, shape)
    # the colour counted in number words: a colour in the scene three times in four
    how_many = objs[rng.integers(len(objs))]["color"] if rng.random() < 0.75 else color
    qa = [("count", S0["count"].format(plural=CLEVR_PLURALS[shape]),
           _count_answer(n_shape, shape, CLEVR_PLURALS[shape]), 1.0),
          ("count", S0["count"].format(plural=f"{color} objects"),
           _count_answer(n_color, f"{color} object", f"{color} objects"), 1.0),
          ("how_many_color", S0["how_many_color"].format(color=how_many),
           COUNT_WORDS[sum(x["color"] == how_many for x in objs)], 3.0),
          ("n_objects", S0["n_objects"], _count_answer(len(objs), "object", "objects"), 1.0),
          ("clevr_there", S0["clevr_there"].format(art=_art(ask_c), color=ask_c, shape=ask_s),
           _yes_no(any(x["color"] == ask_c and x["shape"] == ask_s for x in objs)), 1.0)]
    colors = [x["color"] for x in objs]
    unique = [x for x in objs if colors.count(x["color"]) == 1]
    if unique:
        u = unique[rng.integers(len(unique))]
        qa.append(("clevr_shape_of", S0["clevr_shape_of"].format(color=u["color"]),
                   S0_ANSWERS["it_is"].format(x=f"{_art(u['shape'])} {u['shape']}"), 1.0))
    return img, qa, meta


EMPTY_CELL = "empty"


def stage0_cell_labels(meta: dict) -> list[str] | None:
    """What each cell of the 4x4 layout grid holds in a stage-0 scene (row-major, 16 strings), for
    the vision tower's dense pretraining; None for the free scenes (table tops, outdoor scenes).

    Icons: the icon's kind; CLEVR objects: colour and shape; shape blocks: the class in each of its
    2x2 cells; a single large shape: its class in every cell (the object covers the canvas); bar
    charts: how much of a cell its column's bar covers, in quarters ("bar1".."bar4"; "empty")."""
    cells = [EMPTY_CELL] * (GRID * GRID)
    layout = meta.get("layout")
    if meta.get("family") == "icons":
        for row, col, kind in meta["cells"]:
            cells[row * GRID + col] = f"icon {kind}"
    elif meta.get("family") == "clevr":
        for o in meta["objects"]:
            row, col = o["cell"]
            cells[row * GRID + col] = f"{o['color']} {o['shape']}"
    elif layout == "single":
        cells = [f"shape {meta['class']}"] * (GRID * GRID)
    elif layout == "blocks":
        for shape in meta["shapes"]:
            row, col = shape["block"]
            for dr in (0, 1):
                for dc in (0, 1):
                    cells[(row + dr) * GRID + col + dc] = f"shape {shape['class']}"
    elif meta.get("family") == "bars":
        for col, h in zip(meta["columns"], meta["heights"]):
            for row in range(GRID):
                floor = (GRID - 1 - row) / GRID  # the cell's lower edge, as a height from the bottom
                covered = min(max(h - floor, 0.0), 1 / GRID) * GRID
                quarters = round(covered * 4)
                cells[row * GRID + col] = f"bar{quarters}" if quarters else EMPTY_CELL
    else:
        return None
    return cells


def stage0_counts(meta: dict) -> dict[str, int] | None:
    """How many objects of each kind a stage-0 grid scene holds (zeros included), for the vision
    tower's counting pretraining; None for the other scenes. Icons: per icon kind; CLEVR objects:
    per colour and per shape; both: the total."""
    family = meta.get("family")
    if family == "icons":
        counts = {f"icons {k}": int(meta["counts"].get(k, 0)) for k in ICON_KINDS}
        counts["icons total"] = sum(counts.values())
        return counts
    if family == "clevr":
        objects = meta["objects"]
        counts = {f"clevr {c}": sum(o["color"] == c for o in objects) for c in CLEVR_COLORS}
        counts.update({f"clevr {s}": sum(o["shape"] == s for o in objects) for s in CLEVR_SHAPES})
        counts["clevr total"] = len(objects)
        return counts
    return None


# Each family returns (image, [(key, question, answer, weight), ...], meta); a conversation asks one
# or two of the questions, drawn without replacement in proportion to their weights.
_STAGE0_FAMILIES: dict[str, Callable] = {
    "shapes": _s0_shapes, "icons": _s0_icons, "bars": _s0_bars, "table": _s0_table,
    "outdoor": _s0_outdoor, "clevr": _s0_clevr,
}
# Share of each family in stage 0: weighted towards what a ViT trained from scratch learns slowly.
STAGE0_WEIGHTS = {"shapes": 0.35, "bars": 0.15, "icons": 0.12, "clevr": 0.15, "table": 0.12, "outdoor": 0.11}
# Questions per stage-0 conversation (fewer where a family has fewer). The system prompt and the
# image tokens are most of a sequence, so each further question adds supervision for ~12 tokens.
STAGE0_TURNS = 3


def _sample_stage0(rng, size):
    names = list(STAGE0_WEIGHTS)
    cum = np.cumsum([STAGE0_WEIGHTS[n] for n in names])
    family = names[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(names) - 1)]
    img, qa, meta = _STAGE0_FAMILIES[family](rng, size)
    k = min(len(qa), STAGE0_TURNS)
    w = np.array([x[3] for x in qa], dtype=np.float64)
    picked = [qa[int(i)] for i in rng.choice(len(qa), size=k, replace=False, p=w / w.sum())]
    meta = {"family": family, "asked": [x[0] for x in picked], **meta}
    return img, [(q, a) for _, q, a, _ in picked], meta


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

_SPLITS = {"train": 0, "test": 1}


def _sample_rng(seed: int, stream: str, split: str, index: int, attempt: int = 0) -> np.random.Generator:
    """Each sample's own stream: a function of (seed, task, split, index), so that subsets and
    shorter runs reproduce exactly the samples they share with longer ones."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode()), _SPLITS[split], int(index), int(attempt)])


def _image_key(img: Image.Image) -> bytes:
    return hashlib.blake2b(img.tobytes(), digest_size=16).digest()


def _save_png(img: Image.Image, path: Path) -> None:
    img.save(path, format="PNG", compress_level=6)


def _read_marker(root: Path) -> dict:
    try:
        marker = json.loads((root / MARKER).read_text())
        return marker if isinstance(marker, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_marker(root: Path, key: str, params: dict | None) -> None:
    """The marker holds one entry per generator ('benchmark', 'stage0'), so both can share a root."""
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


def _generate_task(root: Path, spec: dict, n_train: int, n_test: int, size: int, seed: int, progress: _Progress) -> None:
    name = spec["name"]
    sampler = _TASK_SAMPLERS[name]
    _clear_task(root, name)
    for split in ("train", "test"):
        (root / "datasets" / name / split).mkdir(parents=True, exist_ok=True)
    job = progress.add(name, n_train + n_test)
    seen: set[bytes] = set()
    train, test, file_names, references = [], [], [], []
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            attempt = 0
            while True:
                img, text, answer, refs, meta = sampler(_sample_rng(seed, name, split, i, attempt), size)
                key = _image_key(img)
                if split == "train" or key not in seen:  # no test image is identical to a train image
                    break
                attempt += 1
            if split == "train":
                seen.add(key)
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


def _check_count(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def generate_benchmark(root, train_per_task: int = 600, test_per_task: int = 200, image_size: int = 64,
                       seed: int = 0, tasks: list[str] | None = None, progress: bool = True) -> Path:
    """Write the six-task synthetic benchmark (or the named subset, kept in benchmark order) in
    the UCIT layout under `root`, and return `root`.

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
    if _is_complete(root, "benchmark", params):
        return root
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(root, "benchmark", None)  # an interrupted regeneration is never taken as complete
    with _Progress(progress) as bar:
        for spec in SYNTH_TASKS:
            if spec["name"] in names:
                _generate_task(root, spec, train_per_task, test_per_task, image_size, int(seed), bar)
    _write_marker(root, "benchmark", params)
    return root


def generate_stage0(root, num_samples: int = 6000, image_size: int = 64, seed: int = 0,
                    progress: bool = True, split: str = "train", task_preview: int = 0) -> Path:
    """Write the stage-0 instruction-tuning mixture (`datasets/Stage0/<split>/<n>.png`,
    `instructions/Stage0/<split>.json`) under `root`, with the same marker logic as
    `generate_benchmark` (its own entry in `root/.complete.json`), and return `root`.
    `split="test"` draws held-out conversations from their own random streams (for probing
    what the base model learned).

    `task_preview` > 0 appends that many conversations per benchmark task, drawn by the task's own
    generator from a stream of its own ("Stage0/<task>"), so never one of the benchmark's samples:
    the base model then knows the tasks' instructions and answer formats a little, as LLaVA-1.5's
    instruction tuning had shown it VQA and captioning before UCIT (its zero-shot UCIT scores are
    far from 0). Their records carry meta {"family": "task", "task": <name>, "scene": <meta>}; the
    `num_samples` generic conversations are the same with or without them."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    _check_count("num_samples", num_samples)
    _check_count("image_size", image_size, 8)
    _check_count("seed", seed, 0)
    _check_count("task_preview", task_preview, 0)
    root = Path(root).expanduser()
    marker = "stage0" if split == "train" else f"stage0-{split}"
    params = {"version": STAGE0_VERSION, "num_samples": num_samples, "image_size": image_size,
              "seed": int(seed), "split": split}
    if task_preview:
        params["task_preview"] = int(task_preview)
    if _is_complete(root, marker, params):
        return root
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(root, marker, None)
    _clear_task(root, STAGE0, split)
    (root / "datasets" / STAGE0 / split).mkdir(parents=True, exist_ok=True)
    records = []
    with _Progress(progress) as bar:
        job = bar.add(STAGE0, num_samples)
        for i in range(num_samples):
            img, qa, meta = _sample_stage0(_sample_rng(seed, STAGE0, split, i), image_size)
            rel = f"{STAGE0}/{split}/{i}.png"
            _save_png(img, root / "datasets" / rel)
            conv = []
            for t, (q, a) in enumerate(qa):
                conv.append({"from": "human", "value": f"{IMAGE_TOKEN}\n{q}" if t == 0 else q})
                conv.append({"from": "gpt", "value": a})
            records.append({"id": f"{STAGE0}_{split}_{i}", "image": rel, "conversations": conv, "meta": meta})
            bar.advance(job)
        if task_preview:
            job = bar.add(f"{STAGE0} task preview", task_preview * len(TASK_NAMES))
            for name in TASK_NAMES:
                for j in range(task_preview):
                    img, text, answer, _, meta = _TASK_SAMPLERS[name](
                        _sample_rng(seed, f"{STAGE0}/{name}", split, j), image_size)
                    rel = f"{STAGE0}/{split}/{name}_{j}.png"
                    _save_png(img, root / "datasets" / rel)
                    records.append({"id": f"{STAGE0}_{name}_{split}_{j}", "image": rel, "conversations": [
                        {"from": "human", "value": f"{IMAGE_TOKEN}\n{text}"}, {"from": "gpt", "value": answer}],
                        "meta": {"family": "task", "task": name, "scene": meta}})
                    bar.advance(job)
    write_train_file(root / "instructions" / STAGE0 / f"{split}.json", records)
    _write_marker(root, marker, params)
    return root


# ---------------------------------------------------------------------------------------------
# Vocabulary and chance levels
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _vocabulary() -> tuple[str, ...]:
    words: set[str] = set()
    for text in _REGISTERED:
        words.update(TOKEN_PATTERN.findall(re.sub(r"\{\w*\}", " ", text)))
    return tuple(sorted(words))


def vocabulary() -> list[str]:
    """Every token (under `\\w+|[^\\w\\s]`, case kept) that a generated instruction, option, answer,
    caption, reference or stage-0 text can contain, derived from the word lists and templates.
    The `<image>` placeholder is not included (it is a special token)."""
    return list(_vocabulary())


def _field(record, name: str):
    return record[name] if isinstance(record, dict) else getattr(record, name)


_OPTION_LINE = re.compile(r"^[A-Z]\. ", re.M)
# Size of the answer range of the open-ended numeric questions: IconQA counts 1..6; ClevrMath
# answers 2..9 (3-6 objects, less one or plus 1-3).
ICON_COUNT_RANGE = ICON_COUNT_MAX
CLEVR_ANSWER_RANGE = CLEVR_MAX_OBJECTS + CLEVR_MAX_ADD - (CLEVR_MIN_OBJECTS - 1) + 1


def chance_level(task_name: str, test_records) -> float | None:
    """Expected exact-match score (0-100) of guessing uniformly among each question's valid
    answers: 1/options for multiple choice, 1/10 for Renditions, 1/(size of the answer range) for
    counting (IconQA: 1..6) and ClevrMath (2..9). None for the caption tasks. `test_records` are
    dicts of the test file or loaded `TestRecord`s (only their `text` is used)."""
    if task_name not in TASK_NAMES:
        raise ValueError(f"unknown synthetic task {task_name!r}; the tasks are {TASK_NAMES}")
    if task_name in ("ObjectCaption", "SceneCaption"):
        return None
    if task_name == "Renditions":
        return 100.0 / len(SHAPES)
    if task_name == "ClevrMath":
        return 100.0 / CLEVR_ANSWER_RANGE
    records = list(test_records)
    if not records:
        raise ValueError(f"chance_level({task_name!r}): no test records")
    per_question = []
    for r in records:
        n_options = len(_OPTION_LINE.findall(_field(r, "text")))
        if n_options:
            per_question.append(100.0 / n_options)
        elif task_name == "IconQA":
            per_question.append(100.0 / ICON_COUNT_RANGE)
        else:
            raise ValueError(f"{task_name} question without options: {_field(r, 'text')!r}")
    return float(np.mean(per_question))
