"""General-ability retention: the published metrics of MME, POPE and SEED-Bench on hand-worked
answers, their loaders on folders generated here in the published layouts, and eval.retention
through the task loop."""

import json
from pathlib import Path

import pytest
from PIL import Image

from hide.data.formats import DataFormatError
from hide.data.retention import load_mme, load_pope, load_seed, synthetic_general
from hide.data.synth.texts import CAPTION_PROMPTS
from hide.errors import ConfigError
from hide.loop import run_continual
from hide.metrics.retention import mme_answer, mme_scores, option_letter, pope_answer, pope_scores, seed_scores


# -- metrics ------------------------------------------------------------------------------------
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


def test_option_letters_and_seed_accuracy_by_hand():
    assert [option_letter(a) for a in ("B", "B.", "C) a cat", "(D)", "The answer is A", "I think C", "Apple", "E", "")] \
        == ["B", "B", "C", "D", "A", "C", None, None, None]
    answers = {"1": "A", "2": "B", "3": "C", "4": "D"}
    types = {"1": "Scene", "2": "Scene", "3": "Count", "4": "Count"}
    scores = seed_scores(answers, {"1": "A", "2": "C", "3": "C.", "4": "the answer is D"}, types)
    assert scores == {"accuracy": 75.0, "by_question_type": {"Count": 100.0, "Scene": 50.0}}


# -- loaders on the published layouts -----------------------------------------------------------
def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (120, 30, 200)).save(path)


def make_mme(root: Path) -> Path:
    """Two perception subtasks (one in each of the release's two layouts) and one cognition subtask."""
    for subtask, nested in (("existence", False), ("artwork", True), ("code_reasoning", False)):
        folder = root / subtask
        for stem in ("0001", "0002"):
            _image((folder / "images" if nested else folder) / f"{stem}.jpg")
            texts = folder / "questions_answers_YN" if nested else folder
            texts.mkdir(parents=True, exist_ok=True)
            (texts / f"{stem}.txt").write_text(f"Is there a cat? Please answer yes or no.\tYes\n"
                                               f"Is there a dog? Please answer yes or no.\tNo\n")
    return root


def make_pope(root: Path, per_split: int = 4) -> tuple[Path, Path]:
    images, questions = root / "coco" / "val2014", root / "POPE" / "coco"
    questions.mkdir(parents=True)
    for split in ("random", "popular", "adversarial"):
        lines = []
        for i in range(per_split):
            name = f"COCO_val2014_{i:012d}.jpg"
            _image(images / name)
            lines.append(json.dumps({"question_id": i + 1, "image": name, "text": f"Is there a cup in the image?",
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
    assert len(mme.records) == 12 and mme.name == "MME"
    first = {r.question_id: r for r in mme.records}["artwork/0001/1"]
    assert first.image == tmp_path / "MME" / "artwork" / "images" / "0001.jpg" and first.answer == "Yes"
    assert first.text == "Is there a cat? Please answer yes or no."
    scores = mme.score({r.question_id: r.answer for r in mme.records})  # every answer right
    assert (scores["perception"], scores["cognition"]) == (400.0, 200.0)
    assert len(load_mme(tmp_path / "MME", limit=3).records) == 3


def test_mme_loader_names_what_is_wrong(tmp_path):
    root = make_mme(tmp_path / "MME")
    (root / "existence" / "0002.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"^1 image\(s\) of MME are missing: .*existence/0002\.\*"):
        load_mme(root)
    _image(root / "existence" / "0002.jpg")
    (root / "count").mkdir()
    _image(root / "count" / "x.png")
    (root / "count" / "x.txt").write_text("Is it red?\tYes\nIs it blue? Maybe\n")
    with pytest.raises(DataFormatError, match=r"count/x\.txt, line 2: expected 'question<TAB>Yes'"):
        load_mme(root)
    with pytest.raises(DataFormatError, match=r"^The MME folder .*nowhere does not exist"):
        load_mme(tmp_path / "nowhere")


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


def test_seed_loader_keeps_image_questions_with_their_options(tmp_path):
    path, images = make_seed(tmp_path)
    seed = load_seed(path, images)
    assert [r.question_id for r in seed.records] == ["100", "101", "102"]  # the video question left out
    assert seed.records[1].text == ("What is in the picture?\nA. a cat\nB. a dog\nC. a cup\nD. a tree\n"
                                    "Answer with the option's letter from the given choices directly.")
    scores = seed.score({"100": "A", "101": "A", "102": "C"})
    assert scores["accuracy"] == pytest.approx(200 / 3)
    assert scores["by_question_type"] == {"Instance Identity": 0.0, "Scene Understanding": 100.0}
    data = json.loads(path.read_text())
    del data["questions"][0]["choice_c"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"SEED-Bench\.json, question 0: missing key 'choice_c'"):
        load_seed(path, images)


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
    make_mme(root / "MME_Benchmark_release_version")
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
            assert len(answers) == {"MME": 12, "POPE": 6, "SEED": 3}[name]
    assert retention["MME"]["headline"] == ["perception", "cognition"]
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["retention"] == json.loads(json.dumps(retention))


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
