"""Benchmark: texts per second of ``robustir.encode`` against sentence-transformers.

Both encode the same SciFact documents (``title + " " + text``) with all-MiniLM-L6-v2 at the
same maximum length and batch size, on the same device, in the same run, after one warm-up
batch each; neither uses a cache. Baseline: ``SentenceTransformer.encode`` (which also sorts by
length). Goal: ratio (ours / sentence-transformers) ≥ 1.0. The largest absolute difference
between the two embedding matrices is printed as a check that both compute the same thing.

Usage::

    python benchmarks/encode_throughput.py [--documents 1000] [--max-length 256] [--batch-size 32]

Needs ``pip install sentence-transformers`` (the ``bench`` extra) and ``ROBUSTIR_DATA``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from robustir.data import document_text, load_dataset
from robustir.encode import Encoder
from robustir.models import get_model_spec

GOAL = 1.0


def _rate(encode, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    encode(texts[:32])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = encode(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best, vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs each; the best counts")
    args = parser.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    corpus = load_dataset(args.dataset).corpus
    texts = [document_text(corpus[d]) for d in list(corpus)[: args.documents]]
    spec = get_model_spec("minilm")
    ours = Encoder(spec, max_length=args.max_length, batch_size=args.batch_size, progress=False)
    theirs = SentenceTransformer(spec.weights_location(), device=str(ours.device))
    theirs.max_seq_length = args.max_length

    our_rate, our_vectors = _rate(ours.encode_texts, texts, args.repeats)
    their_rate, their_vectors = _rate(
        lambda t: theirs.encode(t, batch_size=args.batch_size, normalize_embeddings=True,
                                show_progress_bar=False, convert_to_numpy=True),
        texts, args.repeats,
    )
    ratio = our_rate / their_rate
    print(f"{len(texts)} SciFact documents, max_length {args.max_length}, batch {args.batch_size}, "
          f"device {ours.device}")
    print(f"{'encoder':<24}{'texts/s':>10}")
    print(f"{'robustir.encode':<24}{our_rate:>10.1f}")
    print(f"{'sentence-transformers':<24}{their_rate:>10.1f}")
    print(f"ratio robustir / sentence-transformers: {ratio:.2f} (goal >= {GOAL})")
    print(f"max |difference| of embeddings: {np.abs(our_vectors - their_vectors).max():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
