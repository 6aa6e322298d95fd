"""A content-addressed, self-verifying on-disk store for embeddings.

The key of an entry is a SHA-256 over everything that changes the output (model weights
location and revision, pooling, normalisation, layer, maximum length, dtype, prompt, the ids and
texts encoded, library versions and :data:`robustir.encode.ENCODER_OUTPUT_VERSION`), so a hit is
valid and a change of any input is a miss. Entries are a float32 ``.npy`` array plus a JSON
sidecar holding the ids, the key's inputs and the SHA-256 of the array file and of the ids; no
pickle. A read checks both checksums and that the entry holds the ids asked for: an entry that
fails (a file rewritten, truncated or emptied, ids shuffled) is named in a warning, moved aside
as ``<file>.corrupt-<n>`` and reported as a miss, so the caller recomputes it. Writes go to a
temporary name and are renamed into place, so a killed run never leaves a half-written file.

Used in the book chapter "Dense retrieval with encoder-only and decoder-only models" (why the
corpus is encoded once and reused by every analysis).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustir.provenance import file_sha256

__all__ = ["CacheProblem", "EmbeddingCache", "atomic_write", "atomic_write_text",
           "default_cache_dir", "file_mode", "fingerprint", "writable_folder"]

log = logging.getLogger(__name__)

CORRUPT_SUFFIX = ".corrupt-"
"""Infix of the names damaged entries are moved aside to (``<key>.npy.corrupt-1``)."""


def default_cache_dir() -> Path:
    """``$ROBUSTIR_CACHE`` if set, else ``~/.cache/robustir``."""
    return Path(os.environ.get("ROBUSTIR_CACHE", Path.home() / ".cache" / "robustir"))


def fingerprint(payload: object) -> str:
    """SHA-256 hex digest of a JSON-serialisable value (keys sorted, so order-free for dicts)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then restore at once
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permission bits a new file gets here: ``0o666`` less the umask (``0o644`` under the usual
    umask 022, ``0o600`` under 077), as for a file opened with ``open()``."""
    return 0o666 & ~_umask()


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through ``write(handle)`` into a temporary file renamed into place.

    The file gets the permissions an ordinary ``open()`` would give it (:func:`file_mode`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, file_mode())  # mkstemp creates 0600 whatever the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """``path``, created if missing, once a file could be written in it: checked before any
    work, so that a run never computes for minutes and then fails to save.

    Args:
        path: The folder.
        what: What it is, for the message (e.g. ``"the results store"``).

    Raises:
        OSError: The folder cannot be created or written; the message names it.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise type(error)(f"{what} {path} is not writable ({error.strerror or error}); "
                          "choose another folder or fix its permissions") from None
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def _ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256(json.dumps(ids, ensure_ascii=False).encode("utf-8")).hexdigest()


class _Damaged(Exception):
    """An entry fails a check; the message says which."""


class _Outdated(Exception):
    """An entry written before entries carried checksums: recomputed, not moved aside."""


@dataclass(frozen=True)
class CacheProblem:
    """A cache file that did not verify (:meth:`EmbeddingCache.verify`).

    Attributes:
        path: The file (for an entry, its ``.npy`` array).
        reason: What is wrong, e.g. ``"the array does not match its checksum"``.
    """

    path: Path
    reason: str


class EmbeddingCache:
    """Embeddings keyed by a fingerprint of their inputs, verified on every read.

    Args:
        root: Folder of the store; created on first write. Defaults to
            :func:`default_cache_dir` ``/ "embeddings"``.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir() / "embeddings"

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    @staticmethod
    def _read(array_path: Path, meta_path: Path,
              ids: list[str] | None) -> tuple[list[str], np.ndarray]:
        """The verified ``(ids, vectors)`` of one entry; raises :class:`_Damaged` or
        :class:`_Outdated`."""
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _Damaged(f"its sidecar {meta_path.name} is not valid JSON ({error})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("ids"), list):
            raise _Damaged(f"its sidecar {meta_path.name} lacks the list of ids")
        if "array_sha256" not in meta or "ids_sha256" not in meta:
            raise _Outdated
        if _ids_sha256(meta["ids"]) != meta["ids_sha256"]:
            raise _Damaged("its ids do not match their checksum")
        if ids is not None and meta["ids"] != list(ids):
            raise _Damaged(f"it holds other ids than the {len(ids)} asked for")
        if file_sha256(array_path) != meta["array_sha256"]:
            raise _Damaged("the array does not match its checksum")
        try:
            vectors = np.load(array_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:  # checksummed, so a bug of ours
            raise _Damaged(f"the array cannot be read ({error})") from None
        if vectors.ndim != 2 or vectors.shape[0] != len(meta["ids"]):
            raise _Damaged(f"the array's shape {vectors.shape} does not fit "
                           f"{len(meta['ids'])} ids")
        return meta["ids"], vectors

    @staticmethod
    def _move_aside(path: Path) -> Path | None:
        """Rename ``path`` to the first free ``<name>.corrupt-<n>``; None when it is gone."""
        for n in range(1, 1000):
            aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}")
            if aside.exists():
                continue
            try:
                os.replace(path, aside)
            except FileNotFoundError:  # another reader moved it first
                return None
            return aside
        raise OSError(f"{path}: 999 damaged copies are kept beside it already; delete them")

    def get(self, key: str, ids: list[str] | None = None) -> tuple[list[str], np.ndarray] | None:
        """The ``(ids, vectors)`` stored under ``key``, or ``None`` when absent or damaged.

        Args:
            key: The entry's fingerprint.
            ids: The ids the caller needs, in order; an entry holding others is damaged.

        A damaged entry (see the module docstring) is logged as a warning naming its file, moved
        aside and reported as absent; an entry from before checksums is reported as absent and
        replaced by the next :meth:`put`.
        """
        array_path, meta_path = self._paths(key)
        if not (array_path.exists() and meta_path.exists()):
            return None  # absent, or half of a killed write that the next put completes
        try:
            return self._read(array_path, meta_path, ids)
        except _Outdated:
            log.info("cache entry %s has no checksums (an older robustir wrote it); recomputing",
                     array_path)
            return None
        except _Damaged as damage:
            moved = [aside for path in (array_path, meta_path)
                     if (aside := self._move_aside(path)) is not None]
            log.warning("embedding cache entry %s is damaged: %s; moved aside (%s) and "
                        "recomputing", array_path, damage,
                        ", ".join(p.name for p in moved) or "by another reader")
            return None

    def put(self, key: str, ids: list[str], vectors: np.ndarray, inputs: dict) -> None:
        """Store ``vectors`` (float32, one row per id) with the inputs that produced them.

        Raises:
            ValueError: ``vectors`` is not 2-D with one row per id.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = list(ids)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or (ids and vectors.shape[1] == 0):
            raise ValueError(f"cannot cache embeddings of shape {vectors.shape} for {len(ids)} "
                             "ids: expected one non-empty row per id")
        buffer = io.BytesIO()
        np.save(buffer, vectors, allow_pickle=False)
        array = buffer.getvalue()
        array_path, meta_path = self._paths(key)
        atomic_write(array_path, lambda handle: handle.write(array))
        meta = {"ids": ids, "shape": list(vectors.shape), "inputs": inputs,
                "array_sha256": hashlib.sha256(array).hexdigest(), "ids_sha256": _ids_sha256(ids)}
        payload = json.dumps(meta, ensure_ascii=False).encode("utf-8")
        atomic_write(meta_path, lambda handle: handle.write(payload))

    def verify(self, *, repair: bool = False) -> list[CacheProblem]:
        """Check every entry of the cache; with ``repair``, delete what does not verify.

        Reports damaged entries, halves of entries without their other half (a killed write),
        damaged copies moved aside earlier (``*.corrupt-<n>``) and temporary files left by a
        killed writer. Entries from before checksums are reported as unverifiable.

        Returns:
            The problems found (with ``repair``: the files deleted), sorted by path.
        """
        problems: list[CacheProblem] = []
        if not self.root.is_dir():
            return problems
        for path in sorted(self.root.glob("*/*")):
            if CORRUPT_SUFFIX in path.name:
                problems.append(CacheProblem(path, "a damaged copy moved aside earlier"))
            elif path.name.startswith(".") and path.name.endswith(".tmp"):
                problems.append(CacheProblem(path, "a temporary file of a killed write"))
            elif path.suffix == ".npy" and not path.with_suffix(".json").exists():
                problems.append(CacheProblem(path, "an array without its sidecar (a killed write)"))
            elif path.suffix == ".json" and not path.with_suffix(".npy").exists():
                problems.append(CacheProblem(path, "a sidecar without its array"))
            elif path.suffix == ".npy":
                try:
                    self._read(path, path.with_suffix(".json"), None)
                except _Outdated:
                    problems.append(CacheProblem(path, "no checksums (an older robustir wrote "
                                                       "it); it cannot be verified"))
                except _Damaged as damage:
                    problems.append(CacheProblem(path, str(damage)))
        if repair:
            for problem in problems:
                problem.path.unlink(missing_ok=True)
                if problem.path.suffix == ".npy":
                    problem.path.with_suffix(".json").unlink(missing_ok=True)
        return problems
