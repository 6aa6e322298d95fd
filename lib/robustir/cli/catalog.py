"""``robustir models`` and ``robustir datasets``: the model catalog and the dataset registry.

Used in the book chapters "Dense retrieval with encoder-only and decoder-only models" (the
catalog table) and "Reproducing at paper scale".
"""

from __future__ import annotations

import argparse

from robustir.cli._table import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` and ``datasets`` subcommands."""
    p = subparsers.add_parser("models", help="list the model catalog")
    p.set_defaults(handler=models_command)
    p = subparsers.add_parser("datasets", help="list the dataset registry")
    p.add_argument("--data-root", default=None)
    p.set_defaults(handler=datasets_command)


def models_command(args: argparse.Namespace) -> int:
    """Print one row per catalog entry."""
    from robustir.models import model_table

    print_table(model_table())
    return 0


def datasets_command(args: argparse.Namespace) -> int:
    """Print one row per registry entry, with whether it is under the data root."""
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
    print_table(rows)
    return 0
