"""CoIN's scorers, one per task, each a function of predictions and references (0-100).

As CoIN's evaluation code scores them (docs/protocol.md, "CoIN"):
- ScienceQA: the option letter read from the answer (a bare letter, "B." / "B)", or "The answer
  is B"), accuracy against the problem's answer; a letter beyond the problem's options is wrong.
- TextVQA: VQA accuracy against the ten annotator answers, after the standard answer
  normalisation (`vqa_normalize`): each answer scores the mean over the ten leave-one-out subsets
  of min(1, matches among the other nine / 3).
- VizWiz, VQAv2 and OCR-VQA: exact match against the single answer, ignoring case.
- ImageNet: a hit when the prediction is a substring of the answer or the answer of the
  prediction (ignoring case). `original`: predictions and answers paired by position in their
  files, and an empty prediction is a hit (the empty string is a substring of every answer), as
  CoIN's code does; `corrected`: paired by question id, an empty prediction a miss.
- GQA: exact match against the question's answer in the official test-dev balanced questions,
  after lower-casing and dropping a final period.
- Grounding: a hit when the predicted box's IoU with the reference box is > 0.5. Predicted boxes
  are [x1, y1, x2, y2] in [0, 1] of the image padded to a centred square (LLaVA's convention);
  reference boxes [x, y, w, h] in pixels. `original` reads the box as CoIN's parser does: the
  brackets stripped, then one more character from each end, which cuts the last digit of the
  last coordinate; `corrected` reads the four numbers as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

SCORINGS = ("original", "corrected")

# -- VQA answer normalisation (the VQA / EvalAI answer processor) ------------------------------
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id": "I'd", "Ill": "I'll", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itll": "it'll",
    "its": "it's", "lets": "let's", "mightve": "might've", "mustve": "must've", "mustnt": "mustn't",
    "shant": "shan't", "shed": "she'd", "shes": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "thatd": "that'd", "thats": "that's", "thered": "there'd", "theres": "there's", "theyd": "they'd",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "wasnt": "wasn't", "wed": "we'd",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "yall": "y'all", "youd": "you'd", "youll": "you'll", "youre": "you're", "youve": "you've",
}
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!"]
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # a period that is not a decimal point
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")


def vqa_normalize(answer: str) -> str:
    """The standard VQA answer normalisation: whitespace, punctuation (removed next to a space or
    in a number like 1,000, else replaced by a space; periods that are not decimal points
    dropped), lower case, number words to digits, articles dropped, contractions restored."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in _PUNCTUATION:
        if (p + " " in text or " " + p in text) or _COMMA_IN_NUMBER.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out)
    words = []
    for word in out.lower().split():
        word = _NUMBERS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy (0-1) of one prediction against the annotators' answers (ten in VQA and
    TextVQA): the mean, over leaving each annotator out, of min(1, matches among the rest / 3)."""
    said = vqa_normalize(prediction)
    given = [vqa_normalize(a) for a in answers]
    scores = []
    for left_out in range(len(given)):
        others = given[:left_out] + given[left_out + 1:]
        scores.append(min(1.0, sum(a == said for a in others) / 3))
    return sum(scores) / len(scores)


def textvqa_score(predictions: Mapping[str, str], answers: Mapping[str, Sequence[str]]) -> dict:
    """Mean VQA accuracy (%) over the questions of `answers` (question id -> annotator answers)."""
    return {"score": 100.0 * sum(vqa_accuracy(predictions.get(q, ""), a) for q, a in answers.items()) / len(answers)}


# -- option letters (ScienceQA) ------------------------------------------------------------------
_ANSWER_IS = re.compile(r"[Tt]he answer is \(?([A-Z])\)?")
_LEADING_LETTER = re.compile(r"^\(?([A-Z])[.):]")


def scienceqa_letter(prediction: str, num_options: int) -> str | None:
    """The option letter an answer gives, if it is one of the first `num_options` letters."""
    text = prediction.strip()
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:num_options]
    if len(text) == 1:
        letter = text
    else:
        match = _LEADING_LETTER.match(text) or _ANSWER_IS.search(text)
        letter = match.group(1) if match else None
    return letter if letter is not None and letter in letters else None


def scienceqa_score(predictions: Mapping[str, str], problems: Mapping[str, tuple[str, int]]) -> dict:
    """`problems`: question id -> (the correct letter, the number of options)."""
    right = sum(scienceqa_letter(predictions.get(q, ""), n) == letter for q, (letter, n) in problems.items())
    return {"score": 100.0 * right / len(problems)}


# -- exact matches ---------------------------------------------------------------------------------
def exact_match_ignoring_case(predictions: Mapping[str, str], answers: Mapping[str, str]) -> dict:
    """VizWiz, VQAv2 and OCR-VQA in CoIN: the prediction equals the single answer, up to case and
    surrounding whitespace."""
    right = sum(predictions.get(q, "").strip().lower() == a.strip().lower() for q, a in answers.items())
    return {"score": 100.0 * right / len(answers)}


def gqa_score(predictions: Mapping[str, str], answers: Mapping[str, str]) -> dict:
    """Exact match after lower-casing and dropping a final period (the official balanced answers)."""
    def clean(text: str) -> str:
        return text.strip().lower().rstrip(".").strip()

    right = sum(clean(predictions.get(q, "")) == clean(a) for q, a in answers.items())
    return {"score": 100.0 * right / len(answers)}


def imagenet_score(predictions: Mapping[str, str], answers: Mapping[str, str], scoring: str = "original") -> dict:
    """Substring either way, ignoring case. `original`: paired by position (the order of the two
    mappings), an empty prediction a hit; `corrected`: paired by question id, empty a miss."""
    _check_scoring(scoring)

    def hit(said: str, answer: str) -> bool:
        said, answer = said.strip().lower(), answer.strip().lower()
        if not said and scoring == "corrected":
            return False
        return said in answer or answer in said

    if scoring == "original":
        pairs = list(zip(predictions.values(), answers.values()))  # a missing answer shifts every later pair
    else:
        pairs = [(predictions.get(q, ""), a) for q, a in answers.items()]
    return {"score": 100.0 * sum(hit(s, a) for s, a in pairs) / len(answers)}


# -- boxes (Grounding) -----------------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?|-?\.\d+")


def parse_box(text: str, scoring: str = "original") -> list[float] | None:
    """[x1, y1, x2, y2] from an answer like "[0.12, 0.34, 0.56, 0.78]"; None if there are not four
    numbers. `original` strips the brackets and then one more character from each end first."""
    _check_scoring(scoring)
    text = text.strip()
    if scoring == "original":
        text = text.strip("[]")[1:-1]
    numbers = _NUMBER.findall(text)
    if len(numbers) != 4:
        return None
    return [float(n) for n in numbers]


def box_in_pixels(box: Sequence[float], width: float, height: float) -> list[float]:
    """A box in [0, 1] of the image padded to a centred square, in the image's pixels."""
    side = max(width, height)
    dx, dy = (side - width) / 2, (side - height) / 2
    x1, y1, x2, y2 = box
    return [x1 * side - dx, y1 * side - dy, x2 * side - dx, y2 * side - dy]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def grounding_score(predictions: Mapping[str, str], boxes: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                    scoring: str = "original") -> dict:
    """`boxes`: question id -> (the reference [x, y, w, h] in pixels, the image's [width, height]).
    Hits: IoU > 0.5; an unreadable answer is a miss."""
    hits = unreadable = 0
    for qid, ((x, y, w, h), (width, height)) in boxes.items():
        box = parse_box(predictions.get(qid, ""), scoring)
        if box is None:
            unreadable += 1
            continue
        hits += iou(box_in_pixels(box, width, height), [x, y, x + w, y + h]) > 0.5
    return {"score": 100.0 * hits / len(boxes), "unreadable": unreadable}


def _check_scoring(scoring: str) -> None:
    if scoring not in SCORINGS:
        raise ValueError(f"scoring {scoring!r}; choose one of {SCORINGS}")
