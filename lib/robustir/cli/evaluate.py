"""``robustir evaluate`` (one system on one split, into the results store) and
``robustir evaluate-run`` (trec_eval-style scoring of a TREC run file).

Used in the book chapters "Evaluation: nDCG and trec_eval conventions" and "Rerun it on your
model".
"""

from __future__ import annotations

import argparse
import json
import os

from robustir.cli._inputs import check_output_folders, device, split_name
from robustir.cli._models import add_model_arguments, model_overrides, positive_int
from robustir.cli._table import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``evaluate-run`` subcommands."""
    from robustir.metrics import MEASURES

    p = subparsers.add_parser("evaluate", help="evaluate one system on one dataset split")
    add_model_arguments(p)
    p.add_argument("--dataset", required=True, help="dataset key under the data root, or a folder")
    p.add_argument("--split", type=split_name, default="test")
    p.add_argument("--data-root", default=None, help="default: $ROBUSTIR_DATA or ./data")
    p.add_argument("--output", default="results", help="results store root (default: results)")
    p.add_argument("--queries", default=None, help="JSONL of variant queries to evaluate instead")
    p.add_argument("--variant", default=None, help="name of the query set (default: clean or the file stem)")
    p.add_argument("--top-k", type=positive_int, default=1000)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--cache-dir", default=None, help="embedding cache (default: $ROBUSTIR_CACHE/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="encode without the embedding cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=evaluate_command)

    p = subparsers.add_parser("evaluate-run", help="score a TREC run file with trec_eval semantics")
    p.add_argument("--qrels", required=True, help="qrels (TREC 4 columns or BEIR TSV)")
    p.add_argument("--run", required=True, help="run file: qid Q0 docid rank score tag")
    p.add_argument("--measures", nargs="+", default=list(MEASURES))
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=evaluate_run_command)


def evaluate_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir evaluate``: prints the means and where they were written."""
    from robustir.cache import EmbeddingCache
    from robustir.experiments.evaluation import evaluate
    from robustir.model_sources import resolve_model

    cache = None if args.no_cache else EmbeddingCache(args.cache_dir)
    check_output_folders(output=args.output, cache_dir=cache and str(cache.root))
    spec = resolve_model(args.model, where="--model", **model_overrides(args))
    variant = args.variant or ("clean" if args.queries is None else os.path.splitext(
        os.path.basename(args.queries))[0])
    result = evaluate(
        spec, args.dataset, split=args.split, queries=args.queries, variant=variant,
        top_k=args.top_k, batch_size=args.batch_size, max_length=args.max_length,
        dtype=args.dtype, device=args.device, data_root=args.data_root,
        cache=cache, progress=not args.quiet,
    )
    entry = result.write(args.output, variant=variant)
    counts = result.summary["cache"]
    print(f"{spec.key} on {result.params['dataset']}/{args.split} ({result.summary['n_queries']} queries)")
    print_table([{"measure": m, "value": f"{v:.4f}"} for m, v in result.summary["metrics"].items()])
    if counts is not None:
        print(f"texts encoded: {counts['texts_encoded']} (cache hits {counts['hits']}, misses {counts['misses']})")
    print(f"written to {entry}")
    return 0


def evaluate_run_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir evaluate-run``: per-query and mean values, trec_eval style."""
    from robustir.metrics import mean_metrics, per_query_metrics
    from robustir.trec import read_qrels, read_run

    qrels, run = read_qrels(args.qrels), read_run(args.run)
    try:
        per_query = per_query_metrics(qrels, run, args.measures)
    except ValueError as error:
        raise ValueError(f"{args.run} scored against {args.qrels}: {error}") from None
    means = mean_metrics(per_query)
    if args.json:
        print(json.dumps({"per_query": per_query.to_dict(orient="index"), "mean": means}, indent=2))
        return 0
    for qid, row in per_query.iterrows():
        for measure, value in row.items():
            print(f"{measure:<12}\t{qid}\t{value:.4f}")
    for measure, value in means.items():
        print(f"{measure:<12}\tall\t{value:.4f}")
    return 0
