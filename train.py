"""Run one method through a continual task sequence: `python train.py method=lora benchmark=synth`."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hide.errors import HideError
from hide.loop import run_continual


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = run_continual(cfg, out_dir=HydraConfig.get().runtime.output_dir)
    except HideError as err:
        # the project's own errors name the file, record or setting and the fix: no traceback
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    return metrics["Last"]  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
