"""``robustir run`` and ``robustir book``: the grid runner and the book build on the command line.

Used in the book: the preface (the two commands) and "Reproducing at paper scale".
"""

from __future__ import annotations

import argparse
import sys

from robustir.cli._inputs import positive_int
from robustir.data import DatasetUnavailableError
from robustir.runs import EXECUTORS, GridError, RunError, load_grid, run_grid


#: What to do after Ctrl-C: finished jobs are kept, the ones in flight run again.
RESUME_HINT = "rerun with --only-missing"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` and ``book`` subcommands to the ``robustir`` parser."""
    run = subparsers.add_parser(
        "run", help="run a grid of notebooks (configs/*.yaml) into the results store",
        description="Expand a YAML grid into notebook jobs and execute those not yet finished. "
                    "Killing and rerunning continues where it stopped.")
    run.add_argument("config", help="grid file, e.g. configs/default.yaml")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--only-missing", dest="force", action="store_false",
                      help="run only jobs without a finished entry (the default)")
    mode.add_argument("--force", dest="force", action="store_true",
                      help="rerun every job, replacing its entry")
    run.add_argument("--executor", choices=EXECUTORS, default="local",
                     help="local process pool (default) or a Dask distributed cluster")
    run.add_argument("--workers", type=positive_int, default=None,
                     help="parallel jobs (default: the grid's 'workers')")
    run.add_argument("--scheduler", default=None,
                     help="Dask scheduler address (with --executor dask); default: a local cluster")
    run.set_defaults(handler=run_command, force=False, on_interrupt=RESUME_HINT)

    book = subparsers.add_parser(
        "book", help="run the grid, execute the aggregate notebooks and build the book (HTML)",
        description="The main job: `robustir run` on the grid with only-missing, then the "
                    "aggregate notebooks, then a strict `jupyter-book build`.")
    book.add_argument("--config", default="configs/default.yaml",
                      help="grid file (default: configs/default.yaml)")
    book.add_argument("--executor", choices=EXECUTORS, default="local")
    book.add_argument("--workers", type=positive_int, default=None)
    book.add_argument("--scheduler", default=None)
    book.set_defaults(handler=book_command, on_interrupt=RESUME_HINT)


def run_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir run``; prints what ran and returns the exit status."""
    try:
        grid = load_grid(args.config)
        report = run_grid(grid, force=args.force, executor=args.executor,
                          workers=args.workers, scheduler=args.scheduler)
    except (GridError, ValueError, DatasetUnavailableError) as error:
        print(f"robustir run: {error}", file=sys.stderr)
        return 2
    except RunError as error:
        print(f"robustir run: {error}", file=sys.stderr)
        return 1
    print(f"{len(report.ran)} job(s) ran, {len(report.skipped)} already finished; "
          f"results in {grid.results}")
    return 0


def book_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir book``; prints where the HTML is and returns the exit status."""
    from robustir.book import BookBuildError, build_book

    try:
        html = build_book(args.config, executor=args.executor, workers=args.workers,
                          scheduler=args.scheduler)
    except (GridError, ValueError, DatasetUnavailableError) as error:
        print(f"robustir book: {error}", file=sys.stderr)
        return 2
    except (RunError, BookBuildError) as error:
        print(f"robustir book: {error}", file=sys.stderr)
        return 1
    print(f"book built: {html / 'index.html'}")
    return 0
