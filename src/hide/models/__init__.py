"""Backbones (tiny offline LLaVA, llava-hf checkpoints) and adapter layers."""
