"""Reference computations that share no code with robustir, for the tests that check its numbers.

A BEIR folder is read with ``json`` and ``csv``, texts are embedded with ``transformers`` and
pooled by hand, the search is a numpy matrix product, and the measures come from
``pytrec_eval`` (MRR@10 from a hand-ranked top 10). Only model weights and the study's prompt
strings are taken from the catalog. :func:`asr_by_hand` is the exception: it ranks with numpy
but takes its embeddings from robustir's encoder (checked against hand pooling elsewhere).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytrec_eval
import torch


def read_beir(folder: Path, split: str = "test") -> tuple[dict, dict, dict]:
    """Corpus ``{id: text to embed}``, judged queries ``{id: text}`` and qrels of a BEIR folder."""
    corpus = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        title = doc.get("title") or ""
        corpus[doc["_id"]] = f"{title} {doc['text']}" if title else doc["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        query = json.loads(line)
        if query["_id"] in qrels:
            queries[query["_id"]] = query["text"]
    return corpus, queries, qrels


def embed(location: str, texts: list[str], *, pooling: str, max_length: int,
          batch_size: int = 32) -> np.ndarray:
    """Unit-length embeddings: ``mean`` over the attention mask (right padding) or ``last`` token
    (each text alone, so its last token is the sequence's last)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, dtype=torch.float32).eval()
    vectors = []
    with torch.inference_mode():
        if pooling == "last":
            for text in texts:
                tokens = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
                vectors.append(model(**tokens).last_hidden_state[0, -1])
        else:
            tokenizer.padding_side = "right"
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
            pooled = {}
            for start in range(0, len(texts), batch_size):
                batch = order[start:start + batch_size]
                tokens = tokenizer([texts[i] for i in batch], truncation=True, padding=True,
                                   max_length=max_length, return_tensors="pt")
                hidden = model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).float()
                pooled.update(zip(batch, (hidden * mask).sum(dim=1) / mask.sum(dim=1)))
            vectors = [pooled[i] for i in range(len(texts))]
    matrix = torch.stack(vectors).numpy()
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def minilm_run(folder: Path, split: str = "test") -> tuple[dict, dict]:
    """all-MiniLM-L6-v2 (mean pooling, 256 tokens, cosine) over a BEIR folder: ``(run, qrels)``,
    every document of the corpus scored for every judged query."""
    from robustir.models import get_model_spec

    corpus, queries, qrels = read_beir(folder, split)
    location = get_model_spec("minilm").weights_location()
    documents = embed(location, list(corpus.values()), pooling="mean", max_length=256)
    questions = embed(location, list(queries.values()), pooling="mean", max_length=256)
    scores = questions @ documents.T
    run = {qid: dict(zip(corpus, map(float, row))) for qid, row in zip(queries, scores)}
    return run, qrels


def mean_measures(run: dict, qrels: dict) -> dict[str, float]:
    """Means over the run's queries of nDCG@10, Recall@100 and MAP (pytrec_eval) and MRR@10
    (reciprocal rank of the first relevant document in the top 10, ranked by score and then
    doc id, both descending, as trec_eval ranks)."""
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map"})
    values = evaluator.evaluate(run)
    reciprocal = []
    for qid, hits in run.items():
        top = sorted(hits.items(), key=lambda hit: (hit[1], hit[0]), reverse=True)[:10]
        ranks = [rank for rank, (doc, _) in enumerate(top, 1) if qrels[qid].get(doc, 0) > 0]
        reciprocal.append(1 / ranks[0] if ranks else 0.0)
    return {
        "nDCG@10": float(np.mean([v["ndcg_cut_10"] for v in values.values()])),
        "Recall@100": float(np.mean([v["recall_100"] for v in values.values()])),
        "MRR@10": float(np.mean(reciprocal)),
        "MAP": float(np.mean([v["map"] for v in values.values()])),
    }


def asr_by_hand(encoder, test, passage_ids, cutoffs) -> tuple[dict[int, float], dict[int, float]]:
    """ASR@k of one adversarial passage over a split's judged queries, ranked with numpy.

    The passage succeeds on a query when fewer than k clean documents score at least as high
    (a tie goes to the real document). Embeddings: ``encoder``'s queries and corpus, and the
    passage embedded from its token ids (:func:`robustir.attack.embed_passages`).

    Returns:
        ASR@k per k, and per k the share of queries whose k-th clean score lies within 1e-5 of
        the passage's (where a float32 rounding in another summation order could decide).
    """
    from robustir.attack import embed_passages

    queries = encoder.encode_queries({q: test.queries[q] for q in test.qrels}, test.name).vectors
    corpus = encoder.encode_corpus(test.corpus, test.name).vectors
    (passage,) = embed_passages(encoder, [passage_ids], test.name)
    clean = np.sort(queries @ corpus.T, axis=1)[:, ::-1]
    adversarial = queries @ passage
    expected, undecided = {}, {}
    for k in cutoffs:
        kth = clean[:, min(k, clean.shape[1]) - 1]
        expected[k] = float(np.mean((adversarial > kth) | (clean.shape[1] < k)))
        undecided[k] = float(np.mean(np.abs(adversarial - kth) < 1e-5))
    return expected, undecided
