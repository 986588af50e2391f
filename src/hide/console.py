"""What a run's console shows: the run itself (stages, scores, tables, the project's warnings), not
the libraries' routine chatter. Each source is silenced where it starts, one by one, so that any
other warning, ours or a library's, still reaches the user."""

from __future__ import annotations

import logging
import warnings


def quiet_library_chatter() -> None:
    """Idempotent; called at the start of every run.

    - Lightning's rank-zero INFO lines ("GPU available", "TPU available", the LitLogger tip,
      "Loading `train_dataloader`...", "`Trainer.fit` stopped") come once per Trainer, and the task
      loop makes several Trainers per stage; its "Initializing distributed: GLOBAL_RANK ..." line
      comes once per process. Its warnings (level WARNING) still show.
    - torch 2.13 deprecates `LeafSpec`, which Lightning 2.6's CombinedLoader builds for every data
      loader: a FutureWarning about Lightning's internals that no user setting can act on.
    - Under DeepSpeed, Lightning warns that an overridden `configure_gradient_clipping` does not
      clip: ours clips only under FSDP, and DeepSpeed clips by `trainer.gradient_clip_val` itself.
    """
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "lightning_fabric.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"Since DeepSpeed handles gradient clipping internally")
