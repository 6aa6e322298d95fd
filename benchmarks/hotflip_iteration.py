"""Seconds per HotFlip iteration (100 candidates, 50 tokens) against two baselines.

For each model, one run measures:

* **batched**: :meth:`robustir.attack.ClusterAttack.step` as the attack runs it, all
  candidates (and the current passage) scored in one forward pass;
* **one at a time**: the same step with ``candidate_chunk=1``, a forward pass per candidate
  (goal: batched ≥ 1.5× faster);
* **floor**: the candidates' forward FLOPs, 2 × (parameters outside the embeddings) × tokens ×
  candidates, at the fp32 matrix-multiply rate measured in the same process on a 2048³
  ``torch.matmul`` (goal: batched within 1.5× of it);
* **bf16**: the batched step with bfloat16 weights (speed-up reported separately).

Usage: ``python benchmarks/hotflip_iteration.py [--models minilm smollm2] [--iterations 5]``.
Prints one table; the book chapter "Corpus poisoning" explains how the embedded default's
iteration count follows from these numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from robustir.attack import ClusterAttack, ClusterTargets, HotFlipConfig
from robustir.encode import Encoder
from robustir.models import get_model_spec


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul throughput in FLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def layer_parameters(model: torch.nn.Module) -> int:
    """Parameters applied to every token outside the embedding tables (and BERT's pooler)."""
    return sum(
        p.numel() for name, p in model.named_parameters()
        if "embed" not in name and "pooler" not in name
    )


def seconds_per_iteration(encoder: Encoder, config: HotFlipConfig, iterations: int) -> float:
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        probe = encoder.embed_batch(torch.ones(1, 4, dtype=torch.long),
                                    input_ids=torch.tensor([[5, 6, 7, 8]]))
    dim = probe.shape[1]
    centroids = rng.standard_normal((4, dim)).astype(np.float32)
    targets = ClusterTargets(centroids, centroids[:1], 4 * 64, 64)
    loop = ClusterAttack(encoder, "scifact", targets, config)
    vocabulary = encoder.input_embeddings.weight.shape[0]
    ids = torch.tensor(rng.integers(1000, min(vocabulary, 20000), config.passage_length))
    loop.step(ids, rng)  # warm-up
    started = time.perf_counter()
    for _ in range(iterations):
        _, ids, _, _ = loop.step(ids, rng)
    return (time.perf_counter() - started) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm"])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--passage-length", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    rate = matmul_rate()
    config = HotFlipConfig(candidates=args.candidates, passage_length=args.passage_length)
    print(f"fp32 matmul rate: {rate / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    header = ("model", "batched s/it", "one-at-a-time s/it", "speed-up", "floor s/it",
              "batched/floor", "bf16 s/it", "bf16 speed-up")
    print(" | ".join(header))
    for key in args.models:
        spec = get_model_spec(key)
        encoder = Encoder(spec, device="cpu", dtype="float32", progress=False)
        batched = seconds_per_iteration(encoder, config, args.iterations)
        single = seconds_per_iteration(
            encoder, dataclasses.replace(config, candidate_chunk=1), args.iterations
        )
        flops = 2 * layer_parameters(encoder.model) * args.passage_length * args.candidates
        floor = flops / rate
        bf16 = seconds_per_iteration(
            Encoder(spec, device="cpu", dtype="bfloat16", progress=False), config, args.iterations
        )
        print(" | ".join([
            key, f"{batched:.3f}", f"{single:.3f}", f"{single / batched:.2f}x", f"{floor:.3f}",
            f"{batched / floor:.2f}x", f"{bf16:.3f}", f"{batched / bf16:.2f}x",
        ]))


if __name__ == "__main__":
    main()
