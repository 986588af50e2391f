"""CoIN's eight scorers under scoring=original, case by case against CoIN's own evaluation code
(github.com/zackschen/CoIN, ETrain/Eval/LLaVA/CoIN/). Each expected score was worked out by hand
from the official file and line named beside it; the literals are what that code computes, down
to the floating-point operation order ("correct / total * 100" and "100. * right / total"
differ in the last digit for 2 of 3)."""

import pytest

from hide.metrics import coin


# -- ScienceQA: eval_science_qa.py ---------------------------------------------------------------
def sqa(prediction, answer_index, num_choices=4):
    """One split question answered with `prediction`: 100.0 or 0.0."""
    return coin.scienceqa_score({"1": prediction}, {"1": (answer_index, num_choices)}, ["1"])["score"]


A, B, C, D = range(4)


@pytest.mark.parametrize("prediction, answer, num_choices, expected", [
    # eval_science_qa.py:65-66: the text is one of the options A-E as it stands
    ("B", B, 4, 100.0),
    # eval_science_qa.py:70-73: the first one-character word, upper-cased
    ("b", B, 4, 100.0),
    ("Answer: C", C, 4, 100.0),
    ("Option B", B, 4, 100.0),
    ("B, because it is heavier", B, 4, 100.0),
    ("(C)", C, 4, 100.0),
    ("The answer is D.", D, 4, 100.0),
    ("Because A", A, 4, 100.0),
    ("A cat", A, 4, 100.0),  # the article "A" reads as option A
    ("It's A", A, 4, 0.0),   # the "s" of "It's" stands alone: read as "S", no option
    ("I think B", B, 4, 0.0),  # "I" comes first
    ("1", A, 4, 0.0),          # a digit is a one-character word too: "1", no option
    # eval_science_qa.py:67-68: an option followed by ". "
    ("B. yes", B, 4, 100.0),
    # eval_science_qa.py:74-75: no one-character word: "FAILED"
    ("", A, 4, 0.0),
    ("Neither", A, 4, 0.0),
    # eval_science_qa.py:32-35: only the problem's first len(choices) options count
    ("E", D, 4, 0.0),
    ("C", A, 2, 0.0),
    ("E", 4, 5, 100.0),
])
def test_scienceqa_reads_the_first_one_character_word(prediction, answer, num_choices, expected):
    assert sqa(prediction, answer, num_choices) == expected


def test_scienceqa_parser_reads():
    # eval_science_qa.py:65-75, the parsed answer itself
    assert [coin.scienceqa_parse(t) for t in ("b", "Answer: C", "Option B", "B, because x", "It's A", "B.", "", "é")] \
        == ["B", "C", "B", "B", "S", "B", "FAILED", "É"]


def test_scienceqa_divides_by_the_split():
    problems = {"1": (A, 4), "2": (B, 4), "3": (C, 4)}
    # eval_science_qa.py:57-59: a split question without an answer is "FAILED", and counts (line 98);
    # eval_science_qa.py:108: correct / total * 100 (66.66666666666666, not 100 * 2 / 3)
    result = coin.scienceqa_score({"1": "A", "2": "B"}, problems, ["1", "2", "3"])
    assert result == {"score": 66.66666666666666, "correct": 2, "count": 3}
    # eval_science_qa.py:47,57: an answer to a question outside the split is never scored
    assert coin.scienceqa_score({"1": "A", "9": "B"}, problems, ["1"]) == {"score": 100.0, "correct": 1, "count": 1}


def test_scienceqa_keeps_the_last_answer_of_a_repeated_id():
    # eval_science_qa.py:46: answers go into a dict by question_id, the last line winning
    predictions = {"7": "A", "7#1": "B"}
    keys = {"7#1": "7"}
    assert coin.scienceqa_score(predictions, {"7": (B, 4)}, ["7"], ["7", "7#1"], keys)["score"] == 100.0
    assert coin.scienceqa_score(predictions, {"7": (A, 4)}, ["7"], ["7", "7#1"], keys)["score"] == 0.0


# -- TextVQA: eval_textvqa.py with m4c_evaluator.py ----------------------------------------------
def textvqa(prediction, answers):
    return coin.textvqa_score({"1": prediction}, {"1": answers}, ["1"])["score"]


@pytest.mark.parametrize("prediction, reference, expected", [
    # m4c_evaluator.py:198-211: number words to digits, articles dropped
    ("Two dogs.", "2 dogs", 100.0),
    ("the red one", "red 1", 100.0),
    # m4c_evaluator.py:207-209 and the table at lines 14-135: "dont" becomes "don't"
    ("dont", "don't", 100.0),
    # m4c_evaluator.py:183: "'s" is split off before the table, so "he's" stays "he 's" while the
    # table turns "hes" into "he's": the two never meet
    ("hes", "he's", 0.0),
    ("he's", "he's", 100.0),
    ("its", "it's", 0.0),  # "its" is not in the table; "it's" becomes "it 's"
    # m4c_evaluator.py:183: commas and question marks deleted outright
    ("1,000", "1000", 100.0),
    ("Yes?", "yes", 100.0),
    # m4c_evaluator.py:188-194: a mark with no space next to any mark of its kind becomes a space,
    # one with a space beside it is deleted
    ("coca-cola", "coca cola", 100.0),
    ("Coca - Cola", "coca cola", 100.0),
    ("yes/no", "yes no", 100.0),
    # m4c_evaluator.py:152,195: periods not followed by a digit go ...
    ("U.S.A.", "usa", 100.0),
    ("3.5", "3.5", 100.0),
    # ... but `sub("", text, re.UNICODE)` passes re.UNICODE (32) as the count: only 32 of them
    ("yes" + "." * 40, "yes", 0.0),
    ("green", "red", 0.0),
])
def test_textvqa_normalises_as_the_m4c_evaluator(prediction, reference, expected):
    assert textvqa(prediction, [reference] * 10) == expected


def test_textvqa_soft_score_and_denominator():
    three_red = ["red"] * 3 + ["blue"] * 7
    two_red = ["red"] * 2 + ["blue"] * 8
    # m4c_evaluator.py:235-244: leaving out one of three "red" leaves 2 matches (2/3), leaving
    # out a "blue" leaves 3 (1): (3 * 2/3 + 7) / 10
    assert textvqa("Red", three_red) == 90.0
    # two "red": (2 * 1/3 + 8 * 2/3) / 10
    assert textvqa("red", two_red) == 60.0
    assert textvqa("blue", three_red) == 100.0
    # m4c_evaluator.py:253: an answer no annotator gave scores 0
    assert textvqa("green", three_red) == 0.0
    # eval_textvqa.py:41-49: the mean over the answered questions only
    result = coin.textvqa_score({"1": "red"}, {"1": ["red"] * 10, "2": ["blue"] * 10}, ["1", "2"])
    assert result == {"score": 100.0, "count": 1}
    # m4c_evaluator.py:181-218 on single answers
    assert coin.m4c_normalize("  The Red one!") == "red 1"
    assert coin.m4c_normalize("an apple; a pear") == "apple pear"


# -- ImageNet: eval_ImagetNet.py -------------------------------------------------------------
def imagenet(prediction, answer):
    return coin.imagenet_score({"1": prediction}, [("1", answer)], "original")["score"]


@pytest.mark.parametrize("prediction, answer, expected", [
    # eval_ImagetNet.py:26: the answer in the prediction or the prediction in the answer, with case
    ("golden retriever", "golden retriever", 100.0),
    ("Golden retriever", "golden retriever", 0.0),
    ("a golden retriever dog", "golden retriever", 100.0),
    ("retriever", "golden retriever", 100.0),
    (" golden retriever", "golden retriever", 100.0),
    ("golden  retriever", "golden retriever", 0.0),
    ("tiger cat", "tiger", 100.0),
    ("tabby", "tabby cat", 100.0),
    ("cat", "tiger", 0.0),
    ("", "tiger", 100.0),  # the empty string is in every answer
])
def test_imagenet_substring_either_way_with_case(prediction, answer, expected):
    assert imagenet(prediction, answer) == expected


def test_imagenet_pairs_by_position_and_divides_by_the_answers_given():
    answers = [("1", "golden retriever"), ("2", "tabby cat"), ("3", "tiger")]
    # eval_ImagetNet.py:17-27: the k-th line of the result file meets the k-th answer of the test
    # file: with q2 unanswered, "cat" (q3) meets "tabby cat" (a hit); total = len(results) (line 20)
    result = coin.imagenet_score({"1": "a golden retriever dog", "3": "cat"}, answers, "original")
    assert result == {"score": 100.0, "correct": 2, "count": 2}
    # eval_ImagetNet.py:32: 100. * right / total
    assert coin.imagenet_score({"1": "x", "2": "tabby", "3": "tiger"}, answers, "original")["score"] == 100. * 2 / 3


# -- GQA: convert_gqa_for_eval.py and eval_gqa.py -------------------------------------------------
def gqa(prediction, answer):
    return coin.gqa_score({"1": prediction}, {"1": (answer, True)}, ["1"])["score"]


@pytest.mark.parametrize("prediction, answer, expected", [
    # convert_gqa_for_eval.py:14: trailing periods removed, then lower-cased; nothing stripped;
    # eval_gqa.py:352: an exact comparison with the answer
    ("Yes.", "yes", 100.0),
    ("yes..", "yes", 100.0),
    ("YES", "yes", 100.0),
    ("Left", "left", 100.0),
    ("3.5.", "3.5", 100.0),
    ("Yes. ", "yes", 0.0),
    (" yes", "yes", 0.0),
    ("yes.\n", "yes", 0.0),
    ("yes!", "yes", 0.0),
    ("no", "yes", 0.0),
    ("Yes", "Yes", 0.0),  # the prediction is lower-cased, the answer is not
])
def test_gqa_drops_final_periods_and_lower_cases(prediction, answer, expected):
    assert gqa(prediction, answer) == expected


def test_gqa_scores_balanced_questions_once():
    questions = {"1": ("yes", True), "2": ("no", True), "3": ("left", True), "4": ("red", False)}
    # eval_gqa.py:359: a question not balanced is not scored at all
    result = coin.gqa_score({"1": "yes", "2": "no", "3": "right", "4": "red"}, questions, ["1", "2", "3", "4"])
    # eval_gqa.py:158-161,425: float(sum) / len * 100
    assert result == {"score": 2 / 3 * 100, "count": 3}
    # eval_gqa.py:135: answers go into a dict by question id; of a repeated id the last is scored, once
    repeated = coin.gqa_score({"1": "no", "1#1": "yes"}, {"1": ("yes", True)}, ["1", "1#1"], {"1#1": "1"})
    assert repeated == {"score": 100.0, "count": 1}


# -- VizWiz: eval_vizwiz.py ------------------------------------------------------------------
def vizwiz(prediction, answer):
    return coin.upper_case_match_score({"1": prediction}, {"1": answer}, ["1"])["score"]


@pytest.mark.parametrize("prediction, answer, expected", [
    # eval_vizwiz.py:28: pred.upper() == ground_truth.upper(), nothing stripped
    ("Yes", "yes", 100.0),
    ("unanswerable", "Unanswerable", 100.0),
    ("Harry Potter", "harry potter", 100.0),
    ("yes ", "yes", 0.0),
    ("Blue ", "blue", 0.0),
    ("yes.", "yes", 0.0),
    ("2", "two", 0.0),
    ("STRASSE", "straße", 100.0),  # "ß".upper() is "SS"
    ("I", "ı", 100.0),             # the dotless "ı" upper-cases to "I"
    ("FI", "ﬁ", 100.0),            # the ligature upper-cases to "FI"
])
def test_vizwiz_compares_upper_cased(prediction, answer, expected):
    assert vizwiz(prediction, answer) == expected


def test_vizwiz_reads_the_last_record_of_a_repeated_id_and_divides_by_the_answers():
    # eval_vizwiz.py:18: references in a dict by question_id, so a repeated id reads the last
    # record's answer ("blue") for both of its lines
    result = coin.upper_case_match_score({"5": "blue", "5#1": "blue"}, {"5": "blue"}, ["5", "5#1"], {"5#1": "5"})
    assert result == {"score": 100.0, "correct": 2, "count": 2}
    # eval_vizwiz.py:22,31: total = the answered lines; 100. * right / total
    result = coin.upper_case_match_score({"1": "a", "2": "b", "3": "x"}, {"1": "a", "2": "b", "3": "c", "4": "d"},
                                         ["1", "2", "3", "4"])
    assert result == {"score": 100. * 2 / 3, "correct": 2, "count": 3}


# -- VQAv2: eval_vqav2.py --------------------------------------------------------------------
@pytest.mark.parametrize("prediction, answer, expected", [
    # eval_vqav2.py:28: pred.upper() == ground_truth.upper(), one answer per question (no VQA accuracy)
    ("2", "2", 100.0),
    ("two", "2", 0.0),
    ("Yes", "yes", 100.0),
    ("yes ", "yes", 0.0),
    (" no", "no", 0.0),
    ("Red.", "red", 0.0),
    ("tennis racket", "Tennis Racket", 100.0),
    ("Nike", "nike", 100.0),
    ("STRASSE", "straße", 100.0),
    ("i", "İ", 0.0),  # "İ".upper() stays "İ", "i".upper() is "I"
])
def test_vqav2_compares_upper_cased(prediction, answer, expected):
    assert vizwiz(prediction, answer) == expected


def test_vqav2_divides_by_the_answers_given():
    # eval_vqav2.py:19,22,31: references by str(question_id); total = the answered lines
    result = coin.upper_case_match_score({"1": "yes", "2": "no", "3": "2", "4": "3"},
                                         {"1": "yes", "2": "no", "3": "2", "4": "4", "5": "5"}, ["1", "2", "3", "4", "5"])
    assert result == {"score": 75.0, "correct": 3, "count": 4}


# -- Grounding: eval_grounding.py ------------------------------------------------------------
def grounding(prediction, reference="[0.1, 0.3, 0.4, 0.5]", size=(200, 100), scoring="original"):
    boxes = {"1": (coin.reference_box(reference), max(size))}
    return coin.grounding_score({"1": prediction}, boxes, ["1"], scoring)


@pytest.mark.parametrize("prediction, reference, size, expected, unreadable", [
    # eval_grounding.py:70-71: brackets deleted, then one more character cut from each end
    ("[0.10, 0.30, 0.40, 0.50]", "[0.1, 0.3, 0.4, 0.5]", (200, 100), 100.0, 0),  # "0.50" read as 0.5
    ("[0.1, 0.3, 0.4, 0.5]", "[0.1, 0.3, 0.4, 0.5]", (200, 100), 0.0, 0),        # "0.5" read as "0." = 0
    ("0.10, 0.30, 0.40, 0.50", "[0.1, 0.3, 0.4, 0.5]", (200, 100), 100.0, 0),    # no brackets: the cut eats "0" and "0"
    ("[ 0.1, 0.3, 0.4, 0.5 ]", "[0.1, 0.3, 0.4, 0.5]", (200, 100), 100.0, 0),    # the cut eats the spaces
    ("[0.12, 0.34, 0.56, 0.78]", "[0.12, 0.34, 0.56, 0.78]", (640, 480), 100.0, 0),  # 0.7 for 0.78: IoU 0.82
    # eval_grounding.py:71-75: `float` of each comma-separated piece; words around the box fail
    ("The box is [0.10, 0.30, 0.40, 0.50].", "[0.1, 0.3, 0.4, 0.5]", (200, 100), 0.0, 1),
    ("[0.10, 0.30, 0.40, 0.50] is the box", "[0.1, 0.3, 0.4, 0.5]", (200, 100), 0.0, 1),
    ("[nan, nan, nan, nan]", "[0.1, 0.3, 0.4, 0.5]", (200, 100), 0.0, 1),      # "an" after the cut
    ("", "[0.1, 0.3, 0.4, 0.5]", (200, 100), 0.0, 1),
    # eval_grounding.py:72-73: not four numbers
    ("[0.10, 0.20, 0.30, 0.40, 0.50]", "[0.1, 0.2, 0.3, 0.4]", (10, 10), 0.0, 1),
    # eval_grounding.py:84: IoU > 0.5, strictly: [0, 0, 1, 1] against [0, 0, 0.5, 1] is 0.5 exactly
    ("[0.00, 0.00, 1.00, 1.00]", "[0.0, 0.0, 0.5, 1.0]", (100, 50), 0.0, 0),
    ("[0.00, 0.00, 0.60, 1.00]", "[0.0, 0.0, 0.5, 1.0]", (100, 50), 100.0, 0),  # IoU 5/6
    # eval_grounding.py:47-49: an inverted box keeps its (here positive) area and meets nothing
    ("[0.90, 0.90, 0.50, 0.50]", "[0.5, 0.5, 0.9, 0.9]", (10, 10), 0.0, 0),
])
def test_grounding_parses_as_the_official_script(prediction, reference, size, expected, unreadable):
    result = grounding(prediction, reference, size)
    assert (result["score"], result["unreadable"]) == (expected, unreadable)


def test_grounding_reads_references_and_boxes():
    # eval_grounding.py:63-65: the reference string, brackets deleted, `float` of each piece
    assert coin.reference_box("[0.1, 0.3, 0.4, 0.5]") == [0.1, 0.3, 0.4, 0.5]
    assert coin.reference_box("[0.1,0.3,0.4,0.5]") == [0.1, 0.3, 0.4, 0.5]
    # eval_grounding.py:70-71
    assert coin.parse_box("[0.1, 0.3, 0.4, 0.5]", "original") == [0.1, 0.3, 0.4, 0.0]
    assert coin.parse_box("[0.12, 0.34, 0.56, 0.78]", "original") == [0.12, 0.34, 0.56, 0.7]
    # eval_grounding.py:44-50
    assert coin.iou([20, 10, 80, 50], [20, 10, 80, 50]) == 1.0
    assert coin.iou([0, 0, 10, 10], [5, 0, 15, 10]) == 50 / 150
    # eval_grounding.py:59,97: an unreadable answer counts in the denominator
    boxes = {q: ([0.1, 0.3, 0.4, 0.5], 200) for q in "123"}
    result = coin.grounding_score({"1": "[0.10, 0.30, 0.40, 0.50]", "2": "left", "3": "[0.1, 0.3, 0.4, 0.5]"},
                                  boxes, ["1", "2", "3"])
    assert result == {"score": 100. * 1 / 3, "correct": 1, "count": 3, "unreadable": 1}


# -- OCR-VQA: eval_ocrvqa.py -----------------------------------------------------------------
def ocrvqa(prediction, answer):
    return coin.ocrvqa_score({"1": prediction}, {"1": answer}, ["1"])["score"]


@pytest.mark.parametrize("prediction, answer, expected", [
    # eval_ocrvqa.py:29: lower-cased on both sides, nothing stripped
    ("Harry Potter", "harry potter", 100.0),
    ("The Art of War", "the art of war", 100.0),
    ("Yes", "yes", 100.0),
    ("harry potter ", "harry potter", 0.0),
    ("Travel.", "Travel", 0.0),
    ("No", "Yes", 0.0),
    ("STRASSE", "straße", 0.0),  # lower-casing keeps "ß" (VizWiz's upper-casing would match)
    ("I", "ı", 0.0),
    # eval_ocrvqa.py:27-28: a prediction containing "Unanswerable" (with its capital) is a miss
    ("Unanswerable", "Unanswerable", 0.0),
    ("Unanswerable, harry potter", "harry potter", 0.0),
    ("unanswerable", "Unanswerable", 100.0),
])
def test_ocrvqa_lower_cases_and_refuses_unanswerable(prediction, answer, expected):
    assert ocrvqa(prediction, answer) == expected


def test_ocrvqa_counts_unanswerable_in_the_denominator():
    # eval_ocrvqa.py:22,27-28,32: the skipped line still counts in total
    result = coin.ocrvqa_score({"1": "Unanswerable", "2": "yes"}, {"1": "no", "2": "yes"}, ["1", "2"])
    assert result == {"score": 50.0, "correct": 1, "count": 2}
