"""The ``robustir`` command.

Subcommands: ``evaluate`` (one system on one split, written to the results store),
``evaluate-run`` (trec_eval-style scoring of a TREC run file), ``models`` and ``datasets``
(the catalogs), plus those registered by the analysis modules (``vary``, ``poison``, ``run``,
``book``). Every ``make`` target is also a ``robustir`` command.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys

__all__ = ["main"]

#: Modules that add subcommands through ``register(subparsers)``.
_SUBCOMMAND_MODULES = ("cli_vary", "cli_poison", "cli_run", "cli_data")


def _print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    if not rows:
        return
    columns = columns or list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(width[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(width[c]) for c in columns))


def _cmd_models(args) -> int:
    from robustir.models import model_table

    _print_table(model_table())
    return 0


def _cmd_datasets(args) -> int:
    from robustir.data import DATASETS, data_root

    root = data_root(args.data_root)
    rows = [
        {
            "key": e.key,
            "benchmark": e.benchmark,
            "splits": ",".join(e.splits),
            "queries": e.queries_scored,
            "corpus": e.corpus_size,
            "task type": e.task_type,
            "local": "yes" if (root / e.key / "corpus.jsonl").exists() else "no",
        }
        for e in DATASETS.values()
    ]
    print(f"data root: {root}")
    _print_table(rows)
    return 0


def _cmd_evaluate(args) -> int:
    from robustir.cache import EmbeddingCache
    from robustir.evaluation import evaluate

    variant = args.variant or ("clean" if args.queries is None else os.path.splitext(
        os.path.basename(args.queries))[0])
    result = evaluate(
        args.model,
        args.dataset,
        split=args.split,
        queries=args.queries,
        variant=variant,
        top_k=args.top_k,
        batch_size=args.batch_size,
        max_length=args.max_length,
        device=args.device,
        data_root=args.data_root,
        cache=None if args.no_cache else EmbeddingCache(args.cache_dir),
        progress=not args.quiet,
    )
    entry = result.write(args.output, variant=variant)
    cache = result.summary["cache"]
    print(f"{args.model} on {args.dataset}/{args.split} ({result.summary['n_queries']} queries)")
    _print_table([{"measure": m, "value": f"{v:.4f}"} for m, v in result.summary["metrics"].items()])
    if cache is not None:
        print(f"texts encoded: {cache['texts_encoded']} (cache hits {cache['hits']}, misses {cache['misses']})")
    print(f"written to {entry}")
    return 0


def _cmd_evaluate_run(args) -> int:
    from robustir.metrics import mean_metrics, per_query_metrics
    from robustir.trec import read_qrels, read_run

    per_query = per_query_metrics(read_qrels(args.qrels), read_run(args.run), args.measures)
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


def _parser() -> argparse.ArgumentParser:
    from robustir import __version__
    from robustir.metrics import MEASURES

    parser = argparse.ArgumentParser(prog="robustir", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"robustir {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("evaluate", help="evaluate one system on one dataset split")
    p.add_argument("--model", required=True, help="catalog key (see `robustir models`)")
    p.add_argument("--dataset", required=True, help="dataset key under the data root, or a folder")
    p.add_argument("--split", default="test")
    p.add_argument("--data-root", default=None, help="default: $ROBUSTIR_DATA or ./data")
    p.add_argument("--output", default="results", help="results store root (default: results)")
    p.add_argument("--queries", default=None, help="JSONL of variant queries to evaluate instead")
    p.add_argument("--variant", default=None, help="name of the query set (default: clean or the file stem)")
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--cache-dir", default=None, help="embedding cache (default: $ROBUSTIR_CACHE/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="encode without the embedding cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("evaluate-run", help="score a TREC run file with trec_eval semantics")
    p.add_argument("--qrels", required=True, help="qrels (TREC 4 columns or BEIR TSV)")
    p.add_argument("--run", required=True, help="run file: qid Q0 docid rank score tag")
    p.add_argument("--measures", nargs="+", default=list(MEASURES))
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_cmd_evaluate_run)

    p = sub.add_parser("models", help="list the model catalog")
    p.set_defaults(handler=_cmd_models)
    p = sub.add_parser("datasets", help="list the dataset registry")
    p.add_argument("--data-root", default=None)
    p.set_defaults(handler=_cmd_datasets)

    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(f"robustir.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, with a clear message)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build
    try:
        return args.handler(args)
    except (ValueError, KeyError, FileNotFoundError, OSError) as error:
        print(f"robustir {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
