"""Exact-match QA scoring (protocol.md, "Scoring")."""

import pytest

from hide.metrics.qa import exact_match, exact_match_score


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("A", "A", True),
        ("a", "A", True),  # case-insensitive
        ("  B \n", "B", True),  # surrounding whitespace stripped
        ("b", " B\t", True),  # ... on both sides
        ("Golden Retriever", "golden retriever", True),
        ("A", "B", False),
        ("A.", "A", False),  # punctuation is not stripped
        ("golden  retriever", "golden retriever", False),  # inner whitespace is kept
        ("", "A", False),
        ("", "", True),
    ],
)
def test_exact_match(prediction: str, answer: str, expected: bool) -> None:
    assert exact_match(prediction, answer) is expected


def test_exact_match_score_percent() -> None:
    answers = {"q1": "A", "q2": "b", "q3": "cat", "q4": "7"}
    predictions = {"q1": " a ", "q2": "B", "q3": "dog", "q4": "7"}
    assert exact_match_score(predictions, answers) == pytest.approx(75.0)


def test_missing_prediction_counts_as_wrong_and_extras_are_ignored() -> None:
    answers = {"q1": "A", "q2": "B"}
    assert exact_match_score({"q1": "A"}, answers) == pytest.approx(50.0)
    assert exact_match_score({"q1": "A", "q2": "B", "unknown": "C"}, answers) == pytest.approx(100.0)
    assert exact_match_score({}, answers) == 0.0


def test_no_answers_is_an_error() -> None:
    with pytest.raises(ValueError):
        exact_match_score({"q1": "A"}, {})
