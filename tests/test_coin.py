"""CoIN: the scorers on hand-worked examples (the `original` quirks and the `corrected` fixes;
tests/test_coin_official.py holds the case-by-case comparison with CoIN's code), the loader and
the data check on a tree generated here in the exact format of CoIN's release, and
`benchmark=coin` end to end on the fast backbone."""

import json

import pytest
from PIL import Image

from hide.data.check import main as check_main
from hide.data.coin import COIN_TASKS, OFFICIAL, CoINBenchmark
from hide.data.formats import DataFormatError
from hide.errors import ConfigError
from hide.loop import run_continual
from hide.metrics import coin


# -- scorers ------------------------------------------------------------------------------------
def test_vqa_normalisation():
    # CoIN ETrain/Eval/LLaVA/CoIN/m4c_evaluator.py:181-218 (EvalAI's answer processor)
    assert coin.m4c_normalize("Two dogs.") == "2 dogs"
    assert coin.m4c_normalize("  The Red one!") == "red 1"
    assert coin.m4c_normalize("1,000") == "1000"  # a comma inside a number goes
    assert coin.m4c_normalize("3.5") == "3.5"  # a decimal point stays
    assert coin.m4c_normalize("dont know") == "don't know"
    assert coin.m4c_normalize("an apple; a pear") == "apple pear"
    assert coin.m4c_normalize("yes/no") == "yes no"  # punctuation inside a word becomes a space
    # m4c_evaluator.py:183: "'s" is split off as a word; the contraction table has no "its"
    assert coin.m4c_normalize("he's") == "he 's" and coin.m4c_normalize("hes") == "he's"
    assert coin.m4c_normalize("its") == "its"


def vqa_accuracy(prediction, answers):
    return coin.m4c_answer_scores(answers).get(coin.m4c_normalize(prediction), 0.0)


def test_vqa_accuracy_is_the_ten_leave_one_out_mean():
    # CoIN ETrain/Eval/LLaVA/CoIN/m4c_evaluator.py:225-246
    three_red = ["red"] * 3 + ["blue"] * 7
    # leaving out one of the 3 reds leaves 2 matches (2/3), leaving out a blue leaves 3 (1)
    assert vqa_accuracy("Red", three_red) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)
    assert vqa_accuracy("blue", three_red) == 1.0
    assert vqa_accuracy("green", three_red) == 0.0
    two_red = ["red"] * 2 + ["blue"] * 8  # not min(1, 2/3): (2 * 1/3 + 8 * 2/3) / 10
    assert vqa_accuracy("red", two_red) == pytest.approx(0.6)
    scores = coin.textvqa_score({"1": "red", "2": "Blue."}, {"1": two_red, "2": three_red}, ["1", "2"])
    assert scores["score"] == pytest.approx(100 * (0.6 + 1.0) / 2)


def test_scienceqa_letters():
    # CoIN ETrain/Eval/LLaVA/CoIN/eval_science_qa.py:65-75: exact option, "X. ", else the first
    # one-character word upper-cased ("Because A" reads as "A"), else FAILED
    assert [coin.scienceqa_parse(a) for a in ("B", "B.", "(C) a cat", "The answer is D.", "E", "Because A", "")] == \
        ["B", "B", "C", "D", "E", "A", "FAILED"]
    # eval_science_qa.py:32-35: "E" and "C" are options, but beyond the problem's choices
    assert coin.scienceqa_choice("E", 4) == -1 and coin.scienceqa_choice("C", 2) == -1
    problems = {"1": (0, 2), "2": (2, 3), "3": (1, 4)}
    assert coin.scienceqa_score({"1": "A", "2": "The answer is C.", "3": "D"}, problems, ["1", "2", "3"])["score"] \
        == pytest.approx(200 / 3)


def test_exact_matches_and_gqa_drops_a_final_period():
    answers = {"1": "Red", "2": "two", "3": "Harry Potter"}
    # CoIN ETrain/Eval/LLaVA/CoIN/eval_vizwiz.py:28: upper-cased, nothing stripped: "red " misses
    assert coin.upper_case_match_score({"1": "red ", "2": "2", "3": "harry potter"}, answers, ["1", "2", "3"])["score"] \
        == pytest.approx(100 / 3)
    # CoIN ETrain/Eval/LLaVA/CoIN/convert_gqa_for_eval.py:14 and eval_gqa.py:352
    questions = {"1": ("yes", True), "2": ("right", True)}
    assert coin.gqa_score({"1": "Yes.", "2": "left"}, questions, ["1", "2"])["score"] == 50.0


def test_imagenet_original_pairs_by_position_and_counts_empty_answers():
    answers = [("1", "golden retriever"), ("2", "tabby cat"), ("3", "tiger")]
    predictions = {"1": "a golden retriever dog", "2": "", "3": "cat"}
    # CoIN ETrain/Eval/LLaVA/CoIN/eval_ImagetNet.py:26: "golden retriever" is in the prediction;
    # "" is in every answer; "cat" and "tiger" neither way
    assert coin.imagenet_score(predictions, answers, "original")["score"] == pytest.approx(200 / 3)
    assert coin.imagenet_score(predictions, answers, "corrected")["score"] == pytest.approx(100 / 3)
    # one prediction missing: by position "cat" meets "tabby cat" (a hit) and the official script
    # divides by the two answers given (eval_ImagetNet.py:20); by id q2 is missing (a miss of 3)
    missing = {"1": "a golden retriever dog", "3": "cat"}
    assert coin.imagenet_score(missing, answers, "original")["score"] == 100.0
    assert coin.imagenet_score(missing, answers, "corrected")["score"] == pytest.approx(100 / 3)
    # the official match keeps case
    assert coin.imagenet_score({"1": "Golden Retriever"}, answers[:1], "original")["score"] == 0.0


def test_grounding_boxes_on_the_padded_square():
    # a 200 x 100 image pads to 200 x 200 (50 px above and below); the box [x 20, y 10, w 60, h 40]
    # in pixels is [0.1, 0.3, 0.4, 0.5] of the square, as CoIN's answer_bbox string gives it
    assert coin.iou([20, 10, 80, 50], [20, 10, 80, 50]) == 1.0
    assert coin.iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    boxes = {q: (coin.reference_box("[0.1, 0.3, 0.4, 0.5]"), 200) for q in "123"}
    predictions = {"1": "[0.10, 0.30, 0.40, 0.50]",
                   "2": "[0.1, 0.3, 0.4, 0.5]",   # one decimal: CoIN's parser reads the last as "0." = 0
                   "3": "somewhere on the left"}
    original = coin.grounding_score(predictions, boxes, ["1", "2", "3"], "original")
    corrected = coin.grounding_score(predictions, boxes, ["1", "2", "3"], "corrected")
    # CoIN ETrain/Eval/LLaVA/CoIN/eval_grounding.py:70-71: brackets deleted, one character cut from each end
    assert coin.parse_box("[0.1, 0.3, 0.4, 0.5]", "original") == [0.1, 0.3, 0.4, 0.0]
    assert coin.parse_box("[0.12, 0.34, 0.56, 0.78]", "original") == [0.12, 0.34, 0.56, 0.7]
    assert coin.parse_box("[0.12, 0.34, 0.56, 0.78]", "corrected") == [0.12, 0.34, 0.56, 0.78]
    assert original == {"score": pytest.approx(100 / 3), "correct": 1, "count": 3, "unreadable": 1}
    assert corrected == {"score": pytest.approx(200 / 3), "correct": 2, "count": 3, "unreadable": 1}


# -- a tree in the exact format of CoIN's release --------------------------------------------------
ANSWERS = {"ScienceQA": "A", "TextVQA": "red", "ImageNet": "golden retriever", "GQA": "yes", "VizWiz": "red",
           "Grounding": "[0.10, 0.30, 0.40, 0.50]", "VQAv2": "2", "OCRVQA": "harry potter"}
# where CoIN's cl_dataset keeps each task's images
IMAGE_FOLDERS = {"ScienceQA": "ScienceQA/images/test", "TextVQA": "TextVQA/train_images", "ImageNet": "ImageNet/val",
                 "GQA": "GQA/images", "VizWiz": "VizWiz/val", "Grounding": "COCO2014/train2014",
                 "VQAv2": "COCO2014/val2014", "OCRVQA": "OCR-VQA/images"}
GROUNDING_BOX = "[0.1, 0.3, 0.4, 0.5]"  # [20, 10, 80, 50] px of a 200 x 100 image on its 200 x 200 square


def question_ids(t, name, n_test):
    """The question ids as the release writes them: integers for TextVQA, VizWiz and VQAv2
    (their source datasets'), strings for the others."""
    return [int(f"{t + 1}0{i}") if name in ("TextVQA", "VizWiz", "VQAv2") else f"{t + 1}0{i}" for i in range(n_test)]


def make_official_coin(root, n_train=6, n_test=3):
    """The eight tasks under Instructions_Original/ as CoIN releases them (TextVQA, VizWiz and
    VQAv2 questions in val.json; ScienceQA with a text-only training conversation and a text-only
    test question, no `image` key; Grounding with a string answer_bbox on the padded square, a
    size and no answer), the images under CoIN's cl_dataset folders, and the annotation files
    the official scorers read (ScienceQA's problems.json and pid_splits.json, TextVQA's
    TextVQA_0.5.1_val.json, GQA's testdev_balanced_questions.json)."""
    problems, splits, textvqa, gqa = {}, {"test": [], "train": [], "val": []}, [], {}
    for t, name in enumerate(COIN_TASKS):
        size = (200, 100) if name == "Grounding" else (40, 30)
        folder = IMAGE_FOLDERS[name]
        for i in range(n_train + n_test):
            path = root / folder / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, (30 * t, 20 * i % 255, 100)).save(path)
        train = [{"id": f"{name}-{i}", "image": f"{folder}/{i}.jpg",
                  "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                                    {"from": "gpt", "value": ANSWERS[name]}]} for i in range(n_train)]
        if name == "ScienceQA":  # a text-only conversation: no image key, no <image> token
            train[-1] = {"id": "ScienceQA-text", "conversations": [
                {"from": "human", "value": "Which is a mammal?\nA. whale\nB. shark"}, {"from": "gpt", "value": "A"}]}
        tests = []
        for i, qid in enumerate(question_ids(t, name, n_test)):
            record = {"question_id": qid, "image": f"{folder}/{n_train + i}.jpg", "text": "What is shown?",
                      "answer": ANSWERS[name]}
            if name == "ScienceQA":
                record["text"] = "<image>\nWhich animal is shown?\nA. cat\nB. dog\n" \
                                 "Answer with the option's letter from the given choices directly."
                if i == n_test - 1:
                    del record["image"]  # a text-only question of the official test split
                    record["text"] = "Which is a mammal?\nA. whale\nB. shark"
                problems[qid] = {"answer": 0, "choices": ["cat", "dog"], "image": "image.png" if "image" in record else None}
                splits["test"].append(qid)
            if name == "Grounding":
                del record["answer"]
                record.update(text="Please provide the bounding box coordinate of the region this sentence "
                                   "describes: the red block.", answer_bbox=GROUNDING_BOX, size=list(size))
            if name == "TextVQA":
                textvqa.append({"question_id": qid, "question": "What is shown?", "answers": ["red"] * 10})
            if name == "GQA":
                gqa[qid] = {"answer": "yes", "isBalanced": True, "question": "Is it red?", "imageId": str(i),
                            "types": {"structural": "verify", "semantic": "attr", "detailed": "verifyAttr"},
                            "groups": {"global": None, "local": "06-red"}, "semantic": []}
            tests.append(record)
        instructions = root / "Instructions_Original" / name
        instructions.mkdir(parents=True, exist_ok=True)
        (instructions / "train.json").write_text(json.dumps(train))
        (instructions / OFFICIAL[name].question_file).write_text(json.dumps(tests))
    problems["999"] = {"answer": 1, "choices": ["x", "y"], "image": None}  # a training problem
    splits["train"].append("999")
    for path, data in ((root / "ScienceQA" / "problems.json", problems),
                       (root / "ScienceQA" / "pid_splits.json", splits),
                       (root / "TextVQA" / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "data": textvqa}),
                       (root / "GQA" / "testdev_balanced_questions.json", gqa)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return root


def coin_benchmark(data, **settings):
    return CoINBenchmark(str(data), scienceqa_problems=str(data / "ScienceQA" / "problems.json"),
                         scienceqa_splits=str(data / "ScienceQA" / "pid_splits.json"),
                         textvqa_annotations=str(data / "TextVQA" / "TextVQA_0.5.1_val.json"),
                         gqa_questions=str(data / "GQA" / "testdev_balanced_questions.json"), **settings)


def test_the_official_files_load_as_released(tmp_path):
    data = make_official_coin(tmp_path / "coin")
    tasks = {t.name: t for t in coin_benchmark(data).load()}
    assert list(tasks) == list(COIN_TASKS)
    # the question files the official scripts read (scripts/LLaVA/Eval/*.sh --question-file)
    assert [OFFICIAL[n].question_file for n in COIN_TASKS] == \
        ["test.json", "val.json", "test.json", "test.json", "val.json", "test.json", "val.json", "test.json"]
    science = tasks["ScienceQA"]
    # the text-only training conversation and test question load with no image
    assert [r.image is None for r in science.train] == [False] * 5 + [True]
    assert science.train[-1].turns[0].instruction == "Which is a mammal?\nA. whale\nB. shark"
    assert [r.image is None for r in science.test] == [False, False, True]
    # model_vqa_science.py:44: every <image> token deleted and the text stripped
    assert science.test[0].text.startswith("Which animal is shown?")
    # Grounding: the string box and the size, no answer (the record's answer is its box)
    assert {r.answer for r in tasks["Grounding"].test} == {GROUNDING_BOX}
    # the integer question ids of TextVQA, VizWiz and VQAv2 are read as text
    assert [r.question_id for r in tasks["TextVQA"].test] == ["200", "201", "202"]
    # each scorer reads its references: the reference answers score 100
    for name, task in tasks.items():
        said = {r.question_id: ANSWERS[name] for r in task.test}
        assert task.scorer(said)["score"] == 100.0, name
    # ScienceQA divides by the official split: the text-only question unanswered is wrong
    assert science.scorer({"100": "A", "101": "A"}) == {"score": 2 / 3 * 100, "correct": 2, "count": 3}


def test_each_task_is_generated_as_its_official_script():
    specs = {s.name: s for s in CoINBenchmark("/nonexistent").specs}
    for name, spec in specs.items():
        official = OFFICIAL[name]
        # model_vqa.py:64, model_vqa_science.py:50: image_processor.preprocess, no padding;
        # model_text_vqa.py, model_gqa.py, model_vizwiz.py, model_ocr_vqa.py: process_images (pad)
        assert spec.image_processing == ("crop" if official.generation in ("model_vqa.py", "model_vqa_science.py")
                                         else "pad"), name
        # model_vqa.py:79 and model_vqa_science.py:81: 1024; the others' --max_new_tokens default: 128
        assert spec.max_new_tokens == (1024 if official.generation in ("model_vqa.py", "model_vqa_science.py")
                                       else 128), name
        assert spec.prompt_suffix == "", name  # 1_eval_sqa.sh passes no --single-pred-prompt
    assert {n: OFFICIAL[n].generation for n in COIN_TASKS} == {
        "ScienceQA": "model_vqa_science.py", "TextVQA": "model_text_vqa.py", "ImageNet": "model_vqa.py",
        "GQA": "model_gqa.py", "VizWiz": "model_vizwiz.py", "Grounding": "model_vqa.py", "VQAv2": "model_vqa.py",
        "OCRVQA": "model_ocr_vqa.py"}
    # a budget given to the benchmark serves every task (debug=fast's 8); the processing stays official
    capped = {s.name: s for s in CoINBenchmark("/nonexistent", max_new_tokens=8).specs}
    assert CoINBenchmark("/nonexistent", max_new_tokens=8).max_new_tokens == 8
    assert all(s.max_new_tokens is None for s in capped.values())
    assert {s.image_processing for s in capped.values()} == {"pad", "crop"}


def test_repeated_question_ids_are_scored_as_the_official_scripts(tmp_path):
    data = make_official_coin(tmp_path / "coin")
    path = data / "Instructions_Original" / "VizWiz" / "val.json"
    records = json.loads(path.read_text())
    records[1].update(question_id=records[0]["question_id"], answer="blue")  # id 500 twice: red, then blue
    path.write_text(json.dumps(records))
    task = {t.name: t for t in coin_benchmark(data, select=["VizWiz"]).load()}["VizWiz"]
    assert [r.question_id for r in task.test] == ["500", "500#1", "502"]  # every record answered
    said = {"500": "red", "500#1": "blue", "502": "red"}
    # eval_vizwiz.py:18: references in a dict by id, so both lines of 500 are compared with "blue"
    assert task.scorer(said) == {"score": 100. * 2 / 3, "correct": 2, "count": 3}
    corrected = coin_benchmark(data, select=["VizWiz"], scoring="corrected").load()[0]
    assert corrected.scorer(said) == {"score": 100.0, "correct": 3, "count": 3}  # each against its own answer


def test_bad_records_are_named_or_left_out_and_reported(tmp_path):
    data = make_official_coin(tmp_path / "coin")
    grounding = data / "Instructions_Original" / "Grounding" / "test.json"
    records = json.loads(grounding.read_text())
    records[1]["answer_bbox"] = "[0.1, 0.3, 0.4]"  # three numbers
    grounding.write_text(json.dumps(records))
    annotations = data / "TextVQA" / "TextVQA_0.5.1_val.json"
    textvqa = json.loads(annotations.read_text())
    textvqa["data"] = textvqa["data"][:2]  # question 202 has no annotation
    annotations.write_text(json.dumps(textvqa))
    with pytest.raises(DataFormatError, match=r"record at index 1 \(id '601'\): 'answer_bbox' '\[0\.1, 0\.3, 0\.4\]' "
                                              r"does not read as four numbers"):
        coin_benchmark(data, select=["Grounding"]).load()
    with pytest.raises(DataFormatError, match=r"1 TextVQA test question\(s\) cannot be scored as CoIN's "
                                              r"eval_textvqa.py scores them \(202: not in "):
        coin_benchmark(data, select=["TextVQA"]).load()
    skipped = []
    tasks = coin_benchmark(data, select=["TextVQA", "Grounding"]).load(on_bad_record="skip", skipped=skipped)
    assert [[r.question_id for r in t.test] for t in tasks] == [["200", "201"], ["600", "602"]]
    assert [(name, b.id, b.index) for name, b in skipped] == [("TextVQA", "202", 2), ("Grounding", "601", 1)]


# -- runs and the data check ---------------------------------------------------------------------
def test_coin_runs_end_to_end_with_each_tasks_metric(fast_cfg, tmp_path):
    data = make_official_coin(tmp_path / "coin")
    out = tmp_path / "run"
    metrics = run_continual(fast_cfg("benchmark=coin", f"paths.data_dir={data}", "benchmark.num_tasks=null",
                                     "method=lora", "eval.schedule=seen_next"), out)
    assert metrics["tasks"] == list(COIN_TASKS)
    assert all(v is not None for v in metrics["matrix"][-1])
    answers = json.loads((out / "predictions" / "stage8.json").read_text())
    # the last row is each task's own metric of the saved answers, against the references its
    # official script reads
    ids = {name: [str(q) for q in question_ids(t, name, 3)] for t, name in enumerate(COIN_TASKS)}
    refs = {name: {q: ANSWERS[name] for q in ids[name]} for name in COIN_TASKS}
    box = coin.reference_box(GROUNDING_BOX)
    expected = {
        "ScienceQA": coin.scienceqa_score(answers["ScienceQA"], {q: (0, 2) for q in ids["ScienceQA"]}, ids["ScienceQA"]),
        "TextVQA": coin.textvqa_score(answers["TextVQA"], {q: ["red"] * 10 for q in ids["TextVQA"]}, ids["TextVQA"]),
        "ImageNet": coin.imagenet_score(answers["ImageNet"], list(refs["ImageNet"].items()), "original"),
        "GQA": coin.gqa_score(answers["GQA"], {q: ("yes", True) for q in ids["GQA"]}, ids["GQA"]),
        "Grounding": coin.grounding_score(answers["Grounding"], {q: (box, 200) for q in ids["Grounding"]},
                                          ids["Grounding"], "original"),
        "OCRVQA": coin.ocrvqa_score(answers["OCRVQA"], refs["OCRVQA"], ids["OCRVQA"]),
        **{n: coin.upper_case_match_score(answers[n], refs[n], ids[n]) for n in ("VizWiz", "VQAv2")},
    }
    for t, name in enumerate(COIN_TASKS):
        assert sorted(answers[name]) == sorted(ids[name]), name  # every question answered, text-only ones too
        assert metrics["matrix"][-1][t] == pytest.approx(expected[name]["score"]), name
        assert metrics["details"]["8"][name] == pytest.approx(expected[name]), name
    assert "unreadable" in metrics["details"]["8"]["Grounding"]  # Grounding's own scorer ran


def test_corrected_scoring_is_a_setting(fast_cfg, tmp_path):
    from hide.run import build

    data = make_official_coin(tmp_path / "coin")
    cfg = fast_cfg("benchmark=coin", f"paths.data_dir={data}", "benchmark.scoring=corrected")
    assert build(cfg.benchmark, "benchmark").scoring == "corrected"
    with pytest.raises(ConfigError, match=r"^benchmark\.scoring='fixed'; choose one of \('original', 'corrected'\)$"):
        build(fast_cfg("benchmark=coin", f"paths.data_dir={data}", "benchmark.scoring=fixed").benchmark, "benchmark")


def test_data_check_finds_every_planted_coin_fault_in_one_pass(tmp_path, capsys):
    data = make_official_coin(tmp_path / "coin")
    (data / "VizWiz" / "val" / "7.jpg").unlink()                          # a test image missing
    (data / "GQA" / "testdev_balanced_questions.json").unlink()           # an annotation file missing
    grounding = data / "Instructions_Original" / "Grounding" / "test.json"
    records = json.loads(grounding.read_text())
    records[0]["answer_bbox"] = "[0.7, 0.3, 1.2, 0.5]"                    # past the right edge of the square
    records[1]["size"] = [100, 100]                                       # not the image's size
    records[2]["answer_bbox"] = "0.1; 0.3; 0.4; 0.5"                      # does not parse
    grounding.write_text(json.dumps(records))
    science = data / "Instructions_Original" / "ScienceQA" / "test.json"
    questions = json.loads(science.read_text())
    science.write_text(json.dumps(questions[:2] + [dict(questions[1])]))  # 101 twice, 102 (of the split) gone
    textvqa = data / "TextVQA" / "TextVQA_0.5.1_val.json"
    annotations = json.loads(textvqa.read_text())
    annotations["data"][0]["answers"] = ["red"] * 9                       # nine answers, not ten
    textvqa.write_text(json.dumps(annotations))
    train = data / "Instructions_Original" / "OCRVQA" / "train.json"
    broken = json.loads(train.read_text())
    broken[2]["conversations"] = []                                       # a training record without turns
    train.write_text(json.dumps(broken))
    assert check_main(["benchmark=coin", f"paths.data_dir={data}"]) == 1
    printed = capsys.readouterr().out
    assert "1 image(s) missing" in printed and "VizWiz/val/7.jpg" in printed
    assert f"The GQA questions file (testdev_balanced_questions.json) {data / 'GQA' / 'testdev_balanced_questions.json'} " \
           f"does not exist" in printed
    assert "question_id '600': 'answer_bbox' [0.7, 0.3, 1.2, 0.5] is not a box [x1, y1, x2, y2] inside the padded " \
           "square" in printed
    assert f"question_id '601': size [100, 100] but the image {data / 'COCO2014' / 'train2014' / '7.jpg'} " \
           f"is 200x100" in printed
    assert "record at index 2 (id '602'): 'answer_bbox' '0.1; 0.3; 0.4; 0.5' does not read as four numbers" in printed
    assert "1 question id(s) repeat" in printed and "'101' at records 1, 2" in printed
    assert "1 question(s) of the ScienceQA test split" in printed and "counts each as wrong: '102'" in printed
    assert "question_id '200': its 'answers' in" in printed and "are not ten strings" in printed
    assert "[OCRVQA]" in printed and "'conversations' is empty" in printed
    # the repeated id is said as a note (the official files hold some, and they score as the scripts
    # score them), not counted as a fault
    assert "[ScienceQA] note: " in printed and "8 problem(s) found" in printed


def test_a_missing_annotation_file_stops_the_run_before_training(fast_cfg, tmp_path):
    data = make_official_coin(tmp_path / "coin")
    (data / "TextVQA" / "TextVQA_0.5.1_val.json").unlink()
    with pytest.raises(DataFormatError, match=r"TextVQA_0\.5\.1_val\.json does not exist"):
        run_continual(fast_cfg("benchmark=coin", f"paths.data_dir={data}"), tmp_path / "run")
