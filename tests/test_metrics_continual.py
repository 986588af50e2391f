"""Continual-learning metrics over the (T+1) x T score matrix (protocol.md)."""

from __future__ import annotations

import math
import random

import pytest

from hide.metrics.continual import METRIC_NAMES, continual_metrics

# Rows t = 0 (base model) .. 3, columns tasks 1..3; a[t][i] == M[t][i-1].
M = [
    [10.0, 20.0, 30.0],
    [80.0, 40.0, 35.0],
    [82.0, 90.0, 50.0],
    [60.0, 85.0, 75.0],
]


def test_metric_names_order() -> None:
    assert METRIC_NAMES == ("Last", "Avg", "MFT", "BWT", "FWT", "Forgetting")
    assert tuple(continual_metrics(M)) == METRIC_NAMES


def test_every_formula_by_hand() -> None:
    r = continual_metrics(M)
    # Last = (a31 + a32 + a33) / 3 = (60 + 85 + 75) / 3 = 220 / 3
    assert r["Last"] == pytest.approx(220 / 3)
    # Avg = (1/3) * [ a11/1 + (a21 + a22)/2 + (a31 + a32 + a33)/3 ]
    #     = (1/3) * [ 80 + (82 + 90)/2 + 220/3 ] = (1/3) * [80 + 86 + 220/3] = (498/3 + 220/3) / 3 = 718/9
    assert r["Avg"] == pytest.approx(718 / 9)
    # MFT = (a11 + a22 + a33) / 3 = (80 + 90 + 75) / 3 = 245 / 3
    assert r["MFT"] == pytest.approx(245 / 3)
    # BWT = (1/2) * [(a31 - a11) + (a32 - a22)] = (1/2) * [(60 - 80) + (85 - 90)] = -25/2
    assert r["BWT"] == pytest.approx(-12.5)
    # FWT = (1/2) * [(a12 - a02) + (a23 - a03)] = (1/2) * [(40 - 20) + (50 - 30)] = 20
    assert r["FWT"] == pytest.approx(20.0)
    # Forgetting = (1/2) * [(max(a11, a21) - a31) + (max(a22) - a32)]
    #            = (1/2) * [(max(80, 82) - 60) + (90 - 85)] = (1/2) * (22 + 5) = 13.5
    assert r["Forgetting"] == pytest.approx(13.5)
    # Identity: Last - MFT = (220 - 245)/3 = -25/3 = (2/3) * (-12.5)
    assert r["Last"] - r["MFT"] == pytest.approx((2 / 3) * r["BWT"])


def _random_matrix(rng: random.Random, n_tasks: int) -> list[list[float]]:
    return [[rng.uniform(0, 100) for _ in range(n_tasks)] for _ in range(n_tasks + 1)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_tasks", range(2, 7))
def test_identity_last_minus_mft(seed: int, n_tasks: int) -> None:
    r = continual_metrics(_random_matrix(random.Random(1000 * n_tasks + seed), n_tasks))
    assert r["Last"] - r["MFT"] == pytest.approx(((n_tasks - 1) / n_tasks) * r["BWT"], abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_tasks", range(2, 7))
def test_forgetting_bounds(seed: int, n_tasks: int) -> None:
    rng = random.Random(7000 * n_tasks + seed)
    # Any matrix: the max over l in [i, T-1] includes a[i][i], so Forgetting >= -BWT.
    r = continual_metrics(_random_matrix(rng, n_tasks))
    assert r["Forgetting"] >= -r["BWT"] - 1e-9
    # When no task ends above its best earlier score (the usual case the protocol's ">= 0" describes),
    # Forgetting >= 0. Build such a matrix: each column never rises after its task is learned.
    m = _random_matrix(rng, n_tasks)
    for i in range(n_tasks):
        for t in range(i + 2, n_tasks + 1):
            m[t][i] = min(m[t][i], m[t - 1][i])
    r = continual_metrics(m)
    assert r["Forgetting"] >= 0.0
    assert r["BWT"] <= 0.0


def test_forgetting_can_be_negative_as_written() -> None:
    # Literal protocol formula (max over l in [i, T-1], not clamped): a task that improves at the end
    # has negative forgetting. a[1][1] = 50, a[2][1] = 70 -> Forgetting = (50 - 70) / 1 = -20.
    r = continual_metrics([[0.0, 0.0], [50.0, 10.0], [70.0, 60.0]])
    assert r["Forgetting"] == pytest.approx(-20.0)
    assert r["BWT"] == pytest.approx(20.0)


# Which metrics read each entry of a 4 x 3 matrix (rows t = 0..3, 1-based tasks i = 1..3).
READERS: dict[tuple[int, int], set[str]] = {
    (0, 1): set(),  # FWT starts at i = 2
    (0, 2): {"FWT"},
    (0, 3): {"FWT"},
    (1, 1): {"Avg", "MFT", "BWT", "Forgetting"},
    (1, 2): {"FWT"},  # first superdiagonal
    (1, 3): set(),  # above the first superdiagonal: nobody
    (2, 1): {"Avg", "Forgetting"},  # middle row below the diagonal
    (2, 2): {"Avg", "MFT", "BWT", "Forgetting"},
    (2, 3): {"FWT"},
    (3, 1): {"Last", "Avg", "BWT", "Forgetting"},
    (3, 2): {"Last", "Avg", "BWT", "Forgetting"},
    (3, 3): {"Last", "Avg", "MFT"},  # the last task is not in BWT / Forgetting
}


@pytest.mark.parametrize(("t", "i"), sorted(READERS))
def test_none_kills_exactly_the_metrics_that_read_it(t: int, i: int) -> None:
    full = continual_metrics(M)
    m = [row[:] for row in M]
    m[t][i - 1] = None
    r = continual_metrics(m)
    assert {name for name, v in r.items() if v is None} == READERS[(t, i)]
    for name in METRIC_NAMES:
        if name not in READERS[(t, i)]:
            assert r[name] == pytest.approx(full[name])


def test_schedules() -> None:
    # Seen tasks only: no zero-shot row, nothing above the diagonal -> FWT absent, the rest present.
    seen = [[None] * 3] + [[v if i <= t else None for i, v in enumerate(M[t], start=1)] for t in (1, 2, 3)]
    r = continual_metrics(seen)
    assert r["FWT"] is None
    assert all(r[n] is not None for n in METRIC_NAMES if n != "FWT")
    # Seen tasks plus the next one (and the zero-shot row): FWT is still available.
    plus_next = [M[0]] + [[v if i <= t + 1 else None for i, v in enumerate(M[t], start=1)] for t in (1, 2, 3)]
    assert continual_metrics(plus_next) == pytest.approx(continual_metrics(M))


def test_single_task() -> None:
    r = continual_metrics([[10.0], [50.0]])
    assert r == {"Last": 50.0, "Avg": 50.0, "MFT": 50.0, "BWT": None, "FWT": None, "Forgetting": None}


def test_integers_and_tuples_are_accepted() -> None:
    r = continual_metrics(((0, 0), (50, 10), (40, 60)))
    assert r["Last"] == pytest.approx(50.0)
    assert isinstance(r["Last"], float)


@pytest.mark.parametrize(
    "bad",
    [
        [],  # no rows
        [[1.0, 2.0]],  # base row only
        [[1.0, 2.0], [3.0, 4.0]],  # 2 rows -> T = 1 -> rows need 1 entry
        [[1.0], [2.0], [3.0]],  # 3 rows -> T = 2 -> rows need 2 entries
        [[1.0, 2.0], [3.0, 4.0], [5.0]],  # ragged
        [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]],  # T + 2 rows
    ],
)
def test_bad_shapes_raise(bad: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="continual_metrics"):
        continual_metrics(bad)


@pytest.mark.parametrize("value", ["50", True, math.nan, [1.0]])
def test_bad_values_raise(value: object) -> None:
    with pytest.raises(ValueError, match=r"entry \[1\]\[0\]"):
        continual_metrics([[0.0, 0.0], [value, 1.0], [2.0, 3.0]])  # type: ignore[list-item]
