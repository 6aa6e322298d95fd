"""Benchmark: the time `make book` takes, cold and warm.

Cold: a fresh copy of the book's sources (``_config.yml``, ``_toc.yml``, ``book/``,
``notebooks/``, ``configs/``) with an empty results store, an empty embedding cache and no
``_build/``, as on a fresh machine after ``make setup``. Warm: the same command again with nothing
changed (every job is finished, the aggregates are up to date, the build is incremental).
Baselines are the goals of the default grid: 30 minutes cold and 10 seconds warm on 2 cores; the
benchmark prints each time as a ratio to its goal (below 1.0 meets the goal) and a row for the
reproduction log (``book/reproduction_log.md``).

Usage::

    python benchmarks/book_build.py                       # the embedded default
    python benchmarks/book_build.py --config configs/default.yaml --keep /tmp/book-bench
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLD_GOAL_S = 30 * 60
WARM_GOAL_S = 10
SOURCES = ("_config.yml", "_toc.yml", "jupytext.toml", "book", "notebooks", "configs")


def fresh_copy(destination: Path) -> Path:
    """Copy the book's sources to ``destination`` without results, runs or build outputs."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("runs"))
        else:
            shutil.copy(source, destination / name)
    (destination / "_vendor").symlink_to(REPO / "_vendor")
    # Grids name the study's published tables as ../shared/reference, beside the checkout.
    shared = destination.parent / "shared"
    if (REPO.parent / "shared").is_dir() and not shared.exists():
        shared.symlink_to(REPO.parent / "shared")
    return destination


def timed_build(root: Path, config: str) -> float:
    """Seconds taken by ``robustir book --config CONFIG`` in ``root``."""
    from robustir.book import build_book

    started = time.perf_counter()
    build_book(root / config, root=root)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    workspace = args.keep or Path(tempfile.mkdtemp(prefix="robustir-book-bench-"))
    workspace.mkdir(parents=True, exist_ok=True)
    root = fresh_copy(workspace / "book-root")
    os.environ["ROBUSTIR_CACHE"] = str(workspace / "cache")  # a cold embedding cache
    try:
        cold = timed_build(root, args.config)
        warm = timed_build(root, args.config)
    finally:
        if args.keep is None:
            shutil.rmtree(workspace, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True, check=False).stdout.strip() or "unknown"
    print(f"grid: {args.config}  cores: {os.cpu_count()}")
    print(f"cold build   {cold:8.1f} s   goal {COLD_GOAL_S} s   ratio {cold / COLD_GOAL_S:.3f}")
    print(f"warm rebuild {warm:8.1f} s   goal {WARM_GOAL_S} s   ratio {warm / WARM_GOAL_S:.3f}")
    print(f"| {datetime.date.today()} | {commit} | {args.config} | {os.cpu_count()} CPU cores | "
          f"{cold / 60:.1f} min | {warm:.0f} s | |")


if __name__ == "__main__":
    main()
