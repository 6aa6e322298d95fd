"""Exact search against brute force, tie order, post-filters and BM25."""

import numpy as np

from robustir.embeddings import Embeddings
from robustir.retrieve import (
    BM25Index,
    dense_search,
    remove_excluded_ids,
    remove_self_matches,
    top_k_arrays,
)


def test_chunked_search_equals_brute_force():
    rng = np.random.default_rng(7)
    queries = rng.standard_normal((13, 16)).astype(np.float32)
    corpus = rng.standard_normal((211, 16)).astype(np.float32)
    scores, index = top_k_arrays(queries, corpus, 25, corpus_chunk=40)
    brute = queries @ corpus.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :25]
    assert np.array_equal(index, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), rtol=1e-5)


def test_ties_keep_corpus_order_across_chunks_and_k_is_capped():
    corpus = np.ones((5, 2), dtype=np.float32)
    _, index = top_k_arrays(np.ones((1, 2), dtype=np.float32), corpus, 10, corpus_chunk=2)
    assert index.tolist() == [[0, 1, 2, 3, 4]]


def test_ties_keep_corpus_order_in_one_chunk_row_by_row():
    # query 0 ties every document, query 1 none, query 2 two pairs; one faiss index answers all
    corpus = np.array([[1, 0], [2, 0], [0, 1], [0, 3], [1, 1]], dtype=np.float32)
    queries = np.array([[0, 0], [1, 3], [1, 1]], dtype=np.float32)
    scores, index = top_k_arrays(queries, corpus, 5)
    assert index.tolist() == [[0, 1, 2, 3, 4], [3, 4, 2, 1, 0], [3, 1, 4, 0, 2]]
    assert scores.tolist() == [[0] * 5, [9, 4, 3, 2, 1], [3, 2, 2, 1, 1]]


def test_cosine_search_normalises_and_dot_does_not():
    queries = Embeddings(["q"], np.array([[1.0, 0.0]], dtype=np.float32))
    corpus = Embeddings(["long", "aligned"], np.array([[3.0, 3.0], [0.5, 0.0]], dtype=np.float32))
    assert list(dense_search(queries, corpus, score="cos")["q"]) == ["aligned", "long"]
    assert list(dense_search(queries, corpus, score="dot")["q"]) == ["long", "aligned"]


def test_post_filters():
    run = {"q1": {"q1": 0.9, "d1": 0.5}, "q2": {"d1": 0.4, "d2": 0.3}}
    assert remove_self_matches(run) == {"q1": {"d1": 0.5}, "q2": {"d1": 0.4, "d2": 0.3}}
    assert remove_excluded_ids(run, {"q2": ["d1", "N/A"]})["q2"] == {"d2": 0.3}


def test_bm25_ranks_the_matching_document_first():
    corpus = {
        "a": {"title": "", "text": "the cat sat on the mat"},
        "b": {"title": "Fractures", "text": "vitamin d deficiency and bone fractures"},
        "c": {"title": "", "text": "dogs bark at night"},
    }
    run = BM25Index(corpus).search({"q": "Vitamin D and fracture risk"}, top_k=2)
    assert list(run["q"])[0] == "b"
    assert len(run["q"]) == 2
