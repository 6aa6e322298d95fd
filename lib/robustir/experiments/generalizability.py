"""Generalizability (RQ1): mixed models over datasets, on the published table and on our runs.

The model-fitting step of the analysis (protocol §3): the published per-dataset nDCG@10 of the
study's nine systems (:func:`published_scores`) fitted at the dataset level
(:func:`fit_dataset_level`), family contrasts such as the "specialization tax"
(:func:`family_contrasts`), and the query-level table of our own clean evaluations
(:func:`query_level_table`), made balanced before fitting (:func:`balanced_design`) so that
every system is compared on the same queries.

Used in the book chapter "Generalizability" (notebook ``generalizability``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from robustir.models import MODELS, systems_by_family
from robustir.results import ResultStore
from robustir.stats.factors import (
    CORPUS_TYPE_REFERENCE,
    MODEL_REFERENCE,
    TASK_TYPE_REFERENCE,
    dataset_factor,
)
from robustir.stats.mixed import fit_mixed

__all__ = [
    "DATASET_LEVEL_MODELS",
    "FAMILY_CONTRASTS",
    "balanced_design",
    "family_contrasts",
    "fit_dataset_level",
    "published_scores",
    "query_level_table",
]

#: The dataset-level models fitted on the published table: name → (formula, reference levels).
DATASET_LEVEL_MODELS: dict[str, tuple[str, dict[str, str]]] = {
    "dataset only": ("ndcg ~ Model + (1 | dataset)", {}),
    "task type": ("ndcg ~ Model * task_type + (1 | dataset)", {"task_type": TASK_TYPE_REFERENCE}),
    "corpus type": ("ndcg ~ Model * corpus_type + (1 | dataset)",
                    {"corpus_type": CORPUS_TYPE_REFERENCE}),
}

#: The family comparisons of the study's claims: name → (first family, second family), labels
#: of :data:`robustir.models.FAMILIES`. A negative "reasoning − general" is the specialization tax.
FAMILY_CONTRASTS: dict[str, tuple[str, str]] = {
    "reasoning − general": ("reasoning-tuned", "general instruction-tuned"),
    "reasoning − encoder-only": ("reasoning-tuned", "encoder-only"),
    "general − encoder-only": ("general instruction-tuned", "encoder-only"),
}


def published_scores(reference_dir: str | os.PathLike) -> pd.DataFrame:
    """The study's per-dataset nDCG@10 in long form, on the [0, 1] scale, with its factors.

    Args:
        reference_dir: Folder holding ``li2026_per_dataset_ndcg10.csv``.

    Returns:
        Columns ``dataset, n_queries, Model, ndcg, task_type, corpus_type``.
    """
    published = pd.read_csv(Path(reference_dir) / "li2026_per_dataset_ndcg10.csv")
    systems = [c for c in published.columns if c not in ("dataset", "n_queries")]
    scores = published.melt(id_vars=["dataset", "n_queries"], value_vars=systems,
                            var_name="Model", value_name="ndcg")
    scores["ndcg"] = scores["ndcg"] / 100.0
    scores["task_type"] = dataset_factor(scores["dataset"], "task_type").astype(str)
    scores["corpus_type"] = dataset_factor(scores["dataset"], "corpus_type").astype(str)
    return scores


def fit_dataset_level(scores: pd.DataFrame, models: Mapping[str, tuple[str, dict]] | None = None):
    """REML fits of the dataset-level models (:data:`DATASET_LEVEL_MODELS`), contriever as the
    reference system as in the study. Returns ``{name: fit}``."""
    models = DATASET_LEVEL_MODELS if models is None else models
    return {name: fit_mixed(scores, formula, reference={"Model": MODEL_REFERENCE, **reference})
            for name, (formula, reference) in models.items()}


def family_contrasts(fit, systems: Sequence[str], *, adjust: str = "holm") -> pd.DataFrame:
    """The :data:`FAMILY_CONTRASTS` of a fit: each family's mean marginal mean minus another's.

    Families come from the catalog (:func:`robustir.models.systems_by_family`); a contrast
    whose families are not both among ``systems`` is left out.
    """
    by_family = systems_by_family(s for s in systems if s in MODELS)
    contrasts = {}
    for name, (first, second) in FAMILY_CONTRASTS.items():
        if first in by_family and second in by_family:
            weights = {s: 1.0 / len(by_family[first]) for s in by_family[first]}
            weights.update({s: -1.0 / len(by_family[second]) for s in by_family[second]})
            contrasts[name] = weights
    return fit.contrasts("Model", contrasts, adjust=adjust)


def query_level_table(store: ResultStore | str | os.PathLike, *, experiment: str = "evaluate",
                      variant: str = "clean", measure: str = "nDCG@10") -> pd.DataFrame:
    """Our own query-level scores in the study's long layout (protocol §2.6).

    Returns:
        Columns ``query_id`` (``"{dataset}__{qid}"``, unique across datasets),
        ``dataset_name``, ``Model``, ``ndcg_10``; seeds averaged.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    per_query = store.read_per_query(experiment, variant=variant, measures=[measure])
    if per_query.empty:
        return pd.DataFrame(columns=["query_id", "dataset_name", "Model", "ndcg_10"])
    table = (per_query.groupby(["model", "dataset", "query_id"], as_index=False)["value"].mean()
             .rename(columns={"model": "Model", "dataset": "dataset_name", "value": "ndcg_10"}))
    table["query_id"] = table["dataset_name"] + "__" + table["query_id"].astype(str)
    return table[["query_id", "dataset_name", "Model", "ndcg_10"]]


def balanced_design(table: pd.DataFrame, *, exclude: Sequence[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """The systems present on every dataset, on the queries all of them answered.

    A mixed model over an unbalanced store (a system on one dataset only) would compare systems
    on different datasets; the balanced design compares them on the same queries.

    Args:
        table: From :func:`query_level_table`.
        exclude: Systems to leave out (e.g. chance-level controls).

    Returns:
        The balanced table and the systems left out (excluded or missing a dataset), sorted.
    """
    table = table[~table["Model"].isin(exclude)]
    datasets = set(table["dataset_name"])
    coverage = table.groupby("Model")["dataset_name"].agg(set)
    kept = sorted(m for m, covered in coverage.items() if covered == datasets)
    dropped = sorted(set(exclude) | (set(coverage.index) - set(kept)))
    table = table[table["Model"].isin(kept)]
    complete = table.groupby("query_id")["Model"].nunique() == len(kept)
    table = table[table["query_id"].isin(complete[complete].index)]
    return table.reset_index(drop=True), dropped


def findings(fits: Mapping[str, object], systems: Sequence[str]):
    """The findings box of the generalizability chapter, from :func:`fit_dataset_level` on the
    published table: which family generalizes best, and the specialization tax.

    The study's marginal means (Tables 1–2) were not released, so the numbers here are our
    re-analysis of its published per-dataset scores, and the verdicts compare directions.
    """
    from robustir.experiments.findings import Finding, compare_direction
    from robustir.models import MODELS, family_label

    fit = fits["dataset only"]
    means = fit.marginal_means("Model").sort_values("marginal_mean", ascending=False)
    best = means.iloc[0]
    best_family = family_label(MODELS[best["Model"]].family) if best["Model"] in MODELS else "?"
    tax = family_contrasts(fit, systems).set_index("contrast").loc["reasoning − general"]
    rows = [
        Finding(
            claim="Instruction-tuned LLM retrievers (Qwen3, Linq, GTE) generalize best",
            scope="our mixed-model re-analysis of the study's published per-dataset nDCG@10 "
                  "(9 systems × 27 datasets)",
            ours=f"highest marginal mean: {best['Model']} ({best['marginal_mean']:.3f}, "
                 f"{best_family})",
            published="the study's marginal means (Tables 1–2) were not released",
            verdict="consistent" if best_family == "general instruction-tuned" else "differs",
            rule="family of the system with the highest marginal mean"),
        Finding(
            claim="Reasoning-optimized retrievers pay a specialization tax (below the general "
                  "instruction-tuned family)",
            scope="the same re-analysis; family contrast of marginal means, Holm-adjusted",
            ours=f"reasoning − general = {tax['estimate']:.3f} (p = {tax['p_value']:.2g})",
            published="not released",
            verdict=compare_direction(float(tax["estimate"]), expected_sign=-1),
            rule="sign of the contrast (p < 0.05: " + ("yes" if tax["p_value"] < 0.05 else "no") + ")"),
    ]
    return rows
