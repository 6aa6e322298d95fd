"""Query-level resampling: bootstrap confidence intervals and paired tests (an improvement).

The study reports the spread of drop rates over seeds only. These functions add what the
query sample says (protocol §8.2 items 2–3):

* :func:`bootstrap_drop_rates`: resample queries with replacement (percentile intervals,
  B ≥ 1,000). Every seed is evaluated on the same queries, so one resample of query indices is
  applied to the clean scores and to every seed at once; the interval of the seed-mean drop rate
  then carries both sources of variation.
* :func:`paired_randomisation_test` (sign flips of per-query differences) and
  :func:`wilcoxon_test` (signed ranks, zero differences dropped) of clean vs perturbed per-query
  nDCG@10. :func:`paired_tests` runs both per seed and on the seed-averaged perturbed scores:
  the seeds share their queries, so per-seed p-values are not independent and are not combined
  with Fisher's method.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "BootstrapInterval",
    "PairedTest",
    "bootstrap_drop_rates",
    "paired_randomisation_test",
    "paired_tests",
    "wilcoxon_test",
]

log = logging.getLogger(__name__)

#: Resamples per chunk, so memory stays at chunk × seeds × queries floats.
_CHUNK = 200


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval of a drop rate (fractions).

    Attributes:
        estimate: The drop rate on the full query set.
        low, high: Interval bounds.
        confidence: Coverage, e.g. 0.95.
        n_resamples: Resamples used (those with a zero clean mean are left out and logged).

    Used in the book chapter "Query variations".
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int


def _as_matrix(clean: np.ndarray, perturbed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(clean, dtype=float)
    perturbed = np.atleast_2d(np.asarray(perturbed, dtype=float))
    if clean.ndim != 1 or perturbed.shape[1] != clean.shape[0]:
        raise ValueError(
            f"clean must be (n_queries,) and perturbed (n_seeds, n_queries); got {clean.shape} "
            f"and {perturbed.shape}"
        )
    if clean.size == 0:
        raise ValueError("no queries to resample")
    return clean, perturbed


def bootstrap_drop_rates(
    clean: np.ndarray,
    perturbed: np.ndarray,
    *,
    rng: np.random.Generator,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> tuple[list[BootstrapInterval], BootstrapInterval]:
    """Query-bootstrap intervals of the per-seed and seed-mean drop rates (chapter "Query variations").

    Args:
        clean: Per-query clean scores, shape ``(n_queries,)``.
        perturbed: Per-query perturbed scores, shape ``(n_seeds, n_queries)``, same query order.
        rng: Source of the resampled indices.
        n_resamples: Bootstrap resamples B.
        confidence: Interval coverage.

    Returns:
        One interval per seed (row order of ``perturbed``) and one for the mean over seeds.
    """
    clean, perturbed = _as_matrix(clean, perturbed)
    n = clean.size
    rates = []
    for start in range(0, n_resamples, _CHUNK):
        index = rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))
        clean_means = clean[index].mean(axis=1)
        perturbed_means = perturbed[:, index].mean(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            rates.append(np.where(clean_means > 0, (clean_means - perturbed_means) / clean_means, np.nan))
    rates = np.concatenate(rates, axis=1)  # (n_seeds, B)
    valid = ~np.isnan(rates[0])
    if not valid.all():
        log.warning("%d of %d resamples have a zero clean mean and are left out", (~valid).sum(), valid.size)
    rates = rates[:, valid]
    alpha = (1 - confidence) / 2
    point = (clean.mean() - perturbed.mean(axis=1)) / clean.mean()

    def interval(samples: np.ndarray, estimate: float) -> BootstrapInterval:
        low, high = np.quantile(samples, [alpha, 1 - alpha])
        return BootstrapInterval(float(estimate), float(low), float(high), confidence, int(samples.size))

    per_seed = [interval(rates[s], point[s]) for s in range(perturbed.shape[0])]
    return per_seed, interval(rates.mean(axis=0), point.mean())


@dataclass(frozen=True)
class PairedTest:
    """A paired two-sided test of clean vs perturbed per-query scores.

    Attributes:
        test: ``randomisation`` or ``wilcoxon``.
        statistic: Mean difference (perturbed − clean) for the randomisation test; the
            Wilcoxon W otherwise.
        p_value: Two-sided p-value.
        n_queries: Queries entering the test (Wilcoxon: non-zero differences only).

    Used in the book chapter "Query variations".
    """

    test: str
    statistic: float
    p_value: float
    n_queries: int


def paired_randomisation_test(
    clean: np.ndarray, perturbed: np.ndarray, *, rng: np.random.Generator, n_resamples: int = 10000
) -> PairedTest:
    """Sign-flip randomisation test of the mean per-query difference.

    Under the null, each query's difference is equally likely to have either sign. The p-value
    is (1 + #{|flipped mean| ≥ |observed mean|}) / (1 + B), which is never 0.

    Used in the book chapter "Query variations".
    """
    clean, matrix = _as_matrix(clean, perturbed)
    difference = matrix[0] - clean
    observed = abs(difference.mean())
    exceed = 0
    for start in range(0, n_resamples, _CHUNK):
        signs = rng.choice([-1.0, 1.0], size=(min(_CHUNK, n_resamples - start), difference.size))
        exceed += int(np.sum(np.abs((signs * difference).mean(axis=1)) >= observed - 1e-15))
    return PairedTest("randomisation", float(difference.mean()), (1 + exceed) / (1 + n_resamples), difference.size)


def wilcoxon_test(clean: np.ndarray, perturbed: np.ndarray) -> PairedTest:
    """Wilcoxon signed-rank test; zero differences (often unchanged queries) are dropped.

    With no non-zero difference there is no evidence of a change: p = 1.

    Used in the book chapter "Query variations".
    """
    clean, matrix = _as_matrix(clean, perturbed)
    difference = matrix[0] - clean
    nonzero = int(np.sum(difference != 0))
    if nonzero == 0:
        return PairedTest("wilcoxon", 0.0, 1.0, 0)
    result = stats.wilcoxon(matrix[0], clean, zero_method="wilcox", alternative="two-sided")
    return PairedTest("wilcoxon", float(result.statistic), float(result.pvalue), nonzero)


def paired_tests(
    clean: np.ndarray,
    perturbed: np.ndarray,
    *,
    seeds: Sequence[int],
    rng: np.random.Generator,
    n_resamples: int = 10000,
) -> pd.DataFrame:
    """Both paired tests per seed and on the seed-averaged scores (chapter "Query variations").

    Args:
        clean: ``(n_queries,)`` clean scores.
        perturbed: ``(n_seeds, n_queries)`` perturbed scores, rows in ``seeds`` order.
        seeds: The seed of each row.
        rng: Source of the sign flips.
        n_resamples: Sign-flip resamples per randomisation test.

    Returns:
        One row per (scores, test): ``scores`` is the seed or ``"seed mean"``; columns
        ``test, statistic, p_value, n_queries``.
    """
    clean, matrix = _as_matrix(clean, perturbed)
    if len(seeds) != matrix.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {matrix.shape[0]} rows of perturbed scores")
    rows = []
    for label, scores in [*zip(seeds, matrix), ("seed mean", matrix.mean(axis=0))]:
        for test in (paired_randomisation_test(clean, scores, rng=rng, n_resamples=n_resamples),
                     wilcoxon_test(clean, scores)):
            rows.append({"scores": label, **dataclasses.asdict(test)})
    return pd.DataFrame(rows)
