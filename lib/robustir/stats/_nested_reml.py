"""Profiled (RE)ML for one or two nested levels of random intercepts, at any scale.

Private helper of :func:`robustir.stats.mixed.fit_mixed` (protocol §3.7, "Specialised REML").

The model is ``y = X beta + Z_outer u + Z_inner v + e`` with ``u ~ N(0, s2_outer I)``,
``v ~ N(0, s2_inner I)``, ``e ~ N(0, s2 I)`` and every inner group inside one outer group. Write
``V = s2 H`` with the relative scales ``theta = (s_inner / s, s_outer / s)`` (lme4's
parameterisation). Within an inner group ``q`` of size ``n_q`` the block of ``H`` restricted to
the inner level is ``I + t_q^2 J``; its inverse is ``I - c_q J`` with
``c_q = t_q^2 / (1 + n_q t_q^2)``. Adding the outer level is a rank-one update per outer group
``d`` (Sherman-Morrison, ``A^{-1} 1 = w_q 1`` with ``w_q = 1 / (1 + n_q t_q^2)``), so for any
columns ``a, b`` of ``[X y]``::

    a' H^{-1} b = a'b - sum_q c_q S_q(a) S_q(b) - sum_d t_d^2 / (1 + t_d^2 s_d) T_d(a) T_d(b)
    log |H|     = sum_q log(1 + n_q t_q^2) + sum_d log(1 + t_d^2 s_d)

with ``S_q`` the within-group sums, ``T_d = sum_{q in d} w_q S_q`` and ``s_d = sum_q n_q w_q``.
Everything needed is the cross-product of ``[X y]`` and the per-group sums, so one evaluation of
the profiled criterion costs O(groups x p) and the data are never held as a dense design. The
criterion equals lme4's ``REML criterion at convergence`` (and ML deviance).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NestedInterceptData:
    """Sufficient statistics of a nested random-intercept model.

    ``w_q`` depends on a group only through its size, so the outer-level totals
    ``T_d = sum_q w_q S_q`` are sums over (outer group, size) pairs of pre-summed ``S_q``; one
    evaluation of the criterion then never touches the individual groups.

    Attributes:
        n_obs: Number of observations.
        n_fixed: Number of fixed-effect columns ``p``.
        cross_product: ``[X y]' [X y]``, shape (p + 1, p + 1).
        size_values: Distinct inner-group sizes.
        size_counts: Number of inner groups of each distinct size.
        size_cross_products: For each distinct size, ``sum S_q S_q'`` over groups of that size.
        pair_sums: ``sum S_q`` per (outer group, size) pair, shape (pairs, p + 1).
        pair_size: Size index of each pair.
        pair_counts: Number of inner groups in each pair.
        outer_membership: Sparse (outer groups x pairs) 0/1 matrix, or None for one level.
    """

    n_obs: int
    n_fixed: int
    cross_product: np.ndarray
    size_values: np.ndarray
    size_counts: np.ndarray
    size_cross_products: np.ndarray
    pair_sums: np.ndarray | None
    pair_size: np.ndarray | None
    pair_counts: np.ndarray | None
    outer_membership: scipy.sparse.csr_matrix | None


def sufficient_statistics(
    cell_design: np.ndarray,
    cell_of_row: np.ndarray,
    response: np.ndarray,
    inner_of_row: np.ndarray,
    outer_of_inner: np.ndarray | None,
) -> NestedInterceptData:
    """Reduce the data to the statistics the profiled criterion needs.

    Args:
        cell_design: Distinct fixed-effect design rows, shape (cells, p).
        cell_of_row: Index of each observation's design row.
        response: Observations.
        inner_of_row: Inner-group code (0..groups-1) of each observation.
        outer_of_inner: Outer-group code of each inner group, or None for a single level.
    """
    n_cells, p = cell_design.shape
    n_inner = int(inner_of_row.max()) + 1
    cell_counts = np.bincount(cell_of_row, minlength=n_cells).astype(float)
    cell_response = np.bincount(cell_of_row, weights=response, minlength=n_cells)
    cross = np.empty((p + 1, p + 1))
    cross[:p, :p] = cell_design.T @ (cell_counts[:, None] * cell_design)
    cross[:p, p] = cross[p, :p] = cell_design.T @ cell_response
    cross[p, p] = float(response @ response)
    counts = scipy.sparse.csr_matrix(
        (np.ones(len(response)), (inner_of_row, cell_of_row)), shape=(n_inner, n_cells)
    )
    sums = np.empty((n_inner, p + 1))
    sums[:, :p] = counts @ cell_design
    sums[:, p] = np.bincount(inner_of_row, weights=response, minlength=n_inner)
    sizes = np.bincount(inner_of_row, minlength=n_inner).astype(float)
    size_values, size_index, size_counts = np.unique(
        sizes, return_inverse=True, return_counts=True
    )
    size_cross = np.empty((len(size_values), p + 1, p + 1))
    for k in range(len(size_values)):
        block = sums[size_index == k]
        size_cross[k] = block.T @ block
    if outer_of_inner is None:
        return NestedInterceptData(
            len(response), p, cross, size_values, size_counts, size_cross, None, None, None, None
        )
    n_sizes = len(size_values)
    pairs, pair_of_inner = np.unique(
        outer_of_inner * n_sizes + size_index, return_inverse=True
    )
    pair_sums = np.zeros((len(pairs), p + 1))
    np.add.at(pair_sums, pair_of_inner, sums)
    n_outer = int(outer_of_inner.max()) + 1
    membership = scipy.sparse.csr_matrix(
        (np.ones(len(pairs)), (pairs // n_sizes, np.arange(len(pairs)))),
        shape=(n_outer, len(pairs)),
    )
    return NestedInterceptData(
        len(response), p, cross, size_values, size_counts, size_cross, pair_sums,
        pairs % n_sizes, np.bincount(pair_of_inner).astype(float), membership,
    )


@dataclass(frozen=True)
class ProfiledSolution:
    """Fixed effects and scale at given relative scales ``theta``."""

    deviance: float
    coefficients: np.ndarray
    sigma2: float
    unscaled_covariance: np.ndarray | None


def profiled_solution(
    data: NestedInterceptData, theta: np.ndarray, reml: bool, with_covariance: bool = False
) -> ProfiledSolution:
    """Profile out ``beta`` and ``s2`` at ``theta = (t_inner[, t_outer])``; see the module doc.

    ``with_covariance`` adds ``(X' H^-1 X)^-1`` (skipped inside the optimizer's loop).
    """
    p, n = data.n_fixed, data.n_obs
    t2 = float(theta[0]) ** 2
    c = t2 / (1.0 + data.size_values * t2)
    quad = data.cross_product - np.tensordot(c, data.size_cross_products, axes=1)
    log_det_h = float(data.size_counts @ np.log1p(data.size_values * t2))
    if data.outer_membership is not None:
        w = (1.0 / (1.0 + data.size_values * t2))[data.pair_size]
        totals = data.outer_membership @ (w[:, None] * data.pair_sums)
        weight_sums = data.outer_membership @ (
            data.pair_counts * data.size_values[data.pair_size] * w
        )
        o2 = float(theta[1]) ** 2
        a = o2 / (1.0 + o2 * weight_sums)
        quad = quad - totals.T @ (a[:, None] * totals)
        log_det_h += float(np.sum(np.log1p(o2 * weight_sums)))
    xtx, xty, yty = quad[:p, :p], quad[:p, p], quad[p, p]
    factor = scipy.linalg.cho_factor(xtx, lower=True)
    beta = scipy.linalg.cho_solve(factor, xty)
    rss = max(float(yty - xty @ beta), np.finfo(float).tiny)
    dof = n - p if reml else n
    deviance = log_det_h + dof * (1.0 + np.log(2.0 * np.pi * rss / dof))
    if reml:
        deviance += 2.0 * float(np.sum(np.log(np.diag(factor[0]))))
    unscaled = scipy.linalg.cho_solve(factor, np.eye(p)) if with_covariance else None
    return ProfiledSolution(float(deviance), beta, rss / dof, unscaled)


@dataclass(frozen=True)
class NestedFit:
    """Optimum of the profiled criterion.

    Attributes:
        theta: Relative scales (inner, outer) at the optimum.
        solution: Profiled solution there.
        optimizer: Name of the optimizer whose result was kept.
        converged: Whether that optimizer reported success.
        deviances: Criterion reached by each optimizer tried.
    """

    theta: np.ndarray
    solution: ProfiledSolution
    optimizer: str
    converged: bool
    deviances: dict[str, float]


def fit_nested(data: NestedInterceptData, reml: bool) -> NestedFit:
    """Minimise the profiled criterion over ``theta >= 0`` with two optimizers (protocol §3.7).

    Both L-BFGS-B and bounded Nelder-Mead start from lme4's start ``theta = 1``; the lower
    criterion is kept.
    """
    k = 1 if data.outer_membership is None else 2

    def objective(theta: np.ndarray) -> float:
        return profiled_solution(data, theta, reml).deviance

    start = np.ones(k)
    bounds = [(0.0, None)] * k
    candidates = {
        "L-BFGS-B": scipy.optimize.minimize(
            objective, start, method="L-BFGS-B", bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000},
        ),
        "Nelder-Mead": scipy.optimize.minimize(
            objective, start, method="Nelder-Mead", bounds=bounds,
            options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000},
        ),
    }
    deviances = {name: float(res.fun) for name, res in candidates.items()}
    best = min(candidates, key=deviances.get)
    result = candidates[best]
    log.info("nested REML: criteria %s, kept %s", deviances, best)
    theta = np.abs(np.asarray(result.x, dtype=float))
    solution = profiled_solution(data, theta, reml, with_covariance=True)
    return NestedFit(theta, solution, best, bool(result.success), deviances)
