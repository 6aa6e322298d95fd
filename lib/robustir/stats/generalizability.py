"""The study's query-level mixed models and the layout of its Tables 1-2 (protocol §3.4-§3.6).

For each factor X in query type, task type and corpus type the study fits

    ndcg_10 ~ Model * X + (1 | dataset_name/query_id)

by REML with reference levels ``contriever`` and FACTOID / Question Answering / Wikipedia, and
reports marginal means per Model x X cell, the systems' marginal means (equal weights over the
levels of X), the Type-III ANOVA with Satterthwaite df (lmerTest) and emmeans' joint tests. The
corpus-type model is refitted without Quora (§3.6), which supplies most Online Community queries.

Task and corpus type come from the dataset registry (:func:`robustir.stats.factors.dataset_factor`);
query type is a column of the table when the NF-CATS labels exist. A model that cannot be fitted
on the given table (a factor absent, with one level, or confounded with the datasets) is skipped
with the reason, so the same call serves the paper-scale table and the default grid's runs.

Used by the book chapter *Generalizability* (``notebooks/generalizability.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from robustir.data import STUDY_DATASETS
from robustir.stats.factors import (
    CORPUS_TYPE_ORDER,
    CORPUS_TYPE_REFERENCE,
    MODEL_REFERENCE,
    QUERY_TYPE_ORDER,
    QUERY_TYPE_REFERENCE,
    TASK_TYPE_ORDER,
    TASK_TYPE_REFERENCE,
    dataset_factor,
)
from robustir.stats.mixed import MixedModelFit, fit_mixed

__all__ = ["QUERY_LEVEL_FACTORS", "GeneralizabilityTables", "QueryLevelAnalysis", "query_level_tables"]

log = logging.getLogger(__name__)

QUERY_LEVEL_FACTORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "query_type": (QUERY_TYPE_REFERENCE, QUERY_TYPE_ORDER),
    "task_type": (TASK_TYPE_REFERENCE, TASK_TYPE_ORDER),
    "corpus_type": (CORPUS_TYPE_REFERENCE, CORPUS_TYPE_ORDER),
}
"""Each factor X of the study's query-level models: its reference level and display order."""

DATASET_LEVEL_FACTORS = ("task_type", "corpus_type")
QUORA = "quora"
REQUIRED_COLUMNS = ("query_id", "dataset_name", "Model", "ndcg_10")


@dataclass(frozen=True)
class QueryLevelAnalysis:
    """One query-level model ``ndcg_10 ~ Model * X + (1 | dataset_name/query_id)``.

    Attributes:
        name: ``"query_type"``, ``"task_type"``, ``"corpus_type"`` or
            ``"corpus_type_without_quora"``.
        factor: The factor X.
        formula: The lme4 formula.
        reference: Reference levels used (the study's where present, else the first level).
        n_obs: Rows the model was fitted on (0 when skipped).
        skipped: Why the model was not fitted; None when it was.
        fit: The fit (None when skipped): fixed effects, variance components, :meth:`t_tests`.
        cell_means: Marginal mean per Model x X cell: ``Model``, X, ``marginal_mean``,
            ``std_error``, ``df``, ``ci_lower``, ``ci_upper`` (nDCG@10 in [0, 1]).
        system_means: Marginal mean per system, equal weights over the levels of X.
        anova: Type-III ANOVA, Satterthwaite df (lmerTest ``anova(fit, type = 3)``).
        joint_tests: emmeans ``joint_tests`` of Model, X and Model:X.
        notes: What was left out of the table for this model, and why.
    """

    name: str
    factor: str
    formula: str
    reference: dict[str, str]
    n_obs: int = 0
    skipped: str | None = None
    fit: MixedModelFit | None = field(default=None, repr=False)
    cell_means: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    system_means: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    anova: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    joint_tests: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    notes: tuple[str, ...] = ()

    def cell_grid(self, value: str = "marginal_mean") -> pd.DataFrame:
        """The cell means as the study prints them: one row per level of X, one column per system.

        Args:
            value: A column of :attr:`cell_means` (``"marginal_mean"``, ``"std_error"``, ...).
        """
        if self.skipped is not None:
            return pd.DataFrame()
        grid = self.cell_means.pivot(index=self.factor, columns="Model", values=value)
        levels = list(dict.fromkeys(self.cell_means[self.factor]))
        systems = list(dict.fromkeys(self.cell_means["Model"]))
        return grid.loc[levels, systems]


@dataclass(frozen=True)
class GeneralizabilityTables:
    """The study's Tables 1-2 content: one :class:`QueryLevelAnalysis` per model.

    Attributes:
        analyses: Keyed by analysis name, in the order query type, task type, corpus type,
            corpus type without Quora (the last only when Quora is in the table).
        means_ddf: Inference of the marginal means and joint tests (``"satterthwaite"`` or
            ``"asymptotic"``, the study's emmeans fallback above 3,000 rows); the ANOVA always
            uses Satterthwaite, as lmerTest.
    """

    analyses: dict[str, QueryLevelAnalysis]
    means_ddf: str

    def anova_rows(self) -> pd.DataFrame:
        """All fitted models' Type-III ANOVA rows, with an ``analysis`` column first."""
        frames = [a.anova.assign(analysis=name) for name, a in self.analyses.items() if a.skipped is None]
        if not frames:
            return pd.DataFrame()
        table = pd.concat(frames, ignore_index=True)
        return table[["analysis", *[c for c in table.columns if c != "analysis"]]]

    def skipped(self) -> dict[str, str]:
        """Analysis name -> reason, for the models that were not fitted."""
        return {name: a.skipped for name, a in self.analyses.items() if a.skipped is not None}


def _with_dataset_factors(scores: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """Add task and corpus type from the registry; rows of other datasets get no level."""
    table = scores.copy()
    notes: dict[str, tuple[str, ...]] = {}
    datasets = table["dataset_name"].astype(str)
    inside = datasets.isin(STUDY_DATASETS)
    outside = sorted(set(datasets[~inside]))
    for factor in DATASET_LEVEL_FACTORS:
        if factor in table.columns:
            continue
        table[factor] = pd.Series(None, index=table.index, dtype=object)
        if inside.any():
            table.loc[inside, factor] = dataset_factor(datasets[inside], factor).astype(str).to_numpy()
        if outside:
            notes[factor] = (
                f"datasets {outside} have no {factor} level of the study (protocol §3.1) and are "
                f"left out of the {factor} model",
            )
    return table, notes


def _levels(column: pd.Series) -> list[str]:
    """Distinct non-missing values as sorted strings (without converting every row)."""
    return sorted({str(v) for v in column.dropna().unique()})


def _reason_to_skip(table: pd.DataFrame, factor: str) -> str | None:
    if factor not in table.columns or table[factor].isna().all():
        if factor == "query_type":
            return ("the table has no query_type labels; query types come from the NF-CATS "
                    "classifier (protocol §3.2), which is unavailable in this build")
        return f"no dataset of the table has a {factor} level of the study (protocol §3.1)"
    levels = _levels(table[factor])
    if len(levels) < 2:
        return (f"{factor} has a single level {levels[0]!r} in this table; a Model x {factor} "
                "model needs at least two")
    if factor in DATASET_LEVEL_FACTORS:
        n_datasets = table.loc[table[factor].notna(), "dataset_name"].nunique()
        if n_datasets <= len(levels):
            return (f"each of the {len(levels)} {factor} levels holds a single dataset, so the "
                    f"dataset variance cannot be told apart from the {factor} effect")
    return None


def _analysis(
    name: str, table: pd.DataFrame, factor: str, notes: tuple[str, ...], means_ddf: str, level: float
) -> QueryLevelAnalysis:
    reference_level, order = QUERY_LEVEL_FACTORS[factor]
    formula = f"ndcg_10 ~ Model * {factor} + (1 | dataset_name/query_id)"
    skipped = _reason_to_skip(table, factor)
    if skipped is not None:
        log.info("query-level model %s skipped: %s", name, skipped)
        return QueryLevelAnalysis(name, factor, formula, {}, skipped=skipped, notes=notes)
    missing = int(table[factor].isna().sum())
    if missing and factor == "query_type":
        notes = (*notes, f"{missing} rows without a query_type label are left out")
    data = table[table[factor].notna()].copy()
    observed = set(_levels(data[factor]))
    present = [lv for lv in order if lv in observed]
    present += sorted(observed - set(present))
    data[factor] = pd.Categorical(data[factor].astype(str), categories=present)
    systems = _levels(data["Model"])
    reference = {
        "Model": MODEL_REFERENCE if MODEL_REFERENCE in systems else systems[0],
        factor: reference_level if reference_level in present else present[0],
    }
    fit = fit_mixed(data, formula, reference=reference)
    return QueryLevelAnalysis(
        name, factor, formula, reference, n_obs=len(data), fit=fit,
        cell_means=fit.marginal_means(["Model", factor], level=level, ddf=means_ddf),
        system_means=fit.marginal_means("Model", level=level, ddf=means_ddf),
        anova=fit.anova(ddf="satterthwaite"),
        joint_tests=fit.joint_tests(ddf=means_ddf),
        notes=notes,
    )


def query_level_tables(
    scores: pd.DataFrame, *, means_ddf: str = "satterthwaite", level: float = 0.95
) -> GeneralizabilityTables:
    """Fit the study's three query-level models and the refit without Quora (Tables 1-2).

    Used by the chapter *Generalizability*.

    Args:
        scores: Query-level long table, one row per query x system, with columns ``query_id``
            (unique across datasets, e.g. ``scifact__test__42``), ``dataset_name`` (registry
            key), ``Model``, ``ndcg_10`` (nDCG@10 in [0, 1]) and, when the NF-CATS labels exist,
            ``query_type``. ``task_type`` and ``corpus_type`` are added from the dataset registry
            unless present; datasets outside the study's maps are left out of those two models
            (recorded in the analysis' notes).
        means_ddf: Inference of the marginal means and joint tests: ``"satterthwaite"`` or
            ``"asymptotic"`` (z, df = inf; what the study's emmeans run used at 382,716 rows,
            protocol §3.5). The ANOVA is always lmerTest's Satterthwaite table.
        level: Confidence level of the marginal means' intervals.

    Returns:
        The analyses; skipped ones carry the reason.

    Raises:
        ValueError: A required column is missing (the message lists them).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(
            f"the query-level table lacks columns {missing}; it needs {list(REQUIRED_COLUMNS)} "
            "and optionally query_type (protocol §2.6 long table)"
        )
    table, notes = _with_dataset_factors(scores)
    analyses = {
        factor: _analysis(factor, table, factor, notes.get(factor, ()), means_ddf, level)
        for factor in QUERY_LEVEL_FACTORS
    }
    if (table["dataset_name"] == QUORA).any():
        without = table[table["dataset_name"] != QUORA]
        note = (*notes.get("corpus_type", ()), "quora removed (protocol §3.6 sanity refit)")
        analyses["corpus_type_without_quora"] = _analysis(
            "corpus_type_without_quora", without, "corpus_type", note, means_ddf, level
        )
    return GeneralizabilityTables(analyses, means_ddf)
