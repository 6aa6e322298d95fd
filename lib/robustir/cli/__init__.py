"""The ``robustir`` command.

Subcommands, one module each: ``evaluate`` and ``evaluate-run`` (:mod:`.evaluate`), ``vary``
(:mod:`.vary`), ``poison`` (:mod:`.poison`), ``geometry`` (:mod:`.geometry`),
``train-retriever`` (:mod:`.train`), ``run`` and ``book`` (:mod:`.run`), ``data fetch``
(:mod:`.data`), ``models`` and ``datasets`` (:mod:`.catalog`). Every ``make`` target is also a
``robustir`` command.
"""

from __future__ import annotations

import argparse
import logging
import sys

from robustir.cli import catalog, data, evaluate, geometry, poison, run, train, vary

__all__ = ["main"]

#: The subcommand modules, each with ``register(subparsers)``.
COMMANDS = (evaluate, vary, poison, geometry, train, run, data, catalog)


def _parser() -> argparse.ArgumentParser:
    from robustir import __version__

    parser = argparse.ArgumentParser(prog="robustir", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"robustir {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
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
