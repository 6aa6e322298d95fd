"""statsmodels ``MixedLM`` path of :func:`robustir.stats.mixed.fit_mixed` (random slopes, crossed
random intercepts). Private helper; see protocol §3.7 for the mapping.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustir.stats._formula import MixedModelInputError, RandomTerm

log = logging.getLogger(__name__)

_METHODS = (("lbfgs",), ("powell", "lbfgs"))


@dataclass(frozen=True)
class GenericFit:
    """Estimates in the form ``fit_mixed`` assembles."""

    coefficients: np.ndarray
    covariance: np.ndarray
    variances: list[tuple[str, str, float]]
    sigma2: float
    log_likelihood: float
    optimizer: str
    converged: bool


def fit_statsmodels(
    exog: np.ndarray,
    response: np.ndarray,
    terms: tuple[RandomTerm, ...],
    codes: list[np.ndarray],
    frame: pd.DataFrame,
    reml: bool,
) -> GenericFit:
    """Fit with statsmodels, trying two optimizers and keeping the higher log-likelihood.

    Raises:
        MixedModelInputError: For random structures other than one term ``(1 + x | g)`` or
            several crossed intercepts.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    if len(terms) == 1:
        term = terms[0]
        columns = ([np.ones(len(response))] if term.intercept else []) + [
            frame[s].to_numpy(dtype=float) for s in term.slopes
        ]
        labels = (["(Intercept)"] if term.intercept else []) + list(term.slopes)
        model = MixedLM(response, exog, groups=codes[0], exog_re=np.column_stack(columns))
    elif all(t.intercept and not t.slopes for t in terms):
        labels = []
        mats, names, colnames = [], [], []
        for term, code in zip(terms, codes):
            dummies = np.zeros((len(response), int(code.max()) + 1))
            dummies[np.arange(len(response)), code] = 1.0
            names.append(term.group_name)
            mats.append([dummies])
            colnames.append([[f"{term.group_name}{j}" for j in range(dummies.shape[1])]])
        model = MixedLM(
            response, exog, groups=np.zeros(len(response)), exog_re=np.zeros((len(response), 0)),
            exog_vc=VCSpec(names, colnames, mats),
        )
    else:
        raise MixedModelInputError(
            "random part not supported: use nested or crossed random intercepts, or a single "
            "term (1 + x | g)"
        )
    results = {}
    for method in _METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results[method] = model.fit(
                reml=reml, method=list(method), pgtol=1e-12, factr=10.0, maxiter=5000
            )
    best_method = max(results, key=lambda m: results[m].llf)
    best = results[best_method]
    log.info("statsmodels MixedLM: llf %s", {"+".join(m): r.llf for m, r in results.items()})
    p = exog.shape[1]
    variances: list[tuple[str, str, float]] = []
    if len(terms) == 1:
        cov_re = np.asarray(best.cov_re)
        group = terms[0].group_name
        variances = [(group, label, float(cov_re[i, i])) for i, label in enumerate(labels)]
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                variances.append((group, f"cov({labels[i]}, {labels[j]})", float(cov_re[i, j])))
    else:
        variances = [(t.group_name, "(Intercept)", float(v)) for t, v in zip(terms, best.vcomp)]
    return GenericFit(
        np.asarray(best.fe_params),
        np.asarray(best.cov_params())[:p, :p],
        variances,
        float(best.scale),
        float(best.llf),
        "+".join(best_method),
        bool(best.converged),
    )
