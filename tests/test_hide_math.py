"""HiDe's adapter and routing math, called directly on random tensors."""

import pytest
import torch
from torch import nn

from hide.methods.anchors import AnchorBank, routing_weights
from hide.methods.hide import resolve_layers
from hide.methods.hide_experts import FUSION_RULES, MultiExpertLoRALinear, fuse_experts


def _layer(num_slots=3, d_in=12, d_out=7, rank=4, seed=0):
    torch.manual_seed(seed)
    layer = MultiExpertLoRALinear(nn.Linear(d_in, d_out), rank=rank, alpha=8, num_slots=num_slots,
                                  dropout=0.0, init_std=0.3)
    with torch.no_grad():
        for slot in range(num_slots):
            layer.lora_B[slot].normal_()
    return layer.eval()


def test_one_hot_routing_equals_the_single_expert_exactly():
    layer = _layer()
    x = torch.randn(4, 5, 12)
    singles = []
    for slot in range(3):
        layer.use_single(slot)
        singles.append(layer(x))
    # each sample routed one-hot to a different expert, in one batch
    picks = [2, 0, 1, 2]
    layer.use_routed([0, 1, 2])
    layer.set_routing_weights(torch.nn.functional.one_hot(torch.tensor(picks), 3).float())
    routed = layer(x)
    for row, slot in enumerate(picks):
        assert torch.equal(routed[row], singles[slot][row])


def test_dense_routing_is_the_per_sample_weighted_sum():
    layer = _layer()
    x = torch.randn(3, 5, 12)
    weights = torch.softmax(torch.randn(3, 2), -1)
    layer.use_routed([0, 2])  # only trained tasks enter: here tasks 0 and 2
    layer.set_routing_weights(weights)
    out = layer(x)
    for row in range(3):
        expected = layer.base(x[row])
        for column, slot in enumerate([0, 2]):
            update = layer.lora_B[slot] @ layer.lora_A[slot]
            expected = expected + weights[row, column] * layer.scale * x[row] @ update.T
        torch.testing.assert_close(out[row], expected)


def test_routed_needs_weights_and_matching_batch():
    layer = _layer()
    layer.use_routed([0, 1])
    with pytest.raises(RuntimeError, match="set_routing_weights"):
        layer(torch.randn(2, 12))
    layer.set_routing_weights(torch.ones(3, 2) / 2)
    with pytest.raises(ValueError, match="3 samples"):
        layer(torch.randn(2, 4, 12))
    with pytest.raises(ValueError, match="columns"):
        layer.set_routing_weights(torch.ones(2, 3))


def _hand_fused_update(layer, slots, rule):
    """The fusion rules as written in the spec, term by term."""
    T = len(slots)
    if rule == "sum_ba":
        return sum(layer.lora_B[i] @ layer.lora_A[i] for i in slots)
    update = sum(layer.lora_B[i] @ layer.lora_A[j] for i in slots for j in slots)  # includes cross terms
    return update / (T * T) if rule == "mean" else update


@pytest.mark.parametrize("rule", FUSION_RULES)
@pytest.mark.parametrize("fold", [False, True])
def test_each_fusion_rule_equals_its_formula(rule, fold):
    layer = _layer(num_slots=4)
    x = torch.randn(3, 5, 12)
    slots = [0, 1, 3]
    layer.use_fused(slots, rule, fold=fold)
    expected = x @ layer.base.weight.T + layer.base.bias + layer.scale * x @ _hand_fused_update(layer, slots, rule).T
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fold", [False, True])
def test_a_fused_layer_follows_the_model_to_another_dtype_and_device(fold):
    """Experts are fused between stages, where Lightning leaves the model on the CPU in float32;
    evaluation then moves it (to the GPU, to bf16): the fused update must move with it and not
    be saved in the state dict."""
    layer = _layer(num_slots=3)
    layer.use_fused([0, 2], "sum_ab", fold=fold)
    x = torch.randn(2, 5, 12)
    expected = layer(x)
    layer.to(torch.bfloat16)
    out = layer(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)
    assert {name for name, _ in layer.named_buffers()} == ({"_folded_weight"} if fold else {"_fused_A", "_fused_B"})
    assert not any(key.startswith("_f") for key in layer.state_dict())
    if torch.cuda.is_available():
        assert layer.to("cuda")(x.to("cuda", torch.bfloat16)).device.type == "cuda"


def test_sum_ab_differs_from_sum_ba_by_the_cross_terms():
    layer = _layer()
    A_ab, B_ab = fuse_experts(list(layer.lora_A), list(layer.lora_B), "sum_ab")
    A_ba, B_ba = fuse_experts(list(layer.lora_A), list(layer.lora_B), "sum_ba")
    assert A_ab.shape == (4, 12) and A_ba.shape == (12, 12)  # sum_ba keeps rank T*r
    cross = sum(layer.lora_B[i] @ layer.lora_A[j] for i in range(3) for j in range(3) if i != j)
    torch.testing.assert_close(B_ab @ A_ab - B_ba @ A_ba, cross, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="fusion rule"):
        fuse_experts(list(layer.lora_A), list(layer.lora_B), "product")


def test_fused_and_routed_with_no_trained_task_are_the_base_layer():
    layer = _layer()
    x = torch.randn(2, 3, 12)
    layer.use_fused([], "sum_ab", fold=True)
    assert torch.equal(layer(x), layer.base(x))
    layer.use_routed([])
    assert torch.equal(layer(x), layer.base(x))


def test_single_mode_after_eval_modes_is_training_mode_again():
    layer = _layer()
    x = torch.randn(2, 12)
    layer.use_fused([0, 1], "sum_ab", fold=True)
    layer.use_single(1)
    torch.testing.assert_close(layer(x), layer.base(x) + layer.delta(x, 1))


def test_routing_weights_softmax_and_top_k():
    sim = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8]])
    dense = routing_weights(sim, temperature=0.1)
    torch.testing.assert_close(dense, torch.softmax(sim / 0.1, -1))
    top2 = routing_weights(sim, temperature=0.1, top_k=2)
    assert top2[0, 2] == 0 and top2[1, 0] == 0
    torch.testing.assert_close(top2.sum(-1), torch.ones(2))
    torch.testing.assert_close(top2[0, :2], torch.softmax(sim[0, :2] / 0.1, -1))
    top1 = routing_weights(sim, top_k=1)
    assert torch.equal(top1, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))


def test_anchors_are_exact_means_and_keep_their_dtype():
    torch.manual_seed(0)
    bank = AnchorBank(num_tasks=3, image_dim=5, text_dim=4)
    image = [torch.randn(n, 5) + 100.0 for n in (7, 3, 11)]  # large offset: a running mean would drift
    text = [torch.randn(n, 4) for n in (7, 3, 11)]
    for i in range(3):  # batches of one task arrive in pieces
        bank.add(1, image[i], text[i])
    image_mean, text_mean = bank.means([1])
    all_image, all_text = torch.cat(image).double(), torch.cat(text).double()
    torch.testing.assert_close(image_mean[0].double(), all_image.mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(text_mean[0].double(), all_text.mean(0), rtol=0, atol=1e-6)
    assert int(bank.count[1]) == 21
    bank.to(torch.bfloat16)
    assert bank.image_sum.dtype == torch.float32 and bank.count.dtype == torch.int64
    restored = AnchorBank(3, 5, 4)
    restored.load_state_dict(bank.state_dict())
    assert torch.equal(restored.image_sum, bank.image_sum) and torch.equal(restored.count, bank.count)
    with pytest.raises(RuntimeError, match=r"task\(s\) \[0\]"):
        bank.means([0, 1])


def test_similarity_is_weighted_cosine():
    bank = AnchorBank(2, 2, 2)
    bank.add(0, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    bank.add(1, torch.tensor([[0.0, 3.0]]), torch.tensor([[2.0, 0.0]]))
    sim = bank.similarity(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]]), [0, 1], 0.7, 0.3)
    torch.testing.assert_close(sim, torch.tensor([[0.7 + 0.3 / 2 ** 0.5, 0.3 / 2 ** 0.5]]))


def test_resolve_layers():
    assert resolve_layers([-1], 4) == [3]
    assert resolve_layers([0, -1, 3], 4) == [0, 3]
    assert resolve_layers("all", 3) == [0, 1, 2]
    assert resolve_layers([], 3) == []
    with pytest.raises(ValueError, match="outside"):
        resolve_layers([4], 4)
    with pytest.raises(ValueError, match="'all', 'auto' or a list"):
        resolve_layers("top", 4)  # auto is resolved from the CKA analysis (tests/test_cka.py)
