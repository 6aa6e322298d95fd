"""``robustir data fetch``: download the datasets a grid (or a list of names) needs.

``make book`` runs ``robustir data fetch --grid configs/default.yaml`` before the build, so a
machine with internet gets SciFact (BEIR's checksum-verified zip) and Cranfield (the original
SMART files, converted and verified) by itself, and an offline machine stops with one message
saying what to fetch and where to put it. Datasets already complete are left alone, without any
network access.

Used in the book: the preface ("Rerunning this book") and the README's *Two commands*.
"""

from __future__ import annotations

import argparse
import sys

from robustir.data import (
    DATA_MIRROR_ENV,
    DATASETS,
    DatasetNeed,
    DatasetUnavailableError,
    UnknownDatasetError,
    data_root,
    fetch_datasets,
    get_dataset_entry,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` subcommand (with ``data fetch``) to the ``robustir`` parser."""
    data = subparsers.add_parser("data", help="fetch the datasets a grid needs",
                                 description="Manage the datasets under the data root.")
    actions = data.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser(
        "fetch", help="download missing datasets (resumable, checksum-verified)",
        description="Download every named dataset, or every dataset the grid's notebooks read, "
                    "whose folder lacks files; complete folders are left alone. Cranfield is "
                    "converted from its original SMART files and checked against the project's "
                    "checksums.")
    fetch.add_argument("names", nargs="*", metavar="NAME",
                       help="registry keys (see `robustir datasets`), e.g. scifact cranfield")
    fetch.add_argument("--grid", default=None, metavar="CONFIG",
                       help="fetch what this grid's jobs read (e.g. configs/default.yaml), into "
                            "the folders its notebooks read ($ROBUSTIR_DATA or ./data)")
    fetch.add_argument("--data-root", default=None,
                       help="where named datasets go (default: $ROBUSTIR_DATA or ./data)")
    fetch.add_argument("--mirror", default=None, metavar="URL",
                       help="base URL serving the registry's archives under their file names "
                            f"(default: ${DATA_MIRROR_ENV}), e.g. http://host/datasets")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(handler=fetch_command)


def _needs(args: argparse.Namespace) -> list[DatasetNeed]:
    if args.grid is not None:
        if args.names or args.data_root is not None:
            raise ValueError("give dataset names (with --data-root) or --grid, not both; a "
                             "grid's datasets go where its notebooks read them")
        from robustir.preflight import grid_dataset_needs
        from robustir.runs import load_grid

        return grid_dataset_needs(load_grid(args.grid))
    if not args.names:
        raise ValueError(f"name the datasets to fetch ({', '.join(DATASETS)}) or give --grid")
    root = data_root(args.data_root)
    return [DatasetNeed(root / name, get_dataset_entry(name).splits) for name in args.names]


def fetch_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir data fetch``; returns 0, or 2 with one message when data is missing."""
    try:
        needs = _needs(args)
        fetched = fetch_datasets(needs, progress=not args.quiet, mirror=args.mirror)
    except (ValueError, UnknownDatasetError, DatasetUnavailableError) as error:
        # ValueError covers a bad grid (GridError) and a checksum mismatch
        print(f"robustir data fetch: {error}", file=sys.stderr)
        return 2
    for folder in fetched:
        print(f"fetched {folder.name} into {folder}")
    print(f"{len(needs)} dataset(s) complete, {len(fetched)} fetched")
    return 0
