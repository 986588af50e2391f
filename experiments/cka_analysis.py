"""The paper's CKA analysis: one independent LoRA model per task, then cross-task CKA per layer.

    python experiments/cka_analysis.py [HYDRA OVERRIDES ...] [--probe-per-task N] [--out DIR]

For each task of the benchmark (synthetic by default) a fresh sequential-LoRA model (`method=lora`
unless overridden) is trained on that task alone from the base model, through the same configs
and task loop as train.py (`benchmark.select=[TASK]`). Each model then encodes the first N test
prompts of its own task (`--inputs own`, the analysis as hide-method.md describes it), or the same
N prompts of every task (`--inputs shared`: the models compared on identical inputs, n = N x T);
per decoder layer, the output mean-pooled over the prompt (image tokens included) is the sample's
feature. CKA between task i's model and task j's model, per layer, gives a task x task matrix per
layer (hide-method.md, "CKA").

Writes to DIR (default outputs/cka_analysis):
- cka.npz: `kernel` and `linear` arrays (T x T x layers), `tasks`; features.npz: every model's features;
- cka.json: mean cross-task CKA per layer (both kinds) and the layers from least to most similar,
  which `method=hide method.task_specific_layers=auto method.cka_file=DIR/cka.json` reads;
- cka_layer<l>.png (one heatmap per layer) and cka_by_layer.png (kernel CKA; linear/ likewise).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hide.analysis.layers import cross_task_cka, decoder_layer_features, mean_off_diagonal, plot_cross_task, probe_loader
from torch.utils.data import DataLoader

from hide.config import compose_config
from hide.data.collate import EvalCollator
from hide.loop import run_sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/cka_analysis")
    parser.add_argument("--probe-per-task", type=int, default=64)
    parser.add_argument("--debiased", action="store_true", help="unbiased HSIC estimator")
    parser.add_argument("--inputs", choices=["own", "shared"], default="own",
                        help="own: each model encodes its own task's prompts (hide-method.md); shared: every "
                             "model encodes the same prompts, probe-per-task of every task")
    args, overrides = parser.parse_known_args()
    out = Path(args.out)
    probe_cfg = compose_config(["method=lora", *overrides], out / "runs")
    from hydra.utils import instantiate

    benchmark = instantiate(probe_cfg.benchmark)
    tasks = benchmark.task_names
    shared = None
    if args.inputs == "shared":  # the same prompts for every model: n = probe_per_task x T
        shared = [(t, r) for t, task in enumerate(benchmark.load()) for r in task.test[:args.probe_per_task]]
    features = []
    for name in tasks:
        cfg = compose_config(["method=lora", *overrides, f"benchmark.select=[{name}]", "benchmark.num_tasks=null",
                              "logger=none"], out / "runs" / name)

        run, metrics = run_sequence(cfg, out / "runs" / name)
        if shared is None:
            loader = probe_loader(run.datamodule, 0, args.probe_per_task)
        else:
            loader = DataLoader(shared, batch_size=16, shuffle=False, collate_fn=EvalCollator(run.datamodule.encoder))
        features.append(decoder_layer_features(run.module.model, loader))
        print(f"{name}: trained alone, score {metrics['matrix'][1][0]:.1f}; "
              f"{features[-1].shape[1]} probe prompts x {features[-1].shape[0]} layers", flush=True)

    arrays = {kind: cross_task_cka(features, kind, args.debiased) for kind in ("kernel", "linear")}
    np.savez(out / "cka.npz", tasks=np.array(tasks), **arrays)
    np.savez(out / "features.npz", tasks=np.array(tasks), **{name: f.numpy() for name, f in zip(tasks, features)})
    summary = {"tasks": tasks, "probe_per_task": args.probe_per_task, "debiased": args.debiased, "inputs": args.inputs,
               "overrides": overrides}
    for kind, array in arrays.items():
        means = mean_off_diagonal(array)
        summary[kind] = {"mean_cross_task_cka": [float(v) for v in means],
                         "layers_least_similar_first": [int(l) for l in np.argsort(means, kind="stable")]}
    (out / "cka.json").write_text(json.dumps(summary, indent=2))
    plot_cross_task(arrays["kernel"], tasks, out, title="kernel CKA")
    plot_cross_task(arrays["linear"], tasks, out / "linear", title="linear CKA")
    lines = ["| decoder layer | " + " | ".join(str(l) for l in range(len(summary["kernel"]["mean_cross_task_cka"]))) + " |",
             "|---|" + "---:|" * len(summary["kernel"]["mean_cross_task_cka"])]
    for kind in ("kernel", "linear"):
        lines.append(f"| mean cross-task {kind} CKA | "
                     + " | ".join(f"{v:.3f}" for v in summary[kind]["mean_cross_task_cka"]) + " |")
    (out / "cka.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {out / 'cka.json'}, {out / 'cka.npz'}, plots in {out}")


if __name__ == "__main__":
    main()
