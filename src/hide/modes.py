"""A model in a mode for a while: the passes between fits (anchors, Fisher, gradients, teachers,
analyses) run in the mode they need and leave the model in the mode they found."""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn


@contextmanager
def model_mode(model: nn.Module, training: bool):
    """`model` in train (True) or eval (False) mode inside the block, and in the mode it had
    before afterwards, whatever happens inside."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)
