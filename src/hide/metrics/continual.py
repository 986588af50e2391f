"""Continual-learning metrics over the (T+1) x T accuracy matrix (protocol.md, "Continual-learning metrics").

Notation (1-based, as in the protocol): ``a[t][i]`` is the score (0-100) on task ``i`` after
training through task ``t``, for ``t = 1..T``; row ``a[0]`` is the untrained base model. In the
Python list, row ``t`` is ``matrix[t]`` and task ``i`` is column ``i - 1``.

A schedule that skips some evaluations stores ``None`` there. Every metric is computed only from
the entries its formula reads; if any of those is ``None`` the metric is ``None`` (absent), never
a number computed from a partial sum. Entries each metric reads:

============  ===========================================================================
Last          row T: ``a[T][i]`` for all i
Avg           the lower triangle with the diagonal, rows 1..T: ``a[t][i]`` for i <= t
MFT           the diagonal: ``a[i][i]``
BWT           ``a[T][i]`` and ``a[i][i]`` for i < T
FWT           the first superdiagonal ``a[i-1][i]`` and the base row ``a[0][i]``, for i >= 2
Forgetting    ``a[l][i]`` for i < T and i <= l <= T
============  ===========================================================================

So ``a[0][1]`` and the entries above the first superdiagonal are read by no metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real

METRIC_NAMES: tuple[str, ...] = ("Last", "Avg", "MFT", "BWT", "FWT", "Forgetting")

Matrix = Sequence[Sequence[float | None]]


class _Missing(Exception):
    """Raised inside a metric when an entry it needs is None; turns the metric into None."""


def _validated(matrix: Matrix) -> list[list[float | None]]:
    """Copy ``matrix`` into lists of float-or-None, checking the (T+1) x T shape and the values."""
    rows = [list(row) for row in matrix]
    if len(rows) < 2:
        raise ValueError(
            f"continual_metrics: need T+1 >= 2 rows (base model row 0, then one row per task), got {len(rows)}"
        )
    n_tasks = len(rows) - 1
    for t, row in enumerate(rows):
        if len(row) != n_tasks:
            raise ValueError(
                f"continual_metrics: a (T+1) x T matrix with T={n_tasks} needs {n_tasks} entries per row, "
                f"but row {t} has {len(row)}"
            )
        for i, value in enumerate(row):
            if value is None:
                continue
            # bool is a Real subclass; a True/False score is certainly a bug upstream.
            if isinstance(value, bool) or not isinstance(value, Real):
                raise ValueError(f"continual_metrics: entry [{t}][{i}] is {value!r}, expected a number or None")
            if math.isnan(value):
                # NaN would silently poison sums; the protocol's marker for "not evaluated" is None.
                raise ValueError(f"continual_metrics: entry [{t}][{i}] is NaN; use None for a missing score")
            row[i] = float(value)
    return rows


def continual_metrics(matrix: Matrix) -> dict[str, float | None]:
    """Last, Avg, MFT, BWT, FWT and Forgetting of a (T+1) x T score matrix (see the module docstring).

    With ``a[t][i]`` 1-based as in the protocol (``a[t][i] == matrix[t][i-1]``):

    - Last (MFN)  = (1/T) sum_i a[T][i]                                      -- final average
    - Avg (MAA)   = (1/T) sum_t (1/t) sum_{i<=t} a[t][i]                      -- mean seen-task average
    - MFT         = (1/T) sum_i a[i][i]                                      -- plasticity
    - BWT         = (1/(T-1)) sum_{i<T} (a[T][i] - a[i][i])                  -- negative = forgetting
    - FWT         = (1/(T-1)) sum_{i>=2} (a[i-1][i] - a[0][i])               -- zero-shot gain from earlier tasks
    - Forgetting  = (1/(T-1)) sum_{i<T} (max_{l in [i, T-1]} a[l][i] - a[T][i])

    BWT, FWT and Forgetting average over T-1 tasks and are None for T = 1. Any metric that reads a
    None entry is None. Identity: Last - MFT == ((T-1)/T) * BWT.

    Forgetting, taken literally as above (Chaudhry et al. 2018), is negative when a task ends
    higher than its best earlier score; it is >= 0 whenever no task improves after it was learned,
    and always >= -BWT (the max includes l = i).

    Raises ValueError for a matrix that is not (T+1) x T with T >= 1 or holds non-numbers/NaN.
    """
    a = _validated(matrix)
    T = len(a) - 1

    def at(t: int, i: int) -> float:
        """a[t][i] with the protocol's 1-based task index."""
        value = a[t][i - 1]
        if value is None:
            raise _Missing
        return value

    def last() -> float:
        return sum(at(T, i) for i in range(1, T + 1)) / T

    def avg() -> float:
        return sum(sum(at(t, i) for i in range(1, t + 1)) / t for t in range(1, T + 1)) / T

    def mft() -> float:
        return sum(at(i, i) for i in range(1, T + 1)) / T

    def bwt() -> float:
        return sum(at(T, i) - at(i, i) for i in range(1, T)) / (T - 1)

    def fwt() -> float:
        return sum(at(i - 1, i) - at(0, i) for i in range(2, T + 1)) / (T - 1)

    def forgetting() -> float:
        return sum(max(at(l, i) for l in range(i, T)) - at(T, i) for i in range(1, T)) / (T - 1)

    formulas: dict[str, Callable[[], float]] = {
        "Last": last,
        "Avg": avg,
        "MFT": mft,
        "BWT": bwt,
        "FWT": fwt,
        "Forgetting": forgetting,
    }
    needs_two_tasks = {"BWT", "FWT", "Forgetting"}  # averages over T-1 tasks: undefined for T = 1

    result: dict[str, float | None] = {}
    for name in METRIC_NAMES:
        if T == 1 and name in needs_two_tasks:
            result[name] = None
            continue
        try:
            result[name] = formulas[name]()
        except _Missing:
            result[name] = None
    return result
