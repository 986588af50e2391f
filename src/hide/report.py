"""The results of a continual run: the (T+1) x T accuracy matrix with every continual-learning
metric, written as metrics.json (atomically, after every evaluation), matrix.csv, a heatmap PNG
and a rich table."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from hide.atomic import atomic_path, write_json_atomic
from hide.errors import ScoringError
from hide.metrics.continual import METRIC_NAMES, continual_metrics


class ContinualResults:
    """Accumulates a[t][i] (t = 0..T, row 0 = the untrained base model) and everything reported
    beside it. `extra` holds run facts (method, params, routing, ...) copied into metrics.json. Wall-clock
    time is not a result (a resumed run's differs): the loop writes it to timing.json."""

    def __init__(self, tasks: list[str], out_dir: str | os.PathLike):
        self.tasks = list(tasks)
        self.out_dir = Path(out_dir)
        self.matrix: list[list[float | None]] = [[None] * len(tasks) for _ in range(len(tasks) + 1)]
        self.details: dict[str, dict[str, dict]] = {}
        self.extra: dict = {}

    def record(self, stage: int, task: int, result: dict) -> None:
        """Store one task's score (result["score"], 0-100) and its breakdown after `stage`.
        A caption score must average the same metrics as every caption score before it."""
        self._check_caption_definition(stage, task, result)
        self.matrix[stage][task] = float(result["score"])
        self.details.setdefault(str(stage), {})[self.tasks[task]] = result

    def _check_caption_definition(self, stage: int, task: int, result: dict) -> None:
        """A caption score is the mean of seven metrics with METEOR and of six without it: one
        matrix (and BWT, which subtracts its entries) must not mix the two."""
        if "METEOR_available" not in result:
            return
        for earlier_stage, cells in self.details.items():
            for name, earlier in cells.items():
                if earlier.get("METEOR_available", result["METEOR_available"]) != result["METEOR_available"]:
                    had, now = ("with", "without") if earlier["METEOR_available"] else ("without", "with")
                    raise ScoringError(
                        f"{self.tasks[task]} after stage {stage} was scored {now} METEOR, but {name} after stage "
                        f"{earlier_stage} {had} it: one matrix would mix two definitions of the caption score (the "
                        f"mean of 7 metrics with METEOR, of 6 without). The run stops here with its checkpoints: "
                        f"continue it with resume=true where METEOR is {'available' if earlier['METEOR_available'] else 'off'} "
                        f"as before (it needs Java; see the log), or start it afresh to score every caption cell alike.")

    def copy_row(self, source: int, target: int) -> None:
        self.matrix[target] = list(self.matrix[source])
        if str(source) in self.details:
            self.details[str(target)] = dict(self.details[str(source)])

    def metrics(self) -> dict:
        return continual_metrics(self.matrix)

    def to_dict(self) -> dict:
        return {"tasks": self.tasks, "matrix": self.matrix, **self.metrics(), **self.extra,
                "details": self.details}

    def state(self) -> dict:
        """Everything `load_state` needs to continue a run's results exactly (hide.checkpoint)."""
        return {"tasks": self.tasks, "matrix": self.matrix, "details": self.details, "extra": self.extra}

    def load_state(self, state: dict) -> None:
        if state["tasks"] != self.tasks:
            raise ValueError(f"saved results are for tasks {state['tasks']}, this run has {self.tasks}")
        self.matrix, self.details, self.extra = state["matrix"], state["details"], state["extra"]

    def write(self) -> Path:
        """metrics.json and matrix.csv, each replaced atomically so a crash never leaves a torn file."""
        path = self.out_dir / "metrics.json"
        write_json_atomic(path, self.to_dict(), indent=2)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["after"] + self.tasks)
        for stage, row in enumerate(self.matrix):
            label = "base" if stage == 0 else self.tasks[stage - 1]
            writer.writerow([label] + ["" if v is None else f"{v:.2f}" for v in row])
        with atomic_path(self.out_dir / "matrix.csv") as tmp:
            tmp.write_text(buffer.getvalue())
        return path

    def heatmap(self, title: str = "") -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        values = np.array([[np.nan if v is None else v for v in row] for row in self.matrix], dtype=float)
        size = len(self.tasks)
        fig, ax = plt.subplots(figsize=(1.3 * size + 2.5, 0.9 * (size + 1) + 1.5))
        # caption scores (a mean that includes CIDEr) can pass 100
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=max(100.0, float(np.nanmax(values, initial=0.0))))
        ax.set_xticks(range(size), self.tasks, rotation=30, ha="right")
        ax.set_yticks(range(size + 1), ["base"] + [f"after {t}" for t in self.tasks])
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("model")
        for (r, c), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(c, r, f"{v:.1f}", ha="center", va="center", color="white" if v < 60 else "black",
                        fontsize=8)
        metrics = self.metrics()
        summary = "  ".join(f"{k} {metrics[k]:.1f}" for k in METRIC_NAMES if metrics[k] is not None)
        ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        path = self.out_dir / "accuracy_matrix.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")  # a few tasks: the metrics line is wider than the axes
        plt.close(fig)
        return path

    def table(self, title: str = ""):
        from rich.table import Table

        table = Table(title=title or "accuracy matrix (rows: after training on; columns: evaluated on)")
        table.add_column("after")
        for name in self.tasks:
            table.add_column(name, justify="right")
        for stage, row in enumerate(self.matrix):
            label = "base" if stage == 0 else self.tasks[stage - 1]
            table.add_row(label, *["-" if v is None else f"{v:.1f}" for v in row])
        return table

    def summary_table(self):
        from rich.table import Table

        metrics = self.metrics()
        table = Table(title="continual-learning metrics")
        for name in METRIC_NAMES:
            table.add_column(name, justify="right")
        for key in ("params_trainable", "params_stored"):
            if key in self.extra:
                table.add_column(key, justify="right")
        row = ["absent" if metrics[k] is None else f"{metrics[k]:.2f}" for k in METRIC_NAMES]
        for key in ("params_trainable", "params_stored"):
            if key in self.extra:
                row.append(f"{self.extra[key]:,}")
        # general-ability sets: base -> final model
        for name, entry in self.extra.get("retention", {}).items():
            for key in entry["headline"]:
                table.add_column(f"{name} {key}", justify="right")
                row.append(" -> ".join(f"{entry[m][key]:.1f}" for m in ("base", "final") if m in entry))
        table.add_row(*row)
        return table
