"""Correlations between a system-level measure and stability, with honest small-n inference.

Book chapter: *Embedding geometry and scaling* (RQ3, protocol §6.6, improvements §8.2
items 4 and 5), where each point is one system's seed-mean value and there are only a handful of
systems.

What the study computed, and what is added here:

* Pearson r with a two-sided p-value (``scipy.stats.pearsonr``), Spearman ρ and Kendall τ-b: the
  study's statistics. Each now carries a Fisher-z confidence interval, and
  :func:`bootstrap_interval` gives a paired bootstrap interval as an alternative.
* The partial correlation controlling for clean nDCG@10 (residualise both variables on the
  control by OLS, correlate the residuals). The study took its p-value from ``pearsonr`` on the
  residuals, i.e. with ``n − 2`` degrees of freedom; one control variable leaves ``n − 3``.
  Both are reported, the ``n − 3`` one as the p-value.
* Leave-one-system-out sensitivity (:func:`leave_one_out`).
* Holm and Benjamini–Hochberg adjustment across the grid of tests (:func:`adjust_p_values`,
  :func:`correlation_table`). **The study applied no multiple-comparison correction.**
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

logger = logging.getLogger(__name__)

# Variance of Fisher's z for rank correlations (Fieller, Hartley & Pearson, 1957):
# Spearman 1.06/(n − 3), Kendall 0.437/(n − 4); Pearson's is the textbook 1/(n − 3).
_SPEARMAN_Z_VARIANCE = 1.06
_KENDALL_Z_VARIANCE = 0.437

STUDY_SIGNIFICANCE_MARKERS: tuple[tuple[float, str], ...] = ((0.01, "**"), (0.05, "*"))
"""The study's panel markers: ``**`` for p < 0.01, ``*`` for p < 0.05 (protocol §6.6)."""


@dataclass(frozen=True)
class Correlation:
    """One correlation estimate with its test and interval.

    Attributes:
        method: ``"pearson"``, ``"spearman"``, ``"kendall_tau_b"`` or ``"partial_pearson"``.
        estimate: The coefficient, in [-1, 1].
        p_value: Two-sided p-value of zero correlation.
        ci_low: Lower end of the confidence interval.
        ci_high: Upper end of the confidence interval.
        confidence: Coverage of the interval, e.g. 0.95.
        n: Number of paired observations (systems).
        df: Degrees of freedom behind ``p_value`` (``None`` for Kendall's exact/normal test).
        p_value_study: For the partial correlation only: the study's p-value with ``n − 2``
            degrees of freedom (``pearsonr`` on the residuals); ``None`` otherwise.
    """

    method: str
    estimate: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    df: int | None = None
    p_value_study: float | None = None

    def as_dict(self) -> dict:
        """The fields as a plain dict (one table row)."""
        return asdict(self)


def _paired(x, y, names: tuple[str, str] = ("x", "y"), minimum: int = 4) -> tuple[np.ndarray, ...]:
    """Validate two paired samples: same length, finite, non-constant, at least ``minimum``."""
    arrays = []
    for name, values in zip(names, (x, y)):
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one value per system); got shape {array.shape}.")
        if not np.isfinite(array).all():
            position = int(np.flatnonzero(~np.isfinite(array))[0])
            raise ValueError(f"{name}[{position}] is NaN or infinite; drop that system or fix it.")
        arrays.append(array)
    if arrays[0].size != arrays[1].size:
        raise ValueError(
            f"{names[0]} and {names[1]} must pair one value per system; got lengths "
            f"{arrays[0].size} and {arrays[1].size}."
        )
    if arrays[0].size < minimum:
        raise ValueError(
            f"this correlation needs at least {minimum} systems for its interval; got {arrays[0].size}."
        )
    for name, array in zip(names, arrays):
        if np.ptp(array) == 0:
            raise ValueError(f"{name} is constant ({array[0]!r}); a correlation with it is undefined.")
    return tuple(arrays)


def _fisher_interval(estimate: float, standard_error: float, confidence: float) -> tuple[float, float]:
    """Back-transformed Fisher-z interval ``tanh(atanh(r) ± z_crit · se)``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}.")
    critical = scipy_stats.norm.ppf(0.5 + confidence / 2)
    with np.errstate(divide="ignore"):
        centre = np.arctanh(np.clip(estimate, -1.0, 1.0))
    return float(np.tanh(centre - critical * standard_error)), float(
        np.tanh(centre + critical * standard_error)
    )


def _t_test_p_value(estimate: float, df: int) -> float:
    """Two-sided p-value of a correlation coefficient via ``t = r √(df / (1 − r²))``."""
    if abs(estimate) >= 1:
        return 0.0
    t = estimate * math.sqrt(df / (1 - estimate**2))
    return float(2 * scipy_stats.t.sf(abs(t), df))


def pearson(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95) -> Correlation:
    """Pearson r with its t-test (df = n − 2) and a Fisher-z interval (se = 1/√(n − 3)).

    The study's statistic (``scipy.stats.pearsonr``, protocol §6.6). Used by the *Embedding
    geometry and scaling* chapter.

    Args:
        x: One value per system (e.g. IsoScore).
        y: One value per system, same order (e.g. drop rate).
        confidence: Interval coverage.

    Returns:
        The :class:`Correlation`.
    """
    x, y = _paired(x, y)
    n = x.size
    result = scipy_stats.pearsonr(x, y)
    estimate = float(result.statistic)
    low, high = _fisher_interval(estimate, 1 / math.sqrt(n - 3), confidence)
    return Correlation("pearson", estimate, float(result.pvalue), low, high, confidence, n, n - 2)


def spearman(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95) -> Correlation:
    """Spearman ρ with its t-approximation p-value and a Fisher-z interval.

    The interval uses Fieller, Hartley & Pearson's (1957) variance ``1.06/(n − 3)`` for z(ρ)
    (protocol §8.2 item 5). Used by the *Embedding geometry and scaling* chapter.

    Args:
        x: One value per system.
        y: One value per system, same order.
        confidence: Interval coverage.

    Returns:
        The :class:`Correlation`.
    """
    x, y = _paired(x, y)
    n = x.size
    result = scipy_stats.spearmanr(x, y)
    estimate = float(result.statistic)
    low, high = _fisher_interval(estimate, math.sqrt(_SPEARMAN_Z_VARIANCE / (n - 3)), confidence)
    return Correlation("spearman", estimate, float(result.pvalue), low, high, confidence, n, n - 2)


def kendall_tau_b(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95) -> Correlation:
    """Kendall τ-b with scipy's test and a Fisher-z interval (variance ``0.437/(n − 4)``).

    Printed by the study beside Pearson r (protocol §6.6). Used by the *Embedding geometry and
    scaling* chapter.

    Args:
        x: One value per system.
        y: One value per system, same order.
        confidence: Interval coverage.

    Returns:
        The :class:`Correlation` (``df`` is ``None``: scipy uses the exact null for small
        untied samples, a normal approximation otherwise).
    """
    x, y = _paired(x, y, minimum=5)
    n = x.size
    result = scipy_stats.kendalltau(x, y, variant="b")
    estimate = float(result.statistic)
    low, high = _fisher_interval(estimate, math.sqrt(_KENDALL_Z_VARIANCE / (n - 4)), confidence)
    return Correlation("kendall_tau_b", estimate, float(result.pvalue), low, high, confidence, n)


def residualize(values: Sequence[float], control: Sequence[float]) -> np.ndarray:
    """Residuals of an OLS fit of ``values`` on ``control`` with an intercept.

    Step 1 of the study's partial correlation (protocol §6.6). Used by
    :func:`partial_correlation`.

    Args:
        values: One value per system.
        control: The control variable (clean nDCG@10), same order.

    Returns:
        ``values − (a + b · control)``, summing to zero and orthogonal to ``control``.
    """
    values, control = _paired(values, control, ("values", "control"), minimum=3)
    design = np.column_stack([np.ones_like(control), control])
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coefficients


def partial_correlation(
    x: Sequence[float],
    y: Sequence[float],
    control: Sequence[float],
    *,
    confidence: float = 0.95,
) -> Correlation:
    """Pearson correlation of ``x`` and ``y`` controlling for one variable (protocol §6.6).

    Both variables are residualised on ``control`` (:func:`residualize`) and the residuals are
    correlated; this equals ``(r_xy − r_xz r_yz) / √((1 − r_xz²)(1 − r_yz²))``. The p-value uses
    the correct ``n − 3`` degrees of freedom; ``p_value_study`` is what the study printed
    (``pearsonr`` on the residuals, ``n − 2``). The Fisher-z interval uses se = 1/√(n − 4).
    Used by the *Embedding geometry and scaling* chapter.

    Args:
        x: One value per system (a geometry metric).
        y: One value per system (drop rate or ASR@20).
        control: One value per system (clean nDCG@10).
        confidence: Interval coverage.

    Returns:
        The :class:`Correlation` with ``method="partial_pearson"``, ``df = n − 3``.
    """
    x, y = _paired(x, y, minimum=5)
    _paired(x, control, ("x", "control"), minimum=5)
    residual_x, residual_y = residualize(x, control), residualize(y, control)
    if np.allclose(residual_x, 0) or np.allclose(residual_y, 0):
        raise ValueError(
            "a variable is an exact linear function of the control, so the partial correlation "
            "is undefined."
        )
    n = x.size
    estimate = float(np.clip(scipy_stats.pearsonr(residual_x, residual_y).statistic, -1, 1))
    low, high = _fisher_interval(estimate, 1 / math.sqrt(n - 4), confidence)
    return Correlation(
        "partial_pearson",
        estimate,
        _t_test_p_value(estimate, n - 3),
        low,
        high,
        confidence,
        n,
        n - 3,
        p_value_study=_t_test_p_value(estimate, n - 2),
    )


_METHODS = {"pearson": pearson, "spearman": spearman, "kendall_tau_b": kendall_tau_b}


def bootstrap_interval(
    x: Sequence[float],
    y: Sequence[float],
    *,
    method: str = "spearman",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a correlation, resampling systems in pairs.

    The alternative to the Fisher-z interval suggested in protocol §8.2 item 5. With a handful
    of systems some resamples repeat one system so often that a variable is constant; those have
    no correlation and are dropped (``scipy.stats.bootstrap`` would return NaN instead). Used by
    the *Embedding geometry and scaling* chapter.

    Args:
        x: One value per system.
        y: One value per system, same order.
        method: ``"pearson"``, ``"spearman"`` or ``"kendall_tau_b"``.
        confidence: Interval coverage.
        n_resamples: Bootstrap resamples.
        seed: Seed of the ``numpy.random.Generator``.

    Returns:
        ``(low, high)``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}; got {method!r}.")
    x, y = _paired(x, y)
    statistic = {
        "pearson": lambda a, b: scipy_stats.pearsonr(a, b).statistic,
        "spearman": lambda a, b: scipy_stats.spearmanr(a, b).statistic,
        "kendall_tau_b": lambda a, b: scipy_stats.kendalltau(a, b, variant="b").statistic,
    }[method]
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, x.size, size=(n_resamples, x.size))
    values = np.array(
        [
            statistic(x[rows], y[rows])
            for rows in indices
            if np.ptp(x[rows]) > 0 and np.ptp(y[rows]) > 0
        ]
    )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def leave_one_out(
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str],
    *,
    method: str = "pearson",
    control: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Recompute a correlation with each system left out in turn (protocol §8.2 item 5).

    Used by the *Embedding geometry and scaling* chapter to show whether one system drives a
    correlation.

    Args:
        x: One value per system.
        y: One value per system, same order.
        labels: System names, same order.
        method: ``"pearson"``, ``"spearman"``, ``"kendall_tau_b"``, or ``"partial_pearson"``
            (then ``control`` is required).
        control: The control variable for ``"partial_pearson"``.

    Returns:
        One row per left-out system: ``left_out``, ``estimate``, ``p_value``, ``n``.
    """
    x, y = _paired(x, y, minimum=5)
    labels = list(labels)
    if len(labels) != x.size:
        raise ValueError(f"labels must name each of the {x.size} systems; got {len(labels)}.")
    if method == "partial_pearson":
        if control is None:
            raise ValueError("method='partial_pearson' needs control (clean nDCG@10 per system).")
        control = np.asarray(control, dtype=np.float64)
    elif method not in _METHODS:
        raise ValueError(
            f"method must be one of {sorted(_METHODS) + ['partial_pearson']}; got {method!r}."
        )
    rows = []
    for left_out in range(x.size):
        keep = np.arange(x.size) != left_out
        if method == "partial_pearson":
            result = partial_correlation(x[keep], y[keep], control[keep])
        else:
            result = _METHODS[method](x[keep], y[keep])
        rows.append(
            {"left_out": labels[left_out], "estimate": result.estimate, "p_value": result.p_value, "n": result.n}
        )
    return pd.DataFrame(rows)


def adjust_p_values(
    p_values: Sequence[float], *, method: str = "holm", alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Adjust a family of p-values for multiple comparisons (protocol §8.2 item 4).

    A thin wrapper around ``statsmodels.stats.multitest.multipletests``; the study applied no
    correction. Used by :func:`correlation_table` (*Embedding geometry and scaling* chapter).

    Args:
        p_values: The family, e.g. every panel of Figures 2 and 3.
        method: ``"holm"`` (family-wise error) or ``"fdr_bh"`` (Benjamini–Hochberg FDR).
        alpha: Level for the reject decisions.

    Returns:
        ``(reject, adjusted)`` arrays in input order.
    """
    if method not in ("holm", "fdr_bh"):
        raise ValueError(f"method must be 'holm' or 'fdr_bh'; got {method!r}.")
    p_values = np.asarray(p_values, dtype=np.float64)
    if p_values.ndim != 1 or ((p_values < 0) | (p_values > 1) | np.isnan(p_values)).any():
        raise ValueError("p_values must be a 1-D sequence of numbers in [0, 1].")
    reject, adjusted, _, _ = multipletests(p_values, alpha=alpha, method=method)
    return reject, adjusted


def significance_marker(p_value: float) -> str:
    """The study's star marker for a p-value: ``"**"``, ``"*"`` or ``""`` (protocol §6.6).

    Used by the *Embedding geometry and scaling* chapter's panel titles.
    """
    for threshold, marker in STUDY_SIGNIFICANCE_MARKERS:
        if p_value < threshold:
            return marker
    return ""


def correlation_table(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    by: Sequence[str],
    control: str | None = None,
    confidence: float = 0.95,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every correlation of a grid of panels, with Holm and BH adjustment across the grid.

    One row per group of ``by`` (e.g. dataset × family × geometry metric), holding Pearson r
    (p, CI, R² as ``linregress`` would give), Spearman ρ (p, CI), Kendall τ-b (p) and, with
    ``control``, the partial correlation (p with ``n − 3``, the study's p with ``n − 2``).
    ``pearson_p_holm`` / ``pearson_p_bh`` (and ``partial_p_holm`` / ``partial_p_bh``) adjust
    across all rows. Groups with fewer than 5 systems, or in which ``x`` or ``y`` is constant
    (no correlation is defined), are left out. Used by the *Embedding
    geometry and scaling* chapter.

    Args:
        data: Long table, one row per (group, system).
        x: Column of the geometry metric.
        y: Column of the stability measure.
        by: Columns that define a panel.
        control: Column of the control (clean nDCG@10), or ``None``.
        confidence: Interval coverage.
        alpha: Level for the adjusted decisions.

    Returns:
        The table, sorted by ``by``.
    """
    needed = [*by, x, y] + ([control] if control else [])
    missing = [column for column in needed if column not in data.columns]
    if missing:
        raise KeyError(f"correlation_table: columns {missing} are missing; the table has {list(data.columns)}.")
    rows = []
    for key, group in data.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        if len(group) < 5:
            continue
        constant = [column for column in (x, y) if group[column].nunique() < 2]
        if constant:
            logger.warning("correlation_table: panel %s skipped, %s constant across its systems",
                           dict(zip(by, key)), " and ".join(constant))
            continue
        row = dict(zip(by, key))
        r = pearson(group[x], group[y], confidence=confidence)
        rho = spearman(group[x], group[y], confidence=confidence)
        tau = kendall_tau_b(group[x], group[y], confidence=confidence)
        row.update(
            n=r.n,
            pearson_r=r.estimate, pearson_p=r.p_value, pearson_ci_low=r.ci_low,
            pearson_ci_high=r.ci_high, r_squared=r.estimate**2, marker=significance_marker(r.p_value),
            spearman_rho=rho.estimate, spearman_p=rho.p_value, spearman_ci_low=rho.ci_low,
            spearman_ci_high=rho.ci_high, kendall_tau_b=tau.estimate, kendall_p=tau.p_value,
        )
        if control:
            partial = partial_correlation(group[x], group[y], group[control], confidence=confidence)
            row.update(
                partial_r=partial.estimate, partial_p=partial.p_value,
                partial_p_study=partial.p_value_study, partial_ci_low=partial.ci_low,
                partial_ci_high=partial.ci_high,
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for column in ["pearson_p"] + (["partial_p"] if control else []):
        stem = column.removesuffix("_p")
        table[f"{stem}_p_holm"] = adjust_p_values(table[column], method="holm", alpha=alpha)[1]
        table[f"{stem}_p_bh"] = adjust_p_values(table[column], method="fdr_bh", alpha=alpha)[1]
    return table
