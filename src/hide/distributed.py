"""Multi-process helpers: strategies a YAML file cannot express directly (classes by name), and
the rank facts and gathering that the task loop and methods use (a single process is world 1)."""

from __future__ import annotations

import importlib

from hide.errors import ConfigError


def transformer_layer_class(name: str) -> type:
    """A transformers module class by name (LlamaDecoderLayer, CLIPEncoderLayer, ...)."""
    modules = {"LlamaDecoderLayer": "transformers.models.llama.modeling_llama",
               "CLIPEncoderLayer": "transformers.models.clip.modeling_clip"}
    if name not in modules:
        raise ConfigError(f"unknown layer class {name!r} for FSDP wrapping (trainer.strategy.layer_classes); "
                          f"known: {sorted(modules)}")
    return getattr(importlib.import_module(modules[name]), name)


def sharded_parameters_error(strategy: str, where: str) -> str:
    return (f"{strategy} shards the model's parameters {where}, and the task loop works on whole "
            "parameters between fits (HiDe fuses its experts, methods pass over a task's data, "
            "checkpoints keep the adapters), which a sharding strategy leaves as shards outside its "
            "forward. On several GPUs use trainer=ddp or trainer=deepspeed_zero2 (LLaVA-1.5-7B with "
            "LoRA fits one GPU: 15.1 GiB at batch 4 on an H200); trainer=fsdp runs on one GPU.")


def check_strategy(trainer_cfg) -> None:
    """Refuse, before any model is built, a strategy whose parameters stay sharded between fits."""
    if str(trainer_cfg.get("strategy", "")) == "deepspeed_stage_3":
        raise ConfigError(sharded_parameters_error("trainer=deepspeed_zero3", "across the processes (ZeRO stage 3)"))


def fsdp_strategy(layer_classes=("LlamaDecoderLayer", "CLIPEncoderLayer"), sharding_strategy: str = "FULL_SHARD",
                  activation_checkpointing: bool = True, **kwargs):
    """Lightning's FSDPStrategy wrapping each decoder / vision layer as one shard unit (and
    checkpointing its activations), for a module that is fitted and evaluated many times."""
    from pytorch_lightning.strategies import FSDPStrategy

    class ContinualFSDPStrategy(FSDPStrategy):
        """Lightning wraps the module's layers in FSDP units in place, and they stay wrapped after
        the fit or predict; at the next one Lightning sees FSDP inside and leaves the root
        unwrapped, so the parameters outside the layers (the projector, which trains) would be
        in no FSDP unit and the root's `clip_grad_norm_` would be missing. Here the root is
        wrapped again around the layers' units every time. One process only: across several,
        FSDP leaves the root's parameters as shards once a fit ends, and the loop needs them whole."""

        def _setup_model(self, model):
            from torch.distributed.fsdp import FullyShardedDataParallel

            if self.world_size > 1:
                raise ConfigError(sharded_parameters_error("trainer=fsdp", f"across {self.world_size} processes"))
            if isinstance(model, FullyShardedDataParallel) or not any(
                    isinstance(m, FullyShardedDataParallel) for m in model.modules()):
                return super()._setup_model(model)  # the first time: auto-wrap and checkpointing
            kwargs = {k: v for k, v in self.kwargs.items() if k != "auto_wrap_policy"}
            return FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                            mixed_precision=self.mixed_precision_config,
                                            sharding_strategy=self.sharding_strategy,
                                            device_id=self.root_device.index, **kwargs)

    classes = {transformer_layer_class(n) for n in layer_classes}
    return ContinualFSDPStrategy(auto_wrap_policy=classes, sharding_strategy=sharding_strategy,
                                 activation_checkpointing_policy=classes if activation_checkpointing else None,
                                 use_orig_params=True,  # adapters train, the base stays frozen in the same shards
                                 **kwargs)


def reinstall_output_capturing(model) -> int:
    """Let transformers install its output-capturing hooks again where something removed them;
    returns how many modules were reset.

    transformers collects `hidden_states` (LLaVA's image features are one of them) through forward
    hooks that it installs once per model and marks installed. Lightning's DeepSpeed strategy
    removes every module hook before each inference `deepspeed.initialize`, leaving the mark: the
    vision tower then returns no hidden states. A model whose hooks are still there is left alone
    (installing them twice would record every hidden state twice)."""
    reset = 0
    for module in model.modules():
        if getattr(module, "_output_capturing_hooks_installed", False) and not _has_capturing_hooks(module):
            module._output_capturing_hooks_installed = False
            reset += 1
    return reset


def _has_capturing_hooks(model) -> bool:
    return any(getattr(hook, "__name__", "") == "output_capturing_hook"
               for module in model.modules() for hook in module._forward_hooks.values())


def clip_grad_norm_sharded(strategy, max_norm: float) -> bool:
    """Clip the gradients' global norm through FSDP's own `clip_grad_norm_` (the norm over every
    rank's shards), which Lightning's FSDP precision plugin does not do; False where the strategy
    is not FSDP and Lightning's own clipping applies."""
    from pytorch_lightning.strategies import FSDPStrategy

    if not isinstance(strategy, FSDPStrategy):
        return False
    strategy.model.clip_grad_norm_(max_norm)
    return True


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if world_size() > 1 else 0


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that writes results."""
    return global_rank() == 0


def gather_objects(obj) -> list:
    """Every rank's `obj`, in rank order, on every rank ([obj] in a single process). A collective:
    every rank must call it."""
    if world_size() == 1:
        return [obj]
    import torch.distributed as dist

    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()
