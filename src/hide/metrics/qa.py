"""Exact-match scoring for the QA tasks (protocol.md, "Scoring")."""

from __future__ import annotations

from collections.abc import Mapping


def exact_match(prediction: str, answer: str) -> bool:
    """True when prediction and answer agree up to surrounding whitespace and letter case."""
    return prediction.strip().upper() == answer.strip().upper()


def exact_match_score(predictions: Mapping[str, str], answers: Mapping[str, str]) -> float:
    """Percent (0-100) of the ids in ``answers`` whose prediction is an exact match.

    The denominator is the set of answer ids, so a missing prediction counts as wrong and
    predictions for unknown ids are ignored. An empty ``answers`` is an error (no score exists).
    """
    if not answers:
        raise ValueError("exact_match_score: no answers to score against")
    correct = sum(
        1 for qid, answer in answers.items() if qid in predictions and exact_match(predictions[qid], answer)
    )
    return 100.0 * correct / len(answers)
