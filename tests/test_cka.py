"""CKA math against closed forms and a direct O(n^2) reference; layer features, the callback and
HiDe's CKA-chosen layers through the real configs."""

import json
import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from hide.analysis.cka import hsic, kernel_cka, linear_cka, linear_gram, rbf_gram
from hide.analysis.layers import cross_task_cka, decoder_layer_features, mean_off_diagonal, probe_loader
from hide.loop import run_continual
from hide.models.lora import decoder_layer_index


def _features(n=40, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("cka", [linear_cka, kernel_cka])
def test_cka_of_a_matrix_with_itself_is_one(cka, debiased):
    X = _features()
    assert cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("cka", [linear_cka, kernel_cka])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(cka, debiased):
    X, Y = _features(seed=1), _features(d=9, seed=2) + 0.5 * _features(seed=1)[:, :9]
    Q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    reference = cka(X, Y, debiased=debiased)
    assert 0 < reference < 1
    assert cka(X @ Q, Y, debiased=debiased) == pytest.approx(reference, rel=1e-9)
    assert cka(X, 7.5 * Y, debiased=debiased) == pytest.approx(reference, rel=1e-9)
    assert cka(0.01 * X @ Q, Y, debiased=debiased) == pytest.approx(reference, rel=1e-9)


def test_linear_cka_equals_the_feature_space_closed_form():
    X, Y = _features(seed=4), _features(d=7, seed=5)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    closed = (torch.linalg.norm(Yc.T @ Xc) ** 2 / (torch.linalg.norm(Xc.T @ Xc) * torch.linalg.norm(Yc.T @ Yc))).item()
    assert linear_cka(X, Y) == pytest.approx(closed, rel=1e-10)
    assert linear_cka(X.numpy(), Y.numpy()) == pytest.approx(closed, rel=1e-10)  # numpy input too


def _reference_kernel_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Direct O(n^2) loops: RBF Grams with the median heuristic, H K H with H formed explicitly."""
    n = X.shape[0]

    def gram(Z):
        D = np.array([[sum((Z[i, k] - Z[j, k]) ** 2 for k in range(Z.shape[1])) for j in range(n)] for i in range(n)])
        sigma = math.sqrt(np.median(D[D > 0]))
        return np.exp(-D / (2 * sigma ** 2))

    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ gram(X) @ H, H @ gram(Y) @ H
    return float((K * L).sum() / math.sqrt((K * K).sum() * (L * L).sum()))


def test_kernel_cka_matches_a_direct_reference():
    X, Y = _features(n=15, d=4, seed=6), _features(n=15, d=3, seed=7)
    Y = Y + X[:, :3]
    assert kernel_cka(X, Y) == pytest.approx(_reference_kernel_cka(X.numpy(), Y.numpy()), rel=1e-9)


@pytest.mark.parametrize("n", [16, 37])  # n(n-1)/2 even: numpy's median is the mean of two different values
def test_rbf_bandwidth_is_numpys_median_of_the_nonzero_squared_distances(n):
    X = _features(n=n, d=300, seed=12)
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1).numpy()
    sigma_sq = float(np.median(D[D > 0]))
    lower = float(np.sort(D[D > 0])[(D > 0).sum() // 2 - 1])
    assert sigma_sq - lower > 1e-3  # the two conventions differ at this n
    expected = np.exp(-D / (2 * sigma_sq))
    assert np.allclose(rbf_gram(X).numpy(), expected, rtol=1e-12, atol=1e-12)
    Y = _features(n=n, d=5, seed=13) + X[:, :5]
    assert kernel_cka(X, Y) == pytest.approx(_reference_kernel_cka(X.numpy(), Y.numpy()), rel=1e-9)


def test_debiased_hsic_matches_the_unbiased_formula():
    X, Y = _features(n=10, d=3, seed=8), _features(n=10, d=5, seed=9)
    K, L = linear_gram(X).numpy(), linear_gram(Y).numpy()
    n = 10
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    expected = (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ Kt @ Lt @ one) / (n * (n - 3))
    assert hsic(torch.from_numpy(K), torch.from_numpy(L), debiased=True).item() == pytest.approx(expected, rel=1e-10)


def test_debiased_cka_removes_the_small_sample_bias_of_independent_features():
    X, Y = _features(n=30, d=200, seed=10), _features(n=30, d=200, seed=11)
    assert linear_cka(X, Y) > 0.5  # biased CKA of independent wide features is far from 0
    assert abs(linear_cka(X, Y, debiased=True)) < 0.1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same n samples"):
        linear_cka(_features(n=5), _features(n=6))
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        kernel_cka(torch.zeros(3), torch.zeros(3))


# -- features, the callback and HiDe's auto layers through the real configs --------------------


def test_layer_features_are_prompt_means_of_each_decoder_layer(fast_cfg):
    cfg = fast_cfg("method=lora")
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, benchmark=instantiate(cfg.benchmark), seed=0)
    datamodule.load(backbone)
    loader = probe_loader(datamodule, 1, 5, batch_size=2)  # batches of 2 and 1: padding must not matter
    features = decoder_layer_features(backbone.model, loader)
    layers = backbone.language_model.config.num_hidden_layers
    assert features.shape == (layers, 5, backbone.language_model.config.hidden_size)
    one = next(iter(probe_loader(datamodule, 1, 1)))
    with torch.no_grad():
        out = backbone.model(input_ids=one["input_ids"], attention_mask=one["attention_mask"],
                             pixel_values=one["pixel_values"], output_hidden_states=True)
    for layer in range(layers):
        torch.testing.assert_close(features[layer, 0], out.hidden_states[layer + 1][0].mean(0), rtol=1e-4, atol=1e-5)


def test_cross_task_array_is_symmetric_with_unit_diagonal():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(3, 10, 6, generator=g) for _ in range(3)]
    array = cross_task_cka(feats, "linear")
    assert array.shape == (3, 3, 3)
    assert np.allclose(array, array.transpose(1, 0, 2)) and np.allclose(array[[0, 1, 2], [0, 1, 2]], 1.0)
    assert mean_off_diagonal(array).shape == (3,)
    with pytest.raises(ValueError, match="probe sets of one size"):
        cross_task_cka([feats[0], feats[1][:, :5]])


def test_cka_callback_writes_before_after_arrays_per_stage(fast_cfg, tmp_path):
    run_continual(fast_cfg("method=lora", "callbacks=cka", "callbacks.cka.probe_per_task=4"), tmp_path)
    for stage in (1, 2):
        saved = np.load(tmp_path / "cka" / f"stage{stage}.npz")
        assert list(saved["tasks"]) == ["Renditions", "FigureQA"]
        assert saved["cka"].shape == (2, 2)  # tasks x decoder layers
        assert np.all(saved["cka"] <= 1 + 1e-9) and np.all(saved["cka"] > 0)
        assert (tmp_path / "cka" / f"stage{stage}.png").stat().st_size > 5000
    # the training changed the model: not every layer keeps CKA 1 on the trained task's probes
    assert np.min(np.load(tmp_path / "cka" / "stage1.npz")["cka"][0]) < 0.999999


def test_hide_auto_layers_come_from_the_cka_file(fast_cfg, tmp_path):
    analysis = {"tasks": ["Renditions", "FigureQA"],
                "kernel": {"mean_cross_task_cka": [0.4, 0.9], "layers_least_similar_first": [0, 1]},
                "linear": {"mean_cross_task_cka": [0.8, 0.3], "layers_least_similar_first": [1, 0]}}
    path = tmp_path / "cka.json"
    path.write_text(json.dumps(analysis))
    metrics = run_continual(fast_cfg("method=hide", "method.task_specific_layers=auto", f"method.cka_file={path}",
                                     "trainer.max_epochs=1"), tmp_path / "run")
    assert metrics["task_specific_layers"] == [0]
    assert metrics["task_specific_layers_from"]["mean_cross_task_cka"] == [0.4, 0.9]
    cfg = fast_cfg("method=hide", "method.task_specific_layers=auto", f"method.cka_file={path}", "method.cka_kind=linear")
    backbone = instantiate(cfg.model)
    method = instantiate(cfg.method)
    method.attach(backbone, 2)
    assert method.layers == [1] and sorted(method.routed) == sorted(n for n in method.adapters if decoder_layer_index(n) == 1)
    # a missing analysis, or one of another model, is named
    for bad, message in [(tmp_path / "none.json", "cka_analysis.py"), (None, "2 decoder layers and 3 tasks")]:
        if bad is None:
            analysis["tasks"].append("IconQA")
            path.write_text(json.dumps(analysis))
            bad = path
        method = instantiate(fast_cfg("method=hide", "method.task_specific_layers=auto", f"method.cka_file={bad}").method)
        with pytest.raises((FileNotFoundError, ValueError), match=message):
            method.attach(instantiate(cfg.model), 2)
