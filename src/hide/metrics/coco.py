"""BLEU-1..4, ROUGE-L and CIDEr-D exactly as pycocoevalcap computes them, without its overheads.

Inputs are pycocoevalcap's: {image id: [tokenized caption, ...]} for the references and
{image id: [one tokenized caption]} for the predictions. Each caption's n-gram counts are built
once and shared by BLEU and CIDEr; CIDEr's tf-idf vectors are built once per caption (pycocoevalcap
calls numpy per n-gram); ROUGE-L's longest common subsequence is the bit-parallel algorithm
(Allison & Dix 1986; Hyyro 2004) instead of a Python dynamic-programming table. Every formula,
including pycocoevalcap's quirks (corpus BLEU with the closest reference length, CIDEr's "length"
that counts bigrams, ROUGE-L splitting on single spaces), is kept; tests/test_metrics_captions.py
compares the results with pycocoevalcap's own scorers.
"""

from __future__ import annotations

import math
import numpy as np

N = 4
BLEU_SMALL, BLEU_TINY = 1e-9, 1e-15
ROUGE_BETA = 1.2
CIDER_SIGMA = 6.0


def _pair_key(a: np.ndarray, b: np.ndarray, b_size: int) -> np.ndarray:
    """One int64 per (a, b) row, 0 <= b < b_size (a and b are counts of captions, words or n-grams
    of one scoring call, so a * b_size stays far below 2**63)."""
    return a.astype(np.int64) * int(b_size) + b.astype(np.int64)


class NgramTable:
    """Every 1..4-gram occurrence count of a list of captions, as arrays: for order k (1-4),
    `caption[k]`, `gram[k]` and `count[k]` list the distinct (caption, n-gram) pairs, with n-gram
    ids shared by all captions (a k-gram's id is the id of its (k-1)-gram prefix and last word)."""

    def __init__(self, captions: list[str]):
        words = [c.split() for c in captions]
        self.lengths = np.array([len(w) for w in words], dtype=np.int64)
        vocabulary: dict[str, int] = {}
        ids = np.array([vocabulary.setdefault(t, len(vocabulary)) for w in words for t in w], dtype=np.int64)
        owner = np.repeat(np.arange(len(words)), self.lengths)
        self.caption, self.gram, self.count, self.size = {}, {}, {}, {}
        prefix = ids  # prefix[i]: id of the (k-1)-gram starting at token i
        prefix_size = max(len(vocabulary), 1)
        for k in range(1, N + 1):
            starts = np.arange(max(0, len(ids) - k + 1))
            if k > 1:
                starts = starts[owner[starts] == owner[starts + k - 1]]  # the window stays in one caption
                keys = _pair_key(prefix[starts], ids[starts + k - 1], len(vocabulary))
                distinct_grams, gram = np.unique(keys, return_inverse=True)
                prefix = np.zeros(len(ids), dtype=np.int64)
                prefix[starts] = gram
                prefix_size = max(len(distinct_grams), 1)
            else:
                gram = ids
            distinct, counts = np.unique(_pair_key(owner[starts], gram, prefix_size), return_counts=True)
            self.caption[k], self.gram[k], self.count[k] = distinct // prefix_size, distinct % prefix_size, counts
            self.size[k] = prefix_size  # gram ids of order k are below this


def _pair_ids(size: int, *pairs: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """One integer id per distinct (image, gram) across the given pairs of arrays (gram < size)."""
    keys = [_pair_key(a, b, size) for a, b in pairs]
    _, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    bounds = np.cumsum([0] + [len(k) for k in keys])
    return [inverse[bounds[i]:bounds[i + 1]] for i in range(len(keys))]


def bleu(table: NgramTable, ref_image: np.ndarray, hyp_of_image: np.ndarray, refs_of_image: list[list[int]]) -> list[float]:
    """pycocoevalcap's Bleu(4): corpus-level clipped n-gram precision, brevity penalty against the
    reference length closest to each prediction's (the shorter one on a tie). `ref_image[c]` is the
    image of caption c (-1 for predictions), `hyp_of_image[i]` the prediction caption of image i."""
    num_images = len(hyp_of_image)
    is_hyp = np.zeros(len(table.lengths), dtype=bool)
    is_hyp[hyp_of_image] = True
    image_of_hyp = np.full(len(table.lengths), -1)
    image_of_hyp[hyp_of_image] = np.arange(num_images)
    correct = []
    for k in range(1, N + 1):
        cap, gram, count = table.caption[k], table.gram[k], table.count[k]
        r, h = ~is_hyp[cap], is_hyp[cap]
        ref_ids, hyp_ids = _pair_ids(table.size[k], (ref_image[cap[r]], gram[r]), (image_of_hyp[cap[h]], gram[h]))
        max_ref = np.zeros(len(ref_ids) + len(hyp_ids) + 1, dtype=np.int64)
        np.maximum.at(max_ref, ref_ids, count[r])
        correct.append(int(np.minimum(count[h], max_ref[hyp_ids]).sum()))
    hyp_lengths = table.lengths[hyp_of_image]
    testlen_total = int(hyp_lengths.sum())
    reflen_total = 0
    for i, refs in enumerate(refs_of_image):
        testlen = int(hyp_lengths[i])
        reflen_total += min((abs(int(table.lengths[c]) - testlen), int(table.lengths[c])) for c in refs)[1]
    guess = [int(np.maximum(0, hyp_lengths - k).sum()) for k in range(N)]
    scores, product = [], 1.0
    for k in range(N):
        product *= float(correct[k] + BLEU_TINY) / (guess[k] + BLEU_SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (testlen_total + BLEU_TINY) / (reflen_total + BLEU_SMALL)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists, in O(len(b)) big-integer steps."""
    if len(a) < len(b):
        a, b = b, a
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full
    for token in b:
        match = row & masks.get(token, 0)
        row = ((row + match) | (row - match)) & full
    return len(a) - bin(row).count("1")


def rouge_l(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    """pycocoevalcap's Rouge: per image the F-measure (beta 1.2) of the best LCS precision and the
    best LCS recall over the references, then the mean over images."""
    scores = []
    for key, refs in gts.items():
        candidate = res[key][0].split(" ")
        best_precision = best_recall = 0.0
        for ref in refs:
            reference = ref.split(" ")
            lcs = lcs_length(reference, candidate)
            best_precision = max(best_precision, lcs / float(len(candidate)))
            best_recall = max(best_recall, lcs / float(len(reference)))
        if best_precision != 0 and best_recall != 0:
            scores.append(((1 + ROUGE_BETA ** 2) * best_precision * best_recall)
                          / float(best_recall + ROUGE_BETA ** 2 * best_precision))
        else:
            scores.append(0.0)
    return float(np.mean(np.array(scores)))


def cider_d(table: NgramTable, ref_image: np.ndarray, hyp_of_image: np.ndarray, refs_of_image: list[list[int]]) -> float:
    """pycocoevalcap's Cider (CIDEr-D without clipping by length): tf-idf of 1..4-grams with the
    document frequency over the images' reference sets, cosine per n, a Gaussian penalty (sigma 6)
    on the difference in length (pycocoevalcap counts the bigrams), averaged over n and the
    references, x10, mean over images."""
    num_images, num_captions = len(hyp_of_image), len(table.lengths)
    is_hyp = np.zeros(num_captions, dtype=bool)
    is_hyp[hyp_of_image] = True
    image = ref_image.copy()
    image[hyp_of_image] = np.arange(num_images)
    ref_len = np.log(float(num_images))
    dot = np.zeros((num_captions, N))
    norm = np.zeros((num_captions, N))
    for k in range(1, N + 1):
        cap, gram, count = table.caption[k], table.gram[k], table.count[k]
        r = ~is_hyp[cap]
        # document frequency: the images whose references hold the n-gram
        size = table.size[k]
        image_grams = np.unique(_pair_key(image[cap[r]], gram[r], size)) % size
        df = np.bincount(image_grams, minlength=size).astype(np.float64)
        weight = count.astype(np.float64) * (ref_len - np.log(np.maximum(1.0, df[gram])))
        norm[:, k - 1] = np.bincount(cap, weights=weight ** 2, minlength=num_captions)
        # each reference entry meets its image's prediction entry of the same n-gram, if any
        ref_ids, hyp_ids = _pair_ids(size, (image[cap[r]], gram[r]), (image[cap[~r]], gram[~r]))
        hyp_weight = np.zeros(len(ref_ids) + len(hyp_ids) + 1)
        hyp_weight[hyp_ids] = weight[~r]
        w_ref = weight[r]
        dot[:, k - 1] = np.bincount(cap[r], weights=np.minimum(hyp_weight[ref_ids], w_ref) * w_ref,
                                    minlength=num_captions)
    norm = np.sqrt(norm)
    bigram_length = np.maximum(0, table.lengths - 1)
    ref_captions = np.flatnonzero(~is_hyp)
    hyp_for_ref = hyp_of_image[image[ref_captions]]
    denominator = norm[hyp_for_ref] * norm[ref_captions]
    cosine = np.divide(dot[ref_captions], denominator, out=np.zeros_like(denominator), where=denominator != 0)
    delta = (bigram_length[hyp_for_ref] - bigram_length[ref_captions]).astype(np.float64)
    per_ref = cosine * (np.e ** (-(delta ** 2) / (2 * CIDER_SIGMA ** 2)))[:, None]
    per_image = np.stack([np.bincount(image[ref_captions], weights=per_ref[:, n], minlength=num_images)
                          for n in range(N)], axis=1)
    counts = np.array([len(refs) for refs in refs_of_image], dtype=np.float64)
    return float(np.mean(per_image.mean(axis=1) / counts * 10.0))


def caption_scores(gts: dict[str, list[str]], res: dict[str, list[str]]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr (0-1, as pycocoevalcap returns them) of tokenized captions."""
    keys = list(gts)
    captions, ref_image, refs_of_image = [], [], []
    for i, key in enumerate(keys):
        refs_of_image.append(list(range(len(captions), len(captions) + len(gts[key]))))
        captions += gts[key]
        ref_image += [i] * len(gts[key])
    hyp_of_image = np.arange(len(captions), len(captions) + len(keys))
    captions += [res[key][0] for key in keys]
    ref_image = np.array(ref_image + [-1] * len(keys), dtype=np.int64)
    table = NgramTable(captions)
    b = bleu(table, ref_image, hyp_of_image, refs_of_image)
    return {"BLEU-1": b[0], "BLEU-2": b[1], "BLEU-3": b[2], "BLEU-4": b[3],
            "ROUGE-L": rouge_l(gts, res), "CIDEr": cider_d(table, ref_image, hyp_of_image, refs_of_image)}
