"""Corpus poisoning: attack a system, append the passages to the clean corpus, measure ASR@k.

:func:`run_corpus_poisoning` is one run of the analysis (protocol §5): supervised HotFlip
(:mod:`robustir.attack`) on the attacker split, then :func:`evaluate_poisoning` appends the
optimised passages, and the two baselines (the initial gold passages and query-text injection),
to the clean test corpus and reports ASR@k under every tie rule and the nDCG@10 change; each
variant is written to the results store under :data:`EXPERIMENT`. :func:`poisoning_table`
(the study's Table 3 layout) and :func:`final_tokens` summarise the store for the aggregate
notebook.

Used in the book chapter "Corpus poisoning" (notebooks ``corpus_poisoning`` and
``corpus_poisoning_summary``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from robustir import retrieve
from robustir.attack import (
    HotFlipConfig,
    embed_passages,
    hotflip_attack,
    passage_file_name,
    query_text_passages,
    save_passages,
)
from robustir.cache import EmbeddingCache
from robustir.data import Dataset, attacker_dataset_for, load_dataset
from robustir.embeddings import Embeddings
from robustir.encode import Encoder
from robustir.metrics import per_query_metrics
from robustir.metrics.poisoning import (
    ADVERSARIAL_PREFIX,
    ASR_CUTOFFS,
    TIE_RULES,
    per_query_attack_success,
    ties_at_cutoff,
)
from robustir.model_sources import resolve_model
from robustir.provenance import library_versions
from robustir.results import ResultStore, per_query_long

__all__ = [
    "EXPERIMENT",
    "NO_ATTACK",
    "PoisoningEvaluation",
    "evaluate_poisoning",
    "final_token_table",
    "final_tokens",
    "poisoning_table",
    "seed_statistics",
    "summarise",
    "run_corpus_poisoning",
]

log = logging.getLogger(__name__)

#: The results-store experiment of corpus-poisoning runs.
EXPERIMENT = "corpus_poisoning"
#: The study's value of each run parameter (protocol §5.1), shown beside ours on every run page.
STUDY_SETTINGS = {"dataset": "nq, hotpotqa, msmarco (dev)", "n_passages": "10 and 50",
                  "iterations": 5000, "candidates": 100, "passage_length": 50, "batch_size": 64,
                  "seed": "1999, 5, 27, 2016, 2026", "bf16": True, "top_k": 1000,
                  "max_length": "8192 (Contriever: 512)"}


# --- evaluation -----------------------------------------------------------------------------
@dataclass
class PoisoningEvaluation:
    """The outcome of :func:`evaluate_poisoning`.

    Attributes:
        run: ``{qid: {doc_id: score}}`` over the poisoned corpus, best first.
        per_query: Indexed by query id: ``ASR@k`` (0/1, under the chosen tie rule),
            ``nDCG@10`` on the poisoned corpus and ``nDCG@10 change`` (poisoned − clean).
        summary: ``{"metrics": {…means…}, "asr_by_tie_rule": {rule: {ASR@k: …}},
            "ties_at_cutoff": {ASR@k: queries}, "n_queries": …, "n_passages": …}``.
    """

    run: dict
    per_query: pd.DataFrame
    summary: dict


def evaluate_poisoning(
    encoder: Encoder,
    test: Dataset,
    passages: Sequence[Sequence[int]],
    *,
    file_index: int = 0,
    top_k: int = 1000,
    cutoffs: Sequence[int] = ASR_CUTOFFS,
    tie_rule: str = "adversarial_loses",
    prompt_mask_with_special_tokens: bool = True,
    clean_corpus: Embeddings | None = None,
) -> PoisoningEvaluation:
    """Append adversarial passages to the clean test corpus and search it (§5.3).

    Args:
        encoder: The target system; its cache serves the clean corpus and test queries.
        test: The evaluation split (clean queries and qrels).
        passages: Token ids per passage; embedded with :func:`robustir.attack.embed_passages`.
        file_index: The ``{file}`` of the ids ``adv_doc_{file}_{cluster}``.
        top_k: Hits per query (the study: 1000).
        cutoffs: The k of ASR@k.
        tie_rule: Tie rule of the reported ASR (:data:`~robustir.metrics.poisoning.TIE_RULES`);
            the summary has every rule.
        prompt_mask_with_special_tokens: See :class:`HotFlipConfig`.
        clean_corpus: Precomputed clean corpus embeddings (default: ``encode_corpus``).
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"unknown tie rule {tie_rule!r}; use one of {', '.join(TIE_RULES)}")
    spec = encoder.spec
    corpus = clean_corpus or encoder.encode_corpus(test.corpus, test.name)
    queries = encoder.encode_queries(test.queries, test.name)
    adversarial = embed_passages(
        encoder, passages, test.name,
        prompt_mask_with_special_tokens=prompt_mask_with_special_tokens,
    )
    adversarial_ids = [f"{ADVERSARIAL_PREFIX}_{file_index}_{i}" for i in range(len(passages))]
    poisoned = Embeddings(
        corpus.ids + adversarial_ids, np.concatenate([corpus.vectors, adversarial])
    )
    clean_run = retrieve.dense_search(queries, corpus, top_k=top_k, score=spec.score)
    run = retrieve.dense_search(queries, poisoned, top_k=top_k, score=spec.score)
    if test.excluded_ids:  # BRIGHT's excluded ids leave attack runs too (protocol §2.3.6)
        clean_run = retrieve.remove_excluded_ids(clean_run, test.excluded_ids)
        run = retrieve.remove_excluded_ids(run, test.excluded_ids)
    clean = per_query_metrics(test.qrels, clean_run, ["nDCG@10"])["nDCG@10"]
    ndcg = per_query_metrics(test.qrels, run, ["nDCG@10"])["nDCG@10"]
    by_rule = {
        rule: per_query_attack_success(run, cutoffs, tie_rule=rule) for rule in TIE_RULES
    }
    per_query = by_rule[tie_rule].copy()
    per_query["nDCG@10"] = ndcg
    per_query["nDCG@10 change"] = ndcg - clean
    summary = {
        "metrics": {m: float(per_query[m].mean()) for m in per_query.columns},
        "clean_nDCG@10": float(clean.mean()),
        "tie_rule": tie_rule,
        "asr_by_tie_rule": {
            rule: {m: float(frame[m].mean()) for m in frame.columns}
            for rule, frame in by_rule.items()
        },
        "ties_at_cutoff": ties_at_cutoff(run, cutoffs),
        "n_queries": len(per_query),
        "n_passages": len(passages),
        "corpus_size": len(corpus),
    }
    return PoisoningEvaluation(run, per_query, summary)


# --- one run of the experiment --------------------------------------------------------------
def run_corpus_poisoning(
    model,
    dataset: str,
    config: HotFlipConfig,
    *,
    attacker_dataset: str | None = None,
    attacker_split: str = "train",
    split: str = "test",
    data_root: str | Path | None = None,
    output: str | Path = "results",
    cache: EmbeddingCache | None = None,
    device: str | None = None,
    max_length: int | None = None,
    dtype: str | None = None,
    attack_dtype: str | None = None,
    tie_rule: str = "adversarial_loses",
    top_k: int = 1000,
    baselines: bool = True,
    progress: bool = False,
) -> dict[str, PoisoningEvaluation]:
    """Attack one system on one dataset, save the passages, evaluate, write the results store.

    Writes ``<output>/corpus_poisoning/<model>/<dataset>/<variant>/seed-<seed>/`` for the
    variants ``hotflip_N{N}`` (``hotflip_N{N}_bfloat16`` with ``attack_dtype="bfloat16"``,
    whatever ``dtype`` is) and, with ``baselines``, ``gold_N{N}`` (the initial passages) and
    ``query_text_N{N}``; the passages go to ``<output>/corpus_poisoning_passages/<model>/
    <dataset>/`` under the study's file name,
    the resumable state to ``<output>/corpus_poisoning_checkpoints/``. Evaluation always uses
    ``dtype`` weights (default: float32 on a CPU). ``max_length`` (default: the system's) bounds
    the encoded queries and test documents; keep it and ``dtype`` equal to the clean runs' so
    that the corpus comes from the cache.

    The attacker's queries, gold passages and their corpus come from split ``attacker_split``
    of ``attacker_dataset``, by default the registry's choice for ``dataset``
    (:func:`robustir.data.attacker_dataset_for`: ``nq-train`` for ``nq``, else ``dataset``
    itself, protocol §5.1); the passages are evaluated on split ``split`` of ``dataset``.

    Returns:
        ``{variant: evaluation}``.
    """
    spec = resolve_model(model)
    train = load_dataset(attacker_dataset or attacker_dataset_for(dataset), attacker_split,
                         data_root)
    test = load_dataset(dataset, split, data_root)
    evaluator = Encoder(spec, device=device, dtype=dtype, max_length=max_length, cache=cache,
                        progress=progress)
    attacker = evaluator
    if attack_dtype and attack_dtype != evaluator.dtype:
        attacker = Encoder(spec, device=device, dtype=attack_dtype, max_length=max_length,
                           cache=cache, progress=progress)
    output = Path(output)
    result = hotflip_attack(
        attacker, train, config, checkpoint_dir=output / "corpus_poisoning_checkpoints"
    )
    # the variant names a reduced attack precision whenever one was asked for, also when the
    # evaluation runs in it too (one encoder then serves both)
    suffix = f"_{attack_dtype}" if attack_dtype not in (None, "float32") else ""
    name = passage_file_name(train.key, spec.key, config).replace(".json", f"{suffix}.json")
    passages_path = save_passages(
        output / "corpus_poisoning_passages" / spec.key / test.key / name,
        result, evaluator.tokenizer,
    )
    n = config.n_passages
    variants = {f"hotflip_N{n}{suffix}": [p.token_ids for p in result.passages]}
    if baselines:
        variants[f"gold_N{n}"] = [p.initial_ids for p in result.passages]
        variants[f"query_text_N{n}"] = query_text_passages(evaluator, train, config)
    corpus = evaluator.encode_corpus(test.corpus, test.name)
    store = ResultStore(output)
    base = {
        "model": spec.as_record(), "dataset": test.key, "split": test.split,
        "attacker_dataset": train.key, "attacker_split": train.split,
        "data_checksum": test.checksum,
        "attacker_data_checksum": train.checksum, "attack": config.as_record(),
        "attack_dtype": attacker.dtype, "evaluation_dtype": evaluator.dtype,
        "max_length": evaluator.max_length,
        "tie_rule": tie_rule, "top_k": top_k, "libraries": library_versions(),
        "adversarial_special_tokens": False, "adversarial_eos_appended": spec.append_eos,
    }
    iterations = config.iterations * n
    attack_summary = {
        "iterations": config.iterations,
        "candidates": config.candidates,
        "attack_elapsed_s": result.record["elapsed_s"],
        "seconds_per_iteration": result.record["elapsed_s"] / iterations if iterations else None,
        "validation_similarity": [p.best_similarity for p in result.passages],
        "initial_validation_similarity": [p.initial_similarity for p in result.passages],
        "accepted": [p.accepted for p in result.passages],
        "passages_file": str(passages_path),
    }
    evaluations = {}
    for variant, ids in variants.items():
        evaluation = evaluate_poisoning(
            evaluator, test, ids, top_k=top_k, tie_rule=tie_rule, clean_corpus=corpus,
            prompt_mask_with_special_tokens=config.prompt_mask_with_special_tokens,
        )
        params = {**base, "variant": variant, "passages": variant.split("_N")[0]}
        summary = {**evaluation.summary, **(attack_summary if variant.startswith("hotflip") else {})}
        store.write_entry(
            store.entry_dir(EXPERIMENT, spec.key, test.key, variant, config.seed),
            params, per_query_long(evaluation.per_query), summary,
        )
        log.info("%s %s seed %d: %s", spec.key, variant, config.seed, evaluation.summary["metrics"])
        # what is returned is what was stored: the attack's record rides with the hotflip rows
        evaluations[variant] = dataclasses.replace(evaluation, summary=summary)
    return evaluations


# --- aggregation ----------------------------------------------------------------------------
def final_tokens(passages_file: str | Path, queries: Mapping[str, str], tokenizer) -> dict:
    """The final tokens of a run's initial (gold) passages, and the share of queries that end
    with one of them.

    A last-token-pooled model that was never trained for retrieval (SmolLM2) puts much of a
    text's embedding into its final token: a passage that ends as most queries do is close to
    all of them before any optimisation, one that does not may be close to none, whatever the
    rest of the text says (chapter "Corpus poisoning").

    Args:
        passages_file: A passages file written by :func:`run_corpus_poisoning`.
        queries: The evaluation queries ``{qid: text}``.
        tokenizer: The system's tokenizer.

    Returns:
        ``{"final_tokens": sorted distinct final tokens, "queries_ending_alike": share in [0, 1]}``.
    """
    passages = json.loads(Path(passages_file).read_text(encoding="utf-8"))["passages"]
    finals = {tokenizer.decode(p["initial_ids"][-1:]) for p in passages.values()}
    endings = [tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][-1:])
               for text in queries.values()]
    return {"final_tokens": sorted(finals),
            "queries_ending_alike": float(np.mean([e in finals for e in endings])) if endings else float("nan")}


#: The ``attack_dtype`` of the baselines' rows in :func:`poisoning_table`.
NO_ATTACK = "no attack"
_VARIANT = r"^(?P<passages>.+)_N(?P<n_passages>\d+)(?:_(?P<attack_dtype>bfloat16|float16))?$"


def seed_statistics(summaries: pd.DataFrame, measure: str = "ASR@20", *,
                    scale: float = 100.0) -> pd.DataFrame:
    """``measure`` × ``scale`` over seeds: mean, population std (ddof = 0, as the study) and count.

    Args:
        summaries: ``ResultStore.read_summaries("corpus_poisoning")`` (columns ``model,
            dataset, variant, seed`` and the measures).
        measure: A summary measure, e.g. ``ASR@20`` (the study's) or ``nDCG@10 change``.
        scale: Factor applied before averaging (100: percent).

    Returns:
        Index ``(passages, attack_dtype, model, dataset, N)`` (``attack_dtype`` is
        :data:`NO_ATTACK` for the gold and query-text baselines), columns ``mean``, ``std``,
        ``seeds``.

    Raises:
        ValueError: ``measure`` is missing or a variant name is not ``<passages>_N<n>[_dtype]``.
    """
    if measure not in summaries.columns:
        raise ValueError(f"no column {measure!r} in the summaries; have {list(summaries.columns)}")
    parts = summaries["variant"].str.extract(_VARIANT)
    if parts["passages"].isna().any():
        bad = summaries.loc[parts["passages"].isna(), "variant"].iloc[0]
        raise ValueError(f"variant {bad!r} is not <passages>_N<n>[_bfloat16]")
    frame = pd.concat([summaries[["model", "dataset", "seed"]], parts], axis=1)
    # a baseline's passages are not optimised: no attack precision to name
    frame["attack_dtype"] = frame["attack_dtype"].fillna("float32").where(
        frame["passages"] == "hotflip", NO_ATTACK)
    frame["N"] = frame.pop("n_passages").astype(int)
    frame["value"] = summaries[measure].astype(float) * scale
    grouped = frame.groupby(["passages", "attack_dtype", "model", "dataset", "N"])["value"]
    return grouped.agg(mean="mean", std=lambda v: float(np.std(v, ddof=0)), seeds="count")


def poisoning_table(
    summaries: pd.DataFrame, measure: str = "ASR@20", *, scale: float = 100.0, digits: int = 1
) -> pd.DataFrame:
    """The study's Table 3 layout of :func:`seed_statistics`.

    Args:
        summaries, measure, scale: As for :func:`seed_statistics`.
        digits: Decimals of the formatted cells.

    Returns:
        Rows ``(passages, attack_dtype, model)``, columns ``(dataset, N)``, cells
        ``"mean ± std (seeds)"``.

    Raises:
        ValueError: As :func:`seed_statistics`.
    """
    stats = seed_statistics(summaries, measure, scale=scale)
    cells = stats.apply(
        lambda r: f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f} ({int(r['seeds'])})", axis=1
    )
    return cells.unstack(["dataset", "N"]).sort_index(axis=1)


def summarise(store: ResultStore | str | os.PathLike, *,
              n_passages: Sequence[int] | None = None) -> pd.DataFrame:
    """Every stored corpus-poisoning run (one row per model, dataset, variant and seed), with
    ``n_passages`` parsed from the variant and kept to ``n_passages`` when given.

    Raises:
        LookupError: The store holds no corpus-poisoning result.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    summaries = store.read_summaries(EXPERIMENT)
    if summaries.empty:
        raise LookupError(f"no {EXPERIMENT} results under {store.root}: run "
                          "notebooks/corpus_poisoning.py (or `robustir poison`) first")
    summaries["n_passages"] = summaries["variant"].str.extract(r"_N(\d+)")[0].astype(int)
    if n_passages is not None:
        summaries = summaries[summaries["n_passages"].isin(list(n_passages))]
    return summaries.reset_index(drop=True)


def final_token_table(summaries: pd.DataFrame, measure: str = "ASR@20", *,
                      data_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """For every HotFlip run of a last-token system: the final tokens of its gold passages, the
    share of test queries ending alike, and the ASR of the gold and the optimised passages.

    A last-token-pooled model never trained for retrieval puts much of a text's embedding into
    its final token (:func:`final_tokens`); this table shows it run by run. Systems outside the
    catalog are left out (their tokenizer is not known from the store alone).
    """
    from robustir.models import MODELS

    tokenizers: dict[str, object] = {}
    queries: dict[str, dict[str, str]] = {}
    rows = []
    hotflip = summaries[summaries["variant"].str.startswith("hotflip_")]
    for _, run in hotflip.iterrows():
        spec = MODELS.get(run["model"])
        if spec is None or spec.pooling != "last_token" or not isinstance(run.get("passages_file"), str):
            continue
        if run["model"] not in tokenizers:
            tokenizers[run["model"]] = Encoder(spec, progress=False).tokenizer
        if run["dataset"] not in queries:
            queries[run["dataset"]] = load_dataset(run["dataset"], "test", data_root).queries
        found = final_tokens(run["passages_file"], queries[run["dataset"]], tokenizers[run["model"]])
        gold = summaries[(summaries["model"] == run["model"]) & (summaries["dataset"] == run["dataset"])
                         & (summaries["seed"] == run["seed"])
                         & (summaries["variant"] == f"gold_N{int(run['n_passages'])}")]
        rows.append({
            "model": run["model"], "dataset": run["dataset"], "passages": run["variant"],
            "seed": run["seed"],
            "final tokens of the gold passages": " ".join(repr(t) for t in found["final_tokens"]),
            "queries ending alike": round(found["queries_ending_alike"], 3),
            f"gold {measure}": round(float(gold[measure].iloc[0]), 3) if len(gold) else None,
            f"HotFlip {measure}": round(float(run[measure]), 3),
        })
    return pd.DataFrame(rows)


def findings(summaries: pd.DataFrame, *, llm: str = "smollm2_ret", encoder: str = "minilm",
             measure: str = "ASR@20", dataset: str = "scifact"):
    """The findings box of the corpus-poisoning chapter, from :func:`summarise`'s table.

    The study's claim: LLM-based retrievers are more robust to corpus poisoning than
    encoder-only baselines (lower ASR@20). Ours: the HotFlip passages' ASR@20 (seed mean) of
    the decoder retriever trained here and of MiniLM, and what the optimisation adds over the
    gold passages it starts from.
    """
    from robustir.experiments.findings import Finding, compare_direction, format_number
    from robustir.models import display_name

    def mean(model: str, prefix: str) -> tuple[float, int]:
        rows = summaries[(summaries["model"] == model) & (summaries["dataset"] == dataset)
                         & summaries["variant"].str.startswith(prefix)]
        return (float(rows[measure].mean()), len(rows)) if len(rows) else (float("nan"), 0)

    (hot_llm, n_llm), (hot_enc, n_enc) = mean(llm, "hotflip_"), mean(encoder, "hotflip_")
    gold_llm, gold_enc = mean(llm, "gold_")[0], mean(encoder, "gold_")[0]
    budgets = sorted({_budget(r) for _, r in summaries.iterrows()
                      if r["model"] in (llm, encoder) and str(r["variant"]).startswith("hotflip_")})
    return [
        Finding(
            claim=f"LLM-based retrievers are more robust to corpus poisoning than encoder-only "
                  f"baselines (lower {measure})",
            scope=f"supervised HotFlip with N = 10 passages on {dataset}, {n_llm} and {n_enc} seeds, "
                  f"a few iterations ({'; '.join(budgets)}) instead of 5,000",
            ours=f"{measure} {display_name(llm)} {format_number(100 * hot_llm, 1)}%, "
                 f"{display_name(encoder)} {format_number(100 * hot_enc, 1)}% (gold passages: "
                 f"{format_number(100 * gold_llm, 1)}%, {format_number(100 * gold_enc, 1)}%)",
            published="none released (Table 3's values are not in the study's repository)",
            verdict=compare_direction(hot_llm - hot_enc, expected_sign=-1),
            rule="sign of the difference of the seed means"),
    ]


def _budget(run: pd.Series) -> str:
    """``<model>: <iterations> × <candidates>`` of a stored HotFlip run."""
    if "iterations" in run and pd.notna(run["iterations"]):
        return f"{run['model']}: {int(run['iterations'])} × {int(run['candidates'])}"
    return str(run["model"])
