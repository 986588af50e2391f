"""COCO caption metrics: score_captions must reproduce UCIT's official scorer exactly.

The official scorer is HiDe-LLaVA's llava/eval/eval_caption.py: pycocotools' COCO / loadRes and
pycocoevalcap's COCOEvalCap.evaluate, which tokenizes the references' dict and then the
predictions' dict in two Java PTBTokenizer runs (the lexer reads each caption together with the
next line) and scores Bleu(4), Meteor, Rouge and Cider. `official_eval_caption` below runs that
code itself on files written as eval_caption.py writes them, with only SPICE (unused) stubbed.

The comparisons with pycocoevalcap need Java (its PTB tokenizer, METEOR) and skip without it; the
tests of our own Java-free path run everywhere. No network. One METEOR server is started for the
whole file (the module's shared one; its start-up, a few seconds, dominates the run time), and
one more by the official pipeline's own Meteor().
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("pycocoevalcap")

from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.meteor.meteor import Meteor  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402
from pycocoevalcap.tokenizer import ptbtokenizer as ptbtokenizer_module  # noqa: E402
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, PTBTokenizer  # noqa: E402

from bench.caption_corpus import FOLLOWERS, INSIDE, LINE_ENDS, corpus, mixed_corpus  # noqa: E402
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
    """The module's shared METEOR server (started once here, reused by every test)."""
    if shutil.which("java") is None:
        pytest.skip("METEOR needs Java")
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


def test_line_breaks_inside_a_caption_do_not_shift_other_images(caplog: pytest.LogCaptureFixture) -> None:
    # Upstream only replaces "\n"; the PTB tokenizer also breaks lines at "\r", U+2028, ... which
    # would move every later caption onto the wrong image. Here they behave like a space, loudly.
    broken = {**PLAIN_PREDICTIONS, "2": "Two men\rtalking next\u2028to a car."}
    with caplog.at_level(logging.WARNING, logger=captions.__name__):
        assert (score_captions(broken, PLAIN_REFERENCES, meteor=False)
                == score_captions(PLAIN_PREDICTIONS, PLAIN_REFERENCES, meteor=False))
    assert any("line break" in rec.getMessage() for rec in caplog.records)
    # "\n" is what pycocoevalcap itself replaces (ptbtokenizer.py line 37): exactly one space, no warning
    assert captions._one_line("a dog\nruns\n") == "a dog runs "
    # U+0085 and the ASCII separators are no line breaks to the Java lexer: left as they are
    assert captions._one_line("a\x85b\x1cc") == "a\x85b\x1cc"


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
    with pytest.raises(RuntimeError, match="needs Java.*No. 5"):
        score_captions({**PREDICTIONS, "4": "Kids in shirts No. 5 and 7."}, REFERENCES)


# COCO's own image ids are integers; one reference is outside hide.metrics.ptb's safe class (an
# apostrophe before a year), so the references go to the Java tokenizer and the predictions do not.
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
    assert ptb.tokenize_corpus(c for refs in COCO_STYLE.values() for c in refs) is None  # the Java path runs
    assert ptb.tokenize_corpus(COCO_PREDICTIONS.values()) is not None  # the Python path runs
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
# The official pipeline on captions whose Stanford tokens depend on the next line
# --------------------------------------------------------------------------------------------


class _NoSpice:
    """COCOEvalCap.evaluate's SPICE scorer (eval.py:45), which UCIT does not report and which needs
    a download: the one part of the official pipeline left out."""

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        return 0.0, [0.0] * len(gts)

    def method(self) -> str:
        return "SPICE"


OFFICIAL_NAMES = {"Bleu_1": "BLEU-1", "Bleu_2": "BLEU-2", "Bleu_3": "BLEU-3", "Bleu_4": "BLEU-4",
                  "METEOR": "METEOR", "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr"}


def official_eval_caption(predictions: list[str], references: dict[int, list[str]], folder: Path,
                          meteor: Meteor) -> dict[str, float]:
    """HiDe-LLaVA's llava/eval/eval_caption.py on these captions: create_coco_type's prediction file
    (image ids 1..N in answer order), a COCO-format annotation file, then eval_single: COCO(...),
    loadRes(...), COCOEvalCap(...).evaluate(), each metric x 100. Its Meteor() is the module's
    running server (pycocoevalcap's Meteor, compute_score unmodified), which saves a JVM start."""
    pycocotools_coco = pytest.importorskip("pycocotools.coco")
    from pycocoevalcap import eval as coco_eval_module

    pairs = [(i, c) for i, refs in references.items() for c in refs]
    annotation = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in references],
                  "annotations": [{"image_id": i, "id": n, "caption": c} for n, (i, c) in enumerate(pairs, 1)]}
    annotation_file, result_file = folder / "val_coco_type.json", folder / "pred_coco_type.json"
    annotation_file.write_text(json.dumps(annotation))
    result_file.write_text(json.dumps([{"image_id": i + 1, "caption": p} for i, p in enumerate(predictions)], indent=4))
    coco = pycocotools_coco.COCO(str(annotation_file))
    coco_res = coco.loadRes(str(result_file))
    evaluator = coco_eval_module.COCOEvalCap(coco, coco_res)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(coco_eval_module, "Spice", _NoSpice)
        patch.setattr(coco_eval_module, "Meteor", lambda: meteor)
        with captions._METEOR_LOCK:
            evaluator.evaluate()
    return {ours: 100.0 * evaluator.eval[theirs] for theirs, ours in OFFICIAL_NAMES.items()}


MIXED_PREDICTIONS, MIXED_REFERENCES = mixed_corpus(150, seed=5)


def _lines(captions_of_image: dict) -> list[str]:
    return [c for caps in captions_of_image.values() for c in ([caps] if isinstance(caps, str) else caps)]


def test_the_mixed_corpus_has_every_case_in_both_dicts() -> None:
    refs, preds = _lines(MIXED_REFERENCES), _lines(MIXED_PREDICTIONS)
    for needle in ("No. 5", "St. 3", "mat., looking", "!!!", "...?", ":)", ":-(", ";)", "vitamin C."):
        assert any(needle in line for line in refs), needle
    assert ptb.tokenize_corpus(refs) is None and ptb.tokenize_corpus(preds) is None  # Java for both
    # a caption that looks past its end ("vitamin C.", "No.", ";)") last in an image's captions, and
    # a lower-case, an upper-case and a digit first word after it: in the references and in the predictions
    for lines in (refs, preds):
        after = {lines[i + 1][0] for i in range(len(lines) - 1) if lines[i] in LINE_ENDS}
        assert any(c.islower() for c in after) and any(c.isupper() for c in after) and any(c.isdigit() for c in after)


@needs_java
def test_the_mixed_corpus_depends_on_neighbouring_lines() -> None:
    # What the official run gives each caption differs from what Java gives the same captions among
    # other neighbours (here: the unsafe ones alone, as a per-caption fallback would send them).
    lines = _lines(MIXED_REFERENCES)
    in_context = PTBTokenizer().tokenize({0: [{"caption": c} for c in lines]})[0]
    unsafe = [i for i, c in enumerate(lines) if ptb.tokenize(c) is None]
    alone = PTBTokenizer().tokenize({0: [{"caption": lines[i]} for i in unsafe]})[0]
    changed = [lines[i] for i, tokens in zip(unsafe, alone) if tokens != in_context[i]]
    assert len(changed) >= 5 and any("vitamin C." in c for c in changed)


@pytest.fixture(scope="module")
def official_mixed(tmp_path_factory: pytest.TempPathFactory, meteor_server: Meteor) -> dict[str, float]:
    return official_eval_caption(list(MIXED_PREDICTIONS.values()), MIXED_REFERENCES,
                                 tmp_path_factory.mktemp("official"), meteor_server)


def test_mixed_corpus_equals_the_official_eval_caption(official_mixed: dict, meteor_server: Meteor) -> None:
    ours = score_captions(MIXED_PREDICTIONS, MIXED_REFERENCES)
    assert ours["METEOR_available"] is True
    for name in CAPTION_METRICS:
        assert ours[name] == pytest.approx(official_mixed[name], abs=1e-9, rel=0), name
    # and the direct calls of pycocoevalcap's scorers that the other tests use agree with it
    direct = direct_pipeline(MIXED_PREDICTIONS, MIXED_REFERENCES, meteor_server)
    for name in CAPTION_METRICS:
        assert direct[name] == pytest.approx(official_mixed[name], abs=1e-9, rel=0), name


def test_ordinary_corpus_equals_the_official_eval_caption(meteor_server: Meteor, tmp_path: Path) -> None:
    predictions, references = corpus(150, seed=4)
    predictions = {i + 1: p for i, p in enumerate(predictions.values())}
    references = {i + 1: r for i, r in enumerate(references.values())}
    assert ptb.tokenize_corpus(_lines(references)) is not None  # the Python path for both dicts
    assert ptb.tokenize_corpus(_lines(predictions)) is not None
    expected = official_eval_caption(list(predictions.values()), references, tmp_path, meteor_server)
    ours = score_captions(predictions, references)
    for name in CAPTION_METRICS:
        assert ours[name] == pytest.approx(expected[name], abs=1e-9, rel=0), name


class _RecordingTokenizer(PTBTokenizer):
    calls: list[list[str]] = []

    def tokenize(self, captions_for_image: dict) -> dict:
        type(self).calls.append([c["caption"] for caps in captions_for_image.values() for c in caps])
        return super().tokenize(captions_for_image)


@needs_java
def test_java_gets_each_dict_whole_in_the_official_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(captions, "PTBTokenizer", _RecordingTokenizer)
    monkeypatch.setattr(_RecordingTokenizer, "calls", [])
    score_captions(MIXED_PREDICTIONS, MIXED_REFERENCES, meteor=False)
    # COCOEvalCap: tokenize(gts) then tokenize(res), each image's captions in order (eval.py:24-34)
    assert _RecordingTokenizer.calls == [_lines(MIXED_REFERENCES), _lines(MIXED_PREDICTIONS)]
    # a dict that is all safe is not sent; the other one still goes whole
    monkeypatch.setattr(_RecordingTokenizer, "calls", [])
    safe_predictions = {k: "a dog on the grass." for k in MIXED_PREDICTIONS}
    score_captions(safe_predictions, MIXED_REFERENCES, meteor=False)
    assert _RecordingTokenizer.calls == [_lines(MIXED_REFERENCES)]


@needs_java
def test_the_references_do_not_neighbour_the_predictions(meteor_server: Meteor) -> None:
    # The last reference and the first prediction are in separate tokenizer runs (eval.py:33-34):
    # "vitamin C." ends its file ("c."), even though "The ..." starts the predictions.
    references = {1: ["A cat on a mat."], 2: ["A bottle of vitamin C."]}
    predictions = {1: "The cat sits.", 2: "The label is orange."}
    gts, res = captions._tokenize(references, predictions)
    assert gts[2] == ["a bottle of vitamin c."] and res[1] == ["the cat sits"]
    ours = score_captions(predictions, references)
    expected = direct_pipeline(predictions, references, meteor_server)
    for name in CAPTION_METRICS:
        assert ours[name] == pytest.approx(expected[name], abs=1e-9, rel=0), name


# --------------------------------------------------------------------------------------------
# Tokenization worked by hand
# --------------------------------------------------------------------------------------------

# Safe lines and pycocoevalcap's tokens for them (tokenizer/ptbtokenizer.py): the Java command
# lower-cases every token (line 30, -lowerCase) and only then are PUNCTUATIONS (lines 21-22)
# dropped (lines 65-66), so "(" -> -LRB- -> "-lrb-" is no longer in that list and stays a word.
BY_HAND = [
    ("A dog's toy (red).", "a dog 's toy -lrb- red -rrb-"),  # clitic split, brackets kept as words
    ("don't, can't", "do n't ca n't"),  # n't split from the word before it; the commas dropped
    ("I'm here; you're there", "i 'm here you 're there"),
    ("wow!!! what...?", "wow !!! what"),  # "!!!" is one token and not in PUNCTUATIONS; "..." and "?" are
    ("Wow!! cool?!", "wow !! cool ?!"),
    ("a ----- b --- c - d", "a ----- b c d"),  # 3-4 hyphens become "--" (dropped), 5 stay as they are
    ('"fun" day', "fun day"),  # quotes become `` and '', both dropped
    ("dogs' bowls", "dogs bowls"),  # a bare apostrophe is a token of its own, dropped
    ("Hmm... a black-and-white dog.", "hmm a black-and-white dog"),
    ("A 4x4 truck, 2nd place", "a 4x4 truck 2nd place"),
    ("", ""),
]

# Outside the safe class, and why (each token decision looks at more than the word)
NOT_SAFE = ["vitamin C.", "No. 5", "St. 3", "a cat on a mat., looking", "a dog :)", "sad :-(", "wink ;)",
            "(xx) dogs", "call 555 1234", "gonna go", "cannot", "etc.", "Mr. Smith", "cont'd", "somethin'",
            "a 3.5 inch screen", "1,000 people", "O'Reilly's pub", "y'all", "THE DOG'S BONE", "a '90s car",
            "tab\there", "café", "a\u00a0dog", "-a dog", "anti- war", "x.com", "a<b"]

# Dicts (one tokenizer call each, in order) and their tokens, worked out from PTBLexer 3.4.1's
# rules and pycocoevalcap's filter; the neighbours (and the end of the file) matter here.
BY_HAND_IN_CONTEXT = [
    (["vitamin C.", "the end"], ["vitamin c.", "the end"]),  # ACRO + ".": kept before a lower-case word
    (["vitamin C.", "The end"], ["vitamin c", "the end"]),  # ... split before "The" (ACRONYM's list)
    (["vitamin C."], ["vitamin c."]),  # ... and kept at the end of the file
    (["No. 5"], ["no. 5"]),  # ABBREV3 before a number
    (["it is No.", "5 dogs"], ["it is no.", "5 dogs"]),  # ... even across the line break
    (["it is No.", "five dogs"], ["it is no", "five dogs"]),
    (["St. 3 bus"], ["st. 3 bus"]),
    (["mat., looking"], ["mat. looking"]),  # {WORD}\.{INSENTP}: the full stop stays on the word
    (["wink ;)", "x"], ["wink ;-rrb-", "x"]),  # SMILEY needs a non-alphanumeric character after it:
    (["wink ;)"], ["wink -rrb-"]),  # the end of the file is none, so ";" and ")" split
    ([":) :-( ;)", "x"], [":-rrb- :--lrb- ;-rrb-", "x"]),
    (["(xx) (x)"], ["-lrb-xx-rrb- -lrb- x -rrb-"]),  # ASIANSMILEY
    (["gonna go", "cannot"], ["gon na go", "can not"]),
]


def test_safe_lines_by_hand() -> None:
    for caption, tokens in BY_HAND:
        assert ptb.tokenize(caption) == tokens, caption
    for caption in NOT_SAFE:
        assert ptb.tokenize(caption) is None, caption
    assert ptb.tokenize_corpus([c for c, _ in BY_HAND]) == [t for _, t in BY_HAND]
    assert ptb.tokenize_corpus([BY_HAND[0][0], NOT_SAFE[0]]) is None


@needs_java
def test_by_hand_cases_are_the_java_tokenizers() -> None:
    lines = [c for c, _ in BY_HAND]
    assert PTBTokenizer().tokenize({0: [{"caption": c} for c in lines]})[0] == [t for _, t in BY_HAND]
    for lines, tokens in BY_HAND_IN_CONTEXT:
        assert ptb.tokenize_corpus(lines) is None, lines  # so score_captions hands them to this very call
        assert PTBTokenizer().tokenize({0: [{"caption": c} for c in lines]})[0] == tokens, lines


# --------------------------------------------------------------------------------------------
# The safe class against the Java tokenizer
# --------------------------------------------------------------------------------------------

JAR = Path(ptbtokenizer_module.__file__).parent / ptbtokenizer_module.STANFORD_CORENLP_3_4_1_JAR


def _java_lines(lines: list[str], tmp_path: Path) -> list[str]:
    """pycocoevalcap's tokenizer on one file of lines (its command and filter, lines 28-30 and
    62-67, without the dict), for lines too many for a dict of their own."""
    path = tmp_path / "lines.txt"
    path.write_bytes("\n".join(lines).encode())
    out = subprocess.run(["java", "-cp", str(JAR), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                          "-lowerCase", str(path)], capture_output=True, check=True).stdout.decode().split("\n")
    assert len(out) == len(lines)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in out]


@needs_java
def test_abbreviations_are_the_lexers(tmp_path: Path) -> None:
    # Every 2-3 letter word and every listed abbreviation, in lower, Title and UPPER case, before
    # ".": the words the lexer keeps with their full stop in any of these contexts are exactly
    # ptb.ABBREVIATIONS (single letters are never safe before ".").
    import itertools
    import string

    words = {"".join(t) for n in (2, 3) for t in itertools.product(string.ascii_lowercase, repeat=n)}
    words = {w2 for w in words for w2 in (w, w.capitalize(), w.upper())}
    words |= {w2 for w in ptb.ABBREVIATIONS for w2 in (w, w.capitalize(), w.upper())}
    words = sorted(w for w in words if not ptb._ASSIMILATIONS.search(w))
    lines = [line for w in words for line in (f"{w}. 5 {w}. the {w}. The {w}. About {w}. ltd {w}.", "5")]
    out = _java_lines(lines, tmp_path)[::2]
    kept = {w.lower() for w, tokens in zip(words, out) if f"{w.lower()}." in tokens.split(" ")}
    assert kept == set(ptb.ABBREVIATIONS)


def _random_lines(count: int, rng: random.Random) -> list[str]:
    """Lines near the edges of the safe class: words that are abbreviations, single letters,
    clitics of every kind, brackets, quotes, runs of punctuation, emoticons, numbers."""
    vocabulary = ["a", "A", "I", "i", "x", "X", "dog", "Dog", "DOG", "the", "The", "she", "SHE", "you", "they", "do",
                  "ca", "wo", "ai", "does", "inn", "an", "don", "cont", "somethin", "ol", "goin", "miss", "Miss",
                  "wash", "Wash", "no", "No", "St", "Mr", "etc", "fig", "Jr", "co", "pty", "cannot", "gonna", "2",
                  "12", "123", "1234", "2nd", "4x4", "x-ray", "black-and-white", "12-345-6789", "1-2", "pro-choice",
                  "e-mail", "O", "D", "L", "y", "n", "vs", "US", "U", "C", "About", "He", "lrb", "com", "www",
                  "txt", "Ph", "a1", "A4", "colour", "na", "OK", "hmm"] + sorted(ptb.ABBREVIATIONS)[::7]
    leads = ["", "", "", "(", '"', "((", '("', '"(', "'", "`", "-", ".", "<", "$"]
    clitics = ["", "", "", "", "'s", "'m", "'d", "'re", "'ve", "'ll", "'t", "n't", "'", "'S", "N'T", "'x", "'em"]
    trails = ["", "", "", ".", ",", "!", "?", ";", ":", ")", '"', "...", "..", "....", "......", "!!", "?!", ".)",
              '."', ".,", ".;", ":)", ";)", ":-(", ":D", ")", ").", '".', "!.", ",,", "-", "--", "'", "/2", ".com",
              ".5", ",000", ":30", "'s."]
    alone = ["-", "--", "---", "----", "-----", ".", "...", ". . .", "!", "?!", ",", ";", ":", "(", ")", '"', "'",
             "''", "-LRB-", ":)", "(xx)", "(12)", "&"]

    def word() -> str:
        roll = rng.random()
        if roll < 0.6:
            return rng.choice(vocabulary)
        if roll < 0.8:
            return "".join(rng.choice("abcdenostxyzADNOSTX") for _ in range(rng.randint(1, 6)))
        return "".join(rng.choice("abn'tsd0123-") for _ in range(rng.randint(1, 6)))

    def piece() -> str:
        if rng.random() < 0.1:
            return rng.choice(alone)
        return rng.choice(leads) + word() + rng.choice(clitics) + rng.choice(trails)

    return [" " * rng.randint(0, 1) + rng.choice([" ", "  "]).join(piece() for _ in range(rng.randint(0, 7)))
            + " " * rng.randint(0, 1) for _ in range(count)]


@needs_java
def test_safe_lines_equal_the_java_tokenizer_whatever_their_neighbours(tmp_path: Path) -> None:
    rng = random.Random(7)
    ordinary = _lines(corpus(300, seed=3)[1])
    lines = [c for c, _ in BY_HAND] + ordinary + _random_lines(12000, rng)
    ours = [ptb.tokenize(line) for line in lines]
    safe = [line for line, tokens in zip(lines, ours) if tokens is not None]
    assert 1500 < len(safe) < len(lines) - 5000  # both sides of the boundary are exercised
    # (1) in a random order among unsafe lines and the lines that change a word's fate
    # (lower/upper case, digits, empty lines), a safe line last in the file (no newline after it)
    neighbours = lines + FOLLOWERS + LINE_ENDS + INSIDE + ["", ""]
    mixed = neighbours * 2
    rng.shuffle(mixed)
    mixed.append(safe[-1])
    java = _java_lines(mixed, tmp_path)
    wrong = [(line, ptb.tokenize(line), j) for line, j in zip(mixed, java)
             if ptb.tokenize(line) is not None and ptb.tokenize(line) != j]
    assert wrong == []
    # (2) the safe lines alone, shuffled: a corpus that takes the Python path
    rng.shuffle(safe)
    assert ptb.tokenize_corpus(safe) == _java_lines(safe, tmp_path)


# --------------------------------------------------------------------------------------------
# The scorers
# --------------------------------------------------------------------------------------------

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
