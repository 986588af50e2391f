"""Exact-match QA scoring of UCIT's QA tasks as HiDe-LLaVA scores them (docs/protocol.md, "Scores").

The official scorer is HiDe-LLaVA's llava/eval/eval_deepseek_r1.py, `eval_single`:
  line 37  references by question_id in a dict (a repeated id: the last record's answer),
  line 40  total = len(results): the denominator is the number of answers,
  line 45  pred = result['text'], which llava/eval/model_answer.py:113 stripped (`outputs.strip()`),
  line 46  ground_truth = annotation['answer'], as written (not stripped),
  line 47  right when pred.upper() == ground_truth.upper().
Our decoder returns the answer stripped (hide.generation.greedy_answers), so the predictions below
are stripped strings, as the official `pred` is. Each expected value is worked out by hand from
line 47 (str.upper on both, then ==).
"""

import pytest

from hide.data.formats import TestRecord
from hide.metrics.qa import exact_match, exact_match_score, official_answers

# (prediction, reference, official result) per UCIT QA task, in the answer forms of each task
OFFICIAL_CASES = {
    "ImageNet-R": [  # a class name
        ("goldfish", "goldfish", True),
        ("Goldfish", "goldfish", True),  # line 47: both upper-cased
        ("GOLDFISH", "goldfish", True),
        ("goldfish.", "goldfish", False),  # punctuation stays
        ("a goldfish", "goldfish", False),  # no substring match (line 53 is commented out)
        ("great white shark", "great white shark", True),
        ("great white  shark", "great white shark", False),  # inner whitespace stays
        ("goldfish", "goldfish ", False),  # line 46: the reference is not stripped
        ("goldfish", "\ngoldfish", False),
        ("", "goldfish", False),
        ("hammerhead", "hammerhead shark", False),
        ("straße", "STRASSE", True),  # str.upper: "ß" -> "SS"
    ],
    "ArxivQA": [  # an option letter
        ("B", "B", True),
        ("b", "B", True),
        ("B", "b", True),
        ("B.", "B", False),
        ("(B)", "B", False),
        ("B) 0.5", "B", False),
        ("The answer is B", "B", False),
        ("B", " B", False),  # line 46: reference as written
        ("A", "B", False),
        ("", "B", False),
    ],
    "IconQA": [  # a number, a word or a letter
        ("3", "3", True),
        ("three", "3", False),
        ("3.0", "3", False),
        ("Yes", "yes", True),
        ("triangle", "Triangle", True),
        ("3", "3\n", False),
        ("", "", True),  # an empty answer equals an empty reference
        ("ii", "II", True),
        ("ß", "SS", True),
        ("1/2", "1/2", True),
    ],
    "CLEVR-Math": [  # a count
        ("4", "4", True),
        ("four", "4", False),
        ("04", "4", False),
        ("4.", "4", False),
        ("4", "4 ", False),
        ("-1", "-1", True),
        ("10", "1", False),
        ("1", "10", False),
        ("", "0", False),
        ("0", "0", True),
    ],
}


@pytest.mark.parametrize(("task", "prediction", "answer", "expected"),
                         [(task, *case) for task, cases in OFFICIAL_CASES.items() for case in cases])
def test_original_scoring_equals_hide_llava(task, prediction, answer, expected):
    assert exact_match(prediction, answer, "original") is expected
    assert exact_match_score({"q": prediction}, {"q": answer}, "original") == (100.0 if expected else 0.0)


# `corrected`: surrounding whitespace stripped on both sides, then compared ignoring case
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
    assert exact_match(prediction, answer, "corrected") is expected


def test_exact_match_score_percent() -> None:
    answers = {"q1": "A", "q2": "b", "q3": "cat", "q4": "7"}
    predictions = {"q1": " a ", "q2": "B", "q3": "dog", "q4": "7"}
    assert exact_match_score(predictions, answers, "corrected") == pytest.approx(75.0)
    # original: the prediction " a " is not the decoder's (stripped) output, so it does not match
    assert exact_match_score(predictions, answers, "original") == pytest.approx(50.0)


def test_missing_prediction_counts_as_wrong_and_extras_are_ignored() -> None:
    answers = {"q1": "A", "q2": "B"}
    assert exact_match_score({"q1": "A"}, answers) == pytest.approx(50.0)
    assert exact_match_score({"q1": "A", "q2": "B", "unknown": "C"}, answers) == pytest.approx(100.0)
    assert exact_match_score({}, answers) == 0.0


def test_no_answers_is_an_error() -> None:
    with pytest.raises(ValueError):
        exact_match_score({"q1": "A"}, {})


def test_a_repeated_question_id_is_scored_against_the_last_record():
    """eval_deepseek_r1.py:37 keeps the last record of an id; line 40 counts every answer."""
    records = [TestRecord("q1", None, "What?", "cat"), TestRecord("q2", None, "What?", "A"),
               TestRecord("q1#2", None, "What?", "dog", source_id="q1")]
    answers = official_answers(records)
    assert answers == {"q1": "dog", "q2": "A", "q1#2": "dog"}
    predictions = {"q1": "dog", "q2": "a", "q1#2": "dog"}
    assert exact_match_score(predictions, answers) == pytest.approx(100.0)  # 3 of 3
    # corrected: each record against its own answer: "dog" for q1 is wrong
    assert exact_match_score(predictions, official_answers(records, "corrected"), "corrected") == pytest.approx(200 / 3)
