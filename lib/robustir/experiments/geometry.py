"""Embedding geometry of one system on one dataset, and its relation to stability (protocol §6).

:func:`run_geometry` samples a system's clean corpus embeddings with the study's
length-stratified scheme (§6.1) and measures IsoScore, the average cosine (random pairs and the
exact distinct-pair mean), uniformity, alignment of queries with their gold passages and the
mean spectral norm of the Linear layers; :meth:`GeometryRun.write` stores it under
:data:`EXPERIMENT`.

For the aggregate notebook: :func:`summarise` gives the seed means of every stored geometry
value, :func:`stability_panels` joins them with drop rates, absolute nDCG@10 changes and attack
success rates from the other experiments (one row per system and panel, clean effectiveness
beside it, systems below a clean-effectiveness floor flagged as controls), and
:func:`correlation_grid` tests every panel that has enough distinct points.

Used in the book chapter "Embedding geometry" (notebooks ``geometry`` and ``geometry_summary``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustir import geometry
from robustir.data import Dataset, load_dataset
from robustir.provenance import library_versions
from robustir.results import ResultStore
from robustir.retrievers import EmbeddingRetriever, TransformerRetriever, make_retriever
from robustir.stats import correlation

__all__ = [
    "EXPERIMENT",
    "MIN_DISTINCT_POINTS",
    "GeometryRun",
    "correlation_grid",
    "run_geometry",
    "stability_panels",
    "summarise",
]

log = logging.getLogger(__name__)

#: The results-store experiment of geometry runs.
EXPERIMENT = "geometry"
#: The study's value of each run parameter (protocol §6.1), shown beside ours on every run page.
STUDY_SETTINGS = {"dataset": "nq, hotpotqa, msmarco (dev)", "sample_size": 100_000,
                  "shard_size": 50_000, "n_pairs": 100_000, "seed": "1999, 5, 27, 2016, 2026",
                  "max_length": "8192 (Contriever: 512)"}
#: Fewest distinct values on each axis for a panel's correlation to be computed and drawn.
MIN_DISTINCT_POINTS = 4
#: Geometry values in the order tables and figures show them.
GEOMETRY_METRICS = ("average_cosine", "isoscore", "uniformity", "alignment", "mean_spectral_norm")


@dataclass
class GeometryRun:
    """The outcome of :func:`run_geometry`.

    Attributes:
        values: ``{metric: value}`` (IsoScore, average cosine, exact average cosine,
            uniformity, alignment, mean spectral norm, Linear-layer count).
        per_query: ``query_id, measure, value`` rows (alignment per query).
        params: Every parameter of the run, for the results store.
        summary: Values and counts, for the results store.
        sample: The sampled embeddings ``(n, d)`` (the variance spectrum is drawn from it).
    """

    values: dict[str, float]
    per_query: pd.DataFrame
    params: dict[str, Any]
    summary: dict[str, Any]
    sample: np.ndarray

    def write(self, store: ResultStore | str | os.PathLike) -> Path:
        """Write the run as a results-store entry and return its folder."""
        store = store if isinstance(store, ResultStore) else ResultStore(store)
        params = self.params
        entry = store.entry_dir(EXPERIMENT, params["model"]["key"], params["dataset"],
                                params["variant"], params["seed"])
        return store.write_entry(entry, params, self.per_query, self.summary)


def run_geometry(
    model: Any,
    dataset: str | Dataset,
    *,
    split: str = "test",
    seed: int = 1999,
    sample_size: int = 100_000,
    shard_size: int = 50_000,
    n_pairs: int = 100_000,
    uniformity_t: float = 2.0,
    variant: str = "clean",
    data_root: str | os.PathLike | None = None,
    cache=None,
    device: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    dtype: str | None = None,
) -> GeometryRun:
    """Measure the geometry of one system's clean corpus embeddings (protocol §6.1–§6.5).

    Args:
        model: A catalog key, folder, spec file or mapping, a user encoder object, or an
            :class:`~robustir.retrievers.EmbeddingRetriever`.
        dataset: Dataset key, folder or loaded split (its queries give the alignment pairs).
        split: Qrels split whose (query, gold passage) pairs give the alignment.
        seed: Sampling seed (the study: 1999, 5, 27, 2016, 2026).
        sample_size: Documents per sample (the study: 100,000; a smaller corpus is taken whole).
        shard_size: Documents per length-sorted shard (the study: 50,000).
        n_pairs: Random pairs of the average cosine (the study: 100,000).
        uniformity_t: Temperature of the uniformity loss.
        variant: Results-store variant (the clean corpus embeddings).
        data_root, cache, device, batch_size, max_length, dtype: As for
            :func:`robustir.experiments.evaluation.evaluate`; match the clean runs' max length
            and dtype to read the corpus from the cache.

    Raises:
        TypeError: The system gives no embeddings (BM25, a search-only user retriever).
    """
    retriever = make_retriever(model, device=device, batch_size=batch_size,
                               max_length=max_length, dtype=dtype, cache=cache, progress=False)
    if not isinstance(retriever, EmbeddingRetriever):
        raise TypeError(f"{retriever.spec.key} gives no embeddings ({retriever.kind}); geometry "
                        "needs a dense or static model")
    spec = retriever.spec
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, split, data_root)
    corpus = retriever.encode_corpus(data)
    sample_ids, sample = geometry.sample_corpus_embeddings(
        data.corpus, corpus, sample_size, shard_size=shard_size, seed=seed)
    values = geometry.sample_geometry(sample, seed=seed, n_pairs=n_pairs,
                                      uniformity_t=uniformity_t, device=device)
    queries = retriever.encode_queries(data.queries, data)
    anchors, positives, pair_query_ids = geometry.positive_pairs(queries, corpus, data.qrels)
    distances = geometry.pair_distances(anchors, positives)
    values["alignment"] = float(distances.mean())
    per_query = (
        pd.DataFrame({"query_id": pair_query_ids, "value": distances})
        .groupby("query_id", sort=False, as_index=False)["value"].mean()
        .assign(measure="alignment")[["query_id", "measure", "value"]]
    )
    # a property of the weights: siblings read at another layer or pooling share it
    if isinstance(retriever, TransformerRetriever):
        layer_norms = geometry.linear_spectral_norms(retriever.encoder.model)
        spectral = geometry.spectral_norm_summary(layer_norms)
        values["mean_spectral_norm"] = spectral.mean
        values["n_linear_layers"] = spectral.n_layers
        spectral_record = spectral.as_dict()
    else:
        layer_norms, spectral_record = {}, None
        values["mean_spectral_norm"] = float("nan")
        values["n_linear_layers"] = 0
    params = {
        "model": spec.as_record(),
        "dataset": data.key,
        "split": data.split,
        "data_checksum": data.checksum,
        "variant": variant,
        "seed": seed,
        "sample_size": sample_size,
        "shard_size": shard_size,
        "n_pairs": n_pairs,
        "uniformity_t": uniformity_t,
        "alignment_pairs": "query and each document with grade >= 1 in the split's qrels",
        "encoding": retriever.record(data),
        "libraries": library_versions(),
    }
    summary = {
        "metrics": values,
        "n_queries": int(per_query["query_id"].nunique()),
        "n_sampled_documents": len(sample_ids),
        "n_corpus_documents": len(data.corpus),
        "dimension": int(sample.shape[1]),
        "n_alignment_pairs": int(distances.size),
        "spectral_norm": spectral_record,
        "layer_spectral_norms": layer_norms,
    }
    log.info("%s on %s seed %d: %s", spec.key, data.name, seed, values)
    return GeometryRun(values, per_query, params, summary, sample)


def seed_means(frame: pd.DataFrame, keys: Sequence[str], measures: Sequence[str]) -> pd.DataFrame:
    """Mean and population std (``<measure>_std``, ddof = 0 as the study) over seeds."""
    grouped = frame.groupby(list(keys))[list(measures)]
    return grouped.mean().join(grouped.std(ddof=0).add_suffix("_std")).reset_index()


def summarise(store: ResultStore | str | os.PathLike, *,
              models: Sequence[str] | None = None) -> pd.DataFrame:
    """Seed means (and population stds) of every stored geometry value, per (model, dataset).

    Raises:
        LookupError: The store holds no geometry result (for these models).
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    runs = store.read_summaries(EXPERIMENT)
    if models is not None and not runs.empty:
        runs = runs[runs["model"].isin(models)]
    if runs.empty:
        raise LookupError(f"no results of experiment {EXPERIMENT!r} under {store.root}: run "
                          "notebooks/geometry.py (e.g. `robustir run configs/default.yaml`) first")
    metrics = [m for m in (*GEOMETRY_METRICS, "exact_average_cosine") if m in runs.columns]
    return seed_means(runs, ["model", "dataset"], metrics)


def _measure_table(store: ResultStore, experiment: str, measure: str,
                   variant: str | None = None) -> pd.DataFrame:
    """Seed means of one summary measure per (model, dataset, variant); empty when absent."""
    runs = store.read_summaries(experiment)
    if variant is not None and not runs.empty:
        runs = runs[runs["variant"] == variant]
    if runs.empty or measure not in runs.columns or runs[measure].isna().all():
        return pd.DataFrame(columns=["model", "dataset", "variant", measure])
    runs = runs.dropna(subset=[measure])  # e.g. the clean reference entries of query_variations
    return runs.groupby(["model", "dataset", "variant"], as_index=False)[measure].mean()


def clean_effectiveness(store: ResultStore | str | os.PathLike, *, measure: str = "nDCG@10",
                        sources: Sequence[Sequence[str]] = (("evaluate", "clean"),
                                                            ("query_variations", "none"))
                        ) -> pd.DataFrame:
    """Clean ``measure`` per (model, dataset): the evaluate runs, completed by the clean
    reference runs of other experiments (the first source that has a system wins)."""
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    tables = [_measure_table(store, experiment, measure, variant) for experiment, variant in sources]
    return (pd.concat(tables).drop_duplicates(["model", "dataset"], keep="first")
            .drop(columns="variant").reset_index(drop=True))


def stability_panels(
    store: ResultStore | str | os.PathLike,
    *,
    models: Sequence[str] | None = None,
    clean_measure: str = "nDCG@10",
    floor: float = 0.05,
    asr_measure: str = "ASR@20",
    asr_variant: str | None = None,
) -> pd.DataFrame:
    """Geometry against stability, one row per (system, dataset, stability measure, variant,
    geometry metric), in long form.

    Stability measures: ``drop_rate`` (relative, per query-variation family),
    ``absolute drop of nDCG@10`` (clean − perturbed, defined at chance level too) and
    ``asr_measure`` (per poisoning variant). ``control`` is True for systems whose clean
    effectiveness is below ``floor``: a relative drop divides by a near-zero score, so they
    belong in a separate controls panel, not in a headline correlation.

    Returns:
        Columns ``model, dataset, variant, stability_measure, stability, metric, geometry,
        <clean_measure>, control``.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    geometry_table = summarise(store, models=models)
    metrics = [m for m in GEOMETRY_METRICS if m in geometry_table.columns]
    clean = clean_effectiveness(store, measure=clean_measure)
    absolute = f"absolute drop of {clean_measure}"
    changes = _measure_table(store, "query_variations", "clean").merge(
        _measure_table(store, "query_variations", "perturbed"), on=["model", "dataset", "variant"])
    changes[absolute] = changes["clean"] - changes["perturbed"]
    sources = {
        "drop_rate": _measure_table(store, "query_variations", "drop_rate"),
        absolute: changes[["model", "dataset", "variant", absolute]],
        asr_measure: _measure_table(store, "corpus_poisoning", asr_measure, asr_variant),
    }
    frames = []
    for measure, table in sources.items():
        if table.empty:
            continue
        joined = geometry_table[["model", "dataset", *metrics]].merge(table, on=["model", "dataset"])
        long = joined.melt(id_vars=["model", "dataset", "variant", measure], value_vars=metrics,
                           var_name="metric", value_name="geometry")
        frames.append(long.rename(columns={measure: "stability"}).assign(stability_measure=measure))
    columns = ["model", "dataset", "variant", "stability_measure", "stability", "metric",
               "geometry", clean_measure, "control"]
    if not frames:
        return pd.DataFrame(columns=columns)
    panels = pd.concat(frames, ignore_index=True).merge(clean, on=["model", "dataset"], how="left")
    panels = panels.dropna(subset=["geometry", "stability"])
    panels["control"] = panels[clean_measure].fillna(0.0) < floor
    return panels[columns]


def panel_is_testable(points: pd.DataFrame, *, x: str = "geometry", y: str = "stability") -> bool:
    """Whether a panel has at least :data:`MIN_DISTINCT_POINTS` distinct values on each axis."""
    return bool(points[x].nunique() >= MIN_DISTINCT_POINTS
                and points[y].nunique() >= MIN_DISTINCT_POINTS)


def correlation_grid(panels: pd.DataFrame, *, clean_measure: str = "nDCG@10",
                     confidence: float = 0.95, alpha: float = 0.05) -> pd.DataFrame:
    """Every correlation test of the grid, on the systems above the floor (no controls).

    Panels with fewer than :data:`MIN_DISTINCT_POINTS` distinct geometry or stability values
    are left out (a spectral norm shared by one backbone's readings counts once). Holm and
    Benjamini–Hochberg adjustments run across the panels kept.

    Returns:
        One row per panel: Pearson r with its Fisher-z interval, Spearman ρ, Kendall τ-b, the
        partial correlation controlling for clean effectiveness, adjusted p-values, and
        ``distinct_geometry_values``.
    """
    keys = ["stability_measure", "dataset", "variant", "metric"]
    kept = panels[~panels["control"]].dropna(subset=[clean_measure])
    testable = [group for _, group in kept.groupby(keys) if panel_is_testable(group)]
    if not testable:
        return pd.DataFrame()
    data = pd.concat(testable, ignore_index=True)
    grid = correlation.correlation_table(data, x="geometry", y="stability", by=keys,
                                         control=clean_measure, confidence=confidence, alpha=alpha)
    distinct = data.groupby(keys)["geometry"].nunique().rename("distinct_geometry_values")
    return grid.join(distinct, on=keys)


def scaling_table(store: ResultStore | str | os.PathLike, parameters: Mapping[str, float], *,
                  clean_measure: str = "nDCG@10", asr_measure: str = "ASR@20") -> pd.DataFrame:
    """Clean effectiveness, mean drop rate and mean ASR of systems against their size.

    Args:
        store: The results store.
        parameters: ``{model: parameter count}`` of the systems to show.

    Returns:
        One row per (model, dataset) with ``parameters``, the clean measure and, where stored,
        ``drop_rate`` (mean over families) and ``asr_measure`` (mean over variants).
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    clean = clean_effectiveness(store, measure=clean_measure)
    table = clean[clean["model"].isin(list(parameters))].copy()
    table.insert(1, "parameters", table["model"].map(parameters))
    for experiment, measure in (("query_variations", "drop_rate"), ("corpus_poisoning", asr_measure)):
        stored = _measure_table(store, experiment, measure)
        if not stored.empty:
            means = stored.groupby(["model", "dataset"], as_index=False)[measure].mean()
            table = table.merge(means, on=["model", "dataset"], how="left")
    return table.sort_values(["dataset", "parameters"]).reset_index(drop=True)


def findings(grid: pd.DataFrame, scaling: pd.DataFrame, *, dataset: str = "scifact",
             depth_series: Sequence[str] = ("smollm2_ret_l10", "smollm2_ret_l20", "smollm2_ret")):
    """The findings box of the geometry chapter.

    Args:
        grid: :func:`correlation_grid` (systems above the floor only).
        scaling: :func:`scaling_table`.
        dataset: The dataset of the panels.
        depth_series: One family's systems, smallest first (our stand-in for the study's
            Qwen3-Embedding 0.6B / 4B / 8B).
    """
    from robustir.experiments.findings import Finding, format_number
    from robustir.models import display_name

    rows = []
    panel = grid[(grid["stability_measure"] == "drop_rate") & (grid["dataset"] == dataset)
                 & (grid["variant"] == "mispelling") & (grid["metric"] == "average_cosine")] \
        if not grid.empty else grid
    claim = ("Angular uniformity (a lower average cosine) predicts lexical stability: the "
             "average cosine correlates with the misspelling drop rate across systems")
    if len(panel):
        r = panel.iloc[0]
        # the claim's direction: a higher average cosine (less uniform), a larger drop rate
        verdict = "consistent" if r["pearson_p"] < 0.05 and r["pearson_r"] > 0 else "differs"
        rows.append(Finding(
            claim=claim,
            scope=f"{int(r['n'])} systems above the floor on {dataset} (the study: 7 on 3 datasets)",
            ours=f"Pearson r = {r['pearson_r']:.2f} (p = {r['pearson_p']:.2g}, 95% CI "
                 f"[{r['pearson_ci_low']:.2f}, {r['pearson_ci_high']:.2f}])",
            published="none released (Figures 2–3 only)", verdict=verdict,
            rule="consistent only for r > 0 with p < 0.05, the study's mark of significance "
                 "(no correction)"))
    else:
        rows.append(Finding(claim=claim, scope=f"needs {MIN_DISTINCT_POINTS}+ distinct systems",
                            ours="too few systems with geometry and drop rates",
                            published="none released", verdict="not comparable",
                            rule="panel not testable"))
    present = [m for m in depth_series if m in set(scaling.get("model", []))]
    claim = "Larger models are generally more robust (scaling within one family)"
    if len(present) == len(depth_series) and "drop_rate" in scaling:
        rates = scaling[scaling["dataset"] == dataset].set_index("model").loc[present, "drop_rate"]
        decreasing = bool((rates.diff().dropna() < 0).all())
        rows.append(Finding(
            claim=claim,
            scope="one recipe at three depths of SmolLM2 (10, 20, 30 layers) instead of "
                  "Qwen3-Embedding 0.6B / 4B / 8B",
            ours="mean drop rate over families: " + ", ".join(
                f"{display_name(m)} {format_number(100 * v, 1)}%" for m, v in rates.items()),
            published="none released for the Qwen3 sizes (only their clean nDCG@10)",
            verdict="consistent" if decreasing else "differs",
            rule="consistent only if the drop rate falls at every step up in depth"))
    else:
        rows.append(Finding(claim=claim, scope="needs the three depths", ours="not run in this build",
                            published="none released", verdict="not comparable",
                            rule="depth series incomplete"))
    return rows
