"""Linear mixed models with emmeans-style marginal means, contrasts and joint tests.

Implements the generalizability analysis of the study (protocol §3.4-§3.7): lme4-style formulas
such as ``ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)``, fitted by REML (default)
or ML, with

- fixed effects under R's treatment contrasts (reference levels settable, as ``relevel``);
- variance components, log-likelihood and lme4's REML criterion;
- estimated marginal means with emmeans semantics: the reference grid holds every combination of
  factor levels (numeric covariates at their mean), a marginal mean averages the grid's
  predictions with **equal weights** over the factors not in the spec, and inference is
  asymptotic (z, df = inf), as emmeans does above 3,000 observations;
- pairwise or custom contrasts with Tukey / Holm / Bonferroni adjustment;
- joint tests of each model term (Wald chi-square / df1, df2 = inf).

Nested random intercepts (``(1 | g)``, ``(1 | a/b)`` or ``(1 | a) + (1 | b)`` with ``b`` nested
in ``a`` in the data) use an exact profiled-REML estimator that works on sufficient statistics
(``_nested_reml``) and fits the study's 382,716-row table in seconds. Other structures (random
slopes, crossed intercepts) go through statsmodels ``MixedLM``.

Used by the book chapter *Generalizability* (``notebooks/generalizability.py``).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats

from robustir.stats._formula import (
    FixedDesign,
    MixedModelInputError,
    ParsedFormula,
    build_fixed_design,
    parse_formula,
)
from robustir.stats._nested_reml import fit_nested, sufficient_statistics

__all__ = ["MixedModelFit", "MixedModelInputError", "fit_mixed"]

log = logging.getLogger(__name__)

ADJUSTMENTS = ("tukey", "holm", "bonferroni", "none")


@dataclass
class MixedModelFit:
    """A fitted linear mixed model (returned by :func:`fit_mixed`).

    Attributes:
        formula: The lme4-style formula.
        reml: True for REML, False for ML.
        n_obs: Number of observations.
        n_groups: Number of levels of each grouping factor (lme4 names, e.g. ``query_id:dataset_name``).
        coefficients: Fixed-effect estimates, in :attr:`design` column order.
        covariance: Covariance matrix of the fixed effects (lme4's ``vcov``).
        variance_components: One row per random term and the residual: ``group``, ``term``,
            ``variance``, ``std_dev`` (a covariance row has ``term`` ``cov(a, b)`` and no sd).
        log_likelihood: REML (or ML) log-likelihood as lme4's ``logLik``.
        method: ``"nested-intercept profiled REML"`` or ``"statsmodels MixedLM"``.
        optimizer: Optimizer whose optimum was kept.
        converged: Its convergence flag.
        singular: Whether a variance component is (numerically) zero, as lme4's ``isSingular``.
        design: Coding of the fixed part (levels, reference levels, coefficient names).
    """

    formula: str
    reml: bool
    n_obs: int
    n_groups: dict[str, int]
    coefficients: np.ndarray
    covariance: np.ndarray
    variance_components: pd.DataFrame
    log_likelihood: float
    method: str
    optimizer: str
    converged: bool
    singular: bool
    design: FixedDesign = field(repr=False)

    @property
    def reml_criterion(self) -> float:
        """-2 x log-likelihood: lme4's ``REML criterion at convergence`` (deviance under ML)."""
        return -2.0 * self.log_likelihood

    @property
    def fixed_effects(self) -> pd.DataFrame:
        """Fixed-effect table as lme4's ``coef(summary(fit))``: estimate, std_error, z_value."""
        se = np.sqrt(np.diag(self.covariance))
        return pd.DataFrame(
            {"estimate": self.coefficients, "std_error": se, "z_value": self.coefficients / se},
            index=pd.Index(self.design.column_names, name="term"),
        )

    def summary_record(self) -> dict:
        """Everything protocol §3.7 asks to store with a fit, as JSON-ready values."""
        return {
            "formula": self.formula,
            "reml": self.reml,
            "n_obs": self.n_obs,
            "n_groups": self.n_groups,
            "log_likelihood": self.log_likelihood,
            "variance_components": self.variance_components.to_dict(orient="records"),
            "method": self.method,
            "optimizer": self.optimizer,
            "converged": self.converged,
            "singular": self.singular,
            "reference_levels": {k: v[0] for k, v in self.design.levels.items()},
        }

    # -- reference grid -------------------------------------------------------------------
    def _spec_variables(self, spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
        if isinstance(spec, str):
            text = spec.replace("~", " ")
            names = [n.strip() for n in text.replace("*", ":").replace("+", ":").split(":")]
        else:
            names = [str(n).strip() for n in spec]
        names = [n for n in names if n]
        bad = [n for n in names if n not in self.design.levels]
        if not names or bad:
            raise MixedModelInputError(
                f"marginal-means spec {spec!r}: {bad or 'nothing'} is not a fixed-effect factor "
                f"of {self.formula!r}; factors are {list(self.design.levels)}"
            )
        return tuple(dict.fromkeys(names))

    def _cell_rows(
        self, variables: tuple[str, ...], covariate_points: dict[str, list[float]]
    ) -> tuple[list[tuple[str, ...]], np.ndarray]:
        """Equal-weight average design rows for every cell of ``variables``.

        The grid crosses all factor levels and the given covariate points; cells are listed with
        the first variable varying fastest (emmeans' order).
        """
        axes = {var: list(range(len(lv))) for var, lv in self.design.levels.items()}
        axes.update({var: list(range(len(pts))) for var, pts in covariate_points.items()})
        names = list(axes)
        combos = np.array(list(itertools.product(*[axes[n] for n in reversed(names)])))[:, ::-1]
        combos = combos.reshape(-1, len(names))
        values = {}
        for j, name in enumerate(names):
            if name in covariate_points:
                values[name] = np.asarray(covariate_points[name], dtype=float)[combos[:, j]]
            else:
                values[name] = combos[:, j]
        rows = self.design.matrix(values)
        index = [names.index(v) for v in variables]
        sizes = [len(axes[v]) for v in variables]
        cell = np.zeros(len(combos), dtype=np.int64)
        for j, size in zip(reversed(index), reversed(sizes)):
            cell = cell * size + combos[:, j]
        n_cells = int(np.prod(sizes))
        weights = np.zeros((n_cells, len(combos)))
        weights[cell, np.arange(len(combos))] = 1.0
        weights /= weights.sum(axis=1, keepdims=True)
        labels = [
            tuple(self._level_label(v, c) for v, c in zip(variables, combo))
            for combo in (
                np.array(list(itertools.product(*[range(s) for s in reversed(sizes)])))[:, ::-1]
            )
        ]
        return labels, weights @ rows

    def _level_label(self, variable: str, code: int) -> str:
        if variable in self.design.levels:
            return self.design.levels[variable][code]
        return f"{variable}{code}"

    def _emm_rows(self, spec) -> tuple[tuple[str, ...], list[tuple[str, ...]], np.ndarray]:
        variables = self._spec_variables(spec)
        points = {v: [m] for v, m in self.design.covariate_means.items()}
        labels, rows = self._cell_rows(variables, points)
        return variables, labels, rows

    # -- public inference -----------------------------------------------------------------
    def marginal_means(self, spec, *, level: float = 0.95) -> pd.DataFrame:
        """Estimated marginal means (emmeans ``emmeans(fit, spec)``, asymptotic inference).

        Used by the chapter *Generalizability*.

        Args:
            spec: Factor(s) to estimate means for: ``"Model"``, ``"Model:query_type"``,
                ``"~ Model * query_type"`` or a list of names.
            level: Confidence level of the (unadjusted) z intervals.

        Returns:
            One row per cell (first factor varying fastest): the factor levels,
            ``marginal_mean``, ``std_error``, ``ci_lower``, ``ci_upper``; in the response's units
            (nDCG@10 in [0, 1] for the study).
        """
        variables, labels, rows = self._emm_rows(spec)
        estimate = rows @ self.coefficients
        se = np.sqrt(np.einsum("ij,jk,ik->i", rows, self.covariance, rows))
        z = scipy.stats.norm.ppf(0.5 + level / 2.0)
        table = pd.DataFrame(labels, columns=list(variables))
        table["marginal_mean"] = estimate
        table["std_error"] = se
        table["ci_lower"] = estimate - z * se
        table["ci_upper"] = estimate + z * se
        return table

    def contrasts(
        self,
        spec,
        method: str | dict[str, dict[str, float]] = "pairwise",
        *,
        adjust: str = "tukey",
        level: float = 0.95,
    ) -> pd.DataFrame:
        """Contrasts among marginal means (emmeans ``pairs`` / ``contrast``), asymptotic.

        Used by the chapter *Generalizability* (pairwise systems, "specialization tax").

        Args:
            spec: As for :meth:`marginal_means`.
            method: ``"pairwise"`` (every ``a - b`` with ``a`` before ``b`` in level order) or a
                mapping ``{contrast name: {cell label: weight}}``; a cell label is the levels
                joined by a space (``"qwen3"``, ``"qwen3 FACTOID"``); missing cells weigh 0.
            adjust: ``"tukey"`` (pairwise only; studentized range with k means, df = inf),
                ``"holm"``, ``"bonferroni"`` or ``"none"``.
            level: Confidence level; intervals use Tukey's, Bonferroni's (also for Holm, as
                emmeans does) or no adjustment.

        Returns:
            ``contrast``, ``estimate``, ``std_error``, ``z_ratio``, ``p_value`` (adjusted),
            ``ci_lower``, ``ci_upper``.
        """
        if adjust not in ADJUSTMENTS:
            raise MixedModelInputError(f"adjust={adjust!r}; choose one of {ADJUSTMENTS}")
        _, labels, rows = self._emm_rows(spec)
        names = [" ".join(label) for label in labels]
        if method == "pairwise":
            pairs = list(itertools.combinations(range(len(names)), 2))
            contrast_names = [f"{names[i]} - {names[j]}" for i, j in pairs]
            matrix = np.array([rows[i] - rows[j] for i, j in pairs])
        elif isinstance(method, dict):
            if adjust == "tukey":
                raise MixedModelInputError(
                    "Tukey adjustment applies to pairwise contrasts only; use adjust='holm', "
                    "'bonferroni' or 'none' for custom contrasts"
                )
            contrast_names, weight_rows = [], []
            for name, weights in method.items():
                unknown = sorted(set(weights) - set(names))
                if unknown:
                    raise MixedModelInputError(
                        f"contrast {name!r} weighs cells {unknown} that are not among {names}"
                    )
                contrast_names.append(name)
                weight_rows.append([float(weights.get(n, 0.0)) for n in names])
            matrix = np.array(weight_rows) @ rows
        else:
            raise MixedModelInputError(f"method={method!r}; use 'pairwise' or a dict of weights")
        estimate = matrix @ self.coefficients
        se = np.sqrt(np.einsum("ij,jk,ik->i", matrix, self.covariance, matrix))
        z = estimate / se
        m = len(estimate)
        raw = 2.0 * scipy.stats.norm.sf(np.abs(z))
        if adjust == "tukey":
            k = len(names)
            p = scipy.stats.studentized_range.sf(np.abs(z) * np.sqrt(2.0), k, np.inf)
            critical = scipy.stats.studentized_range.ppf(level, k, np.inf) / np.sqrt(2.0)
        elif adjust in ("holm", "bonferroni"):
            p = _holm(raw) if adjust == "holm" else np.minimum(1.0, raw * m)
            critical = scipy.stats.norm.ppf(1.0 - (1.0 - level) / (2.0 * m))
        else:
            p = raw
            critical = scipy.stats.norm.ppf(0.5 + level / 2.0)
        return pd.DataFrame(
            {
                "contrast": contrast_names,
                "estimate": estimate,
                "std_error": se,
                "z_ratio": z,
                "p_value": p,
                "ci_lower": estimate - critical * se,
                "ci_upper": estimate + critical * se,
            }
        )

    def joint_tests(self) -> pd.DataFrame:
        """Joint Wald tests of every model term (emmeans ``joint_tests``, protocol §3.5).

        Each term is tested through the contrasts of its equal-weight marginal means
        (interaction contrasts for interaction terms); numeric covariates enter at mean +- 1 as
        emmeans' ``meanint``. F = chi-square / df1 with df2 = inf.

        Used by the chapter *Generalizability*.

        Returns:
            ``term``, ``df1``, ``df2``, ``F_ratio``, ``p_value``.
        """
        points = {v: [m - 1.0, m + 1.0] for v, m in self.design.covariate_means.items()}
        records = []
        for term in self.design.terms:
            _, rows = self._cell_rows(term, points)
            basis = np.ones((1, 1))
            for var in term:  # first variable varies fastest, so it is the last Kronecker factor
                k = len(self.design.levels.get(var, (0, 1)))
                basis = np.kron(np.eye(k)[1:] - np.eye(k)[:-1], basis)
            matrix = basis @ rows
            estimate = matrix @ self.coefficients
            cov = matrix @ self.covariance @ matrix.T
            df1 = int(np.linalg.matrix_rank(cov))
            chi2 = float(estimate @ np.linalg.pinv(cov) @ estimate)
            records.append(
                {
                    "term": ":".join(term),
                    "df1": df1,
                    "df2": np.inf,
                    "F_ratio": chi2 / df1,
                    "p_value": float(scipy.stats.chi2.sf(chi2, df1)),
                }
            )
        return pd.DataFrame(records)


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, stepped)
    return adjusted


def _check_columns(frame: pd.DataFrame, parsed: ParsedFormula) -> None:
    missing = [c for c in parsed.columns() if c not in frame.columns]
    if missing:
        raise MixedModelInputError(
            f"formula {parsed.text!r} names columns {missing} that the data frame lacks; "
            f"its columns are {list(frame.columns)}"
        )
    response = frame[parsed.response]
    if not pd.api.types.is_numeric_dtype(response):
        raise MixedModelInputError(
            f"response {parsed.response!r} has dtype {response.dtype}; it must be numeric"
        )
    for column in parsed.columns():
        missing_rows = frame.index[frame[column].isna().to_numpy()]
        if len(missing_rows):
            raise MixedModelInputError(
                f"column {column!r} has {len(missing_rows)} missing values (NaN), first at row "
                f"index {missing_rows[0]!r}; drop those rows (the study drops missing scores, "
                "protocol §2.6) before fitting"
            )
    if not np.all(np.isfinite(response.to_numpy(dtype=float))):
        raise MixedModelInputError(f"response {parsed.response!r} has infinite values")


def _group_codes(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    return frame.groupby(list(columns), sort=True, observed=True).ngroup().to_numpy(np.int64)


def _nested_pair(codes: list[np.ndarray]) -> tuple[int, int] | None:
    """Return (outer, inner) term indices if one grouping nests in the other in the data."""
    a, b = codes
    for outer, inner, o, i in ((0, 1, a, b), (1, 0, b, a)):
        pairs = np.unique(i * (int(o.max()) + 1) + o)
        if len(pairs) == int(i.max()) + 1:
            return outer, inner
    return None


def fit_mixed(
    df: pd.DataFrame,
    formula: str,
    *,
    reml: bool = True,
    reference: dict[str, str] | None = None,
) -> MixedModelFit:
    """Fit a linear mixed model from an lme4-style formula (protocol §3.4).

    Used by the chapter *Generalizability*.

    Args:
        df: Long table, one row per observation (for the study: one query x system, response
            nDCG@10 on the [0, 1] scale).
        formula: e.g. ``"ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)"``. Fixed
            part: column names joined by ``+``, ``*``, ``:``; random part: ``(1 | g)``,
            ``(1 | a/b)``, crossed ``(1 | a) + (1 | b)``, or one slope term ``(x | g)``.
            Non-numeric columns are factors with treatment contrasts.
        reml: REML (lme4's default) or ML.
        reference: Reference level per factor (R's ``relevel``), e.g.
            ``{"Model": "contriever", "query_type": "FACTOID"}``; other factors use the first
            level in sorted (C-locale) or categorical order.

    Returns:
        The fit, with marginal means, contrasts and joint tests as methods.

    Raises:
        MixedModelInputError: Unknown columns, missing values, a factor with one level, a
            reference level not in the data, or unsupported formula syntax.
    """
    parsed = parse_formula(formula)
    _check_columns(df, parsed)
    design, values = build_fixed_design(df, parsed, reference)
    response = df[parsed.response].to_numpy(dtype=float)
    if design.terms:
        keys = np.column_stack([values[v].astype(float) for v in parsed.fixed_variables])
        cell_keys, cell_of_row = np.unique(keys, axis=0, return_inverse=True)
        cell_values = {
            v: cell_keys[:, j].astype(np.int64) if v in design.levels else cell_keys[:, j]
            for j, v in enumerate(parsed.fixed_variables)
        }
        cell_design = design.matrix(cell_values)
        cell_of_row = cell_of_row.reshape(-1)
    else:
        cell_design, cell_of_row = np.ones((1, 1)), np.zeros(len(df), dtype=np.int64)
    if np.linalg.matrix_rank(cell_design) < cell_design.shape[1]:
        raise MixedModelInputError(
            f"the fixed part of {formula!r} is rank deficient on these data (an empty cell of "
            "an interaction?); check the factor crossing"
        )
    terms = parsed.random_terms
    codes = [_group_codes(df, t.grouping) for t in terms]
    n_groups = {t.group_name: int(c.max()) + 1 for t, c in zip(terms, codes)}
    intercepts_only = all(t.intercept and not t.slopes for t in terms)
    nesting = _nested_pair(codes) if len(terms) == 2 and intercepts_only else None
    if intercepts_only and (len(terms) == 1 or nesting is not None):
        if len(terms) == 1:
            inner, outer_of_inner, names = codes[0], None, [terms[0].group_name]
        else:
            outer_i, inner_i = nesting
            inner = codes[inner_i]
            outer_of_inner = np.zeros(int(inner.max()) + 1, dtype=np.int64)
            outer_of_inner[inner] = codes[outer_i]
            names = [terms[inner_i].group_name, terms[outer_i].group_name]
        data = sufficient_statistics(cell_design, cell_of_row, response, inner, outer_of_inner)
        nested = fit_nested(data, reml)
        sigma2 = nested.solution.sigma2
        variances = [(name, "(Intercept)", sigma2 * t**2) for name, t in zip(names, nested.theta)]
        return _assemble(
            parsed, design, reml, len(df), n_groups, nested.solution.coefficients,
            sigma2 * nested.solution.unscaled_covariance, variances, sigma2,
            -0.5 * nested.solution.deviance, "nested-intercept profiled REML",
            nested.optimizer, nested.converged,
        )
    from robustir.stats._generic import fit_statsmodels

    generic = fit_statsmodels(cell_design[cell_of_row], response, terms, codes, df, reml)
    return _assemble(
        parsed, design, reml, len(df), n_groups, generic.coefficients, generic.covariance,
        generic.variances, generic.sigma2, generic.log_likelihood, "statsmodels MixedLM",
        generic.optimizer, generic.converged,
    )


def _assemble(
    parsed, design, reml, n_obs, n_groups, beta, vcov, variances, sigma2, loglik, method,
    optimizer, converged,
) -> MixedModelFit:
    rows = [
        {
            "group": g,
            "term": t,
            "variance": v,
            "std_dev": np.nan if t.startswith("cov(") else float(np.sqrt(max(v, 0.0))),
        }
        for g, t, v in variances
    ]
    rows.append({"group": "Residual", "term": "", "variance": sigma2, "std_dev": np.sqrt(sigma2)})
    components = pd.DataFrame(rows)
    scale = [v for g, t, v in variances if not t.startswith("cov(")]
    singular = bool(np.any(np.sqrt(np.maximum(scale, 0.0) / sigma2) < 1e-4))
    return MixedModelFit(
        parsed.text, reml, n_obs, n_groups, np.asarray(beta), np.asarray(vcov), components,
        float(loglik), method, optimizer, converged, singular, design,
    )
