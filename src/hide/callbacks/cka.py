"""A Lightning callback: how much each task's training changes every decoder layer, by CKA.

At the start of each task's fit it collects per-layer features of the model on a fixed probe set
(the first `probe_per_task` test prompts of every task); at the end, the same again; then per task
and layer CKA(before, after): 1 = the layer's representation of that task's inputs is unchanged
(up to rotation and scale), lower = changed. Writes `<out_dir>/stage<t>.npz` (array `cka`, tasks x
layers, plus `tasks`), a heatmap `stage<t>.png`, and logs both to wandb when that logger is on.
The cross-task analysis of single-task models (the paper's) is experiments/cka_analysis.py.

Args:
    out_dir: where to write (Hydra: the run directory's cka/).
    probe_per_task: prompts per task in the probe set.
    kind: "kernel" (RBF, median heuristic) or "linear".
    debiased: the unbiased HSIC estimator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from hide.analysis.cka import CKA_KINDS
from hide.analysis.layers import decoder_layer_features, layerwise_cka, probe_loader
from hide.errors import ConfigError


class LayerwiseCKA(pl.Callback):
    def __init__(self, out_dir: str, probe_per_task: int = 32, kind: str = "kernel", debiased: bool = False):
        if kind not in CKA_KINDS:
            raise ConfigError(f"callbacks.cka.kind={kind!r}; choose one of {sorted(CKA_KINDS)}")
        self.out_dir = Path(out_dir)
        self.probe_per_task = probe_per_task
        self.kind = kind
        self.debiased = debiased
        self.before = None

    def features(self, pl_module, datamodule) -> list:
        return [decoder_layer_features(pl_module.model, probe_loader(datamodule, t, self.probe_per_task))
                for t in range(len(datamodule.tasks))]

    def on_train_start(self, trainer, pl_module) -> None:
        self.before = self.features(pl_module, trainer.datamodule)

    def on_train_end(self, trainer, pl_module) -> None:
        datamodule = trainer.datamodule
        after = self.features(pl_module, datamodule)
        array = np.stack([layerwise_cka(b, a, self.kind, self.debiased) for b, a in zip(self.before, after)])
        self.before = None
        names = [t.name for t in datamodule.tasks]
        stage = datamodule.stage
        self.out_dir.mkdir(parents=True, exist_ok=True)
        np.savez(self.out_dir / f"stage{stage}.npz", cka=array, tasks=np.array(names), kind=self.kind)
        image = self.plot(array, names, stage, [names[t] for t in datamodule.stage_tasks])
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image(key="cka_before_after", images=[str(image)], step=trainer.global_step)
                logger.log_metrics({f"cka/{n}/layer{l}": float(v) for n, row in zip(names, array)
                                    for l, v in enumerate(row)})

    def plot(self, array: np.ndarray, names: list[str], stage: int, trained: list[str]) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(0.7 * array.shape[1] + 3.5, 0.5 * len(names) + 1.8))
        image = ax.imshow(array, vmin=0, vmax=1, cmap="magma", aspect="auto")
        for (r, c), v in np.ndenumerate(array):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
        ax.set_xticks(range(array.shape[1]), [str(l) for l in range(array.shape[1])])
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("decoder layer")
        ax.set_title(f"stage {stage} ({', '.join(trained)}): {self.kind} CKA before vs after, on each task's probes",
                     fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        path = self.out_dir / f"stage{stage}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
