"""The ``robustir`` command.

Subcommands, one module each: ``evaluate`` and ``evaluate-run`` (:mod:`.evaluate`), ``vary``
(:mod:`.vary`), ``poison`` (:mod:`.poison`), ``geometry`` (:mod:`.geometry`),
``train-retriever`` (:mod:`.train`), ``run`` and ``book`` (:mod:`.run`), ``verify``
(:mod:`.verify`), ``data fetch`` (:mod:`.data`), ``models`` and ``datasets`` (:mod:`.catalog`). Every ``make`` target is also a
``robustir`` command.
"""

from __future__ import annotations

import argparse
import logging
import sys

from robustir.cli import catalog, data, evaluate, geometry, poison, run, train, vary, verify

__all__ = ["main"]

#: The subcommand modules, each with ``register(subparsers)``.
COMMANDS = (evaluate, vary, poison, geometry, train, run, verify, data, catalog)


def _parser() -> argparse.ArgumentParser:
    from robustir import __version__

    parser = argparse.ArgumentParser(prog="robustir", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"robustir {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def _log_to_stderr(verbose: bool) -> None:
    """Log records at INFO (``--verbose``) or WARNING and above to stderr, from every library.

    The level is the handler's, not only the root logger's: libraries that set their own
    logger to DEBUG on import (bm25s) would otherwise print through it.
    """
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Bad input exits with status 2 and one line naming the problem; Ctrl-C with status 130 and
    one line saying how to continue; a bug in robustir still shows its traceback.
    """
    from robustir.data import UnknownDatasetError
    from robustir.models import UnknownModelError

    args = _parser().parse_args(argv)
    _log_to_stderr(args.verbose)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        hint = getattr(args, "on_interrupt", "rerun the command (nothing partial was written)")
        print(f"robustir {args.command}: interrupted; {hint}", file=sys.stderr)
        return 130
    except (ValueError, OSError, UnknownModelError, UnknownDatasetError) as error:
        print(f"robustir {args.command}: error: {error}", file=sys.stderr)
        return 2
