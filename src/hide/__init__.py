"""hide: continual instruction tuning of multimodal LLMs (HiDe-LLaVA and baselines)."""

__version__ = "0.1.0"
