"""Shared test fixtures: the shared datasets, a session-wide embedding cache and a small
SciFact subset written as a BEIR folder (fast enough for every model, including SmolLM2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ROBUSTIR_SHARED_DATA") or REPO.parent / "shared" / "datasets")

# Offline models only, quiet progress bars, and one cache for the whole session: the dequantised
# SmolLM2 copy and the SciFact embeddings are computed once and reused by every test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("ROBUSTIR_CACHE", str(REPO / "build" / "test-cache"))
os.environ.setdefault("NLTK_DATA", str(REPO / "build" / "nltk_data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared BEIR folders (``../shared/datasets`` or ``$ROBUSTIR_SHARED_DATA``)."""
    if not (SHARED_DATA / "scifact" / "corpus.jsonl").is_file():
        pytest.skip(f"shared datasets not found at {SHARED_DATA} (set ROBUSTIR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedding_cache():
    """The session's embedding cache (under ``$ROBUSTIR_CACHE``).

    For tests of what a pipeline does with embeddings, not of the embeddings themselves: a test
    that checks the encoder's output encodes without a cache (or into ``tmp_path``), since a hit
    would show the output of the code that filled the cache. ``ENCODER_OUTPUT_VERSION`` in every
    key, guarded by ``tests/test_encode.py``, keeps the hits of this cache current.
    """
    from robustir.cache import EmbeddingCache

    return EmbeddingCache()


@pytest.fixture(scope="session")
def scifact_mini(shared_data, tmp_path_factory) -> Path:
    """A BEIR folder ``…/scifact`` with 40 SciFact test queries, their gold documents and 260 others.

    Deterministic: the first 40 judged queries in qrels order and the first 260 other
    documents in corpus order.
    """
    from robustir.data import load_dataset

    full = load_dataset(shared_data / "scifact", "test")
    qids = list(full.qrels)[:40]
    gold = {d for q in qids for d in full.qrels[q]}
    others = [d for d in full.corpus if d not in gold][:260]
    # named "scifact" so that prompts and task strings are SciFact's
    folder = tmp_path_factory.mktemp("mini") / "scifact"
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as out:
        for doc_id in [*sorted(gold), *others]:
            out.write(json.dumps({"_id": doc_id, **full.corpus[doc_id]}) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for qid in qids:
            out.write(json.dumps({"_id": qid, "text": full.queries[qid]}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for qid in qids:
            for doc_id, grade in full.qrels[qid].items():
                out.write(f"{qid}\t{doc_id}\t{grade}\n")
    return folder


@pytest.fixture(scope="session")
def scifact_tiny(shared_data, tmp_path_factory) -> Path:
    """A BEIR folder ``…/scifact`` with 20 test and 30 train SciFact queries, their gold
    documents and 60 others: small enough to train or attack on."""
    from robustir.data import load_dataset

    folder = tmp_path_factory.mktemp("tiny") / "scifact"
    (folder / "qrels").mkdir(parents=True)
    splits = {s: load_dataset(shared_data / "scifact", s) for s in ("test", "train")}
    chosen = {"test": list(splits["test"].qrels)[:20], "train": list(splits["train"].qrels)[:30]}
    corpus = splits["test"].corpus
    gold = {d for s, qids in chosen.items() for q in qids for d in splits[s].qrels[q]}
    documents = [*sorted(gold), *[d for d in corpus if d not in gold][:60]]
    with (folder / "corpus.jsonl").open("w") as out:
        for doc_id in documents:
            out.write(json.dumps({"_id": doc_id, **corpus[doc_id]}) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for split, qids in chosen.items():
            for qid in qids:
                out.write(json.dumps({"_id": qid, "text": splits[split].queries[qid]}) + "\n")
    for split, qids in chosen.items():
        with (folder / "qrels" / f"{split}.tsv").open("w") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            for qid in qids:
                for doc_id, grade in splits[split].qrels[qid].items():
                    out.write(f"{qid}\t{doc_id}\t{grade}\n")
    return folder


def pytest_runtest_setup(item):
    """Tests marked ``r`` or ``browser`` skip without their tool, and fail without it in CI."""
    from required_tools import require_marked_tools

    require_marked_tools(item)
