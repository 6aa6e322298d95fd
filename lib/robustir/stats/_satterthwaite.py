"""Satterthwaite degrees of freedom for fixed-effect contrasts, as lmerTest defines them.

Private helper of :mod:`robustir.stats.mixed`. lmerTest (Kuznetsova, Brockhoff & Christensen
2017, JSS 82(13)) works with the variance parameters ``varpar = (theta, sigma)`` and

- ``A_varpar = 2 H^-1``, ``H`` the Hessian of the REML criterion in ``varpar`` with ``beta``
  profiled out and ``sigma`` free (lmerTest's ``devfun_vp``);
- ``J_k = d C / d varpar_k``, ``C(varpar) = sigma^2 (X' H(theta)^-1 X)^-1`` the covariance of
  the fixed effects.

A contrast row ``l`` has ``df = 2 (l C l')^2 / (g' A_varpar g)`` with ``g_k = l J_k l'``. A
matrix ``L`` of several rows is tested as lmerTest's ``contestMD``: the eigen-decomposition
``L C L' = P D P'`` turns it into independent rows ``P' L``, ``F`` is the mean of their squared
t ratios and the denominator df combines their dfs ``nu_m`` as ``2 E / (E - q)`` with
``E = sum nu_m / (nu_m - 2)``. lmerTest takes both derivatives numerically (numDeriv); here
they are exact, from the criterion's derivatives (``_profiled``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from robustir.stats._profiled import CriterionDerivatives, residual_dof, residual_terms

log = logging.getLogger(__name__)

EIGENVALUE_TOLERANCE = 1e-8
"""Hessian eigenvalues at or below this are left out of ``A_varpar`` (lmerTest's ``tol``)."""


@dataclass(frozen=True)
class SatterthwaiteInference:
    """lmerTest's ingredients at the optimum.

    Attributes:
        parameters: ``varpar = (theta..., sigma)``.
        parameter_covariance: ``A_varpar = 2 H^+`` (pseudo-inverse over the positive
            eigenvalues of ``H``).
        covariance_jacobian: ``J_k``, shape (len(parameters), p, p).
        coefficient_covariance: ``C`` at the optimum (lme4's ``vcov``).
    """

    parameters: np.ndarray
    parameter_covariance: np.ndarray
    covariance_jacobian: np.ndarray
    coefficient_covariance: np.ndarray

    def degrees_of_freedom(self, rows: np.ndarray) -> np.ndarray:
        """Satterthwaite df of each contrast row (shape (m, p) -> (m,))."""
        rows = np.atleast_2d(rows)
        variance = np.einsum("ia,ab,ib->i", rows, self.coefficient_covariance, rows)
        gradient = np.einsum("ia,kab,ib->ik", rows, self.covariance_jacobian, rows)
        denominator = np.einsum("ik,kl,il->i", gradient, self.parameter_covariance, gradient)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2.0 * variance**2 / denominator

    def f_test(self, hypothesis: np.ndarray, coefficients: np.ndarray) -> tuple[float, int, float]:
        """``(F, numerator df, denominator df)`` of ``L beta = 0`` as lmerTest's ``contestMD``.

        The numerator df is the number of positive eigenvalues of ``L C L'`` (above
        ``sqrt(machine eps)`` times the largest); a rank-deficient ``L`` is tested on its row
        space.
        """
        covariance = hypothesis @ self.coefficient_covariance @ hypothesis.T
        values, vectors = np.linalg.eigh((covariance + covariance.T) / 2.0)
        values, vectors = values[::-1], vectors[:, ::-1]
        positive = values > max(np.sqrt(np.finfo(float).eps) * values[0], 0.0)
        q = int(positive.sum())
        if q == 0:
            return float("nan"), 0, float("nan")
        rotated = vectors[:, positive].T @ hypothesis
        t_squared = (rotated @ coefficients) ** 2 / values[positive]
        nu = self.degrees_of_freedom(rotated)
        return float(t_squared.sum() / q), q, combined_denominator_df(nu)


def combined_denominator_df(nu: np.ndarray, *, tolerance: float = 1e-8) -> float:
    """Denominator df of an F test from the dfs of its independent t ratios (lmerTest).

    One ratio: its df. Equal dfs: their mean. Any df <= 2: 2. Otherwise ``2 E / (E - q)`` with
    ``E = sum nu / (nu - 2)``.
    """
    nu = np.asarray(nu, dtype=float)
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tolerance):
        return float(nu.mean())
    if np.any(nu <= 2.0):
        return 2.0
    expected = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * expected / (expected - len(nu))


def satterthwaite_inference(
    d: CriterionDerivatives, theta: np.ndarray, n_obs: int, reml: bool
) -> SatterthwaiteInference:
    """lmerTest's ``vcov_varpar`` and ``Jac_list`` from the criterion's exact derivatives.

    The criterion in ``varpar`` (lmerTest's ``devfun_vp``) is
    ``log|H| + [REML: log|A|] + dof log(2 pi sigma^2) + r / sigma^2``; its Hessian blocks are
    ``d2/dtheta2 = log|H|'' + log|A|'' + r'' / sigma^2``, ``d2/dtheta dsigma = -2 r' / sigma^3``
    and ``d2/dsigma2 = -2 dof / sigma^2 + 6 r / sigma^4``, at ``sigma^2 = r / dof``.
    """
    p = d.quad.shape[0] - 1
    terms = residual_terms(d)
    dof = residual_dof(n_obs, p, reml)
    sigma2 = terms.rss / dof
    sigma = np.sqrt(sigma2)
    k = len(theta)
    hessian = np.empty((k + 1, k + 1))
    hessian[:k, :k] = d.log_det_hessian + terms.rss_hessian / sigma2
    if reml:
        hessian[:k, :k] += terms.log_det_a_hessian
    hessian[:k, k] = hessian[k, :k] = -2.0 * terms.rss_gradient / sigma**3
    hessian[k, k] = -2.0 * dof / sigma2 + 6.0 * terms.rss / sigma2**2
    hessian = (hessian + hessian.T) / 2.0
    values, vectors = np.linalg.eigh(hessian)
    if np.any(values < -EIGENVALUE_TOLERANCE):
        log.warning("REML Hessian in (theta, sigma) has negative eigenvalues %s: the fit may "
                    "not have converged", values[values < -EIGENVALUE_TOLERANCE])
    positive = values > EIGENVALUE_TOLERANCE
    inverse = (vectors[:, positive] / values[positive]) @ vectors[:, positive].T
    a_inv = terms.covariance_inverse
    jacobian = np.empty((k + 1, p, p))
    jacobian[:k] = -sigma2 * np.einsum("ab,kbc,cd->kad", a_inv, terms.a_gradient, a_inv)
    jacobian[k] = 2.0 * sigma * a_inv
    return SatterthwaiteInference(
        np.append(theta, sigma), 2.0 * inverse, jacobian, sigma2 * a_inv
    )
