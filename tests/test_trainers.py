"""Every trainer= config composes with the 7B model and UCIT and builds its Lightning strategy."""

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose_config

TRAINERS = ["cpu", "gpu", "ddp", "ddp_cpu", "fsdp", "deepspeed_zero2"]


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


def test_image_features_survive_a_strategy_that_clears_module_hooks(tiny_backbone):
    """Lightning's DeepSpeed strategy removes every module hook before each `deepspeed.initialize`,
    transformers' hidden-state capture among them: LLaVA's image features then fail from the second
    fit or predict on, unless the capture is marked for reinstalling."""
    import copy

    import torch
    from pytorch_lightning.strategies.deepspeed import remove_module_hooks

    from hide.distributed import reinstall_output_capturing

    model = copy.deepcopy(tiny_backbone.model).eval()
    size = model.config.vision_config.image_size
    pixels = torch.randn(2, 3, size, size)

    def features():
        with torch.no_grad():
            out = model.model.get_image_features(pixel_values=pixels)
        out = out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5: one per image
        return torch.cat([f.flatten() for f in out]) if isinstance(out, (list, tuple)) else out

    before = features()  # installs the capture hooks
    assert reinstall_output_capturing(model) == 0  # hooks in place: nothing to reinstall
    assert torch.equal(features(), before)
    remove_module_hooks(model)
    with pytest.raises((IndexError, TypeError)):  # no hidden states captured, or the last one missing
        features()
    assert reinstall_output_capturing(model) >= 1
    assert torch.equal(features(), before)
    assert reinstall_output_capturing(model) == 0 and torch.equal(features(), before)  # no duplicate hooks


def test_fsdp_clips_the_gradient_norm_through_its_own_module():
    """Lightning's FSDP precision plugin refuses clipping by norm; under FSDP the root module's
    `clip_grad_norm_` clips (the norm over every rank's shards), elsewhere Lightning's own does."""
    from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy

    from hide.distributed import clip_grad_norm_sharded

    class Sharded:
        clipped_to = None

        def clip_grad_norm_(self, max_norm):
            self.clipped_to = max_norm

    fsdp = object.__new__(FSDPStrategy)
    fsdp._model = Sharded()
    assert clip_grad_norm_sharded(fsdp, 1.0) and fsdp._model.clipped_to == 1.0
    assert not clip_grad_norm_sharded(object.__new__(DDPStrategy), 1.0)


def test_strategies_that_keep_parameters_sharded_between_fits_are_refused(fast_cfg, tmp_path):
    """The task loop works on whole parameters between fits: FSDP across processes and ZeRO-3 are
    refused with the reason and what to use, ZeRO-3 before any model is built."""
    from lightning_fabric.plugins.environments import LightningEnvironment
    from torch import nn

    from hide.distributed import fsdp_strategy
    from hide.errors import ConfigError
    from hide.run import build_run

    with pytest.raises(ConfigError, match="deepspeed_zero2"):
        build_run(fast_cfg("+trainer.strategy=deepspeed_stage_3"))
    strategy = fsdp_strategy()
    strategy.cluster_environment = LightningEnvironment()
    strategy.cluster_environment.set_world_size(2)
    with pytest.raises(ConfigError, match="across 2 processes"):
        strategy._setup_model(nn.Linear(2, 2))
