"""Renditions, the analog of UCIT's ImageNet-R: "What is the object in the image?" about one
large object (55-85% of the canvas, near the centre) of one of 10 shape classes, drawn in one of
7 renditions, with strokes of at least image_size/16 so that outlines and dots survive the
downsampling; the answer is the class, 60% of the time one of the four classes the mixture never
names.

Its pretraining counterpart, the "shapes" family: two thirds the same single objects, asked "What
shape is this?" ("this is a circle"), in one word "What shape is in the image?", whether it is
some class, its colour (a word, or an option's letter) and how it is drawn; one third 2-4 shapes
in 2x2-cell blocks, asked whether a class is there, how many shapes there are (in words, or a
digit), the largest one's colour, the classes from left to right, and for a one-sentence caption.
The mixture names only six of the ten classes (`NAMED_IN_MIXTURE`): the vision tower learns all ten,
but a base model has never said "cross", "diamond", "hexagon" or "arrow" about an image, as
LLaVA-1.5 had never answered ImageNet-R's class names in its own words; the task's instruction is
new as well.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hide.data.synth.draw import (
    EMPTY_CELL,
    GRID,
    SUPERSAMPLE,
    canvas,
    draw_rendition,
    finish,
    light_bg,
    place,
    rotated,
    texture,
)
from hide.data.synth.texts import (
    COLORS,
    LIST_SEP,
    SINGLE_WORD,
    and_list,
    art,
    caption_prompt,
    count_answer,
    multiple_choice,
    register,
    short,
    yes_no,
)

NAME = "Renditions"
KIND = "qa"
SPEC = {"name": NAME, "kind": KIND, "train_file": "train.json", "test_file": "test.json", "references_file": None}
FAMILY = "shapes"

SHAPES = register(["circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "heart", "arrow", "moon"])
SHAPE_PLURALS = register({s: s + ("es" if s.endswith("ss") else "s") for s in SHAPES})
RENDITIONS = ("solid", "outline", "striped", "dotted", "sketch", "noisy", "twotone")
RENDITION_COLORS = ("red", "blue", "green", "orange", "purple", "pink", "brown", "black")
DARK_COLORS = ("red", "blue", "green", "purple", "black", "brown")  # on textured backgrounds
# Largest rotation (degrees) that keeps each class unambiguous (a square turned 45 degrees is a diamond).
MAX_ROTATION = {"circle": 0, "square": 12, "triangle": 25, "star": 36, "cross": 12, "diamond": 12,
                "hexagon": 30, "heart": 20, "arrow": 180, "moon": 180}
RENDITIONS_Q = register("What is the object in the image?") + SINGLE_WORD
NAMED_IN_MIXTURE = ("circle", "square", "triangle", "star", "heart", "moon")
UNNAMED_SHARE = 0.6  # of the task's samples, drawn from the four classes the mixture never names
RENDITION_SIZE = (0.55, 0.85)  # of the canvas
RENDITION_JITTER = 0.04  # largest offset of the centre, of the canvas

# The mixture's questions and answers about shapes (keys are names, not text: only the values are
# registered for the vocabulary).
S0 = {
    "shape_there": "Is there {art} {shape} in the picture?",
    "largest_color": "What color is the largest shape?",
    "name_lr": "Name the shapes from left to right.",
    "n_shapes": "How many shapes are there?",
    "what_shape": "What shape is this?",
    "shape_name": "What shape is in the image?",
    "is_shape": "Is the shape {art} {shape}?",
    "shape_color": "What color is the shape?",
    "how_drawn": "How is the shape drawn?",
    "in_picture": "What is in the picture?",
}
S0_ANSWERS = {"this_is": "this is {art} {x}", "a_shape": "{art} {color} {shape}"}
RENDITION_PHRASES = {
    "solid": "it is filled with one color", "outline": "only its outline is drawn",
    "striped": "it is filled with stripes", "dotted": "its outline is drawn with dots",
    "sketch": "it is a rough sketch", "noisy": "it is on a noisy background", "twotone": "it has two colors",
}
register([list(S0.values()), list(S0_ANSWERS.values()), list(RENDITION_PHRASES.values())])
register(["shape", "shapes"])


def _scene_rendition(rng, size: int, cls: str | None = None) -> tuple[Image.Image, dict]:
    """One object of `cls` (default: one of the 10 classes, uniformly) in one of 7 renditions,
    55-85% of the canvas, centred with a small jitter."""
    if cls is None:
        cls = SHAPES[rng.integers(len(SHAPES))]
    rendition = RENDITIONS[rng.integers(len(RENDITIONS))]
    S = size * SUPERSAMPLE
    if rendition == "noisy":
        bg = (235, 235, 235)
        img, draw, S = canvas(size, texture(rng, size, S))
        color_name = DARK_COLORS[rng.integers(len(DARK_COLORS))]
    else:
        bg = light_bg(rng)
        img, draw, S = canvas(size, bg)
        color_name = RENDITION_COLORS[rng.integers(len(RENDITION_COLORS))]
    color2_name = None
    if rendition == "twotone":
        others = [c for c in RENDITION_COLORS if c != color_name]
        color2_name = others[rng.integers(len(others))]
    max_rot = MAX_ROTATION[cls]
    angle = float(rng.uniform(-max_rot, max_rot)) if max_rot else 0.0
    frac = float(rng.uniform(*RENDITION_SIZE))
    p = rotated(cls, angle)
    r = frac * S / 2
    cx, cy = S / 2 + rng.uniform(-RENDITION_JITTER, RENDITION_JITTER, 2) * S
    pts = place(p, cx, cy, r)
    draw_rendition(img, draw, S, pts, rendition, COLORS[color_name], bg, rng,
                   COLORS[color2_name] if color2_name else None)
    meta = {"class": cls, "rendition": rendition, "color": color_name, "angle": round(angle, 1),
            "size": round(frac, 3), "x": round(float(cx) / S, 3), "y": round(float(cy) / S, 3)}
    return finish(img, size), meta


def sample(rng, size):
    """A class the mixture never names UNNAMED_SHARE of the time: the base model knows the named six
    in every rendition, so with uniform classes it would score 60 before training."""
    unnamed = [c for c in SHAPES if c not in NAMED_IN_MIXTURE]
    pool = unnamed if rng.random() < UNNAMED_SHARE else list(NAMED_IN_MIXTURE)
    img, meta = _scene_rendition(rng, size, pool[rng.integers(len(pool))])
    return img, RENDITIONS_Q, meta["class"], None, meta


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
    polys = [rotated(c, a) for c, a in zip(classes, angles)]
    while True:
        fracs = rng.uniform(0.5, 0.95, k)
        areas = sorted((_polygon_area(p) * f * f for p, f in zip(polys, fracs)), reverse=True)
        if areas[0] >= 1.6 * areas[1]:
            break
    noisy = rng.random() < 0.15
    S = size * SUPERSAMPLE
    bg = (235, 235, 235) if noisy else light_bg(rng)
    img, draw, S = canvas(size, texture(rng, size, S) if noisy else bg)
    plain = [r for r in RENDITIONS if r != "noisy"]
    cell = S / GRID
    shapes = []
    for i, (row, col) in enumerate(blocks):
        usable = plain if fracs[i] >= 0.7 else [x for x in plain if x != "dotted"]  # dots need room
        rendition = "noisy" if noisy else usable[rng.integers(len(usable))]
        r = cell * fracs[i]
        cx, cy = (np.array([col, row]) + 1 + rng.uniform(-0.05, 0.05, 2) * (1 - fracs[i])) * cell
        pts = place(polys[i], cx, cy, r)
        others = [c for c in RENDITION_COLORS if c != colors[i]]
        color2 = others[rng.integers(len(others))]
        draw_rendition(img, draw, S, pts, rendition, COLORS[colors[i]], bg, rng, COLORS[color2],
                       stroke=max(0.75 * S / 16, 0.25 * r))
        shapes.append({"class": classes[i], "color": colors[i], "rendition": rendition,
                       "area": round(_polygon_area(polys[i]) * float(fracs[i]) ** 2, 4), "block": [row, col]})
    return finish(img, size), {"layout": "blocks", "shapes": shapes}


def pretraining(rng, size):
    """Two thirds single objects drawn exactly as Renditions draws them (its classes, renditions
    and code), one third 2-4 shapes in 2x2-cell blocks. Only NAMED_IN_MIXTURE classes are named."""
    if rng.random() < 2 / 3:
        img, meta = _scene_rendition(rng, size)
        meta = {"layout": "single", **meta}
        cls, color = meta["class"], meta["color"]
        # about a named class, "is it X?" asks its own class half the time
        ask = cls if cls in NAMED_IN_MIXTURE and rng.random() < 0.5 else \
            NAMED_IN_MIXTURE[rng.integers(len(NAMED_IN_MIXTURE))]
        color_mc, letter = multiple_choice(rng, S0["shape_color"], color, [c for c in RENDITION_COLORS if c != color])
        qa = [("is_shape", S0["is_shape"].format(art=art(ask), shape=ask), yes_no(ask == cls), 2.0),
              ("shape_color", short(S0["shape_color"]), color, 1.0),
              ("shape_color_mc", color_mc, letter, 1.0),
              ("how_drawn", S0["how_drawn"], RENDITION_PHRASES[meta["rendition"]], 1.0)]
        if cls in NAMED_IN_MIXTURE:
            qa.append(("what_shape", S0["what_shape"], S0_ANSWERS["this_is"].format(art=art(cls), x=cls), 5.0))
            qa.append(("shape_name", short(S0["shape_name"]), cls, 2.0))
            # named when asked in general words too, not only as "shape" (colour questions say
            # "colour"), as an instruction-tuned base names a photo's one object
            qa.append(("in_picture", short(S0["in_picture"]), cls, 2.0))
        return img, qa, meta
    img, meta = _scene_shape_blocks(rng, size)
    shapes = meta["shapes"]
    classes = [s["class"] for s in shapes]
    ask = NAMED_IN_MIXTURE[rng.integers(len(NAMED_IN_MIXTURE))]
    largest = max(shapes, key=lambda s: s["area"])
    named = [S0_ANSWERS["a_shape"].format(art=art(s["color"]), color=s["color"],
                                          shape=s["class"] if s["class"] in NAMED_IN_MIXTURE else "shape")
             for s in shapes]
    qa = [("shape_there", S0["shape_there"].format(art=art(ask), shape=ask), yes_no(ask in classes), 1.0),
          ("n_shapes", S0["n_shapes"], count_answer(len(shapes), "shape", "shapes"), 0.5),
          ("n_shapes_digit", short(S0["n_shapes"]), str(len(shapes)), 1.0),
          ("largest_color", short(S0["largest_color"]), largest["color"], 1.0),
          ("caption", caption_prompt(rng), and_list(named), 1.0)]
    if len(shapes) == 2 and all(c in NAMED_IN_MIXTURE for c in classes):
        qa.append(("name_lr", S0["name_lr"], LIST_SEP.join(classes), 1.0))
    return img, qa, meta


def mixture_cell_labels(meta: dict) -> list[str] | None:
    """A single large shape: its class in every cell (the object covers the canvas); shape
    blocks: the class in each of its 2x2 cells."""
    layout = meta.get("layout")
    if layout == "single":
        return [f"shape {meta['class']}"] * (GRID * GRID)
    if layout == "blocks":
        cells = [EMPTY_CELL] * (GRID * GRID)
        for shape in meta["shapes"]:
            row, col = shape["block"]
            for dr in (0, 1):
                for dc in (0, 1):
                    cells[(row + dr) * GRID + col + dc] = f"shape {shape['class']}"
        return cells
    return None


def mixture_counts(meta: dict) -> None:
    """None: shapes are not counted in the vision tower's pretraining."""
    return None


def chance(test_records) -> float:
    """One of the 10 classes."""
    return 100.0 / len(SHAPES)
