"""The regime statistics of a continual benchmark: how much its base model already knows, how much
sequential LoRA forgets, and what merging experts costs (docs/calibration.md). The synthetic proxy
is meant to pose the problem LLaVA-1.5-7B meets on UCIT, so each statistic has the 7B value and a
band the proxy should sit in:

    R1  mean zero-shot score / mean multitask score                      (each task's ratio < 0.8 too)
    R2  sequential LoRA: MFT - Last                                       (points)
    R3  sequential LoRA: (Last - zero-shot) / (MFT - zero-shot)          (the share of the gain kept)
    R4  per-task experts fused in every layer, Last / routed in every layer, Last (one training)
    R5  every task trained alone reaches >= 50 and >= 2 x its chance level

Zero-shot is the mean of the base model's row (row 0 of any run's matrix), MFT and Last those of
the sequential-LoRA matrix (`hide.metrics.continual`).
"""

from __future__ import annotations

from collections.abc import Sequence

from hide.metrics.continual import continual_metrics

# LLaVA-1.5-7B on UCIT (the HiDe-LLaVA paper, MCITlib and an independent MCITlib LoRA-FT rerun): the value
# each statistic takes there, and the band a proxy should sit in (None: no bound on that side).
SEVEN_B = {"R1": 0.37, "R2": 13.9, "R3": 0.6, "R4": 0.91}
BANDS = {"R1": (0.25, 0.50), "R2": (6.0, 25.0), "R3": (0.35, 0.85), "R4": (0.80, None)}
TASK_RATIO_MAX = 0.8  # zero-shot / multitask of every task: each task has something left to learn
LEARNABLE_SCORE = 50.0
LEARNABLE_OVER_CHANCE = 2.0


def _mean(values: Sequence[float]) -> float:
    values = list(values)
    if not values or any(v is None for v in values):
        raise ValueError(f"need a score for every task, got {values}")
    return sum(values) / len(values)


def in_band(name: str, value: float | None) -> bool | None:
    """Whether a statistic lies in its band (None if it was not measured)."""
    if value is None:
        return None
    low, high = BANDS[name]
    return (low is None or value >= low) and (high is None or value <= high)


def learnable(single_task: float, chance: float) -> bool:
    """R5 for one task: trained alone it reaches LEARNABLE_SCORE and LEARNABLE_OVER_CHANCE x chance."""
    return single_task >= LEARNABLE_SCORE and single_task >= LEARNABLE_OVER_CHANCE * chance


def regime_statistics(zero_shot: Sequence[float], multitask: Sequence[float],
                      lora_matrix: Sequence[Sequence[float | None]],
                      fuse_all_last: float | None = None, expand_all_last: float | None = None,
                      single_task: Sequence[float] | None = None,
                      chance: Sequence[float] | None = None) -> dict:
    """R1-R5 from the runs' numbers (each list in task order). `lora_matrix` is sequential LoRA's
    (T+1) x T matrix; R4 and R5 are None when their runs are not given."""
    zs, mt = _mean(zero_shot), _mean(multitask)
    lora = continual_metrics(lora_matrix)
    mft, last = lora["MFT"], lora["Last"]
    if mft is None or last is None:
        raise ValueError("the sequential-LoRA matrix needs its diagonal and its last row")
    per_task = [z / m if m else None for z, m in zip(zero_shot, multitask)]
    stats = {
        "zero_shot": zs, "multitask": mt, "lora_MFT": mft, "lora_Last": last, "lora_BWT": lora["BWT"],
        "R1": zs / mt,
        "R1_per_task": per_task,
        "R1_per_task_ok": all(r is not None and r < TASK_RATIO_MAX for r in per_task),
        "R2": mft - last,
        "R3": (last - zs) / (mft - zs) if mft != zs else None,
        "R4": fuse_all_last / expand_all_last if fuse_all_last is not None and expand_all_last else None,
        "R5": None, "R5_per_task": None,
    }
    if single_task is not None:
        if chance is None or len(chance) != len(single_task):
            raise ValueError("R5 needs one chance level per task trained alone")
        stats["R5_per_task"] = [learnable(s, c) for s, c in zip(single_task, chance)]
        stats["R5"] = all(stats["R5_per_task"])
    stats["in_band"] = {name: in_band(name, stats[name]) for name in BANDS}
    return stats


def regime_settings(cfg) -> dict:
    """What of a composed config (`hide.config.compose_config`) every method shares and the regime
    statistics depend on: the optimiser, the training budget (epochs per task, batch size,
    accumulation, clipping), the benchmark's settings, the shared adapter settings and the
    backbone's recipe, and the versions of the synthetic data and of the pretraining mixture.
    calibrate.py records them so that a committed calibration can be checked against the config it
    claims to describe."""
    from omegaconf import Container, OmegaConf

    from hide.data import synth
    from hide.models.tiny import RECIPE_VERSION, backbone_settings

    def plain(node):
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, Container) else node

    benchmark = plain(cfg.benchmark)
    benchmark.pop("root", None)  # where the data are written, not what they are
    benchmark["train_scale"] = benchmark.get("train_scale") or {}  # absent: every scale 1
    if benchmark.get("object_captions", "fixed") == "fixed":  # absent: the fixed references
        benchmark.pop("object_captions", None)
        benchmark.pop("object_caption_color_share", None)
    return {
        "optim": plain(cfg.optim),
        "training": {"max_epochs": cfg.trainer.get("max_epochs"), "batch_size": cfg.data.batch_size,
                     "accumulate_grad_batches": cfg.trainer.get("accumulate_grad_batches"),
                     "gradient_clip_val": cfg.trainer.get("gradient_clip_val")},
        "benchmark": benchmark,
        "adapter": {key: plain(cfg.method.get(key)) for key in
                    ("rank", "alpha", "dropout", "targets", "train_projector", "published_fan_in")},
        "model": backbone_settings(cfg.model),
        "versions": {"benchmark": synth.GENERATOR_VERSION, "mixture": synth.MIXTURE_VERSION, "recipe": RECIPE_VERSION},
    }
