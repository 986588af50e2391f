"""General-ability retention: MME, POPE and SEED-Bench scored as LLaVA-1.5's evaluation scores them
(hand-worked answers, each case citing the official line it follows), their loaders on folders
generated here in the official layouts (and every way data could be lost, refused by name), the
settings in conf/train.yaml, the data check, and eval.retention through the task loop.

Official code read (FILE:LINE below):
- calculation.py: MME's eval_tool/calculation.py, distributed with MME's data (the copy read is
  github.com/zjunlp/Deco, eval_tool/calculation.py).
- convert_answer_to_mme.py: LLaVA's playground/data/eval/MME/convert_answer_to_mme.py, from its
  eval.zip (the copy read was committed to a fork in the haotian-liu/LLaVA network), with the
  question files llava_mme.jsonl and llava_pope_test.jsonl beside it.
- eval_pope.py: LLaVA's llava/eval/eval_pope.py; evaluate.py: POPE's own (AoiDragon/POPE).
- convert_seed_for_submission.py: LLaVA's scripts/convert_seed_for_submission.py.
- model_vqa_loader.py: LLaVA's llava/eval/model_vqa_loader.py; mme.sh, pope.sh, seed.sh: LLaVA's
  scripts/v1_5/eval/.
"""

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from hide.data.formats import DataFormatError
from hide.data.retention import (LLAVA_MAX_NEW_TOKENS, OPTION_LETTER, SHORT_ANSWER, RetentionDataError, load_mme,
                                 load_pope, load_seed, synthetic_general)
from hide.data.synth.texts import CAPTION_PROMPTS
from hide.errors import ConfigError
from hide.loop import run_continual
from hide.metrics.retention import (MME_COGNITION, MME_PERCEPTION, mme_answer, mme_scores, option_letter,
                                    pope_answer, pope_scores, seed_right, seed_scores)


# -- MME: the answer read as calculation.py reads it ----------------------------------------------
# calculation.py:117-120 takes the answer from the line convert_answer_to_mme.py:71-72 wrote (with
# its "\n") and lower-cases it; parse_pred_ans (calculation.py:27-41) reads that.
MME_CASES = [
    # calculation.py:32,34: "yes\n"[:4] holds "yes"
    ("Yes", "yes", "yes"),
    # calculation.py:32,36: "no\n"[:4] holds "no"
    ("No", "no", "no"),
    # calculation.py:120 lower-cases before parsing: "YES." -> "yes." holds "yes"
    ("YES.", "yes", "yes"),
    # calculation.py:32,36: "no, "[:4] holds "no"
    ("No, there is not.", "no", "no"),
    # calculation.py:32,34: "yes,"
    ("Yes, there is.", "yes", "yes"),
    # calculation.py:36: "nope" holds "no"
    ("Nope", "no", "other"),
    # calculation.py:36: "know" holds "no" (a substring, not the word)
    ("Know", "no", "other"),
    # calculation.py:34: "eyes" holds "yes"
    ("Eyes", "yes", "other"),
    # calculation.py:34 is tested before :36: "noye" holds no "yes", then "no"
    ("Noyes", "no", "other"),
    # calculation.py:36: "snow" holds "no"
    ("Snow", "no", "other"),
    # calculation.py:34: "yest" holds "yes"
    ("Yesterday", "yes", "other"),
    # calculation.py:36: "noth" holds "no"
    ("Nothing", "no", "other"),
    # calculation.py:39: "unkn" holds neither
    ("Unknown", "other", "other"),
    # calculation.py:32,39: only the first four characters count: "i th"
    ("I think yes", "other", "other"),
    # calculation.py:39: "the " holds neither
    ("The answer is yes", "other", "other"),
    # calculation.py:39: LLaVA-1.5-13B's own answer to an artwork question, "chur"
    ("Church", "other", "other"),
    # calculation.py:39: an empty answer is written as "" and read as "\n"
    ("", "other", "other"),
]


@pytest.mark.parametrize("answer, official, corrected", MME_CASES)
def test_mme_reads_an_answer_as_calculation_py_does(answer, official, corrected):
    assert mme_answer(answer) == official
    assert mme_answer(answer, "original") == official
    assert mme_answer(answer, "corrected") == corrected


def test_mme_reads_yes_no_as_its_scorer_does():
    assert [mme_answer(a) for a in ("Yes", " no ", "Yes, there is.", "No.", "nope", "maybe", "I see yes", "")] == \
        ["yes", "no", "yes", "no", "no", "other", "other", "other"]


def test_mme_acc_acc_plus_and_totals_by_hand():
    questions = [
        ("existence", "a", "e/a/1", "Yes"), ("existence", "a", "e/a/2", "No"),
        ("existence", "b", "e/b/1", "Yes"), ("existence", "b", "e/b/2", "No"),
        ("count", "c", "c/c/1", "Yes"), ("count", "c", "c/c/2", "No"),
        ("code_reasoning", "d", "r/d/1", "No"), ("code_reasoning", "d", "r/d/2", "Yes"),
    ]
    predictions = {"e/a/1": "Yes", "e/a/2": "No, there is not.", "e/b/1": "no", "e/b/2": "No",
                   "c/c/1": "maybe", "c/c/2": "No", "r/d/1": "No", "r/d/2": "yes"}
    scores = mme_scores(questions, predictions)
    # existence: 3 of 4 questions, 1 of 2 images with both right -> 75 + 50
    assert scores["subtasks"]["existence"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0}
    assert scores["subtasks"]["count"] == {"acc": 50.0, "acc_plus": 0.0, "score": 50.0}
    assert scores["subtasks"]["code_reasoning"]["score"] == 200.0
    assert (scores["perception"], scores["cognition"], scores["neither_yes_nor_no"]) == (175.0, 200.0, 1)


def test_mme_scores_with_calculation_py_arithmetic():
    # one subtask, three images (Yes, No each): 5 of 6 questions right, 2 of 3 images with both right
    questions = [("OCR", img, f"{img}/{n}", truth) for img in "abc" for n, truth in ((1, "Yes"), (2, "No"))]
    said = {"a/1": "Yes", "a/2": "No", "b/1": "Yes", "b/2": "No", "c/1": "Yes", "c/2": "Yes"}
    # calculation.py:56 acc = accuracy_score = 5 / 6; :145-147 task_score = 0 + acc * 100 + acc_plus * 100:
    # 83.33333333333334 (100 * 5 / 6 would be 83.33333333333333); :141 acc_plus = 2 / 3 -> 66.66666666666666
    assert mme_scores(questions, said)["subtasks"]["OCR"] == {"acc": 83.33333333333334, "acc_plus": 66.66666666666666,
                                                               "score": 150.0}
    # "Know" and "Nothing" read as no (calculation.py:36): all six right -> 100 + 100
    said.update({"b/2": "Nothing", "c/2": "Know"})
    assert mme_scores(questions, said)["subtasks"]["OCR"] == {"acc": 100.0, "acc_plus": 100.0, "score": 200.0}
    # corrected reads both as neither: 4 of 6 right, 1 of 3 images; in floating point
    # 0 + 66.66666666666666 + 33.33333333333333 is 99.99999999999999, as calculation.py would sum it
    assert mme_scores(questions, said, "corrected")["subtasks"]["OCR"] == {
        "acc": 66.66666666666666, "acc_plus": 33.33333333333333, "score": 99.99999999999999}


def test_mme_totals_sum_ten_and_four_subtasks():
    # calculation.py:93-151: perception = the ten subtasks' scores summed from 0, cognition the four
    questions, said = [], {}
    for i, subtask in enumerate(MME_PERCEPTION + MME_COGNITION):
        for n, truth in ((1, "Yes"), (2, "No")):
            questions.append((subtask, "img", f"{subtask}/{n}", truth))
        # every second subtask both right (200), the others one right (50 + 0)
        said[f"{subtask}/1"] = "Yes"
        said[f"{subtask}/2"] = "No" if i % 2 == 0 else "Yes"
    scores = mme_scores(questions, said)
    assert scores["perception"] == 5 * 200.0 + 5 * 50.0
    assert scores["cognition"] == 2 * 200.0 + 2 * 50.0
    assert mme_scores(questions, {})["perception"] == 0.0  # a missing answer reads as "" -> other


# -- POPE: the answer read as eval_pope.py (and POPE's evaluate.py) reads it ------------------------
POPE_CASES = [
    # eval_pope.py:17-20 (evaluate.py:18-21): "Yes" holds none of No / not / no -> yes
    ("Yes", "yes", "yes"),
    # eval_pope.py:17: the word "No"
    ("No", "no", "no"),
    # eval_pope.py:12-13 (evaluate.py:13-14): first sentence "No"
    ("No.", "no", "no"),
    # eval_pope.py:15-17: commas removed, "No there is no dog" holds "No"
    ("No, there is no dog.", "no", "no"),
    # eval_pope.py:12-13: only "Yes there is a dog" is read; the second sentence's "No" is not
    ("Yes, there is a dog. No other animal.", "yes", "yes"),
    # eval_pope.py:17: the word "not"
    ("There is not a cat", "no", "no"),
    # eval_pope.py:17: case matters: "NO" is none of No / not / no -> yes
    ("NO", "yes", "no"),
    # eval_pope.py:16-17: "No!" is one piece, not "No"
    ("No!", "yes", "no"),
    # eval_pope.py:17: "Not" is not "not"
    ("Not at all", "yes", "no"),
    # eval_pope.py:16: split(' ') keeps "No\nThere" as one piece
    ("No\nThere is one", "yes", "no"),
    # eval_pope.py:15: the comma is removed, not replaced: "Nothere"
    ("No,there is", "yes", "no"),
    # eval_pope.py:17: any "no" in the first sentence, even after "Yes"
    ("Yes, there is no doubt", "no", "yes"),
    # eval_pope.py:12-13: first sentence "There is a dog"
    ("There is a dog.No", "yes", "yes"),
    # eval_pope.py:20: an empty answer is "yes"
    ("", "yes", "yes"),
    # eval_pope.py:17: "Nothing" is none of the three words
    ("Nothing", "yes", "yes"),
    # eval_pope.py:17: "no" anywhere in the sentence
    ("I see no cup", "no", "no"),
]


@pytest.mark.parametrize("answer, official, corrected", POPE_CASES)
def test_pope_reads_an_answer_as_eval_pope_py_does(answer, official, corrected):
    assert pope_answer(answer) == official
    assert pope_answer(answer, "original") == official
    assert pope_answer(answer, "corrected") == corrected


def test_pope_reads_the_first_sentence():
    assert pope_answer("No, there is no dog.") == "no"
    assert pope_answer("Yes, there is a dog. No other animal.") == "yes"  # first sentence only
    assert pope_answer("There is not a cat in the image") == "no"
    assert pope_answer("Nothing like that") == "yes"  # "Nothing" is not one of the words
    assert pope_answer("") == "yes"


def test_pope_metrics_by_hand():
    labels = {str(i): label for i, label in enumerate(["yes"] * 4 + ["no"] * 4)}
    said = ["Yes", "Yes", "Yes", "No", "Yes", "No", "No", "No"]  # TP 3, FN 1, FP 1, TN 3
    scores = pope_scores(labels, dict(zip(labels, said)))
    assert scores == {"accuracy": 75.0, "precision": 75.0, "recall": 75.0, "f1": 75.0, "yes_ratio": 50.0}
    scores = pope_scores(labels, dict(zip(labels, ["Yes"] * 8)))  # always yes
    assert scores["precision"] == 50.0 and scores["recall"] == 100.0 and scores["yes_ratio"] == 100.0
    assert scores["f1"] == pytest.approx(100 * 2 * 0.5 / 1.5)


def test_pope_metrics_with_eval_pope_py_arithmetic():
    labels = {str(i): label for i, label in enumerate(["yes"] * 4 + ["no"] * 4)}
    # label yes: "Yes" TP; "No!" TP (eval_pope.py:17: not the word "No"); "No" FN; "Not here" TP ("Not")
    # label no: "No\nwait" FP (eval_pope.py:16: one piece); "No", "No" TN; "no." TN (:12-13 "no")
    said = ["Yes", "No!", "No", "Not here", "No\nwait", "No", "No", "no."]
    scores = pope_scores(labels, dict(zip(labels, said)))
    # eval_pope.py:53-56: precision 3/4, recall 3/4, f1 0.75, acc 6/8; :37 yes_ratio 4/8
    assert scores == {"accuracy": 75.0, "precision": 75.0, "recall": 75.0, "f1": 75.0, "yes_ratio": 50.0}
    # TP 2, FP 1, FN 2, TN 3: precision 2/3 -> 66.66666666666666, recall 0.5,
    # f1 = 2 * (2/3) * 0.5 / (2/3 + 0.5) = 0.5714285714285715 -> 57.14285714285715, acc 5/8
    said = ["Yes", "Yes", "No", "No", "Yes", "No", "No", "No"]
    scores = pope_scores(labels, dict(zip(labels, said)))
    assert scores == {"accuracy": 62.5, "precision": 66.66666666666666, "recall": 50.0, "f1": 57.14285714285715,
                      "yes_ratio": 37.5}
    # eval_pope.py:53 divides by zero when nothing reads as yes; the value here is 0
    assert pope_scores(labels, dict.fromkeys(labels, "No"))["precision"] == 0.0
    # corrected reads "No!" and "Not here" as no: TP 1, FN 3, FP 0 ("No\nwait" -> no), TN 4
    said = ["Yes", "No!", "No", "Not here", "No\nwait", "No", "No", "no."]
    corrected = pope_scores(labels, dict(zip(labels, said)), "corrected")
    assert corrected["accuracy"] == 62.5 and corrected["precision"] == 100.0 and corrected["recall"] == 25.0


# -- SEED-Bench: right only when the answer is exactly the letter ----------------------------------
SEED_CASES = [
    # convert_seed_for_submission.py:34: row['text'] == question_data['answer']
    ("A", "A", True, True),
    # :34: another letter
    ("B", "A", False, False),
    # :34: "A." is not "A"
    ("A.", "A", False, True),
    # :34: "(A)" is not "A"
    ("(A)", "A", False, True),
    # :34: "A) a cat" is not "A"
    ("A) a cat", "A", False, True),
    # :34: a sentence naming the letter is not the letter
    ("The answer is A", "A", False, True),
    # :34: case matters: "a" is not "A"
    ("a", "A", False, False),
    # :34: model_vqa_loader.py:116 strips the answer; the comparison itself strips nothing
    ("A ", "A", False, True),
    # :34: two letters
    ("AB", "A", False, False),
    # :34: an empty answer
    ("", "D", False, False),
    # :34: the option's text instead of its letter
    ("a cat", "A", False, False),
    # :34: the last letter
    ("D", "D", True, True),
]


@pytest.mark.parametrize("answer, truth, official, corrected", SEED_CASES)
def test_seed_counts_an_answer_as_convert_seed_does(answer, truth, official, corrected):
    assert seed_right(answer, truth) is official
    assert seed_right(answer, truth, "original") is official
    assert seed_right(answer, truth, "corrected") is corrected


def test_option_letters_and_seed_accuracy_by_hand():
    assert [option_letter(a) for a in ("B", "B.", "C) a cat", "(D)", "The answer is A", "I think C", "Apple", "E", "")] \
        == ["B", "B", "C", "D", "A", "C", None, None, None]
    answers = {"1": "A", "2": "B", "3": "C", "4": "D"}
    types = {"1": "Scene", "2": "Scene", "3": "Count", "4": "Count"}
    predictions = {"1": "A", "2": "C", "3": "C.", "4": "the answer is D"}
    # the lenient reading is `corrected`; convert_seed_for_submission.py:34 counts only "1" right
    scores = seed_scores(answers, predictions, types, "corrected")
    assert scores == {"accuracy": 75.0, "by_question_type": {"Count": 100.0, "Scene": 50.0}}
    assert seed_scores(answers, predictions, types) == {"accuracy": 25.0,
                                                        "by_question_type": {"Count": 0.0, "Scene": 50.0}}


def test_seed_accuracy_with_convert_seed_arithmetic():
    # seven questions of one type, four right: :40 correct / count * 100 = 4 / 7 * 100 = 57.14285714285714
    # (100 * 4 / 7 would be 57.142857142857146); :30-32 a question without an answer counts, as wrong
    answers = {str(i): "ABCDABC"[i] for i in range(7)}
    said = {"0": "A", "1": "B", "2": "C", "3": "D", "4": "B", "5": "B."}  # "6" has no answer
    scores = seed_scores(answers, said, dict.fromkeys(answers, "Instances Counting"))
    assert scores == {"accuracy": 57.14285714285714, "by_question_type": {"Instances Counting": 57.14285714285714}}
    # :37-47 the total sums the per-type counts: 1 of 3 and 4 of 7 -> 5 / 10 * 100
    answers.update({"a": "A", "b": "A", "c": "A"})
    said.update({"a": "A", "b": "(A)", "c": "A."})
    types = {**dict.fromkeys(answers, "Instances Counting"), "a": "Scene Understanding", "b": "Scene Understanding",
             "c": "Scene Understanding"}
    scores = seed_scores(answers, said, types)
    assert scores == {"accuracy": 50.0, "by_question_type": {"Instances Counting": 57.14285714285714,
                                                             "Scene Understanding": 33.33333333333333}}


def test_an_unknown_scoring_is_refused():
    for call in (lambda: mme_answer("Yes", "lenient"), lambda: pope_answer("No", "strict"),
                 lambda: seed_right("A", "A", "exact")):
        with pytest.raises(ConfigError, match=r"choose one of \('original', 'corrected'\)"):
            call()


# -- loaders on the official layouts --------------------------------------------------------------
# MME's release keeps five subtasks as images/ + questions_answers_YN/ (convert_answer_to_mme.py:24-26
# reads that split when images/ exists) and the others with images and .txt side by side.
MME_SPLIT = ("artwork", "celebrity", "landmark", "posters", "scene")


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (120, 30, 200)).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def make_mme(root: Path, images: int = 2, nested: bool = False) -> Path:
    """All fourteen subtasks as the release lays them out, `images` images each with its two
    questions; `nested`: under MME_Benchmark/, as the release's zip extracts."""
    base = root / "MME_Benchmark" if nested else root
    for subtask in MME_PERCEPTION + MME_COGNITION:
        folder = base / subtask
        split = subtask in MME_SPLIT
        for i in range(images):
            stem = f"{i + 1:04d}"
            _image((folder / "images" if split else folder) / f"{stem}.jpg")
            texts = folder / "questions_answers_YN" if split else folder
            texts.mkdir(parents=True, exist_ok=True)
            (texts / f"{stem}.txt").write_text("Is there a cat? Please answer yes or no.\tYes\n"
                                               "Is there a dog? Please answer yes or no.\tNo\n")
    return root


def make_pope(root: Path, per_split: int = 4) -> tuple[Path, Path]:
    images, questions = root / "coco" / "val2014", root / "POPE" / "coco"
    questions.mkdir(parents=True)
    for split in ("random", "popular", "adversarial"):
        lines = []
        for i in range(per_split):
            name = f"COCO_val2014_{i:012d}.jpg"
            _image(images / name)
            lines.append(json.dumps({"question_id": i + 1, "image": name, "text": "Is there a cup in the image?",
                                     "label": "yes" if i % 2 else "no"}))
        (questions / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")
    return questions, images


def make_seed(root: Path) -> tuple[Path, Path]:
    images = root / "SEED-Bench" / "SEED-Bench-image"
    questions = []
    for i in range(3):
        _image(images / f"img_{i}.jpg")
        questions.append({"question_id": str(100 + i), "question": "What is in the picture?", "choice_a": "a cat",
                          "choice_b": "a dog", "choice_c": "a cup", "choice_d": "a tree", "answer": "ABC"[i],
                          "data_id": f"img_{i}.jpg", "data_type": "image", "question_type_id": 1 + i % 2})
    questions.append({"question_id": "900", "question": "What happens next?", "choice_a": "x", "choice_b": "y",
                      "choice_c": "z", "choice_d": "w", "answer": "A", "data_id": "clip.mp4", "data_type": "video",
                      "question_type_id": 10})
    path = root / "SEED-Bench" / "SEED-Bench.json"
    path.write_text(json.dumps({"questions": questions,
                                "question_type": {"Scene Understanding": 1, "Instance Identity": 2,
                                                  "Action Recognition": 10}}))
    return path, images


def test_mme_loader_reads_both_layouts(tmp_path):
    mme = load_mme(make_mme(tmp_path / "MME"))
    assert len(mme.records) == 56 and mme.name == "MME"  # 14 subtasks x 2 images x 2 questions
    first = {r.question_id: r for r in mme.records}["artwork/0001/1"]
    assert first.image == tmp_path / "MME" / "artwork" / "images" / "0001.jpg" and first.answer == "Yes"
    assert first.text + mme.prompt_suffix == "Is there a cat?\nAnswer the question using a single word or phrase."
    as_released = {r.question_id: r for r in load_mme(tmp_path / "MME", yes_no_instruction="keep").records}
    assert as_released["artwork/0001/1"].text == "Is there a cat? Please answer yes or no."
    assert {r.question_id: r for r in mme.records}["existence/0002/2"].image == tmp_path / "MME" / "existence" / "0002.jpg"
    scores = mme.score({r.question_id: r.answer for r in mme.records})  # every answer right
    assert (scores["perception"], scores["cognition"], scores["scoring"]) == (2000.0, 800.0, "original")
    assert len(load_mme(tmp_path / "MME", limit=3).records) == 3


def test_mme_loader_reads_the_nested_release(tmp_path):
    root = make_mme(tmp_path / "MME_Benchmark_release_version", images=1, nested=True)
    for where in (root, root / "MME_Benchmark"):  # the release folder, or MME_Benchmark itself
        mme = load_mme(where)
        assert len(mme.records) == 28
        assert mme.records[0].image == root / "MME_Benchmark" / "existence" / "0001.jpg"
        assert mme.score({r.question_id: r.answer for r in mme.records})["perception"] == 2000.0


def test_mme_asks_as_llava_mme_jsonl_does(tmp_path):
    root = make_mme(tmp_path / "MME", images=1)
    # MME writes "  Please answer yes or no." after some questions (convert_answer_to_mme.py:66-69 tries
    # both); llava_mme.jsonl holds the question without it, then the suffix
    (root / "code_reasoning" / "0001.txt").write_text("Is a python code shown in the picture? Please answer yes or no.\tYes\n"
                                                      "Is the refrigerator on the right side of the picture  Please "
                                                      "answer yes or no.\tNo\n")
    mme = load_mme(root)
    asked = [r.text + mme.prompt_suffix for r in mme.records if r.question_id.startswith("code_reasoning/")]
    assert asked == ["Is a python code shown in the picture?\nAnswer the question using a single word or phrase.",
                     "Is the refrigerator on the right side of the picture\nAnswer the question using a single word "
                     "or phrase."]
    # model_vqa_loader.py:141 (128, which mme.sh keeps); images padded (image_aspect_ratio pad)
    assert (mme.max_new_tokens, mme.image_processing, mme.scoring) == (128, "pad", "original")


def test_mme_loader_names_what_is_wrong(tmp_path):
    root = make_mme(tmp_path / "MME")
    (root / "existence" / "0002.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"^1 image\(s\) of MME are missing: .*existence/0002\.\*"):
        load_mme(root)
    _image(root / "existence" / "0002.jpg")
    _image(root / "count" / "x.png")
    (root / "count" / "x.txt").write_text("Is it red?\tYes\nIs it blue? Maybe\n")
    with pytest.raises(DataFormatError, match=r"count/x\.txt, line 2: expected 'question<TAB>Yes'"):
        load_mme(root)
    with pytest.raises(DataFormatError, match=r"^The MME folder .*nowhere does not exist"):
        load_mme(tmp_path / "nowhere")


def test_mme_refuses_a_missing_subtask(tmp_path):
    root = make_mme(tmp_path / "MME", images=1)
    for subtask in ("count", "OCR"):
        for path in sorted((root / subtask).iterdir()):
            path.unlink()
        (root / subtask).rmdir()
    with pytest.raises(RetentionDataError, match=r"^MME subtask folder\(s\) count, OCR missing under .*MME .*"
                                                 r"perception sums ten subtasks"):
        load_mme(root)


@pytest.mark.parametrize("lines, count", [("Is there a cat? Please answer yes or no.\tYes\n", 1),
                                          ("A?\tYes\nB?\tNo\nC?\tYes\n", 3)])
def test_mme_refuses_an_image_without_two_questions(tmp_path, lines, count):
    root = make_mme(tmp_path / "MME", images=1)
    txt = root / "celebrity" / "questions_answers_YN" / "0001.txt"
    txt.write_text(lines)
    with pytest.raises(RetentionDataError, match="^" + re.escape(f"{txt} holds {count} question(s); MME asks exactly two")):
        load_mme(root)


def test_mme_refuses_an_image_without_its_questions(tmp_path):
    root = make_mme(tmp_path / "MME", images=1)
    _image(root / "scene" / "images" / "0009.jpg")
    _image(root / "color" / "0009.png")
    with pytest.raises(RetentionDataError) as error:
        load_mme(root)
    assert [p.split(":")[0] for p in error.value.problems] == [
        "1 image(s) of MME's color have no question file in " + str(root / "color"),
        "1 image(s) of MME's scene have no question file in " + str(root / "scene" / "questions_answers_YN")]
    # an images/ folder without questions_answers_YN/ beside it
    (root / "scene" / "images" / "0009.jpg").unlink()
    (root / "color" / "0009.png").unlink()
    for path in sorted((root / "landmark" / "questions_answers_YN").iterdir()):
        path.unlink()
    (root / "landmark" / "questions_answers_YN").rmdir()
    with pytest.raises(RetentionDataError, match=r"landmark has images/ but no questions_answers_YN/"):
        load_mme(root)


def test_pope_loader_and_scores_per_split(tmp_path):
    questions, images = make_pope(tmp_path)
    pope = load_pope(questions, images)
    assert len(pope.records) == 12 and {r.question_id.split("/")[0] for r in pope.records} == {
        "random", "popular", "adversarial"}
    answers = {r.question_id: ("Yes" if r.answer == "yes" else "No") for r in pope.records}
    answers["random/1"] = "Yes, there is."  # label no: one false positive in random
    scores = pope.score(answers)
    assert scores["splits"]["popular"]["accuracy"] == 100.0 and scores["splits"]["random"]["accuracy"] == 75.0
    assert scores["mean_accuracy"] == pytest.approx((75 + 100 + 100) / 3)
    assert len(load_pope(questions, images, splits=["random"], limit=2).records) == 2
    (images / "COCO_val2014_000000000003.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"^3 image\(s\) of POPE are missing"):  # one per split
        load_pope(questions, images)


def test_pope_reads_the_official_files_and_asks_as_llava_pope_test_jsonl_does(tmp_path):
    # the first lines of POPE's output/coco/coco_pope_adversarial.json, as released
    folder, images = tmp_path / "POPE" / "coco", tmp_path / "val2014"
    folder.mkdir(parents=True)
    official = [{"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
                 "label": "yes"},
                {"question_id": 2, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a car in the image?",
                 "label": "no"},
                {"question_id": 3, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a person in the image?",
                 "label": "yes"}]
    (folder / "coco_pope_adversarial.json").write_text("".join(json.dumps(q) + "\n" for q in official))
    _image(images / "COCO_val2014_000000310196.jpg")
    pope = load_pope(folder, images, splits=["adversarial"])
    # llava_pope_test.jsonl's first question, and model_vqa_loader.py:141's budget
    assert pope.records[0].text + pope.prompt_suffix == \
        "Is there a snowboard in the image?\nAnswer the question using a single word or phrase."
    assert (pope.max_new_tokens, pope.image_processing) == (128, "pad")
    assert [r.answer for r in pope.records] == ["yes", "no", "yes"]
    scores = pope.score({"adversarial/1": "Yes", "adversarial/2": "NO", "adversarial/3": "No"})
    # "NO" reads as yes (eval_pope.py:17): TP 1, FP 1, FN 1
    assert scores["splits"]["adversarial"]["accuracy"] == pytest.approx(100 / 3) and scores["scoring"] == "original"
    corrected = load_pope(folder, images, splits=["adversarial"], scoring="corrected")
    assert corrected.score({"adversarial/1": "Yes", "adversarial/2": "NO", "adversarial/3": "No"})[
        "splits"]["adversarial"]["accuracy"] == pytest.approx(200 / 3)


def test_pope_refuses_repeated_ids_and_labels_it_would_misread(tmp_path):
    questions, images = make_pope(tmp_path, per_split=3)
    path = questions / "coco_pope_popular.json"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"question_id": 3', '"question_id": 1')
    lines[1] = lines[1].replace('"label": "yes"', '"label": "No"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RetentionDataError) as error:
        load_pope(questions, images)
    assert error.value.problems == [
        f"{path}, line 2: label must be 'yes' or 'no' as POPE writes it, got 'No'",
        f"{path}, line 3: question_id 1 repeats line 1; answers are scored by id, so one of them would be lost. "
        f"Restore the file from POPE's output/coco."]


def test_seed_loader_keeps_image_questions_with_their_options(tmp_path):
    path, images = make_seed(tmp_path)
    seed = load_seed(path, images)
    assert [r.question_id for r in seed.records] == ["100", "101", "102"]  # the video question left out
    assert seed.records[1].text + seed.prompt_suffix == (
        "What is in the picture?\nA. a cat\nB. a dog\nC. a cup\nD. a tree\n"
        "Answer with the option's letter from the given choices directly.")
    scores = seed.score({"100": "A", "101": "A", "102": "C"})
    assert scores["accuracy"] == pytest.approx(200 / 3)
    assert scores["by_question_type"] == {"Instance Identity": 0.0, "Scene Understanding": 100.0}
    data = json.loads(path.read_text())
    del data["questions"][0]["choice_c"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"SEED-Bench\.json, question 0: missing key 'choice_c'"):
        load_seed(path, images)


def test_seed_reads_the_official_file_and_asks_as_llava_seed_bench_jsonl_does(tmp_path):
    # SEED-Bench.json as released: data_id is the image's file name without an extension
    folder = tmp_path / "SEED-Bench"
    _image(folder / "SEED-Bench-image" / "1454426_2591111986")
    data = {"questions": [{"answer": "A", "choice_a": "One", "choice_b": "Two", "choice_c": "Three", "choice_d": "Four",
                           "data_id": "1454426_2591111986", "data_type": "image",
                           "question": "How many towels are in the image?", "question_id": "101669",
                           "question_type_id": 5},
                          {"answer": "B", "choice_a": "a", "choice_b": "b", "choice_c": "c", "choice_d": "d",
                           "data_id": "v1234.mp4", "data_type": "video", "question": "What happens?",
                           "question_id": "1", "question_type_id": 10}],
            "question_type": {"Scene Understanding": 1, "Instance Identity": 2, "Instance Attributes": 3,
                              "Instance Location": 4, "Instances Counting": 5, "Spatial Relation": 6,
                              "Instance Interaction": 7, "Visual Reasoning": 8, "Text Understanding": 9,
                              "Action Recognition": 10, "Action Prediction": 11, "Procedure Understanding": 12}}
    (folder / "SEED-Bench.json").write_text(json.dumps(data))
    seed = load_seed(folder / "SEED-Bench.json", folder / "SEED-Bench-image")
    assert [r.question_id for r in seed.records] == ["101669"]
    assert seed.records[0].text + seed.prompt_suffix == ("How many towels are in the image?\nA. One\nB. Two\nC. Three\n"
                                                         "D. Four\nAnswer with the option's letter from the given "
                                                         "choices directly.")
    assert (seed.max_new_tokens, seed.image_processing) == (128, "pad")
    assert seed.score({"101669": "A."}) == {"accuracy": 0.0, "by_question_type": {"Instances Counting": 0.0},
                                            "scoring": "original"}
    assert load_seed(folder / "SEED-Bench.json", folder / "SEED-Bench-image", scoring="corrected").score(
        {"101669": "A."})["accuracy"] == 100.0


@pytest.mark.parametrize("answer", ["", "a", "E", None])
def test_seed_refuses_a_question_no_answer_could_get_right(tmp_path, answer):
    path, images = make_seed(tmp_path)
    data = json.loads(path.read_text())
    data["questions"][1]["answer"] = answer
    path.write_text(json.dumps(data))
    with pytest.raises(RetentionDataError, match="^" + re.escape(f"{path}, question 1 (question_id 101): answer "
                                                                 f"{answer!r} is not one of A, B, C, D")):
        load_seed(path, images)


def test_seed_refuses_a_repeated_question_id(tmp_path):
    path, images = make_seed(tmp_path)
    data = json.loads(path.read_text())
    data["questions"][2]["question_id"] = "100"
    path.write_text(json.dumps(data))
    with pytest.raises(RetentionDataError, match=r"question 2: question_id 100 repeats question 0"):
        load_seed(path, images)


def test_settings_are_llavas_and_the_switch_reaches_every_set(fast_cfg, tmp_path):
    from hide.run import build

    root = tmp_path / "retention"
    make_mme(root / "MME_Benchmark_release_version", images=1)
    make_pope(root, per_split=2)
    make_seed(root)
    cfg = fast_cfg(f"paths.retention_dir={root}")
    sets = {name: build(cfg.retention_sets[name], name) for name in ("mme", "pope", "seed")}
    assert {name: (s.prompt_suffix, s.max_new_tokens, s.image_processing, s.scoring) for name, s in sets.items()} == {
        "mme": (SHORT_ANSWER, LLAVA_MAX_NEW_TOKENS, "pad", "original"),
        "pope": (SHORT_ANSWER, LLAVA_MAX_NEW_TOKENS, "pad", "original"),
        "seed": (OPTION_LETTER, LLAVA_MAX_NEW_TOKENS, "pad", "original")}
    assert SHORT_ANSWER == "\nAnswer the question using a single word or phrase." and LLAVA_MAX_NEW_TOKENS == 128
    cfg = fast_cfg(f"paths.retention_dir={root}", "eval.retention_scoring=corrected")
    assert {build(cfg.retention_sets[name], name).scoring for name in ("mme", "pope", "seed")} == {"corrected"}
    cfg = fast_cfg(f"paths.retention_dir={root}", "eval.retention_scoring=lenient")
    with pytest.raises(ConfigError, match=r"eval\.retention_scoring='lenient'"):
        build(cfg.retention_sets.mme, "mme")
    with pytest.raises(ConfigError, match=r"max_new_tokens must be a positive integer"):
        load_pope(root / "POPE" / "coco", root / "coco" / "val2014", max_new_tokens=0)


def test_the_data_check_names_every_planted_fault(fast_cfg, tmp_path):
    from hide.data.check import check_retention, format_reports

    root = tmp_path / "retention"
    mme = make_mme(root / "MME_Benchmark_release_version", images=1, nested=True) / "MME_Benchmark"
    for path in sorted((mme / "OCR").iterdir()):
        path.unlink()
    (mme / "OCR").rmdir()
    (mme / "existence" / "0001.txt").write_text("Is there a cat? Please answer yes or no.\tYes\n")
    make_pope(root, per_split=2)
    seed_file, _ = make_seed(root)
    data = json.loads(seed_file.read_text())
    data["questions"][0]["answer"] = ""
    seed_file.write_text(json.dumps(data))
    cfg = fast_cfg(f"paths.retention_dir={root}", "eval.retention=[general,mme,pope,seed]")
    reports = {r.name: r for r in check_retention(cfg)}
    assert list(reports) == ["retention: mme", "retention: pope", "retention: seed"]  # general is generated
    problems = reports["retention: mme"].problems
    assert len(problems) == 2 and problems[0].startswith(f"MME subtask folder(s) OCR missing under {mme} (")
    assert problems[1].startswith(f"{mme / 'existence' / '0001.txt'} holds 1 question(s); MME asks exactly two")
    assert reports["retention: mme"].test == 25  # 13 subtasks, existence's image with one question
    assert reports["retention: pope"].problems == [] and reports["retention: pope"].test == 6
    assert reports["retention: seed"].problems == [
        f"{seed_file}, question 0 (question_id 100): answer '' is not one of A, B, C, D, so no answer could be "
        f"right. Download SEED-Bench.json again."]
    text = format_reports(list(reports.values()))
    assert "[retention: mme] MME subtask folder(s) OCR missing" in text and "[retention: seed]" in text
    assert check_retention(fast_cfg()) == []  # eval.retention=auto names none read from disk


def test_the_synthetic_set_asks_mixture_questions_without_captions(tmp_path):
    general = synthetic_general(tmp_path, image_size=32, conversations=20)
    texts = {r.text for r in general.records}
    assert len(general.records) > 20 and not texts & set(CAPTION_PROMPTS)
    conversations = json.loads((tmp_path / "general-px32-s0-n20" / "instructions" / "Mixture" / "test.json").read_text())
    asked = [turn["value"] for c in conversations for turn in c["conversations"][::2]]
    assert sum(any(p in q for p in CAPTION_PROMPTS) for q in asked) + len(general.records) == len(asked)
    assert all(r.image.is_file() for r in general.records)
    scores = general.score({r.question_id: r.answer for r in general.records})
    assert scores["accuracy"] == 100.0 and set(scores["by_family"]) <= {
        "shapes", "bars", "icons", "clevr", "table", "outdoor"}
    assert general.score({})["accuracy"] == 0.0
    # generated once: the same records again
    assert [r.question_id for r in synthetic_general(tmp_path, image_size=32, conversations=20).records] == \
        [r.question_id for r in general.records]


# -- through the task loop ----------------------------------------------------------------------
def test_retention_sets_scored_on_the_base_and_final_model(fast_cfg, tmp_path):
    root = tmp_path / "retention"
    make_mme(root / "MME_Benchmark_release_version", images=1)
    make_pope(root, per_split=2)
    make_seed(root)
    metrics = run_continual(fast_cfg("method=lora", f"paths.retention_dir={root}", "eval.retention=[mme,pope,seed]"),
                            tmp_path / "run")
    retention = metrics["retention"]
    assert set(retention) == {"MME", "POPE", "SEED"}
    for name, entry in retention.items():
        assert set(entry) == {"base", "final", "headline"}, name
        for model in ("base", "final"):
            answers = json.loads((tmp_path / "run" / "predictions" / f"retention_{name}_{model}.json").read_text())
            assert len(answers) == {"MME": 28, "POPE": 6, "SEED": 3}[name]
            assert entry[model]["scoring"] == "original"
    assert retention["MME"]["headline"] == ["perception", "cognition"]
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["retention"] == json.loads(json.dumps(retention))


def test_the_loop_asks_each_set_with_its_settings(fast_cfg, tmp_path, monkeypatch):
    """The set's prompt suffix, image processing and budget reach the answering (`Run.answer_records`)."""
    from hide.run import Run

    asked = []
    original = Run.answer_records

    def answer_records(self, records, *args, **kwargs):
        asked.append((args, kwargs))
        return original(self, records, *args, **kwargs)

    monkeypatch.setattr(Run, "answer_records", answer_records)
    root = tmp_path / "retention"
    make_pope(root, per_split=1)
    run_continual(fast_cfg("method=lora", f"paths.retention_dir={root}", "eval.retention=[pope]",
                           "retention_sets.pope.splits=[random]"), tmp_path / "run")
    settings = [dict(zip(("max_new_tokens", "prompt_suffix", "image_processing"), args), **kwargs)
                for args, kwargs in asked]
    assert settings == [{"max_new_tokens": 128, "prompt_suffix": SHORT_ANSWER, "image_processing": "pad"}] * 2


def test_retention_leaves_the_run_unchanged(fast_cfg, tmp_path):
    """The same run scored on the synthetic set (the default) and on none: the same answers at every stage."""
    scored = run_continual(fast_cfg("method=lora"), tmp_path / "scored")
    plain = run_continual(fast_cfg("method=lora", "eval.retention=[]"), tmp_path / "plain")
    assert "retention" in scored and "retention" not in plain
    assert scored["matrix"] == plain["matrix"]
    for stage in range(3):
        read = lambda run: json.loads((tmp_path / run / "predictions" / f"stage{stage}.json").read_text())
        assert read("scored") == read("plain"), stage
    general = scored["retention"]["General"]
    assert general["base"]["accuracy"] >= 0 and "final" in general


def test_unknown_retention_set_is_named(fast_cfg, tmp_path):
    from hide.run import build_run

    message = ("eval.retention names unknown set(s) ['mmmu']; choose from ['general', 'mme', 'pope', 'seed'] "
               "(retention_sets), or auto")
    with pytest.raises(ConfigError, match=f"^{message.replace('[', '.').replace(']', '.').replace('(', '.').replace(')', '.')}$"):
        build_run(fast_cfg("eval.retention=[mmmu]"))


def test_a_run_config_saved_without_retention_sets_loads_with_none(fast_cfg):
    """A run made before eval.retention existed has neither key in its saved config: auto asks for
    nothing there, and hide.load_run rebuilds such a run."""
    from omegaconf import OmegaConf

    from hide.run import build, retention_names

    cfg = fast_cfg()
    benchmark = build(cfg.benchmark, "benchmark")
    assert retention_names(cfg, benchmark) == ["general"]
    old = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "retention_sets"])
    del old.eval["retention"]
    assert retention_names(old, benchmark) == []
    with pytest.raises(ConfigError, match=r"^eval\.retention names unknown set\(s\) \['mme'\]; choose from \[\]"):
        retention_names(OmegaConf.merge(old, {"eval": {"retention": ["mme"]}}), benchmark)
