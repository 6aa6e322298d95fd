"""Benchmark: nDCG@10 with bfloat16 weights against float32, per model and dataset.

The rule of the embedded default (issue "fast enough on 2 cores"): a system encodes in bfloat16
on a CPU only where its nDCG@10 stays within 0.002 of float32's on the same run. Each (model,
dataset) is evaluated twice on the same device, float32 then bfloat16, each with a fresh
embedding cache (so the corpus is encoded in that precision); the table prints both means,
the difference (bf16 − fp32), the largest per-query difference and the verdict.

Usage::

    python benchmarks/bf16_effectiveness.py [--models minilm] [--datasets scifact cranfield]

Set ``ROBUSTIR_DATA`` (the Makefile does) so that the dataset keys resolve.
"""

from __future__ import annotations

import argparse
import tempfile

from robustir.cache import EmbeddingCache
from robustir.experiments.evaluation import evaluate

MEASURE = "nDCG@10"
#: Largest |nDCG@10(bf16) − nDCG@10(fp32)| for which a system may encode in bfloat16.
TOLERANCE = 0.002


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm"])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield"])
    parser.add_argument("--split", default="test")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    print(f"{'model':<12}{'dataset':<11}{'fp32':>8}{'bf16':>8}{'bf16-fp32':>11}{'max |query|':>13}  "
          f"verdict (|difference| <= {TOLERANCE})")
    for model in args.models:
        for dataset in args.datasets:
            per_query = {}
            for dtype in ("float32", "bfloat16"):
                with tempfile.TemporaryDirectory(prefix="bf16-effectiveness-") as scratch:
                    result = evaluate(model, dataset, split=args.split, dtype=dtype, device=args.device,
                                      cache=EmbeddingCache(scratch), measures=(MEASURE,), progress=False)
                per_query[dtype] = result.per_query[MEASURE]
            exact, half = per_query["float32"], per_query["bfloat16"].reindex(per_query["float32"].index)
            difference = float(half.mean() - exact.mean())
            verdict = "bf16" if abs(difference) <= TOLERANCE else "fp32 (bf16 too far)"
            print(f"{model:<12}{dataset:<11}{exact.mean():>8.4f}{half.mean():>8.4f}{difference:>+11.4f}"
                  f"{float((half - exact).abs().max()):>13.4f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
