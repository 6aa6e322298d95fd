"""``robustir verify``: check a results store and an embedding cache, and optionally repair them.

Every entry of the store is checked (:func:`robustir.results.verify_entry`; entries the runner
finished also against the checksums in their ``job.json``), and so is every entry of the cache
(:meth:`robustir.cache.EmbeddingCache.verify`). Each problem is printed with its path; with
``--repair`` what is broken is deleted, so that the next ``robustir run --only-missing`` (or
the next encoding) computes it again.

Used in the book: "Reproducing at paper scale" (after a crash, a full disk or a copy).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    p = subparsers.add_parser(
        "verify", help="check a results store (and an embedding cache) for damaged files",
        description="Check every results-store entry (files present and agreeing, checksums "
                    "recorded by the runner) and, with --cache, every embedding-cache entry. "
                    "Exit status 1 when something is broken; --repair deletes it, so that a "
                    "rerun computes it again.")
    p.add_argument("store", nargs="?", default="results",
                   help="results store root (default: results)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="also check this embedding cache (e.g. $ROBUSTIR_CACHE/embeddings)")
    p.add_argument("--repair", action="store_true",
                   help="delete damaged entries and leftovers of killed writers")
    p.set_defaults(handler=verify_command)


def _store_problems(root: Path) -> list[tuple[Path, str]]:
    from robustir.results import ResultStore, verify_entry
    from robustir.runs import JOB_RECORD, job_record_problems

    store = ResultStore(root)
    problems = [(path, "a temporary folder of a killed writer") for path in store.leftovers()]
    for entry in store.all_entries():
        found = (job_record_problems(entry) if (entry / JOB_RECORD).exists()
                 else verify_entry(entry))
        problems.extend((entry, problem) for problem in found)
    return problems


def verify_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir verify``; returns 0 when everything verifies (or was repaired)."""
    from robustir.cache import EmbeddingCache
    from robustir.results import ResultStore

    root = Path(args.store)
    if not root.is_dir():
        raise FileNotFoundError(f"no results store at {root}; give the store's root folder")
    problems = _store_problems(root)
    n_entries = len(ResultStore(root).all_entries())
    for path, problem in problems:
        print(f"{path}: {problem}")
    if args.repair:
        for path in dict.fromkeys(path for path, _ in problems):
            shutil.rmtree(path, ignore_errors=True)
    cache_problems = []
    if args.cache is not None:
        if not Path(args.cache).is_dir():
            raise FileNotFoundError(f"no embedding cache at {args.cache}")
        cache_problems = EmbeddingCache(args.cache).verify(repair=args.repair)
        for problem in cache_problems:
            print(f"{problem.path}: {problem.reason}")
    broken = len({path for path, _ in problems}) + len(cache_problems)
    checked = f"{n_entries} results entries" + (" and the embedding cache" if args.cache else "")
    if not broken:
        print(f"{checked}: all verified")
        return 0
    if args.repair:
        print(f"{checked}: {broken} broken item(s) deleted; rerun to compute them again")
        return 0
    print(f"{checked}: {broken} broken item(s); `robustir verify --repair` deletes them")
    return 1
