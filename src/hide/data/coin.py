"""CoIN (Chen et al., NeurIPS 2024 Datasets and Benchmarks): eight tasks read from CoIN's files as
released, generated with each task's official settings and scored as CoIN's evaluation code
scores them (`hide.metrics.coin`; docs/protocol.md, "CoIN").

    <data_dir>/<instructions>/<Task>/train.json   LLaVA conversation lists; a record without
                                                  `image` is a text-only conversation
    <data_dir>/<instructions>/<Task>/<question file>
        [{question_id, image, text, answer}, ...], the file CoIN's evaluation script reads:
        val.json for TextVQA, VizWiz and VQAv2, test.json for the others. ScienceQA's
        text-only questions have no `image`; Grounding's records have no `answer` but
        `answer_bbox`, a string "[x1, y1, x2, y2]" in [0, 1] of the image padded to a centred
        square, and `size`, the image's [width, height]
    <images_dir>/...                              the images, at the paths the records give

`instructions` is Instructions_Original (or _Diverse, _10Type). Three scorers read the source
datasets' annotations, given as paths: ScienceQA's problems.json and pid_splits.json, TextVQA's
TextVQA_0.5.1_val.json and GQA's testdev_balanced_questions.json. `scoring`: `original`
reproduces CoIN's scorers, quirks included; `corrected` changes what docs/protocol.md lists.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from hide.data.datamodule import Benchmark
from hide.data.formats import (IMAGE_TOKEN, ON_BAD_RECORD, BadRecord, DataFormatError, TaskData, TaskSpec,
                               TestRecord, TrainRecord, _check_limit, _check_not_all_skipped,
                               _expect_list, _json_type, _read_json, _record_id, load_train_file,
                               _record_label, _resolve_image, _skip_or_raise, _test_record, readable_image,
                               repeated_ids)
from hide.errors import ConfigError
from hide.metrics import coin as metrics

log = logging.getLogger(__name__)

COIN_TASKS = ("ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCRVQA")


@dataclass(frozen=True)
class OfficialTask:
    """How CoIN's scripts/LLaVA/Eval/<n>_eval_<task>.sh evaluates a task: the question file it
    passes, the generation script it runs (with that script's image processing, generation budget
    and any text it appends to the question) and the scorer it runs."""

    question_file: str
    generation: str
    image_processing: str  # "pad": LLaVA's process_images under image_aspect_ratio=pad; "crop": preprocess alone
    max_new_tokens: int
    scorer: str
    prompt_suffix: str = ""


# model_vqa.py and model_vqa_science.py call `image_processor.preprocess(image)` (CLIP's resize of
# the shortest side and centre crop, no padding) and generate up to 1024 tokens; model_text_vqa.py,
# model_gqa.py, model_vizwiz.py and model_ocr_vqa.py call `process_images`, which pads to a square
# with the processor's mean colour (the trained model's config has image_aspect_ratio=pad: CoIN's
# scripts/LLaVA/Train/*.sh pass --image_aspect_ratio pad), and generate up to 128 (their
# --max_new_tokens default; the .sh scripts do not pass it). None of the .sh scripts passes
# model_vqa_science.py's --single-pred-prompt, so no task appends text to its question.
OFFICIAL: dict[str, OfficialTask] = {
    "ScienceQA": OfficialTask("test.json", "model_vqa_science.py", "crop", 1024, "eval_science_qa.py"),
    "TextVQA": OfficialTask("val.json", "model_text_vqa.py", "pad", 128, "eval_textvqa.py"),
    "ImageNet": OfficialTask("test.json", "model_vqa.py", "crop", 1024, "eval_ImagetNet.py"),
    "GQA": OfficialTask("test.json", "model_gqa.py", "pad", 128, "eval_gqa.py"),
    "VizWiz": OfficialTask("val.json", "model_vizwiz.py", "pad", 128, "eval_vizwiz.py"),
    "Grounding": OfficialTask("test.json", "model_vqa.py", "crop", 1024, "eval_grounding.py"),
    "VQAv2": OfficialTask("val.json", "model_vqa.py", "crop", 1024, "eval_vqav2.py"),
    "OCRVQA": OfficialTask("test.json", "model_ocr_vqa.py", "pad", 128, "eval_ocrvqa.py"),
}

# The run's generation budget under official budgets, for answers that are not a CoIN task's.
DEFAULT_BUDGET = 128
# How many bad records the data check quotes in full per file (the rest by question id).
SHOWN_BAD = 20


@dataclass
class _Loaded:
    """One task's records and what its scorer needs besides them."""

    task: TaskData
    boxes: dict[str, tuple[list[float], float]]  # Grounding: question id -> (reference box, max(size))
    positions: dict[str, int]  # question id -> index in the question file


class CoINBenchmark(Benchmark):
    """Args (besides `Benchmark`'s num_tasks, select, train_per_task, test_per_task,
    max_new_tokens):
        data_dir: CoIN's root (holds `instructions`).
        instructions: the instruction variant's folder.
        images_dir: the root the records' image paths are relative to (None: data_dir).
        scoring: "original" or "corrected".
        scienceqa_problems, scienceqa_splits, textvqa_annotations, gqa_questions: the
            annotation files the official scorers read.
        max_new_tokens: None (the default): each task's official generation budget
            (`OFFICIAL`); a number: that budget for every task (a quick run: debug=fast sets 8).
    Each task's image processing and prompt suffix are always its official script's.
    """

    def __init__(self, data_dir: str, instructions: str = "Instructions_Original", images_dir: str | None = None,
                 scoring: str = "original", scienceqa_problems: str | None = None,
                 scienceqa_splits: str | None = None, textvqa_annotations: str | None = None,
                 gqa_questions: str | None = None, num_tasks: int | None = None, train_per_task: int | None = None,
                 test_per_task: int | None = None, max_new_tokens: int | None = None,
                 select: list[str] | None = None):
        if scoring not in metrics.SCORINGS:
            raise ConfigError(f"benchmark.scoring={scoring!r}; choose one of {metrics.SCORINGS}")
        tasks = [{"name": name, "kind": "qa", "train_file": "train.json", "test_file": OFFICIAL[name].question_file,
                  **spec_settings(name, official_budget=max_new_tokens is None)} for name in COIN_TASKS]
        # The run's own budget serves only what is not a CoIN task (every CoIN task has one).
        super().__init__(data_dir, tasks, num_tasks, train_per_task, test_per_task,
                         DEFAULT_BUDGET if max_new_tokens is None else max_new_tokens, select=select)
        self.instructions_dir = self.data_dir / instructions
        self.images_dir = Path(images_dir).expanduser() if images_dir else self.data_dir
        self.scoring = scoring
        self.annotations = {"scienceqa_problems": scienceqa_problems, "scienceqa_splits": scienceqa_splits,
                            "textvqa_annotations": textvqa_annotations, "gqa_questions": gqa_questions}

    def prepare(self) -> None:
        if not self.instructions_dir.is_dir():
            raise DataFormatError(f"The CoIN instruction folder {self.instructions_dir} does not exist: set "
                                  f"paths.data_dir to CoIN's root (or benchmark.instructions to the variant's folder).")

    # -- loading ----------------------------------------------------------------------------
    def load(self, on_bad_record: str = "error", max_image_pixels: int | None = None, skipped=None) -> list[TaskData]:
        """Every task as `load_task` loads a UCIT task (limits, image checks, on_bad_record), with
        CoIN's record rules (`load_coin_task`), and its scorer bound to the references its
        official script reads: a test question those do not cover is a bad record."""
        if on_bad_record not in ON_BAD_RECORD:
            raise ConfigError(f"data.on_bad_record={on_bad_record!r}; choose one of {ON_BAD_RECORD}")
        self.prepare()
        tasks = []
        for spec in self.specs:
            bad: list[BadRecord] | None = [] if on_bad_record == "skip" else None
            loaded = load_coin_task(self.instructions_dir, self.images_dir, spec, self.train_per_task,
                                    self.test_per_task, self.check_images, max_image_pixels=max_image_pixels,
                                    skipped=bad)
            task = loaded.task
            task.scorer = self.scorer(spec, task, loaded.boxes, bad, loaded.positions)
            task.scoring = self.scoring
            if bad is not None and not task.test:
                raise DataFormatError(f"task {spec.name!r} has no usable test record left: all were left out "
                                      f"under data.on_bad_record=skip (first reason: {bad[0].reason if bad else '?'})")
            tasks.append(task)
            if skipped is not None and bad:
                skipped.extend((spec.name, b) for b in bad)
        return tasks

    def scorer(self, spec: TaskSpec, task: TaskData, boxes: dict | None = None, bad: list[BadRecord] | None = None,
               positions: dict[str, int] | None = None):
        """The task's metric, bound to its references (read here, so that a missing or
        incomplete annotation file stops the run before training). A test question the
        references do not cover (the official script would stop on it) raises, or under
        on_bad_record=skip (`bad` a list) is left out and reported."""
        name, scoring = spec.name, self.scoring
        test_path = self.instructions_dir / spec.dir / spec.test_file

        def uncovered(missing: dict[str, str]) -> None:
            """Questions whose references are missing or unusable: {question id: why}."""
            if not missing:
                return
            if bad is None:
                shown = "; ".join(f"{q}: {why}" for q, why in list(missing.items())[:5])
                raise DataFormatError(f"{test_path}: {len(missing)} {name} test question(s) cannot be scored as "
                                      f"CoIN's {OFFICIAL[name].scorer} scores them ({shown}"
                                      f"{'; ...' if len(missing) > 5 else ''}). Use the annotation file of the "
                                      f"release CoIN was built from, or set data.on_bad_record=skip to leave them out.")
            for qid, why in missing.items():
                index = (positions or {}).get(qid, -1)
                bad.append(BadRecord(str(test_path), index, qid,
                                     f"{test_path}: {_record_label(index, qid)}: {why}"))
            task.test[:] = [r for r in task.test if r.question_id not in missing]

        def by_record(missing_by_file_id: dict[str, str]) -> dict[str, str]:
            return {r.question_id: missing_by_file_id[file_id(r)] for r in task.test
                    if file_id(r) in missing_by_file_id}

        if name == "TextVQA":
            answers, missing = self._textvqa_answers([file_id(r) for r in task.test])
            uncovered(by_record(missing))
        elif name == "GQA":
            questions, missing = self._gqa_questions([file_id(r) for r in task.test])
            uncovered(by_record(missing))
        order = [r.question_id for r in task.test]
        # The official scripts look references (and ScienceQA's and GQA's answers) up by the
        # file's question_id; `corrected` scores a repeated id's records against their own answers.
        keys = {r.question_id: file_id(r) for r in task.test}
        if name == "ScienceQA":
            problems, split = self._scienceqa_references(task)
            return lambda predictions: metrics.scienceqa_score(predictions, problems, split, order, keys)
        if name == "TextVQA":
            return lambda predictions: metrics.textvqa_score(predictions, answers, order, keys)
        if name == "GQA":
            return lambda predictions: metrics.gqa_score(predictions, questions, order, keys)
        if name == "ImageNet":
            pairs = [(r.question_id, r.answer) for r in task.test]
            return lambda predictions: metrics.imagenet_score(predictions, pairs, scoring)
        if scoring == "original":
            answers = {file_id(r): r.answer for r in task.test}  # the last record of an id wins, as in a dict
            references = {file_id(r): (boxes or {}).get(r.question_id) for r in task.test}
        else:
            keys = None
            answers = {r.question_id: r.answer for r in task.test}
            references = {r.question_id: (boxes or {}).get(r.question_id) for r in task.test}
        if name == "Grounding":
            return lambda predictions: metrics.grounding_score(predictions, references, order, scoring, keys)
        if name == "OCRVQA":
            return lambda predictions: metrics.ocrvqa_score(predictions, answers, order, keys)
        return lambda predictions: metrics.upper_case_match_score(predictions, answers, order, keys)  # VizWiz, VQAv2

    # -- the annotation files ------------------------------------------------------------------
    def _annotation(self, setting: str, what: str):
        path = self.annotations[setting]
        if not path:
            raise ConfigError(f"CoIN's scorer reads the {what}: set benchmark.{setting}")
        path = Path(path).expanduser()
        return path, _read_json(path, what)

    def _scienceqa_references(self, task: TaskData) -> tuple[dict[str, tuple[int, int]], list[str]]:
        """problems.json's (answer, number of choices) of every question scored, and the ids
        scored: pid_splits.json's "test" list, as eval_science_qa.py:43 (restricted to the
        loaded questions when benchmark.test_per_task keeps only some)."""
        split = self._scienceqa_split()
        problems = self._scienceqa_problems(split)
        if self.test_per_task is not None:
            loaded = {file_id(r) for r in task.test}
            split = [q for q in split if q in loaded]
        outside = [file_id(r) for r in task.test if file_id(r) not in problems]
        if outside:
            log.warning("%d ScienceQA test question(s) are not in the test split of %s, so CoIN's scorer does not "
                        "score them (e.g. %s)", len(outside), self.annotations["scienceqa_splits"], outside[:5])
        return problems, split

    def _scienceqa_split(self) -> list[str]:
        path, splits = self._annotation("scienceqa_splits", "ScienceQA splits file (pid_splits.json)")
        split = splits.get("test") if isinstance(splits, dict) else None
        if not isinstance(split, list) or not all(isinstance(q, str) for q in split):
            raise DataFormatError(f"{path} must hold {{'test': [problem id, ...]}} (ScienceQA's pid_splits.json), "
                                  f"whose 'test' list CoIN's eval_science_qa.py scores")
        return split

    def _scienceqa_problems(self, split: list[str]) -> dict[str, tuple[int, int]]:
        path, problems = self._annotation("scienceqa_problems", "ScienceQA problems file (problems.json)")
        out, wrong = {}, []
        for qid in split:
            problem = problems.get(qid) if isinstance(problems, dict) else None
            if (not isinstance(problem, dict) or not isinstance(problem.get("choices"), list)
                    or not isinstance(problem.get("answer"), int) or isinstance(problem.get("answer"), bool)):
                wrong.append(qid)
                continue
            out[qid] = (problem["answer"], len(problem["choices"]))
        if wrong:
            raise DataFormatError(f"{path} has no problem with an integer 'answer' and a 'choices' list for "
                                  f"{len(wrong)} question(s) of the test split, e.g. {wrong[:5]}; use the "
                                  f"problems.json and pid_splits.json of one ScienceQA release")
        return out

    def _textvqa_answers(self, ids: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
        """The ten annotator answers of each question, and {question id: why} for those without:
        eval_textvqa.py:37-42 looks each answered question up by str(question_id), and
        m4c_evaluator.py:230 requires exactly ten answers."""
        path, data = self._annotation("textvqa_annotations", "TextVQA annotation file (TextVQA_0.5.1_val.json)")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise DataFormatError(f"{path} must hold {{'data': [{{question_id, answers}}, ...]}} "
                                  f"(TextVQA_0.5.1_val.json)")
        by_id = {str(e["question_id"]): e.get("answers") for e in entries if isinstance(e, dict) and "question_id" in e}
        answers, missing = {}, {}
        for qid in ids:
            given = by_id.get(qid)
            if qid not in by_id:
                missing[qid] = f"not in {path}"
            elif not isinstance(given, list) or len(given) != 10 or not all(isinstance(a, str) for a in given):
                missing[qid] = f"its 'answers' in {path} are not ten strings (got {given!r})"
            else:
                answers[qid] = given
        return answers, missing

    def _gqa_questions(self, ids: list[str]) -> tuple[dict[str, tuple[str, bool]], dict[str, str]]:
        """Each question's (answer, isBalanced), and {question id: why} for those without
        (eval_gqa.py:349-359 reads both)."""
        path, questions = self._annotation("gqa_questions", "GQA questions file (testdev_balanced_questions.json)")
        if not isinstance(questions, dict):
            raise DataFormatError(f"{path} must hold {{question id: {{answer, isBalanced, ...}}}} "
                                  f"(testdev_balanced_questions.json)")
        out, missing = {}, {}
        for qid in ids:
            question = questions.get(qid)
            if not isinstance(question, dict):
                missing[qid] = f"not in {path}"
            elif not isinstance(question.get("answer"), str) or not isinstance(question.get("isBalanced"), bool):
                missing[qid] = f"its entry in {path} lacks a string 'answer' or a boolean 'isBalanced'"
            else:
                out[qid] = (question["answer"], question["isBalanced"])
        return out, missing

    # -- checking ---------------------------------------------------------------------------
    def check(self) -> list:
        """Every fault of every selected task, in one pass: missing folders and files; each bad
        record of each file, named (CoIN's rules: `load_coin_task`); missing images; an
        annotation file that is missing or does not cover the test questions (each question
        named); ScienceQA questions of the split missing from the test file (CoIN's scorer
        counts them wrong) and test questions outside the split (never scored); GQA questions
        that are not balanced (never scored); Grounding boxes that are not a box inside the
        padded square, and sizes that are not the image's."""
        from hide.data.check import TaskReport

        reports = []
        if not self.data_dir.is_dir():
            report = TaskReport("(benchmark root)")
            report.problems.append(f"{self.data_dir} does not exist: set paths.data_dir to CoIN's root")
            return [report]
        for spec in self.specs:
            report = TaskReport(spec.name)
            reports.append(report)
            folder = self.instructions_dir / spec.dir
            if not folder.is_dir():
                report.problems.append(f"the folder {folder} does not exist")
                continue
            train: list[TrainRecord] = []
            test: list[TestRecord] | None = None
            repeats: dict[str, list[int]] = {}
            test_path = folder / spec.test_file
            for role, path in (("train", folder / spec.train_file), ("test", test_path)):
                if not path.is_file():
                    report.problems.append(f"the {role} file {path} does not exist")
                    continue
                bad: list[BadRecord] = []
                try:
                    if role == "train":
                        train = read_train_records(path, self.images_dir, spec.name, bad)
                    else:
                        test, extras, _ = read_test_records(path, self.images_dir, spec.name, bad, repeats)
                except DataFormatError as error:
                    report.problems.append(str(error))
                    continue
                setattr(report, role, len(train) if role == "train" else len(test))
                report.problems += describe_bad(bad, path)
            text_only = sum(r.image is None for r in [*train, *(test or [])])
            if text_only:
                report.notes.append(f"{folder}: {text_only} record(s) without an image, answered as text-only")
            if repeats:  # the official files hold some: said, not a fault
                report.notes.append(
                    f"{test_path}: {len(repeats)} question id(s) repeat; every record is answered, and scored "
                    f"(under scoring=original) against the last record of its id, as CoIN's {OFFICIAL[spec.name].scorer} "
                    f"looks references up by id: {repeated_ids(repeats, limit=200)}")
            missing = [(role, r, r.image) for role, rs in (("train", train), ("test", test or []))
                       for r in rs if r.image is not None and not Path(r.image).is_file()]
            report.missing_images = len(missing)
            if missing:
                shown = ", ".join(f"{p} ({role} record {getattr(r, 'id', None) or r.question_id})"
                                  for role, r, p in missing[:5])
                more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                report.problems.append(f"{len(missing)} image(s) missing under {self.images_dir}: {shown}{more}")
            if test is not None:
                report.problems += self._reference_problems(spec, test_path, test, extras)
        return reports

    def _reference_problems(self, spec: TaskSpec, path: Path, test: list[TestRecord], extras: dict) -> list[str]:
        ids = list(dict.fromkeys(file_id(r) for r in test))
        problems = []
        try:
            if spec.name == "ScienceQA":
                split = self._scienceqa_split()
                self._scienceqa_problems(split)
                in_file, in_split = set(ids), set(split)
                absent = [q for q in split if q not in in_file]
                if absent:
                    problems.append(f"{len(absent)} question(s) of the ScienceQA test split "
                                    f"({self.annotations['scienceqa_splits']}) are not in {path}; CoIN's "
                                    f"eval_science_qa.py counts each as wrong: {_ids(absent)}")
                outside = [q for q in ids if q not in in_split]
                if outside:
                    problems.append(f"{len(outside)} question(s) of {path} are not in the ScienceQA test split "
                                    f"({self.annotations['scienceqa_splits']}); CoIN's eval_science_qa.py never "
                                    f"scores them: {_ids(outside)}")
            elif spec.name == "TextVQA":
                _, missing = self._textvqa_answers(ids)
                problems += [f"{path}: question_id {q!r}: {why}" for q, why in missing.items()]
            elif spec.name == "GQA":
                questions, missing = self._gqa_questions(ids)
                problems += [f"{path}: question_id {q!r}: {why}" for q, why in missing.items()]
                unbalanced = [q for q, (_, balanced) in questions.items() if not balanced]
                if unbalanced:
                    problems.append(f"{len(unbalanced)} question(s) of {path} are not balanced "
                                    f"(isBalanced false); CoIN's eval_gqa.py never scores them: {_ids(unbalanced)}")
        except (DataFormatError, ConfigError) as error:
            problems.append(str(error))
        if spec.name == "Grounding":
            problems += self._grounding_problems(path, test, extras)
        return problems

    def _grounding_problems(self, path: Path, test: list[TestRecord], extras: dict) -> list[str]:
        """Boxes that read but are not a box inside the padded square, and sizes that are not the
        image's [width, height] (the scorer scales both boxes by max(size))."""
        problems = []
        for index, record in enumerate(test):
            box, size = extras[record.question_id]
            where = f"{path}: question_id {record.question_id!r}"
            x1, y1, x2, y2 = box
            if not all(math.isfinite(v) for v in box) or not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
                problems.append(f"{where}: 'answer_bbox' {box} is not a box [x1, y1, x2, y2] inside the padded "
                                f"square (0 <= x1 < x2 <= 1, 0 <= y1 < y2 <= 1)")
            if record.image is not None and Path(record.image).is_file():
                try:
                    with Image.open(record.image) as im:
                        actual = list(im.size)
                except (OSError, SyntaxError, ValueError):
                    continue  # an unreadable image is the image check's to report
                if list(size) != actual:
                    problems.append(f"{where}: size {size} but the image {record.image} is {actual[0]}x{actual[1]}")
        return problems


def file_id(record: TestRecord) -> str:
    """The question_id the file gives the record (a repeated one is renamed in `question_id`)."""
    return record.source_id or record.question_id


def spec_settings(name: str, official_budget: bool = True) -> dict:
    """A task's `TaskSpec` fields beyond its files: what its files hold
    (ScienceQA's text-only questions; question ids that may repeat, which the official scorers
    accept) and its official evaluation settings (the generation budget only with
    `official_budget`; else the benchmark's)."""
    official = OFFICIAL[name]
    settings = {"text_only": name == "ScienceQA", "repeated_ids": True, "prompt_suffix": official.prompt_suffix,
                "image_processing": official.image_processing}
    if official_budget:
        settings["max_new_tokens"] = official.max_new_tokens
    return settings


def _ids(ids: list[str], limit: int = 200) -> str:
    shown = ", ".join(map(repr, ids[:limit]))
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def describe_bad(bad: list[BadRecord], path: Path) -> list[str]:
    """The data check's lines for a file's bad records: the first SHOWN_BAD in full, then the
    ids of the rest."""
    lines = [b.reason for b in bad[:SHOWN_BAD]]
    rest = bad[SHOWN_BAD:]
    if rest:
        lines.append(f"{path}: {len(rest)} more bad record(s), at indices "
                     f"{_ids([str(b.index) + ('' if b.id is None else f' (id {b.id})') for b in rest])}")
    return lines


# -- reading CoIN's files ----------------------------------------------------------------------
def read_train_records(path: Path, images_dir: Path, task_name: str, skipped: list[BadRecord] | None) -> list[TrainRecord]:
    """A CoIN training file: LLaVA conversation records, read as CoIN's training set reads them
    (ETrain/Dataset/LLaVA/llava_dataset.py:450-486): a record without an `image` key is a
    text-only conversation (image None, no <image> token), and ids are only names (a repeated
    one is kept, named "<id>#<index>"). Images are not opened here. `skipped`: as
    `load_train_file`'s."""
    repeats: dict[str, list[int]] = {}
    out = load_train_file(path, images_dir, check_images=False, task_name=task_name, skipped=skipped,
                          text_only=True, repeats=repeats)
    if repeats:
        log.info("%s: %d id(s) repeat; every record is trained on (ids only name them)", path, len(repeats))
    return out


def read_test_records(path: Path, images_dir: Path, task_name: str, skipped: list[BadRecord] | None,
                      repeats: dict[str, list[int]] | None = None
                      ) -> tuple[list[TestRecord], dict[str, tuple[list[float], list]], dict[str, int]]:
    """A CoIN question file, read as the task's official scripts read it, and for Grounding each
    question's (reference box, size). ScienceQA: `image` optional (a text-only question,
    model_vqa_science.py:47) and the text with every <image> token deleted and stripped
    (model_vqa_science.py:44). Grounding: no `answer` needed (the record's answer is its
    `answer_bbox`), and a box that does not read as four numbers or a size that is not a list
    of positive numbers is a bad record (eval_grounding.py:63-65 and 79 would stop on it). A repeated
    question_id is kept (every record is answered, as the official scripts answer every line),
    named "<id>#<index>" with `source_id` the file's id, and listed in `repeats`. Images are not
    opened here. `skipped`: as `load_test_file`'s. Also returns each good record's index in the
    file."""
    records = _expect_list(_read_json(path, "test file"), path, "test file", "test records")
    if not records:
        raise DataFormatError(f"task {task_name!r} has no test records in {path} (the file holds an empty list).")
    repeats = {} if repeats is None else repeats
    out: list[TestRecord] = []
    boxes: dict[str, tuple[list[float], list]] = {}
    positions: dict[str, int] = {}
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        try:
            if task_name == "ScienceQA":
                record = _scienceqa_test_record(rec, i, path, images_dir, seen, repeats)
            elif task_name == "Grounding":
                record, box, size = _grounding_test_record(rec, i, path, images_dir, seen, repeats)
                boxes[record.question_id] = (box, size)
            else:
                record = _test_record(rec, i, path, images_dir, False, seen, repeats=repeats)
            out.append(record)
            positions[record.question_id] = i
        except DataFormatError as err:
            _skip_or_raise(err, skipped, path, i, rec, "question_id")
    _check_not_all_skipped(out, skipped, path)
    return out, boxes, positions


def _scienceqa_test_record(rec, i: int, path: Path, images_dir: Path, seen: dict[str, int],
                           repeats: dict[str, list[int]]) -> TestRecord:
    keys = ("question_id", "text", "answer") + (("image",) if isinstance(rec, dict) and "image" in rec else ())
    qid, where = _record_id(rec, i, path, keys, "test", seen, repeats)
    for key in ("text", "answer"):
        if not isinstance(rec[key], str):
            raise DataFormatError(f"{where}: {key!r} must be a string, got {_json_type(rec[key])}.")
    image = _resolve_image(rec["image"], images_dir, False, where) if "image" in rec else None
    source = str(rec["question_id"])
    return TestRecord(question_id=qid, image=image, text=rec["text"].replace(IMAGE_TOKEN, "").strip(),
                      answer=rec["answer"], source_id=source if source != qid else None)


def _grounding_test_record(rec, i: int, path: Path, images_dir: Path, seen: dict[str, int],
                           repeats: dict[str, list[int]]):
    if not isinstance(rec, dict):
        _test_record(rec, i, path, images_dir, False, seen)  # raises, naming the record
    if "answer" not in rec:
        # CoIN's Grounding questions carry no `answer`: the box is the reference (its LAVIS
        # evaluation set, ETrain/Dataset/LAVIS/datasets/CoIN_dataset.py:162-165, falls back the same way)
        rec = dict(rec, answer=rec.get("answer_bbox"))
    # The box is read before the shared checks register the question id, so that a later record
    # with the same id is not taken for a repeat of one left out for its box.
    box, size = grounding_reference(rec, f"{path}: {_record_label(i, rec.get('question_id'))}")
    return _test_record(rec, i, path, images_dir, False, seen, repeats=repeats), box, size


def grounding_reference(rec: dict, where: str) -> tuple[list[float], list]:
    """(the reference box, the size) of a Grounding record, read as eval_grounding.py reads them;
    a DataFormatError naming the record when they do not read."""
    text, size = rec.get("answer_bbox"), rec.get("size")
    if not isinstance(text, str):
        raise DataFormatError(f"{where}: 'answer_bbox' must be a string \"[x1, y1, x2, y2]\" in [0, 1] of the image "
                              f"padded to a square, as CoIN's release writes it; got {_json_type(text)} {text!r}.")
    try:
        box = metrics.reference_box(text)
    except ValueError:
        box = None
    if box is None or len(box) != 4:
        raise DataFormatError(f"{where}: 'answer_bbox' {text!r} does not read as four numbers \"[x1, y1, x2, y2]\" "
                              f"(CoIN's eval_grounding.py deletes the brackets and reads each comma-separated piece "
                              f"as a number).")
    if (not isinstance(size, list) or not size
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in size)):
        raise DataFormatError(f"{where}: 'size' must be the image's [width, height] (positive numbers), got {size!r}.")
    return box, size


def load_coin_task(instructions_dir: Path, images_dir: Path, spec: TaskSpec, train_limit: int | None = None,
                   test_limit: int | None = None, check_images: bool = True, *, max_image_pixels: int | None = None,
                   skipped: list[BadRecord] | None = None) -> _Loaded:
    """One CoIN task, with `load_task`'s semantics (every record validated, the first K of each
    file kept, the kept records' images checked; `skipped` a list: bad records left out and
    appended to it, and each kept image decoded in full) and CoIN's record rules
    (`read_train_records`, `read_test_records`)."""
    _check_limit("train_limit", train_limit)
    _check_limit("test_limit", test_limit)
    folder = instructions_dir / spec.dir
    train_path, test_path = folder / spec.train_file, folder / spec.test_file
    train = read_train_records(train_path, images_dir, spec.name, skipped)
    repeats: dict[str, list[int]] = {}
    test, boxes, positions = read_test_records(test_path, images_dir, spec.name, skipped, repeats)
    if repeats:
        log.warning("%s: %d question id(s) repeat (%s): every record is answered and scored as CoIN's %s "
                    "scores a repeated id", test_path, len(repeats), repeated_ids(repeats),
                    OFFICIAL[spec.name].scorer if spec.name in OFFICIAL else "scorer")
    if train_limit is not None:
        train = train[:train_limit]
    if test_limit is not None:
        test = test[:test_limit]
    if check_images:
        train = [r for i, r in enumerate(train)
                 if readable_image(r.image, images_dir, train_path, i, r.id, max_image_pixels, skipped)]
        test = [r for r in test if readable_image(r.image, images_dir, test_path, positions[r.question_id],
                                                  r.question_id, max_image_pixels, skipped)]
    if skipped is not None and not train:
        raise DataFormatError(f"task {spec.name!r} has no usable training record left: all were left out under "
                              f"data.on_bad_record=skip (first reason: {skipped[0].reason if skipped else '?'})")
    kept = {r.question_id for r in test}
    task = TaskData(name=spec.name, kind=spec.kind, train=train, test=test, spec=spec)
    return _Loaded(task, {q: (box, max(size)) for q, (box, size) in boxes.items() if q in kept}, positions)
