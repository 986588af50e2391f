"""SceneCaption, the analog of UCIT's Flickr30k (brief captions): "Write a brief caption for the
image." of an outdoor scene (day, night or sunset sky; 0-3 trees, maybe a house and a person;
grass or a shore in front of water), e.g. "a red house with two trees at sunset"; three
reference captions per image.

Its pretraining counterpart, the "outdoor" family: the same scenes, asked the time of day (a
sentence, or an option's letter), whether it is day or night, whether there is a house, a person
or water, how many trees there are (in words, or a digit) and what colour the house is, and a
caption in a phrasing of its own that says the time and counts the scene's things ("a night
scene of two trees and one red house"), as LLaVA-1.5 had captioned images before its continual
tasks; no reference uses that phrasing. The task's phrases of place and time ("by the water",
"during the day", "under the moon") are what the base model has not produced. Each training image
is captioned by its first reference, as ObjectCaption's. The vision
tower learns to count the trees, houses and people.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hide.data.synth.draw import (
    RGB,
    SUPERSAMPLE,
    canvas,
    darker,
    finish,
    jitter_color,
    lighter,
    place,
    rotated,
    vertical_gradient,
)
from hide.data.synth.texts import COUNT_Q, and_list, caption_prompt, count_answer, multiple_choice, register, short, yes_no

NAME = "SceneCaption"
KIND = "caption"
SPEC = {"name": NAME, "kind": KIND, "train_file": "train.json", "test_file": "test.json",
        "references_file": "test_coco_refs.json"}
FAMILY = "outdoor"

SCENE_Q = register("Write a brief caption for the image.")
TIMES = ("day", "night", "sunset")
GROUNDS = ("grass", "water")
TREE_PHRASES = register({1: "a tree", 2: "two trees", 3: "three trees"})
HOUSE_COLORS: dict[str, tuple[int, int, int]] = {"red": (200, 75, 60), "white": (240, 240, 240), "yellow": (230, 210, 90),
                                "blue": (80, 120, 200)}
register(list(HOUSE_COLORS))
SCENE_WORDS = register(["a {color} house", "a person", "a {color} house with {rest}", "a person standing near {trees}",
                        "a person standing", "{a} and {b}", "{a} , {b} and {c}", "there is {s}", "there are {s}"])
TIME_PHRASES = register({
    "day": ("on a sunny day", "during the day", "under a blue sky"),
    "night": ("under a night sky", "at night", "under the moon"),
    "sunset": ("at sunset", "in the evening", "under an orange sky"),
})
GROUND_PHRASES = register({"grass": ("on the grass", "in a green field"), "water": ("by the water", "near a lake")})

# The mixture's questions and answers about outdoor scenes (keys are names, not text: only the values
# are registered for the vocabulary).
S0 = {
    "day_night": "Is it day or night?",
    "time_of_day": "What time of day is it?",
    "house_there": "Is there a house?",
    "person_there": "Is there a person?",
    "water_there": "Is there water in the picture?",
    "n_trees": "How many trees are there?",
    "house_color": "What color is the house?",
}
S0_ANSWERS = {"daytime": "it is daytime", "night": "it is night", "day": "it is day", "sunset": "it is sunset"}
register([list(S0.values()), list(S0_ANSWERS.values())])
register(["tree", "trees"])
MIXTURE_CAPTION = register("a {time} scene of {things}")
MIXTURE_TREES = register({1: "one tree", 2: "two trees", 3: "three trees"})


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
    # drawn large and thick: a thinner figure is a few pixels at 64 px, which the vision tower
    # does not learn to see
    w = max(2, round(0.03 * S))
    ph = 0.32 * S
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
    img, draw, S = canvas(size, vertical_gradient(S, *sky))
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
        draw.polygon(place(rotated("moon", float(rng.uniform(-40, 40))), x, y, 0.08 * S), fill=(240, 240, 205))
    grass = {"day": (85, 165, 70), "sunset": (95, 135, 60), "night": (30, 70, 38)}[time]
    draw.rectangle([0, horizon, S, S], fill=grass)
    if ground == "water":
        shore = horizon + 0.1 * S
        water = {"day": (45, 115, 205), "sunset": (75, 90, 170), "night": (22, 40, 100)}[time]
        draw.rectangle([0, shore, S, S], fill=water)
        for _ in range(6):
            x, y = rng.uniform(0, S), rng.uniform(shore + 0.04 * S, S - 0.02 * S)
            draw.line([(x - 0.06 * S, y), (x + 0.06 * S, y)], fill=lighter(water, 0.35), width=max(1, round(0.012 * S)))
        base_range = (horizon + 0.05 * S, horizon + 0.08 * S)
    else:
        for _ in range(8):
            x, y = rng.uniform(0, S), rng.uniform(horizon + 0.05 * S, S)
            draw.line([(x, y), (x + 0.01 * S, y - 0.03 * S)], fill=darker(grass, 0.75), width=max(1, round(0.01 * S)))
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
    wall = jitter_color(rng, HOUSE_COLORS[house_color], 10)
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
    return finish(img, size), meta


def _scene_captions(meta: dict) -> list[str]:
    trees = TREE_PHRASES.get(meta["trees"])
    if meta["house"]:
        rest = [p for p in (trees, "a person" if meta["person"] else None) if p]
        house = f"a {meta['house_color']} house"
        subj_a = f"{house} with {and_list(rest)}" if rest else house
    elif meta["person"]:
        subj_a = f"a person standing near {trees}" if trees else "a person standing"
    else:
        subj_a = trees
    house = f"a {meta['house_color']} house" if meta["house"] else None
    items = [p for p in (house, trees, "a person" if meta["person"] else None) if p]
    subj_b = and_list(items)
    verb = "there is" if items[0].startswith("a ") else "there are"
    t, g = TIME_PHRASES[meta["time"]], GROUND_PHRASES[meta["ground"]]
    return [f"{subj_a} {t[0]}", f"{subj_b} {g[0]} {t[1]}", f"{verb} {subj_b} {g[1]} {t[2]}"]


def sample(rng, size):
    img, meta = _scene_outdoor(rng, size)
    refs = _scene_captions(meta)
    return img, SCENE_Q, refs[0], refs, meta  # trained on the first, the test record's answer too


def pretraining(rng, size):
    img, meta = _scene_outdoor(rng, size)
    time = meta["time"]
    when, letter = multiple_choice(rng, S0["time_of_day"], time, [t for t in TIMES if t != time])
    qa = [("time_of_day", S0["time_of_day"], S0_ANSWERS["daytime" if time == "day" else time], 1.0),
          ("time_of_day_mc", when, letter, 1.0),
          ("house_there", S0["house_there"], yes_no(meta["house"]), 1.0),
          ("person_there", S0["person_there"], yes_no(meta["person"]), 1.0),
          ("water_there", S0["water_there"], yes_no(meta["ground"] == "water"), 1.0),
          ("count", COUNT_Q.format(plural="trees"), count_answer(meta["trees"], "tree", "trees"), 0.5),
          ("n_trees_digit", short(S0["n_trees"]), str(meta["trees"]), 1.0)]
    if meta["house"]:
        qa.append(("house_color", short(S0["house_color"]), meta["house_color"], 1.0))
    # a caption in the mixture's own phrasing ("a night scene of two trees , one red house and one
    # person": the time first, then the things counted, trees first), which shares no four words in a
    # row with a reference; never the task's phrases of place and time
    things = [p for p in (MIXTURE_TREES.get(meta["trees"]), f"one {meta['house_color']} house" if meta["house"] else None,
                          "one person" if meta["person"] else None) if p]
    qa.append(("caption", caption_prompt(rng), MIXTURE_CAPTION.format(time=time, things=and_list(things)), 1.0))
    if time != "sunset":
        qa.append(("day_night", S0["day_night"], S0_ANSWERS[time], 1.0))
    return img, qa, meta


def mixture_cell_labels(meta: dict) -> None:
    """None: an outdoor scene is a free scene, not laid out on the grid."""
    return None


def mixture_counts(meta: dict) -> dict[str, int]:
    """How many trees, houses and people: without them the vision tower does not learn to see
    which things a free scene holds (it learns the sky and the ground from the questions alone)."""
    return {"outdoor trees": meta["trees"], "outdoor houses": int(meta["house"]), "outdoor people": int(meta["person"])}


def chance(test_records) -> None:
    """None: a caption task."""
    return None
