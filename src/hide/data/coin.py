"""CoIN (Chen et al., NeurIPS 2024 Datasets and Benchmarks): eight tasks in its published layout and
order, each scored by its own metric (`hide.metrics.coin`).

    <data_dir>/<instructions>/<Task>/train.json   LLaVA conversation lists
    <data_dir>/<instructions>/<Task>/test.json    [{question_id, image, text, answer}, ...];
                                                  Grounding adds answer_bbox [x, y, w, h] (pixels)
                                                  and size [width, height]
    <images_dir>/...                              the images, at the paths the records give

`instructions` is Instructions_Original (or _Diverse, _10Type). Three scorers need the source
datasets' annotations, given as paths: ScienceQA's problems.json ({id: {answer: index, choices}}),
TextVQA's TextVQA_0.5.1_val.json ({data: [{question_id, answers}]}) and GQA's
testdev_balanced_questions.json ({id: {answer}}). `scoring`: `original` reproduces CoIN's
scorers, quirks included; `corrected` fixes ImageNet's pairing and empty answers and Grounding's
box parser.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from hide.data.datamodule import Benchmark
from hide.data.formats import DataFormatError, TaskData, TaskSpec, _read_json
from hide.errors import ConfigError
from hide.metrics import coin as metrics

COIN_TASKS = ("ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCRVQA")


class CoINBenchmark(Benchmark):
    """Args (besides `Benchmark`'s num_tasks, select, train_per_task, test_per_task,
    max_new_tokens):
        data_dir: CoIN's root (holds `instructions`).
        instructions: the instruction variant's folder.
        images_dir: the root the records' image paths are relative to (None: data_dir).
        scoring: "original" or "corrected".
        scienceqa_problems, textvqa_annotations, gqa_questions: the annotation files.
    """

    def __init__(self, data_dir: str, instructions: str = "Instructions_Original", images_dir: str | None = None,
                 scoring: str = "original", scienceqa_problems: str | None = None,
                 textvqa_annotations: str | None = None, gqa_questions: str | None = None,
                 num_tasks: int | None = None, train_per_task: int | None = None, test_per_task: int | None = None,
                 max_new_tokens: int = 128, select: list[str] | None = None):
        if scoring not in metrics.SCORINGS:
            raise ConfigError(f"benchmark.scoring={scoring!r}; choose one of {metrics.SCORINGS}")
        tasks = [{"name": name, "kind": "qa", "train_file": "train.json", "test_file": "test.json"}
                 for name in COIN_TASKS]
        super().__init__(data_dir, tasks, num_tasks, train_per_task, test_per_task, max_new_tokens, select=select)
        self.instructions_dir = self.data_dir / instructions
        self.images_dir = Path(images_dir).expanduser() if images_dir else self.data_dir
        self.scoring = scoring
        self.annotations = {"ScienceQA": scienceqa_problems, "TextVQA": textvqa_annotations, "GQA": gqa_questions}

    def prepare(self) -> None:
        if not self.instructions_dir.is_dir():
            raise DataFormatError(f"The CoIN instruction folder {self.instructions_dir} does not exist: set "
                                  f"paths.data_dir to CoIN's root (or benchmark.instructions to the variant's folder).")

    # -- loading ----------------------------------------------------------------------------
    def load(self, on_bad_record: str = "error", max_image_pixels: int | None = None, skipped=None) -> list[TaskData]:
        from hide.data.formats import load_task

        self.prepare()
        tasks = []
        for spec in self.specs:
            bad = []
            task = load_task(self.data_dir, spec, self.train_per_task, self.test_per_task, self.check_images,
                             on_bad_record=on_bad_record, max_image_pixels=max_image_pixels, skipped=bad,
                             instructions_dir=self.instructions_dir, datasets_dir=self.images_dir)
            task.scorer = self.scorer(spec, task)
            tasks.append(task)
            if skipped is not None:
                skipped.extend((spec.name, b) for b in bad)
        return tasks

    def scorer(self, spec: TaskSpec, task: TaskData):
        """The task's metric, bound to its references (read here, so that a missing annotation
        file stops the run before training)."""
        answers = {r.question_id: r.answer for r in task.test}
        name, scoring = spec.name, self.scoring
        if name == "ScienceQA":
            problems = self._scienceqa_problems(list(answers))
            return lambda predictions: metrics.scienceqa_score(predictions, problems)
        if name == "TextVQA":
            annotator_answers = self._textvqa_answers(list(answers))
            return lambda predictions: metrics.textvqa_score(predictions, annotator_answers)
        if name == "GQA":
            official = self._gqa_answers(list(answers))
            return lambda predictions: metrics.gqa_score(predictions, official)
        if name == "ImageNet":
            return lambda predictions: metrics.imagenet_score(predictions, answers, scoring)
        if name == "Grounding":
            boxes = self._grounding_boxes(spec, set(answers))
            return lambda predictions: metrics.grounding_score(predictions, boxes, scoring)
        return lambda predictions: metrics.exact_match_ignoring_case(predictions, answers)  # VizWiz, VQAv2, OCR-VQA

    def _annotation(self, task: str, what: str):
        path = self.annotations[task]
        if not path:
            raise ConfigError(f"{task} is scored against its {what}: set benchmark.{self._setting(task)}")
        return Path(path).expanduser(), _read_json(Path(path).expanduser(), f"{task} {what}")

    @staticmethod
    def _setting(task: str) -> str:
        return {"ScienceQA": "scienceqa_problems", "TextVQA": "textvqa_annotations", "GQA": "gqa_questions"}[task]

    def _scienceqa_problems(self, ids: list[str]) -> dict[str, tuple[str, int]]:
        path, problems = self._annotation("ScienceQA", "problems file")
        out = {}
        for qid in ids:
            problem = problems.get(qid) if isinstance(problems, dict) else None
            if not isinstance(problem, dict) or "answer" not in problem or "choices" not in problem:
                raise DataFormatError(f"{path} has no problem {qid!r} with 'answer' and 'choices' (a ScienceQA test "
                                      f"question); use the problems.json of the ScienceQA release CoIN was built from")
            out[qid] = ("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[int(problem["answer"])], len(problem["choices"]))
        return out

    def _textvqa_answers(self, ids: list[str]) -> dict[str, list[str]]:
        path, data = self._annotation("TextVQA", "annotation file")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise DataFormatError(f"{path} must hold {{'data': [{{question_id, answers}}, ...]}} (TextVQA_0.5.1_val.json)")
        by_id = {str(e["question_id"]): list(e["answers"]) for e in entries if "question_id" in e and "answers" in e}
        missing = [q for q in ids if q not in by_id]
        if missing:
            raise DataFormatError(f"{path} has no answers for {len(missing)} TextVQA test question(s), e.g. {missing[:3]}")
        return {q: by_id[q] for q in ids}

    def _gqa_answers(self, ids: list[str]) -> dict[str, str]:
        path, questions = self._annotation("GQA", "balanced test-dev questions file")
        missing = [q for q in ids if not isinstance(questions, dict) or "answer" not in (questions.get(q) or {})]
        if missing:
            raise DataFormatError(f"{path} has no answer for {len(missing)} GQA test question(s), e.g. {missing[:3]}")
        return {q: str(questions[q]["answer"]) for q in ids}

    def _grounding_boxes(self, spec: TaskSpec, ids: set[str]) -> dict[str, tuple[list[float], list[float]]]:
        path = self.instructions_dir / spec.dir / spec.test_file
        boxes = {}
        for index, record in enumerate(_read_json(path, "test file")):
            qid = str(record.get("question_id"))
            if qid in ids:
                problem = grounding_record_problem(record)
                if problem:
                    raise DataFormatError(f"{path}: record {index} (question_id {qid!r}): {problem}")
                boxes[qid] = ([float(v) for v in record["answer_bbox"]], [float(v) for v in record["size"]])
        return boxes

    # -- checking ---------------------------------------------------------------------------
    def check(self) -> list:
        """UCIT's checks on CoIN's layout, plus: each annotation file a selected task is scored
        against exists and holds its test questions; every Grounding record has a box inside an
        image of the size it gives."""
        from hide.data.check import check_benchmark

        reports = check_benchmark(self.data_dir, self.specs, self.instructions_dir, self.images_dir)
        for spec, report in zip(self.specs, reports):
            test_path = self.instructions_dir / spec.dir / spec.test_file
            if not test_path.is_file():
                continue
            try:
                records = _read_json(test_path, "test file")
            except DataFormatError:
                continue  # reported already
            ids = [str(r.get("question_id")) for r in records if isinstance(r, dict)]
            try:
                if spec.name == "ScienceQA":
                    self._scienceqa_problems(ids)
                elif spec.name == "TextVQA":
                    self._textvqa_answers(ids)
                elif spec.name == "GQA":
                    self._gqa_answers(ids)
            except (DataFormatError, ConfigError) as error:
                report.problems.append(str(error))
            if spec.name == "Grounding":
                report.problems += self._grounding_problems(test_path, records)
        return reports

    def _grounding_problems(self, path: Path, records: list) -> list[str]:
        problems = []
        for index, record in enumerate(records):
            where = f"{path}: record {index} (question_id {record.get('question_id')!r})"
            problem = grounding_record_problem(record)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
            image = self.images_dir / str(record.get("image", ""))
            if image.is_file():
                with Image.open(image) as im:
                    if [float(v) for v in im.size] != [float(v) for v in record["size"]]:
                        problems.append(f"{where}: size {record['size']} but the image {image} is "
                                        f"{im.size[0]}x{im.size[1]}")
        return problems


def grounding_record_problem(record: dict) -> str | None:
    """What is wrong with a Grounding test record's box and size, or None."""
    box, size = record.get("answer_bbox"), record.get("size")
    numeric = lambda values, n: (isinstance(values, list) and len(values) == n
                                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))
    if not numeric(size, 2) or min(size) <= 0:
        return f"'size' must be [width, height] > 0, got {size!r}"
    if not numeric(box, 4):
        return f"'answer_bbox' must be [x, y, w, h] in pixels, got {box!r}"
    x, y, w, h = box
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > size[0] + 1 or y + h > size[1] + 1:
        return f"'answer_bbox' {box} is not a box inside the {size[0]}x{size[1]} image"
    return None
