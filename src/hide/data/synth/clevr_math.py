"""ClevrMath, the analog of UCIT's CLEVR-Math: 3-6 cubes, spheres and cylinders, each in its own
cell of the layout grid (70-78% of a cell, jitter at most 8% of a cell), asked "Subtract all red
cubes. How many objects are left?" or "Add 2 blue spheres. How many objects are there?"; the
answer is a digit.

Its pretraining counterpart, the "clevr" family: the same scenes, asked to count a shape or a colour
("there are two red objects"), how many objects of a colour there are (a bare number word, or a
digit), how many objects there are (in words, or a digit), whether some object is there, the
shape of the object of a colour (a sentence, or a word), the colour of the object of a shape
(an option's letter) and for a one-sentence caption. Subtracting or adding objects is the task's
alone: the base model counts, the task asks it to count what a change leaves.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hide.data.synth.draw import (
    EMPTY_CELL,
    GRID,
    RGB,
    SUPERSAMPLE,
    canvas,
    darker,
    finish,
    lighter,
    vertical_gradient,
)
from hide.data.synth.texts import (
    COUNT_Q,
    IT_IS,
    NUMBER_WORDS,
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

NAME = "ClevrMath"
KIND = "qa"
SPEC = {"name": NAME, "kind": KIND, "train_file": "train.json", "test_file": "test.json", "references_file": None}
FAMILY = "clevr"

CLEVR_SHAPES = register(["cube", "sphere", "cylinder"])
CLEVR_PLURALS = register({s: s + "s" for s in CLEVR_SHAPES})
CLEVR_COLORS = ("red", "blue", "green", "yellow", "purple", "gray")
CLEVR_RGB = {"red": (200, 40, 40), "blue": (40, 80, 210), "green": (35, 150, 55),
             "yellow": (230, 195, 30), "purple": (135, 60, 180), "gray": (88, 88, 92)}
CLEVR_Q = register("Subtract all {what}. How many objects are left?") + SINGLE_WORD
CLEVR_ADD_Q = register("Add {k} {what}. How many objects are there?") + SINGLE_WORD
CLEVR_MAX_ADD = 3
register(["objects", "{color} {plural}", "{color} objects"])
CLEVR_MIN_OBJECTS, CLEVR_MAX_OBJECTS = 3, 6
CLEVR_SIZE = (0.70, 0.78)  # of a cell
CLEVR_JITTER = 0.08  # largest offset of an object's centre from its cell's centre, of a cell
# Size of the answer range: 2..9 (3-6 objects, less one or plus 1-3).
CLEVR_ANSWER_RANGE = CLEVR_MAX_OBJECTS + CLEVR_MAX_ADD - (CLEVR_MIN_OBJECTS - 1) + 1

# The mixture's questions about CLEVR scenes (keys are names, not text: only the values are
# registered for the vocabulary).
S0 = {
    "clevr_there": "Is there {art} {color} {shape}?",
    "clevr_shape_of": "What shape is the {color} object?",
    "clevr_color_of": "What color is the {shape}?",
    "n_objects": "How many objects are there?",
    "how_many_color": "How many {color} objects are there?",
}
register(list(S0.values()))
# Bare number words (the mixture's "How many red objects are there?"), "zero" for none.
COUNT_WORDS = register(["zero"]) + NUMBER_WORDS[1:]
register(["object", "objects", "{color} object", "{color} objects"])


def _draw_clevr_object(draw, shape: str, x: float, y: float, d: float, color: RGB) -> None:
    dark = darker(color, 0.6)
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
        draw.ellipse([x - w, top - eh, x + w, top + eh], fill=lighter(color, 0.45), outline=dark, width=ow)
    else:
        raise ValueError(shape)


def _scene_clevr(rng, size: int) -> tuple[Image.Image, dict]:
    """3-6 cubes, spheres and cylinders on a gray gradient floor, each in its own cell of the
    layout grid (70-78% of a cell, its centre at most 8% of a cell off the cell's centre, so it
    stays inside its cell)."""
    shift = int(rng.integers(-12, 13))
    floor = vertical_gradient(size * SUPERSAMPLE, (150 + shift,) * 3, (212 + shift,) * 3)
    img, draw, S = canvas(size, floor)
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
    return finish(img, size), {"objects": objects}


def clevr_matches(obj: dict, subtract: dict) -> bool:
    """Whether an object of a ClevrMath scene belongs to the subtracted set {color, shape} (None: any)."""
    return all(subtract[k] is None or obj[k] == subtract[k] for k in ("color", "shape"))


def _clevr_phrase(subject: dict, count: int = 2) -> str:
    """"red cubes", "cubes", "red objects" (singular for a count of 1: "red cube")."""
    noun = subject["shape"] or "object"
    noun = noun if count == 1 else CLEVR_PLURALS.get(noun, noun + "s")
    return f"{subject['color']} {noun}" if subject["color"] else noun

def sample(rng, size):
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


def pretraining(rng, size):
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
    qa = [("count", COUNT_Q.format(plural=CLEVR_PLURALS[shape]),
           count_answer(n_shape, shape, CLEVR_PLURALS[shape]), 1.0),
          ("count", COUNT_Q.format(plural=f"{color} objects"),
           count_answer(n_color, f"{color} object", f"{color} objects"), 1.0),
          ("how_many_color", S0["how_many_color"].format(color=how_many),
           COUNT_WORDS[sum(x["color"] == how_many for x in objs)], 3.0),
          ("n_objects", S0["n_objects"], count_answer(len(objs), "object", "objects"), 1.0),
          ("clevr_there", S0["clevr_there"].format(art=art(ask_c), color=ask_c, shape=ask_s),
           yes_no(any(x["color"] == ask_c and x["shape"] == ask_s for x in objs)), 1.0)]
    qa += [("n_objects_digit", short(S0["n_objects"]), str(len(objs)), 1.0),
           ("how_many_color_digit", short(S0["how_many_color"].format(color=how_many)),
            str(sum(x["color"] == how_many for x in objs)), 1.0),
           ("caption", caption_prompt(rng), and_list([f"{art(x['color'])} {x['color']} {x['shape']}" for x in objs]), 0.5)]
    colors = [x["color"] for x in objs]
    unique = [x for x in objs if colors.count(x["color"]) == 1]
    if unique:
        u = unique[rng.integers(len(unique))]
        qa.append(("clevr_shape_of", S0["clevr_shape_of"].format(color=u["color"]),
                   IT_IS.format(x=f"{art(u['shape'])} {u['shape']}"), 0.5))
        qa.append(("clevr_shape_word", short(S0["clevr_shape_of"].format(color=u["color"])), u["shape"], 1.0))
    shapes = [x["shape"] for x in objs]
    alone = [x for x in objs if shapes.count(x["shape"]) == 1]
    if alone:
        u = alone[rng.integers(len(alone))]
        question, letter = multiple_choice(rng, S0["clevr_color_of"].format(shape=u["shape"]), u["color"],
                                           [c for c in CLEVR_COLORS if c != u["color"]])
        qa.append(("clevr_color_mc", question, letter, 1.0))
    return img, qa, meta


def mixture_cell_labels(meta: dict) -> list[str]:
    """Each object's colour and shape in its cell."""
    cells = [EMPTY_CELL] * (GRID * GRID)
    for o in meta["objects"]:
        row, col = o["cell"]
        cells[row * GRID + col] = f"{o['color']} {o['shape']}"
    return cells


def mixture_counts(meta: dict) -> dict[str, int]:
    """How many objects of each colour, of each shape, and in all."""
    objects = meta["objects"]
    counts = {f"clevr {c}": sum(o["color"] == c for o in objects) for c in CLEVR_COLORS}
    counts.update({f"clevr {s}": sum(o["shape"] == s for o in objects) for s in CLEVR_SHAPES})
    counts["clevr total"] = len(objects)
    return counts


def chance(test_records) -> float:
    """1/(size of the answer range)."""
    return 100.0 / CLEVR_ANSWER_RANGE
