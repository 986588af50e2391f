"""hide: continual instruction tuning of multimodal LLMs (HiDe-LLaVA and baselines).

`hide.load_run(run_dir, stage=None)` rebuilds a finished run's model for prediction (`hide.trained`).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # imported on first use: `import hide.data...` should not pull in torch, Lightning and the models
    if name == "load_run":
        from hide.trained import load_run

        return load_run
    raise AttributeError(f"module 'hide' has no attribute {name!r}")
