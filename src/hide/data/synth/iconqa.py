"""IconQA, the analog of UCIT's IconQA: half counting, "How many stars are there?" about a grid
of 1-6 icons of one kind (as IconQA's counting images are), answered with a digit; half multiple
choice, "Which icon appears most often?" about a grid of three kinds, answered with a letter.
Both use the 4x4 layout grid over the whole canvas, one icon (75% of a cell) per occupied cell.

Its pretraining counterpart, the "icons" family: grids of 1-4 kinds, asked to count one kind ("there
are three stars"), whether a kind is there, which of two kinds there are more of ("there are
more stars"), how many kinds there are (a digit), which of three kinds is in the grid (an
option's letter) and for a one-sentence caption. A digit for one kind's count and the option of
the most frequent kind are the task's alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hide.data.synth.draw import EMPTY_CELL, GRID, canvas, finish, place, unit_shape
from hide.data.synth.texts import (
    COUNT_Q,
    LETTERS,
    MC_SUFFIX,
    SINGLE_WORD,
    and_list,
    art,
    caption_prompt,
    count_answer,
    multiple_choice,
    option_chance,
    options,
    register,
    short,
    yes_no,
)

NAME = "IconQA"
KIND = "qa"
SPEC = {"name": NAME, "kind": KIND, "train_file": "train.json", "test_file": "test.json", "references_file": None}
FAMILY = "icons"

ICON_KINDS = register(["star", "heart", "circle", "square", "triangle", "moon"])
ICON_PLURALS = register({k: k + "s" for k in ICON_KINDS})
# Each icon kind has its own colour, as icons in a worksheet usually do.
ICON_COLORS = {"star": (235, 180, 0), "heart": (220, 35, 60), "circle": (35, 95, 220),
               "square": (30, 150, 60), "triangle": (245, 120, 15), "moon": (130, 55, 190)}
ICON_COUNT_Q = register("How many {plural} are there?") + SINGLE_WORD
ICON_MC_Q = register("Which icon appears most often?")
ICON_MAX_COUNT = 5  # per kind, in the multiple-choice grids and in the mixture
# Counting questions show one kind of icon, 1..ICON_COUNT_MAX of it (as IconQA's counting images do).
ICON_COUNT_MAX = 6
ICON_MC_KINDS = 3  # kinds in a "most often" grid; the most frequent leads the next by ICON_MC_MARGIN
ICON_MC_MARGIN = 2
# Size of the answer range of the counting questions (1..6).
ICON_COUNT_RANGE = ICON_COUNT_MAX

# The mixture's questions and answers about icon grids (keys are names, not text: only the values are
# registered for the vocabulary).
S0 = {"icon_there": "Is there {art} {kind} in the grid?", "more_icons": "Are there more {a} or {b}?",
      "n_kinds": "How many kinds of icons are there?", "which_icon": "Which icon is in the grid?"}
S0_ANSWERS = {"more": "there are more {plural}", "caption": "a grid of {icons}"}
register([list(S0.values()), list(S0_ANSWERS.values())])


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
    img, draw, S = canvas(size, (255, 255, 255))
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
            draw.polygon(place(unit_shape(kind), cx, cy, 0.375 * cell), fill=ICON_COLORS[kind])
            cells_meta.append([row, col, kind])
    meta = {"grid": grid, "kinds": kinds, "counts": dict(zip(kinds, counts)), "cells": sorted(cells_meta)}
    return finish(img, size), meta


def sample(rng, size):
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
    text = f"{ICON_MC_Q}\n{options(kinds)}{MC_SUFFIX}"
    return img, text, LETTERS[kinds.index(best)], None, meta


def pretraining(rng, size):
    img, meta = _scene_icons(rng, size, n_kinds=int(rng.integers(1, 5)), min_count=0, unique_max=False)
    counts = meta["counts"]
    kind = ICON_KINDS[rng.integers(len(ICON_KINDS))]
    n = counts.get(kind, 0)
    present = [k for k in ICON_KINDS if counts.get(k, 0) > 0]
    qa = [("count", COUNT_Q.format(plural=ICON_PLURALS[kind]), count_answer(n, kind, ICON_PLURALS[kind]), 1.0),
          ("icon_there", S0["icon_there"].format(art=art(kind), kind=kind), yes_no(n > 0), 1.0),
          ("n_kinds", short(S0["n_kinds"]), str(len(present)), 1.0)]
    absent = [k for k in ICON_KINDS if k not in present]
    if present and len(absent) >= 2:
        which, letter = multiple_choice(rng, S0["which_icon"], present[rng.integers(len(present))], absent)
        qa.append(("which_icon", which, letter, 1.0))
    if present:
        icons = and_list([ICON_PLURALS[k] if counts[k] > 1 else f"{art(k)} {k}" for k in present])
        qa.append(("caption", caption_prompt(rng), S0_ANSWERS["caption"].format(icons=icons), 0.5))
    pairs = [(a, b) for a in ICON_KINDS for b in ICON_KINDS
             if a != b and counts.get(a, 0) != counts.get(b, 0) and (a in counts or b in counts)]
    if pairs:
        a, b = pairs[rng.integers(len(pairs))]
        more = a if counts.get(a, 0) > counts.get(b, 0) else b
        qa.append(("more_icons", S0["more_icons"].format(a=ICON_PLURALS[a], b=ICON_PLURALS[b]),
                   S0_ANSWERS["more"].format(plural=ICON_PLURALS[more]), 1.0))
    return img, qa, meta


def mixture_cell_labels(meta: dict) -> list[str]:
    """The icon's kind in each occupied cell."""
    cells = [EMPTY_CELL] * (GRID * GRID)
    for row, col, kind in meta["cells"]:
        cells[row * GRID + col] = f"icon {kind}"
    return cells


def mixture_counts(meta: dict) -> dict[str, int]:
    """How many icons of each kind, and in all."""
    counts = {f"icons {k}": int(meta["counts"].get(k, 0)) for k in ICON_KINDS}
    counts["icons total"] = sum(counts.values())
    return counts


def chance(test_records) -> float:
    """1/options for multiple choice, 1/(size of the answer range) for counting."""
    return option_chance(NAME, test_records, 100.0 / ICON_COUNT_RANGE)
