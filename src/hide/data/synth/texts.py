"""The closed vocabulary and the words that several tasks share.

Every fixed string and word list that can reach a generated text goes through `register`, which
is what `vocabulary()` tokenizes (placeholders `{name}` removed). The package's `__init__` imports
every task module, so all texts are registered before anyone can call `vocabulary()`.
"""

from __future__ import annotations

import functools
import itertools
import re

import numpy as np

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")

_REGISTERED: list[str] = []


def register(obj):
    """Register every string inside `obj` (str, list, tuple, dict keys and values) for the
    vocabulary and return `obj` unchanged."""
    if isinstance(obj, str):
        _REGISTERED.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            register(k)
            register(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            register(v)
    return obj


@functools.lru_cache(maxsize=1)
def _vocabulary() -> tuple[str, ...]:
    words: set[str] = set()
    for text in _REGISTERED:
        words.update(TOKEN_PATTERN.findall(re.sub(r"\{\w*\}", " ", text)))
    return tuple(sorted(words))


def vocabulary() -> list[str]:
    """Every token (under `\\w+|[^\\w\\s]`, case kept) that a generated instruction, option, answer,
    caption, reference or mixture text can contain, derived from the word lists and templates.
    The `<image>` placeholder is not included (it is a special token)."""
    return list(_vocabulary())


SINGLE_WORD = register("\nAnswer the question using a single word or phrase.")
MC_SUFFIX = register("\nAnswer with the option's letter from the given choices directly.")
LETTERS = register(["A", "B", "C", "D"])
DIGITS = register([str(i) for i in range(10)])
NUMBER_WORDS = register(["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])

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
register(list(COLORS))

# ---------------------------------------------------------------------------------------------
# Multiple choice (FigureQA, IconQA): option lines "A. red", and the chance of guessing them
# ---------------------------------------------------------------------------------------------

register(["{L}. {c}", "{question}"])
_OPTION_LINE = re.compile(r"^[A-Z]\. ", re.M)


def options(names: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {n}" for i, n in enumerate(names))


def _field(record, name: str):
    return record[name] if isinstance(record, dict) else getattr(record, name)


def option_chance(task_name: str, test_records, without_options: float | None = None) -> float:
    """The mean over the questions of 100/options; a question without option lines scores
    `without_options` (an error where that is None)."""
    records = list(test_records)
    if not records:
        raise ValueError(f"chance_level({task_name!r}): no test records")
    per_question = []
    for r in records:
        n_options = len(_OPTION_LINE.findall(_field(r, "text")))
        if n_options:
            per_question.append(100.0 / n_options)
        elif without_options is not None:
            per_question.append(without_options)
        else:
            raise ValueError(f"{task_name} question without options: {_field(r, 'text')!r}")
    return float(np.mean(per_question))


# ---------------------------------------------------------------------------------------------
# The mixture's phrasing that several families share (each family's own questions and answers live
# in the module of its task)
# ---------------------------------------------------------------------------------------------

COUNT_Q = register("Count the {plural}.")
IT_IS = register("it is {x}")
LIST_SEP = register(" , ")
_YES, _NO = register(("yes", "no"))
_COUNT_0 = register("there are no {plural}")
_COUNT_1 = register("there is one {sing}")
_COUNT_N = register("there are {num} {plural}")
register(["a", "an"])


def art(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def count_answer(n: int, sing: str, plural: str) -> str:
    if n == 0:
        return _COUNT_0.format(plural=plural)
    if n == 1:
        return _COUNT_1.format(sing=sing)
    return _COUNT_N.format(num=NUMBER_WORDS[n], plural=plural)


def yes_no(flag: bool) -> str:
    return _YES if flag else _NO


# ---------------------------------------------------------------------------------------------
# Answer formats the mixture teaches on its own questions, as LLaVA-1.5's instruction data taught its
# base model: a single word or phrase (SINGLE_WORD), an option's letter (MC_SUFFIX), a caption in
# one sentence (asked in words of the mixture's own, never a task's instruction)
# ---------------------------------------------------------------------------------------------

CAPTION_PROMPTS = register(["Provide a one-sentence caption for the provided image.",
                            "Describe the image in one sentence.", "Give a short caption for the picture."])
_AND = register(["{a} and {b}", "{a} , {b} and {c}"])


def short(question: str) -> str:
    """The question asked for a single word or phrase (a colour, a name, a digit, yes or no)."""
    return question + SINGLE_WORD


def multiple_choice(rng, question: str, answer: str, distractors: list[str], k: int = 3) -> tuple[str, str]:
    """The question with `answer` and k - 1 of the distractors as options in a random order; returns
    (text, the answer's letter)."""
    picked = [distractors[i] for i in rng.permutation(len(distractors))[:k - 1]]
    names = [answer] + picked
    names = [names[i] for i in rng.permutation(len(names))]
    return f"{question}\n{options(names)}{MC_SUFFIX}", LETTERS[names.index(answer)]


def caption_prompt(rng) -> str:
    return CAPTION_PROMPTS[rng.integers(len(CAPTION_PROMPTS))]


def and_list(items: list[str]) -> str:
    """"a", "a and b", "a , b and c" (and so on, commas before the last "and")."""
    if len(items) == 1:
        return items[0]
    return " , ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------------------------
# Caption references in varied wording, as several human captioners write them
# ---------------------------------------------------------------------------------------------

_FIELD = re.compile(r"\{(\w+)\}")


class Phrasing:
    """Sentence forms with slots, each slot a list of interchangeable phrases: `draw` picks a
    form, then a phrase for each of its slots, uniformly; `all` lists every sentence it can draw.
    Fields that are not slots (an object's words, say) are passed to both as keyword values."""

    def __init__(self, forms: list[str], slots: dict[str, list[str]]):
        self.forms = register(list(forms))
        self.slots = {name: register(list(phrases)) for name, phrases in slots.items()}  # names are not text

    def _slot_names(self, form: str) -> list[str]:
        return [name for name in _FIELD.findall(form) if name in self.slots]

    def draw(self, rng, **values: str) -> str:
        form = self.forms[rng.integers(len(self.forms))]
        picked = {name: self.slots[name][rng.integers(len(self.slots[name]))] for name in self._slot_names(form)}
        return form.format(**values, **picked)

    def all(self, **values: str) -> list[str]:
        out = []
        for form in self.forms:
            names = self._slot_names(form)
            for choice in itertools.product(*(self.slots[n] for n in names)):
                out.append(form.format(**values, **dict(zip(names, choice))))
        return out


def distinct_draws(draw, k: int, tries: int = 50) -> list[str]:
    """k different sentences from `draw()` (a fresh draw while one repeats an earlier one, up to
    `tries` draws in all; then repeats are kept, so a form with few wordings still gets k)."""
    out: list[str] = []
    for _ in range(tries):
        text = draw()
        if text not in out:
            out.append(text)
        if len(out) == k:
            return out
    while len(out) < k:
        out.append(draw())
    return out
