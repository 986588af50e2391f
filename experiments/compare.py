"""Turn runs (a Hydra multirun directory, or any folders holding metrics.json) into one comparison.

    python train.py --multirun method=lora,moelora,olora,ewc,lwf,replay,hide,multitask seed=0,1,2
    python experiments/compare.py multirun/<date>          [--out DIR] [more run folders ...]

Every metrics.json under the given folders is one run. Runs are grouped by method plus the
overrides (from the run's .hydra/overrides.yaml) that not every run shares, the seed aside, so a
sweep over a method's setting gives one row per value. Writes to DIR (default: the first folder):
- comparison.md / comparison.json: per group, mean +- std over seeds of Last, Avg, MFT, BWT, FWT,
  Forgetting, the parameters trained per task and stored after T tasks, and the wall time; and
  of the general-ability sets' scores (eval.retention) of the final model and their change from
  the base model's;
- comparison_last_avg.png: Last and Avg bars with the std over seeds as error bars;
- comparison_matrices.png: each group's mean accuracy matrix as a heatmap;
- comparison_per_task.png: each task's score after every stage, one line per group.
A run that stopped before its last evaluation is listed as incomplete and left out of the means.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from hide.atomic import write_json_atomic
from hide.metrics.continual import METRIC_NAMES

# the order rows and bars are shown in: bounds and baselines first, HiDe, then the upper bound
METHOD_ORDER = ["zeroshot", "lora", "moelora", "olora", "ewc", "lwf", "replay", "reglora", "keeplora", "disco", "hide", "multitask"]
IGNORED_OVERRIDES = ("seed=", "hydra.", "paths.", "logger", "trainer.enable_progress_bar", "num_threads", "resume=")


def run_overrides(run_dir: Path) -> list[str]:
    """The run's command-line overrides other than the method, the seed and bookkeeping ones."""
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.exists():
        return []
    import yaml

    return sorted(o for o in (yaml.safe_load(overrides_file.read_text()) or [])
                  if not o.startswith("method=") and not o.startswith(IGNORED_OVERRIDES))


def is_complete(metrics: dict) -> bool:
    """The final row (after the last task) is fully evaluated."""
    matrix = metrics.get("matrix") or []
    return bool(matrix) and all(v is not None for v in matrix[-1])


def collect(folders: list[Path]) -> tuple[dict[str, list[dict]], list[str], list[str]]:
    """Complete runs grouped by label (the method plus the overrides that not every run shares),
    the incomplete ones, and the overrides every run shares."""
    runs: list[tuple[dict, list[str]]] = []
    incomplete: list[str] = []
    for folder in folders:
        if not folder.exists():
            raise SystemExit(f"compare: {folder} does not exist")
        for path in sorted(folder.rglob("metrics.json")):
            try:
                metrics = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                incomplete.append(f"{path} (unreadable: {error})")
                continue
            if not is_complete(metrics):
                incomplete.append(f"{path} (stopped before its last evaluation)")
                continue
            metrics["_dir"] = str(path.parent)
            scored_after = path.parent / "retention.json"  # experiments/retention_of_runs.py
            if scored_after.exists():
                metrics["retention"] = {**json.loads(scored_after.read_text()), **metrics.get("retention", {})}
            timing = path.parent / "timing.json"  # wall time (older runs kept it in metrics.json)
            if timing.exists():
                metrics["wall_seconds"] = json.loads(timing.read_text()).get("wall_seconds")
            runs.append((metrics, run_overrides(path.parent)))
    shared = sorted(set.intersection(*(set(o) for _, o in runs))) if runs else []
    groups: dict[str, list[dict]] = {}
    for metrics, overrides in runs:
        label = " ".join([metrics.get("method", "?"), *(o for o in overrides if o not in shared)])
        groups.setdefault(label, []).append(metrics)
    return groups, incomplete, shared


def mean_std(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(groups: dict[str, list[dict]]) -> list[dict]:
    def order(label: str):
        method = label.split()[0]
        return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), label)

    rows = []
    for label in sorted(groups, key=order):
        runs = groups[label]
        row = {"label": label, "method": runs[0].get("method"), "seeds": sorted(r.get("seed") for r in runs),
               "tasks": runs[0]["tasks"], "runs": [r["_dir"] for r in runs]}
        for name in METRIC_NAMES:
            row[name] = mean_std([r.get(name) for r in runs])
        row["wall_seconds"] = mean_std([r.get("wall_seconds") for r in runs])
        row["params_trainable"] = runs[0].get("params_trainable")
        row["params_stored"] = runs[0].get("params_stored")
        stacked = np.array([[[np.nan if v is None else v for v in line] for line in r["matrix"]] for r in runs])
        with warnings.catch_warnings():  # an absent entry (NaN in every seed) stays absent, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_matrix = np.nanmean(stacked, axis=0)
        row["matrix"] = [[None if math.isnan(v) else float(v) for v in line] for line in mean_matrix]
        row["retention"] = retention_summary(runs)
        rows.append(row)
    return rows


def retention_summary(runs: list[dict]) -> dict[str, dict]:
    """Per general-ability set and headline metric ("General accuracy"): mean +- std over seeds of
    the base and the final model's score, and of their difference."""
    summary = {}
    sets = runs[0].get("retention", {})
    for name, entry in sets.items():
        for key in entry.get("headline", []):
            scored = [r["retention"][name] for r in runs if name in r.get("retention", {})]
            base = [s["base"][key] for s in scored if "base" in s]
            final = [s["final"][key] for s in scored if "final" in s]
            summary[f"{name} {key}"] = {"base": mean_std(base), "final": mean_std(final),
                                        "change": mean_std([f - b for b, f in zip(base, final)])}
    return summary


def _cell(pair, seeds: int) -> str:
    mean, std = pair
    if mean is None:
        return "absent"
    return f"{mean:.1f}" if seeds == 1 else f"{mean:.1f} ± {std:.1f}"


def markdown(rows: list[dict], incomplete: list[str], shared: list[str]) -> str:
    lines = ["| method | seeds | " + " | ".join(METRIC_NAMES) + " | params per task | params stored | wall (min) |",
             "|---|---|" + "---:|" * (len(METRIC_NAMES) + 3)]
    for row in rows:
        wall_mean, wall_std = row["wall_seconds"]
        wall = "-" if wall_mean is None else _cell((wall_mean / 60, wall_std / 60), len(row["seeds"]))
        params = [f"{row[k]:,}" if isinstance(row[k], int) else "-" for k in ("params_trainable", "params_stored")]
        lines.append(f"| {row['label']} | {len(row['seeds'])} | " + " | ".join(_cell(row[n], len(row["seeds"])) for n in METRIC_NAMES)
                     + f" | {params[0]} | {params[1]} | {wall} |")
    lines.append("")
    lines.append("Mean ± sample std over seeds (a single seed: its value); scores 0-100 (caption tasks can pass 100 through CIDEr); "
                 "'absent' where the method's schedule cannot give the metric.")
    keys = sorted({key for row in rows for key in row["retention"]})
    if keys:
        lines += ["", "General ability (eval.retention): the final model's score, and its change from the base model's",
                  "", "| method | " + " | ".join(f"{key} (final) | change" for key in keys) + " |",
                  "|---|" + "---:|---:|" * len(keys)]
        for row in rows:
            cells = []
            for key in keys:
                entry = row["retention"].get(key)
                cells += ["-", "-"] if entry is None else [_cell(entry["final"], len(row["seeds"])),
                                                           _cell(entry["change"], len(row["seeds"]))]
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    if shared:
        lines += ["", "Settings every run shares: " + " ".join(f"`{o}`" for o in shared)]
    if incomplete:
        lines += ["", "Left out (incomplete):", *[f"- {x}" for x in incomplete]]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    labels = [r["label"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.2))
    for k, (name, shift) in enumerate((("Last", -0.2), ("Avg", 0.2))):
        means = [np.nan if r[name][0] is None else r[name][0] for r in rows]
        stds = [0.0 if r[name][1] is None else r[name][1] for r in rows]
        bars = ax.bar(x + shift, means, 0.4, yerr=stds, capsize=3, label=name, color=f"C{k}")
        ax.bar_label(bars, labels=["" if np.isnan(m) else f"{m:.1f}" for m in means], fontsize=7, padding=2)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("score (mean over tasks)")
    ax.set_title("Last and Avg, mean ± std over seeds")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "comparison_last_avg.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    tasks = rows[0]["tasks"]
    cols = min(3, len(rows))
    grid_rows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(4.6 * cols, 3.9 * grid_rows), squeeze=False)
    vmax = max(100.0, max((v for r in rows for line in r["matrix"] for v in line if v is not None), default=100.0))
    for ax, row in zip(axes.flat, rows):
        values = np.array([[np.nan if v is None else v for v in line] for line in row["matrix"]])
        ax.imshow(values, cmap="viridis", vmin=0, vmax=vmax)
        for (r, c), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
        ax.set_xticks(range(len(tasks)), tasks, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(tasks) + 1), ["base"] + tasks, fontsize=7)
        ax.set_title(row["label"], fontsize=9)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.suptitle("accuracy matrices (rows: after training on; columns: evaluated on), mean over seeds")
    fig.tight_layout()
    paths.append(out / "comparison_matrices.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    cols = min(3, len(tasks))
    grid_rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(4.4 * cols, 3.2 * grid_rows), squeeze=False)
    stages = np.arange(len(tasks) + 1)
    for i, (ax, task) in enumerate(zip(axes.flat, tasks)):
        for k, row in enumerate(rows):
            series = [np.nan if line[i] is None else line[i] for line in row["matrix"]]
            ax.plot(stages, series, marker="o", markersize=3, label=row["label"], color=f"C{k % 10}")
        ax.axvline(i + 1, color="gray", linestyle=":", linewidth=1)  # where this task was trained
        ax.set_title(task, fontsize=9)
        ax.set_xticks(stages, ["base"] + [f"{t + 1}" for t in range(len(tasks))], fontsize=7)
        ax.set_xlabel("after task", fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(5, len(rows)), fontsize=8)
    fig.suptitle("each task's score over the sequence (dotted: when it is trained)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    paths.append(out / "comparison_per_task.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="multirun directories or run folders")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the first folder)")
    args = parser.parse_args(argv)
    groups, incomplete, shared = collect(args.folders)
    if not groups:
        raise SystemExit(f"compare: no complete run (metrics.json with a final row) under "
                         f"{', '.join(map(str, args.folders))}" + (f"; incomplete: {incomplete}" if incomplete else ""))
    tasks = {tuple(r["tasks"]) for runs in groups.values() for r in runs}
    if len(tasks) > 1:
        raise SystemExit(f"compare: the runs cover different task sequences {sorted(tasks)}; compare one benchmark at a time")
    rows = summarise(groups)
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, incomplete, shared)
    (out / "comparison.md").write_text(text)
    write_json_atomic(out / "comparison.json", {"rows": rows, "incomplete": incomplete, "shared_overrides": shared}, indent=2)
    paths = plot(rows, out)
    print(text)
    print("written: " + ", ".join(str(p) for p in [out / "comparison.md", out / "comparison.json", *paths]))
    if incomplete:
        print(f"{len(incomplete)} incomplete run(s) left out", file=sys.stderr)


if __name__ == "__main__":
    main()
