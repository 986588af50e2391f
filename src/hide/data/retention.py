"""General-ability sets a continual run is scored on with the base model and the final model
(`eval.retention`): MME, POPE and SEED-Bench's image questions from local folders in their
published layouts, asked and scored as LLaVA-1.5's evaluation does (docs/protocol.md,
"General-ability sets"), and the synthetic benchmark's own set. Each loader returns a
`RetentionSet`: test prompts, how they are asked (prompt suffix, image processing, generation
budget) and the published metric of the set (`hide.metrics.retention`).

Layouts read:
- MME (`root` = MME_Benchmark_release_version, or the folder above the release's
  `MME_Benchmark/`): one folder per subtask, all fourteen; either `<subtask>/images/` beside
  `<subtask>/questions_answers_YN/` (the layout LLaVA's `convert_answer_to_mme.py` reads when
  `images/` exists), or the images and their .txt files side by side. Each .txt holds the two
  questions about the image of the same name, one a line, `question<TAB>Yes|No`.
- POPE: `coco_pope_<split>.json` in `questions_dir`, one JSON object per line with question_id,
  image (a file in `images_dir`, COCO val2014), text and label (yes / no).
- SEED-Bench: `questions_file` (SEED-Bench.json: "questions", each with question_id, question,
  choice_a..choice_d, answer, data_id, data_type, question_type_id; and "question_type", name ->
  id); the images in `images_dir` named by data_id (with or without an extension). Video
  questions are left out: the image questions are the SEED-Bench image score LLaVA-1.5 reports.
- The synthetic set: held-out conversations of the pretraining mixture (`generate_mixture`,
  split "test"), every question asked on its own (captions left out: they have no exact
  answer): the kinds of questions the base model was instruction-tuned on, which no benchmark
  task trains. Exact match, overall and per family.

Nothing is dropped silently: a missing subtask, an MME image with other than two questions, a
SEED question whose answer is not a letter, a repeated question id, an image without its
questions or questions without their image stop the load with an error naming the file and the
fix (all of a set's faults at once; `python -m hide.data.check` lists them too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hide.data.formats import (IMAGE_PROCESSING, DataFormatError, TestRecord, _describe_dir, _read_json,
                               _strip_image_token)
from hide.errors import ConfigError
from hide.metrics.qa import exact_match
from hide.metrics.retention import (MME_COGNITION, MME_PERCEPTION, SCORINGS, check_scoring, mme_scores,
                                    pope_scores, seed_scores)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")

# LLaVA-1.5's prompts (its docs/Evaluation.md, "short-answer" and "option-only"), as its question
# files hold them: llava_mme.jsonl and llava_pope_test.jsonl end every question with SHORT_ANSWER,
# llava-seed-bench.jsonl every question-and-options text with OPTION_LETTER.
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
OPTION_LETTER = "\nAnswer with the option's letter from the given choices directly."
# MME's own answer instruction, which ends each of its questions; llava_mme.jsonl leaves it out
# (its convert_answer_to_mme.py, lines 64-69, puts it back to find each question in MME's files).
MME_YES_NO = "Please answer yes or no."
# LLaVA's llava/eval/model_vqa_loader.py, line 141: --max_new_tokens defaults to 128, and
# scripts/v1_5/eval/mme.sh, pope.sh and seed.sh do not pass it.
LLAVA_MAX_NEW_TOKENS = 128


@dataclass
class RetentionSet:
    """Test prompts of one general-ability set, how they are asked and how their answers are
    scored: each record's text is followed by `prompt_suffix`, its image processed as
    `image_processing` says ("pad": padded to a square with the processor's mean colour, LLaVA-1.5's
    image_aspect_ratio=pad; "crop": the processor's own resize and centre crop), the answer
    generated greedily up to `max_new_tokens`; `score(predictions)` gives the set's metrics,
    `headline` names the ones the summary table shows, `scoring` the answer reading
    ("original" or "corrected")."""

    name: str
    records: list[TestRecord]
    score: Callable[[dict[str, str]], dict]
    headline: tuple[str, ...]
    max_new_tokens: int = 16
    prompt_suffix: str = ""
    image_processing: str = "pad"
    scoring: str = "original"


class RetentionDataError(DataFormatError):
    """A general-ability set's files are not as released: every fault found (`problems`), the
    questions that did load and the count of missing images, for the data check's report."""

    def __init__(self, problems: list[str], questions: int = 0, missing_images: int = 0):
        super().__init__(problems[0] if len(problems) == 1 else
                         f"{len(problems)} problems: " + " Also: ".join(problems))
        self.problems = problems
        self.questions = questions
        self.missing_images = missing_images


@dataclass
class _Scan:
    """What a loader found: the records, and every fault (no fault is skipped over)."""

    what: str
    records: list[TestRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # images the questions name, not found
    missing_in: Path | None = None

    def raise_faults(self) -> None:
        problems = list(self.problems)
        if self.missing:
            shown = ", ".join(self.missing[:10]) + (f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else "")
            problems.insert(0, f"{len(self.missing)} image(s) of {self.what} are missing: {shown} "
                               f"({_describe_dir(self.missing_in, limit=10)}). Download or extract them there.")
        if problems:
            raise RetentionDataError(problems, len(self.records), len(self.missing))


def _settings(name: str, scoring: str, image_processing: str, max_new_tokens: int) -> None:
    check_scoring(scoring)
    if image_processing not in IMAGE_PROCESSING:
        raise ConfigError(f"retention_sets.{name}.image_processing={image_processing!r}; choose one of "
                          f"{IMAGE_PROCESSING}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"retention_sets.{name}.max_new_tokens must be a positive integer, got {max_new_tokens!r}")


def _limited(items: list, limit: int | None) -> list:
    if limit is not None and limit < 1:
        raise ConfigError(f"a retention set's limit must be >= 1 or null, got {limit}")
    return items if limit is None else items[:limit]


def _image_named(folder: Path, stem: str) -> Path | None:
    for name in (stem, *(stem + suffix for suffix in IMAGE_SUFFIXES)):
        if (folder / name).is_file():
            return folder / name
    return None


def _shown(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# -- MME ----------------------------------------------------------------------------------------
MME_SUBTASKS = MME_PERCEPTION + MME_COGNITION


def mme_folder(root: Path) -> Path:
    """The folder holding MME's subtask folders: `root` itself (LLaVA's layout, which its
    mme.sh reads as MME_Benchmark_release_version/<subtask>), else `root/MME_Benchmark` (how the
    release's zip extracts)."""
    if any((root / subtask).is_dir() for subtask in MME_SUBTASKS):
        return root
    nested = root / "MME_Benchmark"
    if any((nested / subtask).is_dir() for subtask in MME_SUBTASKS):
        return nested
    return root


def _mme_question(line: str) -> tuple[str, str] | None:
    """(question, answer) of a question line; convert_answer_to_mme.py reads it with
    `line.strip().split('\\t')` into exactly two fields (line 35) and calculation.py accepts
    the answer "yes" or "no" in any case (lines 119-122). None: not such a line."""
    fields = line.strip().split("\t")
    if len(fields) != 2 or fields[1].strip().lower() not in ("yes", "no"):
        return None
    return fields[0], fields[1].strip()


def _scan_mme(root: Path, yes_no_instruction: str) -> tuple[_Scan, list[tuple[str, str, str, str]]]:
    scan, questions = _Scan("MME"), []
    if not root.is_dir():
        scan.problems.append(f"The MME folder {root} does not exist ({_describe_dir(root.parent)}); point "
                             f"retention_sets.mme.root at MME_Benchmark_release_version.")
        return scan, questions
    base = mme_folder(root)
    present = [s for s in MME_SUBTASKS if (base / s).is_dir()]
    if not present:
        scan.problems.append(f"No MME subtask folder under {root} ({_describe_dir(root)}); expected folders named "
                             f"{', '.join(MME_SUBTASKS)}, there or under {root / 'MME_Benchmark'}")
        return scan, questions
    absent = [s for s in MME_SUBTASKS if s not in present]
    if absent:
        # calculation.py opens every subtask's answers (lines 99-102): the totals need all fourteen
        scan.problems.append(f"MME subtask folder(s) {', '.join(absent)} missing under {base} ({_describe_dir(base)}): "
                             f"perception sums ten subtasks and cognition four, as MME's calculation.py does. "
                             f"Extract the whole MME_Benchmark_release_version there.")
    for subtask in present:
        folder = base / subtask
        if (folder / "images").exists():  # convert_answer_to_mme.py, lines 24-28
            images, texts = folder / "images", folder / "questions_answers_YN"
            if not texts.is_dir():
                scan.problems.append(f"{folder} has images/ but no questions_answers_YN/ ({_describe_dir(folder)}); "
                                     f"restore the subtask's folder from the MME release.")
                continue
        else:
            images = texts = folder
        txts = sorted(texts.glob("*.txt"))
        if not txts:
            scan.problems.append(f"{texts} holds no question file (.txt) ({_describe_dir(texts, limit=10)}); restore "
                                 f"the subtask's folder from the MME release.")
        stems = {txt.stem for txt in txts}
        unasked = sorted(p.name for p in images.iterdir() if p.suffix in IMAGE_SUFFIXES and p.stem not in stems) \
            if images.is_dir() else []
        if unasked:
            scan.problems.append(f"{len(unasked)} image(s) of MME's {subtask} have no question file in {texts}: "
                                 f"{_shown(unasked)}; their questions would be left out. Restore the .txt files "
                                 f"from the MME release.")
        for txt in txts:
            image = _image_named(images, txt.stem)
            if image is None:
                scan.missing.append(str(images / txt.stem) + ".*")
                scan.missing_in = scan.missing_in or images
            asked = []
            for line_number, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                parsed = _mme_question(line)
                if parsed is None:
                    scan.problems.append(f"{txt}, line {line_number}: expected 'question<TAB>Yes' or "
                                         f"'question<TAB>No', got {line!r}")
                    continue
                asked.append((line_number, *parsed))
            if len(asked) != 2:
                # calculation.py pairs consecutive answers as one image's two (lines 103, 112-113)
                scan.problems.append(f"{txt} holds {len(asked)} question(s); MME asks exactly two about each "
                                     f"image (acc+ scores them as a pair). Restore the file from the MME release.")
            if image is None:
                continue
            for line_number, question, answer in asked:
                if yes_no_instruction == "drop":
                    question = question.replace(MME_YES_NO, "").strip()
                qid = f"{subtask}/{txt.stem}/{line_number}"
                scan.records.append(TestRecord(qid, image, question, answer))
                questions.append((subtask, txt.stem, qid, answer))
    return scan, questions


def load_mme(root, limit: int | None = None, scoring: str = "original", prompt_suffix: str = SHORT_ANSWER,
             yes_no_instruction: str = "drop", image_processing: str = "pad",
             max_new_tokens: int = LLAVA_MAX_NEW_TOKENS) -> RetentionSet:
    """MME's fourteen subtasks under `root`, asked as LLaVA-1.5's llava_mme.jsonl asks them: with
    `yes_no_instruction="drop"` each question without MME's "Please answer yes or no." ("keep":
    as released), followed by `prompt_suffix`. `limit`: the first N questions (a debugging aid:
    a cut can leave an image with one of its two questions)."""
    _settings("mme", scoring, image_processing, max_new_tokens)
    if yes_no_instruction not in ("drop", "keep"):
        raise ConfigError(f"retention_sets.mme.yes_no_instruction={yes_no_instruction!r}; choose drop or keep")
    scan, questions = _scan_mme(Path(root).expanduser(), yes_no_instruction)
    scan.raise_faults()
    records = _limited(scan.records, limit)
    kept = {r.question_id for r in records}
    questions = [q for q in questions if q[2] in kept]
    return RetentionSet("MME", records, lambda predictions: {**mme_scores(questions, predictions, scoring),
                                                             "scoring": scoring},
                        headline=("perception", "cognition"), max_new_tokens=max_new_tokens,
                        prompt_suffix=prompt_suffix, image_processing=image_processing, scoring=scoring)


# -- POPE ---------------------------------------------------------------------------------------
def _scan_pope(questions_dir: Path, images_dir: Path, splits, limit: int | None) -> _Scan:
    scan = _Scan("POPE", missing_in=images_dir)
    for split in splits:
        path = questions_dir / f"coco_pope_{split}.json"
        if not path.is_file():
            scan.problems.append(f"The POPE file {path} does not exist ({_describe_dir(questions_dir)}); splits are "
                                 f"random, popular and adversarial.")
            continue
        split_records, seen = [], {}
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                qid, image, text, label = item["question_id"], item["image"], item["text"], item["label"]
            except (ValueError, KeyError, TypeError) as err:
                scan.problems.append(f"{path}, line {line_number}: expected a JSON object with question_id, image, "
                                     f"text and label ({type(err).__name__}: {err})")
                continue
            if not isinstance(image, str) or not isinstance(text, str):
                scan.problems.append(f"{path}, line {line_number}: image and text must be strings, got "
                                     f"{image!r} and {text!r}")
                continue
            if label not in ("yes", "no"):
                # eval_pope.py, lines 23-26, reads every label but "no" as yes: refuse anything else
                scan.problems.append(f"{path}, line {line_number}: label must be 'yes' or 'no' as POPE writes it, "
                                     f"got {label!r}")
                continue
            if str(qid) in seen:
                scan.problems.append(f"{path}, line {line_number}: question_id {qid!r} repeats line {seen[str(qid)]}; "
                                     f"answers are scored by id, so one of them would be lost. Restore the file "
                                     f"from POPE's output/coco.")
                continue
            seen[str(qid)] = line_number
            if not (images_dir / image).is_file():
                scan.missing.append(str(images_dir / image))
            split_records.append(TestRecord(f"{split}/{qid}", images_dir / image, text, label))
        if not split_records and not any(p.startswith(f"{path},") for p in scan.problems):
            scan.problems.append(f"The POPE file {path} holds no question; restore it from POPE's output/coco.")
        scan.records += _limited(split_records, limit)
    return scan


def load_pope(questions_dir, images_dir, splits=("random", "popular", "adversarial"),
              limit: int | None = None, scoring: str = "original", prompt_suffix: str = SHORT_ANSWER,
              image_processing: str = "pad", max_new_tokens: int = LLAVA_MAX_NEW_TOKENS) -> RetentionSet:
    """POPE's splits, each question followed by `prompt_suffix` (as llava_pope_test.jsonl asks
    it); `limit`: the first N questions of each split."""
    _settings("pope", scoring, image_processing, max_new_tokens)
    splits = list(splits)
    scan = _scan_pope(Path(questions_dir).expanduser(), Path(images_dir).expanduser(), splits, limit)
    scan.raise_faults()
    labels = {r.question_id: r.answer for r in scan.records}

    def score(predictions: dict[str, str]) -> dict:
        # eval_pope.py scores each split on its own (lines 74-80); the means are LLaVA-1.5's summary
        per_split = {split: pope_scores({q: a for q, a in labels.items() if q.startswith(f"{split}/")},
                                        predictions, scoring) for split in splits}
        means = {f"mean_{key}": sum(s[key] for s in per_split.values()) / len(per_split) for key in ("accuracy", "f1")}
        return {**means, "splits": per_split, "scoring": scoring}

    return RetentionSet("POPE", scan.records, score, headline=("mean_accuracy", "mean_f1"),
                        max_new_tokens=max_new_tokens, prompt_suffix=prompt_suffix,
                        image_processing=image_processing, scoring=scoring)


# -- SEED-Bench ---------------------------------------------------------------------------------
SEED_KEYS = ("question_id", "question", "choice_a", "choice_b", "choice_c", "choice_d", "answer", "data_id",
             "data_type", "question_type_id")


def _scan_seed(questions_file: Path, images_dir: Path) -> tuple[_Scan, dict[str, str], dict[str, str]]:
    scan, answers, types = _Scan("SEED-Bench", missing_in=images_dir), {}, {}
    try:
        data = _read_json(questions_file, "SEED-Bench question file")
    except DataFormatError as err:
        scan.problems.append(str(err))
        return scan, answers, types
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        scan.problems.append(f"The SEED-Bench file {questions_file} must hold an object with a 'questions' list")
        return scan, answers, types
    type_names = {int(v): k for k, v in (data.get("question_type") or {}).items()}
    seen: dict[str, int] = {}
    for index, item in enumerate(data["questions"]):
        absent = [key for key in SEED_KEYS if not isinstance(item, dict) or key not in item]
        if absent:
            scan.problems.append(f"{questions_file}, question {index}: missing key "
                                 f"{', '.join(repr(k) for k in absent)}")
            continue
        if item["data_type"] != "image":  # convert_seed_for_submission.py, line 23 (eval_only_type='image')
            continue
        qid, answer = str(item["question_id"]), item["answer"]
        if answer not in ("A", "B", "C", "D"):
            # convert_seed_for_submission.py, line 34: only an answer equal to it is right
            scan.problems.append(f"{questions_file}, question {index} (question_id {qid}): answer {answer!r} is not "
                                 f"one of A, B, C, D, so no answer could be right. Download SEED-Bench.json again.")
            continue
        if qid in seen:
            scan.problems.append(f"{questions_file}, question {index}: question_id {qid} repeats question {seen[qid]}; "
                                 f"answers are scored by id, so one would be lost. Download SEED-Bench.json again.")
            continue
        seen[qid] = index
        image = _image_named(images_dir, str(item["data_id"]))
        if image is None:
            scan.missing.append(str(images_dir / str(item["data_id"])))
            continue
        options = "\n".join(f"{letter}. {item[f'choice_{letter.lower()}']}" for letter in "ABCD")
        scan.records.append(TestRecord(qid, image, f"{item['question']}\n{options}", answer))
        answers[qid] = answer
        try:
            types[qid] = type_names.get(int(item["question_type_id"]), str(item["question_type_id"]))
        except (TypeError, ValueError):
            types[qid] = str(item["question_type_id"])
    if not scan.records and not scan.problems and not scan.missing:
        scan.problems.append(f"{questions_file} has no image questions")
    return scan, answers, types


def load_seed(questions_file, images_dir, limit: int | None = None, scoring: str = "original",
              prompt_suffix: str = OPTION_LETTER, image_processing: str = "pad",
              max_new_tokens: int = LLAVA_MAX_NEW_TOKENS) -> RetentionSet:
    """SEED-Bench's image questions (video ones are left out), each asked as
    llava-seed-bench.jsonl asks it: the question, its options "A. ..." to "D. ..." a line each,
    then `prompt_suffix`."""
    _settings("seed", scoring, image_processing, max_new_tokens)
    scan, answers, types = _scan_seed(Path(questions_file).expanduser(), Path(images_dir).expanduser())
    scan.raise_faults()
    records = _limited(scan.records, limit)
    answers = {r.question_id: answers[r.question_id] for r in records}
    return RetentionSet("SEED", records,
                        lambda predictions: {**seed_scores(answers, predictions, types, scoring), "scoring": scoring},
                        headline=("accuracy",), max_new_tokens=max_new_tokens, prompt_suffix=prompt_suffix,
                        image_processing=image_processing, scoring=scoring)


# -- the synthetic benchmark's own set ----------------------------------------------------------
def synthetic_general(root, image_size: int = 64, conversations: int = 100, seed: int = 0,
                      limit: int | None = None) -> RetentionSet:
    """The synthetic benchmark's general-ability set: `conversations` held-out mixture
    conversations (generated once under `root`), each of their questions asked alone."""
    from hide.data.synth import MIXTURE, generate_mixture
    from hide.data.synth.texts import CAPTION_PROMPTS

    root = Path(root).expanduser() / f"general-px{image_size}-s{seed}-n{conversations}"
    generate_mixture(root, num_samples=conversations, image_size=image_size, seed=seed, split="test", progress=False)
    conversations_file = root / "instructions" / MIXTURE / "test.json"
    items = _read_json(conversations_file, "general-ability conversation file")
    records, families = [], {}
    for item in items:
        turns = item["conversations"]
        for t in range(0, len(turns), 2):
            question = _strip_image_token(turns[t]["value"])
            if question in CAPTION_PROMPTS:  # a caption has no exact answer: its questions only
                continue
            qid = f"{item['id']}_{t // 2}"
            records.append(TestRecord(qid, root / "datasets" / item["image"], question, turns[t + 1]["value"]))
            families[qid] = item["meta"]["family"]
    records = _limited(records, limit)
    answers = {r.question_id: r.answer for r in records}

    def score(predictions: dict[str, str]) -> dict:
        right = {qid: exact_match(predictions.get(qid, ""), answer) for qid, answer in answers.items()}
        by_family: dict[str, list[bool]] = {}
        for qid, ok in right.items():
            by_family.setdefault(families[qid], []).append(ok)
        return {"accuracy": 100.0 * sum(right.values()) / len(right),
                "by_family": {f: 100.0 * sum(v) / len(v) for f, v in sorted(by_family.items())}}

    return RetentionSet("General", records, score, headline=("accuracy",))


__all__ = ["RetentionSet", "RetentionDataError", "load_mme", "load_pope", "load_seed", "synthetic_general",
           "SCORINGS", "SHORT_ANSWER", "OPTION_LETTER", "LLAVA_MAX_NEW_TOKENS"]
