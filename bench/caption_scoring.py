"""Our caption scorer (`hide.metrics.captions.score_captions`, METEOR off) against pycocoevalcap's
own pipeline (its Java PTB tokenizer on references and predictions, then Bleu(4), Rouge, Cider, as
COCOEvalCap runs them) on 3,000 images x (5 references + 1 prediction) of caption-like English with
punctuation and contractions (bench/caption_corpus.py). Goal: the same BLEU-1..4, ROUGE-L and CIDEr
to 1e-9, and at least 5x faster."""

from __future__ import annotations

from bench.caption_corpus import corpus
from bench.common import alternate, result
from hide.metrics.captions import score_captions

GOAL = 5.0
COMPARED = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")


def pycocoevalcap_pipeline(predictions: dict, references: dict) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = PTBTokenizer().tokenize({k: [{"caption": c} for c in refs] for k, refs in references.items()})
    res = PTBTokenizer().tokenize({k: [{"caption": predictions[k]}] for k in references})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {**{f"BLEU-{n + 1}": 100.0 * b for n, b in enumerate(bleu)},
            "ROUGE-L": 100.0 * float(rouge), "CIDEr": 100.0 * float(cider)}


def run(quick: bool = False) -> dict:
    predictions, references = corpus(1000 if quick else 3000)
    scores = {}
    seconds = alternate({
        "ours": lambda: scores.__setitem__("ours", score_captions(predictions, references, meteor=False)),
        "pycocoevalcap": lambda: scores.__setitem__("theirs", pycocoevalcap_pipeline(predictions, references)),
    }, repeats=1 if quick else 3)
    worst = max(abs(scores["ours"][k] - scores["theirs"][k]) for k in COMPARED)
    ratio = seconds["pycocoevalcap"] / seconds["ours"]
    return result("caption_scoring", f">= {GOAL:.0f}x, same scores to 1e-9", ratio >= GOAL and worst <= 1e-9, ratio,
                  images=len(references), captions=sum(len(r) + 1 for r in references.values()),
                  ours_s=seconds["ours"], pycocoevalcap_s=seconds["pycocoevalcap"], max_abs_difference=worst,
                  scores={k: scores["ours"][k] for k in COMPARED})
