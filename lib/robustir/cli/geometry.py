"""``robustir geometry``: the embedding geometry of one system's clean corpus (protocol §6).

Used in the book chapters "Embedding geometry" and "Reproducing" (its section "Rerun this page with another model").
"""

from __future__ import annotations

import argparse

from robustir.cli._inputs import check_output_folders, device, split_name
from robustir.cli._models import add_model_arguments, model_overrides, positive_int
from robustir.cli._table import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``geometry`` subcommand."""
    p = subparsers.add_parser(
        "geometry", help="IsoScore, average cosine, alignment, uniformity, spectral norm",
        description="Sample a system's clean corpus embeddings (length-stratified, protocol "
                    "§6.1), measure their geometry and write it to the results store "
                    "(experiment geometry).")
    add_model_arguments(p)
    p.add_argument("--dataset", required=True, help="dataset key under the data root, or a folder")
    p.add_argument("--split", type=split_name, default="test", help="split whose judged pairs give the alignment")
    p.add_argument("--seed", type=int, default=1999, help="sampling seed (the study: 1999, 5, 27, 2016, 2026)")
    p.add_argument("--sample-size", type=positive_int, default=100_000)
    p.add_argument("--shard-size", type=positive_int, default=50_000)
    p.add_argument("--n-pairs", type=positive_int, default=100_000)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--data-root", default=None, help="default: $ROBUSTIR_DATA or ./data")
    p.add_argument("--cache-dir", default=None, help="embedding cache (default: $ROBUSTIR_CACHE)")
    p.add_argument("--output", default="results", help="results store root")
    p.set_defaults(handler=geometry_command)


def geometry_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir geometry``: prints the values and where they were written."""
    from robustir.cache import EmbeddingCache
    from robustir.experiments.geometry import run_geometry
    from robustir.model_sources import resolve_model

    cache = EmbeddingCache(args.cache_dir)
    check_output_folders(output=args.output, cache_dir=str(cache.root))
    spec = resolve_model(args.model, where="--model", **model_overrides(args))
    run = run_geometry(
        spec, args.dataset, split=args.split, seed=args.seed, sample_size=args.sample_size,
        shard_size=args.shard_size, n_pairs=args.n_pairs, data_root=args.data_root,
        cache=cache, device=args.device, batch_size=args.batch_size,
        max_length=args.max_length, dtype=args.dtype,
    )
    entry = run.write(args.output)
    print(f"{spec.key} on {run.params['dataset']}: {run.summary['n_sampled_documents']} documents sampled")
    print_table([{"metric": m, "value": f"{v:.4f}"} for m, v in run.values.items()])
    print(f"written to {entry}")
    return 0
