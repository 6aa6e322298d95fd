"""Profiled (RE)ML for any lme4-style random part with up to a few thousand random effects.

Private helper of :func:`robustir.stats.mixed.fit_mixed` for what the nested-intercept path does
not cover: random slopes, correlated ``(1 + x | g)`` or uncorrelated ``(x || g)`` (lme4 expands
it to ``(1 | g) + (0 + x | g)``), several terms on one grouping factor, crossed intercepts.

The parameterisation is lme4's: ``V = s2 H`` with ``H = I + Z Lambda Lambda' Z'``, where
``Lambda`` is block diagonal and repeats, over the levels of each term's grouping factor, a
lower-triangular ``k x k`` template whose entries are ``theta`` (column by column). With
``M = Lambda' Z'Z Lambda + I`` (the matrix lme4 factorises)::

    log |H|           = log |M|
    [X y]' H^-1 [X y] = [X y]'[X y] - R' M^-1 R,   R = Lambda' Z' [X y]

so the data enter only through ``Z'Z``, ``Z'[X y]`` and ``[X y]'[X y]``. For the derivatives,
with ``K = Z' H^-1 Z``, ``B = Z' H^-1 [X y]`` and ``G_i = d(Lambda Lambda') / d theta_i``::

    d quad / d theta_i              = -B' G_i B
    d2 quad / d theta_i d theta_j   = -B' G_ij B + B' G_i K G_j B + B' G_j K G_i B
    d log|H| / d theta_i            = tr(K G_i)
    d2 log|H| / d theta_i d theta_j = tr(K G_ij) - tr(K G_i K G_j)

``M`` and ``K`` are dense (q x q) for q random effects, which bounds this path to
:data:`MAX_RANDOM_EFFECTS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse

from robustir.stats._formula import MixedModelInputError, RandomTerm
from robustir.stats._profiled import CriterionDerivatives

MAX_RANDOM_EFFECTS = 4000
"""Largest number of random effects the dense general path accepts (q x q matrices)."""


@dataclass(frozen=True)
class TermLayout:
    """Where one random term sits in ``Z`` and ``theta``.

    Attributes:
        labels: Effect names, e.g. ``("(Intercept)", "Days")``.
        n_levels: Levels of the grouping factor.
        offset: First column of the term in ``Z``; level ``g``, effect ``c`` is column
            ``offset + g * k + c``.
        theta_slice: The term's entries of ``theta``.
        entries: (row, column) of the template for each entry of ``theta_slice``.
    """

    labels: tuple[str, ...]
    n_levels: int
    offset: int
    theta_slice: slice
    entries: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        """Effects per level, ``k``."""
        return len(self.labels)


class GeneralCriterion:
    """Profiled criterion of a general random part (``_profiled.ProfiledCriterion``)."""

    def __init__(
        self,
        exog: np.ndarray,
        response: np.ndarray,
        terms: tuple[RandomTerm, ...],
        codes: list[np.ndarray],
        frame: pd.DataFrame,
    ):
        self.n_obs, self.n_fixed = exog.shape
        layouts, blocks, offset, start = [], [], 0, 0
        for term, code in zip(terms, codes):
            labels = (("(Intercept)",) if term.intercept else ()) + term.slopes
            values = [np.ones(self.n_obs)] if term.intercept else []
            for slope in term.slopes:
                if not pd.api.types.is_numeric_dtype(frame[slope]):
                    raise MixedModelInputError(
                        f"random slope {slope!r} has dtype {frame[slope].dtype}; slopes must be "
                        "numeric columns (code a factor's levels as 0/1 columns)"
                    )
                values.append(frame[slope].to_numpy(dtype=float))
            k, n_levels = len(labels), int(code.max()) + 1
            entries = tuple((r, c) for c in range(k) for r in range(c, k))
            layouts.append(
                TermLayout(labels, n_levels, offset, slice(start, start + len(entries)), entries)
            )
            rows = np.repeat(np.arange(self.n_obs), k)
            columns = (offset + code[:, None] * k + np.arange(k)[None, :]).ravel()
            blocks.append((np.column_stack(values).ravel(), rows, columns))
            offset += n_levels * k
            start += len(entries)
        if offset > MAX_RANDOM_EFFECTS:
            raise MixedModelInputError(
                f"the random part has {offset:,} random effects; the general path holds dense "
                f"{offset:,} x {offset:,} matrices and accepts at most {MAX_RANDOM_EFFECTS:,}. "
                "Nested random intercepts such as (1 | dataset_name/query_id) fit at any scale"
            )
        self.layouts = tuple(layouts)
        self.n_random, self.n_theta = offset, start
        data, rows, columns = (np.concatenate(parts) for parts in zip(*blocks))
        z = scipy.sparse.csr_matrix((data, (rows, columns)), shape=(self.n_obs, offset))
        xy = np.column_stack([exog, response])
        self.ztz = (z.T @ z).toarray()
        self.zt_xy = np.asarray(z.T @ xy)
        self.cross_product = xy.T @ xy

    @property
    def start(self) -> np.ndarray:
        """lme4's start: identity templates."""
        return np.concatenate([[1.0 if r == c else 0.0 for r, c in t.entries] for t in self.layouts])

    @property
    def lower(self) -> np.ndarray:
        """Diagonal template entries are non-negative, off-diagonal ones free."""
        return np.concatenate(
            [[0.0 if r == c else -np.inf for r, c in t.entries] for t in self.layouts]
        )

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """The lower-triangular ``k x k`` template of each term."""
        out = []
        for layout in self.layouts:
            template = np.zeros((layout.size, layout.size))
            for (r, c), value in zip(layout.entries, theta[layout.theta_slice]):
                template[r, c] = value
            out.append(template)
        return out

    def _expand(self, blocks: list[np.ndarray]) -> scipy.sparse.csr_matrix:
        """Block-diagonal q x q matrix repeating each term's ``k x k`` block over its levels."""
        return scipy.sparse.block_diag(
            [scipy.sparse.kron(scipy.sparse.identity(t.n_levels), b) for t, b in zip(self.layouts, blocks)],
            format="csr",
        )

    def _factorise(self, theta: np.ndarray):
        lam = self._expand(self.templates(theta))
        scaled = lam.T @ (lam.T @ self.ztz).T  # Lambda' Z'Z Lambda (Z'Z is symmetric)
        factor = scipy.linalg.cho_factor(scaled + np.eye(self.n_random), lower=True)
        log_det = 2.0 * float(np.sum(np.log(np.diag(factor[0]))))
        return lam, factor, log_det

    def evaluate(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        """``([X y]' H^-1 [X y], log |H|)`` at ``theta``."""
        lam, factor, log_det = self._factorise(theta)
        r = lam.T @ self.zt_xy
        return self.cross_product - r.T @ scipy.linalg.cho_solve(factor, r), log_det

    def derivatives(self, theta: np.ndarray) -> CriterionDerivatives:
        """Exact first and second derivatives in ``theta``; see the module doc."""
        lam, factor, log_det = self._factorise(theta)
        r = lam.T @ self.zt_xy
        quad = self.cross_product - r.T @ scipy.linalg.cho_solve(factor, r)
        w = np.asarray(lam.T @ self.ztz)  # Lambda' Z'Z
        k_matrix = self.ztz - w.T @ scipy.linalg.cho_solve(factor, w)
        b = self.zt_xy - w.T @ scipy.linalg.cho_solve(factor, r)
        templates = self.templates(theta)
        g = [self._g_first(templates, i) for i in range(self.n_theta)]
        kg = [np.asarray((gi.T @ k_matrix.T).T) for gi in g]  # K G_i
        gb = [gi @ b for gi in g]
        quad_gradient = np.stack([-b.T @ x for x in gb])
        log_det_gradient = np.array([np.trace(x) for x in kg])
        n = self.n_theta
        quad_hessian = np.empty((n, n) + quad.shape)
        log_det_hessian = np.empty((n, n))
        for i in range(n):
            for j in range(i, n):
                g_ij = self._g_second(i, j)
                cross = gb[i].T @ k_matrix @ gb[j]
                value = cross + cross.T
                trace = -float(np.sum(kg[i] * kg[j].T))
                if g_ij is not None:
                    value = value - b.T @ (g_ij @ b)
                    trace += float(np.sum(k_matrix * g_ij.toarray()))
                quad_hessian[i, j] = quad_hessian[j, i] = value
                log_det_hessian[i, j] = log_det_hessian[j, i] = trace
        return CriterionDerivatives(
            quad, quad_gradient, quad_hessian, log_det, log_det_gradient, log_det_hessian
        )

    def _locate(self, i: int) -> tuple[int, tuple[int, int]]:
        for index, layout in enumerate(self.layouts):
            if layout.theta_slice.start <= i < layout.theta_slice.stop:
                return index, layout.entries[i - layout.theta_slice.start]
        raise IndexError(i)

    def _unit(self, term: int, entry: tuple[int, int]) -> np.ndarray:
        unit = np.zeros((self.layouts[term].size,) * 2)
        unit[entry] = 1.0
        return unit

    def _g_first(self, templates: list[np.ndarray], i: int) -> scipy.sparse.csr_matrix:
        """``G_i = E_i T' + T E_i'`` on term ``i``'s blocks, zero elsewhere."""
        term, entry = self._locate(i)
        unit = self._unit(term, entry)
        blocks = [np.zeros_like(t) for t in templates]
        blocks[term] = unit @ templates[term].T + templates[term] @ unit.T
        return self._expand(blocks)

    def _g_second(self, i: int, j: int) -> scipy.sparse.csr_matrix | None:
        """``G_ij = E_i E_j' + E_j E_i'``; None where it vanishes."""
        (term_i, entry_i), (term_j, entry_j) = self._locate(i), self._locate(j)
        if term_i != term_j or entry_i[1] != entry_j[1]:
            return None
        e_i, e_j = self._unit(term_i, entry_i), self._unit(term_j, entry_j)
        blocks = [np.zeros((t.size, t.size)) for t in self.layouts]
        blocks[term_i] = e_i @ e_j.T + e_j @ e_i.T
        return self._expand(blocks)

    def variance_components(
        self, theta: np.ndarray, sigma2: float, group_names: list[str]
    ) -> list[tuple[str, str, float]]:
        """``(group, effect or cov(a, b), value)`` rows: ``s2 T T'`` of each term."""
        rows = []
        for layout, template, group in zip(self.layouts, self.templates(theta), group_names):
            covariance = sigma2 * template @ template.T
            labels = layout.labels
            rows.extend((group, label, float(covariance[c, c])) for c, label in enumerate(labels))
            rows.extend(
                (group, f"cov({labels[a]}, {labels[b]})", float(covariance[a, b]))
                for a in range(len(labels)) for b in range(a + 1, len(labels))
            )
        return rows
