"""Embeddings with the ids they belong to: the interchange format between encoding and search.

Kept free of torch and transformers, so that retrieval, geometry and user-supplied retrievers
can exchange vectors without importing a deep-learning framework.

Used in the book chapter "Dense retrieval with encoder-only and decoder-only models".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Embeddings"]


@dataclass(frozen=True)
class Embeddings:
    """Vectors with the ids they belong to.

    Attributes:
        ids: One id per row.
        vectors: float32 array of shape ``(len(ids), dimension)``.
    """

    ids: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)
