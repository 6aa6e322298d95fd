"""Benchmark: texts per second of ``robustir.encode`` (fp32 and bf16) against sentence-transformers.

All contenders encode the same SciFact documents (``title + " " + text``) with all-MiniLM-L6-v2
at the same maximum length and batch size, on the same device, without a cache:

* ``robustir fp32`` and ``robustir bf16``: :meth:`robustir.encode.Encoder.encode_texts` with
  float32 and bfloat16 weights;
* ``sentence-transformers fp32``: ``SentenceTransformer.encode`` (which also sorts by length),
  the baseline of the ratios;
* the matmul peak of each precision (two 2048² matrices).

They run interleaved (one round runs each in turn; ``--rounds`` rounds; each keeps its best), so
that a load change on a shared machine hits all of them alike. Achieved GFLOP/s counts the
useful FLOPs only (linear layers and attention products over the real tokens, padding excluded)
and is compared with the peak of its own precision from the same rounds. Goals: bf16 ≥ 1.5× and
fp32 ≥ 1.0× sentence-transformers, and ≥ 60 % of the peak. The largest absolute difference and
the smallest cosine between each of ours and sentence-transformers' embeddings check that all
compute the same thing (bf16: up to bf16 rounding).

Usage::

    python benchmarks/encode_throughput.py [--documents 600] [--max-length 256] [--batch-size 32] [--rounds 3]

Needs ``pip install -e .[bench]`` (sentence-transformers) and ``ROBUSTIR_DATA``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import forward_flops, interleaved_best, matmul_peak

from robustir.data import document_text, load_dataset
from robustir.encode import Encoder
from robustir.models import get_model_spec

GOALS = {"robustir fp32": 1.0, "robustir bf16": 1.5}
PEAK_GOAL = 0.6
BASELINE = "sentence-transformers fp32"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--documents", type=int, default=600)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts")
    args = parser.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    corpus = load_dataset(args.dataset).corpus
    texts = [document_text(corpus[d]) for d in list(corpus)[: args.documents]]
    spec = get_model_spec("minilm")
    ours = {
        "robustir fp32": Encoder(spec, dtype="float32", max_length=args.max_length,
                                 batch_size=args.batch_size, progress=False),
        "robustir bf16": Encoder(spec, dtype="bfloat16", max_length=args.max_length,
                                 batch_size=args.batch_size, progress=False),
    }
    device = ours["robustir fp32"].device
    theirs = SentenceTransformer(spec.weights_location(), device=str(device))
    theirs.max_seq_length = args.max_length
    vectors: dict[str, np.ndarray] = {}

    def encoding(name, encode):
        def run():
            vectors[name] = encode(texts)
        return run

    contenders = {name: encoding(name, encoder.encode_texts) for name, encoder in ours.items()}
    contenders[BASELINE] = encoding(BASELINE, lambda t: theirs.encode(
        t, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False,
        convert_to_numpy=True))
    peak_flops = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        contenders[f"matmul peak {precision}"], peak_flops[precision] = matmul_peak(dtype)
    best = interleaved_best(contenders, args.rounds)

    lengths = ours["robustir fp32"].tokenize(texts)["attention_mask"].sum(dim=1).tolist()
    flops = forward_flops(ours["robustir fp32"].model, lengths)
    peak = {p: peak_flops[p] / best[f"matmul peak {p}"] for p in peak_flops}
    print(f"{len(texts)} {args.dataset} documents ({sum(lengths)} tokens), max_length "
          f"{args.max_length}, batch {args.batch_size}, device {device}, {torch.get_num_threads()} "
          f"threads, best of {args.rounds} interleaved rounds; {flops / 1e12:.2f} TFLOP per encoding")
    print(f"matmul peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s")
    print(f"{'encoder':<28}{'texts/s':>9}{'x ST fp32':>11}{'GFLOP/s':>9}{'of peak':>9}  goals")
    for name in (*ours, BASELINE):
        precision = name.rsplit(" ", 1)[1]
        rate = flops / best[name]
        ratio = best[BASELINE] / best[name]
        verdicts = []
        if name in GOALS:
            verdicts.append(f"x{GOALS[name]} {'met' if ratio >= GOALS[name] else 'NOT met'}")
            verdicts.append(f"{PEAK_GOAL:.0%} {'met' if rate >= PEAK_GOAL * peak[precision] else 'NOT met'}")
        print(f"{name:<28}{len(texts) / best[name]:>9.1f}{ratio:>11.2f}{rate / 1e9:>9.0f}"
              f"{rate / peak[precision]:>9.0%}  {', '.join(verdicts)}")
    for name in ours:
        difference = np.abs(vectors[name] - vectors[BASELINE]).max()
        cosine = np.sum(vectors[name] * vectors[BASELINE], axis=1).min()
        print(f"{name} vs {BASELINE}: max |difference| {difference:.2e}, min cosine {cosine:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
