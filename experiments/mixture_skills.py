"""What the base model learned in the mixture: exact match on held-out mixture questions, per question kind.

    python experiments/mixture_skills.py [HYDRA OVERRIDES ...] [--samples N] [--out DIR]

Loads (building it on first use) the backbone of the composed config, draws N held-out pretraining
conversations (their own random streams, never trained on), answers each one's first question
with batched greedy generation, and writes DIR/mixture_skills.json and .md: accuracy per question
kind (the "asked" key of the generator), with a majority-answer baseline beside it. Use it to see
whether a continual task's skill (counting, comparing bars, ...) is in the base model at all.
Two image-free skills every multiple-choice and caption task builds on are scored beside them,
on up to IMAGE_FREE_QUESTIONS questions of their own: the option lookup ("Which option is
red?", answered with the letter) and the repeat turn ("Write this sentence"), and the language
model's copying alone (the share of a repeated word sequence's second half it predicts,
teacher-forced; `copy` in the json).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from hydra.utils import instantiate

from hide.config import compose_config
from hide.data import synth
from hide.data.collate import Encoder, EvalCollator
from hide.data.formats import TestRecord, load_train_file
from hide.models.tiny import copy_accuracy
from hide.module import greedy_answers


IMAGE_FREE_QUESTIONS = 400  # of each image-free skill (at most one per mixture conversation)


def answer_all(backbone, records: list[TestRecord], batch_size: int = 64, max_new_tokens: int = 24) -> list[str]:
    """Greedy answers to every record, in batches, as the task loop's evaluation makes them."""
    collate = EvalCollator(Encoder.for_backbone(backbone))
    backbone.model.eval()
    answers: list[str] = []
    for start in range(0, len(records), batch_size):
        batch = collate([(0, r) for r in records[start:start + batch_size]])
        answers += greedy_answers(backbone.model, backbone.tokenizer, batch, max_new_tokens)
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", default="outputs/mixture_skills")
    args, overrides = parser.parse_known_args()
    out = Path(args.out)
    cfg = compose_config(list(overrides), out)
    backbone = instantiate(cfg.model)
    data_dir = Path(cfg.paths.cache_dir) / "mixture-probe"
    image_size = cfg.model.get("image_size") or backbone.image_processor.crop_size["height"]
    synth.generate_mixture(data_dir, num_samples=args.samples, image_size=image_size,
                          seed=cfg.model.get("seed", 0), split="test")
    path = data_dir / "instructions" / synth.MIXTURE / "test.json"
    train_records = load_train_file(path, data_dir / "datasets")
    kinds = [meta["asked"][0] for meta in (r["meta"] for r in json.loads(path.read_text()))]
    records = [TestRecord(r.id, r.image, r.turns[0].instruction, r.turns[0].answer) for r in train_records]
    predictions = answer_all(backbone, records)

    by_kind: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for kind, record, prediction in zip(kinds, records, predictions):
        by_kind[kind].append((prediction.lower(), record.answer.lower()))
    # the image-free skills, on the same images (a seeded stream of their own)
    rng = np.random.default_rng(cfg.model.get("seed", 0) + 1)
    for kind, make in (("option_lookup (image-free)", synth.mixture.lookup_turn),
                       ("repeat (image-free)", synth.mixture.repeat_turn)):
        asked = [TestRecord(r.question_id, r.image, *make(rng)) for r in records[:IMAGE_FREE_QUESTIONS]]
        for record, prediction in zip(asked, answer_all(backbone, asked)):
            by_kind[kind].append((prediction.lower(), record.answer.lower()))
    rows = []
    for kind in sorted(by_kind):
        pairs = by_kind[kind]
        majority = Counter(a for _, a in pairs).most_common(1)[0][1]
        rows.append({"kind": kind, "n": len(pairs),
                     "accuracy": 100.0 * sum(p == a for p, a in pairs) / len(pairs),
                     "majority": 100.0 * majority / len(pairs),
                     "examples": [{"predicted": p, "answer": a} for p, a in pairs[:3]]})
    copy = 100.0 * copy_accuracy(backbone, sequences=200, seed=cfg.model.get("seed", 0))
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixture_skills.json").write_text(json.dumps({"kinds": rows, "copy": copy}, indent=2))
    lines = ["| question kind | n | base model | majority answer |", "|---|---:|---:|---:|"]
    lines += [f"| {r['kind']} | {r['n']} | {r['accuracy']:.1f} | {r['majority']:.1f} |" for r in rows]
    lines += ["", f"copying (teacher-forced second half of a repeated word sequence): {copy:.1f}%"]
    (out / "mixture_skills.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
