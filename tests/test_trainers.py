"""Every trainer= config composes with the 7B model and UCIT and builds its Lightning strategy."""

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose_config

TRAINERS = ["cpu", "gpu", "ddp", "ddp_cpu", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_configs_compose_with_the_7b_setup(trainer, tmp_path):
    cfg = compose_config([f"trainer={trainer}", "experiment=ucit_paper", "paths.data_dir=/data/ucit"], tmp_path)
    for key in cfg:  # every interpolation resolves (raises otherwise)
        if key != "hydra" and OmegaConf.is_config(cfg[key]):
            OmegaConf.to_container(cfg[key], resolve=True)
    assert cfg.model.path == "llava-hf/llava-1.5-7b-hf" and cfg.model.dtype == "bfloat16"
    assert cfg.optim.lr == 2e-4 and cfg.optim.projector_lr == 2e-5 and cfg.optim.warmup_ratio == 0.03
    if trainer != "cpu":
        assert cfg.trainer.precision.startswith("bf16") or trainer == "ddp_cpu"


def test_strategies_are_the_lightning_ones(tmp_path):
    from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    from hide.distributed import transformer_layer_class

    fsdp = instantiate(compose_config(["trainer=fsdp"], tmp_path).trainer.strategy)
    assert isinstance(fsdp, FSDPStrategy)
    assert transformer_layer_class("LlamaDecoderLayer") is LlamaDecoderLayer
    ddp = instantiate(compose_config(["trainer=ddp_cpu"], tmp_path).trainer.strategy)
    assert isinstance(ddp, DDPStrategy) and ddp._process_group_backend == "gloo"
    with pytest.raises(ValueError, match="unknown layer class"):
        from hide.distributed import fsdp_strategy
        fsdp_strategy(layer_classes=["NoSuchLayer"])
