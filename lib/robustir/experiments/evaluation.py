"""Clean effectiveness: one system on one split, data → retriever → metrics → results store.

:func:`evaluate` runs any retriever (a catalog key, a model folder, a spec file or mapping, or a
user object; :func:`robustir.retrievers.make_retriever`) on one split of a BEIR dataset and
returns the run, the per-query measures, their means and every parameter that produced them;
:meth:`Evaluation.write` puts that into the results store under :data:`EXPERIMENT`. Perturbed
queries (``queries=``) are re-encoded while the corpus embeddings come from the cache, as in the
study (protocol §4.4). :func:`summarise` reads the stored means back for the aggregate notebooks.

Used in the book chapters "Evaluation: nDCG and trec_eval conventions" and "Clean
effectiveness", and by the query-variation and corpus-poisoning experiments.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from robustir import retrieve
from robustir.data import Dataset, load_dataset, load_queries
from robustir.metrics import MEASURES, mean_metrics, per_query_metrics
from robustir.metrics.stability import rankings
from robustir.provenance import file_sha256, library_versions
from robustir.results import ResultStore, per_query_long
from robustir.retrievers import Retriever, make_retriever

__all__ = ["EXPERIMENT", "Evaluation", "evaluate", "resolve_queries", "summarise"]

#: The results-store experiment of clean evaluations.
EXPERIMENT = "evaluate"
#: The study's value of each run parameter (protocol §1.2, §2.4), shown beside ours on every run
#: page; ``max_length`` is per system (8192, Contriever 512).
STUDY_SETTINGS = {"split": "test", "top_k": 1000, "batch_size": 32, "max_length": "8192 (Contriever: 512)",
                  "dtype": "bfloat16 on GPUs"}

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate`.

    Attributes:
        run: ``{qid: {doc_id: score}}``, top-k per query, best first.
        per_query: DataFrame indexed by query id, one column per measure, values in [0, 1].
        summary: ``{"metrics": {measure: mean}, "n_queries": …, "elapsed_s": …, "cache": …}``.
        params: Every parameter of the run (model spec, dataset checksum, prompts, filters,
            library versions); its hash decides whether a stored result is still valid.
        retriever: The retriever used, to reuse its loaded model and corpus.
    """

    run: dict
    per_query: pd.DataFrame
    summary: dict
    params: dict
    retriever: Retriever | None = field(default=None, repr=False)

    @functools.cached_property
    def ranking(self) -> dict[str, list[str]]:
        """``{qid: doc ids in trec_eval order}`` of :attr:`run`, sorted once (the query-variation
        experiment compares one clean run with every perturbed run)."""
        return rankings(self.run)

    def write(
        self,
        store: ResultStore | str | os.PathLike,
        *,
        experiment: str = EXPERIMENT,
        variant: str | None = None,
        seed: int | None = None,
    ) -> Path:
        """Write this evaluation as a results-store entry and return its folder."""
        if not isinstance(store, ResultStore):
            store = ResultStore(store)
        entry = store.entry_dir(
            experiment,
            self.params["model"]["key"],
            self.params["dataset"],
            variant or self.params["variant"],
            seed,
        )
        return store.write_entry(entry, self.params, per_query_long(self.per_query), self.summary)


def resolve_queries(
    queries: Mapping[str, str] | str | os.PathLike | None, dataset: Dataset
) -> tuple[dict[str, str], dict]:
    """The queries to evaluate and a record of where they came from.

    Args:
        queries: ``None`` for the split's own queries, a ``{qid: text}`` mapping, or a JSONL
            file of variant queries (``{"_id", "text", …}`` per line).
        dataset: The loaded split; every query id must be judged in it.

    Raises:
        ValueError: A query id is not judged in the split (the message names it).
    """
    if queries is None:
        return dict(dataset.queries), {"source": "dataset"}
    if isinstance(queries, (str, os.PathLike)):
        path = Path(queries)
        record = {"source": str(path), "sha256": file_sha256(path)}
        queries = load_queries(path, allow_empty_queries=True)
    else:
        record = {"source": "mapping", "n": len(queries)}
    unjudged = [qid for qid in queries if qid not in dataset.qrels]
    if unjudged:
        raise ValueError(
            f"{len(unjudged)} query id(s) are not judged in {dataset.name}/{dataset.split}, "
            f"e.g. {unjudged[:3]}; variant queries must come from the same split"
        )
    missing = len(dataset.queries) - len(queries)
    if missing > 0:
        log.warning("evaluating %d of the split's %d queries", len(queries), len(dataset.queries))
    return dict(queries), record


def evaluate(
    model: Any,
    dataset: str | Dataset,
    *,
    split: str = "test",
    queries: Mapping[str, str] | str | os.PathLike | None = None,
    variant: str = "clean",
    top_k: int = 1000,
    batch_size: int = 32,
    max_length: int | None = None,
    dtype: str | None = None,
    device: str | None = None,
    data_root: str | os.PathLike | None = None,
    cache=None,
    measures=MEASURES,
    remove_self_matches: bool | None = None,
    excluded_ids: Mapping[str, list[str]] | None = None,
    progress: bool = True,
) -> Evaluation:
    """Evaluate one system on one split (protocol §2.3–§2.5).

    Args:
        model: A catalog key, model folder, spec file or mapping, a user object, or a
            :class:`~robustir.retrievers.Retriever` to reuse (its settings then win over
            ``batch_size``, ``max_length``, ``dtype``, ``device`` and ``cache``).
        dataset: Dataset key (under the data root), folder, or a loaded :class:`Dataset`.
        split: Qrels split.
        queries: Replacement queries (variants), see :func:`resolve_queries`.
        variant: Name of the query set, stored with the result (``clean`` by default).
        top_k: Hits kept per query (the study: 1000).
        batch_size: Texts per forward pass.
        max_length: Token limit (default: the spec's).
        dtype: Weights dtype (default: the spec's on CUDA, float32 on a CPU).
        device: Torch device (default: CUDA when available).
        data_root: Data root for dataset keys.
        cache: Embedding cache (``None``: no caching).
        measures: Measure names (``robustir.metrics``).
        remove_self_matches: Drop hits whose id equals the query id; default: only on
            ArguAna, as the study (protocol §2.3.5).
        excluded_ids: ``{qid: [doc_id, …]}`` removed after retrieval (BRIGHT, §2.3.6);
            default: the dataset's own, from its queries' metadata (``{}`` to keep every hit).
        progress: Show progress bars.
    """
    for name, value in (("top_k", top_k), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")
    started = time.perf_counter()
    retriever = make_retriever(model, device=device, batch_size=batch_size,
                               max_length=max_length, dtype=dtype, cache=cache, progress=progress)
    spec = retriever.spec
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset, split, data_root)
    query_texts, query_record = resolve_queries(queries, dataset)
    if remove_self_matches is None:
        remove_self_matches = dataset.name == "arguana"

    before = retriever.counters()
    run = retriever.search(dataset, query_texts, top_k=top_k)
    after = retriever.counters()
    if remove_self_matches:
        run = retrieve.remove_self_matches(run)
    if excluded_ids is None:
        excluded_ids = dataset.excluded_ids
    if excluded_ids:
        run = retrieve.remove_excluded_ids(run, excluded_ids)

    per_query = per_query_metrics(dataset.qrels, run, measures)
    params = {
        "model": spec.as_record(),
        "dataset": dataset.key,
        "split": dataset.split,
        "data_checksum": dataset.checksum,
        "variant": variant,
        "queries": query_record,
        "top_k": top_k,
        "encoding": retriever.record(dataset),
        "remove_self_matches": remove_self_matches,
        "excluded_ids": bool(excluded_ids),
        "measures": list(measures),
        "libraries": library_versions(),
    }
    summary = {
        "metrics": mean_metrics(per_query),
        "n_queries": int(len(per_query)),
        "elapsed_s": round(time.perf_counter() - started, 3),
        "cache": {name: after[name] - before[name] for name in after} if after else None,
    }
    log.info("%s on %s/%s: %s", spec.key, dataset.name, dataset.split, summary["metrics"])
    return Evaluation(run, per_query, summary, params, retriever)


def summarise(store: ResultStore | str | os.PathLike, *, variant: str = "clean") -> pd.DataFrame:
    """Mean measures of every stored clean evaluation, one row per (model, dataset, split).

    Args:
        store: The results store (or its root).
        variant: The query set (``clean`` by default).

    Returns:
        Columns ``model, dataset, variant, seed``, ``n_queries`` and one column per measure
        (means in [0, 1]); empty when nothing is stored.

    Used in the book chapter "Clean effectiveness".
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    table = store.read_summaries(EXPERIMENT)
    if table.empty:
        return table
    return table[table["variant"] == variant].reset_index(drop=True)


#: The published clean nDCG@10 of all-MiniLM-L6-v2 on SciFact test (MTEB; protocol §7.3) and
#: the tolerance within which ours reproduces it.
MTEB_MINILM_SCIFACT = (0.6451, 0.002)
#: Tolerance for our BM25 against the study's: same k1 and b, another implementation (bm25s
#: against pyserini + gensim), so agreement to a hundredth, not a thousandth.
BM25_TOLERANCE = 0.01


def findings(table: pd.DataFrame, published: pd.DataFrame, *, llm: str = "smollm2_ret",
             encoder: str = "minilm", dataset: str = "scifact"):
    """The findings box of the clean-effectiveness chapter.

    Args:
        table: :func:`summarise`'s table.
        published: The study's per-dataset nDCG@10 × 100 (``li2026_per_dataset_ndcg10.csv``).
        llm, encoder: Our decoder-only and encoder-only retrievers.
        dataset: The dataset of the comparison (one of the published table's rows).

    Returns:
        :class:`~robustir.experiments.findings.Finding` rows: MiniLM against MTEB, our BM25
        against the study's, and the study's "LLM retrievers beat encoder-only baselines" set
        beside our offline pair.
    """
    from robustir.experiments.findings import Finding, compare_number, format_number, lookup
    from robustir.models import display_name

    row = published.set_index("dataset").loc[dataset] / 100
    value, tolerance = MTEB_MINILM_SCIFACT
    references = {
        "minilm": (value, tolerance, "MTEB, mean pooling, 256 tokens; protocol §7.3",
                   "the same system and data, run here (in the run page's precision; MTEB's run "
                   "is float32)"),
        "bm25": (float(row["bm25"]), BM25_TOLERANCE,
                 "the study's table; pyserini + gensim there, bm25s with the same k1 and b here",
                 "the same system and data, run here"),
    }
    rows = []
    for model, (number, tolerance, source, scope) in references.items():
        ours = lookup(table, "nDCG@10", model=model, dataset=dataset)
        rows.append(Finding(
            claim=f"{display_name(model)} reaches nDCG@10 {number:.4f} on {dataset} test ({source})",
            scope=scope,
            ours=format_number(ours, 4), published=f"{number:.4f}",
            verdict=compare_number(ours, number, tolerance), rule=f"tolerance ±{tolerance}"))
    ours_llm, ours_encoder = (lookup(table, "nDCG@10", model=m, dataset=dataset) for m in (llm, encoder))
    rows.append(Finding(
        claim=f"LLM-based retrievers are more effective than encoder-only baselines (on {dataset}, "
              f"Qwen3-Embedding-8B {row['qwen3']:.3f} vs Contriever {row['contriever']:.3f})",
        scope=f"our decoder retriever ({display_name(llm)}, 135M parameters, trained on a CPU) "
              f"beside an encoder-only one ({display_name(encoder)}); not the study's 4–8B systems",
        ours=f"{display_name(llm)} {format_number(ours_llm, 4)}, {display_name(encoder)} "
             f"{format_number(ours_encoder, 4)}",
        published=f"{row['qwen3']:.3f} vs {row['contriever']:.3f} (other systems)",
        verdict="not comparable", rule="the study's systems need a model hub and GPUs"))
    return rows
