"""Composing conf/train.yaml outside `@hydra.main` (tests, experiment scripts), with the
`hydra:` interpolations (run dir, choices) resolvable as they are in `python train.py`."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


def compose_config(overrides: list[str], output_dir: str | Path) -> DictConfig:
    """The config `python train.py OVERRIDES hydra.run.dir=OUTPUT_DIR` would run with."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(ROOT)
    HydraConfig.instance().set_config(cfg)
    return cfg
