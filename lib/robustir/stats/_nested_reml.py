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
criterion (``_profiled``) equals lme4's ``REML criterion at convergence`` (and ML deviance). The
same sums give its exact first and second derivatives (:class:`NestedCriterion`), which the
Satterthwaite degrees of freedom need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from robustir.stats._profiled import CriterionDerivatives


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
    pair_of_inner = pair_of_inner.reshape(-1)
    pair_sums = scipy.sparse.csr_matrix(
        (np.ones(n_inner), (pair_of_inner, np.arange(n_inner))), shape=(len(pairs), n_inner)
    ) @ sums
    n_outer = int(outer_of_inner.max()) + 1
    membership = scipy.sparse.csr_matrix(
        (np.ones(len(pairs)), (pairs // n_sizes, np.arange(len(pairs)))),
        shape=(n_outer, len(pairs)),
    )
    return NestedInterceptData(
        len(response), p, cross, size_values, size_counts, size_cross, pair_sums,
        pairs % n_sizes, np.bincount(pair_of_inner).astype(float), membership,
    )


class NestedCriterion:
    """The profiled criterion of a nested random-intercept model, with exact derivatives.

    Implements ``_profiled.ProfiledCriterion`` for ``theta = (t_inner[, t_outer])``. The
    derivatives are taken in ``u = t_inner^2`` and ``v = t_outer^2``, in which ``H`` is linear,
    and carried to ``theta`` by the chain rule; every term is a sum over sizes or outer groups
    (see the module doc), so a derivative costs what one evaluation costs.
    """

    def __init__(self, data: NestedInterceptData):
        self.data = data
        self.n_obs = data.n_obs
        self.n_fixed = data.n_fixed

    def evaluate(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        """``([X y]' H^-1 [X y], log |H|)`` at ``theta``."""
        data = self.data
        u = float(theta[0]) ** 2
        c = u / (1.0 + data.size_values * u)
        quad = data.cross_product - np.tensordot(c, data.size_cross_products, axes=1)
        log_det = float(data.size_counts @ np.log1p(data.size_values * u))
        if data.outer_membership is not None:
            v = float(theta[1]) ** 2
            w = (1.0 / (1.0 + data.size_values * u))[data.pair_size]
            totals = data.outer_membership @ (w[:, None] * data.pair_sums)
            weight_sums = data.outer_membership @ (data.pair_counts * data.size_values[data.pair_size] * w)
            alpha = v / (1.0 + v * weight_sums)
            quad = quad - totals.T @ (alpha[:, None] * totals)
            log_det += float(np.sum(np.log1p(v * weight_sums)))
        return quad, log_det

    def derivatives(self, theta: np.ndarray) -> CriterionDerivatives:
        """Exact first and second derivatives in ``theta``; see the class doc."""
        data = self.data
        sizes, counts = data.size_values, data.size_counts
        u = float(theta[0]) ** 2
        one = 1.0 + sizes * u
        # c = u / (1 + n u) and its u-derivatives; w = 1 / (1 + n u) likewise.
        c_u, c_uu = 1.0 / one**2, -2.0 * sizes / one**3
        quad, log_det = self.evaluate(theta)
        q_u = -np.tensordot(c_u, data.size_cross_products, axes=1)
        q_uu = -np.tensordot(c_uu, data.size_cross_products, axes=1)
        l_u = float(counts @ (sizes / one))
        l_uu = -float(counts @ (sizes**2 / one**2))
        if data.outer_membership is None:
            a = float(theta[0])
            return CriterionDerivatives(
                quad, (2.0 * a * q_u)[None], (2.0 * q_u + 4.0 * u * q_uu)[None, None],
                log_det, np.array([2.0 * a * l_u]), np.array([[2.0 * l_u + 4.0 * u * l_uu]]),
            )
        v = float(theta[1]) ** 2
        size = sizes[data.pair_size]
        member = data.outer_membership
        w, w_u, w_uu = (f[data.pair_size] for f in (1.0 / one, -sizes / one**2, 2.0 * sizes**2 / one**3))
        t, t_u, t_uu = (member @ (f[:, None] * data.pair_sums) for f in (w, w_u, w_uu))
        s, s_u, s_uu = (member @ (data.pair_counts * size * f) for f in (w, w_u, w_uu))
        d = 1.0 + v * s
        # alpha = v / (1 + v s): partial derivatives in v and s, then in u through s(u).
        al_v, al_vv = 1.0 / d**2, -2.0 * s / d**3
        al_s, al_ss, al_vs = -(v**2) / d**2, 2.0 * v**3 / d**3, -2.0 * v / d**3
        alpha = v / d
        al_u, al_uu, al_uv = al_s * s_u, al_ss * s_u**2 + al_s * s_uu, al_vs * s_u

        def outer(weights, left, right=None):
            right = left if right is None else right
            product = left.T @ (weights[:, None] * right)
            return product if right is left else product + product.T

        q_u = q_u - outer(al_u, t) - outer(alpha, t_u, t)
        q_v = -outer(al_v, t)
        q_uu = q_uu - (
            outer(al_uu, t) + 2.0 * outer(al_u, t_u, t) + outer(alpha, t_uu, t) + 2.0 * outer(alpha, t_u)
        )
        q_uv = -(outer(al_uv, t) + outer(al_v, t_u, t))
        q_vv = -outer(al_vv, t)
        l_u += float(np.sum(v * s_u / d))
        l_v = float(np.sum(s / d))
        l_uu += float(np.sum(v * s_uu / d - v**2 * s_u**2 / d**2))
        l_uv = float(np.sum(s_u / d**2))
        l_vv = -float(np.sum(s**2 / d**2))
        # Chain rule to theta = (a, b) with u = a^2, v = b^2.
        a, b = float(theta[0]), float(theta[1])
        quad_gradient = np.stack([2.0 * a * q_u, 2.0 * b * q_v])
        cross = 4.0 * a * b * q_uv
        quad_hessian = np.stack([
            np.stack([2.0 * q_u + 4.0 * u * q_uu, cross]),
            np.stack([cross, 2.0 * q_v + 4.0 * v * q_vv]),
        ])
        log_det_hessian = np.array([
            [2.0 * l_u + 4.0 * u * l_uu, 4.0 * a * b * l_uv],
            [4.0 * a * b * l_uv, 2.0 * l_v + 4.0 * v * l_vv],
        ])
        return CriterionDerivatives(
            quad, quad_gradient, quad_hessian, log_det,
            np.array([2.0 * a * l_u, 2.0 * b * l_v]), log_det_hessian,
        )
