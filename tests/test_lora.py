import pytest
import torch
from torch import nn

from hide.models.lora import LoRALinear, inject_lora


def test_fresh_expert_leaves_output_unchanged():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    layer = LoRALinear(base, rank=4, alpha=8, num_slots=3, dropout=0.0)
    x = torch.randn(5, 12)
    assert torch.equal(layer(x), base(x))


def test_forward_is_base_plus_scaled_low_rank_product():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    layer = LoRALinear(base, rank=4, alpha=8, num_slots=2, dropout=0.0, init_std=0.1)
    with torch.no_grad():
        for slot in range(2):
            layer.lora_B[slot].normal_()
    x = torch.randn(3, 5, 12)
    for slot in range(2):
        layer.active_slot = slot
        expected = x @ base.weight.T + base.bias + 2.0 * (x @ layer.lora_A[slot].T @ layer.lora_B[slot].T)
        torch.testing.assert_close(layer(x), expected)


def test_init_std_and_kaiming():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(4096, 8), rank=8, alpha=16, init_std=0.01)
    assert abs(layer.lora_A[0].std().item() - 0.01) < 1e-3
    assert torch.count_nonzero(layer.lora_B[0]) == 0
    kaiming = LoRALinear(nn.Linear(300, 8), rank=8, alpha=16)
    bound = 1 / 300 ** 0.5  # kaiming_uniform(a=sqrt(5)) on fan_in 300
    assert kaiming.lora_A[0].abs().max().item() <= bound + 1e-6


def test_dropout_only_in_training():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 16), rank=4, alpha=8, dropout=0.5, init_std=0.1)
    with torch.no_grad():
        layer.lora_B[0].normal_()
    x = torch.randn(4, 16)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(8, 8)
        self.self_attn.k_proj = nn.Linear(8, 8)
        self.mlp = nn.Module()
        self.mlp.down_proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(_Block() for _ in range(3))


def test_inject_targets_and_layers():
    model = _Model()
    replaced = inject_lora(model, lambda lin, i: LoRALinear(lin, 2, 4), targets=("q_proj", "down_proj"), layers=[0, 2])
    assert sorted(replaced) == ["layers.0.mlp.down_proj", "layers.0.self_attn.q_proj",
                                "layers.2.mlp.down_proj", "layers.2.self_attn.q_proj"]
    assert isinstance(model.layers[0].self_attn.q_proj, LoRALinear)
    assert isinstance(model.layers[1].self_attn.q_proj, nn.Linear)
    assert isinstance(model.layers[0].self_attn.k_proj, nn.Linear)


def test_decoder_layer_index():
    from hide.models.lora import decoder_layer_index

    assert decoder_layer_index("model.language_model.layers.12.mlp.up_proj") == 12
    with pytest.raises(ValueError, match="decoder layer"):
        decoder_layer_index("model.multi_modal_projector.linear_1")


def test_adapters_disabled_reaches_every_adapter_layer_class():
    """A layer class of its own (a subclass of AdapterLayer) is switched off with the others,
    without joining any list."""
    from hide.models.lora import AdapterLayer, LoRALinear, adapters_disabled

    class Scaled(AdapterLayer):
        def __init__(self):
            super().__init__()
            self.base = nn.Linear(2, 2)

    model = nn.Sequential(Scaled(), LoRALinear(nn.Linear(2, 2), rank=1, alpha=1))
    with adapters_disabled(model):
        assert [layer.disabled for layer in model] == [True, True]
    assert [layer.disabled for layer in model] == [False, False]
