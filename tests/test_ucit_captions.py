"""UCIT's caption tasks (VizWiz-Caption, Flickr30k) scored as HiDe-LLaVA scores them: its
llava/eval/eval_caption.py numbers the answers 1..N in answer order (create_coco_type, lines 24-42)
and runs pycocoevalcap's COCOEvalCap on them (eval_single, lines 80-84) with SPICE left out (its
eval.py, lines 40-46), reporting each metric x 100 and their mean (lines 86-96).

Per task, ten answer sets in the task's own style, each scored by `score_captions` and by that
official pipeline (`official_eval_caption`), which must agree on all seven metrics; and one case
per task worked out by hand (BLEU-1 and ROUGE-L of one image, from pycocoevalcap's bleu_scorer.py
and rouge.py)."""

import math

import pytest

from test_metrics_captions import meteor_server, needs_java, official_eval_caption  # noqa: F401

from hide.metrics.captions import CAPTION_METRICS, score_captions

# VizWiz-Caption: photos taken by blind people, five crowd captions each (sentence case, full stops)
VIZWIZ_REFERENCES = {
    1: ["A can of tomato soup on a kitchen counter.", "A red and white can of Campbell's soup.",
        "A soup can held in someone's hand.", "Quality issues are too severe to recognize visual content.",
        "A can of condensed tomato soup."],
    2: ["A bottle of ranch dressing on a table.", "A white bottle with a green label.",
        "A salad dressing bottle, No. 5 on the label.", "The back of a bottle of dressing.",
        "A bottle of Hidden Valley ranch."],
    3: ["A computer screen showing an error message.", "A laptop screen with a dialog box.",
        "A monitor displaying a Windows error.", "A blurry photo of a screen :)", "A screen with text on it."],
}
VIZWIZ_ANSWERS = [
    "A can of tomato soup on a kitchen counter.",                      # a reference, word for word
    "a can of tomato soup",                                              # lower case, no full stop
    "A CAN OF TOMATO SOUP.",                                             # upper case: PTB lower-cases
    "Quality issues are too severe to recognize visual content.",      # VizWiz's unrecognizable caption
    "A can of soup, vitamin C. Tomato flavour.",                       # a single capital before a full stop
    "A can of soup No. 5 on the counter.",                             # an abbreviation before a number
    "A can of soup... on a counter!!!",                                  # punctuation runs
    "It's a can of Campbell's soup :)",                                  # clitics and an emoticon
    "",                                                                  # an empty answer
    "A can a can a can of soup soup soup.",                              # repeated words (BLEU clips them)
]
VIZWIZ_OTHERS = ["A white bottle of ranch dressing.", "A laptop screen with an error message."]

# Flickr30k (UCIT's brief captions): one short sentence per image, five references each
FLICKR_REFERENCES = {
    1: ["Two dogs are running on the grass .", "Two brown dogs run across a green field .",
        "A pair of dogs playing in a park .", "Dogs run outside on a sunny day .", "Two dogs chase each other ."],
    2: ["A man in a red shirt is climbing a rock .", "A rock climber scales a cliff .",
        "A man climbs a steep rock wall .", "Someone is rock climbing .", "A climber on a rock face ."],
    3: ["A little girl eats ice cream .", "A child with an ice cream cone .", "A girl enjoying a treat on St. Mark's square .",
        "A young girl licks her ice cream .", "A kid eating dessert outdoors ."],
}
FLICKR_ANSWERS = [
    "Two dogs are running on the grass .",                                # a reference, with PTB spacing
    "Two dogs are running on the grass.",                                 # the full stop attached
    "two dogs run",                                                       # short: the brevity penalty
    "Two dogs run on the grass in St. Louis.",                            # an abbreviation
    "Two dogs, running; playing: jumping.",                               # punctuation inside
    "Dogs (two of them) run on grass.",                                   # brackets: -lrb- / -rrb- survive
    "Two dogs run on the grass :-(",                                      # an emoticon at the end
    "TWO DOGS RUN ON THE GRASS",                                          # upper case
    "",                                                                   # an empty answer
    "The dogs aren't walking, they're running.",                          # clitics
]
FLICKR_OTHERS = ["A man climbs a rock .", "A girl eats ice cream ."]


def _cases(answers, others):
    return [[answer, *others] for answer in answers]


@needs_java
@pytest.mark.parametrize(("task", "references", "cases"), [
    ("VizWiz-Caption", VIZWIZ_REFERENCES, _cases(VIZWIZ_ANSWERS, VIZWIZ_OTHERS)),
    ("Flickr30k", FLICKR_REFERENCES, _cases(FLICKR_ANSWERS, FLICKR_OTHERS)),
])
def test_each_answer_set_scores_as_hide_llavas_eval_caption(task, references, cases, meteor_server, tmp_path):
    assert len(cases) >= 10
    for n, answers in enumerate(cases):
        official = official_eval_caption(answers, references, tmp_path, meteor_server)
        ours = score_captions(dict(zip(references, answers)), references)
        for name in CAPTION_METRICS:
            assert ours[name] == pytest.approx(official[name], abs=1e-9, rel=0), (task, n, name)
        # eval_caption.py:96: the task's score is the plain mean of the seven
        assert ours["score"] == pytest.approx(sum(official.values()) / 7, abs=1e-9, rel=0), (task, n)


@pytest.mark.parametrize(("answer", "reference", "bleu_1", "rouge_l"), [
    # VizWiz-Caption: tokens a can of soup (4) against a can of tomato soup on a table (8): every
    # answer word matches (precision 4/4), brevity penalty exp(1 - 8/4); LCS 4: P 4/4, R 4/8
    ("A can of soup.", "A can of tomato soup on a table.", 100 * math.exp(1 - 8 / 4) * 4 / 4,
     100 * (1 + 1.2 ** 2) * 1 * 0.5 / (0.5 + 1.2 ** 2 * 1)),
    # Flickr30k: two dogs run on the grass (6) against two dogs are running on the grass (7): five
    # matches (5/6), brevity penalty exp(1 - 7/6); LCS 5: P 5/6, R 5/7
    ("Two dogs run on the grass", "Two dogs are running on the grass .", 100 * math.exp(1 - 7 / 6) * 5 / 6,
     100 * (1 + 1.2 ** 2) * (5 / 6) * (5 / 7) / (5 / 7 + 1.2 ** 2 * 5 / 6)),
])
def test_one_image_by_hand(answer, reference, bleu_1, rouge_l):
    """pycocoevalcap bleu_scorer.py: clipped unigram matches / answer unigrams (tiny and small
    smoothing terms of 1e-15 and 1e-9 aside), times exp(1 - reference length / answer length) when
    the answer is shorter (the 'closest' reference length); rouge.py: LCS-based F with beta 1.2."""
    scores = score_captions({1: answer}, {1: [reference]}, meteor=False)
    assert scores["BLEU-1"] == pytest.approx(bleu_1, abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(rouge_l, abs=1e-6)
