"""The tables in docs/ that report measurements, regenerated from the result files they come from.

    python experiments/docs_tables.py            # rewrite every generated block in docs/
    python experiments/docs_tables.py --check    # exit 1, naming each block that differs

A generated block in a markdown file under docs/ reads

    <!-- table: NAME -->
    ...
    <!-- end table -->

and NAME is one of `TABLES`, each a function of files kept in docs/results/:
- `calibration`, `calibration-tasks`: the default config's calibrations, one file per seed
  (docs/results/calibration/seed<N>.json, written by experiments/calibrate.py; a seed measured with
  --r1-r3 has R1-R3 only);
- `levers`: every design in docs/results/levers/*.json (calibrate.py's files, one per design, the
  design's own name in the file name), R1-R5 with HiDe's variants, update sizes and times;
- `designs`: earlier designs of the proxy, docs/results/calibration_designs/*.json;
- `forgetting`: sequential LoRA's MFT - Last split by the task that loses and by the training that
  takes it, from the lora matrices of the calibration, lever and design files;
- `mixture-overlap`: docs/results/mixture_overlap.json (experiments/mixture_overlap.py);
- `caption-scales`: docs/results/caption_scales.json (experiments/caption_scales.py);
- `comparison`, `comparison-per-task`: every method's runs of the 3-seed comparison, kept in
  docs/results/runs/comparison/methods/ (experiments/run_comparison.sh), summarised by
  experiments/compare.py;
- `hide-ablations`: HiDe's inference variants on the same seeds, the hide_inference.json files kept
  in docs/results/runs/comparison/hide_ablations/s<N>/ (experiments/hide_inference.py);
- `param-budget`: parameters per method on the tiny model and the 7B shapes,
  docs/results/param_budget.json (experiments/param_budget.py);
- `family-runs`: the default `python train.py` on each other model family's tiny backbone, its
  matrix and metrics, one run kept per model in docs/results/runs/families/<model>/train/;
- `family-calibration`: R1-R5 of each other family's tiny backbone, measured once
  (docs/results/families/<model>.json, calibrate.py's file, its runs kept in
  docs/results/runs/families/<model>/), beside the default's seed 0.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _seed_files() -> list[dict]:
    files = sorted((RESULTS / "calibration").glob("seed*.json"), key=lambda p: int(p.stem[4:]))
    return [_load(p) for p in files]


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _yes(value) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def _stat(stats: dict, name: str, digits: int) -> str:
    """A statistic, in bold when it is outside its band."""
    text = _num(stats[name], digits)
    return f"**{text}**" if stats["in_band"].get(name) is False else text


def _band(name: str, bands: dict) -> str:
    low, high = bands[name]
    return f">= {low}" if high is None else f"{low} - {high}"


def calibration() -> str:
    """R1-R5 of the default on every seed measured, beside the 7B values and the bands."""
    runs = _seed_files()
    if not runs:
        return "No calibration file in docs/results/calibration/.\n"
    return _statistics_table([(f"seed {r['seed']}", r) for r in runs])


def _statistics_table(columns: list[tuple[str, dict]]) -> str:
    """One column per (label, calibration file): R1-R5 and what they come from, beside 7B and the bands."""
    first = columns[0][1]
    bands, seven_b = first["bands"], first["seven_b"]
    runs = [r for _, r in columns]
    head = "| statistic | " + " | ".join(label for label, _ in columns) + " | LLaVA-1.5-7B | band |"
    lines = [head, "|---|" + "---:|" * len(runs) + "---:|---|"]

    def row(label, cells, seven, band):
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {seven} | {band} |")

    stats = [r["statistics"] for r in runs]
    row("R1 zero-shot / multitask", [_stat(s, "R1", 3) for s in stats], seven_b["R1"], _band("R1", bands))
    row("R1 per task (each < 0.8)", [" ".join(_num(v) for v in s["R1_per_task"]) for s in stats], "0.15-0.85",
        f"< {first['task_ratio_max']}")
    row("R2 sequential LoRA MFT - Last", [_stat(s, "R2", 1) for s in stats], seven_b["R2"], _band("R2", bands))
    row("R3 (Last - ZS) / (MFT - ZS)", [_stat(s, "R3", 3) for s in stats], "0.5-0.7", _band("R3", bands))
    row("R4 fuse-all / expand-all Last", [_stat(s, "R4", 2) for s in stats], seven_b["R4"], _band("R4", bands))
    row("R5 every task learnable alone", [_yes(s["R5"]) for s in stats], "yes", ">= 50 and >= 2x chance")
    row("zero-shot / multitask", [f"{s['zero_shot']:.1f} / {s['multitask']:.1f}" for s in stats], "26 / 69", "")
    row("sequential LoRA MFT / Last / BWT", [f"{s['lora_MFT']:.1f} / {s['lora_Last']:.1f} / {_num(s['lora_BWT'], 1)}"
                                             for s in stats], "70.6 / 56.7 / -16.7", "")
    row("HiDe as published / top : sum_ba", [f"{r['hide_default_Last']:.1f} / {r['hide_sum_ba_Last']:.1f}"
                                             if "hide_default_Last" in r else "-" for r in runs], "64.2 / -", "")
    row("HiDe expand-all / fuse-all", [_hide_pair(r) for r in runs], "67.6 / 61.3", "")
    row("functional update size per layer", [" ".join(f"{v:.3f}" for v in r["update_sizes"]["functional"])
                                             if "update_sizes" in r else "-" for r in runs], "-", "")
    row("minutes (all runs)", [f"{r['wall_minutes']:.1f}" for r in runs], "-", "")
    return "\n".join(lines) + "\n"


def _hide_pair(result: dict) -> str:
    variants = result.get("hide_variants")
    if not variants:
        return "-"
    return f"{variants['all:sum_ab']['Last']:.1f} / {variants['none:sum_ab']['Last']:.1f}"


def calibration_tasks() -> str:
    """Per task: zero-shot, multitask and trained alone on every seed, and chance."""
    runs = _seed_files()
    if not runs:
        return "No calibration file in docs/results/calibration/.\n"
    full = [r for r in runs if "single_task" in r]
    lines = ["| task | zero-shot | multitask, seed " + " / ".join(str(r["seed"]) for r in runs)
             + " | trained alone, seed " + " / ".join(str(r["seed"]) for r in full) + " | chance |",
             "|---|---:|---:|---:|---:|"]
    for i, task in enumerate(runs[0]["tasks"]):
        zero = runs[0]["matrices"]["lora"][0][i]
        multi = " / ".join(f"{r['matrices']['multitask'][-1][i]:.1f}" for r in runs)
        alone = " / ".join(f"{r['single_task'][i]['single_task']:.1f}" for r in full)
        chance = full[0]["single_task"][i]["chance"] if full else None
        lines.append(f"| {task} | {zero:.1f} | {multi} | {alone or '-'} | {_num(chance, 1)} |")
    return "\n".join(lines) + "\n"


def levers() -> str:
    """Every design measured against R4: one row per file in docs/results/levers/, with the versions
    of the benchmark's data and of the pretraining mixture its backbone was built on."""
    lines = ["| design | data / mixture | overrides | seed | R1 | R2 | R3 | R4 | R5 | HiDe expand-all / fuse-all | HiDe as published "
             "| LoRA MFT / Last | update size per layer | HiDe run (min) | all runs (min) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|---|---:|---|---|---:|---:|"]
    for path in sorted((RESULTS / "levers").glob("*.json")):
        r = _load(path)
        s = r["statistics"]
        overrides = " ".join(o for o in r["overrides"] if not o.startswith(("logger=", "seed=", "resume=")))
        hide_minutes = r.get("hide_minutes")
        lines.append(
            f"| {path.stem} | v{r['settings']['versions']['benchmark']} / v{r['settings']['versions']['mixture']} | `{overrides or '(default)'}` | {r['seed']} | {_stat(s, 'R1', 3)} | {_stat(s, 'R2', 1)} | "
            f"{_stat(s, 'R3', 3)} | {_stat(s, 'R4', 2)} | {_yes(s['R5'])} | {_hide_pair(r)} | "
            f"{_num(r.get('hide_default_Last'), 1)} | {s['lora_MFT']:.1f} / {s['lora_Last']:.1f} | "
            + (" ".join(f"{v:.3f}" for v in r["update_sizes"]["functional"]) if "update_sizes" in r else "-")
            + f" | {_num(hide_minutes, 1)} | {r['wall_minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def designs() -> str:
    """Earlier designs of the proxy, one row per file in docs/results/calibration_designs/."""
    lines = ["| design (file) | seed | R1 | R2 | R3 | R4 | R5 | zero-shot / multitask | LoRA MFT / Last "
             "| HiDe expand-all / fuse-all |", "|---|---:|---:|---:|---:|---:|---|---|---|---|"]
    for path in sorted((RESULTS / "calibration_designs").glob("*.json")):
        r = _load(path)
        s = r["statistics"]
        lines.append(f"| {path.stem} | {r['seed']} | {_stat(s, 'R1', 3)} | {_stat(s, 'R2', 1)} | {_stat(s, 'R3', 3)} | "
                     f"{_stat(s, 'R4', 2)} | {_yes(s['R5'])} | {s['zero_shot']:.1f} / {s['multitask']:.1f} | "
                     f"{s['lora_MFT']:.1f} / {s['lora_Last']:.1f} | {_hide_pair(r)} |")
    return "\n".join(lines) + "\n"


def _forgetting_files() -> list[tuple[str, dict]]:
    """The default's seeds, then the levers and earlier designs with sequential LoRA's matrix."""
    named = [(f"default, seed {r['seed']}", r) for r in _seed_files()]
    for folder in ("levers", "calibration_designs"):
        for path in sorted((RESULTS / folder).glob("*.json")):
            r = _load(path)
            # a file that repeats another's runs (a-default is the default's seed 0) is left out
            if "lora" in r.get("matrices", {}) and all(r["matrices"]["lora"] != o["matrices"]["lora"] for _, o in named):
                named.append((path.stem, r))
    return named


def forgetting() -> str:
    """Sequential LoRA's MFT - Last split two ways, in points of R2: by the task that loses
    ((score right after its training - Last) / T) and by the task whose training takes it
    (the earlier tasks' summed drop over that stage / T). Each split sums to R2."""
    named = _forgetting_files()
    if not named:
        return "No calibration file in docs/results/.\n"
    tasks = named[0][1]["tasks"]
    T = len(tasks)
    lines = ["| file | R2 | " + " | ".join(f"{t} loses" for t in tasks[:-1]) + " | "
             + " | ".join(f"{t}'s training takes" for t in tasks[1:]) + " |",
             "|---|---:|" + "---:|" * (2 * (T - 1))]
    for label, r in named:
        m = r["matrices"]["lora"]
        lost = [(m[j + 1][j] - m[T][j]) / T for j in range(T - 1)]
        taken = [sum(m[t - 1][j] - m[t][j] for j in range(t - 1)) / T for t in range(2, T + 1)]
        lines.append(f"| {label} | {r['statistics']['R2']:.1f} | " + " | ".join(f"{v:.1f}" for v in lost)
                     + " | " + " | ".join(f"{v:.1f}" for v in taken) + " |")
    return "\n".join(lines) + "\n"


def mixture_overlap() -> str:
    return _experiment("mixture_overlap").markdown(_load(RESULTS / "mixture_overlap.json"))


def caption_scales() -> str:
    return _experiment("caption_scales").markdown(_load(RESULTS / "caption_scales.json"))


def _experiment(name: str):
    """A module of experiments/ (compare, hide_inference, mixture_overlap), imported by name."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


COMPARISON = RESULTS / "runs" / "comparison"
NO_COMPARISON = "No comparison runs are kept in docs/results/runs/comparison/.\n"


def _comparison_rows() -> list[dict] | None:
    folder = COMPARISON / "methods"
    if not any(folder.rglob("metrics.json")):
        return None
    compare = _experiment("compare")
    groups, incomplete, shared = compare.collect([folder])
    return compare.summarise(groups), incomplete, shared


def comparison() -> str:
    """Every method over the seeds kept: compare.py's table of the kept runs."""
    found = _comparison_rows()
    return NO_COMPARISON if found is None else _experiment("compare").markdown(*found)


def comparison_per_task() -> str:
    """Each task's score after the last task, mean over the seeds, per method."""
    found = _comparison_rows()
    if found is None:
        return NO_COMPARISON
    rows = found[0]
    tasks = rows[0]["tasks"]
    lines = ["| method | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for row in rows:
        lines.append(f"| {row['label']} | " + " | ".join(_num(v, 1) for v in row["matrix"][-1]) + " |")
    return "\n".join(lines) + "\n"


def hide_ablations() -> str:
    """HiDe's inference variants, mean and std over the seeds whose hide_inference.json is kept."""
    runs = sorted((COMPARISON / "hide_ablations").glob("s*/hide_inference.json"), key=lambda p: int(p.parent.name[1:]))
    if not runs:
        return "No HiDe inference files are kept in docs/results/runs/comparison/hide_ablations/.\n"
    text = _experiment("hide_inference").summarize([p.parent for p in runs])[1]
    return text.replace(str(ROOT) + "/", "")


def param_budget() -> str:
    return _experiment("param_budget").markdown(_load(RESULTS / "param_budget.json"))


FAMILY_RUNS = RESULTS / "runs" / "families"


def family_runs() -> str:
    """Each kept run of `python train.py model=<model>`: its matrix, after each stage, and metrics."""
    runs = sorted(FAMILY_RUNS.glob("*/train/metrics.json"))
    if not runs:
        return "No family runs are kept in docs/results/runs/families/.\n"
    blocks = []
    for path in runs:
        m = _load(path)
        tasks = m["tasks"]
        lines = [f"`model={path.parent.parent.name}`, method {m['method']}, seed {m['seed']}: Last {m['Last']:.1f}, "
                 f"MFT {m['MFT']:.1f}, BWT {m['BWT']:.1f}.", "",
                 "| after | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for label, row in zip(["base", *tasks], m["matrix"]):
            lines.append(f"| {label} | " + " | ".join(_num(v, 1) for v in row) + " |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def family_calibration() -> str:
    """R1-R5 of each other family's tiny backbone beside the default's seed 0."""
    files = sorted((RESULTS / "families").glob("*.json"))
    if not files:
        return "No family calibration files in docs/results/families/.\n"
    columns = [(f"`model={p.stem}`, seed {r['seed']}", r) for p, r in ((p, _load(p)) for p in files)]
    default = [r for r in _seed_files() if r["seed"] == 0]
    if default:
        columns.insert(0, ("default (tiny LLaVA), seed 0", default[0]))
    return _statistics_table(columns)


TABLES = {"calibration": calibration, "calibration-tasks": calibration_tasks, "levers": levers,
          "designs": designs, "forgetting": forgetting, "mixture-overlap": mixture_overlap, "caption-scales": caption_scales,
          "comparison": comparison,
          "comparison-per-task": comparison_per_task, "hide-ablations": hide_ablations, "param-budget": param_budget,
          "family-runs": family_runs, "family-calibration": family_calibration}


def regenerate(text: str, source: str) -> tuple[str, list[str]]:
    """`text` with every generated block rewritten; and the names of the blocks that changed."""
    changed: list[str] = []

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise SystemExit(f"{source}: unknown generated table {name!r}; the tables are {sorted(TABLES)}")
        body = TABLES[name]()
        if body != match["body"]:
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs")
    args = parser.parse_args(argv)
    stale = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        new, changed = regenerate(text, str(path))
        stale += [f"{path.relative_to(ROOT)}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(new)
    for line in stale:
        print(("differs from its files: " if args.check else "rewritten: ") + line)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
