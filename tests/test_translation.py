"""The translation rule (hide.models.translation): every method's published settings reach the
default tiny model's widths in units of the Kaiming init, by the real configs."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from hide.errors import ConfigError
from hide.methods.reglora import recorded_position_penalty
from hide.models.backbone import Backbone
from hide.models.tiny import build_model, build_tokenizer
from hide.models.translation import KAIMING_ROW_NORM, entry_factor, kaiming_std
from tests.conftest import compose_config

LLAVA_7B_FAN_IN = {"q_proj": 4096, "k_proj": 4096, "v_proj": 4096, "o_proj": 4096, "gate_proj": 4096,
                   "up_proj": 4096, "down_proj": 11008}
KAIMING_METHODS = ["lora", "moelora", "olora", "ewc", "lwf", "replay", "reglora", "disco", "multitask"]


@pytest.fixture(scope="module")
def default_widths(tmp_path_factory):
    """An untrained LLaVA of the default tiny config's widths (192 and 512): attach needs only its shape."""
    cfg = compose_config([], tmp_path_factory.mktemp("cfg"))
    return cfg, lambda: Backbone(model=build_model(build_tokenizer(), cfg.model.image_size, cfg.model.patch_size,
                                                   dict(cfg.model.vision), dict(cfg.model.text)),
                                 tokenizer=None, image_processor=None, name="tiny")


def attached(method_name: str, default_widths, tmp_path):
    _, make_backbone = default_widths
    cfg = compose_config([f"method={method_name}"], tmp_path)
    method = instantiate(cfg.method)
    torch.manual_seed(0)
    method.attach(make_backbone(), num_tasks=6)
    return cfg, method


def row_norms(layer) -> torch.Tensor:
    """Every row of A (all slots / experts) of an adapter layer."""
    A = layer.lora_A
    rows = torch.cat([a.detach() for a in A]) if isinstance(A, torch.nn.ParameterList) else A.detach().flatten(0, -2)
    return rows.norm(dim=-1)


def test_the_rule_in_numbers():
    # Kaiming-uniform on fan_in n: U(-1/sqrt(n), 1/sqrt(n)), std 1/sqrt(3n), rows of norm 1/sqrt(3)
    assert kaiming_std(4096) == pytest.approx(0.0090211, rel=1e-4)
    assert KAIMING_ROW_NORM == pytest.approx(0.57735, rel=1e-4)
    # 0.01 at fan_in 4096 is 1.109 Kaiming stds; at fan_in 192 that is 0.01 * sqrt(4096 / 192) = 0.0462
    assert 0.01 * entry_factor("layers.0.self_attn.q_proj", 192, LLAVA_7B_FAN_IN) == pytest.approx(0.046188, rel=1e-4)
    # down_proj: published at fan_in 11008, here 512: 0.01 * sqrt(11008 / 512) = 0.04637
    assert 0.01 * entry_factor("layers.3.mlp.down_proj", 512, LLAVA_7B_FAN_IN) == pytest.approx(0.046368, rel=1e-4)
    assert entry_factor("layers.3.mlp.down_proj", 11008, LLAVA_7B_FAN_IN) == pytest.approx(1.0)
    assert entry_factor("layers.0.self_attn.q_proj", 192, None) == 1.0
    with pytest.raises(ConfigError, match="wq.*published_fan_in|published_fan_in.*wq"):
        entry_factor("layers.0.attention.wq", 192, LLAVA_7B_FAN_IN)


def test_the_default_config_publishes_llava_7b_widths(tmp_path):
    cfg = compose_config(["method=hide"], tmp_path)
    assert dict(cfg.method.published_fan_in) == LLAVA_7B_FAN_IN
    # at LLaVA-1.5-7B itself the rule changes nothing
    big = compose_config(["model=llava-1.5-7b", "method=hide"], tmp_path)
    assert all(entry_factor(f"layers.0.x.{t}", LLAVA_7B_FAN_IN[t], dict(big.method.published_fan_in)) == 1.0
               for t in LLAVA_7B_FAN_IN)


@pytest.mark.parametrize("method_name", KAIMING_METHODS)
def test_kaiming_methods_start_at_kaiming_rows(method_name, default_widths, tmp_path):
    """peft's init everywhere: rows of A of mean squared norm 1/3 at every width, as at 7B."""
    _, method = attached(method_name, default_widths, tmp_path)
    widths = {layer.base.in_features for layer in method.adapters.values()}
    assert widths == {192, 512}
    for name, layer in method.adapters.items():
        norms = row_norms(layer)
        assert (norms ** 2).mean().sqrt().item() == pytest.approx(KAIMING_ROW_NORM, rel=0.1), name


def test_hide_starts_at_its_published_rows(default_widths, tmp_path):
    """N(0, 0.01^2) at 7B gives rows of norm 0.01 sqrt(4096) = 0.64 and 0.01 sqrt(11008) = 1.05;
    carried by the rule, the tiny model's rows have the same norms (not 0.01 sqrt(192) = 0.14)."""
    _, method = attached("hide", default_widths, tmp_path)
    for name, layer in method.adapters.items():
        published = 0.01 * math.sqrt(LLAVA_7B_FAN_IN[name.rpartition(".")[2]])
        norms = row_norms(layer)
        assert norms.mean().item() == pytest.approx(published, rel=0.05), name
    assert {round(0.01 * math.sqrt(n), 2) for n in LLAVA_7B_FAN_IN.values()} == {0.64, 1.05}


def test_keeplora_keeps_its_published_scale(default_widths, tmp_path):
    """A's rows orthonormal (norm 1: 1.73 Kaiming row norms at every width) under s = 0.25, as
    published (alpha = rank / 4), not the shared s = 2."""
    cfg, method = attached("keeplora", default_widths, tmp_path)
    assert cfg.method.alpha == 16  # the shared setting, which KeepLoRA's own scale replaces
    assert {layer.scale for layer in method.adapters.values()} == {0.25}
    with pytest.raises(Exception, match="method.scale must be > 0"):  # Hydra wraps the ConfigError
        instantiate(compose_config(["method=keeplora", "method.scale=0"], tmp_path).method)


def test_reglora_measures_entries_in_kaiming_units():
    """The penalty on |B A| at recorded positions, per linear divided by its entry factor: an entry
    0.1 at fan_in 192 counts as 0.1 / sqrt(4096 / 192) = 0.02165 against the published 2500."""
    update = torch.full((2, 3), 0.1)
    mask = torch.tensor([[True, False, False], [False, False, True]])
    unit = entry_factor("layers.0.mlp.up_proj", 192, LLAVA_7B_FAN_IN)
    penalty = recorded_position_penalty([update, 2 * update], [mask, mask], [unit, 1.0])
    assert penalty.item() == pytest.approx((0.1 / math.sqrt(4096 / 192) + 0.2) / 2, rel=1e-6)
    assert recorded_position_penalty([update], [mask]).item() == pytest.approx(0.1)
