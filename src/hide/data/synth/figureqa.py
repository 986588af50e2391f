"""FigureQA, the analog of UCIT's ArxivQA: "Which bar is the tallest?" about a bar chart of 4
bars of distinct colours, each in its own column cell of the layout grid and growing from the
bottom edge; the options are the bars' colours from left to right, the answer a letter.

Its pretraining counterpart, the "bars" family: 2-4 bars, asked which is the highest or the lowest
("the second bar from the left"), the colour of the tallest or the shortest, how many bars
there are (in words, or a digit), a bar's colour by its position (a word, or an option's letter
among the chart's colours in a shuffled order), their colours from left to right, and for a
one-sentence caption; two bars 40% of the time, then mostly asked which is higher, the left one or
the right one. Options that name a bar's height are the task's alone.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from hide.data.synth.draw import EMPTY_CELL, GRID, canvas, finish
from hide.data.synth.texts import (
    COLORS,
    LETTERS,
    LIST_SEP,
    MC_SUFFIX,
    NUMBER_WORDS,
    caption_prompt,
    count_answer,
    multiple_choice,
    option_chance,
    options,
    register,
    short,
)

NAME = "FigureQA"
KIND = "qa"
SPEC = {"name": NAME, "kind": KIND, "train_file": "train.json", "test_file": "test.json", "references_file": None}
FAMILY = "bars"

BAR_COLORS = ("red", "blue", "green", "orange", "purple", "pink", "brown", "black")
TASK_Q = register("Which bar is the tallest?")

# The mixture's questions and answers about bar charts (keys are names, not text: only the values
# are registered for the vocabulary).
S0 = {
    "higher": "Which bar is higher, the left one or the right one?",
    "highest": "Which bar is the highest?",
    "lowest": "Which bar is the lowest?",
    "tallest_color": "What color is the tallest bar?",
    "shortest_color": "What color is the shortest bar?",
    "n_bars": "How many bars are there?",
    "bar_colors": "List the bar colors from left to right.",
    "nth_color": "What color is the {ordinal} bar from the left?",
}
S0_ANSWERS = {
    "left": "the left one", "right": "the right one", "nth_bar": "the {ordinal} bar from the left",
    "tallest": "the tallest bar is {color}", "shortest": "the shortest bar is {color}",
    "caption": "a bar chart with {n} bars",
}
ORDINALS = register(["first", "second", "third", "fourth"])
register([list(S0.values()), list(S0_ANSWERS.values())])
register(["bar", "bars"])


def _bar_heights(rng, n: int, size: int, gap_top: float, gap_bottom: float, gap: float) -> list[float]:
    """n distinct bar heights (fractions of the canvas, whole pixels, 12-94% of it); the tallest
    stands at least `gap_top` above the next, the shortest at least `gap_bottom` below the next,
    any two differ by at least `gap`."""
    lo, hi = math.ceil(0.12 * size), math.floor(0.94 * size)
    g_top, g_bottom, g = (math.ceil(f * size - 1e-9) for f in (gap_top, gap_bottom, gap))
    while True:
        h = rng.integers(lo, hi + 1, n)
        d = np.diff(np.sort(h))
        if d.min() >= g and d[0] >= g_bottom and d[-1] >= g_top:
            return [round(float(v) / size, 4) for v in h]


def _scene_bars(rng, size: int, n: int, gap_top: float = 0.125, gap_bottom: float = 0.125,
                gap: float = 0.06) -> tuple[Image.Image, dict]:
    """A bar chart on the layout grid: n (<= 4) bars of distinct colours, each centred in its own
    column cell (left to right in the order of `colors`), 60-70% of a cell wide, growing from a
    thin axis line along the bottom edge; a thin left axis in the leftmost pixel column."""
    img, draw, S = canvas(size, (255, 255, 255))
    idx = rng.permutation(len(BAR_COLORS))[:n]
    colors = [BAR_COLORS[i] for i in idx]
    # The leftmost n columns, so that a bar's option letter is its column: a tiny ViT reads
    # "which column holds the tallest bar" far sooner than "which of the occupied columns".
    columns = list(range(n))
    rng.permutation(GRID)  # keeps the random stream of earlier versions' other draws aligned
    heights = _bar_heights(rng, n, size, gap_top, gap_bottom, gap)
    cell, px = S / GRID, S / size
    bw = cell * rng.uniform(0.6, 0.7)
    axis_w = min(px, (cell - bw) / 4)
    for col, h, c in zip(columns, heights, colors):
        x0 = (col + 0.5) * cell - bw / 2
        draw.rectangle([round(x0), round(S - h * S), round(x0 + bw) - 1, S - 1], fill=COLORS[c])
    draw.rectangle([0, S - px, S - 1, S - 1], fill=(0, 0, 0))
    draw.rectangle([0, 0.04 * S, round(axis_w) - 1, S - 1], fill=(0, 0, 0))
    return finish(img, size), {"heights": heights, "colors": colors, "columns": columns,
                               "width": round(bw / cell, 3)}


def sample(rng, size):
    """One question kind, the tallest bar: with the shortest as well, the tiny model does not learn
    the task within the training budget every method gets. The tallest bar stands 40% of the chart
    above the next: with a closer margin the tiny model learns the answer column by column and
    leaves some columns unlearnt (always answering one letter for them) on some training seeds."""
    img, meta = _scene_bars(rng, size, 4, gap_top=0.4, gap_bottom=0.125)
    pos = int(np.argmax(meta["heights"]))
    text = f"{TASK_Q}\n{options(meta['colors'])}{MC_SUFFIX}"
    meta["question"] = "tallest"
    return img, text, LETTERS[pos], None, meta


def pretraining(rng, size):
    """2-4 bars on the layout grid; two bars 40% of the time, then mostly asked which is higher."""
    u = rng.random()
    n = 2 if u < 0.4 else 3 if u < 0.7 else 4
    img, meta = _scene_bars(rng, size, n, gap=0.1)
    h, colors = meta["heights"], meta["colors"]
    hi, lo = int(np.argmax(h)), int(np.argmin(h))
    qa = [("highest", S0["highest"], S0_ANSWERS["nth_bar"].format(ordinal=ORDINALS[hi]), 2.0),
          ("lowest", S0["lowest"], S0_ANSWERS["nth_bar"].format(ordinal=ORDINALS[lo]), 1.0),
          ("tallest_color", S0["tallest_color"], S0_ANSWERS["tallest"].format(color=colors[hi]), 1.0),
          ("shortest_color", S0["shortest_color"], S0_ANSWERS["shortest"].format(color=colors[lo]), 1.0),
          ("n_bars", S0["n_bars"], count_answer(n, "bar", "bars"), 1.0),
          ("n_bars_digit", short(S0["n_bars"]), str(n), 1.0),
          ("bar_colors", S0["bar_colors"], LIST_SEP.join(colors), 1.0),
          ("caption", caption_prompt(rng), S0_ANSWERS["caption"].format(n=NUMBER_WORDS[n]), 0.5)]
    k = int(rng.integers(n))
    nth = S0["nth_color"].format(ordinal=ORDINALS[k])
    qa.append(("nth_color", short(nth), colors[k], 1.0))
    if n >= 3:
        question, letter = multiple_choice(rng, nth, colors[k], [c for c in colors if c != colors[k]], k=n)
        qa.append(("nth_color_mc", question, letter, 1.0))
    if n == 2:
        qa.append(("higher", S0["higher"], S0_ANSWERS["left"] if h[0] > h[1] else S0_ANSWERS["right"], 8.0))
    return img, qa, meta


def mixture_cell_labels(meta: dict) -> list[str]:
    """How much of a cell its column's bar covers, in quarters ("bar1".."bar4"; "empty")."""
    cells = [EMPTY_CELL] * (GRID * GRID)
    for col, h in zip(meta["columns"], meta["heights"]):
        for row in range(GRID):
            floor = (GRID - 1 - row) / GRID  # the cell's lower edge, as a height from the bottom
            covered = min(max(h - floor, 0.0), 1 / GRID) * GRID
            quarters = round(covered * 4)
            cells[row * GRID + col] = f"bar{quarters}" if quarters else EMPTY_CELL
    return cells


def mixture_counts(meta: dict) -> None:
    """None: bars are not counted in the vision tower's pretraining."""
    return None


def chance(test_records) -> float:
    """1/options per question."""
    return option_chance(NAME, test_records)
