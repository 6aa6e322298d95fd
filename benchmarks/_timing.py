"""Timing helpers shared by the benchmarks: interleaved best-of timing and the matmul peak.

On a shared machine the load changes from one second to the next, so the benchmarks never time
one contender after the other: every round runs each contender once, in turn (A, B, C, A, B, C,
…), and each keeps its best round. Ratios of best times are then measured under the same
conditions. The matmul peak of a precision is one more contender of the same rounds, so that an
achieved rate is compared with the peak reachable at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch

#: Side of the square matrices of the peak measurement.
PEAK_SIZE = 2048


def interleaved_best(contenders: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time (s) of each contender over ``rounds`` rounds that run them in turn.

    Each contender runs once untimed first (warm-up). Returns ``{name: best seconds}``.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    for run in contenders.values():
        run()
    best = {name: float("inf") for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def matmul_peak(dtype: torch.dtype, size: int = PEAK_SIZE, repeats: int = 3) -> tuple[Callable[[], None], float]:
    """A contender that multiplies two ``size``² matrices of ``dtype`` ``repeats`` times, and the
    FLOPs it performs (``2·size³·repeats``): its rate is the machine's matmul peak.

    The product runs on the faster, in an interleaved best-of-3 trial here, of the two CPU kernels PyTorch
    offers: BLAS (``torch.matmul``) and oneDNN's linear kernel, which the encoders' fused layers
    call (:mod:`robustir.fused`). On the project's machines oneDNN reaches about 1.5x BLAS in
    float32: a peak measured with BLAS alone put the encoders above 100 % of it."""
    a = torch.randn(size, size, generator=torch.Generator().manual_seed(0)).to(dtype)
    b = torch.randn(size, size, generator=torch.Generator().manual_seed(1)).to(dtype)
    kernels = {"BLAS": lambda: torch.matmul(a, b)}
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        kernels["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    with torch.inference_mode():
        trial = interleaved_best(kernels, rounds=3)
    fastest = kernels[min(trial, key=trial.get)]

    def run() -> None:
        with torch.inference_mode():
            for _ in range(repeats):
                fastest()

    return run, 2.0 * size**3 * repeats


def layer_parameters(model: torch.nn.Module) -> int:
    """Parameters applied to every token outside the embedding tables (and BERT's pooler)."""
    return sum(
        p.numel() for name, p in model.named_parameters()
        if "embed" not in name and "pooler" not in name
    )


def forward_flops(model: torch.nn.Module, lengths: list[int]) -> float:
    """FLOPs of a transformer's forward over texts of ``lengths`` real tokens, padding excluded:
    ``2·(layer parameters)`` per token plus the attention products, ``4·n²·(heads·head dim)`` per
    layer for a text of ``n`` tokens (scores and weighted values, causal or not)."""
    config = model.config
    width = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = 4 * config.num_hidden_layers * config.num_attention_heads * width
    return float(sum(2 * layer_parameters(model) * n + attention * n * n for n in lengths))
