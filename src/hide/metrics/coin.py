"""CoIN's scorers, one per task, each a function of predictions ({question_id: answer}) and the
references its official script reads; each returns {"score": 0-100, ...counts}.

`scoring="original"` reproduces CoIN's evaluation code (github.com/zackschen/CoIN,
ETrain/Eval/LLaVA/CoIN/) exactly, quirks included: the same parsing, the same comparisons, the
same denominator and the same floating-point arithmetic, so that a score equals the official
script's on the same answers. `scoring="corrected"` changes only what docs/protocol.md ("CoIN")
lists, each with the case, the official result and ours: ImageNet pairs answers by question id
and counts an empty answer as a miss; Grounding reads the four numbers of a box as written.

`order` gives the question ids in question-file order (the official result file is written in
that order; only ImageNet's pairing depends on it). `keys` maps a question id to the file's
question_id where the file repeats one (`TestRecord.source_id`): the official scripts look
references and answers up in dicts keyed by the file's id, so a repeated id reads the last
record's reference, and where the answers themselves go into a dict (ScienceQA, GQA) the last
answer of the id is the one scored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from hide.metrics.qa import SCORINGS


def _check_scoring(scoring: str) -> None:
    if scoring not in SCORINGS:
        raise ValueError(f"scoring {scoring!r}; choose one of {SCORINGS}")


def _answered(predictions: Mapping[str, str], order: Iterable[str],
              keys: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(the file's question_id, answer) of the answered questions in question-file order: the
    lines of the official merged result file, which every official script walks."""
    keys = keys or {}
    return [(keys.get(q, q), predictions[q]) for q in order if q in predictions]


def _last_answer_per_id(predictions: Mapping[str, str], order: Iterable[str],
                        keys: Mapping[str, str] | None = None) -> dict[str, str]:
    """The answers as a dict by the file's question_id, the last line of an id winning (the
    official `{p["question_id"]: p for p in results}`)."""
    return dict(_answered(predictions, order, keys))


# -- ScienceQA ---------------------------------------------------------------------------------
SCIENCEQA_OPTIONS = ("A", "B", "C", "D", "E")  # the script's --options default
_ONE_CHARACTER_WORD = re.compile(r"\b(\w)\b")
SCIENCEQA_MISSING = "FAILED"  # what the script reads for a split question with no answer


def scienceqa_parse(text: str) -> str:
    """The answer CoIN's ETrain/Eval/LLaVA/CoIN/eval_science_qa.py reads from a prediction
    (lines 65-75): the text itself when it is one of the options A-E; its first character when
    it is an option followed by ". "; else the first one-character word (a letter, digit or
    underscore standing alone), upper-cased; else "FAILED". So "b" reads as "B", "Answer: C" as
    "C", "B, because ..." as "B", and "It's A" as "S" (the "s" of "It's" stands alone)."""
    if text in SCIENCEQA_OPTIONS:
        return text
    if len(text) >= 3 and text[0] in SCIENCEQA_OPTIONS and text[1:3] == ". ":
        return text[0]
    words = _ONE_CHARACTER_WORD.findall(text)
    return words[0].upper() if words else SCIENCEQA_MISSING


def scienceqa_choice(answer: str, num_choices: int) -> int:
    """The option index of a parsed answer, -1 when it is not among the problem's first
    `num_choices` options (eval_science_qa.py:28-35, `get_pred_idx`, without its dead random guess)."""
    options = SCIENCEQA_OPTIONS[:num_choices]
    return SCIENCEQA_OPTIONS.index(answer) if answer in options else -1


def scienceqa_score(predictions: Mapping[str, str], problems: Mapping[str, tuple[int, int]],
                    split: Sequence[str], order: Iterable[str] | None = None,
                    keys: Mapping[str, str] | None = None) -> dict:
    """Accuracy over the ScienceQA split, as CoIN's ETrain/Eval/LLaVA/CoIN/eval_science_qa.py.

    `problems`: question id -> (the answer's index, the number of choices), from problems.json;
    `split`: the ids scored, pid_splits.json's "test" list (line 43). Every split question counts
    in the denominator (line 98): one without an answer reads as "FAILED" (line 59) and is wrong,
    and answers to questions outside the split are not scored at all (line 57). The answers go
    into a dict by question id (line 46): of a repeated id, the last answer is scored."""
    said_by_id = _last_answer_per_id(predictions, predictions if order is None else order, keys)
    correct = 0
    for qid in split:
        answer, num_choices = problems[qid]
        said = scienceqa_parse(said_by_id.get(qid, SCIENCEQA_MISSING))
        correct += scienceqa_choice(said, num_choices) == answer
    total = len(split)
    return {"score": correct / total * 100 if total else 0.0, "correct": correct, "count": total}


# -- TextVQA: the m4c evaluator (EvalAI's answer processor) --------------------------------------
# CoIN's ETrain/Eval/LLaVA/CoIN/m4c_evaluator.py, `EvalAIAnswerProcessor`. Its table is looked up
# after lower-casing, so the entries with capitals ("Im", "Ive", "Id've", ...) never apply; and
# after "'s" has been split off, so "he's" stays "he 's" while "hes" becomes "he's".
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = ("a", "an", "the")
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!")
# The official pattern opens with "(?!<=\d)", a lookahead (not a lookbehind) that can never fail in
# front of a ".": so every period not followed by a digit goes.
_PERIOD = re.compile(r"\.(?!\d)")
# The official call is `PERIOD_STRIP.sub("", text, re.UNICODE)`, whose third argument is the count:
# re.UNICODE is 32, so at most the first 32 such periods are removed.
_PERIODS_REMOVED = 32
_COMMA_IN_NUMBER = re.compile(r"(?<=\d)(,)+(?=\d)")


def m4c_normalize(answer: str) -> str:
    """An answer as CoIN's ETrain/Eval/LLaVA/CoIN/m4c_evaluator.py normalises it (lines 181-218):
    lower-cased, "," and "?" deleted and "'s" split off as its own word ("he's" -> "he 's"); new
    lines and tabs as spaces; each other punctuation mark deleted when a space touches one of
    them anywhere in the text, else replaced by a space ("coca-cola" -> "coca cola"); periods not
    followed by a digit deleted (at most 32); number words to digits, articles dropped, the
    contraction table applied word by word."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    out = text
    # Deleting "," above means no comma is left for the comma-in-a-number test: kept as written.
    spaced = _COMMA_IN_NUMBER.search(text) is not None
    for mark in _PUNCTUATION:
        if mark + " " in text or " " + mark in text or spaced:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    out = _PERIOD.sub("", out, count=_PERIODS_REMOVED)
    words = [_NUMBERS.get(word, word) for word in out.lower().split()]
    words = [word for word in words if word not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words)


def m4c_answer_scores(annotator_answers: Sequence[str]) -> dict[str, float]:
    """Each distinct normalised annotator answer's soft score, as m4c_evaluator.py:225-246: the
    mean over the ten annotators of min(1, matches among the other nine / 3)."""
    answers = [m4c_normalize(a) for a in annotator_answers]
    scores = {}
    for unique in set(answers):
        accs = []
        for left_out in range(len(answers)):
            matching = sum(1 for j, a in enumerate(answers) if j != left_out and a == unique)
            accs.append(min(1, float(matching) / 3))
        scores[unique] = sum(accs) / len(accs)
    return scores


def textvqa_score(predictions: Mapping[str, str], annotations: Mapping[str, Sequence[str]],
                  order: Iterable[str], keys: Mapping[str, str] | None = None) -> dict:
    """VQA accuracy as CoIN's ETrain/Eval/LLaVA/CoIN/eval_textvqa.py with m4c_evaluator.py's
    TextVQAAccuracyEvaluator: each answered question (in test-file order) scores its normalised
    answer's soft score among TextVQA_0.5.1_val.json's ten answers (0 when none matches); the
    score is the mean over the answered questions (eval_textvqa.py:40-49)."""
    scores = []
    for qid, said in _answered(predictions, order, keys):
        scores.append(m4c_answer_scores(annotations[qid]).get(m4c_normalize(said), 0.0))
    accuracy = sum(scores) / len(scores) if scores else 0.0
    return {"score": 100.0 * accuracy, "count": len(scores)}


# -- ImageNet ----------------------------------------------------------------------------------
def imagenet_score(predictions: Mapping[str, str], answers: Sequence[tuple[str, str]],
                   scoring: str = "original") -> dict:
    """A hit when the answer is a substring of the prediction or the prediction of the answer,
    case-sensitively, as CoIN's ETrain/Eval/LLaVA/CoIN/eval_ImagetNet.py (line 26).

    `answers`: (question id, answer) in test-file order. `original` pairs the k-th answered
    question with the k-th answer of the file and divides by the number of answers given (lines
    17-27), so a missing answer shifts every later pair; an empty prediction is a hit (the empty
    string is in every answer). `corrected` pairs by question id, divides by the number of
    questions and counts an empty (or missing) prediction as a miss."""
    _check_scoring(scoring)
    if scoring == "original":
        said = [text for _, text in _answered(predictions, (q for q, _ in answers))]
        pairs = [(text, answers[i][1]) for i, text in enumerate(said)]
    else:
        pairs = [(predictions.get(q, ""), answer) for q, answer in answers]
    right = sum(1 for text, answer in pairs
                if (scoring == "original" or text) and (answer in text or text in answer))
    total = len(pairs)
    return {"score": 100. * right / total if total else 0.0, "correct": right, "count": total}


# -- GQA ---------------------------------------------------------------------------------------
def gqa_prediction(text: str) -> str:
    """The prediction CoIN's ETrain/Eval/LLaVA/CoIN/convert_gqa_for_eval.py writes (line 14):
    trailing periods removed, then lower-cased; surrounding spaces are kept."""
    return text.rstrip(".").lower()


def gqa_score(predictions: Mapping[str, str], questions: Mapping[str, tuple[str, bool]],
              order: Iterable[str], keys: Mapping[str, str] | None = None) -> dict:
    """Accuracy as CoIN's ETrain/Eval/LLaVA/CoIN/eval_gqa.py: `questions` is question id ->
    (answer, isBalanced) from testdev_balanced_questions.json; each answered question whose
    isBalanced is true scores 1 when the converted prediction equals the answer exactly (lines
    348-361); the mean over them, times 100 (lines 158-161, 425). The answers go into a dict by
    question id (line 135): of a repeated id, the last answer is scored, once."""
    scores = []
    for qid, said in _last_answer_per_id(predictions, order, keys).items():
        answer, balanced = questions[qid]
        if balanced:
            scores.append(float(1 if gqa_prediction(said) == answer else 0))
    accuracy = float(sum(scores)) / len(scores) if scores else 0.0
    return {"score": accuracy * 100, "count": len(scores)}


# -- VizWiz, VQAv2, OCR-VQA: one answer per question --------------------------------------------
def upper_case_match_score(predictions: Mapping[str, str], answers: Mapping[str, str],
                           order: Iterable[str], keys: Mapping[str, str] | None = None) -> dict:
    """VizWiz and VQAv2 as CoIN's ETrain/Eval/LLaVA/CoIN/eval_vizwiz.py (line 28) and
    eval_vqav2.py (line 28): a hit when the prediction upper-cased equals the answer
    upper-cased, with no stripping ("yes " is not "yes"; upper-casing makes "straße" equal
    "STRASSE"); the share of answered questions. `answers` is keyed as `keys` reads (the last
    record of a repeated id in the file: eval_vizwiz.py:18)."""
    answered = _answered(predictions, order, keys)
    right = sum(1 for qid, said in answered if said.upper() == answers[qid].upper())
    total = len(answered)
    return {"score": 100. * right / total if total else 0.0, "correct": right, "count": total}


def ocrvqa_score(predictions: Mapping[str, str], answers: Mapping[str, str], order: Iterable[str],
                 keys: Mapping[str, str] | None = None) -> dict:
    """As CoIN's ETrain/Eval/LLaVA/CoIN/eval_ocrvqa.py: a prediction that contains
    "Unanswerable" (case-sensitive) is a miss whatever the answer (lines 27-28); otherwise a hit
    when it equals the answer lower-cased on both sides (line 29); the share of answered
    questions (lines 22, 32). `answers` as `upper_case_match_score`'s (eval_ocrvqa.py:18)."""
    answered = _answered(predictions, order, keys)
    right = sum(1 for qid, said in answered
                if "Unanswerable" not in said and said.lower() == answers[qid].lower())
    total = len(answered)
    return {"score": 100. * right / total if total else 0.0, "correct": right, "count": total}


# -- Grounding ---------------------------------------------------------------------------------
def reference_box(text: str) -> list[float]:
    """A reference `answer_bbox` ("[x1, y1, x2, y2]", in [0, 1] of the image padded to a centred
    square), read as CoIN's ETrain/Eval/LLaVA/CoIN/eval_grounding.py reads it (lines 63-65):
    brackets deleted, split at commas, `float` of each piece. Raises ValueError if that fails."""
    return [float(piece) for piece in text.replace("[", "").replace("]", "").split(",")]


def parse_box(text: str, scoring: str = "original") -> list[float] | None:
    """A predicted box, or None when it does not read as four numbers. `original` as
    eval_grounding.py:68-75: brackets deleted, then one more character cut from each end,
    split at commas, `float` of each piece; so "[0.12, 0.34, 0.56, 0.78]" reads as [0.12, 0.34,
    0.56, 0.7] and any words around the box make it unreadable. `corrected` does not cut."""
    _check_scoring(scoring)
    text = text.replace("[", "").replace("]", "")
    if scoring == "original":
        text = text[1:-1]
    try:
        box = [float(piece) for piece in text.split(",")]
    except ValueError:
        return None
    return box if len(box) == 4 else None


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes, computed as eval_grounding.py:44-50
    (a box with x2 < x1 or y2 < y1 keeps its negative area in the union)."""
    x1, y1, x2, y2 = a
    x21, y21, x22, y22 = b
    intersection = max(0, min(x2, x22) - max(x1, x21)) * max(0, min(y2, y22) - max(y1, y21))
    union = (x2 - x1) * (y2 - y1) + (x22 - x21) * (y22 - y21) - intersection
    return intersection / union if union > 0 else 0


def grounding_score(predictions: Mapping[str, str], boxes: Mapping[str, tuple[Sequence[float], float]],
                    order: Iterable[str], scoring: str = "original", keys: Mapping[str, str] | None = None) -> dict:
    """As CoIN's ETrain/Eval/LLaVA/CoIN/eval_grounding.py: `boxes` is question id -> (the
    reference box read by `reference_box`, max(size) of the record). Both boxes are scaled by
    max(size) (lines 79-81; both are already in the padded square's [0, 1], so this changes
    the IoU by rounding only), and a hit is IoU > 0.5 (line 84). An unreadable prediction is a
    miss that still counts (lines 59, 72-75); the score is the share of answered questions. `boxes`
    as `upper_case_match_score`'s answers (eval_grounding.py:55)."""
    right = unreadable = total = 0
    for qid, said in _answered(predictions, order, keys):
        total += 1
        box = parse_box(said, scoring)
        if box is None:
            unreadable += 1
            continue
        reference, side = boxes[qid]
        right += iou([x * side for x in box], [x * side for x in reference]) > 0.5
    return {"score": 100. * right / total if total else 0.0, "correct": right, "count": total,
            "unreadable": unreadable}
