"""Centered kernel alignment (Kornblith et al., 2019) between two feature matrices of the same n samples.

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),   HSIC(K, L) = sum((H K H) * (H L H)),
    H = I - 11^T / n,

with K, L the n x n Gram matrices of X (n, d_x) and Y (n, d_y): linear (X X^T) or RBF
(exp(-||x_i - x_j||^2 / (2 sigma^2)), sigma = sqrt of the median non-zero pairwise squared
distance by default, per matrix, as hide-method.md specifies). `debiased=True` uses the unbiased
HSIC estimator (Song et al., 2012), which removes the upward bias of CKA at small n relative to d.
Everything is float64 and at most n x n or n x d: no (n d) x (n d) object is ever formed.
"""

from __future__ import annotations

import torch


def _as_float64(X) -> torch.Tensor:
    X = torch.as_tensor(X).detach().to(torch.float64)
    if X.dim() != 2:
        raise ValueError(f"CKA needs a feature matrix of shape (n, d), got shape {tuple(X.shape)}")
    return X


def _check_pair(X: torch.Tensor, Y: torch.Tensor, debiased: bool) -> None:
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"CKA compares the same n samples: X has {X.shape[0]} rows, Y {Y.shape[0]}")
    if X.shape[0] < (4 if debiased else 2):
        raise ValueError(f"CKA needs at least {4 if debiased else 2} samples, got {X.shape[0]}")


def center_gram(K: torch.Tensor) -> torch.Tensor:
    """H K H, without forming H."""
    K = K - K.mean(dim=0, keepdim=True)
    return K - K.mean(dim=1, keepdim=True)


def hsic(K: torch.Tensor, L: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """sum((HKH) * (HLH)) (biased, up to the constant 1/(n-1)^2 that CKA cancels), or the unbiased
    estimator of Song et al. (2012) on the Gram matrices with their diagonals zeroed."""
    if not debiased:
        return (center_gram(K) * center_gram(L)).sum()
    n = K.shape[0]
    K = K - torch.diag(torch.diag(K))
    L = L - torch.diag(torch.diag(L))
    KL_sum = (K.sum(0) * L.sum(0)).sum()  # 1^T K L 1 for symmetric K, L
    return ((K * L).sum() + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2.0 * KL_sum / (n - 2)) / (n * (n - 3))


def cka_from_grams(K: torch.Tensor, L: torch.Tensor, debiased: bool = False) -> float:
    denominator = torch.sqrt(hsic(K, K, debiased) * hsic(L, L, debiased))
    if denominator <= 0:
        return float("nan")  # a constant representation: CKA is undefined
    return float(hsic(K, L, debiased) / denominator)


def linear_gram(X) -> torch.Tensor:
    X = _as_float64(X)
    X = X - X.mean(dim=0, keepdim=True)
    return X @ X.T


def median(values: torch.Tensor) -> torch.Tensor:
    """The median as numpy (and the reference CKA code) takes it: the mean of the two middle values
    of an even count. `torch.median` returns the lower one, and every pairwise distance appears
    twice, so the two differ whenever n(n-1)/2 is even."""
    ordered = values.flatten().sort().values
    count = ordered.numel()
    return (ordered[(count - 1) // 2] + ordered[count // 2]) / 2


def rbf_gram(X, sigma: float | None = None) -> torch.Tensor:
    """exp(-||x_i - x_j||^2 / (2 sigma^2)); sigma None: sqrt(median of the non-zero squared distances)."""
    X = _as_float64(X)
    sq = (X * X).sum(dim=1)
    distances = (sq[:, None] + sq[None, :] - 2.0 * X @ X.T).clamp_min(0.0)
    distances.fill_diagonal_(0.0)
    if sigma is None:
        sigma = float(torch.sqrt(median(distances[distances > 0]))) if (distances > 0).any() else 1.0
    return torch.exp(-distances / (2.0 * sigma ** 2))


def linear_cka(X, Y, debiased: bool = False) -> float:
    X, Y = _as_float64(X), _as_float64(Y)
    _check_pair(X, Y, debiased)
    return cka_from_grams(linear_gram(X), linear_gram(Y), debiased)


def kernel_cka(X, Y, sigma: float | None = None, debiased: bool = False) -> float:
    """RBF-kernel CKA; `sigma` None: the median heuristic for each matrix separately."""
    X, Y = _as_float64(X), _as_float64(Y)
    _check_pair(X, Y, debiased)
    return cka_from_grams(rbf_gram(X, sigma), rbf_gram(Y, sigma), debiased)


CKA_KINDS = {"linear": linear_cka, "kernel": kernel_cka}
