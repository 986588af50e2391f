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


def fsdp_strategy(layer_classes=("LlamaDecoderLayer", "CLIPEncoderLayer"), sharding_strategy: str = "FULL_SHARD",
                  activation_checkpointing: bool = True, **kwargs):
    """Lightning's FSDPStrategy wrapping each decoder / vision layer as one shard unit (and
    checkpointing its activations)."""
    from pytorch_lightning.strategies import FSDPStrategy

    classes = {transformer_layer_class(n) for n in layer_classes}
    return FSDPStrategy(auto_wrap_policy=classes, sharding_strategy=sharding_strategy,
                        activation_checkpointing_policy=classes if activation_checkpointing else None,
                        use_orig_params=True,  # adapters train, the base stays frozen in the same shards
                        **kwargs)


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
