"""Exact-match scoring for the QA tasks, as HiDe-LLaVA's UCIT scorer does it
(HiDe-LLaVA's `llava/eval/eval_deepseek_r1.py`, `eval_single`; docs/protocol.md, "Scores").

The official scorer compares `pred.upper() == ground_truth.upper()`, where the prediction is the
decoded answer stripped (`llava/eval/model_answer.py`) and the reference is the test file's
`answer` as written: a reference with surrounding whitespace never matches. It looks references up
in a dict by question id, so where a test file repeats an id, every answer of that id is compared
with the last record's reference; its accuracy divides by the number of answers.
`corrected` strips the reference too and compares each record with its own answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SCORINGS = ("original", "corrected")


def check_scoring(scoring: str) -> None:
    if scoring not in SCORINGS:
        from hide.errors import ConfigError

        raise ConfigError(f"benchmark.scoring={scoring!r}; choose one of {SCORINGS}")


def exact_match(prediction: str, answer: str, scoring: str = "original") -> bool:
    """Equal up to letter case (`original`: the prediction is already stripped, as the decoder
    returns it, and the reference is taken as written); `corrected` strips both."""
    if scoring == "corrected":
        return prediction.strip().upper() == answer.strip().upper()
    return prediction.upper() == answer.upper()


def official_answers(records: Sequence, scoring: str = "original") -> dict[str, str]:
    """{question_id: reference} of a task's test records. Under `original` a record whose id the
    file repeats (`TestRecord.source_id`) takes the last record of that id's answer, as the
    official scorer's dict keeps it; under `corrected` each record keeps its own. The last among
    the records loaded: a subset (`benchmark.test_per_task`, `data.on_bad_record=skip`) may have
    left the file's last one out, where the official script reads the whole file."""
    check_scoring(scoring)
    if scoring == "corrected":
        return {r.question_id: r.answer for r in records}
    last = {}
    for r in records:
        last[r.source_id or r.question_id] = r.answer
    return {r.question_id: last[r.source_id or r.question_id] for r in records}


def exact_match_score(predictions: Mapping[str, str], answers: Mapping[str, str], scoring: str = "original") -> float:
    """Percent (0-100) of the ids in ``answers`` whose prediction is an exact match.

    The denominator is the set of answer ids (one per test record, each answered), so a missing
    prediction counts as wrong and predictions for unknown ids are ignored. An empty ``answers``
    is an error (no score exists).
    """
    if not answers:
        raise ValueError("exact_match_score: no answers to score against")
    correct = sum(
        1 for qid, answer in answers.items() if qid in predictions and exact_match(predictions[qid], answer, scoring)
    )
    return 100.0 * correct / len(answers)
