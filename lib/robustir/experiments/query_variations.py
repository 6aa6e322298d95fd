"""Query variations: clean vs perturbed evaluation of a system (protocol §4.4).

:func:`evaluate_variation` evaluates a system on a split's clean queries and on one family's
variants for one seed. Both runs share the retriever and its embedding cache, so the corpus is
encoded once (or read from the cache) and only the perturbed queries are encoded again, as in
the study. It returns the two evaluations, the variant set, the per-query rank stability and a
summary with the drop rate of the seed, the unchanged fraction (protocol §8.1 row 13), the
shares of queries that drop/stay/rise, a query-bootstrap interval and the paired tests
(improvements, §8.2). :func:`write_variation_run` stores it under experiment
``query_variations``: variant ``none`` (clean, seed-independent, ``seed-none``) and variant =
family code key for the seed (suffixed ``_rng-query`` for per-query seeding, an improvement kept
apart from the study's runs).

Variant files are shared by all systems (one per dataset, split, family, seed and RNG scope)
under ``variants_dir``: the first run writes it, later runs with other systems read it.

:func:`summarise` (the seed aggregation) reads them back for the aggregate notebook.

Used by the notebooks ``query_variations`` and ``query_variations_summary`` and the benchmark
``variation_sweep``; chapter "Query variations".
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from robustir.data import Dataset
from robustir.encode import forward_identity
from robustir.experiments.evaluation import Evaluation, evaluate
from robustir.metrics.stability import drop_rate, drop_rates, query_change_fractions, rank_stability
from robustir.perturb.family import Family
from robustir.perturb.variation import (
    GENERATORS_REVISION,
    VariationSet,
    build_family,
    generate_variations,
    resolve_family,
)
from robustir.results import ResultStore, per_query_long
from robustir.retrievers import Retriever, TransformerRetriever
from robustir.stats.resampling import bootstrap_drop_rates, paired_tests

log = logging.getLogger(__name__)

#: Results-store experiment name and the clean reference's variant.
EXPERIMENT = "query_variations"
CLEAN_VARIANT = "none"
#: The measure whose drop rate the study reports.
DROP_RATE_MEASURE = "nDCG@10"
#: The system whose sentence encoder and word vectors the synonym family uses.
SYNONYM_RESOURCE_MODEL = "minilm"
#: The study's value of each run parameter (protocol §4.1, §4.4), shown beside ours on every run
#: page.
STUDY_SETTINGS = {"dataset": "nq, hotpotqa, fiqa, msmarco (dev)", "seed": "1999, 5, 27, 2016, 2026",
                  "rng_scope": "stream", "batch_size": 64, "top_k": 1000,
                  "max_length": "8192 (Contriever: 512)", "dtype": "bfloat16 on GPUs"}


def variation_variant(family: str, rng_scope: str = "stream") -> str:
    """Results-store variant of a family's runs: the family key, suffixed for the per-query RNG.

    Runs with ``rng_scope="query"`` are an improvement and are stored apart from the study's
    (protocol §8.2): ``mispelling`` vs ``mispelling_rng-query``.

    Used in the book chapter "Query variations".
    """
    return family if rng_scope == "stream" else f"{family}_rng-{rng_scope}"


def _split_variant(variant: str) -> tuple[str, str]:
    family, _, scope = variant.partition("_rng-")
    return family, scope or "stream"


def variant_file(variants_dir: str | os.PathLike, dataset: str, split: str, family: str, seed: int,
                 rng_scope: str = "stream") -> Path:
    """Where the shared variant set of (dataset, split, family, seed, RNG scope) lives.

    Used in the book chapter "Query variations".
    """
    name = f"{dataset}_{split}_{variation_variant(family, rng_scope)}_seed-{seed}.jsonl"
    return Path(variants_dir) / dataset / name


def load_or_generate_variations(
    data: Dataset,
    family: Family | str,
    seed: int,
    *,
    rng_scope: str = "stream",
    variants_dir: str | os.PathLike | None = None,
    retriever: Retriever | None = None,
) -> VariationSet:
    """The variant set of a split, read from ``variants_dir`` when present, else generated (and saved).

    Args:
        data: The loaded split.
        family: A built family or a family name (built here; the synonym family reuses the
            retriever's encoder when it is MiniLM's at its default precision and length).
        seed: The seed.
        rng_scope: ``stream`` (the study's) or ``query``.
        variants_dir: Folder of shared variant files; ``None`` neither reads nor writes.
        retriever: The evaluated system, whose encoder the families reuse if it is the
            MiniLM they would load (not, e.g., a bfloat16 one: the variants would then depend
            on which system's job made them).

    Raises:
        ValueError: A stored file was made with other settings (the message names it).
        FamilyUnavailable: The family cannot be built here.

    Used in the book chapter "Query variations".
    """
    key = family.key if isinstance(family, Family) else resolve_family(family)
    path = variant_file(variants_dir, data.key, data.split, key, seed, rng_scope) if variants_dir else None
    if path is not None and path.exists():
        stored = VariationSet.load(path)
        expected = {"family": key, "seed": seed, "rng_scope": rng_scope, "split": data.split,
                    "generators_revision": GENERATORS_REVISION}
        found = {k: stored.provenance.get(k) for k in expected}
        if found != expected or set(stored.variations) != set(data.queries):
            raise ValueError(f"{path}: made for {found} and {len(stored.variations)} queries, not "
                             f"{expected} and this split's {len(data.queries)}; delete it to regenerate")
        log.info("variants read from %s", path)
        return stored
    if not isinstance(family, Family):
        family = build_family(key, encoder=_family_encoder(retriever))
    variations = generate_variations(data.queries, family, seed, dataset=data.name, split=data.split,
                                     rng_scope=rng_scope)
    if path is not None:
        variations.save(path)
    return variations


def _family_encoder(retriever: Retriever | None):
    """The evaluated system's encoder when it is exactly the one the families would load
    (MiniLM at its default precision and length), else ``None``: the variants must not depend
    on which system's job made them."""
    if not (isinstance(retriever, TransformerRetriever) and retriever.spec.key == SYNONYM_RESOURCE_MODEL):
        return None
    encoder, device = retriever.encoder, retriever.encoder.device.type
    given = forward_identity(encoder.spec, max_length=encoder.max_length, dtype=encoder.dtype, device=device)
    return encoder if given == forward_identity(encoder.spec, device=device) else None


@dataclass
class VariationRun:
    """Clean and perturbed evaluation of one (system, dataset, family, seed).

    Attributes:
        clean: The clean evaluation (variant ``none``).
        perturbed: The evaluation on the variants (variant = family key).
        variations: The variant set with its provenance.
        stability: Per-query ``Jaccard@10``, ``RBO@100``, ``KendallTau@10`` (clean vs perturbed).
        summary: Drop rate (fraction) of ``nDCG@10`` and the other per-seed statistics.

    Used in the book chapter "Query variations".
    """

    clean: Evaluation
    perturbed: Evaluation
    variations: VariationSet
    stability: pd.DataFrame
    summary: dict


def evaluate_variation(
    retriever: Retriever,
    data: Dataset,
    family: Family | str,
    seed: int,
    *,
    clean: Evaluation | None = None,
    rng_scope: str = "stream",
    variants_dir: str | os.PathLike | None = None,
    top_k: int = 1000,
    n_resamples: int = 1000,
) -> VariationRun:
    """Evaluate one system on clean and perturbed queries of one split (chapter "Query variations").

    Args:
        retriever: The system (:func:`robustir.retrievers.make_retriever`), with the embedding
            cache that holds the corpus.
        data: The loaded split.
        family: Family (built) or name.
        seed: The seed of the variant set; also seeds the bootstrap and the sign flips.
        clean: A clean evaluation to reuse (same system and split); computed when ``None``.
        rng_scope: ``stream`` (the study's) or ``query``.
        variants_dir: Shared variant files (see :func:`load_or_generate_variations`).
        top_k: Hits per query (the study: 1000).
        n_resamples: Bootstrap resamples and sign flips (×10) of the paired test.
    """
    if clean is None:
        clean = evaluate(retriever, data, top_k=top_k, variant=CLEAN_VARIANT, progress=False)
    variations = load_or_generate_variations(data, family, seed, rng_scope=rng_scope,
                                             variants_dir=variants_dir, retriever=retriever)
    key = variations.provenance["family"]
    perturbed = evaluate(retriever, data, queries=variations.queries, top_k=top_k,
                         variant=variation_variant(key, rng_scope), progress=False)
    stability = rank_stability(clean.run, perturbed.run, clean_ranking=clean.ranking)
    clean_scores = clean.per_query[DROP_RATE_MEASURE]
    perturbed_scores = perturbed.per_query[DROP_RATE_MEASURE].reindex(clean_scores.index)
    rng = np.random.default_rng(seed)
    _, interval = bootstrap_drop_rates(clean_scores.to_numpy(), perturbed_scores.to_numpy()[None, :],
                                       rng=rng, n_resamples=n_resamples)
    tests = paired_tests(clean_scores.to_numpy(), perturbed_scores.to_numpy()[None, :], seeds=[seed],
                         rng=rng, n_resamples=10 * n_resamples).set_index(["scores", "test"])
    fractions = query_change_fractions(clean_scores, perturbed_scores)
    summary = {
        "measure": DROP_RATE_MEASURE,
        "clean": float(clean_scores.mean()),
        "perturbed": float(perturbed_scores.mean()),
        "drop_rate": drop_rate(float(clean_scores.mean()), float(perturbed_scores.mean())),
        "drop_rate_ci_low": interval.low,
        "drop_rate_ci_high": interval.high,
        "unchanged_fraction": variations.unchanged_fraction,
        "fallbacks": sum(variations.provenance.get("fallbacks_per_generator", {}).values()),
        "fraction_drop": fractions["drop"],
        "fraction_equal": fractions["equal"],
        "fraction_rise": fractions["rise"],
        "randomisation_p": float(tests.loc[(seed, "randomisation"), "p_value"]),
        "wilcoxon_p": float(tests.loc[(seed, "wilcoxon"), "p_value"]),
        **{name: float(value) for name, value in stability.mean(skipna=True).items()},
    }
    log.info("%s on %s, %s seed %d: drop rate %.4f (unchanged %.3f)", retriever.spec.key, data.name, key, seed,
             summary["drop_rate"], summary["unchanged_fraction"])
    return VariationRun(clean, perturbed, variations, stability, summary)


def write_variation_run(run: VariationRun, store: ResultStore | str | os.PathLike, seed: int) -> tuple[Path, Path]:
    """Write the clean (``none``, ``seed-none``) and perturbed (family, ``seed-<seed>``) entries.

    The perturbed entry's per-query table holds the measures, the rank-stability values,
    ``changed`` (1 when the variant differs from the original) and ``delta_nDCG@10``
    (perturbed − clean); its summary adds the drop-rate statistics to the means.

    Returns:
        The clean and the perturbed entry folders.

    Used in the book chapter "Query variations".
    """
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    clean_entry = run.clean.write(store, experiment=EXPERIMENT, variant=CLEAN_VARIANT)
    wide = run.perturbed.per_query.join(run.stability)
    changed = {qid: float(v.changed) for qid, v in run.variations.variations.items()}
    wide["changed"] = [changed[str(qid)] for qid in wide.index]
    wide[f"delta_{DROP_RATE_MEASURE}"] = (
        run.perturbed.per_query[DROP_RATE_MEASURE] - run.clean.per_query[DROP_RATE_MEASURE]
    )
    params = {
        **run.perturbed.params,
        "seed": seed,
        "variations": run.variations.provenance,
        "clean_params_hash": ResultStore.params_hash(run.clean.params),
    }
    summary = {
        **run.perturbed.summary,
        "metrics": {**run.perturbed.summary["metrics"],
                    **{c: float(run.stability[c].mean(skipna=True)) for c in run.stability}},
        **{k: v for k, v in run.summary.items() if k not in run.stability.columns},
    }
    entry = store.entry_dir(EXPERIMENT, run.perturbed.params["model"]["key"], run.perturbed.params["dataset"],
                            run.perturbed.params["variant"], seed)
    return clean_entry, store.write_entry(entry, params, per_query_long(wide), summary)


def summarise(
    store: ResultStore | str | os.PathLike,
    *,
    n_resamples: int = 1000,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """Drop rates over seeds per (model, dataset, family), from the per-query results.

    For each stored family the clean reference (variant ``none``) must exist; a missing one
    raises instead of being treated as 0 (protocol §8.1 row 15). Drop rates are computed from
    unrounded per-query nDCG@10 (row 16).

    Args:
        store: The results store (or its root).
        n_resamples: Query-bootstrap resamples for the interval of the seed-mean drop rate.
        rng: Source of the bootstrap and sign-flip draws (default: ``default_rng(0)``).

    Returns:
        One row per (model, dataset, family, RNG scope) with ``rng_scope`` (``stream`` for the
        study's semantics), ``n_seeds``, ``drop_rate_mean``,
        ``drop_rate_std`` (population, ddof = 0), ``drop_rate_ci_low/high`` (query bootstrap of
        the seed mean), ``unchanged_fraction`` (mean over seeds), the shares of queries
        dropping/equal/rising (pooled over seeds), the mean rank stability, the paired tests' p-values on the
        seed-averaged per-query scores, and ``fallbacks_per_seed`` (``"seed: count, …"`` of the
        queries kept unchanged because a generator's filter rejected every attempt, the
        substitute paraphraser's; empty when there were none). Fractions, not percent.

    Raises:
        ValueError: A family's clean reference is missing.

    Used by the notebook ``query_variations_summary``; chapter "Query variations".
    """
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    rng = rng if rng is not None else np.random.default_rng(0)
    table = store.read_per_query(EXPERIMENT)
    if table.empty:
        return pd.DataFrame()
    summaries = store.read_summaries(EXPERIMENT)
    rows = []
    for (model, dataset), group in table.groupby(["model", "dataset"], sort=True):
        clean = group[(group.variant == CLEAN_VARIANT) & (group.measure == DROP_RATE_MEASURE)]
        variants = sorted(set(group.variant) - {CLEAN_VARIANT})
        if clean.empty:
            raise ValueError(f"{store.root}/{EXPERIMENT}/{model}/{dataset}: no clean reference "
                             f"(variant {CLEAN_VARIANT!r}); run the query_variations notebook again")
        clean_scores = clean.set_index("query_id")["value"]
        for variant in variants:
            family, rng_scope = _split_variant(variant)
            rows_family = group[group.variant == variant]
            wide = rows_family.pivot_table(index=["seed", "query_id"], columns="measure", values="value")
            seeds = sorted(wide.index.get_level_values("seed").unique())
            per_seed = {s: wide.loc[s, DROP_RATE_MEASURE] for s in seeds}
            rates = drop_rates(clean_scores, per_seed)
            matrix = np.vstack([per_seed[s].reindex(clean_scores.index).to_numpy() for s in seeds])
            _, interval = bootstrap_drop_rates(clean_scores.to_numpy(), matrix, rng=rng, n_resamples=n_resamples)
            tests = paired_tests(clean_scores.to_numpy(), matrix, seeds=seeds, rng=rng,
                                 n_resamples=10 * n_resamples).set_index(["scores", "test"])
            delta = matrix - clean_scores.to_numpy()
            rows.append({
                "model": model, "dataset": dataset, "family": family, "rng_scope": rng_scope,
                "n_seeds": len(seeds),
                "clean": rates.clean,
                "drop_rate_mean": rates.mean, "drop_rate_std": rates.std,
                "drop_rate_ci_low": interval.low, "drop_rate_ci_high": interval.high,
                "unchanged_fraction": float(1 - wide["changed"].groupby("seed").mean().mean()),
                "fraction_drop": float(np.mean(delta < -1e-12)),
                "fraction_equal": float(np.mean(np.abs(delta) <= 1e-12)),
                "fraction_rise": float(np.mean(delta > 1e-12)),
                **{c: float(wide[c].mean()) for c in ("Jaccard@10", "RBO@100", "KendallTau@10")},
                "randomisation_p": float(tests.loc[("seed mean", "randomisation"), "p_value"]),
                "wilcoxon_p": float(tests.loc[("seed mean", "wilcoxon"), "p_value"]),
                "fallbacks_per_seed": _fallbacks_per_seed(summaries, model, dataset, variant),
            })
    return pd.DataFrame(rows)


def _fallbacks_per_seed(summaries: pd.DataFrame, model: str, dataset: str, variant: str) -> str:
    """``"seed: count, …"`` (seed order) of the stored runs' fall-backs to the unchanged query;
    empty when none fell back (or the runs predate the count)."""
    if "fallbacks" not in summaries:
        return ""
    runs = summaries[(summaries.model == model) & (summaries.dataset == dataset)
                     & (summaries.variant == variant)].sort_values("seed")
    counts = runs["fallbacks"].fillna(0).astype(int)
    return ", ".join(f"{int(seed)}: {count}" for seed, count in zip(runs.seed, counts)) if counts.any() else ""


def findings(table: pd.DataFrame, *, llm: str = "smollm2_ret", encoder: str = "minilm",
             dataset: str = "scifact"):
    """The findings box of the query-variation chapter, from :func:`summarise`'s table.

    The study's RQ2 claims for unintentional variations: LLM-based retrievers are more robust
    to typos than encoder-only baselines, but remain vulnerable to synonymizing. Our pair is the
    decoder retriever trained here (``llm``) and MiniLM (``encoder``); the verdict follows the
    sign of the difference of their seed-mean drop rates, and the rule says whether the
    difference's conservative interval (from the two query-bootstrap intervals) excludes 0.
    """
    from robustir.experiments.findings import Finding, compare_direction, format_number
    from robustir.models import display_name
    from robustir.perturb import FAMILY_NAMES

    study = table[(table["rng_scope"] == "stream") & (table["dataset"] == dataset)] if not table.empty else table

    def row(model: str, family: str) -> pd.Series | None:
        rows = study[(study["model"] == model) & (study["family"] == family)] if not study.empty else study
        return rows.iloc[0] if len(rows) else None

    def compare(family: str, expected_sign: int, claim: str) -> Finding:
        first, second = row(llm, family), row(encoder, family)
        if first is None or second is None:
            return Finding(claim=claim, scope=f"{display_name(llm)} and {display_name(encoder)} "
                           f"under {FAMILY_NAMES.get(family, family)} on {dataset}",
                           ours="not run in this build", published="none released",
                           verdict="not comparable", rule="no runs for both systems")
        difference = first["drop_rate_mean"] - second["drop_rate_mean"]
        low = first["drop_rate_ci_low"] - second["drop_rate_ci_high"]
        high = first["drop_rate_ci_high"] - second["drop_rate_ci_low"]
        verdict = compare_direction(difference, expected_sign=expected_sign)
        significance = ("excludes 0" if low * high > 0
                        else "includes 0: the sign is not significant")
        return Finding(
            claim=claim,
            scope=f"our trained decoder retriever vs MiniLM on {dataset}, {int(first['n_seeds'])} "
                  "seeds; not the study's 10 systems on NQ, HotpotQA, FiQA, MS MARCO",
            ours=f"drop rate {display_name(llm)} {format_number(100 * first['drop_rate_mean'], 1)}%, "
                 f"{display_name(encoder)} {format_number(100 * second['drop_rate_mean'], 1)}%",
            published="none released (the study shows drop rates only as a figure)",
            verdict=verdict,
            rule=f"sign of the difference, {100 * difference:+.1f} percentage points; its "
                 f"conservative 95% interval [{100 * low:.1f}, {100 * high:.1f}] {significance}")
    return [
        compare("mispelling", -1, "LLM-based retrievers lose less to typos than encoder-only "
                                  "baselines"),
        compare("synonym", +1, "…but remain vulnerable to synonyms: their advantage does not "
                               "carry over to synonymizing"),
    ]
