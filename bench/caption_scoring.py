"""Our caption scorer (`hide.metrics.captions.score_captions`, METEOR off) against pycocoevalcap's
own pipeline as UCIT's eval_caption.py runs it (COCOEvalCap: its Java PTB tokenizer on the
references' dict, then on the predictions' dict, then Bleu(4), Rouge, Cider), side by side, on two
corpora of 3,000 images x (5 references + 1 prediction) (bench/caption_corpus.py):

- mixed: with abbreviations before numbers, punctuation runs, emoticons and single capitals
  before a full stop, whose tokens depend on the next line. Both dicts hold such captions, so
  both sides run the Java tokenizer on both; ours saves only on the scoring. This is the ratio.
- ordinary: caption-like English that is all inside `hide.metrics.ptb`'s safe class, tokenized
  in Python. Goal there: at least 5x.

Both: the same BLEU-1..4, ROUGE-L and CIDEr to 1e-9."""

from __future__ import annotations

from bench.caption_corpus import corpus, mixed_corpus
from bench.common import alternate, result
from hide.metrics.captions import score_captions

GOAL = 5.0
COMPARED = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")


def pycocoevalcap_pipeline(predictions: dict, references: dict) -> dict:
    """COCOEvalCap.evaluate's steps (pycocoevalcap eval.py:22-53) without METEOR and SPICE."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {k: [{"caption": c} for c in refs] for k, refs in references.items()}
    res = {k: [{"caption": predictions[k]}] for k in references}
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize(gts)
    res = tokenizer.tokenize(res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {**{f"BLEU-{n + 1}": 100.0 * b for n, b in enumerate(bleu)},
            "ROUGE-L": 100.0 * float(rouge), "CIDEr": 100.0 * float(cider)}


def _side_by_side(predictions: dict, references: dict, repeats: int) -> dict:
    scores = {}
    seconds = alternate({
        "ours": lambda: scores.__setitem__("ours", score_captions(predictions, references, meteor=False)),
        "pycocoevalcap": lambda: scores.__setitem__("theirs", pycocoevalcap_pipeline(predictions, references)),
    }, repeats=repeats)
    return {"ratio": seconds["pycocoevalcap"] / seconds["ours"], "ours_s": seconds["ours"],
            "pycocoevalcap_s": seconds["pycocoevalcap"],
            "max_abs_difference": max(abs(scores["ours"][k] - scores["theirs"][k]) for k in COMPARED),
            "scores": {k: scores["ours"][k] for k in COMPARED}}


def run(quick: bool = False) -> dict:
    images, repeats = (1000, 1) if quick else (3000, 3)
    mixed = _side_by_side(*mixed_corpus(images), repeats)
    ordinary = _side_by_side(*corpus(images), repeats)
    met = mixed["max_abs_difference"] <= 1e-9 and ordinary["max_abs_difference"] <= 1e-9 and ordinary["ratio"] >= GOAL
    return result("caption_scoring",
                  f"same scores to 1e-9; >= {GOAL:.0f}x on ordinary captions; ratio shown: the mixed corpus",
                  met, mixed["ratio"], images=images, captions=images * 6, mixed=mixed, ordinary=ordinary)
