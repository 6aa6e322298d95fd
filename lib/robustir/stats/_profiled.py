"""The profiled (RE)ML criterion, its exact derivatives and its minimisation.

Private helper of :func:`robustir.stats.mixed.fit_mixed`; both fitting paths (``_nested_reml``
for nested random intercepts, ``_generic`` for any other random part) reduce the data to the
same two quantities at relative covariance parameters ``theta`` (lme4's parameterisation,
``V = s2 H(theta)``):

- ``quad = [X y]' H^-1 [X y]``, shape (p + 1, p + 1);
- ``log_det = log |H|``.

With ``A = quad[:p, :p]``, ``beta = A^-1 quad[:p, p]`` and ``r = quad[p, p] - quad[p, :p] beta``
(the penalised residual sum of squares) lme4's criterion with ``beta`` and ``s2`` profiled out is::

    REML: log|H| + log|A| + (n - p) (1 + log(2 pi r / (n - p)))
    ML:   log|H|          +  n      (1 + log(2 pi r / n))

Each path also returns the first and second derivatives of ``quad`` and ``log_det`` in
``theta`` (:class:`CriterionDerivatives`). From them follow, exactly and without numerical
differentiation, the gradient and Hessian of the profiled criterion (used to polish the
optimum) and everything lmerTest's Satterthwaite method needs (``_satterthwaite``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.linalg
import scipy.optimize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfiledSolution:
    """Fixed effects and scale at given relative covariance parameters ``theta``.

    Attributes:
        deviance: The profiled criterion (lme4's ``REML criterion``, or the ML deviance).
        coefficients: Generalised least-squares ``beta``.
        sigma2: Residual variance ``r / (n - p)`` (REML) or ``r / n`` (ML).
        unscaled_covariance: ``A^-1 = (X' H^-1 X)^-1``, or None when not asked for.
    """

    deviance: float
    coefficients: np.ndarray
    sigma2: float
    unscaled_covariance: np.ndarray | None


def residual_dof(n_obs: int, n_fixed: int, reml: bool) -> int:
    """Degrees of freedom dividing the penalised residual sum of squares."""
    return n_obs - n_fixed if reml else n_obs


def profiled_solution(
    quad: np.ndarray, log_det: float, n_obs: int, reml: bool, *, with_covariance: bool = False
) -> ProfiledSolution:
    """Profile ``beta`` and ``s2`` out of the criterion; see the module doc.

    ``with_covariance`` adds ``A^-1`` (skipped inside the optimizer's loop).
    """
    p = quad.shape[0] - 1
    factor = scipy.linalg.cho_factor(quad[:p, :p], lower=True)
    beta = scipy.linalg.cho_solve(factor, quad[:p, p])
    rss = max(float(quad[p, p] - quad[p, :p] @ beta), np.finfo(float).tiny)
    dof = residual_dof(n_obs, p, reml)
    deviance = log_det + dof * (1.0 + np.log(2.0 * np.pi * rss / dof))
    if reml:
        deviance += 2.0 * float(np.sum(np.log(np.diag(factor[0]))))
    unscaled = scipy.linalg.cho_solve(factor, np.eye(p)) if with_covariance else None
    return ProfiledSolution(float(deviance), beta, rss / dof, unscaled)


@dataclass(frozen=True)
class CriterionDerivatives:
    """``quad`` and ``log_det`` with their first and second derivatives in ``theta``.

    Attributes:
        quad: ``[X y]' H^-1 [X y]``, shape (p + 1, p + 1).
        quad_gradient: ``d quad / d theta_i``, shape (k, p + 1, p + 1).
        quad_hessian: ``d2 quad / d theta_i d theta_j``, shape (k, k, p + 1, p + 1).
        log_det: ``log |H|``.
        log_det_gradient: Shape (k,).
        log_det_hessian: Shape (k, k).
    """

    quad: np.ndarray
    quad_gradient: np.ndarray
    quad_hessian: np.ndarray
    log_det: float
    log_det_gradient: np.ndarray
    log_det_hessian: np.ndarray


class ProfiledCriterion(Protocol):
    """What a fitting path provides: the two reduced quantities and their derivatives."""

    n_obs: int
    n_fixed: int

    def evaluate(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        """``(quad, log_det)`` at ``theta``."""

    def derivatives(self, theta: np.ndarray) -> CriterionDerivatives:
        """``quad`` and ``log_det`` with exact first and second derivatives at ``theta``."""


@dataclass(frozen=True)
class ResidualTerms:
    """Pieces of the criterion shared by its derivatives (see :func:`residual_terms`).

    Attributes:
        covariance_inverse: ``A^-1``.
        rss: Penalised residual sum of squares ``r``.
        rss_gradient: ``d r / d theta_i``.
        rss_hessian: ``d2 r / d theta_i d theta_j``.
        log_det_a_gradient: ``d log|A| / d theta_i``.
        log_det_a_hessian: ``d2 log|A| / d theta_i d theta_j``.
        a_gradient: ``d A / d theta_i``, shape (k, p, p).
    """

    covariance_inverse: np.ndarray
    rss: float
    rss_gradient: np.ndarray
    rss_hessian: np.ndarray
    log_det_a_gradient: np.ndarray
    log_det_a_hessian: np.ndarray
    a_gradient: np.ndarray


def residual_terms(d: CriterionDerivatives) -> ResidualTerms:
    """Derivatives of ``r`` and ``log |A|`` from those of ``quad``.

    ``r`` is the Schur complement of ``A`` in ``quad``; with ``e = (-beta, 1)`` and
    ``f_i = (quad_i e)[:p]``: ``r_i = e' quad_i e`` and
    ``r_ij = e' quad_ij e - 2 f_i' A^-1 f_j``. For ``log |A|``:
    ``tr(A^-1 A_ij) - tr(A^-1 A_i A^-1 A_j)``.
    """
    p = d.quad.shape[0] - 1
    a_inv = np.linalg.inv(d.quad[:p, :p])
    a_inv = (a_inv + a_inv.T) / 2.0
    e = np.append(-(a_inv @ d.quad[:p, p]), 1.0)
    rss = float(e @ d.quad @ e)
    rss_gradient = np.einsum("a,kab,b->k", e, d.quad_gradient, e)
    f = np.einsum("kab,b->ka", d.quad_gradient[:, :p, :], e)
    rss_hessian = np.einsum("a,klab,b->kl", e, d.quad_hessian, e) - 2.0 * f @ a_inv @ f.T
    a_gradient = d.quad_gradient[:, :p, :p]
    scaled = np.einsum("ab,kbc->kac", a_inv, a_gradient)  # A^-1 A_i
    log_det_a_gradient = np.einsum("kaa->k", scaled)
    log_det_a_hessian = np.einsum("ab,klba->kl", a_inv, d.quad_hessian[:, :, :p, :p]) - np.einsum(
        "kab,lba->kl", scaled, scaled
    )
    return ResidualTerms(
        a_inv, rss, rss_gradient, rss_hessian, log_det_a_gradient, log_det_a_hessian, a_gradient
    )


def profiled_gradient_hessian(
    d: CriterionDerivatives, n_obs: int, reml: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of the profiled criterion in ``theta``."""
    terms = residual_terms(d)
    dof = residual_dof(n_obs, d.quad.shape[0] - 1, reml)
    r, r_i = terms.rss, terms.rss_gradient
    gradient = d.log_det_gradient + dof * r_i / r
    hessian = d.log_det_hessian + dof * (terms.rss_hessian / r - np.outer(r_i, r_i) / r**2)
    if reml:
        gradient = gradient + terms.log_det_a_gradient
        hessian = hessian + terms.log_det_a_hessian
    return gradient, (hessian + hessian.T) / 2.0


@dataclass(frozen=True)
class ProfiledFit:
    """Optimum of the profiled criterion.

    Attributes:
        theta: Relative covariance parameters at the optimum (lme4's ``theta``).
        solution: Profiled solution there, with ``A^-1``.
        optimizer: Optimizer whose result was kept (``+ Newton`` when the exact Newton steps
            improved it).
        converged: Whether that optimizer reported success.
        deviances: Criterion reached by each optimizer tried.
    """

    theta: np.ndarray
    solution: ProfiledSolution
    optimizer: str
    converged: bool
    deviances: dict[str, float]


def minimise(
    criterion: ProfiledCriterion, start: np.ndarray, lower: np.ndarray, reml: bool
) -> ProfiledFit:
    """Minimise the profiled criterion with two optimizers, then polish (protocol §3.7).

    L-BFGS-B (exact gradient) and bounded Nelder-Mead both start from lme4's start; the lower
    criterion is kept and refined by exact Newton steps on the parameters that are not held at
    their bound.

    Args:
        criterion: The fitting path's reduced criterion.
        start: lme4's starting ``theta`` (1 on variances' diagonals, 0 off them).
        lower: Lower bounds (0 for diagonal entries, ``-inf`` for off-diagonal ones).
        reml: REML or ML.
    """
    n = criterion.n_obs

    def objective(theta: np.ndarray) -> float:
        return profiled_solution(*criterion.evaluate(theta), n, reml).deviance

    def with_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = criterion.derivatives(theta)
        gradient, _ = profiled_gradient_hessian(d, n, reml)
        return profiled_solution(d.quad, d.log_det, n, reml).deviance, gradient

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    rounding = 1e-11 * max(1.0, abs(objective(start)))
    candidates = {
        "L-BFGS-B": scipy.optimize.minimize(
            with_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000},
        ),
        "Nelder-Mead": scipy.optimize.minimize(
            objective, start, method="Nelder-Mead", bounds=bounds,
            # The exact Newton polish below takes the last digits; tighter tolerances than the
            # criterion's rounding would never be met.
            options={"xatol": 1e-8, "fatol": rounding, "maxiter": 5000},
        ),
    }
    deviances = {name: float(res.fun) for name, res in candidates.items()}
    best = min(candidates, key=deviances.get)
    theta, improved = _newton_polish(criterion, np.asarray(candidates[best].x, float), lower, reml)
    log.info("profiled criterion: %s, kept %s%s", deviances, best, " + Newton" if improved else "")
    solution = profiled_solution(*criterion.evaluate(theta), n, reml, with_covariance=True)
    return ProfiledFit(
        theta, solution, best + (" + Newton" if improved else ""),
        bool(candidates[best].success), deviances,
    )


def _newton_polish(
    criterion: ProfiledCriterion, theta: np.ndarray, lower: np.ndarray, reml: bool,
    *, max_steps: int = 20,
) -> tuple[np.ndarray, bool]:
    """Exact Newton steps from an optimizer's result.

    Near the optimum the criterion is flat to rounding (a change of ``theta`` by 1e-7 moves it
    by 1e-14 relative), so a step is accepted when it lowers the criterion *or* shrinks the
    exact gradient without raising the criterion beyond rounding; this places ``theta`` where
    the gradient vanishes, to about 1e-12 instead of the 1e-7 a comparison of criterion values
    can resolve. A parameter at its bound whose gradient pushes outwards stays there (a boundary
    optimum, lme4's singular fit).
    """
    n = criterion.n_obs

    def state(point):
        d = criterion.derivatives(point)
        gradient, hessian = profiled_gradient_hessian(d, n, reml)
        free = ~((point <= lower + 1e-12) & (gradient > 0))
        value = profiled_solution(d.quad, d.log_det, n, reml).deviance
        return value, gradient, hessian, free

    theta = np.maximum(theta, lower)
    current, gradient, hessian, free = state(theta)
    improved = False
    for _ in range(max_steps):
        if not free.any():
            break
        try:
            step = np.zeros_like(theta)
            step[free] = -np.linalg.solve(hessian[np.ix_(free, free)], gradient[free])
        except np.linalg.LinAlgError:
            break
        rounding = 1e-13 * max(1.0, abs(current))
        accepted = False
        for scale in 0.5 ** np.arange(12):
            trial = np.maximum(theta + scale * step, lower)
            value, trial_gradient, trial_hessian, trial_free = state(trial)
            smaller_gradient = np.linalg.norm(trial_gradient[trial_free]) < np.linalg.norm(gradient[free])
            if value < current - rounding or (value <= current + rounding and smaller_gradient):
                theta, current, gradient, hessian, free = trial, value, trial_gradient, trial_hessian, trial_free
                accepted = improved = True
                break
        if not accepted or np.max(np.abs(scale * step)) < 1e-14 * (1.0 + np.max(np.abs(theta))):
            break
    return theta, improved
