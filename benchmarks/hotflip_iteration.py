"""Seconds per HotFlip iteration (100 candidates, 50 tokens) against their FLOP floors.

For each model, one run times, interleaved (every round runs each in turn; the best of
``--rounds`` rounds counts, after a warm-up):

* **fp32 batched** and **bf16 batched**: :meth:`robustir.attack.ClusterAttack.step` as the attack
  runs it with float32 and bfloat16 weights, all candidates (and the current passage) scored in
  one forward pass;
* **fp32 one at a time**: the same step with ``candidate_chunk=1``, a forward pass per candidate
  (goal: batched ≥ 1.5× faster);
* the **matmul peak** of each precision (``benchmarks/_timing.py``).

The **floor** of a precision is the candidates' forward FLOPs (2 × parameters outside the
embeddings per token, plus the attention products; ``passage_length`` tokens × ``candidates``)
at that precision's matmul peak from the same rounds. Goal: each batched step within 1.5× of its
floor (issue "fast enough on 2 cores").

Usage: ``python benchmarks/hotflip_iteration.py [--models minilm smollm2] [--rounds 3]``.
Prints one table; the book chapter "Corpus poisoning" explains how the embedded default's
iteration count follows from these numbers.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
from _timing import forward_flops, interleaved_best, matmul_peak

from robustir.attack import ClusterAttack, ClusterTargets, HotFlipConfig
from robustir.encode import Encoder
from robustir.models import get_model_spec

FLOOR_GOAL = 1.5
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}


def attack_step(encoder: Encoder, config: HotFlipConfig):
    """One contender: a call runs one iteration of a cluster attack on random targets (seeded),
    carrying the passage on from call to call as the attack does."""
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        probe = encoder.embed_batch(torch.ones(1, 4, dtype=torch.long),
                                    input_ids=torch.tensor([[5, 6, 7, 8]]))
    centroids = rng.standard_normal((4, probe.shape[1])).astype(np.float32)
    loop = ClusterAttack(encoder, "scifact", ClusterTargets(centroids, centroids[:1], 4 * 64, 64), config)
    vocabulary = encoder.input_embeddings.weight.shape[0]
    state = {"ids": torch.tensor(rng.integers(1000, min(vocabulary, 20000), config.passage_length))}

    def run() -> None:
        _, state["ids"], _, _ = loop.step(state["ids"], rng)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm"])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--passage-length", type=int, default=50)
    args = parser.parse_args()
    config = HotFlipConfig(candidates=args.candidates, passage_length=args.passage_length)
    print(f"{args.candidates} candidates, {args.passage_length} tokens, {torch.get_num_threads()} threads, "
          f"best of {args.rounds} interleaved rounds")
    header = ("model", "precision", "batched s/it", "floor s/it", "batched/floor", "goal",
              "one-at-a-time s/it", "batching speed-up")
    print(" | ".join(header))
    for key in args.models:
        spec = get_model_spec(key)
        encoders = {p: Encoder(spec, device="cpu", dtype=d, progress=False) for p, d in PRECISIONS.items()}
        contenders = {f"{p} batched": attack_step(encoder, config) for p, encoder in encoders.items()}
        contenders["fp32 one at a time"] = attack_step(
            encoders["fp32"], dataclasses.replace(config, candidate_chunk=1))
        peak_flops = {}
        for precision, dtype in PRECISIONS.items():
            contenders[f"peak {precision}"], peak_flops[precision] = matmul_peak(getattr(torch, dtype))
        best = interleaved_best(contenders, args.rounds)
        flops = forward_flops(encoders["fp32"].model, [args.passage_length] * args.candidates)
        for precision in PRECISIONS:
            batched = best[f"{precision} batched"]
            floor = flops / (peak_flops[precision] / best[f"peak {precision}"])
            ratio = batched / floor
            single = best["fp32 one at a time"] if precision == "fp32" else None
            print(" | ".join([
                key, precision, f"{batched:.3f}", f"{floor:.3f}", f"{ratio:.2f}x",
                f"<= {FLOOR_GOAL}x {'met' if ratio <= FLOOR_GOAL else 'NOT met'}",
                f"{single:.3f}" if single else "-", f"{single / batched:.2f}x" if single else "-",
            ]))


if __name__ == "__main__":
    main()
