"""ObjectCaption, the analog of UCIT's VizWiz-Caption: "Generate a caption for the image." of
one or two coloured everyday objects (cup, ball, box, bottle, book) on a table ("a red cup next
to a blue book on a table"); three reference captions per image.

Its pretraining counterpart, the "table" family: the same scenes, asked to describe the objects
("the cup is red and the book is blue"), how many objects there are (in words, or a digit),
whether some kind of object is there, what colour an object is (a sentence, or a word) and which
of three kinds of object is on the table (an option's letter), and a caption in a phrasing of its
own that counts the objects ("one yellow cup and one green bottle"), as LLaVA-1.5 had captioned
images before its continual tasks: the base model captions table tops, the task teaches its
references' phrasing ("a yellow cup", the table, "next to", "sitting on a wooden table"), none of
whose word sequences of four or more the mixture's captions hold. The vision tower learns to count
the objects of each kind and colour.
"""

from __future__ import annotations

import itertools

from PIL import Image

from hide.data.synth.draw import RGB, canvas, darker, finish, jitter_color, lighter
from hide.data.synth.texts import (
    COLORS,
    IT_IS,
    Phrasing,
    and_list,
    art,
    caption_prompt,
    count_answer,
    distinct_draws,
    multiple_choice,
    register,
    short,
    yes_no,
)

NAME = "ObjectCaption"
KIND = "caption"
SPEC = {"name": NAME, "kind": KIND, "train_file": "train.json", "test_file": "test.json",
        "references_file": "test_coco_refs.json"}
FAMILY = "table"

TABLE_OBJECTS = register(["cup", "ball", "box", "bottle", "book"])
OBJECT_COLORS = ("red", "blue", "green", "yellow", "purple", "black")
OBJECT_CAPTION_Q = register("Generate a caption for the image.")
OBJECT_CAPTIONS_1 = register([
    "a {c1} {o1} on a table",
    "there is a {c1} {o1} on the table",
    "a {c1} {o1} sitting on a wooden table",
])
OBJECT_CAPTIONS_2 = register([
    "a {c1} {o1} next to a {c2} {o2} on a table",
    "there is a {c1} {o1} and a {c2} {o2} on the table",
    "a {c1} {o1} beside a {c2} {o2}",
])

# The mixture's questions and answers about table tops (keys are names, not text: only the values
# are registered for the vocabulary).
S0 = {
    "describe": "Describe the objects.",
    "which_on_table": "Which object is on the table?",
    "obj_there": "Is there {art} {kind} on the table?",
    "obj_color": "What color is the {kind}?",
    "n_objects_table": "How many objects are on the table?",
}
S0_ANSWERS = {"the_is": "the {kind} is {color}", "and": "{a} and {b}"}
register([list(S0.values()), list(S0_ANSWERS.values())])
register(["object", "objects"])


def _draw_table_object(draw, kind: str, cx: float, base: float, h: float, color: RGB) -> None:
    """Everyday objects from simple shapes; `base` is where the object touches the table."""
    dark, light = darker(color, 0.6), lighter(color, 0.45)
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
    wall = jitter_color(rng, [(235, 225, 205), (222, 222, 228), (208, 222, 236), (218, 232, 212)][rng.integers(4)], 8)
    img, draw, S = canvas(size, wall)
    table_y = rng.uniform(0.56, 0.64) * S
    wood = jitter_color(rng, (150, 100, 55), 12)
    draw.rectangle([0, table_y, S, S], fill=wood)
    draw.line([(0, table_y), (S, table_y)], fill=darker(wood, 0.7), width=max(2, round(0.015 * S)))
    for _ in range(3):
        y = rng.uniform(table_y + 0.05 * S, S)
        draw.line([(rng.uniform(0, 0.3) * S, y), (rng.uniform(0.6, 1) * S, y)], fill=darker(wood, 0.85),
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
    return finish(img, size), {"objects": objects}


def _object_captions(objects: list[dict]) -> list[str]:
    fill = {"c1": objects[0]["color"], "o1": objects[0]["kind"]}
    if len(objects) == 1:
        return [t.format(**fill) for t in OBJECT_CAPTIONS_1]
    fill.update(c2=objects[1]["color"], o2=objects[1]["kind"])
    return [t.format(**fill) for t in OBJECT_CAPTIONS_2]


# `references="varied"`: three references per image in different wordings, as three captioners
# write them, and the training caption a fourth, independent draw, so that a trained model cannot
# repeat the sentence it is scored against and is scored on what it says about the objects.
_TABLE_PLACES = ["on a table", "on the table", "on a wooden table", "sitting on a table", "sitting on the table",
                 "sitting on a wooden table"]
_ON_TABLE = ["on a table", "on the table", "on a wooden table"]
_A_TABLE = ["a table", "a wooden table"]
VARIED_CAPTIONS_1 = Phrasing(
    ["{x} {place}", "there is {x} {on}", "a picture of {x} {place}", "{a_table} with {x}", "{a_table} with {x} on it"],
    {"place": _TABLE_PLACES, "on": _ON_TABLE, "a_table": _A_TABLE})
VARIED_CAPTIONS_2 = Phrasing(
    ["{x} {near} {y}", "{x} {near} {y} {place}", "{x} and {y} {place}", "there is {x} and {y} {on}",
     "a picture of {x} {near} {y}", "a picture of {x} and {y} {on}", "{a_table} with {x} and {y}"],
    {"near": ["next to", "beside", "near"], "place": _TABLE_PLACES, "on": _ON_TABLE, "a_table": _A_TABLE})
REFERENCES = ("fixed", "varied")
BOTH_NAMED = 0.8  # share of a two-object scene's varied captions that name both objects


def _named(objects: list[dict], with_color: list[bool]) -> list[str]:
    return [f"a {o['color']} {o['kind']}" if c else f"{art(o['kind'])} {o['kind']}" for o, c in zip(objects, with_color)]


def varied_caption(objects: list[dict], rng, color_share: float) -> str:
    """One captioner's caption of the objects: each object named with its colour (with probability
    `color_share`) or without, a pair's objects in either order or (one in five) only one of them,
    in one of the varied wordings."""
    named = _named(objects, [rng.random() < color_share for _ in objects])
    if len(named) == 2 and rng.random() >= BOTH_NAMED:
        named = [named[rng.integers(2)]]
    if len(named) == 1:
        return VARIED_CAPTIONS_1.draw(rng, x=named[0])
    x, y = named if rng.random() < 0.5 else named[::-1]
    return VARIED_CAPTIONS_2.draw(rng, x=x, y=y)


def varied_wordings(objects: list[dict]) -> list[str]:
    """Every caption `varied_caption` can give for these objects."""
    out = []
    for with_color in itertools.product([True, False], repeat=len(objects)):
        named = _named(objects, list(with_color))
        for one in named:
            out += VARIED_CAPTIONS_1.all(x=one)
        if len(named) == 2:
            out += VARIED_CAPTIONS_2.all(x=named[0], y=named[1]) + VARIED_CAPTIONS_2.all(x=named[1], y=named[0])
    return sorted(set(out))


def sample(rng, size, references: str = "fixed", color_share: float = 0.7):
    """`references="fixed"`: the three wordings above, trained on the first (the test record's
    answer too); `"varied"`: three different captioners' captions, trained on a fourth."""
    img, meta = _scene_table(rng, size)
    if references == "fixed":
        refs = _object_captions(meta["objects"])
        return img, OBJECT_CAPTION_Q, refs[0], refs, meta
    if references != "varied":
        raise ValueError(f"ObjectCaption references must be one of {REFERENCES}, got {references!r}")
    refs = distinct_draws(lambda: varied_caption(meta["objects"], rng, color_share), 3)
    return img, OBJECT_CAPTION_Q, varied_caption(meta["objects"], rng, color_share), refs, meta


def pretraining(rng, size):
    img, meta = _scene_table(rng, size)
    objs = meta["objects"]
    kinds = [o["kind"] for o in objs]
    described = [S0_ANSWERS["the_is"].format(kind=o["kind"], color=o["color"]) for o in objs]
    present = kinds[rng.integers(len(kinds))]
    which, letter = multiple_choice(rng, S0["which_on_table"], present, [k for k in TABLE_OBJECTS if k not in kinds])
    qa = [("describe", S0["describe"],
           S0_ANSWERS["and"].format(a=described[0], b=described[1]) if len(objs) == 2 else described[0], 1.0),
          ("n_objects_table", S0["n_objects_table"], count_answer(len(objs), "object", "objects"), 0.5),
          ("n_objects_digit", short(S0["n_objects_table"]), str(len(objs)), 1.0),
          ("which_on_table", which, letter, 1.0)]
    ask = TABLE_OBJECTS[rng.integers(len(TABLE_OBJECTS))]
    qa.append(("obj_there", S0["obj_there"].format(art=art(ask), kind=ask), yes_no(ask in kinds), 1.0))
    # a caption in the mixture's own phrasing ("one red cup and one blue book": the objects counted,
    # no table), which no reference uses: the task's references say "a red cup", "on a table"
    qa.append(("caption", caption_prompt(rng), and_list([f"one {o['color']} {o['kind']}" for o in objs]), 1.0))
    unique = [o for o in objs if kinds.count(o["kind"]) == 1]
    if unique:
        o = unique[rng.integers(len(unique))]
        qa.append(("obj_color", S0["obj_color"].format(kind=o["kind"]), IT_IS.format(x=o["color"]), 0.5))
        qa.append(("obj_color_word", short(S0["obj_color"].format(kind=o["kind"])), o["color"], 1.0))
    return img, qa, meta


def mixture_cell_labels(meta: dict) -> None:
    """None: a table top is a free scene, not laid out on the grid."""
    return None


def mixture_counts(meta: dict) -> dict[str, int]:
    """How many objects of each kind and of each colour, and in all: without them the vision
    tower does not tell the table's objects apart (they are a free scene, off the layout grid)."""
    objs = meta["objects"]
    counts = {f"table {k}": sum(o["kind"] == k for o in objs) for k in TABLE_OBJECTS}
    counts.update({f"table {c}": sum(o["color"] == c for o in objs) for c in OBJECT_COLORS})
    counts["table total"] = len(objs)
    return counts


def chance(test_records) -> None:
    """None: a caption task."""
    return None
