"""Train HiDe once, then evaluate its final model under many inference configurations.

    python experiments/hide_inference.py [HYDRA OVERRIDES ...] [--out DIR] [--test-per-task N]
        [--variants LAYERS:RULE[:OPTION] ...]
    python experiments/hide_inference.py --summarize DIR [DIR ...] [--out DIR]

HiDe's training does not depend on which layers are task-specific, on the fusion rule or on how
the routed layers pick their experts (every layer trains expert t alone on task t), so one run
with every expert kept (`method.task_specific_layers=all`) gives the final model of every HiDe
variant. Each variant is LAYERS:RULE[:OPTION], LAYERS being `top` (the last layer), `all`, `none`
or comma-separated decoder layer indices that route, RULE the fusion of the other layers (sum_ab,
sum_ba, mean), OPTION `oracle` (the true task picks the expert) or `top_k=N` (the N most similar
tasks' experts only); without an OPTION the run's method.routing and method.top_k hold. Also
reported: how large each layer's experts are (`hide.analysis.updates`): ||s B_t A_t||_F / ||W||_F,
and ||s B_t A_t x|| / ||W x|| on task t's test prompts, averaged over its linears and tasks.
Writes DIR/hide_inference.json and DIR/hide_inference.md. A DIR that already holds
hide_inference.json with every requested variant is not run again.

`--summarize` reads the hide_inference.json of several runs (seeds) and writes, per variant, the
mean +- sample std of Last and of each task's score to DIR/hide_inference_summary.md and .json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hide.analysis.updates import frobenius_update_sizes, functional_update_sizes
from hide.config import compose_config
from hide.loop import run_sequence, score_task

from compare import mean_std  # experiments/compare.py (this script's folder is on sys.path)

DEFAULT_VARIANTS = ["top:sum_ab", "top:sum_ba", "top:mean", "all:sum_ab", "none:sum_ab"]


def parse_layers(text: str):
    """all | none | top (the last layer, HiDe's default) | comma-separated indices."""
    named = {"all": "all", "none": [], "top": [-1]}
    return named[text] if text in named else [int(i) for i in text.split(",")]


def parse_variant(variant: str, routing: str = "anchors", top_k: int | None = None) -> dict:
    """LAYERS:RULE[:OPTION] -> configure_inference's arguments (routing and top_k default to the
    given ones)."""
    layers, _, rest = variant.partition(":")
    rule, _, option = rest.partition(":")
    if option == "oracle" or option == "anchors":
        routing = option
    elif option.startswith("top_k="):
        top_k = int(option.removeprefix("top_k="))
    elif option:
        raise ValueError(f"variant {variant!r}: the option is `oracle`, `anchors` or `top_k=N`, got {option!r}")
    return {"task_specific_layers": parse_layers(layers), "fusion": rule or "sum_ab", "routing": routing,
            "top_k": top_k}


def run_variants(overrides: list[str], out: Path, variants: list[str], test_per_task: int | None = None,
                 update_samples: int = 32) -> tuple[dict, list[dict]]:
    """Train HiDe once with every expert kept and evaluate its final model as each variant.
    Returns the run's metrics and the rows: first the update sizes per decoder layer (Frobenius,
    and functional on `update_samples` test prompts per task), then one row per variant."""
    cfg = compose_config(["method=hide", *overrides, "method.task_specific_layers=all"], out / "run")
    run, metrics = run_sequence(cfg, out / "run")
    method, module, tasks = run.method, run.module, run.tasks
    if test_per_task:
        for task in tasks:
            task.test = task.test[:test_per_task]
    trained = list(range(len(tasks)))
    rows: list[dict] = [{"variant": "update sizes", "per_layer": frobenius_update_sizes(method.adapters),
                         "functional_per_layer": functional_update_sizes(module.model, method.adapters,
                                                                         run.datamodule.encoder, tasks,
                                                                         samples_per_task=update_samples)}]
    routing, top_k = method.routing, method.top_k
    for variant in variants:
        method.configure_inference(**parse_variant(variant, routing, top_k))
        method.on_eval_start(module, trained)
        predictions = run.predict(trained)
        scores = {tasks[t].name: score_task(tasks[t], predictions[t])["score"] for t in trained}
        facts = method.eval_facts(run.task_names)
        rows.append({"variant": variant, "scores": scores, "Last": sum(scores.values()) / len(scores),
                     "routing_accuracy": facts.get("routing_accuracy")})
        print(f"{variant}: Last {rows[-1]['Last']:.1f} {scores}", flush=True)
    return metrics, rows


def summarize(run_dirs: list[Path]) -> tuple[list[dict], str]:
    """Per variant over the runs (seeds): mean and sample std of Last and of each task's score."""
    runs = [json.loads((d / "hide_inference.json").read_text()) for d in run_dirs]
    names = list(runs[0][1]["scores"])
    by_variant: dict[str, list[dict]] = {}
    for run in runs:
        for row in run[1:]:
            by_variant.setdefault(row["variant"], []).append(row)
    summary = [{"variant": variant, "runs": len(rows), "Last": mean_std([r["Last"] for r in rows]),
                "scores": {n: mean_std([r["scores"][n] for r in rows]) for n in names}}
               for variant, rows in by_variant.items()]
    lines = [f"Mean ± sample std over {len(runs)} runs ({', '.join(str(d) for d in run_dirs)}).", "",
             "| routed layers : fusion [: routing] | runs | " + " | ".join(names) + " | Last |",
             "|---|---:|" + "---:|" * (len(names) + 1)]
    for row in summary:
        cells = [f"{row['scores'][n][0]:.1f} ± {row['scores'][n][1]:.1f}" for n in names]
        lines.append(f"| {row['variant']} | {row['runs']} | " + " | ".join(cells)
                     + f" | {row['Last'][0]:.1f} ± {row['Last'][1]:.1f} |")
    return summary, "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="default: outputs/hide_inference (with --summarize: the first DIR)")
    parser.add_argument("--test-per-task", type=int, default=None, help="score the first N test samples only")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--summarize", nargs="+", type=Path, default=None, metavar="DIR",
                        help="summarize these runs' hide_inference.json instead of running")
    args, overrides = parser.parse_known_args()
    if args.summarize:
        out = Path(args.out) if args.out else args.summarize[0]
        summary, text = summarize(args.summarize)
        out.mkdir(parents=True, exist_ok=True)
        (out / "hide_inference_summary.json").write_text(json.dumps(summary, indent=2))
        (out / "hide_inference_summary.md").write_text(text)
        print(text)
        return
    out = Path(args.out or "outputs/hide_inference")
    done = out / "hide_inference.json"
    if done.exists() and set(args.variants) <= {r["variant"] for r in json.loads(done.read_text())[1:]}:
        print(f"{done} holds every requested variant: not run again")
        return
    _, rows = run_variants(overrides, out, args.variants, args.test_per_task)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hide_inference.json").write_text(json.dumps(rows, indent=2))
    sizes = rows[0]
    names = list(rows[1]["scores"]) if len(rows) > 1 else []
    lines = ["update size per decoder layer, ||s B A||_F / ||W||_F: "
             + ", ".join(f"{i}: {v:.3f}" for i, v in enumerate(sizes["per_layer"])),
             "functional, ||s B A x|| / ||W x|| on test prompts: "
             + ", ".join(f"{i}: {v:.3f}" for i, v in enumerate(sizes["functional_per_layer"])),
             "", "| routed layers : fusion [: routing] | " + " | ".join(names) + " | Last |",
             "|---|" + "---:|" * (len(names) + 1)]
    for row in rows[1:]:
        lines.append(f"| {row['variant']} | " + " | ".join(f"{row['scores'][n]:.1f}" for n in names)
                     + f" | {row['Last']:.1f} |")
    (out / "hide_inference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
