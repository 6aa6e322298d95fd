"""A content-addressed on-disk store for embeddings.

The key of an entry is a SHA-256 over everything that changes the output (model weights
location and revision, pooling, normalisation, layer, maximum length, dtype, prompt, the ids and
texts encoded, library versions), so a hit is always valid and a change of any input is a miss.
Entries are a float32 ``.npy`` array plus a JSON sidecar holding the ids and the key's inputs;
no pickle. Writes go to a temporary name and are renamed into place, so a killed run never
leaves a half-written entry.

Used in the book chapter "Dense retrieval with encoder-only and decoder-only models" (why the
corpus is encoded once and reused by every analysis).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache", "atomic_write", "atomic_write_text", "default_cache_dir", "fingerprint"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$ROBUSTIR_CACHE`` if set, else ``~/.cache/robustir``."""
    return Path(os.environ.get("ROBUSTIR_CACHE", Path.home() / ".cache" / "robustir"))


def fingerprint(payload: object) -> str:
    """SHA-256 hex digest of a JSON-serialisable value (keys sorted, so order-free for dicts)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through ``write(handle)`` into a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


class EmbeddingCache:
    """Embeddings keyed by a fingerprint of their inputs.

    Args:
        root: Folder of the store; created on first write. Defaults to
            :func:`default_cache_dir` ``/ "embeddings"``.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir() / "embeddings"

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def get(self, key: str) -> tuple[list[str], np.ndarray] | None:
        """The ``(ids, vectors)`` stored under ``key``, or ``None`` when absent."""
        array_path, meta_path = self._paths(key)
        if not (array_path.exists() and meta_path.exists()):
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        vectors = np.load(array_path, allow_pickle=False)
        if vectors.shape[0] != len(meta["ids"]):
            log.warning("cache entry %s is inconsistent; ignoring it", key)
            return None
        return meta["ids"], vectors

    def put(self, key: str, ids: list[str], vectors: np.ndarray, inputs: dict) -> None:
        """Store ``vectors`` (float32, one row per id) with the inputs that produced them."""
        array_path, meta_path = self._paths(key)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        atomic_write(array_path, lambda handle: np.save(handle, vectors, allow_pickle=False))
        meta = {"ids": list(ids), "shape": list(vectors.shape), "inputs": inputs}
        payload = json.dumps(meta, ensure_ascii=False).encode("utf-8")
        atomic_write(meta_path, lambda handle: handle.write(payload))
