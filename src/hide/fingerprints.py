"""What the cached artefacts are made of, pinned to the versions in their cache keys.

Generated data and built backbones are cached (and the default backbone is shipped) under keys
that hold a version number: `hide.data.synth.GENERATOR_VERSION` (the six tasks' data),
`MIXTURE_VERSION` (the pretraining mixture) and `hide.models.tiny.RECIPE_VERSION` (how the tiny
backbone is built). A change of content under an unchanged version would silently reuse a stale
cache, so each version is pinned to a fingerprint of what it produces, in fingerprints.json:

- benchmark: every task's first samples (instruction, answer, references, pixels) at a small size;
- mixture: the first mixture conversations (questions, answers, family, pixels);
- recipe: the code that builds the backbone (tokenizer, model, vision pretraining, pretraining
  training, the prompt and the collator), as syntax trees without docstrings, so that comments
  and wording do not count.

tests/test_cache_keys.py fails when a fingerprint no longer matches its version. After a real
change, bump the version and run `python -m hide.fingerprints --update`; after a change that
keeps the content (a refactor the fingerprint still sees), `--update` alone.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import textwrap
from pathlib import Path

import numpy as np

PINNED = Path(__file__).with_name("fingerprints.json")
SIZE = 32
SEED = 0


def _digest(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _pixels(image) -> bytes:
    return np.asarray(image.convert("RGB"), dtype=np.uint8).tobytes()


def benchmark_fingerprint(samples: int = 4) -> str:
    from hide.data import synth

    parts = []
    for task in synth.TASKS:
        for split in ("train", "test"):
            for i in range(samples):
                image, text, answer, references, _ = (
                    task.sample(synth.build.sample_rng(SEED, task.NAME, split, i), SIZE) if split == "train"
                    else synth.build.draw_test_sample(task, SEED, i, SIZE))
                parts += [[task.NAME, split, text, answer, references], _pixels(image)]
    return _digest(parts)


def mixture_fingerprint(samples: int = 60) -> str:
    from hide.data import synth

    parts = []
    for i in range(samples):
        image, qa, meta = synth.build.draw_mixture_sample(SEED, "train", i, SIZE)
        parts += [[meta["family"], qa, [synth.mixture.states_a_fact(q) for q, _ in qa]], _pixels(image)]
    return _digest(parts)


def code_fingerprint(objects) -> str:
    """A hash of the objects' source as syntax trees, docstrings and comments left out."""
    parts = []
    for obj in objects:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        parts.append(ast.dump(tree, annotate_fields=False, include_attributes=False))
    return _digest(parts)


def recipe_fingerprint() -> str:
    from hide.data import collate, prompt
    from hide.models import llava, tiny
    from hide.module import cosine_with_warmup

    return code_fingerprint([tiny.build_tokenizer, tiny.build_model, tiny.pretrain_vision, tiny._QuestionPooledHead,
                             tiny._patch_cells, tiny.pretrain_language, tiny._build_tiny, prompt, llava,
                             collate.Encoder, collate.TrainCollator, cosine_with_warmup])


def current() -> dict:
    """{kind: {"version": the version in the cache keys, "fingerprint": of today's code}}."""
    from hide.data import synth
    from hide.models import tiny

    return {"benchmark": {"version": synth.GENERATOR_VERSION, "fingerprint": benchmark_fingerprint()},
            "mixture": {"version": synth.MIXTURE_VERSION, "fingerprint": mixture_fingerprint()},
            "recipe": {"version": tiny.RECIPE_VERSION, "fingerprint": recipe_fingerprint()}}


def pinned() -> dict:
    return json.loads(PINNED.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help=f"pin today's fingerprints in {PINNED}")
    args = parser.parse_args()
    now = current()
    if args.update:
        PINNED.write_text(json.dumps(now, indent=2) + "\n")
    print(json.dumps(now, indent=2))


if __name__ == "__main__":
    main()
