"""The translation rule: how a published setting that is a size of weights reaches another width.

A number published for LLaVA-1.5-7B (A ~ N(0, 0.01^2), a penalty on |B A|'s entries) controls a
size relative to the model's own weights, and that relation depends on width: the same std gives
A rows of norm 0.64-1.05 at widths 4096 and 11008 (about the Kaiming-uniform init's 0.58) and
rows 2.5-4 times shorter at the tiny model's 192 and 512. So every such setting is carried in one
unit, the Kaiming-uniform init (as nn.Linear's and peft's A) at the layer's input width:

- an entry-sized quantity (a std, an entry of B A) in units of Kaiming's std 1/sqrt(3 fan_in):
  the proxy's value is the published one times kaiming_std(fan_in) / kaiming_std(published fan_in);
  a weight on the mean of such entries is divided by that factor, so that the same update relative
  to the layer's weights costs the same;
- a row of A in units of Kaiming's row norm 1/sqrt(3), which is the same at every width: a
  fixed-norm A (orthonormal rows) and the scale s = alpha / rank are carried as published; so is a
  penalty on dot products of A's rows (O-LoRA's).

`published_fan_in` (conf/adapter/lora.yaml) holds the input width each adapted linear had where
the settings were published; at those widths every factor is 1. docs/calibration.md has the table of
published and proxy values.
"""

from __future__ import annotations

import math

from hide.errors import ConfigError

KAIMING_ROW_NORM = 1 / math.sqrt(3)  # the expected row norm of a Kaiming-uniform A, at any width


def kaiming_std(fan_in: int) -> float:
    """The std of the Kaiming-uniform init (bound 1 / sqrt(fan_in)) of a layer of this input width."""
    return 1 / math.sqrt(3 * fan_in)


def entry_factor(name: str, fan_in: int, published_fan_in: dict[str, int] | None) -> float:
    """How much an entry-sized setting of the linear `name` (a qualified module name ending in its
    target, e.g. "layers.3.mlp.down_proj") grows from its published width to `fan_in`:
    kaiming_std(fan_in) / kaiming_std(published). 1 without published widths."""
    if published_fan_in is None:
        return 1.0
    target = name.rpartition(".")[2]
    if target not in published_fan_in:
        raise ConfigError(f"method.published_fan_in has no width for {target!r} (adapted linear {name}); "
                          f"it has {sorted(published_fan_in)}")
    return kaiming_std(fan_in) / kaiming_std(int(published_fan_in[target]))
