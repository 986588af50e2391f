"""The published metrics of the general-ability sets a continual run is checked on after its
sequence (MME, POPE, SEED-Bench's image questions), read as LLaVA-1.5's evaluation reads them, and
the synthetic benchmark's own set. Each is a function of predictions and references;
`hide.data.retention` loads the sets (docs/protocol.md, "General-ability sets").

`scoring="original"` (the default) is LLaVA-1.5's protocol, quirks included; `"corrected"` reads
answers more leniently where the official reading is plainly wrong (each difference is listed in
docs/protocol.md). Every answer here is the decoded answer stripped, as LLaVA's
`llava/eval/model_vqa_loader.py` writes it (`.strip()`, line 116) and as `hide.generation` returns it.

- MME (MME's `eval_tool/calculation.py`, after LLaVA's `convert_answer_to_mme.py`): a yes/no
  answer per question, two questions per image. Per subtask acc = share of questions right,
  acc+ = share of images with both right, score = 100 acc + 100 acc+ (at most 200); perception
  = the sum over its ten subtasks (at most 2000), cognition over its four (800).
- POPE (LLaVA's `llava/eval/eval_pope.py`, which is POPE's own `evaluate.py`): yes/no
  object-presence questions, positives "yes"; accuracy, precision, recall, F1 and the share of
  "yes" answers, in %.
- SEED-Bench (LLaVA's `scripts/convert_seed_for_submission.py`): accuracy in % of the option
  letter, overall and per question type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hide.metrics.qa import SCORINGS

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def check_scoring(scoring: str) -> None:
    if scoring not in SCORINGS:
        from hide.errors import ConfigError

        raise ConfigError(f"eval.retention_scoring={scoring!r} (a retention set's `scoring`); choose one of "
                          f"{SCORINGS}")


# -- MME ----------------------------------------------------------------------------------------
def mme_answer(text: str, scoring: str = "original") -> str:
    """"yes", "no" or "other".

    original: MME's `eval_tool/calculation.py`, `parse_pred_ans` (lines 27-41) on the answer
    lower-cased (line 120): "yes" or "no" when it is that word, else "yes" when its first four
    characters contain "yes", else "no" when they contain "no", else "other" (always wrong).
    calculation.py reads the answer with the line's newline still on it ("no\\n"), which can never
    complete a "yes" or "no" inside the first four characters, so the bare answer reads the same.
    corrected: the answer's first word, when it is "yes" or "no" ("Know", "Eyes", "Nothing" are
    "other", not no / yes / no)."""
    check_scoring(scoring)
    text = text.lower()
    if scoring == "corrected":
        first = re.match(r"\s*([a-z]+)", text)
        word = first.group(1) if first else ""
        return word if word in ("yes", "no") else "other"
    if text in ("yes", "no"):
        return text
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def mme_scores(questions: list[tuple[str, str, str, str]], predictions: Mapping[str, str],
               scoring: str = "original") -> dict:
    """`questions`: (subtask, image, question id, "Yes"/"No") for every question. Per subtask acc,
    acc+ and score (in points, as calculation.py's `process_result` sums them, lines 90-151), the
    perception and cognition totals and the count of answers read as neither yes nor no.

    calculation.py pairs consecutive lines of a subtask's answer file as one image's two questions
    (`divide_chunks`, line 103); LLaVA's question file lists each image's two questions one after
    the other, so pairing by image here is the same. The floating-point operations are the
    official ones in its order: acc = right / n (sklearn's accuracy_score), acc+ = both right /
    images, score = 0 + acc * 100 + acc+ * 100, totals summed from 0 in MME's subtask order. A
    missing answer reads as "" ("other"); the totals run over the subtasks present (the loader
    refuses a release that lacks one)."""
    check_scoring(scoring)
    by_subtask: dict[str, dict[str, list[bool]]] = {}
    other = 0
    for subtask, image, qid, answer in questions:
        said = mme_answer(predictions.get(qid, ""), scoring)
        other += said == "other"
        by_subtask.setdefault(subtask, {}).setdefault(image, []).append(said == answer.strip().lower())
    subtasks = {}
    for subtask in sorted(by_subtask, key=_mme_order):
        images = by_subtask[subtask]
        answers = [right for per_image in images.values() for right in per_image]
        acc = sum(answers) / len(answers)
        acc_plus = sum(all(per_image) for per_image in images.values()) / len(images)
        score = 0
        score += acc * 100
        score += acc_plus * 100
        subtasks[subtask] = {"acc": acc * 100, "acc_plus": acc_plus * 100, "score": score}
    totals = {}
    for total, names in (("perception", MME_PERCEPTION), ("cognition", MME_COGNITION)):
        points = 0
        for name in names:
            if name in subtasks:
                points += subtasks[name]["score"]
        totals[total] = points
    return {**totals, "subtasks": subtasks, "neither_yes_nor_no": other}


def _mme_order(subtask: str) -> int:
    order = MME_PERCEPTION + MME_COGNITION
    return order.index(subtask) if subtask in order else len(order)


# -- POPE ---------------------------------------------------------------------------------------
_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$")


def pope_answer(text: str, scoring: str = "original") -> str:
    """"yes" or "no".

    original: LLaVA's `llava/eval/eval_pope.py`, lines 11-20 (POPE's `evaluate.py`, lines 12-21):
    the text before the first "." ; commas removed; split on single spaces (a newline or tab does
    not separate words); "no" when one of the pieces is exactly "No", "not" or "no", else "yes"
    (so "NO", "No!" and "Not" read as yes, and an empty answer as yes).
    corrected: the same first sentence split on any whitespace and commas, each word lower-cased
    and stripped of the punctuation around it; the first word decides when it is "yes" or "no", else
    "no" when a word is "no" or "not", else "yes"."""
    check_scoring(scoring)
    if text.find(".") != -1:
        text = text.split(".")[0]
    if scoring == "corrected":
        # a comma separates words ("No,there is" is "No there is", not "Nothere is")
        words = [_EDGE_PUNCTUATION.sub("", word.lower()) for word in text.replace(",", " ").split()]
        if words and words[0] in ("yes", "no"):
            return words[0]
        return "no" if any(word in ("no", "not") for word in words) else "yes"
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_scores(labels: Mapping[str, str], predictions: Mapping[str, str], scoring: str = "original") -> dict:
    """`labels`: question id -> "yes"/"no" (the loader accepts no other label). Accuracy,
    precision, recall, F1 (positive: yes) and yes-ratio in %: eval_pope.py's values (lines 37-56),
    computed with its operations, times 100. A missing prediction reads as an empty answer
    ("yes"). Where eval_pope.py divides by zero (no "yes" answer: precision; neither precision nor
    recall: F1) and stops, the value here is 0."""
    check_scoring(scoring)
    tp = fp = tn = fn = 0
    for qid, label in labels.items():
        said = pope_answer(predictions.get(qid, ""), scoring) == "yes"
        truth = label != "no"  # eval_pope.py:23-26: every label other than "no" is positive
        tp += said and truth
        fp += said and not truth
        tn += not said and not truth
        fn += not said and truth
    total = tp + fp + tn + fn
    precision = float(tp) / float(tp + fp) if tp + fp else 0.0
    recall = float(tp) / float(tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = (tp + tn) / total
    yes_ratio = (tp + fp) / total
    return {"accuracy": accuracy * 100, "precision": precision * 100, "recall": recall * 100, "f1": f1 * 100,
            "yes_ratio": yes_ratio * 100}


# -- SEED-Bench ---------------------------------------------------------------------------------
_LETTER = re.compile(r"\b([A-Z])\b")


def option_letter(text: str, letters: str = "ABCD") -> str | None:
    """The option an answer names (the `corrected` reading): its first character if that is one
    of `letters` ("B", "B.", "B) a cat"), else the first stand-alone capital among them ("(D)",
    "The answer is C"), else None."""
    text = text.strip()
    if text and text[0] in letters and (len(text) == 1 or not text[1].isalpha()):
        return text[0]
    for match in _LETTER.finditer(text):
        if match.group(1) in letters:
            return match.group(1)
    return None


def seed_right(prediction: str, answer: str, scoring: str = "original") -> bool:
    """original: LLaVA's `scripts/convert_seed_for_submission.py`, line 34: right only when the
    answer is exactly the letter (`row['text'] == question_data['answer']`): "B." and "(B)" are
    wrong. corrected: the letter `option_letter` reads."""
    check_scoring(scoring)
    if scoring == "corrected":
        return option_letter(prediction) == answer
    return prediction == answer


def seed_scores(answers: Mapping[str, str], predictions: Mapping[str, str],
                question_types: Mapping[str, str] | None = None, scoring: str = "original") -> dict:
    """`answers`: question id -> the correct letter. Accuracy in % overall and per question type,
    as convert_seed_for_submission.py's `eval_single` counts them (lines 20-47): a question
    without a prediction counts, as wrong (lines 30-32); per type correct / count * 100, overall
    the summed counts, total_correct / total_count * 100."""
    check_scoring(scoring)
    types = question_types or {}
    counts: dict[str, list[int]] = {}
    for qid, answer in answers.items():
        per_type = counts.setdefault(types.get(qid, ""), [0, 0])
        per_type[0] += 1
        per_type[1] += seed_right(predictions[qid], answer, scoring) if qid in predictions else 0
    total_count = total_correct = 0
    by_type = {}
    for name in sorted(counts):
        count, correct = counts[name]
        by_type[name] = correct / count * 100
        total_count += count
        total_correct += correct
    scores = {"accuracy": total_correct / total_count * 100}
    if question_types:
        scores["by_question_type"] = by_type
    return scores
