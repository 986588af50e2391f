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


def test_ucit_paper_experiment_is_the_papers_run(tmp_path):
    cfg = compose_config(["experiment=ucit_paper"], tmp_path)
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.precision == "bf16-true"
    assert cfg.trainer.strategy._target_.endswith("DDPStrategy")
    assert cfg.data.batch_size * 8 * cfg.trainer.accumulate_grad_batches == 96  # on 8 GPUs
    assert cfg.benchmark.tasks[0].name == "ImageNet-R" and len(cfg.benchmark.tasks) == 6
    assert cfg.method.anchor_encoder._target_.endswith("ClipAnchorEncoder")
    assert cfg.method._target_.endswith("HiDe") and cfg.method.rank == 8 and cfg.method.alpha / cfg.method.rank == 2
