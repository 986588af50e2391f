"""Measure the regime of a benchmark configuration against LLaVA-1.5-7B on UCIT (R1-R5).

    python experiments/calibrate.py [HYDRA OVERRIDES ...] [--out DIR] [--quick] [--resume] [--r1-r3]

On one seed and the same test sets, through the same configs and task loop as train.py:
- `method=lora` (sequential LoRA): the zero-shot row (row 0), MFT and Last -> R1 (with
  multitask), R2, R3;
- `method=multitask` -> each task's upper bound for R1;
- HiDe trained once with every expert kept, evaluated with every layer expanded, every layer fused
  (`sum_ab`), and as the default (top layer routed, `sum_ab` / `sum_ba` below) -> R4, and the
  experts' update sizes per layer (Frobenius and functional, `hide.analysis.updates`);
- each task trained alone (experiments/single_task.py) against its chance level -> R5.

Writes DIR/calibration.json (every number used: the statistics, the bands, the 7B values, each
run's matrix, the HiDe variants, the single-task rows, the update sizes) and DIR/calibration.md,
and prints the table. `--quick` scores 60 test samples per task instead of the config's count.
`--resume` continues a killed calibration (each finished run only reloads its results).
`--r1-r3` measures R1, R2 and R3 alone (sequential LoRA and multitask; R4 and R5 left out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hide.config import compose_config
from hide.loop import run_continual
from hide.metrics.calibration import BANDS, SEVEN_B, TASK_RATIO_MAX, regime_settings, regime_statistics

sys.path.insert(0, str(Path(__file__).parent))
from hide_inference import run_variants  # noqa: E402
from single_task import train_alone  # noqa: E402

VARIANTS = ["all:sum_ab", "none:sum_ab", "top:sum_ab", "top:sum_ba"]
QUICK_TEST_PER_TASK = 60


def measure(overrides: list[str], out: Path, r1_to_r3: bool = False) -> dict:
    started = time.perf_counter()
    lora = compose_config(["method=lora", *overrides], out / "lora")
    settings = regime_settings(lora)
    runs = {"lora": run_continual(lora, out / "lora")}
    runs["multitask"] = run_continual(compose_config(["method=multitask", *overrides], out / "multitask"),
                                      out / "multitask")
    tasks = runs["lora"]["tasks"]
    if r1_to_r3:
        return measure_r1_to_r3(overrides, settings, runs, started)
    hide_started = time.perf_counter()
    hide_metrics, hide_rows = run_variants(overrides, out / "hide", VARIANTS)
    hide_minutes = (time.perf_counter() - hide_started) / 60  # training, and evaluation under 4 variants
    variants = {row["variant"]: row for row in hide_rows[1:]}
    single = [train_alone(name, overrides, out / "single_task") for name in tasks]
    stats = regime_statistics(
        zero_shot=runs["lora"]["matrix"][0], multitask=runs["multitask"]["matrix"][-1],
        lora_matrix=runs["lora"]["matrix"],
        fuse_all_last=variants["none:sum_ab"]["Last"], expand_all_last=variants["all:sum_ab"]["Last"],
        single_task=[r["single_task"] for r in single], chance=[r["chance"] for r in single])
    return {
        "overrides": overrides, "settings": settings, "tasks": tasks, "seed": runs["lora"]["seed"],
        "R1": stats["R1"], "R2": stats["R2"], "R3": stats["R3"], "R4": stats["R4"], "R5": stats["R5"],
        "statistics": stats, "bands": BANDS, "seven_b": SEVEN_B, "task_ratio_max": TASK_RATIO_MAX,
        "matrices": {"lora": runs["lora"]["matrix"], "multitask": runs["multitask"]["matrix"],
                     "hide_expand_all": hide_metrics["matrix"]},
        "lora_metrics": {k: runs["lora"][k] for k in ("Last", "Avg", "MFT", "BWT", "FWT", "Forgetting")},
        "hide_variants": {name: {"Last": row["Last"], "scores": row["scores"]} for name, row in variants.items()},
        "hide_default_Last": variants["top:sum_ab"]["Last"], "hide_sum_ba_Last": variants["top:sum_ba"]["Last"],
        "update_sizes": {"frobenius": hide_rows[0]["per_layer"], "functional": hide_rows[0]["functional_per_layer"]},
        "single_task": single,
        "hide_minutes": hide_minutes,
        "wall_minutes": (time.perf_counter() - started) / 60,
    }


def measure_r1_to_r3(overrides: list[str], settings: dict, runs: dict, started: float) -> dict:
    """R1, R2 and R3 alone: the zero-shot row, sequential LoRA and multitask (R4 and R5: None)."""
    stats = regime_statistics(zero_shot=runs["lora"]["matrix"][0], multitask=runs["multitask"]["matrix"][-1],
                              lora_matrix=runs["lora"]["matrix"])
    return {
        "overrides": overrides, "settings": settings, "tasks": runs["lora"]["tasks"], "seed": runs["lora"]["seed"],
        "R1": stats["R1"], "R2": stats["R2"], "R3": stats["R3"], "R4": None, "R5": None,
        "statistics": stats, "bands": BANDS, "seven_b": SEVEN_B, "task_ratio_max": TASK_RATIO_MAX,
        "matrices": {"lora": runs["lora"]["matrix"], "multitask": runs["multitask"]["matrix"]},
        "lora_metrics": {k: runs["lora"][k] for k in ("Last", "Avg", "MFT", "BWT", "FWT", "Forgetting")},
        "wall_minutes": (time.perf_counter() - started) / 60,
    }


def _band(name: str) -> str:
    low, high = BANDS[name]
    return f">= {low}" if high is None else f"{low} - {high}"


def table(result: dict) -> str:
    s = result["statistics"]
    fmt = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    yes = lambda ok: "-" if ok is None else ("yes" if ok else "**no**")  # noqa: E731
    rows = [
        ("R1 zero-shot / multitask", fmt(s["R1"]), SEVEN_B["R1"], _band("R1"), yes(s["in_band"]["R1"])),
        ("R1 per task (each < 0.8)", " ".join(fmt(r) for r in s["R1_per_task"]), "0.15-0.85", f"< {TASK_RATIO_MAX}",
         yes(s["R1_per_task_ok"])),
        ("R2 sequential LoRA MFT - Last", fmt(s["R2"], 1), SEVEN_B["R2"], _band("R2"), yes(s["in_band"]["R2"])),
        ("R3 (Last - ZS) / (MFT - ZS)", fmt(s["R3"]), "0.5-0.7", _band("R3"), yes(s["in_band"]["R3"])),
        ("R4 fuse-all / expand-all Last", fmt(s["R4"]), SEVEN_B["R4"], _band("R4"), yes(s["in_band"]["R4"])),
        ("R5 every task learnable alone", "yes" if s["R5"] else "no", "yes", ">= 50 and >= 2x chance", yes(s["R5"])),
    ]
    lines = ["| statistic | this config | LLaVA-1.5-7B | band | in band |", "|---|---:|---:|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    if "hide_variants" not in result:  # --r1-r3
        lines = lines[:5] + ["", f"zero-shot {s['zero_shot']:.1f}, multitask {s['multitask']:.1f}; sequential LoRA "
                                 f"MFT {s['lora_MFT']:.1f}, Last {s['lora_Last']:.1f}, BWT {fmt(s['lora_BWT'], 1)}"]
        return "\n".join(lines) + "\n"
    lines += ["", f"zero-shot {s['zero_shot']:.1f}, multitask {s['multitask']:.1f}; sequential LoRA MFT "
              f"{s['lora_MFT']:.1f}, Last {s['lora_Last']:.1f}, BWT {fmt(s['lora_BWT'], 1)}; HiDe default "
              f"{result['hide_default_Last']:.1f}, top : sum_ba {result['hide_sum_ba_Last']:.1f}, expand-all "
              f"{result['hide_variants']['all:sum_ab']['Last']:.1f}, fuse-all "
              f"{result['hide_variants']['none:sum_ab']['Last']:.1f}",
              "update size per decoder layer, functional ||s B A x|| / ||W x||: "
              + " ".join(f"{v:.3f}" for v in result["update_sizes"]["functional"])
              + "; Frobenius ||s B A|| / ||W||: " + " ".join(f"{v:.3f}" for v in result["update_sizes"]["frobenius"]),
              "", "| task | zero-shot | multitask | ratio | trained alone | chance | learnable |",
              "|---|---:|---:|---:|---:|---:|---|"]
    zero, multi = result["matrices"]["lora"][0], result["matrices"]["multitask"][-1]
    for name, z, m, r, single in zip(result["tasks"], zero, multi, s["R1_per_task"], result["single_task"]):
        lines.append(f"| {name} | {z:.1f} | {m:.1f} | {fmt(r)} | {single['single_task']:.1f} | "
                     f"{single['chance']:.1f} | {'yes' if single['learnable'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/calibration")
    parser.add_argument("--quick", action="store_true", help=f"score {QUICK_TEST_PER_TASK} test samples per task")
    parser.add_argument("--resume", action="store_true", help="continue a killed calibration in --out")
    parser.add_argument("--r1-r3", action="store_true",
                        help="R1, R2 and R3 only: sequential LoRA and multitask (no HiDe, no task alone)")
    args, overrides = parser.parse_known_args()
    if args.quick:
        overrides = [*overrides, f"benchmark.test_per_task={QUICK_TEST_PER_TASK}"]
    if args.resume:
        overrides = [*overrides, "resume=true"]
    out = Path(args.out)
    result = measure(overrides, out, r1_to_r3=args.r1_r3)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=2))
    (out / "calibration.md").write_text(table(result))
    print(table(result))
    print(f"written to {out / 'calibration.json'} ({result['wall_minutes']:.1f} min)")


if __name__ == "__main__":
    main()
