"""What every result records about the software that produced it.

Used by every results-store entry (``params.json``) and by the variant and adversarial-passage
files; described in the book chapter "Reproducing at paper scale".
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["file_sha256", "files_sha256", "library_versions"]

_LIBRARIES = (
    "robustir", "torch", "transformers", "tokenizers", "faiss-cpu", "pytrec-eval-terrier",
    "bm25s", "numpy", "scipy", "pandas", "statsmodels", "nltk",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that can change a result (absent ones omitted)."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    # read once per process: the package metadata lookups cost about 70 ms, once per evaluation
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(folder: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> str:
    """Hex SHA-256 over the relative paths and bytes of some files of ``folder``: the identity
    by content of a model or dataset folder, whatever the folder is called.

    Args:
        folder: The folder the paths are relative to.
        paths: The files that define it; hashed in sorted order, so the order given is free.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(Path(folder, p) for p in paths):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\1")
    return digest.hexdigest()
