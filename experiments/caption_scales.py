"""What a score means on ObjectCaption under each kind of reference: scores of captions written
without a model against the test set's references.

    python experiments/caption_scales.py [HYDRA OVERRIDES ...] [--color-shares 0.5 0.7] [--out DIR]

For the fixed references (`benchmark.object_captions=fixed`) and for captioners' varied ones at
each colour share (`benchmark.object_captions=varied`), on the composed benchmark's ObjectCaption
test set (generated if missing), scores (the task's caption score, METEOR included):
- chance: every image captioned with another test image's first reference (as in
  experiments/single_task.py, R5's chance level);
- another captioner: a caption drawn for the same image the way its references are (under the
  fixed references, the first reference itself: what a model that learnt the task repeats);
- one form: every image captioned "a red cup on a table" / "a red cup and a blue book on a
  table", every colour named, in the order the scene lists its objects.
Writes DIR/caption_scales.json and .md (default DIR: docs/results).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from hydra.utils import instantiate

from hide.atomic import write_json_atomic
from hide.config import ROOT, compose_config
from hide.data import synth
from hide.metrics.captions import score_captions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from single_task import caption_chance  # noqa: E402

TASK = synth.object_caption.NAME


def one_form(objects: list[dict]) -> str:
    named = [f"a {o['color']} {o['kind']}" for o in objects]
    return f"{named[0]} on a table" if len(named) == 1 else f"{named[0]} and {named[1]} on a table"


def scales(overrides: list[str], setting: dict) -> dict:
    """The three scores on the ObjectCaption test set of the benchmark composed with `setting`."""
    options = [f"benchmark.{key}={value}" for key, value in setting.items()]
    cfg = compose_config([*overrides, *options, "benchmark.num_tasks=null", f"benchmark.select=[{TASK}]"],
                         ROOT / "outputs" / "caption_scales")
    benchmark = instantiate(cfg.benchmark)
    task = benchmark.load()[0]
    records = json.loads((benchmark.data_dir / "instructions" / TASK / "test.json").read_text())
    meta = {r["question_id"]: r["meta"] for r in records}
    refs = {r.question_id: task.references[r.question_id] for r in task.test}
    if setting["object_captions"] == "varied":
        rng = np.random.default_rng(0)
        share = float(setting["object_caption_color_share"])
        captioner = {q: synth.object_caption.varied_caption(meta[q]["objects"], rng, share) for q in refs}
    else:
        captioner = {q: r[0] for q, r in refs.items()}
    return {**setting, "test_images": len(refs), "seed": int(cfg.benchmark.seed),
            "chance": caption_chance(task.test, task.references),
            "another_captioner": score_captions(captioner, refs)["score"],
            "one_form": score_captions({q: one_form(meta[q]["objects"]) for q in refs}, refs)["score"]}


def markdown(rows: list[dict]) -> str:
    lines = ["| references | colour share | test images | chance | another captioner | one form, every colour |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        share = f"{r['object_caption_color_share']:g}" if r["object_captions"] == "varied" else "1"
        lines.append(f"| {r['object_captions']} | {share} | {r['test_images']} | {r['chance']:.1f} | "
                     f"{r['another_captioner']:.1f} | {r['one_form']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--color-shares", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args, overrides = parser.parse_known_args(argv)
    settings = [{"object_captions": "fixed"}] + [
        {"object_captions": "varied", "object_caption_color_share": share} for share in args.color_shares]
    rows = [scales(overrides, setting) for setting in settings]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "caption_scales.json", rows, indent=2)
    (out / "caption_scales.md").write_text(markdown(rows))
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
