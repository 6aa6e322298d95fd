"""``make book``: run the grid, execute the aggregate notebooks, build the Jupyter Book.

The flow (architecture.md): :func:`robustir.runs.run_grid` with only-missing on the grid (the
embedded default, ``configs/default.yaml``), then :func:`robustir.runs.run_aggregates`, then a
strict ``jupyter-book build . -W -n --keep-going``. The executed notebooks under ``book/runs/``
are rendered as they are (``execute.exclude_patterns`` in ``_config.yml``); only the teaching
chapters' tiny examples execute during the build, through Jupyter Book's cache.

Two details the build needs:

* The table of contents names every run and aggregate notebook of the full study; a grid that
  does not produce one (a smaller grid, or an analysis not yet run) would break the strict build
  with a missing document. :func:`available_toc` writes a copy without those entries and logs
  each one left out.
* jupyter-cache does not notice library changes (environment.md §4.4, pitfall 2), so the build
  clears the teaching chapters' execution cache whenever the library's source changed.

The teaching chapters read a few queries of the shared collections with
:func:`chapter_dataset`, which finds them wherever the book is built.

Used in the book: the preface ("Rerunning this book"), "Reproducing at paper scale" and the
teaching chapters.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from robustir.data import Dataset, DatasetUnavailableError, data_root, load_dataset
from robustir.runs import load_grid, run_aggregates, run_grid

logger = logging.getLogger(__name__)

NOTEBOOK_SUFFIXES = (".md", ".ipynb", ".py", ".rst")
"""Source suffixes a table-of-contents entry may resolve to."""

STRICT_FLAGS = ("-W", "-n", "--keep-going")
"""The strict build: warnings are errors, nitpicky references, report all warnings at once."""


# The checkout holding this package when it is installed from source (lib/robustir/book.py);
# private so that the API page does not print a machine path.
_CHECKOUT = Path(__file__).resolve().parents[2]


def chapter_dataset(name: str, split: str = "test") -> Dataset:
    """One split of a dataset for a teaching chapter's examples.

    A chapter executes in its own folder, so the data root is looked up the way ``make book``
    does: ``$ROBUSTIR_DATA`` (else ``./data``), then ``data/`` in the checkout, then the shared
    collections beside the checkout (``../shared/datasets``).

    Args:
        name: Dataset key, e.g. ``"scifact"``.
        split: Qrels split.

    Raises:
        DatasetUnavailableError: The dataset is in none of these folders; the message lists
            them and the command that downloads it.
    """
    roots = [data_root(), _CHECKOUT / "data", _CHECKOUT.parent / "shared" / "datasets"]
    for root in roots:
        if (root / name).is_dir():
            return load_dataset(name, split, root)
    searched = ", ".join(str(root) for root in roots)
    raise DatasetUnavailableError(
        f"dataset {name!r} is not in {searched}; download it with `robustir data fetch {name}` "
        "or point ROBUSTIR_DATA at a folder that holds it"
    )


class BookBuildError(RuntimeError):
    """``jupyter-book build`` failed; the message carries the end of its output."""


def _document_exists(root: Path, name: str) -> bool:
    path = root / name
    return path.is_file() or any(path.with_name(path.name + s).is_file() for s in NOTEBOOK_SUFFIXES)


def _prune(entries: list[dict[str, Any]], root: Path, missing: list[str]) -> list[dict[str, Any]]:
    kept = []
    for entry in entries:
        if "file" in entry and not _document_exists(root, entry["file"]):
            missing.append(entry["file"])
            continue
        entry = dict(entry)
        for key in ("sections", "chapters"):
            if key in entry:
                entry[key] = _prune(entry[key], root, missing)
                if not entry[key]:
                    del entry[key]
        kept.append(entry)
    return kept


def available_toc(root: Path, output: Path) -> list[str]:
    """Write ``root/_toc.yml`` to ``output`` without entries whose document does not exist.

    Args:
        root: The book's source directory (the repository root).
        output: Where to write the pruned table of contents.

    Returns:
        The ``file:`` entries left out (each is also logged as a warning). A part left with no
        chapters is dropped.
    """
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    missing: list[str] = []
    if "parts" in toc:
        parts = []
        for part in toc["parts"]:
            part = dict(part)
            part["chapters"] = _prune(part.get("chapters", []), root, missing)
            if part["chapters"]:
                parts.append(part)
        toc["parts"] = parts
    if "chapters" in toc:
        toc["chapters"] = _prune(toc["chapters"], root, missing)
    for name in missing:
        logger.warning("leaving %s out of the book: the grid did not produce it", name)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")
    return missing


def library_fingerprint() -> str:
    """SHA-256 (16 hex digits) over the source files of the installed ``robustir`` package."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _clear_stale_execution_cache(build_dir: Path) -> None:
    stamp = build_dir / ".robustir-library"
    fingerprint = library_fingerprint()
    if stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return
    cache = build_dir / ".jupyter_cache"
    if cache.exists():
        logger.info("library changed: clearing the execution cache %s", cache)
        shutil.rmtree(cache)
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")


def jupyter_book_build(root: Path, *, toc: Path | None = None, strict: bool = True) -> Path:
    """Run ``jupyter-book build`` on ``root`` and return the HTML directory.

    Args:
        root: The book's source directory (holding ``_config.yml``).
        toc: Table of contents to use (default ``root/_toc.yml``).
        strict: Add ``-W -n --keep-going``.

    Raises:
        BookBuildError: The build exited non-zero; the message holds the last 60 lines.
    """
    _clear_stale_execution_cache(root / "_build")
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root)]
    if toc is not None:
        command += ["--toc", str(toc)]
    if strict:
        command += list(STRICT_FLAGS)
    logger.info("building the book: %s", " ".join(command))
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False,
                            env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
        raise BookBuildError(f"jupyter-book build failed (exit {result.returncode}):\n{tail}")
    return root / "_build" / "html"


def build_book(config: str | os.PathLike[str] = "configs/default.yaml", *,
               root: str | os.PathLike[str] | None = None, executor: str = "local",
               workers: int | None = None, scheduler: str | None = None) -> Path:
    """The main job: run what the grid lacks, refresh the aggregates, build the book.

    Args:
        config: The grid (default: the embedded default).
        root: The repository root (default: the working directory).
        executor, workers, scheduler: As for :func:`robustir.runs.run_grid`.

    Returns:
        The HTML directory, ``<root>/_build/html``.

    Raises:
        robustir.grid_checks.GridError: The grid is malformed.
        robustir.runs.RunError: A job failed (the book is not built on partial results).
        BookBuildError: The strict build failed.
    """
    root = Path(root).resolve() if root is not None else Path.cwd()
    grid = load_grid(config, base=root)
    report = run_grid(grid, executor=executor, workers=workers, scheduler=scheduler)
    logger.info("grid: %d job(s) ran, %d already finished", len(report.ran), len(report.skipped))
    run_aggregates(grid)
    toc = root / "_build" / "_toc.yml"
    available_toc(root, toc)
    return jupyter_book_build(root, toc=toc)
