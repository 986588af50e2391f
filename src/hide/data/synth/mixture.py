"""The pretraining mixture: the base model's own instruction data. Each family is the pretraining
counterpart of one task (its module's `pretraining`): the task's kind of scene, drawn by the
task's own drawing code, under other instructions and answer formats (yes/no, "it is red", number
words) beside the tasks' formats, and captions in a phrasing of its own. The tasks' own
instructions are asked too, each only about scenes its task never draws (`task_format_turns`:
"What is the object in the image?" about a table top's one object, "Generate a caption for the
image." about shape blocks), as LLaVA-1.5's instruction data taught its base the benchmarks'
answer formats on other images. Its images are drawn from the half of the image space that test
images are not (`build.image_half`). What it shares with each task's test set (questions,
answers, caption phrases) is measured by `experiments/mixture_overlap.py`.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from hide.data.synth.clevr_math import CLEVR_Q
from hide.data.synth.object_caption import OBJECT_CAPTION_Q
from hide.data.synth.renditions import RENDITIONS_Q
from hide.data.synth.scene_caption import SCENE_Q
from hide.data.synth.tasks import TASKS
from hide.data.synth.texts import CAPTION_PROMPTS, COLORS, MC_SUFFIX, multiple_choice, register, vocabulary

# Each family's `pretraining` returns (image, [(key, question, answer, weight), ...], meta); a
# conversation asks up to MIXTURE_TURNS of the questions, drawn without replacement in proportion
# to their weights.
FAMILIES = {task.FAMILY: task for task in TASKS}
# Share of each family in the mixture: weighted towards what a ViT trained from scratch learns slowly.
FAMILY_WEIGHTS = {"shapes": 0.35, "bars": 0.15, "icons": 0.12, "clevr": 0.15, "table": 0.12, "outdoor": 0.11}
# Questions per mixture conversation (fewer where a family has fewer). The system prompt and the
# image tokens are most of a sequence, so each further question adds supervision for ~12 tokens.
MIXTURE_TURNS = 3
# Multiple choice is the format a tiny language model learns last: it has to find the option that
# says what it knows and answer with that option's letter. So every family's option questions
# weigh MC_EMPHASIS times their own weight, and a LOOKUP_SHARE of the conversations ends with
# a question that needs no image ("Which option is red?"), the lookup alone, as a language
# model's text pretraining would have taught it before its visual instruction tuning.
MC_EMPHASIS = 3.0
LOOKUP_SHARE = 0.25
LOOKUP_Q = register("Which option is {x}?")
# A language model's text pretraining has produced every word of its vocabulary; this decoder's
# only pretraining is the mixture, whose answers use part of the words, so the output rows of the
# rest (the captions' "house", "lake", "beside") were only ever pushed down. With a repeat share,
# that share of the conversations gets a last, image-free turn ("Write this sentence" and a line of 4-8
# words drawn from the whole vocabulary, answered with the same words): every word produced, no
# scene described.
REPEAT_Q = register("Write this sentence")  # words the vocabulary has: the tokenizer stays the same
REPEAT_WORDS = (4, 8)
# A task's instruction asked about a mixture scene its task never draws weighs this much among the
# scene's questions (the families' own weigh 0.5-8); naming a table top's one object most, since
# few scenes hold one object.
FORMAT_WEIGHTS = {"format_object": 6.0, "format_subtract": 3.0, "format_object_caption": 3.0,
                  "format_scene_caption": 3.0}


def sample(rng, size, repeat_share: float = 0.0):
    """One mixture conversation: a family drawn by FAMILY_WEIGHTS, one of its scenes and up to
    MIXTURE_TURNS of its questions (and, in `repeat_share` of them, a repeat turn after those);
    returns (image, [(question, answer), ...], meta)."""
    names = list(FAMILY_WEIGHTS)
    cum = np.cumsum([FAMILY_WEIGHTS[n] for n in names])
    family = names[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(names) - 1)]
    img, qa, meta = FAMILIES[family].pretraining(rng, size)
    qa = [*qa, *task_format_turns(rng, family, meta, qa)]
    k = min(len(qa), MIXTURE_TURNS)
    w = np.array([x[3] * (MC_EMPHASIS if x[1].endswith(MC_SUFFIX) else 1.0) for x in qa], dtype=np.float64)
    picked = [qa[int(i)] for i in rng.choice(len(qa), size=k, replace=False, p=w / w.sum())]
    if rng.random() < LOOKUP_SHARE:
        picked = [*picked[:MIXTURE_TURNS - 1], ("option_lookup", *lookup_turn(rng), 1.0)]
    if repeat_share and rng.random() < repeat_share:  # drawn last: the rest of the conversation is unchanged
        picked.append(("repeat", *repeat_turn(rng), 1.0))
    meta = {"family": family, "asked": [x[0] for x in picked], **meta}
    return img, [(q, a) for _, q, a, _ in picked], meta


def task_format_turns(rng, family: str, meta: dict, qa: list) -> list[tuple[str, str, str, float]]:
    """The tasks' own instructions about a mixture scene that no task draws, answered in the
    task's format: Renditions' "What is the object in the image?" about a table top's one object
    ("cup"), ClevrMath's "Subtract all red objects. How many objects are left?" about a table top
    (a digit), ObjectCaption's "Generate a caption for the image." about shape blocks and bar
    charts, SceneCaption's "Write a brief caption for the image." about CLEVR scenes and icon
    grids (the scene's own caption from the family, `qa`'s "caption" answer). Returns
    (key, question, answer, weight) entries for the scene's question list (FORMAT_WEIGHTS)."""
    turns = []
    caption = next((answer for key, _, answer, _ in qa if key == "caption"), None)
    if family == "table":
        objs = meta["objects"]
        if len(objs) == 1:
            turns.append(("format_object", RENDITIONS_Q, objs[0]["kind"]))
        color = objs[rng.integers(len(objs))]["color"]
        left = sum(o["color"] != color for o in objs)
        turns.append(("format_subtract", CLEVR_Q.format(what=f"{color} objects"), str(left)))
    elif family in ("shapes", "bars") and caption is not None:
        turns.append(("format_object_caption", OBJECT_CAPTION_Q, caption))
    elif family in ("clevr", "icons") and caption is not None:
        turns.append(("format_scene_caption", SCENE_Q, caption))
    return [(key, question, answer, FORMAT_WEIGHTS[key]) for key, question, answer in turns]


def lookup_turn(rng) -> tuple[str, str]:
    """An image-free option lookup: "Which option is red?" over 3-4 colours; (question, letter)."""
    names = list(COLORS)
    x = names[rng.integers(len(names))]
    return multiple_choice(rng, LOOKUP_Q.format(x=x), x, [c for c in names if c != x], k=3 + int(rng.integers(2)))


def repeat_turn(rng) -> tuple[str, str]:
    """An image-free repeat turn: "Write this sentence" and 4-8 vocabulary words; (question, words)."""
    words = repeat_vocabulary()
    chosen = " ".join(words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(*REPEAT_WORDS, endpoint=True))))
    return f"{REPEAT_Q}\n{chosen}", chosen


@functools.lru_cache(maxsize=1)
def repeat_vocabulary() -> tuple[str, ...]:
    """The words a repeat turn draws from: every lowercase word of the vocabulary, sorted
    (computed once, not per conversation)."""
    return tuple(sorted({w.lower() for w in vocabulary() if re.fullmatch(r"\w+", w)}))


def mixture_cell_labels(meta: dict) -> list[str] | None:
    """What each cell of the 4x4 layout grid holds in a mixture scene (row-major, 16 strings), for
    the vision tower's dense pretraining; None for the free scenes (table tops, outdoor scenes).

    Icons: the icon's kind; CLEVR objects: colour and shape; shape blocks: the class in each of its
    2x2 cells; a single large shape: its class in every cell (the object covers the canvas); bar
    charts: how much of a cell its column's bar covers, in quarters ("bar1".."bar4"; "empty")."""
    family = FAMILIES.get(meta.get("family"))
    return family.mixture_cell_labels(meta) if family else None


def mixture_counts(meta: dict) -> dict[str, int] | None:
    """How many objects of each kind a mixture scene holds (zeros included), for the vision
    tower's counting pretraining; None for scenes without counts (shapes, bars). Icons: per icon
    kind; CLEVR objects: per colour and per shape; table tops: per kind and per colour; all three:
    the total; outdoor scenes: trees, houses and people."""
    family = FAMILIES.get(meta.get("family"))
    return family.mixture_counts(meta) if family else None


def states_a_fact(question: str) -> bool:
    """Whether a mixture question's answer is a fact of the image alone: not an option's letter
    (which depends on the order of the options) and not a caption."""
    return (not question.endswith(MC_SUFFIX) and question not in CAPTION_PROMPTS
            and question not in (OBJECT_CAPTION_Q, SCENE_Q) and not question.startswith(REPEAT_Q))
