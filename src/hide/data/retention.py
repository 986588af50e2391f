"""General-ability sets a continual run is scored on with the base model and the final model
(`eval.retention`): MME, POPE and SEED-Bench's image questions from local folders in their
published layouts, and the synthetic benchmark's own set. Each loader returns a `RetentionSet`:
test prompts and the published metric of the set (`hide.metrics.retention`).

Layouts read:
- MME (`root` = MME_Benchmark_release_version): one folder per subtask; either `<subtask>/images/`
  beside `<subtask>/questions_answers_YN/`, or the images and their .txt files side by side. Each
  .txt holds one question per line, `question<TAB>Yes|No`, about the image of the same name.
- POPE: `coco_pope_<split>.json` in `questions_dir`, one JSON object per line with question_id,
  image (a file in `images_dir`, COCO val2014), text and label (yes / no).
- SEED-Bench: `questions_file` (SEED-Bench.json: "questions", each with question_id, question,
  choice_a..choice_d, answer, data_id, data_type, question_type_id; and "question_type", name ->
  id); the images in `images_dir` named by data_id (with or without its extension). Video
  questions are left out.
- The synthetic set: held-out conversations of the pretraining mixture (`generate_mixture`,
  split "test"), every question asked on its own (captions left out: they have no exact
  answer): the kinds of questions the base model was instruction-tuned on, which no benchmark
  task trains. Exact match, overall and per family.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hide.data.formats import DataFormatError, TestRecord, _describe_dir, _read_json, _strip_image_token
from hide.errors import ConfigError
from hide.metrics.qa import exact_match
from hide.metrics.retention import MME_COGNITION, MME_PERCEPTION, mme_scores, pope_scores, seed_scores

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
SEED_PROMPT = "Answer with the option's letter from the given choices directly."


@dataclass
class RetentionSet:
    """Test prompts of one general-ability set and how its answers are scored: `score(predictions)`
    gives the set's metrics, `headline` names the ones the summary table shows."""

    name: str
    records: list[TestRecord]
    score: Callable[[dict[str, str]], dict]
    headline: tuple[str, ...]
    max_new_tokens: int = 16


def _limited(items: list, limit: int | None) -> list:
    if limit is not None and limit < 1:
        raise ConfigError(f"a retention set's limit must be >= 1 or null, got {limit}")
    return items if limit is None else items[:limit]


def _missing_images(missing: list[str], what: str, folder: Path) -> None:
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataFormatError(f"{len(missing)} image(s) of {what} are missing: {shown} "
                              f"({_describe_dir(folder, limit=10)}). Download or extract them there.")


def _image_named(folder: Path, stem: str) -> Path | None:
    for name in (stem, *(stem + suffix for suffix in IMAGE_SUFFIXES)):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mme(root, limit: int | None = None) -> RetentionSet:
    """MME's perception and cognition subtasks found under `root`."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataFormatError(f"The MME folder {root} does not exist ({_describe_dir(root.parent)}); point "
                              f"retention_sets.mme.root at MME_Benchmark_release_version.")
    records, questions, missing = [], [], []
    for subtask in (*MME_PERCEPTION, *MME_COGNITION):
        folder = root / subtask
        if not folder.is_dir():
            continue
        texts = folder / "questions_answers_YN" if (folder / "questions_answers_YN").is_dir() else folder
        images = folder / "images" if (folder / "images").is_dir() else folder
        for txt in sorted(texts.glob("*.txt")):
            image = _image_named(images, txt.stem)
            if image is None:
                missing.append(str(images / txt.stem) + ".*")
                continue
            for line_number, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                question, tab, answer = line.rpartition("\t")
                if not tab or answer.strip().lower() not in ("yes", "no"):
                    raise DataFormatError(f"{txt}, line {line_number}: expected 'question<TAB>Yes' or "
                                          f"'question<TAB>No', got {line!r}")
                qid = f"{subtask}/{txt.stem}/{line_number}"
                records.append(TestRecord(qid, image, question.strip(), answer.strip()))
                questions.append((subtask, txt.stem, qid, answer.strip()))
    _missing_images(missing, "MME", root)
    if not records:
        raise DataFormatError(f"No MME subtask folder with questions under {root} ({_describe_dir(root)}); "
                              f"expected folders named {', '.join(MME_PERCEPTION + MME_COGNITION)}")
    records = _limited(records, limit)
    kept = {r.question_id for r in records}
    questions = [q for q in questions if q[2] in kept]
    return RetentionSet("MME", records, lambda predictions: mme_scores(questions, predictions),
                        headline=("perception", "cognition"), max_new_tokens=8)


def load_pope(questions_dir, images_dir, splits=("random", "popular", "adversarial"),
              limit: int | None = None) -> RetentionSet:
    """POPE's splits; `limit`: the first N questions of each split."""
    questions_dir, images_dir = Path(questions_dir).expanduser(), Path(images_dir).expanduser()
    records, labels, missing = [], {}, []
    for split in splits:
        path = questions_dir / f"coco_pope_{split}.json"
        if not path.is_file():
            raise DataFormatError(f"The POPE file {path} does not exist ({_describe_dir(questions_dir)}); "
                                  f"splits are random, popular and adversarial.")
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        split_records = []
        for line_number, line in enumerate(lines, start=1):
            try:
                item = json.loads(line)
                qid, image, text, label = item["question_id"], item["image"], item["text"], item["label"]
            except (ValueError, KeyError, TypeError) as err:
                raise DataFormatError(f"{path}, line {line_number}: expected a JSON object with question_id, "
                                      f"image, text and label ({type(err).__name__}: {err})") from err
            if str(label).strip().lower() not in ("yes", "no"):
                raise DataFormatError(f"{path}, line {line_number}: label must be yes or no, got {label!r}")
            if not (images_dir / image).is_file():
                missing.append(str(images_dir / image))
            key = f"{split}/{qid}"
            split_records.append(TestRecord(key, images_dir / image, text, str(label).strip().lower()))
        records += _limited(split_records, limit)
    _missing_images(missing, "POPE", images_dir)
    labels = {r.question_id: r.answer for r in records}

    def score(predictions: dict[str, str]) -> dict:
        per_split = {split: pope_scores({q: a for q, a in labels.items() if q.startswith(f"{split}/")}, predictions)
                     for split in splits}
        means = {f"mean_{key}": sum(s[key] for s in per_split.values()) / len(per_split) for key in ("accuracy", "f1")}
        return {**means, "splits": per_split}

    return RetentionSet("POPE", records, score, headline=("mean_accuracy", "mean_f1"), max_new_tokens=8)


def load_seed(questions_file, images_dir, limit: int | None = None) -> RetentionSet:
    """SEED-Bench's image questions (video ones are left out)."""
    questions_file, images_dir = Path(questions_file).expanduser(), Path(images_dir).expanduser()
    data = _read_json(questions_file, "SEED-Bench question file")
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise DataFormatError(f"The SEED-Bench file {questions_file} must hold an object with a 'questions' list")
    type_names = {int(v): k for k, v in data.get("question_type", {}).items()}
    records, answers, types, missing = [], {}, {}, []
    for index, item in enumerate(data["questions"]):
        if item.get("data_type", "image") != "image":
            continue
        try:
            qid, answer = str(item["question_id"]), str(item["answer"])
            options = [item[f"choice_{c}"] for c in "abcd"]
            question, data_id = item["question"], str(item["data_id"])
        except KeyError as err:
            raise DataFormatError(f"{questions_file}, question {index}: missing key {err}") from err
        image = _image_named(images_dir, data_id)
        if image is None:
            missing.append(str(images_dir / data_id))
            continue
        text = "\n".join([question, *(f"{letter}. {option}" for letter, option in zip("ABCD", options)), SEED_PROMPT])
        records.append(TestRecord(qid, image, text, answer))
        answers[qid] = answer
        types[qid] = type_names.get(int(item.get("question_type_id", -1)), str(item.get("question_type_id")))
    _missing_images(missing, "SEED-Bench", images_dir)
    if not records:
        raise DataFormatError(f"{questions_file} has no image questions")
    records = _limited(records, limit)
    answers = {r.question_id: answers[r.question_id] for r in records}
    return RetentionSet("SEED", records, lambda predictions: seed_scores(answers, predictions, types),
                        headline=("accuracy",), max_new_tokens=8)


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
