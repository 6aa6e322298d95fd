"""Linear mixed models with lmerTest/emmeans-style inference: marginal means, contrasts, ANOVA.

Implements the generalizability analysis of the study (protocol §3.4-§3.7): lme4-style formulas
such as ``ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)``, fitted by REML (default)
or ML, with

- fixed effects under R's treatment contrasts (reference levels settable, as ``relevel``);
- variance components, log-likelihood and lme4's REML criterion;
- estimated marginal means with emmeans semantics: the reference grid holds every combination of
  factor levels (numeric covariates at their mean), and a marginal mean averages the grid's
  predictions with **equal weights** over the factors not in the spec;
- pairwise or custom contrasts with Tukey / Holm / Bonferroni adjustment;
- joint tests of each model term (emmeans ``joint_tests``) and lmerTest's Type-III ANOVA
  (``anova(fit, type = 3)``);
- tests of any contrast matrix ``L`` (:meth:`MixedModelFit.t_tests`, :meth:`~MixedModelFit.f_test`).

**Inference.** Every test and interval takes ``ddf``:

- ``"satterthwaite"`` (default): t and F statistics with Satterthwaite degrees of freedom as
  lmerTest computes them (the gradient of ``L V(theta) L'`` in the variance parameters and their
  asymptotic covariance from the REML Hessian; ``_satterthwaite``). This is what lmerTest's
  ``anova`` and ``summary`` report and what emmeans uses with ``lmer.df = "satterthwaite"``.
- ``"asymptotic"``: z statistics, df = inf (F with df2 = inf, i.e. Wald chi-square / df1). The
  study's emmeans calls fell back to this above 3,000 observations (protocol §3.5).

Tables name the statistic after the inference that produced it (``t_ratio`` / ``z_ratio``,
``t_value`` / ``z_value``) and carry the df (``inf`` for asymptotic).

**Fitting.** Nested random intercepts (``(1 | g)``, ``(1 | a/b)`` or ``(1 | a) + (1 | b)`` with
``b`` nested in ``a`` in the data) use an exact profiled-REML estimator on sufficient statistics
(``_nested_reml``) that fits the study's 382,716-row table in seconds. Any other random part
(random slopes, ``(x || g)``, several terms on one grouping factor, crossed intercepts) uses the
general profiled REML of ``_generic`` (lme4's parameterisation, dense in the random effects).
Both give exact derivatives of the criterion (``_profiled``), which polish the optimum and feed
the Satterthwaite degrees of freedom.

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
    RandomTerm,
    build_fixed_design,
    parse_formula,
)
from robustir.stats._generic import GeneralCriterion
from robustir.stats._nested_reml import NestedCriterion, sufficient_statistics
from robustir.stats._profiled import minimise
from robustir.stats._satterthwaite import SatterthwaiteInference, satterthwaite_inference
from robustir.stats.correlation import adjust_p_values

__all__ = ["DDF_METHODS", "MixedModelFit", "MixedModelInputError", "fit_mixed"]

log = logging.getLogger(__name__)

ADJUSTMENTS = ("tukey", "holm", "bonferroni", "none")
DDF_METHODS = ("satterthwaite", "asymptotic")
"""Inference for tests and intervals: Satterthwaite t/F (lmerTest) or asymptotic z (df = inf)."""


def _check_ddf(ddf: str) -> None:
    if ddf not in DDF_METHODS:
        raise MixedModelInputError(f"ddf={ddf!r}; choose one of {DDF_METHODS}")


def _statistic_name(ddf: str, stem: str) -> str:
    return ("t_" if ddf == "satterthwaite" else "z_") + stem


def _two_sided_quantile(level: float, df: np.ndarray) -> np.ndarray:
    """Critical value of a two-sided interval at ``level``: t with ``df`` (normal at inf)."""
    if not 0.0 < level < 1.0:
        raise MixedModelInputError(f"level={level!r}; a confidence level lies in (0, 1)")
    return scipy.stats.t.ppf(0.5 + level / 2.0, df)


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
        variance_components: One row per random effect and the residual: ``group``, ``term``,
            ``variance``, ``std_dev`` (a covariance row has ``term`` ``cov(a, b)`` and no sd; a
            grouping factor with several terms is named ``g``, ``g.1``, ... as in lme4).
        log_likelihood: REML (or ML) log-likelihood as lme4's ``logLik``.
        method: ``"nested-intercept profiled REML"`` or ``"general profiled REML"``.
        optimizer: Optimizer whose optimum was kept (``+ Newton`` if exact Newton steps refined it).
        converged: Its convergence flag.
        singular: Whether a variance component is (numerically) zero, as lme4's ``isSingular``.
        design: Coding of the fixed part (levels, reference levels, coefficient names).
        satterthwaite: Variance parameters ``(theta, sigma)``, their asymptotic covariance and the
            Jacobian of :attr:`covariance` in them (lmerTest's ingredients).
        fixed_cross_product: ``X'X`` of the fixed design (lmerTest's Type-I hypotheses need it).
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
    satterthwaite: SatterthwaiteInference = field(repr=False)
    fixed_cross_product: np.ndarray = field(repr=False)

    @property
    def reml_criterion(self) -> float:
        """-2 x log-likelihood: lme4's ``REML criterion at convergence`` (deviance under ML)."""
        return -2.0 * self.log_likelihood

    @property
    def fixed_effects(self) -> pd.DataFrame:
        """Fixed-effect table as lme4's ``coef(summary(fit))``: estimate, std_error, z_value.

        For Satterthwaite df and p-values (lmerTest's summary) use :meth:`t_tests`.
        """
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

    def _term_contrasts(self, covariate_points: dict[str, list[float]], coding: str) -> dict[str, np.ndarray]:
        """For each fixed term, the contrasts of its equal-weight cell means that test it.

        A factor contributes successive differences (``coding="consec"``, emmeans) or
        differences from its reference level (``"treatment"``, lmerTest's Type III); a
        covariate the difference between its two points; interaction terms take the Kronecker
        product (the first variable varies fastest, so it is the last Kronecker factor).
        """
        contrasts = {}
        for term in self.design.terms:
            _, rows = self._cell_rows(term, covariate_points)
            basis = np.ones((1, 1))
            for var in term:
                k = len(self.design.levels.get(var, (0, 1)))
                start = np.eye(k)[:-1] if coding == "consec" else np.eye(k)[[0] * (k - 1)]
                basis = np.kron(np.eye(k)[1:] - start, basis)
            contrasts[":".join(term)] = basis @ rows
        return contrasts

    # -- building blocks of inference -------------------------------------------------------
    def _estimates(self, rows: np.ndarray, ddf: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Estimate, standard error and df of each row of ``rows`` (shape (m, p))."""
        _check_ddf(ddf)
        estimate = rows @ self.coefficients
        se = np.sqrt(np.einsum("ij,jk,ik->i", rows, self.covariance, rows))
        if ddf == "satterthwaite":
            df = self.satterthwaite.degrees_of_freedom(rows)
        else:
            df = np.full(len(rows), np.inf)
        return estimate, se, df

    def _hypothesis_matrix(self, hypothesis) -> np.ndarray:
        matrix = np.atleast_2d(np.asarray(hypothesis, dtype=float))
        p = len(self.coefficients)
        if matrix.ndim != 2 or matrix.shape[1] != p or not np.all(np.isfinite(matrix)):
            raise MixedModelInputError(
                f"contrast matrix of shape {np.shape(hypothesis)}: it needs {p} finite columns, "
                f"one per coefficient {list(self.design.column_names)}"
            )
        return matrix

    # -- public inference -----------------------------------------------------------------
    def marginal_means(self, spec, *, level: float = 0.95, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Estimated marginal means (emmeans ``emmeans(fit, spec)``).

        Used by the chapter *Generalizability*.

        Args:
            spec: Factor(s) to estimate means for: ``"Model"``, ``"Model:query_type"``,
                ``"~ Model * query_type"`` or a list of names.
            level: Confidence level of the (unadjusted, two-sided) intervals.
            ddf: ``"satterthwaite"`` (t intervals with each mean's Satterthwaite df) or
                ``"asymptotic"`` (z intervals, df = inf).

        Returns:
            One row per cell (first factor varying fastest): the factor levels,
            ``marginal_mean``, ``std_error``, ``df``, ``ci_lower``, ``ci_upper``; in the
            response's units (nDCG@10 in [0, 1] for the study).
        """
        variables, labels, rows = self._emm_rows(spec)
        estimate, se, df = self._estimates(rows, ddf)
        critical = _two_sided_quantile(level, df)
        table = pd.DataFrame(labels, columns=list(variables))
        table["marginal_mean"] = estimate
        table["std_error"] = se
        table["df"] = df
        table["ci_lower"] = estimate - critical * se
        table["ci_upper"] = estimate + critical * se
        return table

    def contrasts(
        self,
        spec,
        method: str | dict[str, dict[str, float]] = "pairwise",
        *,
        adjust: str = "tukey",
        level: float = 0.95,
        ddf: str = "satterthwaite",
    ) -> pd.DataFrame:
        """Contrasts among marginal means (emmeans ``pairs`` / ``contrast``).

        Used by the chapter *Generalizability* (pairwise systems, "specialization tax").

        Args:
            spec: As for :meth:`marginal_means`.
            method: ``"pairwise"`` (every ``a - b`` with ``a`` before ``b`` in level order) or a
                mapping ``{contrast name: {cell label: weight}}``; a cell label is the levels
                joined by a space (``"qwen3"``, ``"qwen3 FACTOID"``); missing cells weigh 0.
            adjust: ``"tukey"`` (pairwise only; studentized range with k means at each
                contrast's df), ``"holm"``, ``"bonferroni"`` or ``"none"``.
            level: Confidence level; intervals use Tukey's, Bonferroni's (also for Holm, as
                emmeans does) or no adjustment.
            ddf: ``"satterthwaite"`` (t ratios, each with its Satterthwaite df) or
                ``"asymptotic"`` (z ratios, df = inf).

        Returns:
            ``contrast``, ``estimate``, ``std_error``, ``df``, ``t_ratio`` (or ``z_ratio``),
            ``p_value`` (adjusted), ``ci_lower``, ``ci_upper``.
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
        estimate, se, df = self._estimates(matrix, ddf)
        ratio = estimate / se
        m = len(estimate)
        raw = 2.0 * scipy.stats.t.sf(np.abs(ratio), df)
        if adjust == "tukey":
            k = len(names)
            p = scipy.stats.studentized_range.sf(np.abs(ratio) * np.sqrt(2.0), k, df)
            critical = scipy.stats.studentized_range.ppf(level, k, df) / np.sqrt(2.0)
        elif adjust in ("holm", "bonferroni"):
            p = adjust_p_values(raw, method="holm")[1] if adjust == "holm" else np.minimum(1.0, raw * m)
            critical = scipy.stats.t.ppf(1.0 - (1.0 - level) / (2.0 * m), df)
        else:
            p = raw
            critical = _two_sided_quantile(level, df)
        return pd.DataFrame(
            {
                "contrast": contrast_names,
                "estimate": estimate,
                "std_error": se,
                "df": df,
                _statistic_name(ddf, "ratio"): ratio,
                "p_value": p,
                "ci_lower": estimate - critical * se,
                "ci_upper": estimate + critical * se,
            }
        )

    def joint_tests(self, *, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Joint tests of every model term (emmeans ``joint_tests``, protocol §3.5).

        Each term is tested through the successive-difference contrasts of its equal-weight
        marginal means (interaction contrasts for interaction terms); numeric covariates enter
        at mean +- 1 as emmeans' ``meanint``. F = Wald chi-square / df1. As emmeans, the
        contrasts are orthonormalised (QR) and df2 is the smallest Satterthwaite df among the
        orthonormal rows (``ddf="satterthwaite"``) or inf (``"asymptotic"``). emmeans prints
        df2 to 2 and F to 3 decimals; these are unrounded.

        Used by the chapter *Generalizability*.

        Returns:
            ``term``, ``df1``, ``df2``, ``F_ratio``, ``p_value``.
        """
        _check_ddf(ddf)
        points = {v: [m - 1.0, m + 1.0] for v, m in self.design.covariate_means.items()}
        records = []
        for term, matrix in self._term_contrasts(points, "consec").items():
            q, r = np.linalg.qr(matrix.T)
            diagonal = np.abs(np.diag(r))
            basis = q[:, diagonal > 1e-7 * diagonal.max()].T
            estimate = basis @ self.coefficients
            chi2 = float(estimate @ np.linalg.solve(basis @ self.covariance @ basis.T, estimate))
            df1 = len(basis)
            if ddf == "satterthwaite":
                df2 = float(np.min(self.satterthwaite.degrees_of_freedom(basis)))
                p_value = float(scipy.stats.f.sf(chi2 / df1, df1, df2))
            else:
                df2, p_value = np.inf, float(scipy.stats.chi2.sf(chi2, df1))
            records.append(
                {"term": term, "df1": df1, "df2": df2, "F_ratio": chi2 / df1, "p_value": p_value}
            )
        return pd.DataFrame(records)

    def t_tests(
        self, hypothesis=None, *, ddf: str = "satterthwaite", level: float = 0.95
    ) -> pd.DataFrame:
        """t tests of single contrasts ``l beta = 0``, one per row (lmerTest ``contest1D``).

        Used by the chapter *Generalizability* (the fixed-effect table with Satterthwaite df).

        Args:
            hypothesis: Contrast vector or matrix with one column per coefficient; None tests
                each coefficient (lmerTest's ``summary`` table).
            ddf: ``"satterthwaite"`` or ``"asymptotic"``.
            level: Confidence level of the two-sided intervals.

        Returns:
            ``estimate``, ``std_error``, ``df``, ``t_value`` (or ``z_value``), ``p_value``,
            ``ci_lower``, ``ci_upper``; indexed by coefficient name when ``hypothesis`` is None.
        """
        if hypothesis is None:
            matrix = np.eye(len(self.coefficients))
            index = pd.Index(self.design.column_names, name="term")
        else:
            matrix = self._hypothesis_matrix(hypothesis)
            index = pd.RangeIndex(len(matrix), name="contrast")
        estimate, se, df = self._estimates(matrix, ddf)
        ratio = estimate / se
        critical = _two_sided_quantile(level, df)
        return pd.DataFrame(
            {
                "estimate": estimate,
                "std_error": se,
                "df": df,
                _statistic_name(ddf, "value"): ratio,
                "p_value": 2.0 * scipy.stats.t.sf(np.abs(ratio), df),
                "ci_lower": estimate - critical * se,
                "ci_upper": estimate + critical * se,
            },
            index=index,
        )

    def f_test(self, hypothesis, *, ddf: str = "satterthwaite") -> dict[str, float]:
        """F test of ``L beta = 0`` for a contrast matrix ``L`` (lmerTest ``contestMD``).

        Used by :meth:`anova`.

        Args:
            hypothesis: Matrix with one column per coefficient (a vector is one row).
            ddf: ``"satterthwaite"`` (lmerTest's denominator df from the eigen-decomposition of
                ``L C L'``) or ``"asymptotic"`` (den_df = inf: Wald chi-square / num_df).

        Returns:
            ``sum_sq``, ``mean_sq`` (lmerTest's: ``F sigma^2 num_df`` and ``F sigma^2``),
            ``num_df``, ``den_df``, ``F_value``, ``p_value``.
        """
        _check_ddf(ddf)
        matrix = self._hypothesis_matrix(hypothesis)
        f_value, num_df, den_df = self.satterthwaite.f_test(matrix, self.coefficients)
        if ddf == "asymptotic":
            den_df = np.inf
            p_value = float(scipy.stats.chi2.sf(f_value * num_df, num_df)) if num_df else np.nan
        else:
            p_value = float(scipy.stats.f.sf(f_value, num_df, den_df)) if num_df else np.nan
        sigma2 = float(self.satterthwaite.parameters[-1] ** 2)
        return {
            "sum_sq": f_value * sigma2 * num_df,
            "mean_sq": f_value * sigma2,
            "num_df": num_df,
            "den_df": den_df,
            "F_value": f_value,
            "p_value": p_value,
        }

    def anova(self, *, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:  # noqa: A002
        """Type-III ANOVA table with lmerTest's semantics (``anova(fit, type = 3)``).

        Each term is tested with the contrasts lmerTest builds: differences from the reference
        level of each of the term's factors (products of them for interactions) of equal-weight
        marginal means over the other factors, with numeric covariates at 0 (so a factor's main
        effect is tested where an interacting covariate is 0, as in SAS); a model with a single
        term gets lmerTest's Type-I contrasts from the Doolittle decomposition of ``X'X``, as
        lmerTest does. Each row is an :meth:`f_test`.

        Used by the chapter *Generalizability* (protocol §3.5, Analysis 2b).

        Args:
            type: Only 3 is implemented.
            ddf: ``"satterthwaite"`` (lmerTest's default) or ``"asymptotic"``.

        Returns:
            One row per term: ``term``, ``sum_sq``, ``mean_sq``, ``num_df``, ``den_df``,
            ``F_value``, ``p_value``.
        """
        if type != 3:
            raise MixedModelInputError(f"type={type!r}: only the Type-III table is implemented")
        if len(self.design.terms) > 1:
            points = {v: [-1.0, 1.0] for v in self.design.covariate_means}
            hypotheses = self._term_contrasts(points, "treatment")
        else:
            hypotheses = self._type1_hypotheses()
        return pd.DataFrame([{"term": term, **self.f_test(matrix, ddf=ddf)}
                             for term, matrix in hypotheses.items()])

    def _type1_hypotheses(self) -> dict[str, np.ndarray]:
        """lmerTest's Type-I contrasts: rows of ``L'`` with ``X'X = L D L'`` (L unit lower)."""
        cholesky = np.linalg.cholesky(self.fixed_cross_product)
        unit_upper = (cholesky / np.diag(cholesky)).T
        return {":".join(term): unit_upper[columns]
                for term, columns in self.design.term_columns().items()}


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


def _cells(
    values: dict[str, np.ndarray], variables: tuple[str, ...], design: FixedDesign
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of the fixed variables' values and each observation's row index.

    With factors only, the level codes form one mixed-radix integer per row, which is much
    faster to make unique than the rows themselves.
    """
    if all(v in design.levels for v in variables):
        sizes = [len(design.levels[v]) for v in variables]
        key = np.zeros(len(values[variables[0]]), dtype=np.int64)
        for v, size in zip(variables, sizes):
            key = key * size + values[v]
        unique, cell_of_row = np.unique(key, return_inverse=True)
        cell_keys = np.empty((len(unique), len(variables)))
        for j in reversed(range(len(variables))):
            unique, cell_keys[:, j] = np.divmod(unique, sizes[j])
        return cell_keys, cell_of_row
    keys = np.column_stack([values[v].astype(float) for v in variables])
    return np.unique(keys, axis=0, return_inverse=True)


def _group_labels(terms: tuple[RandomTerm, ...]) -> list[str]:
    """lme4's names of the terms' groups: a repeated grouping factor becomes ``g.1``, ``g.2``."""
    seen: dict[str, int] = {}
    labels = []
    for term in terms:
        count = seen.get(term.group_name, 0)
        labels.append(term.group_name if count == 0 else f"{term.group_name}.{count}")
        seen[term.group_name] = count + 1
    return labels


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
            ``(1 | a/b)``, crossed ``(1 | a) + (1 | b)``, random slopes ``(1 + x | g)``,
            uncorrelated ``(x || g)`` or, equivalently, ``(1 | g) + (0 + x | g)``.
            Non-numeric columns are factors with treatment contrasts.
        reml: REML (lme4's default) or ML.
        reference: Reference level per factor (R's ``relevel``), e.g.
            ``{"Model": "contriever", "query_type": "FACTOID"}``; other factors use the first
            level in sorted (C-locale) or categorical order.

    Returns:
        The fit, with marginal means, contrasts, joint tests and the Type-III ANOVA as methods.

    Raises:
        MixedModelInputError: Unknown columns, missing values, a factor with one level, a
            reference level not in the data, a non-numeric random slope, a general random part
            with too many random effects, or unsupported formula syntax.
    """
    parsed = parse_formula(formula)
    _check_columns(df, parsed)
    design, values = build_fixed_design(df, parsed, reference)
    response = df[parsed.response].to_numpy(dtype=float)
    if design.terms:
        cell_keys, cell_of_row = _cells(values, parsed.fixed_variables, design)
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
        criterion = NestedCriterion(data)
        profiled = minimise(criterion, np.ones(len(names)), np.zeros(len(names)), reml)
        sigma2 = profiled.solution.sigma2
        variances = [(name, "(Intercept)", sigma2 * t**2) for name, t in zip(names, profiled.theta)]
        method, cross_product = "nested-intercept profiled REML", data.cross_product
    else:
        criterion = GeneralCriterion(cell_design[cell_of_row], response, terms, codes, df)
        profiled = minimise(criterion, criterion.start, criterion.lower, reml)
        sigma2 = profiled.solution.sigma2
        variances = criterion.variance_components(profiled.theta, sigma2, _group_labels(terms))
        method, cross_product = "general profiled REML", criterion.cross_product
    inference = satterthwaite_inference(
        criterion.derivatives(profiled.theta), profiled.theta, len(df), reml
    )
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
    scale = [v for _, t, v in variances if not t.startswith("cov(")]
    p = cell_design.shape[1]
    return MixedModelFit(
        formula=parsed.text,
        reml=reml,
        n_obs=len(df),
        n_groups=n_groups,
        coefficients=np.asarray(profiled.solution.coefficients),
        covariance=sigma2 * profiled.solution.unscaled_covariance,
        variance_components=pd.DataFrame(rows),
        log_likelihood=-0.5 * profiled.solution.deviance,
        method=method,
        optimizer=profiled.optimizer,
        converged=profiled.converged,
        singular=bool(np.any(np.sqrt(np.maximum(scale, 0.0) / sigma2) < 1e-4)),
        design=design,
        satterthwaite=inference,
        fixed_cross_product=cross_product[:p, :p],
    )
