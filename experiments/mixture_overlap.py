"""What the base model's pretraining mixture shares with each task's test set.

    python experiments/mixture_overlap.py [HYDRA OVERRIDES ...] [--out DIR]

Generates (or reuses) the pretraining mixture the composed model config is built from
(`model.language_pretrain.num_samples`, `repeat_share`, `model.image_size`, `model.seed`) and the
composed benchmark, and counts per task, over its test set:
- images: test images pixel-identical to a mixture image;
- questions: test instructions the mixture asks word for word (ignoring case);
- answers (QA tasks): test items whose answer is an answer the mixture gives, and the share of the
  task's distinct answers the mixture gives;
- captions (caption tasks): test items with a mixture answer of at least four words inside one of
  their references, and the share of the references' 4-grams that mixture answers hold.
Writes DIR/mixture_overlap.json and .md (default DIR: docs/results).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from PIL import Image

from hide.atomic import write_json_atomic
from hide.config import ROOT, compose_config
from hide.data import synth
from hide.data.formats import TaskData, load_train_file

NGRAM = 4


def pixels_key(path: Path) -> str:
    """A digest of an image's decoded pixels (two files with the same pixels share it)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def mixture_index(mixture_dir: Path) -> dict:
    """Everything of the mixture the overlaps are counted against."""
    records = load_train_file(mixture_dir / "instructions" / synth.MIXTURE / "train.json", mixture_dir / "datasets")
    answers = [turn.answer for r in records for turn in r.turns]
    long_answers = sorted({" ".join(words(a)) for a in answers if len(words(a)) >= NGRAM})
    return {
        "conversations": len(records),
        "images": {pixels_key(r.image) for r in records if r.image is not None},
        "questions": {turn.instruction.strip().lower() for r in records for turn in r.turns},
        "answers": {a.strip().lower() for a in answers},
        "long_answers": long_answers,
        "ngrams": set().union(*(ngrams(a) for a in answers)),
    }


def task_overlap(task: TaskData, mixture: dict) -> dict:
    """The overlap counts of one task's test set (module docstring)."""
    test = task.test
    row = {"task": task.name, "kind": task.kind, "test_items": len(test),
           "images": sum(pixels_key(r.image) in mixture["images"] for r in test if r.image is not None),
           "questions": sum(r.text.strip().lower() in mixture["questions"] for r in test)}
    if task.kind == "qa":
        taught = {r.answer.strip().lower() for r in test} & mixture["answers"]
        distinct = {r.answer.strip().lower() for r in test}
        row["answers"] = sum(r.answer.strip().lower() in mixture["answers"] for r in test)
        row["distinct_answers_taught"] = f"{len(taught)}/{len(distinct)}"
    else:
        references = [task.references[r.question_id] for r in test]
        joined = [[" ".join(words(ref)) for ref in refs] for refs in references]
        row["captions_verbatim"] = sum(any(f" {a} " in f" {ref} " for ref in refs for a in mixture["long_answers"])
                                       for refs in joined)
        grams = [g for refs in references for ref in refs for g in ngrams(ref)]
        row["reference_4grams_in_mixture"] = round(100.0 * sum(g in mixture["ngrams"] for g in grams)
                                                   / max(1, len(grams)), 1)
    return row


def mixture_dir_of(cfg) -> Path:
    """Where the mixture of the composed config's model is generated for the table (its version
    and settings in the folder's name)."""
    model = cfg.model
    pretrain = model.language_pretrain
    return Path(cfg.paths.cache_dir) / "mixture-overlap" / (
        f"v{synth.MIXTURE_VERSION}-n{pretrain.num_samples}-px{model.image_size}-s{model.seed}"
        f"-r{pretrain.get('repeat_share', 0.0)}")


def overlaps(cfg) -> dict:
    """The table for the composed config: the mixture its model is built from against its benchmark."""
    model = cfg.model
    pretrain = model.language_pretrain
    mixture_dir = mixture_dir_of(cfg)
    synth.generate_mixture(mixture_dir, num_samples=pretrain.num_samples, image_size=model.image_size,
                           seed=model.seed, progress=False, repeat_share=pretrain.get("repeat_share", 0.0))
    benchmark = instantiate(cfg.benchmark)
    mixture = mixture_index(mixture_dir)
    rows = [task_overlap(task, mixture) for task in benchmark.load()]
    return {"mixture": {"conversations": mixture["conversations"], "distinct_images": len(mixture["images"]),
                        "num_samples": pretrain.num_samples, "image_size": model.image_size, "seed": model.seed,
                        "repeat_share": pretrain.get("repeat_share", 0.0), "version": synth.MIXTURE_VERSION},
            "benchmark": {"data": Path(benchmark.data_dir).name}, "rows": rows}  # the folder its sizes name


def markdown(table: dict) -> str:
    m = table["mixture"]
    lines = [f"Mixture: {m['conversations']} conversations ({m['distinct_images']} distinct images, "
             f"{m['image_size']} px, seed {m['seed']}, mixture v{m['version']}).", "",
             "| task | test items | identical images | questions asked in the mixture | answers the mixture gives "
             "| distinct answers taught | items with a mixture answer of 4+ words inside a reference | reference 4-grams "
             "in mixture answers (%) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table["rows"]:
        lines.append(f"| {r['task']} | {r['test_items']} | {r['images']} | {r['questions']} | {r.get('answers', '-')} "
                     f"| {r.get('distinct_answers_taught', '-')} | {r.get('captions_verbatim', '-')} "
                     f"| {r.get('reference_4grams_in_mixture', '-')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    cfg = compose_config(overrides, tempfile.mkdtemp(prefix="hide-overlap-"))
    table = overlaps(cfg)
    out = Path(args.out)
    write_json_atomic(out / "mixture_overlap.json", table, indent=2)
    (out / "mixture_overlap.md").write_text(markdown(table))
    print(markdown(table))
    return table


if __name__ == "__main__":
    main()
