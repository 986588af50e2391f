"""COCO caption metrics: score_captions must reproduce pycocoevalcap's own pipeline exactly.

The comparisons with pycocoevalcap need Java (its PTB tokenizer, METEOR) and skip without it; the
tests of our own Java-free path run everywhere. No network. One METEOR server is started for the
whole file (the module's shared one; its start-up, a few seconds, dominates the run time).
"""

from __future__ import annotations

import logging
import shutil

import pytest

pytest.importorskip("pycocoevalcap")

from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.meteor.meteor import Meteor  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # noqa: E402

from hide.metrics import captions, ptb  # noqa: E402
from hide.metrics.captions import CAPTION_METRICS, score_captions  # noqa: E402

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's tokenizer and METEOR need Java")

REFERENCES: dict[str, list[str]] = {
    "1": [
        "A brown dog is running across the grass.",
        "A dog runs on a green lawn!",
        "The brown dog's running through the park.",
    ],
    "2": [
        "Two men are talking near a red car.",
        "Two people chat beside a car, don't they?",
        "Men talking next to a parked red car.",
    ],
    "3": [
        "A woman holds an umbrella in the rain.",
        "It's raining; a woman walks with her umbrella.",
    ],
    "4": [
        "Children play soccer on a dirt field.",
        "Kids are playing football (soccer) outside.",
        "A group of children kicking a ball.",
    ],
    "5": [
        "A plate of pasta with tomato sauce.",
        "Spaghetti, tomatoes and basil on a white plate.",
    ],
    "6": [
        "A cat sleeps on a wooden table.",
        "The cat's asleep on the table.",
        "A sleeping cat lies on a table.",
    ],
    "7": [
        "A man rides a bicycle down a busy street.",
        "Cyclist riding through city traffic.",
    ],
    "8": [
        "A bottle of shampoo; the label says \"Herbal\".",
        "Someone's holding a shampoo bottle.",
        "A hand holding a bottle of Herbal shampoo.",
    ],
}

PREDICTIONS: dict[str, str] = {
    "1": "A brown dog running on the grass.",
    "2": "Two men talking next to a car.",
    "3": "A woman with an umbrella, it's raining.",
    "4": "Kids playing soccer in a field.",
    "5": "A plate of spaghetti with tomato sauce.",
    "6": "A cat is sleeping on the table.",
    "7": "A man riding a bike on the street.",
    "8": "A person holds a bottle of shampoo.",
}


# The captions hide.metrics.ptb tokenizes by its own rules: scoring them needs no Java.
PLAIN_REFERENCES = {k: [c for c in refs if ptb.tokenize(c) is not None] for k, refs in REFERENCES.items()}
PLAIN_PREDICTIONS = {k: p for k, p in PREDICTIONS.items() if ptb.tokenize(p) is not None}
PLAIN_REFERENCES = {k: PLAIN_REFERENCES[k] for k in PLAIN_PREDICTIONS if PLAIN_REFERENCES[k]}
PLAIN_PREDICTIONS = {k: PLAIN_PREDICTIONS[k] for k in PLAIN_REFERENCES}


@pytest.fixture(scope="module")
def meteor_server() -> Meteor:
    if shutil.which("java") is None:
        pytest.skip("METEOR needs Java")
    """The module's shared METEOR server (started once here, reused by every test)."""
    with captions._METEOR_LOCK:
        server = captions._get_meteor()
    assert server is not None, "Java is present, so the METEOR server must start"
    assert isinstance(server, Meteor)
    return server


def direct_pipeline(
    predictions: dict[str, str], references: dict[str, list[str]], meteor: Meteor | None
) -> dict[str, float | None]:
    """pycocoevalcap called directly, as COCOEvalCap does (upstream compute_score methods)."""
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs] for k, refs in references.items()})
    res = tokenizer.tokenize({k: [{"caption": predictions[k]}] for k in references})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out: dict[str, float | None] = {f"BLEU-{n + 1}": 100 * bleu[n] for n in range(4)}
    if meteor is not None:
        with captions._METEOR_LOCK:
            out["METEOR"] = 100 * Meteor.compute_score(meteor, gts, res)[0]  # upstream method, unmodified
    out["ROUGE-L"] = 100 * float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = 100 * float(Cider().compute_score(gts, res)[0])
    return out


@pytest.fixture(scope="module")
def full_result(meteor_server: Meteor) -> dict[str, float | bool | None]:
    return score_captions(PREDICTIONS, REFERENCES)


def test_equals_direct_pycocoevalcap(full_result: dict, meteor_server: Meteor) -> None:
    expected = direct_pipeline(PREDICTIONS, REFERENCES, meteor_server)
    assert full_result["METEOR_available"] is True
    for name in CAPTION_METRICS:
        assert full_result[name] == pytest.approx(expected[name], abs=1e-9, rel=0), name
    # Sanity: non-trivial numbers in the usual ranges.
    assert 0 < full_result["BLEU-4"] < full_result["BLEU-1"] < 100
    assert 0 < full_result["METEOR"] < 100 and full_result["CIDEr"] > 0


def test_score_is_mean_of_the_parts(full_result: dict) -> None:
    parts = [full_result[name] for name in CAPTION_METRICS]
    assert set(full_result) == {*CAPTION_METRICS, "score", "METEOR_available"}
    assert full_result["score"] == pytest.approx(sum(parts) / 7, abs=1e-12)


def test_perfect_prediction(meteor_server: Meteor) -> None:
    refs = {k: [v[0]] * 3 for k, v in REFERENCES.items()}  # every reference equals the prediction
    preds = {k: v[0] for k, v in refs.items()}
    r = score_captions(preds, refs)
    # pycocoevalcap's smoothing constants (tiny=1e-15, small=1e-9) keep BLEU a hair below 100.
    for n in range(1, 5):
        assert r[f"BLEU-{n}"] == pytest.approx(100.0, abs=1e-6)
    assert r["ROUGE-L"] == pytest.approx(100.0)
    assert r["METEOR"] == pytest.approx(100.0, abs=1.0)  # METEOR's fragmentation penalty: ~99.9


def test_empty_prediction_is_scored_as_no_words(meteor_server: Meteor) -> None:
    preds = {**PREDICTIONS, "3": "", "6": "   "}
    r = score_captions(preds, REFERENCES)
    expected = direct_pipeline(preds, REFERENCES, meteor_server)
    for name in CAPTION_METRICS:
        assert r[name] == pytest.approx(expected[name], abs=1e-9, rel=0), name
    # The tokenizer reduces "." to nothing too: same numbers as an explicit punctuation-only caption.
    dots = direct_pipeline({**PREDICTIONS, "3": ".", "6": "!"}, REFERENCES, meteor_server)
    for name in CAPTION_METRICS:
        assert r[name] == pytest.approx(dots[name], abs=1e-9), name
    assert r["BLEU-1"] < score_captions(PREDICTIONS, REFERENCES, meteor=False)["BLEU-1"]


def test_java_free_examples_cover_most_images() -> None:
    assert len(PLAIN_REFERENCES) >= 6 and sum(map(len, PLAIN_REFERENCES.values())) >= 12


def test_all_predictions_empty_is_zero() -> None:
    r = score_captions({k: "" for k in PLAIN_REFERENCES}, PLAIN_REFERENCES, meteor=False)
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert r[name] == 0.0


def test_line_breaks_inside_a_caption_do_not_shift_other_images() -> None:
    # Upstream only replaces "\n"; the PTB tokenizer also breaks lines at "\r", U+2028, ... which
    # would move every later caption onto the wrong image. Here they behave like a space.
    broken = {**PLAIN_PREDICTIONS, "2": "Two men\rtalking next\u2028to a car."}
    assert (score_captions(broken, PLAIN_REFERENCES, meteor=False)
            == score_captions(PLAIN_PREDICTIONS, PLAIN_REFERENCES, meteor=False))


@needs_java
def test_upstream_shifts_captions_at_line_breaks() -> None:
    broken = {**PREDICTIONS, "2": "Two men\rtalking next\u2028to a car."}
    upstream = direct_pipeline(broken, REFERENCES, None)
    assert upstream["BLEU-1"] != pytest.approx(score_captions(PREDICTIONS, REFERENCES, meteor=False)["BLEU-1"])


def test_mismatched_keys_raise() -> None:
    preds = {k: v for k, v in PREDICTIONS.items() if k != "4"}
    with pytest.raises(ValueError, match=r"without a prediction.*'4'"):
        score_captions(preds, REFERENCES)
    with pytest.raises(ValueError, match=r"not in the references.*'extra'"):
        score_captions({**PREDICTIONS, "extra": "a dog"}, REFERENCES)


def test_bad_references_raise() -> None:
    with pytest.raises(ValueError, match="no reference captions"):
        score_captions({"1": "a dog"}, {"1": []})
    with pytest.raises(ValueError, match="empty after PTB tokenization"):
        score_captions({"1": "a dog", "2": "a cat"}, {"1": ["."], "2": [""]}, meteor=False)
    with pytest.raises(ValueError, match="no references"):
        score_captions({}, {})


def test_meteor_disabled_explicitly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=captions.__name__):
        r = score_captions(PLAIN_PREDICTIONS, PLAIN_REFERENCES, meteor=False)
    assert r["METEOR"] is None and r["METEOR_available"] is False
    assert not caplog.records  # an explicit choice is not a warning
    six = [r[name] for name in CAPTION_METRICS if name != "METEOR"]
    assert r["score"] == pytest.approx(sum(six) / 6, abs=1e-12)


def _no_shared_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the shared server for one test; monkeypatch restores it (and the flags) afterwards."""
    monkeypatch.setattr(captions, "_meteor", None)
    monkeypatch.setattr(captions, "_meteor_failed", False)
    monkeypatch.setattr(captions, "_meteor_warned", False)


def test_meteor_absent_without_java(
    full_result: dict, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _no_shared_server(monkeypatch)
    monkeypatch.setattr(captions, "_java_for_meteor", lambda: None)  # the PTB tokenizer still finds Java
    with caplog.at_level(logging.WARNING, logger=captions.__name__):
        first = score_captions(PREDICTIONS, REFERENCES)
        second = score_captions(PREDICTIONS, REFERENCES)
    for r in (first, second):
        assert r["METEOR"] is None and r["METEOR_available"] is False
        for name in CAPTION_METRICS:
            if name != "METEOR":
                assert r[name] == pytest.approx(full_result[name], abs=1e-12)
        six = [r[name] for name in CAPTION_METRICS if name != "METEOR"]
        assert r["score"] == pytest.approx(sum(six) / 6, abs=1e-12)
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and "EXCLUDE METEOR" in warnings[0].getMessage()


def test_meteor_start_failure_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_shared_server(monkeypatch)

    def broken_server() -> None:
        raise OSError("simulated JVM start failure")

    monkeypatch.setattr(captions, "_MeteorServer", broken_server)
    monkeypatch.setattr(captions, "_java_for_meteor", lambda: "java")  # a start is attempted, with or without Java
    r = score_captions(PLAIN_PREDICTIONS, PLAIN_REFERENCES)
    assert r["METEOR"] is None and r["METEOR_available"] is False


def test_no_java_at_all_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(captions, "_java", lambda: None)
    with pytest.raises(RuntimeError, match="needs Java"):
        score_captions(PREDICTIONS, REFERENCES)


# COCO's own image ids are integers; two of these captions are outside hide.metrics.ptb's rules
# (quotes, an apostrophe before a year) and go to the Java tokenizer.
COCO_STYLE = {
    1: ["a man riding a wave on top of a surfboard", "a surfer rides a large wave"],
    2: ["two dogs playing with a frisbee in a park", "dogs chase a frisbee on the grass"],
    3: ['a shop sign that says "open" above the door', "a store front with an open sign"],
    4: ["a plate of food with broccoli and rice", "rice and broccoli on a white plate"],
    5: ["a red double decker bus on a city street", "a bus driving down the road"],
    6: ["a cat sitting on top of a laptop keyboard", "a cat lying on a computer"],
    7: ["It's the parade of July 4th, '99.", "people watching a parade in the street"],
    8: ["a giraffe standing next to a tall tree", "a giraffe eating leaves from a tree"],
}
COCO_PREDICTIONS = {1: "a surfer riding a wave", 2: "two dogs with a frisbee", 3: 'a sign saying "open".',
                    4: "a plate of rice and broccoli", 5: "a red bus on the street", 6: "a cat on a laptop",
                    7: "a parade in the street", 8: "a giraffe next to a tree"}


@needs_java
def test_integer_image_ids_give_pycocoevalcaps_numbers(meteor_server: Meteor) -> None:
    from hide.metrics import ptb

    assert any(ptb.tokenize(c) is None for refs in COCO_STYLE.values() for c in refs)  # the Java path runs
    assert ptb.tokenize(COCO_PREDICTIONS[3]) is None
    ours = score_captions(COCO_PREDICTIONS, COCO_STYLE)
    expected = direct_pipeline(COCO_PREDICTIONS, COCO_STYLE, meteor_server)
    for name in CAPTION_METRICS:
        assert ours[name] == pytest.approx(expected[name], abs=1e-9, rel=0), name
    as_strings = score_captions({str(k): v for k, v in COCO_PREDICTIONS.items()},
                                {str(k): v for k, v in COCO_STYLE.items()})
    assert as_strings == ours


@needs_java
def test_the_java_tokenizer_reports_nothing_on_the_console(capfd: pytest.CaptureFixture) -> None:
    score_captions({1: "it's '99 now"}, {1: ["It's the parade of July 4th, '99."]}, meteor=False)
    out, err = capfd.readouterr()
    assert "PTBTokenizer" not in out + err


def test_shared_server_is_reused(meteor_server: Meteor) -> None:
    score_captions(PREDICTIONS, REFERENCES)
    assert captions._meteor is meteor_server
    assert meteor_server.meteor_p.poll() is None  # still running


# --------------------------------------------------------------------------------------------
# The fast path: hide.metrics.ptb against the Java tokenizer, hide.metrics.coco against
# pycocoevalcap's scorers
# --------------------------------------------------------------------------------------------

TRICKY = [
    "(a dog) runs.", 'A "big" dog.', "the colour of the neighbour's car", "A black-and-white photo of 2 dogs",
    "It's a dog's life", "I can't, won't, don't!", "Wait... what?", "a dog -- running", "a dog - running",
    "Mr. Smith is here.", "The U.S. flag.", "a 3.5 inch screen", "1,000 people", "cannot go", "gonna go",
    "Two men's hats", "the dogs' bowls", "4x4 truck", "2nd place", "A dog. A cat.", "etc.", "THE DOG'S BONE",
    "I'm here; you're there: we've gone", "a dog ,", "( a dog )", "a dog!!", "a dog?!", "-a dog", "well-- yes",
    "a e i o u.", "A Dog.", "Look at THAT.", "x-ray", "ain't it", "shan't", "a '90s car", "O'Reilly's pub",
    "rock'n'roll", "y'all", "Hmm... a st. bernard", "a man doing the wash.", "Miss. Wash. Calif.", "x... y",
    "jr... ok", "co.", "It's 5 o'clock", "tab\there", "café au lait", "a\u00a0dog", "",
]


def _fuzz_captions(count: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    words = ["a", "dog", "The", "CAT", "it's", "don't", "can't", "won't", "I'm", "we're", "man's", "black-and-white",
             "2", "3rd", "well", "-", "--", "...", "colour", "Mr", "etc", "no", "A", "OK", "e-mail", "isn't", "st",
             "Wash", "wash", "Calif", "Hmm", "dr", "vs", "us", "US", "Dog", "THAT", "inc", "bros"]
    before = ["", "", "", "(", '"', "((", "'"]
    after = ["", "", ".", ",", "!", "?", ";", ":", ")", '"', "...", "--", ".)", '."', "'", "..", "!?", "-"]
    return [" ".join(rng.choice(before) + rng.choice(words) + rng.choice(after) for _ in range(rng.randint(1, 10)))
            for _ in range(count)]


@needs_java
def test_fast_tokenizer_equals_the_java_ptb_tokenizer() -> None:
    from bench.caption_corpus import corpus
    from hide.metrics import ptb

    predictions, references = corpus(400, seed=3)
    captions = TRICKY + list(predictions.values()) + [c for refs in references.values() for c in refs]
    captions += _fuzz_captions(4000)
    java = PTBTokenizer().tokenize({str(i): [{"caption": c}] for i, c in enumerate(captions)})
    ours = [ptb.tokenize(c) for c in captions]
    mismatches = [(c, o, java[str(i)][0]) for i, (c, o) in enumerate(zip(captions, ours)) if o is not None
                  and o != java[str(i)][0]]
    assert mismatches == []
    # the rules cover caption-like English: the Java tokenizer is the exception, not the rule
    corpus_part = ours[len(TRICKY):len(TRICKY) + 400 * 6]
    assert sum(o is None for o in corpus_part) == 0
    assert 300 < sum(o is not None for o in ours[-4000:]) < 4000  # the fuzz exercises both paths


def test_fast_scores_equal_pycocoevalcap_scorers() -> None:
    import random

    from hide.metrics.coco import caption_scores

    rng = random.Random(1)
    vocabulary = "a the dog cat man woman red blue is on in with of running sitting table street two".split()

    def sentence(low: int = 0) -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(low, 12)))

    gts = {f"i{i}": [sentence(1) for _ in range(rng.randint(1, 6))] for i in range(300)}
    res = {key: [sentence()] for key in gts}
    res["i0"], res["i1"], gts["i2"] = [""], [gts["i1"][0]], ["dog", "dog dog dog"]
    ours = caption_scores(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    expected = {**{f"BLEU-{n + 1}": bleu[n] for n in range(4)}, "ROUGE-L": float(Rouge().compute_score(gts, res)[0]),
                "CIDEr": float(Cider().compute_score(gts, res)[0])}
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_bit_parallel_lcs_equals_the_dynamic_programme() -> None:
    import random

    from hide.metrics.coco import lcs_length

    def reference(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
        return table[-1][-1]

    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 15))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 15))]
        assert lcs_length(a, b) == reference(a, b)


def test_plain_captions_need_no_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(captions, "_java", lambda: None)
    plain = {"1": ["a dog runs on the grass.", "the dog's running!"], "2": ["two men talk, near a car"]}
    result = score_captions({"1": "a dog running on grass.", "2": "men near a car"}, plain, meteor=False)
    assert 0 < result["BLEU-1"] <= 100 and result["CIDEr"] > 0
