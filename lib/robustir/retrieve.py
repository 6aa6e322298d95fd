"""Retrieval: exact inner-product search over embeddings, and the BM25 baseline.

Dense search is exact (protocol §2.4): a faiss flat inner-product index per corpus chunk, with a
running per-query top-k merged across chunks, so memory stays bounded by the chunk size and
``queries × k`` whatever the corpus size. With cosine scoring, vectors are L2-normalised first
(idempotent for normalised encoders). Runs are BEIR dicts ``{qid: {doc_id: score}}`` ordered by
score, best first.

Post-filters of the study are explicit functions: :func:`remove_self_matches` (ArguAna) and
:func:`remove_excluded_ids` (BRIGHT).

Used in the book chapter "Dense retrieval with encoder-only and decoder-only models".
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

import faiss
import numpy as np

from robustir.data import document_text
from robustir.embeddings import Embeddings

__all__ = [
    "BM25Index",
    "dense_search",
    "remove_excluded_ids",
    "remove_self_matches",
    "top_k_arrays",
]

log = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    faiss.normalize_L2(vectors)
    return vectors


def top_k_arrays(
    queries: np.ndarray,
    corpus: np.ndarray,
    top_k: int,
    *,
    corpus_chunk: int = 50_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products, chunked over the corpus.

    Args:
        queries: float32 ``(n_queries, d)``.
        corpus: float32 ``(n_docs, d)``.
        top_k: Hits per query (capped at ``n_docs``).
        corpus_chunk: Documents indexed at a time; bounds memory.

    Returns:
        ``(scores, indices)``, each ``(n_queries, min(top_k, n_docs))``, sorted by score
        descending; ties keep corpus order (the lower index first). Which of several documents
        tied at the cut-off enter is faiss's choice.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    corpus = np.ascontiguousarray(corpus, dtype=np.float32)
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(
            f"query and corpus vectors must be 2-D with the same dimension; got "
            f"{queries.shape} and {corpus.shape}"
        )
    k = min(top_k, corpus.shape[0])
    best_scores = np.full((queries.shape[0], 0), -np.inf, dtype=np.float32)
    best_index = np.zeros((queries.shape[0], 0), dtype=np.int64)
    for start in range(0, corpus.shape[0], corpus_chunk):
        chunk = corpus[start : start + corpus_chunk]
        index = faiss.IndexFlatIP(chunk.shape[1])
        index.add(chunk)
        scores, found = index.search(queries, min(k, chunk.shape[0]))
        found += start
        if start:  # merge with the earlier chunks' best
            scores = np.concatenate([best_scores, scores], axis=1)
            found = np.concatenate([best_index, found], axis=1)
            unsorted = slice(None)  # every row
        else:  # faiss ranks by score: only rows with tied scores need corpus order
            unsorted = np.flatnonzero((scores[:, 1:] == scores[:, :-1]).any(axis=1))
        # stable sort on (-score, index) keeps ties in corpus order
        order = np.lexsort((found[unsorted], -scores[unsorted]), axis=1)
        scores[unsorted] = np.take_along_axis(scores[unsorted], order, axis=1)
        found[unsorted] = np.take_along_axis(found[unsorted], order, axis=1)
        best_scores, best_index = scores[:, :k], found[:, :k]
    return best_scores, best_index


def dense_search(
    queries: Embeddings,
    corpus: Embeddings,
    *,
    top_k: int = 1000,
    score: str = "cos",
    corpus_chunk: int = 50_000,
) -> Run:
    """Exact search of every query over the corpus (protocol §2.4).

    Args:
        queries: Query embeddings.
        corpus: Corpus embeddings.
        top_k: Hits kept per query (the study: 1000).
        score: ``cos`` (vectors L2-normalised first) or ``dot``.
        corpus_chunk: Documents indexed at a time.

    Returns:
        Run ``{qid: {doc_id: score}}``, each ranked best first.
    """
    if score not in ("cos", "dot"):
        raise ValueError(f"score must be 'cos' or 'dot', not {score!r}")
    q, d = queries.vectors, corpus.vectors
    if score == "cos":
        q, d = _normalised(q), _normalised(d)
    scores, index = top_k_arrays(q, d, top_k, corpus_chunk=corpus_chunk)
    doc_ids = np.asarray(corpus.ids, dtype=object)
    return {
        qid: dict(zip(doc_ids[row_index].tolist(), row_scores.tolist()))
        for qid, row_scores, row_index in zip(queries.ids, scores, index)
    }


def remove_self_matches(run: Run) -> Run:
    """Drop hits whose doc id equals the query id (the study does this on ArguAna only)."""
    return {qid: {d: s for d, s in hits.items() if d != qid} for qid, hits in run.items()}


def remove_excluded_ids(run: Run, excluded: Mapping[str, Iterable[str]]) -> Run:
    """Drop each query's excluded doc ids from its hits (BRIGHT's ``excluded_ids``; ``N/A``
    entries are ignored)."""
    out = {}
    for qid, hits in run.items():
        banned = {d for d in excluded.get(qid, ()) if d != "N/A"}
        out[qid] = {d: s for d, s in hits.items() if d not in banned}
    return out


class BM25Index:
    """A BM25 index over a BEIR corpus with ``bm25s`` (Lucene variant).

    The study used pyserini's Lucene analyser with gensim's ``LuceneBM25Model`` (k1 = 0.9,
    b = 0.4, query terms weighted by the same transform; protocol §1.5). This retriever keeps
    those k1 and b with an English stop-word list and the Snowball English stemmer; the
    scoring differs (idf once, as in textbook BM25), which the book's evaluation chapter
    quantifies.

    Args:
        corpus: BEIR corpus; documents are ``title + " " + text`` as in the study.
        k1: Term-frequency saturation.
        b: Length normalisation.
        stemmer: A Snowball language name, or ``None`` for no stemming.
        progress: Show progress bars.
    """

    def __init__(
        self,
        corpus: Mapping[str, Mapping[str, str]],
        *,
        k1: float = 0.9,
        b: float = 0.4,
        stemmer: str | None = "english",
        progress: bool = False,
    ):
        import bm25s
        import Stemmer

        self.doc_ids = list(corpus)
        self.progress = progress
        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer else None
        texts = [document_text(corpus[i], empty=None) for i in self.doc_ids]
        self._index = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._index.index(self._tokenize(texts), show_progress=progress)

    def _tokenize(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(
            texts, stopwords="en", stemmer=self._stemmer, show_progress=self.progress
        )

    def search(self, queries: Mapping[str, str], *, top_k: int = 1000) -> Run:
        """Top-k documents per query, best first (a query with no known term scores 0 everywhere)."""
        qids = list(queries)
        k = min(top_k, len(self.doc_ids))
        tokens = self._tokenize([queries[q] for q in qids])
        found, scores = self._index.retrieve(tokens, k=k, show_progress=self.progress)
        run: Run = {}
        for qid, row_found, row_scores in zip(qids, found, scores):
            run[qid] = {self.doc_ids[j]: s for j, s in zip(row_found.tolist(), row_scores.tolist())}
        return run
