"""The published metrics of the general-ability sets a continual run is checked on after its
sequence (MME, POPE, SEED-Bench's image questions) and of the synthetic benchmark's own set.
Each is a function of predictions and references; `hide.data.retention` loads the sets.

- MME: a yes/no answer per question, two questions per image. Per subtask, acc = % of questions
  right, acc+ = % of images with both questions right, score = acc + acc+ (at most 200);
  perception = the sum over its ten subtasks (at most 2000), cognition over its four (800).
  An answer is "yes" or "no" when it is that word, else by which of them its first four
  characters contain (lower-cased), else "other" (always wrong).
- POPE: yes/no object-presence questions; positives are "yes". The answer is read from its first
  sentence: "no" when one of its words is "no", "No" or "not", else "yes". Accuracy, precision,
  recall, F1 and the share of "yes" answers, in %.
- SEED-Bench: the option letter of each answer, accuracy in % over the image questions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def mme_answer(text: str) -> str:
    """"yes", "no" or "other", as MME's own scoring reads an answer."""
    text = text.strip().lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def mme_scores(questions: list[tuple[str, str, str, str]], predictions: Mapping[str, str]) -> dict:
    """`questions`: (subtask, image, question id, "Yes"/"No") for every question. Returns the
    per-subtask acc, acc+ and score, the perception and cognition totals (over the subtasks
    present) and the questions answered neither yes nor no."""
    by_subtask: dict[str, dict[str, list[bool]]] = {}
    other = 0
    for subtask, image, qid, answer in questions:
        said = mme_answer(predictions.get(qid, ""))
        other += said == "other"
        by_subtask.setdefault(subtask, {}).setdefault(image, []).append(said == answer.strip().lower())
    subtasks = {}
    for subtask, images in by_subtask.items():
        answers = [right for per_image in images.values() for right in per_image]
        acc = 100.0 * sum(answers) / len(answers)
        acc_plus = 100.0 * sum(all(per_image) for per_image in images.values()) / len(images)
        subtasks[subtask] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus}
    return {
        "perception": sum(s["score"] for name, s in subtasks.items() if name in MME_PERCEPTION),
        "cognition": sum(s["score"] for name, s in subtasks.items() if name in MME_COGNITION),
        "subtasks": subtasks,
        "neither_yes_nor_no": other,
    }


def pope_answer(text: str) -> str:
    """"yes" or "no", as the POPE evaluation of LLaVA reads an answer: its first sentence says
    no when one of its words is no / No / not."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split()
    return "no" if any(word in ("No", "not", "no") for word in words) else "yes"


def pope_scores(labels: Mapping[str, str], predictions: Mapping[str, str]) -> dict:
    """`labels`: question id -> "yes"/"no". Accuracy, precision, recall, F1 (positive: yes) and
    yes-ratio, in %; a missing prediction reads as an empty answer ("yes")."""
    tp = fp = tn = fn = 0
    for qid, label in labels.items():
        said = pope_answer(predictions.get(qid, "")) == "yes"
        truth = label.strip().lower() == "yes"
        tp += said and truth
        fp += said and not truth
        tn += not said and not truth
        fn += not said and truth
    total = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": 100.0 * (tp + tn) / total, "precision": 100.0 * precision, "recall": 100.0 * recall,
            "f1": 100.0 * f1, "yes_ratio": 100.0 * (tp + fp) / total}


_LETTER = re.compile(r"\b([A-Z])\b")


def option_letter(text: str, letters: str = "ABCD") -> str | None:
    """The option an answer names: its first character if that is one of `letters` ("B", "B.",
    "B) a cat"), else the first stand-alone capital among them ("The answer is C"), else None."""
    text = text.strip()
    if text and text[0] in letters and (len(text) == 1 or not text[1].isalpha()):
        return text[0]
    for match in _LETTER.finditer(text):
        if match.group(1) in letters:
            return match.group(1)
    return None


def seed_scores(answers: Mapping[str, str], predictions: Mapping[str, str],
                question_types: Mapping[str, str] | None = None) -> dict:
    """`answers`: question id -> the correct letter. Accuracy in % overall and per question type."""
    right = {qid: option_letter(predictions.get(qid, "")) == answer.strip().upper() for qid, answer in answers.items()}
    scores = {"accuracy": 100.0 * sum(right.values()) / len(right)}
    if question_types:
        by_type: dict[str, list[bool]] = {}
        for qid, ok in right.items():
            by_type.setdefault(question_types[qid], []).append(ok)
        scores["by_question_type"] = {t: 100.0 * sum(v) / len(v) for t, v in sorted(by_type.items())}
    return scores
