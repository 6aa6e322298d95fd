"""Retrieval effectiveness with trec_eval semantics, per query.

Every measure is computed by ``pytrec_eval`` (the ``pytrec-eval-terrier`` wheel), so ranking
order, ties and denominators are trec_eval's (protocol §2.5): the run is ordered by score
descending with ties broken by doc id in descending string order; nDCG uses the qrels grade as
a linear gain; Recall@k and MAP divide by all relevant documents; a query judged only 0 scores
0. MRR@k is ``recip_rank`` on the run truncated to its top k in that same order.

Measure names are the book's: ``nDCG@10``, ``Recall@100``, ``P@5``, ``MAP``, ``MAP@100``,
``MRR@10``, ``MRR``. All values lie in [0, 1].

Used in the book chapter "Evaluation: nDCG and trec_eval conventions".
"""

from __future__ import annotations

import heapq
import re
from typing import Iterable, Mapping

import pandas as pd
import pytrec_eval

__all__ = [
    "MEASURES",
    "mean_metrics",
    "per_query_metrics",
    "trec_eval_order",
]

#: The measures ``robustir evaluate`` reports.
MEASURES = ("nDCG@10", "Recall@100", "MRR@10", "MAP")

_PATTERN = re.compile(r"^(nDCG|Recall|P|MAP|MRR)(?:@(\d+))?$")
_TREC_NAMES = {"nDCG": "ndcg_cut", "Recall": "recall", "P": "P", "MAP": "map_cut"}

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def _parse(measure: str) -> tuple[str, int | None]:
    match = _PATTERN.match(measure)
    if not match:
        raise ValueError(
            f"unknown measure {measure!r}; use nDCG@k, Recall@k, P@k, MAP, MAP@k, MRR or MRR@k"
        )
    name, cutoff = match.group(1), match.group(2)
    if name in ("nDCG", "Recall", "P") and cutoff is None:
        raise ValueError(f"measure {measure!r} needs a cutoff, e.g. {name}@10")
    return name, int(cutoff) if cutoff else None


def trec_eval_order(hits: Mapping[str, float], depth: int | None = None) -> list[str]:
    """Doc ids in trec_eval order: score descending, ties by doc id descending.

    Args:
        hits: ``{doc_id: score}``.
        depth: Return only the first ``depth`` ids (a partial sort); ``None`` returns all.
    """
    # (score, doc id) pairs compare as trec_eval orders, without a key function per item
    pairs = zip(hits.values(), hits.keys())
    ranked = sorted(pairs, reverse=True) if depth is None else heapq.nlargest(depth, pairs)
    return [doc_id for _, doc_id in ranked]


def _truncate(run: Run, k: int) -> dict[str, dict[str, float]]:
    return {q: {d: hits[d] for d in trec_eval_order(hits, k)} for q, hits in run.items()}


def _float_scores(hits: Mapping[str, float]) -> Mapping[str, float]:
    """``hits`` with Python float scores, as pytrec_eval takes them (numpy scalars converted)."""
    if all(type(score) is float for score in hits.values()):
        return hits
    return {doc_id: float(score) for doc_id, score in hits.items()}


def per_query_metrics(
    qrels: Qrels, run: Run, measures: Iterable[str] = MEASURES
) -> pd.DataFrame:
    """Per-query values of ``measures`` for every query in both ``qrels`` and ``run``.

    Args:
        qrels: ``{qid: {doc_id: grade}}``; grades are integer gains.
        run: ``{qid: {doc_id: score}}``; order and ranks are ignored, scores decide.
        measures: Names like ``nDCG@10`` (see the module docstring).

    Returns:
        DataFrame indexed by query id (sorted), one float column per measure. A query of the
        qrels that is missing from the run is absent, as in pytrec_eval.

    Raises:
        ValueError: No query of the run with at least one hit is judged in the qrels (every
            measure would be undefined); the message gives both counts.
    """
    measures = list(measures)
    parsed = {m: _parse(m) for m in measures}
    qrels = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    run = {q: _float_scores(hits) for q, hits in run.items() if hits}
    if not run.keys() & qrels.keys():
        raise ValueError(
            f"no query in common: the run has hits for {len(run)} queries, the qrels judge "
            f"{len(qrels)}, and no query id is in both (run e.g. {sorted(run)[:3]}, qrels e.g. "
            f"{sorted(qrels)[:3]}); check that both use the same query ids"
        )
    columns: dict[str, dict[str, float]] = {}
    trec_measures, keys = set(), {}
    for measure, (name, cutoff) in parsed.items():
        if name == "MRR":
            truncated = _truncate(run, cutoff) if cutoff else run
            result = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated)
            columns[measure] = {q: v["recip_rank"] for q, v in result.items()}
        elif name == "MAP" and cutoff is None:
            trec_measures.add("map")
            keys[measure] = "map"
        else:
            trec_measures.add(f"{_TREC_NAMES[name]}.{cutoff}")
            keys[measure] = f"{_TREC_NAMES[name]}_{cutoff}"
    if trec_measures:
        result = pytrec_eval.RelevanceEvaluator(qrels, trec_measures).evaluate(run)
        for measure, key in keys.items():
            columns[measure] = {q: v[key] for q, v in result.items()}
    frame = pd.DataFrame({m: pd.Series(columns[m], dtype=float) for m in measures})
    frame.index.name = "query_id"
    return frame.sort_index()


def mean_metrics(per_query: pd.DataFrame) -> dict[str, float]:
    """Arithmetic mean of each measure over the evaluated queries (unrounded)."""
    return {measure: float(per_query[measure].mean()) for measure in per_query.columns}
