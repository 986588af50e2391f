"""The six task modules in UCIT's order, and their chance levels.

Every task module provides the same names:
  NAME, KIND ("qa" or "caption"), SPEC (its entry of SYNTH_TASKS: the files of its UCIT layout)
  and FAMILY (the name of its pretraining counterpart);
  sample(rng, size) -> (image, instruction, answer, reference captions or None, meta): one
  benchmark sample;
  pretraining(rng, size) -> (image, [(key, question, answer, weight), ...], meta): one scene of
  its mixture family, with the questions a conversation can ask about it;
  mixture_cell_labels(meta), mixture_counts(meta): the vision tower's dense and counting
  pretraining targets for its family's scenes (None where there are none);
  chance(test_records): its chance level (None for a caption task).
"""

from __future__ import annotations

from hide.data.synth import clevr_math, figureqa, iconqa, object_caption, renditions, scene_caption

TASKS = (renditions, figureqa, object_caption, iconqa, clevr_math, scene_caption)
SYNTH_TASKS: list[dict] = [task.SPEC for task in TASKS]
TASK_NAMES = [task.NAME for task in TASKS]


def chance_level(task_name: str, test_records) -> float | None:
    """Expected exact-match score (0-100) of guessing uniformly among each question's valid
    answers: 1/options for multiple choice, 1/10 for Renditions, 1/(size of the answer range) for
    counting (IconQA: 1..6) and ClevrMath (2..9). None for the caption tasks. `test_records` are
    dicts of the test file or loaded `TestRecord`s (only their `text` is used)."""
    if task_name not in TASK_NAMES:
        raise ValueError(f"unknown synthetic task {task_name!r}; the tasks are {TASK_NAMES}")
    return TASKS[TASK_NAMES.index(task_name)].chance(test_records)
