"""One retriever protocol for every experiment, and a registry of retriever kinds.

Every analysis asks a :class:`Retriever` one thing: *search this dataset's corpus with these
queries* (:meth:`Retriever.search`, a BEIR run ``{qid: {doc_id: score}}``). Retrievers that
search by exact inner product over embeddings (:class:`EmbeddingRetriever`) also hand out the
embeddings, which the geometry analysis reads; those built on a transformer
(:class:`TransformerRetriever`) also expose their :class:`~robustir.encode.Encoder`, whose
gradients the corpus-poisoning attack needs.

Kinds are registered by name (:func:`register_retriever`); a catalog entry's
:attr:`~robustir.models.ModelSpec.backend` names its kind, so adding a kind is one new class.
:func:`make_retriever` builds the right one from a catalog key, a model folder, a spec file,
a mapping (:func:`robustir.model_sources.resolve_model`) or a user object that follows the
BEIR/MTEB conventions:

* ``encode_queries(list[str], **kwargs)`` and ``encode_corpus(list[dict], **kwargs)`` returning
  arrays (a dense model: robustir searches exactly over its vectors), or
* ``search(corpus, queries, top_k, **kwargs)`` returning a run (any retriever at all).

Used in the book chapters "Dense retrieval with encoder-only and decoder-only models" and
"Reproducing" (its section "Rerun this page with another model").
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from robustir import retrieve
from robustir.data import Dataset, document_text
from robustir.embeddings import Embeddings
from robustir.models import ModelSpec

__all__ = [
    "RETRIEVER_KINDS",
    "BM25Retriever",
    "EmbeddingRetriever",
    "EncodeFunctionsRetriever",
    "Retriever",
    "SearchFunctionRetriever",
    "StaticRetriever",
    "TransformerRetriever",
    "make_retriever",
    "register_retriever",
]

log = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]

#: Retriever classes by kind (the :attr:`~robustir.models.ModelSpec.backend` of a catalog entry).
RETRIEVER_KINDS: dict[str, type[Retriever]] = {}


def register_retriever(kind: str) -> Callable[[type[Retriever]], type[Retriever]]:
    """Class decorator: make ``kind`` (a spec's ``backend``) build this retriever class.

    The class is built as ``cls(spec, **settings)`` with the settings of :func:`make_retriever`
    (``device``, ``batch_size``, ``max_length``, ``dtype``, ``cache``, ``progress``); it may
    ignore the ones it has no use for.

    Raises:
        ValueError: ``kind`` is registered already.
    """
    def decorate(cls: type[Retriever]) -> type[Retriever]:
        if kind in RETRIEVER_KINDS and RETRIEVER_KINDS[kind] is not cls:
            raise ValueError(f"retriever kind {kind!r} is registered already "
                             f"({RETRIEVER_KINDS[kind].__name__})")
        RETRIEVER_KINDS[kind] = cls
        cls.kind = kind
        return cls

    return decorate


class Retriever(abc.ABC):
    """Searches a dataset's corpus with queries; what every experiment calls.

    Attributes:
        spec: The system (its key names the results; user objects get a spec of their own).
        kind: The registry name.
    """

    kind: ClassVar[str] = ""
    spec: ModelSpec

    @abc.abstractmethod
    def search(self, dataset: Dataset, queries: Mapping[str, str], *, top_k: int = 1000) -> Run:
        """The top ``top_k`` documents of ``dataset.corpus`` per query, best first."""

    def record(self, dataset: Dataset) -> dict[str, Any]:
        """The settings recorded with a result on ``dataset`` (prompts, lengths, parameters)."""
        return {"kind": self.kind}

    def counters(self) -> dict[str, int] | None:
        """Cache hits, misses and texts encoded so far (``None`` when the kind keeps none)."""
        return None


class EmbeddingRetriever(Retriever):
    """A retriever that searches exactly over embeddings (protocol §2.4).

    Subclasses implement :meth:`encode_corpus` and :meth:`encode_queries`; search is exact
    inner product (cosine when :attr:`score` is ``cos``) over the whole corpus.
    """

    @property
    def score(self) -> str:
        """``cos`` or ``dot``."""
        return self.spec.score

    @abc.abstractmethod
    def encode_corpus(self, dataset: Dataset) -> Embeddings:
        """Embeddings of every document of ``dataset.corpus``."""

    @abc.abstractmethod
    def encode_queries(self, queries: Mapping[str, str], dataset: Dataset) -> Embeddings:
        """Embeddings of ``{qid: text}`` for ``dataset`` (its prompts apply)."""

    def search(self, dataset: Dataset, queries: Mapping[str, str], *, top_k: int = 1000) -> Run:
        corpus = self.encode_corpus(dataset)
        return retrieve.dense_search(self.encode_queries(queries, dataset), corpus,
                                     top_k=top_k, score=self.score)


@register_retriever("transformers")
class TransformerRetriever(EmbeddingRetriever):
    """A Hugging Face model read through :class:`~robustir.encode.Encoder` (the catalog's dense
    systems and local model folders); embeddings go through the embedding cache."""

    def __init__(self, spec: ModelSpec, *, encoder=None, **settings: Any):
        from robustir.encode import Encoder

        self.spec = spec
        self.encoder = encoder if encoder is not None else Encoder(spec, **settings)

    def encode_corpus(self, dataset: Dataset) -> Embeddings:
        return self.encoder.encode_corpus(dataset.corpus, dataset.name)

    def encode_queries(self, queries: Mapping[str, str], dataset: Dataset) -> Embeddings:
        return self.encoder.encode_queries(dict(queries), dataset.name)

    def record(self, dataset: Dataset) -> dict[str, Any]:
        encoder = self.encoder
        return {
            "device": str(encoder.device), "dtype": encoder.dtype,
            "batch_size": encoder.batch_size, "max_length": encoder.max_length,
            "query_prompt": self.spec.query_prompt(dataset.name),
            "document_prompt": self.spec.document_prompt(dataset.name),
        }

    def counters(self) -> dict[str, int]:
        stats = self.encoder.stats
        return {"hits": stats.cache_hits, "misses": stats.cache_misses,
                "texts_encoded": stats.texts_encoded}


@register_retriever("static")
class StaticRetriever(EmbeddingRetriever):
    """WordLlama's static token codebook, averaged over tokens (no attention, no cache: it
    embeds a corpus in seconds)."""

    def __init__(self, spec: ModelSpec, **settings: Any):
        self.spec = spec

    def _embed(self, texts: list[str]) -> np.ndarray:
        from robustir.encode import load_wordllama

        vectors = np.asarray(load_wordllama().embed(texts, norm=False), dtype=np.float32)
        if self.spec.normalize:
            vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors

    def encode_corpus(self, dataset: Dataset) -> Embeddings:
        ids = list(dataset.corpus)
        return Embeddings(ids, self._embed([document_text(dataset.corpus[i]) for i in ids]))

    def encode_queries(self, queries: Mapping[str, str], dataset: Dataset) -> Embeddings:
        from robustir.data import pad_empty

        ids = list(queries)
        return Embeddings(ids, self._embed([pad_empty(queries[i]) for i in ids]))

    def record(self, dataset: Dataset) -> dict[str, Any]:
        return {"kind": self.kind, "max_length": self.spec.max_length}


@register_retriever("bm25")
class BM25Retriever(Retriever):
    """The lexical baseline (:class:`robustir.retrieve.BM25Index`); one index per corpus."""

    def __init__(self, spec: ModelSpec, *, progress: bool = False, **settings: Any):
        self.spec = spec
        self.progress = progress
        self._index: tuple[str, retrieve.BM25Index] | None = None

    def search(self, dataset: Dataset, queries: Mapping[str, str], *, top_k: int = 1000) -> Run:
        if self._index is None or self._index[0] != dataset.checksum:
            index = retrieve.BM25Index(dataset.corpus, k1=self.spec.bm25_k1, b=self.spec.bm25_b,
                                       progress=self.progress)
            self._index = (dataset.checksum, index)
        return self._index[1].search(queries, top_k=top_k)

    def record(self, dataset: Dataset) -> dict[str, Any]:
        return {"bm25_k1": self.spec.bm25_k1, "bm25_b": self.spec.bm25_b, "stemmer": "english"}


def _user_spec(obj: Any, name: str | None) -> ModelSpec:
    name = name or getattr(obj, "name", None) or type(obj).__name__
    return ModelSpec(key=str(name), display_name=str(name), hf_id="", family="user model",
                     backend="user", note=f"user object {type(obj).__module__}.{type(obj).__qualname__}")


class EncodeFunctionsRetriever(EmbeddingRetriever):
    """A user model with BEIR/MTEB ``encode_queries(list[str])`` and ``encode_corpus(list[dict])``.

    Args:
        model: The object; each method returns an array-like ``(n, dimension)``.
        name: Key of its results (default: its ``name`` attribute or class name).
        score: ``cos`` or ``dot``.
        batch_size: Passed to the object's methods as ``batch_size``.
    """

    kind = "encode_functions"

    def __init__(self, model: Any, *, name: str | None = None, score: str = "cos",
                 batch_size: int = 32):
        self.model = model
        self.spec = _user_spec(model, name)
        self._score = score
        self.batch_size = batch_size

    @property
    def score(self) -> str:
        return self._score

    def _array(self, vectors: Any, expected: int, method: str) -> np.ndarray:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != expected:
            raise ValueError(f"{self.spec.key}.{method} returned shape {array.shape}; expected "
                             f"({expected}, dimension)")
        return array

    def encode_corpus(self, dataset: Dataset) -> Embeddings:
        ids = list(dataset.corpus)
        documents = [dict(dataset.corpus[i]) for i in ids]
        vectors = self.model.encode_corpus(documents, batch_size=self.batch_size)
        return Embeddings(ids, self._array(vectors, len(ids), "encode_corpus"))

    def encode_queries(self, queries: Mapping[str, str], dataset: Dataset) -> Embeddings:
        ids = list(queries)
        vectors = self.model.encode_queries([queries[i] for i in ids], batch_size=self.batch_size)
        return Embeddings(ids, self._array(vectors, len(ids), "encode_queries"))

    def record(self, dataset: Dataset) -> dict[str, Any]:
        return {"kind": self.kind, "object": self.spec.note, "score": self.score}


class SearchFunctionRetriever(Retriever):
    """A user retriever with a BEIR-style ``search(corpus, queries, top_k, **kwargs)``."""

    kind = "search_function"

    def __init__(self, model: Any, *, name: str | None = None):
        self.model = model
        self.spec = _user_spec(model, name)

    def search(self, dataset: Dataset, queries: Mapping[str, str], *, top_k: int = 1000) -> Run:
        run = self.model.search(dataset.corpus, dict(queries), top_k)
        if not isinstance(run, Mapping):
            raise ValueError(f"{self.spec.key}.search returned {type(run).__name__}, not a run "
                             "{qid: {doc_id: score}}")
        ranked = {}
        for qid, hits in run.items():
            pairs = sorted(((str(d), float(s)) for d, s in hits.items()), key=lambda p: -p[1])
            ranked[str(qid)] = dict(pairs[:top_k])
        return ranked

    def record(self, dataset: Dataset) -> dict[str, Any]:
        return {"kind": self.kind, "object": self.spec.note}


def make_retriever(
    model: Any,
    *,
    device: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    dtype: str | None = None,
    cache=None,
    progress: bool = True,
    name: str | None = None,
    **overrides: Any,
) -> Retriever:
    """The retriever for a catalog key, folder, spec file, mapping, spec or user object.

    Args:
        model: A :class:`Retriever` (returned as is), a source for
            :func:`robustir.model_sources.resolve_model`, or a user object with
            ``encode_queries``/``encode_corpus`` or ``search`` (BEIR/MTEB conventions).
        device, batch_size, max_length, dtype, cache, progress: Encoder settings of dense
            kinds (see :class:`robustir.encode.Encoder`).
        name: Results key of a user object.
        **overrides: Model overrides (``pooling``, ``query_prompt``, …) for a source.

    Raises:
        robustir.model_sources.ModelSourceError: The source cannot be used.
        ValueError: The spec's backend names no registered kind.
    """
    if isinstance(model, Retriever):
        return model
    if not isinstance(model, (str, os.PathLike, Mapping, ModelSpec)):
        if callable(getattr(model, "search", None)):
            return SearchFunctionRetriever(model, name=name)
        if callable(getattr(model, "encode_queries", None)) and callable(
                getattr(model, "encode_corpus", None)):
            return EncodeFunctionsRetriever(model, name=name, batch_size=batch_size)
        raise TypeError(f"{type(model).__name__} is not a model: give a catalog key, a folder, a "
                        "spec, or an object with encode_queries/encode_corpus or search")
    from robustir.model_sources import resolve_model

    spec = resolve_model(model, **overrides)
    kind = RETRIEVER_KINDS.get(spec.backend)
    if kind is None:
        raise ValueError(f"{spec.key}: no retriever kind {spec.backend!r}; registered: "
                         f"{', '.join(sorted(RETRIEVER_KINDS))}")
    return kind(spec, device=device, batch_size=batch_size, max_length=max_length, dtype=dtype,
                cache=cache, progress=progress)
