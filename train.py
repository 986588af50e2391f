"""Run one method through a continual task sequence: `python train.py method=lora benchmark=synth`."""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hide.loop import run_continual


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_continual(cfg, out_dir=HydraConfig.get().runtime.output_dir)
    return metrics["Last"]  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
