"""Embedding geometry: IsoScore, average cosine, alignment, uniformity and spectral norms.

Book chapters: *Embedding geometry* (teaching: what each measure means) and *Embedding
geometry and scaling* (results, RQ3, protocol §6), fed by ``notebooks/geometry.py`` and
summarised by ``notebooks/geometry_summary.py``.

Conventions used throughout:

* An embedding matrix has shape ``(n_samples, dimension)``, one row per text (the BEIR
  ``Embeddings.vectors`` layout). The study's IsoScore code takes the transpose; we do not.
* Cosine-based measures (average cosine, alignment, uniformity) L2-normalise the rows first, so
  they are defined for systems that do not normalise (Contriever) too. IsoScore works on the raw
  rows, as the study does.
* Everything is accumulated in float64 whatever the input dtype.
* Randomness comes from an explicit integer seed turned into a ``numpy.random.Generator``. The
  study drew with the legacy global ``np.random`` state after ``transformers.set_seed(seed)``, so
  the distribution of every draw matches the study but the individual draws do not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

STUDY_SEEDS: tuple[int, ...] = (1999, 5, 27, 2016, 2026)
"""The five sampling seeds of the study (protocol §6.1)."""

STUDY_SAMPLE_SIZE = 100_000
"""Documents sampled per (system, dataset, seed) in the study (protocol §6.1)."""

STUDY_SHARD_SIZE = 50_000
"""Documents per length-sorted corpus shard in the study (protocol §1.2, §6.1)."""

STUDY_PAIR_COUNT = 100_000
"""Random pairs behind the study's average cosine (protocol §6.3)."""

EXCLUDED_LINEAR_NAMES: tuple[str, ...] = ("pooler", "lm_head")
"""Module-name fragments whose ``Linear`` layers the study leaves out of the spectral norm."""


def _embedding_matrix(embeddings: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Check that ``embeddings`` is a finite, non-empty ``(n_samples, dimension)`` matrix."""
    matrix = np.asarray(embeddings)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array of shape (n_samples, dimension); "
            f"got shape {matrix.shape}. Pass Embeddings.vectors, one row per text."
        )
    if not np.issubdtype(matrix.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {matrix.dtype}.")
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{name} row {row} holds NaN or infinity; re-encode that text or drop the row."
        )
    return matrix


def _unit_rows(embeddings: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Return the rows of ``embeddings`` L2-normalised in float64; zero rows are an error."""
    matrix = _embedding_matrix(embeddings, name).astype(np.float64)
    norms = np.linalg.norm(matrix, axis=1)
    if (norms == 0).any():
        row = int(np.flatnonzero(norms == 0)[0])
        raise ValueError(
            f"{name} row {row} has zero norm, so its direction (and any cosine) is undefined; "
            "drop the row or re-encode the text."
        )
    return matrix / norms[:, None]


# --------------------------------------------------------------------------------------------
# Sampling (protocol §6.1)


def corpus_sort_lengths(corpus: Mapping[str, Mapping[str, str]]) -> np.ndarray:
    """Length of each document as the study sorts the corpus: ``len(title + text)`` in characters.

    Used by the *Embedding geometry and scaling* chapter to stratify the corpus sample (protocol §1.2, §6.1).

    Args:
        corpus: BEIR corpus ``{doc_id: {"title", "text"}}``; a missing title counts as empty.

    Returns:
        Integer array in the corpus's iteration order.
    """
    return np.fromiter(
        (len(doc.get("title", "") or "") + len(doc.get("text", "") or "") for doc in corpus.values()),
        dtype=np.int64,
        count=len(corpus),
    )


def length_stratified_sample(
    lengths: Sequence[int] | np.ndarray,
    sample_size: int = STUDY_SAMPLE_SIZE,
    *,
    shard_size: int = STUDY_SHARD_SIZE,
    seed: int,
) -> np.ndarray:
    """Draw the study's corpus sample, stratified by document length (protocol §6.1).

    The documents are sorted by length, longest first, with ties kept in corpus order (Python's
    stable ``sorted(..., reverse=True)``), and cut into shards of ``shard_size``. The sample size
    is split equally over the shards, the first ``sample_size % n_shards`` shards taking one
    extra; each shard is sampled uniformly without replacement, capped at its size. A corpus
    smaller than ``sample_size`` is therefore taken whole. Used by the *Embedding geometry and scaling*
    chapter.

    Args:
        lengths: Per-document length in characters, in corpus order (see
            :func:`corpus_sort_lengths`).
        sample_size: Documents to draw in total (the study: 100,000).
        shard_size: Documents per length-sorted shard (the study: 50,000).
        seed: Seed of the ``numpy.random.Generator`` (the study: one of :data:`STUDY_SEEDS`).

    Returns:
        Indices into the corpus order, shard by shard (longest shard first), each shard's
        indices in the order drawn.

    Raises:
        ValueError: If a parameter is not a positive integer or ``lengths`` is not 1-D.
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0:
        raise ValueError(f"lengths must be a non-empty 1-D sequence; got shape {lengths.shape}.")
    for field, value in (("sample_size", sample_size), ("shard_size", shard_size)):
        if int(value) != value or value < 1:
            raise ValueError(f"{field} must be a positive integer; got {value!r}.")
    rng = np.random.default_rng(seed)
    order = np.argsort(-lengths, kind="stable")
    shards = [order[start : start + shard_size] for start in range(0, order.size, shard_size)]
    base, remainder = divmod(sample_size, len(shards))
    picks = []
    for index, shard in enumerate(shards):
        quota = min(base + (1 if index < remainder else 0), shard.size)
        picks.append(shard[rng.choice(shard.size, size=quota, replace=False)])
    sample = np.concatenate(picks)
    logger.info(
        "length-stratified sample: %d of %d documents from %d shard(s), seed %d",
        sample.size, lengths.size, len(shards), seed,
    )
    return sample


def sample_corpus_embeddings(
    corpus: Mapping[str, Mapping[str, str]],
    embeddings,
    sample_size: int = STUDY_SAMPLE_SIZE,
    *,
    shard_size: int = STUDY_SHARD_SIZE,
    seed: int,
) -> tuple[list[str], np.ndarray]:
    """The study's geometry sample of clean corpus embeddings (protocol §6.1).

    Draws :func:`length_stratified_sample` over the corpus sorted by
    :func:`corpus_sort_lengths` and looks the drawn documents up in ``embeddings`` by id, so
    the embeddings may be stored in any order. Used by ``notebooks/geometry.py`` (*Embedding
    geometry* chapter).

    Args:
        corpus: BEIR corpus ``{doc_id: {"title", "text"}}`` in corpus (file) order.
        embeddings: Corpus ``Embeddings`` (``.ids``, ``.vectors``) covering every document.
        sample_size: Documents to draw (the study: 100,000).
        shard_size: Documents per length-sorted shard (the study: 50,000).
        seed: Sampling seed.

    Returns:
        ``(doc_ids, vectors)``: the drawn ids and their ``(n, dimension)`` rows.

    Raises:
        KeyError: If a drawn document has no embedding.
    """
    doc_ids = list(corpus)
    row_of = {doc_id: row for row, doc_id in enumerate(embeddings.ids)}
    drawn = [doc_ids[index] for index in length_stratified_sample(
        corpus_sort_lengths(corpus), sample_size, shard_size=shard_size, seed=seed
    )]
    missing = [doc_id for doc_id in drawn if doc_id not in row_of]
    if missing:
        raise KeyError(
            f"{len(missing)} sampled document(s) have no embedding, e.g. {missing[0]!r}; encode "
            "the same corpus that is sampled."
        )
    return drawn, np.asarray(embeddings.vectors)[[row_of[doc_id] for doc_id in drawn]]


# --------------------------------------------------------------------------------------------
# IsoScore (protocol §6.2)


def principal_component_variances(embeddings: np.ndarray, *, chunk_size: int = 8192) -> np.ndarray:
    """Variance of the sample along each principal component, largest first, in float64.

    The study PCA-rotates the points (sklearn ``PCA``, which centres them) and takes the
    ``ddof = 1`` variance of each coordinate; those variances are the eigenvalues of the sample
    covariance, which is what is computed here, accumulated chunk by chunk so a 100k x 4096
    float32 sample is never copied whole into float64. Used by :func:`isoscore`
    (*Embedding geometry and scaling* chapter).

    Args:
        embeddings: ``(n_samples, dimension)`` matrix, ``n_samples >= 2``.
        chunk_size: Rows per float64 chunk.

    Returns:
        ``(dimension,)`` array of non-negative variances, descending.
    """
    matrix = _embedding_matrix(embeddings)
    n, d = matrix.shape
    if n < 2:
        raise ValueError("a covariance needs at least 2 samples; got 1.")
    mean = matrix.sum(axis=0, dtype=np.float64) / n
    scatter = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, chunk_size):
        centred = matrix[start : start + chunk_size].astype(np.float64) - mean
        scatter += centred.T @ centred
    variances = np.linalg.eigvalsh(scatter / (n - 1))[::-1]
    return np.clip(variances, 0.0, None)


def isoscore(embeddings: np.ndarray) -> float:
    """IsoScore of a point cloud (Rudman et al., 2022; protocol §6.2), in float64.

    With ``Σ`` the principal-component variances (:func:`principal_component_variances`) and
    ``d`` the dimension: ``Σ̂ = Σ·√d / ‖Σ‖``, defect ``δ = ‖Σ̂ − 1‖ / √(2(d − √d))`` and
    ``ι = ((d − δ²(d − √d))² − d) / (d(d − 1))``. ``ι = 1`` when every direction carries the same
    variance, ``0`` when one direction carries all of it, and ``(k − 1)/(d − 1)`` when ``k``
    directions share it equally. Used by the *Embedding geometry and scaling* chapter.

    Args:
        embeddings: ``(n_samples, dimension)`` matrix with ``n_samples > dimension > 1`` (the
            study's requirement: its PCA keeps all ``d`` components).

    Returns:
        IsoScore in [0, 1]; higher is more isotropic.

    Raises:
        ValueError: If there are not more samples than dimensions, or all points coincide.
    """
    matrix = _embedding_matrix(embeddings)
    n, d = matrix.shape
    if d < 2 or n <= d:
        raise ValueError(
            f"IsoScore needs more samples than dimensions and at least 2 dimensions; got "
            f"n_samples={n}, dimension={d}. Raise sample_size (or use a larger corpus)."
        )
    variances = principal_component_variances(matrix)
    total = np.linalg.norm(variances)
    if total == 0:
        raise ValueError("all sampled embeddings are identical; IsoScore is undefined.")
    root_d = math.sqrt(d)
    normalised = variances * root_d / total
    defect = np.linalg.norm(normalised - 1.0) / math.sqrt(2 * (d - root_d))
    score = ((d - defect**2 * (d - root_d)) ** 2 - d) / (d * (d - 1))
    return float(score)


# --------------------------------------------------------------------------------------------
# Average cosine (protocol §6.3, improvement §8.2 item 7)


def average_cosine(
    embeddings: np.ndarray, *, n_pairs: int = STUDY_PAIR_COUNT, seed: int
) -> float:
    """The study's average cosine: mean ``cos(x_i, x_j)`` over random pairs (protocol §6.3).

    ``i`` and ``j`` are drawn independently and uniformly *with replacement*, so self-pairs are
    possible; the estimator's expectation is therefore ``‖μ̄‖²`` (μ̄ the mean unit vector), not
    the distinct-pair mean of :func:`exact_average_cosine`. Used by the *Embedding geometry and scaling*
    chapter.

    Args:
        embeddings: ``(n_samples, dimension)`` matrix; rows need not be normalised.
        n_pairs: Random pairs to average (the study: 100,000).
        seed: Seed of the ``numpy.random.Generator``.

    Returns:
        Mean cosine in [-1, 1]; higher means a narrower cone (more anisotropic).
    """
    if int(n_pairs) != n_pairs or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer; got {n_pairs!r}.")
    unit = _unit_rows(embeddings)
    rng = np.random.default_rng(seed)
    first = rng.integers(0, unit.shape[0], size=n_pairs)
    second = rng.integers(0, unit.shape[0], size=n_pairs)
    total = 0.0
    for start in range(0, n_pairs, 65_536):
        rows = slice(start, start + 65_536)
        total += np.einsum("ij,ij->", unit[first[rows]], unit[second[rows]])
    return float(total / n_pairs)


def exact_average_cosine(embeddings: np.ndarray) -> float:
    """Exact mean cosine over all distinct ordered pairs (improvement, protocol §8.2 item 7).

    For unit rows ``u_i`` with mean ``μ̄``: ``Σ_{i≠j} u_i·u_j = n²‖μ̄‖² − n``, so the mean over the
    ``n(n − 1)`` distinct pairs is ``(n²‖μ̄‖² − n) / (n(n − 1))``. Reported beside the study's
    100k-pair estimate in the *Embedding geometry and scaling* chapter.

    Args:
        embeddings: ``(n_samples, dimension)`` matrix with ``n_samples >= 2``; rows need not be
            normalised.

    Returns:
        Mean cosine over distinct pairs, in [-1, 1].
    """
    unit = _unit_rows(embeddings)
    n = unit.shape[0]
    if n < 2:
        raise ValueError("the average cosine over distinct pairs needs at least 2 samples; got 1.")
    squared_mean_norm = float(np.sum(unit.mean(axis=0) ** 2))
    return (n * n * squared_mean_norm - n) / (n * (n - 1))


# --------------------------------------------------------------------------------------------
# Alignment and uniformity (Wang & Isola, 2020; protocol §6.5, improvement §8.2 item 8)


def pair_distances(anchors: np.ndarray, positives: np.ndarray, *, alpha: float = 2.0) -> np.ndarray:
    """``‖f(x) − f(y)‖₂^α`` for each positive pair, rows L2-normalised first (protocol §6.5).

    Row ``k`` of ``anchors`` and row ``k`` of ``positives`` form one positive pair (a query and
    its gold passage, or a clean query and its variant). Used by :func:`alignment` and for the
    per-query alignment of the *Embedding geometry and scaling* chapter.

    Args:
        anchors: ``(n_pairs, dimension)`` matrix.
        positives: ``(n_pairs, dimension)`` matrix, same shape.
        alpha: Exponent of the distance (the definition's α = 2).

    Returns:
        ``(n_pairs,)`` float64 array with values in [0, 2^α].
    """
    x = _unit_rows(anchors, "anchors")
    y = _unit_rows(positives, "positives")
    if x.shape != y.shape:
        raise ValueError(
            f"anchors and positives must pair row by row; got shapes {x.shape} and {y.shape}."
        )
    if alpha <= 0:
        raise ValueError(f"alpha must be positive; got {alpha!r}.")
    return np.linalg.norm(x - y, axis=1) ** alpha


def alignment(anchors: np.ndarray, positives: np.ndarray, *, alpha: float = 2.0) -> float:
    """Alignment ``E ‖f(x) − f(y)‖₂^α`` over positive pairs (Wang & Isola, 2020; protocol §6.5).

    The mean of :func:`pair_distances`. Used by the *Embedding geometry and scaling* chapter.

    Args:
        anchors: ``(n_pairs, dimension)`` matrix.
        positives: ``(n_pairs, dimension)`` matrix, same shape; row ``k`` pairs with
            ``anchors[k]``.
        alpha: Exponent of the distance (the definition's α = 2).

    Returns:
        Mean distance to the power α, in [0, 2^α]; lower is better aligned.
    """
    return float(np.mean(pair_distances(anchors, positives, alpha=alpha)))


def uniformity(
    embeddings: np.ndarray,
    *,
    t: float = 2.0,
    chunk_size: int = 2048,
    device: str | torch.device | None = None,
) -> float:
    """Uniformity ``log E exp(−t‖f(x) − f(y)‖²)`` over distinct pairs ``i < j`` (protocol §6.5).

    The expectation runs over the ``n(n − 1)/2`` unordered distinct pairs, as ``torch.pdist``
    does; including ``i = j`` would bias it upward. Rows are L2-normalised, so
    ``‖x − y‖² = 2 − 2 cos``. The ``O(n²)`` pair sum is done in row blocks of ``chunk_size`` (on
    ``device``, e.g. a GPU, for the study's 100k sample) and accumulated in float64. Used by the
    *Embedding geometry and scaling* chapter.

    Args:
        embeddings: ``(n_samples, dimension)`` matrix with ``n_samples >= 2``.
        t: Temperature (the definition's t = 2).
        chunk_size: Rows per block; memory is ``chunk_size × n_samples`` floats.
        device: Torch device for the block products; defaults to CPU.

    Returns:
        Uniformity in [−4t, 0]; lower means more uniformly spread on the sphere.
    """
    unit = _unit_rows(embeddings)
    n = unit.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least 2 samples; got 1.")
    if t <= 0:
        raise ValueError(f"t must be positive; got {t!r}.")
    points = torch.from_numpy(unit).to(device=device or "cpu", dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64, device=points.device)
    for start in range(0, n - 1, chunk_size):
        block = points[start : start + chunk_size]
        cosines = block @ points[start:].T
        # keep column j > row i only: the distinct unordered pairs
        upper = torch.triu(torch.ones_like(cosines, dtype=torch.bool), diagonal=1)
        total += torch.exp(2 * t * (cosines[upper] - 1)).sum()
    pairs = n * (n - 1) / 2
    return float(torch.log(total / pairs))


def positive_pairs(
    queries, corpus, qrels: Mapping[str, Mapping[str, int]], *, min_grade: int = 1
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Stack (query, relevant passage) embedding pairs for :func:`alignment`.

    Used by the *Embedding geometry and scaling* chapter for the query–gold-passage alignment.

    Args:
        queries: Query ``Embeddings`` (``.ids``, ``.vectors``).
        corpus: Corpus ``Embeddings`` (``.ids``, ``.vectors``) holding every judged document.
        qrels: ``{qid: {doc_id: grade}}``; pairs with ``grade >= min_grade`` are kept, in qrels
            order. Queries that have no embedding are skipped (the query set may be a subset).
        min_grade: Smallest grade that counts as relevant.

    Returns:
        ``(anchors, positives, query_ids)``: two ``(n_pairs, dimension)`` matrices and the
        query id of each pair.

    Raises:
        KeyError: If a relevant document of an embedded query has no corpus embedding.
        ValueError: If no pair qualifies.
    """
    query_row = {qid: row for row, qid in enumerate(queries.ids)}
    doc_row = {doc_id: row for row, doc_id in enumerate(corpus.ids)}
    query_rows, doc_rows, pair_query_ids = [], [], []
    for qid, judged in qrels.items():
        if qid not in query_row:
            continue
        for doc_id, grade in judged.items():
            if grade < min_grade:
                continue
            if doc_id not in doc_row:
                raise KeyError(
                    f"qrels pair ({qid!r}, {doc_id!r}): document {doc_id!r} has no corpus "
                    "embedding; encode the full corpus, not a sample, for alignment."
                )
            query_rows.append(query_row[qid])
            doc_rows.append(doc_row[doc_id])
            pair_query_ids.append(qid)
    if not query_rows:
        raise ValueError(f"no (query, document) pair with grade >= {min_grade} among the queries.")
    return (
        np.asarray(queries.vectors)[query_rows],
        np.asarray(corpus.vectors)[doc_rows],
        pair_query_ids,
    )


# --------------------------------------------------------------------------------------------
# Spectral norm (protocol §6.4)


@dataclass(frozen=True)
class SpectralNormSummary:
    """What the study stores per system for the Linear-layer spectral norms (protocol §6.4).

    Attributes:
        mean: Mean of σ_max over the layers (the reported value).
        std: Population standard deviation of σ_max.
        min: Smallest σ_max.
        max: Largest σ_max.
        max_layer: Module name of the layer with the largest σ_max.
        last: σ_max of the last Linear layer in module order.
        n_layers: Number of Linear layers counted.
    """

    mean: float
    std: float
    min: float
    max: float
    max_layer: str
    last: float
    n_layers: int

    def as_dict(self) -> dict:
        """The fields as a plain dict (for ``summary.json``)."""
        return asdict(self)


def linear_spectral_norms(
    model: torch.nn.Module, *, exclude: Iterable[str] = EXCLUDED_LINEAR_NAMES
) -> dict[str, float]:
    """Largest singular value σ_max(W) of every ``torch.nn.Linear`` weight (protocol §6.4).

    Layers whose module name contains any fragment of ``exclude`` are skipped (the study skips
    ``pooler`` and ``lm_head``). σ_max is ``torch.linalg.matrix_norm(W.float(), ord=2)``. Used by
    :func:`spectral_norm_summary` (*Embedding geometry and scaling* chapter).

    Args:
        model: The encoder (``Encoder.model``), in any dtype.
        exclude: Module-name fragments to leave out.

    Returns:
        ``{module_name: σ_max}`` in module order.
    """
    exclude = tuple(exclude)
    norms = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not any(part in name for part in exclude):
                norms[name] = float(torch.linalg.matrix_norm(module.weight.float(), ord=2))
    return norms


def spectral_norm_summary(norms: Mapping[str, float]) -> SpectralNormSummary:
    """Summarise per-layer spectral norms as the study does (protocol §6.4).

    Used by the *Embedding geometry and scaling* chapter.

    Args:
        norms: ``{module_name: σ_max}`` in module order, from :func:`linear_spectral_norms`.

    Returns:
        The :class:`SpectralNormSummary`.

    Raises:
        ValueError: If there is no layer (a static embedding model has no Linear layer).
    """
    if not norms:
        raise ValueError(
            "the model has no torch.nn.Linear layer outside the excluded names, so its mean "
            "spectral norm is undefined (static embedding models have none)."
        )
    names = list(norms)
    values = np.array([norms[name] for name in names], dtype=np.float64)
    return SpectralNormSummary(
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        max_layer=names[int(values.argmax())],
        last=float(values[-1]),
        n_layers=len(names),
    )


# --------------------------------------------------------------------------------------------
# Everything the geometry chapter computes on one sample


def sample_geometry(
    embeddings: np.ndarray,
    *,
    seed: int,
    n_pairs: int = STUDY_PAIR_COUNT,
    uniformity_t: float = 2.0,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """IsoScore, both average cosines and uniformity of one corpus sample.

    The per-(system, dataset, seed) row of the *Embedding geometry and scaling* chapter. The study's
    measures are ``isoscore`` and ``average_cosine``; ``exact_average_cosine`` and
    ``uniformity`` are improvements (protocol §8.2 items 7, 8). A sample with no more points
    than dimensions (a small test corpus) has no IsoScore: it is NaN, with a warning, and the
    other measures are still computed.

    Args:
        embeddings: The sampled ``(n_samples, dimension)`` corpus embeddings.
        seed: Seed for the random pairs of :func:`average_cosine`.
        n_pairs: Random pairs for :func:`average_cosine`.
        uniformity_t: Temperature of :func:`uniformity`.
        device: Torch device for :func:`uniformity`.

    Returns:
        ``{"isoscore", "average_cosine", "exact_average_cosine", "uniformity"}``.
    """
    n, d = _embedding_matrix(embeddings).shape
    if n > d:
        score = isoscore(embeddings)
    else:
        logger.warning(
            "IsoScore skipped: the sample has %d points in %d dimensions (it needs more points "
            "than dimensions); raise sample_size or use a larger corpus", n, d,
        )
        score = float("nan")
    return {
        "isoscore": score,
        "average_cosine": average_cosine(embeddings, n_pairs=n_pairs, seed=seed),
        "exact_average_cosine": exact_average_cosine(embeddings),
        "uniformity": uniformity(embeddings, t=uniformity_t, device=device),
    }
