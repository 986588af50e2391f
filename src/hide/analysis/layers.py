"""Per-decoder-layer features of a LLaVA model and the layer-wise CKA arrays built from them.

A sample's feature at layer l is that layer's output mean-pooled over the prompt's tokens (image
tokens included, padding excluded), as hide-method.md's CKA analysis prescribes. Probe sets are the
first N test records of each task, as prompts (no answer), so every model sees the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.utilities import move_data_to_device
from torch.utils.data import DataLoader

from hide.analysis.cka import CKA_KINDS
from hide.data.collate import EvalCollator
from hide.models.family import family_of
from hide.modes import model_mode


def probe_loader(datamodule, task_index: int, per_task: int, batch_size: int = 16) -> DataLoader:
    """The first `per_task` test records of a task, as left-padded prompts."""
    records = datamodule.tasks[task_index].test[:per_task]
    return DataLoader([(task_index, r) for r in records], batch_size=batch_size, shuffle=False,
                      collate_fn=EvalCollator(datamodule.encoder))


@torch.no_grad()
def decoder_layer_features(model, batches) -> torch.Tensor:
    """(num_layers, n, hidden) float32: every decoder layer's output, mean-pooled over the prompt."""
    per_batch = []
    with model_mode(model, training=False):
        for batch in batches:
            batch = move_data_to_device(batch, model.device)
            mask = batch["attention_mask"]
            family = family_of(model)
            out = model(**family.model_inputs(model, batch), position_ids=family.positions(model, batch),
                        output_hidden_states=True)
            weights = mask.unsqueeze(-1).to(torch.float32)
            # hidden_states[0] is the embedding output; [l + 1] is decoder layer l's output
            pooled = [(h.float() * weights).sum(1) / weights.sum(1) for h in out.hidden_states[1:]]
            per_batch.append(torch.stack(pooled).cpu())
    return torch.cat(per_batch, dim=1)


def layerwise_cka(A: torch.Tensor, B: torch.Tensor, kind: str = "kernel", debiased: bool = False) -> np.ndarray:
    """CKA per layer between two (num_layers, n, hidden) feature stacks of the same n samples."""
    cka = CKA_KINDS[kind]
    return np.array([cka(A[l], B[l], debiased=debiased) for l in range(A.shape[0])])


def cross_task_cka(features: list[torch.Tensor], kind: str = "kernel", debiased: bool = False) -> np.ndarray:
    """(T, T, num_layers): CKA between task i's model on task i's probes and task j's model on
    task j's probes (the paper's analysis; the probe sets must have the same size)."""
    sizes = {f.shape[1] for f in features}
    if len(sizes) != 1:
        raise ValueError(f"cross-task CKA needs probe sets of one size, got {sorted(sizes)} "
                         f"(some task has fewer test records than the probe size)")
    T, layers = len(features), features[0].shape[0]
    out = np.ones((T, T, layers))
    for i in range(T):
        for j in range(i + 1, T):
            out[i, j] = out[j, i] = layerwise_cka(features[i], features[j], kind, debiased)
    return out


def mean_off_diagonal(array: np.ndarray) -> np.ndarray:
    """(T, T, L) -> (L,): mean cross-task CKA per layer (the diagonal, always 1, left out)."""
    T = array.shape[0]
    mask = ~np.eye(T, dtype=bool)
    return np.array([array[:, :, l][mask].mean() for l in range(array.shape[2])])


def plot_cross_task(array: np.ndarray, tasks: list[str], out_dir: Path, title: str = "") -> list[Path]:
    """One heatmap per layer (cka_layer<l>.png) and the mean cross-task CKA per layer (cka_by_layer.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for layer in range(array.shape[2]):
        fig, ax = plt.subplots(figsize=(1.0 * len(tasks) + 2.5, 0.9 * len(tasks) + 1.5))
        image = ax.imshow(array[:, :, layer], vmin=0, vmax=1, cmap="magma")
        for (r, c), v in np.ndenumerate(array[:, :, layer]):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
        ax.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
        ax.set_title(f"{title} decoder layer {layer}".strip(), fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        paths.append(out_dir / f"cka_layer{layer}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    means = mean_off_diagonal(array)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.5 * len(means) + 2), 3.4))
    ax.plot(range(len(means)), means, marker="o")
    lowest = int(np.argmin(means))
    ax.scatter([lowest], [means[lowest]], color="C3", zorder=3, label=f"lowest: layer {lowest}")
    ax.set_xticks(range(len(means)))
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("mean cross-task CKA")
    ax.set_title(title or "cross-task similarity per layer", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "cka_by_layer.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
