"""CoIN: each scorer on hand-worked examples (the `original` quirks and the `corrected`
behaviour), the loader and the data check on a small CoIN-layout tree generated here, and
`benchmark=coin` end to end on the fast backbone."""

import json

import pytest
from PIL import Image

from hide.data.check import main as check_main
from hide.data.coin import COIN_TASKS
from hide.data.formats import DataFormatError, write_test_file, write_train_file
from hide.errors import ConfigError
from hide.loop import run_continual
from hide.metrics import coin


# -- scorers ------------------------------------------------------------------------------------
def test_vqa_normalisation():
    assert coin.vqa_normalize("Two dogs.") == "2 dogs"
    assert coin.vqa_normalize("  The Red one!") == "red 1"
    assert coin.vqa_normalize("1,000") == "1000"  # a comma inside a number goes
    assert coin.vqa_normalize("3.5") == "3.5"  # a decimal point stays
    assert coin.vqa_normalize("dont know") == "don't know"
    assert coin.vqa_normalize("an apple; a pear") == "apple pear"
    assert coin.vqa_normalize("yes/no") == "yes no"  # punctuation inside a word becomes a space


def test_vqa_accuracy_is_the_ten_leave_one_out_mean():
    three_red = ["red"] * 3 + ["blue"] * 7
    # leaving out one of the 3 reds leaves 2 matches (2/3), leaving out a blue leaves 3 (1)
    assert coin.vqa_accuracy("Red", three_red) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)
    assert coin.vqa_accuracy("blue", three_red) == 1.0
    assert coin.vqa_accuracy("green", three_red) == 0.0
    two_red = ["red"] * 2 + ["blue"] * 8  # not min(1, 2/3): (2 * 1/3 + 8 * 2/3) / 10
    assert coin.vqa_accuracy("red", two_red) == pytest.approx(0.6)
    scores = coin.textvqa_score({"1": "red", "2": "Blue."}, {"1": two_red, "2": three_red})
    assert scores["score"] == pytest.approx(100 * (0.6 + 1.0) / 2)


def test_scienceqa_letters():
    assert [coin.scienceqa_letter(a, 4) for a in ("B", "B.", "(C) a cat", "The answer is D.", "E", "Because A", "")] == \
        ["B", "B", "C", "D", None, None, None]
    assert coin.scienceqa_letter("C", 2) is None  # beyond the problem's two options
    problems = {"1": ("A", 2), "2": ("C", 3), "3": ("B", 4)}
    assert coin.scienceqa_score({"1": "A", "2": "The answer is C.", "3": "D"}, problems)["score"] == pytest.approx(200 / 3)


def test_exact_matches_ignore_case_and_gqa_drops_a_final_period():
    answers = {"1": "Red", "2": "two", "3": "Harry Potter"}
    assert coin.exact_match_ignoring_case({"1": "red ", "2": "2", "3": "harry potter"}, answers)["score"] == \
        pytest.approx(200 / 3)
    assert coin.gqa_score({"1": "Yes.", "2": "left"}, {"1": "yes", "2": "right"})["score"] == 50.0


def test_imagenet_original_pairs_by_position_and_counts_empty_answers():
    answers = {"1": "golden retriever", "2": "tabby cat", "3": "tiger"}
    predictions = {"1": "a golden retriever dog", "2": "", "3": "cat"}
    # "golden retriever" is in the prediction; "" is in every answer; "cat" and "tiger" neither way
    assert coin.imagenet_score(predictions, answers, "original")["score"] == pytest.approx(200 / 3)
    assert coin.imagenet_score(predictions, answers, "corrected")["score"] == pytest.approx(100 / 3)
    # one prediction missing: by position "cat" meets "tabby cat" (a hit); by id q2 is empty (a miss)
    missing = {"1": "a golden retriever dog", "3": "cat"}
    assert coin.imagenet_score(missing, answers, "original")["score"] == pytest.approx(200 / 3)
    assert coin.imagenet_score(missing, answers, "corrected")["score"] == pytest.approx(100 / 3)


def test_grounding_boxes_on_the_padded_square():
    # a 200 x 100 image pads to 200 x 200 (50 px above and below); the box [x 20, y 10, w 60, h 40]
    # is [0.1, 0.3, 0.4, 0.5] of the square
    assert coin.box_in_pixels([0.1, 0.3, 0.4, 0.5], 200, 100) == pytest.approx([20, 10, 80, 50])
    assert coin.iou([20, 10, 80, 50], [20, 10, 80, 50]) == 1.0
    assert coin.iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    boxes = {"1": ([20, 10, 60, 40], [200, 100]), "2": ([20, 10, 60, 40], [200, 100]), "3": ([0, 0, 50, 50], [100, 100])}
    predictions = {"1": "[0.10, 0.30, 0.40, 0.50]",
                   "2": "[0.1, 0.3, 0.4, 0.5]",   # one decimal: CoIN's parser reads the last as "0." = 0
                   "3": "somewhere on the left"}
    original = coin.grounding_score(predictions, boxes, "original")
    corrected = coin.grounding_score(predictions, boxes, "corrected")
    assert coin.parse_box("[0.1, 0.3, 0.4, 0.5]", "original") == [0.1, 0.3, 0.4, 0.0]
    assert coin.parse_box("[0.12, 0.34, 0.56, 0.78]", "original") == [0.12, 0.34, 0.56, 0.7]
    assert coin.parse_box("[0.12, 0.34, 0.56, 0.78]", "corrected") == [0.12, 0.34, 0.56, 0.78]
    assert original == {"score": pytest.approx(100 / 3), "unreadable": 1}
    assert corrected == {"score": pytest.approx(200 / 3), "unreadable": 1}


# -- a CoIN-layout tree -------------------------------------------------------------------------
ANSWERS = {"ScienceQA": "A", "TextVQA": "red", "ImageNet": "golden retriever", "GQA": "yes", "VizWiz": "red",
           "Grounding": "[0.10, 0.30, 0.40, 0.50]", "VQAv2": "2", "OCRVQA": "harry potter"}


def make_mini_coin(root, n_train=6, n_test=3):
    """The eight tasks under Instructions_Original/, images under <task>/images/ (200 x 100 for
    Grounding), and the three annotation files."""
    problems, textvqa, gqa = {}, [], {}
    for t, name in enumerate(COIN_TASKS):
        size = (200, 100) if name == "Grounding" else (40, 30)
        for i in range(n_train + n_test):
            path = root / name / "images" / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, (30 * t, 20 * i % 255, 100)).save(path)
        folder = root / "Instructions_Original" / name
        write_train_file(folder / "train.json", [
            {"id": f"{name}-{i}", "image": f"{name}/images/{i}.jpg",
             "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                               {"from": "gpt", "value": ANSWERS[name]}]} for i in range(n_train)])
        tests = []
        for i in range(n_test):
            qid = f"{t}{i}"
            record = {"question_id": qid, "image": f"{name}/images/{n_train + i}.jpg", "text": "What is shown?",
                      "answer": ANSWERS[name]}
            if name == "Grounding":
                record.update(answer_bbox=[20, 10, 60, 40], size=[200, 100])
            tests.append(record)
            problems[qid] = {"answer": 0, "choices": ["cat", "dog"]}
            textvqa.append({"question_id": int(qid), "answers": ["red"] * 10})
            gqa[qid] = {"answer": "yes"}
        write_test_file(folder / "test.json", tests)
    for path, data in ((root / "ScienceQA" / "problems.json", problems),
                       (root / "TextVQA" / "TextVQA_0.5.1_val.json", {"data": textvqa}),
                       (root / "GQA" / "testdev_balanced_questions.json", gqa)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return root


def test_coin_runs_end_to_end_with_each_tasks_metric(fast_cfg, tmp_path):
    data = make_mini_coin(tmp_path / "coin")
    out = tmp_path / "run"
    metrics = run_continual(fast_cfg("benchmark=coin", f"paths.data_dir={data}", "benchmark.num_tasks=null",
                                     "method=lora", "eval.schedule=seen_next"), out)
    assert metrics["tasks"] == list(COIN_TASKS)
    assert all(v is not None for v in metrics["matrix"][-1])
    answers = json.loads((out / "predictions" / "stage8.json").read_text())
    # the last row is each task's own metric of the saved answers
    refs = {name: {f"{t}{i}": ANSWERS[name] for i in range(3)} for t, name in enumerate(COIN_TASKS)}
    expected = {
        "ScienceQA": coin.scienceqa_score(answers["ScienceQA"], {q: ("A", 2) for q in refs["ScienceQA"]}),
        "TextVQA": coin.textvqa_score(answers["TextVQA"], {q: ["red"] * 10 for q in refs["TextVQA"]}),
        "ImageNet": coin.imagenet_score(answers["ImageNet"], refs["ImageNet"], "original"),
        "GQA": coin.gqa_score(answers["GQA"], refs["GQA"]),
        "Grounding": coin.grounding_score(answers["Grounding"], {q: ([20, 10, 60, 40], [200, 100])
                                                                 for q in refs["Grounding"]}, "original"),
        **{n: coin.exact_match_ignoring_case(answers[n], refs[n]) for n in ("VizWiz", "VQAv2", "OCRVQA")},
    }
    for t, name in enumerate(COIN_TASKS):
        assert metrics["matrix"][-1][t] == pytest.approx(expected[name]["score"]), name
        assert metrics["details"]["8"][name] == pytest.approx(expected[name]), name
    assert "unreadable" in metrics["details"]["8"]["Grounding"]  # Grounding's own scorer ran


def test_corrected_scoring_is_a_setting(fast_cfg, tmp_path):
    from hide.run import build

    data = make_mini_coin(tmp_path / "coin")
    cfg = fast_cfg("benchmark=coin", f"paths.data_dir={data}", "benchmark.scoring=corrected")
    assert build(cfg.benchmark, "benchmark").scoring == "corrected"
    with pytest.raises(ConfigError, match=r"^benchmark\.scoring='fixed'; choose one of \('original', 'corrected'\)$"):
        build(fast_cfg("benchmark=coin", f"paths.data_dir={data}", "benchmark.scoring=fixed").benchmark, "benchmark")


def test_data_check_finds_every_planted_coin_fault_in_one_pass(tmp_path, capsys):
    data = make_mini_coin(tmp_path / "coin")
    (data / "VizWiz" / "images" / "7.jpg").unlink()                       # a test image missing
    (data / "GQA" / "testdev_balanced_questions.json").unlink()           # an annotation file missing
    grounding = data / "Instructions_Original" / "Grounding" / "test.json"
    records = json.loads(grounding.read_text())
    records[0]["answer_bbox"] = [150, 10, 60, 40]                         # past the right edge
    records[1]["size"] = [100, 100]                                       # not the image's size
    grounding.write_text(json.dumps(records))
    train = data / "Instructions_Original" / "OCRVQA" / "train.json"
    broken = json.loads(train.read_text())
    broken[2]["conversations"] = []                                       # a training record without turns
    train.write_text(json.dumps(broken))
    assert check_main(["benchmark=coin", f"paths.data_dir={data}"]) == 1
    printed = capsys.readouterr().out
    assert "1 image(s) missing" in printed and "VizWiz/images/7.jpg" in printed
    assert f"The GQA balanced test-dev questions file {data / 'GQA' / 'testdev_balanced_questions.json'} does not exist" \
        in printed
    assert "record 0 (question_id '50'): 'answer_bbox' [150, 10, 60, 40] is not a box inside the 200x100 image" in printed
    assert f"record 1 (question_id '51'): size [100, 100] but the image {data / 'Grounding' / 'images' / '7.jpg'} " \
           f"is 200x100" in printed
    assert "[OCRVQA]" in printed and "5 problem(s) found" in printed


def test_a_missing_annotation_file_stops_the_run_before_training(fast_cfg, tmp_path):
    data = make_mini_coin(tmp_path / "coin")
    (data / "TextVQA" / "TextVQA_0.5.1_val.json").unlink()
    with pytest.raises(DataFormatError, match=r"TextVQA_0\.5\.1_val\.json does not exist"):
        run_continual(fast_cfg("benchmark=coin", f"paths.data_dir={data}"), tmp_path / "run")
