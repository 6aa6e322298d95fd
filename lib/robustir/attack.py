"""Corpus poisoning: supervised HotFlip adversarial passages and their baselines (protocol §5).

The attack follows the mean-embedding re-implementation of Zhong et al. (2023) used by the
study (§5.2):

1. the attacker's (query, gold passage) rows come from the **training** qrels, query order
   shuffled with the seed;
2. every row's query is embedded with the system's query prompt, and ``KMeans(n_clusters=N,
   random_state=0)`` (scikit-learn, as the study) groups them into N clusters, one adversarial
   passage per cluster;
3. per cluster the query embeddings (re-embedded with a 32-token limit, §5.2 step 2) are
   shuffled, the last ``min(1000, ⌊0.3 n⌋)`` held out for validation, and consecutive batches
   of 64 averaged into centroids;
4. the passage starts as the first 50 ids of a random gold passage (with the tokenizer's
   special tokens, padded with the mask/unk/pad/bos/eos token, whichever exists first);
5. each iteration draws a fresh order of the training centroids, takes the gradient of
   ``c₁ · f(p)`` at the word embeddings, picks a uniform position j, takes the top
   ``candidates`` tokens by ``E · G[j]``, scores the current passage and every one-token
   substitution on ``c₂`` in **one** batched forward pass, applies the best if it scores higher,
   and keeps the passage with the best validation similarity (mean of ``c · f(p)`` over the
   validation centroids), starting from the initial passage's.

``f`` is the system's document path applied to token ids: the document prompt's ids without
special tokens, then the passage ids, attention all ones, token types zero, the system's pooling
and normalisation (§5.3 step 1; the missing special tokens are the study's, §8.1 row 9). The same
function embeds the passages for the evaluation (:mod:`robustir.experiments.corpus_poisoning`),
which appends them to the clean test corpus as ``adv_doc_{file}_{cluster}`` and reports ASR@k and
nDCG@10. This module only generates passages: it sits below the experiments layer.

An attack saves its state every ``checkpoint_every`` iterations (atomic JSON: cluster, iteration,
current and best ids, best similarity, RNG state); a killed attack rerun with the same
parameters continues from there and ends with the same passages as an uninterrupted run.

Baselines: the initial gold passages (what the optimisation starts from) and query-text
injection (each cluster's training queries, closest to the k-means centre first, concatenated
into a passage of the same length).

Used in the book chapter "Corpus poisoning" (notebooks ``corpus_poisoning`` and
``corpus_poisoning_summary``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from robustir.cache import atomic_write, fingerprint
from robustir.data import Dataset, document_text
from robustir.encode import Encoder

__all__ = [
    "DEFAULT_CONFIG",
    "PAPER_CONFIG",
    "AdversarialPassage",
    "AttackResult",
    "ClusterAttack",
    "ClusterTargets",
    "HotFlipConfig",
    "attacker_pairs",
    "cluster_queries",
    "cluster_targets",
    "embed_passages",
    "fill_token_id",
    "gold_passage_ids",
    "hotflip_attack",
    "passage_file_name",
    "query_text_passages",
    "save_passages",
]

log = logging.getLogger(__name__)

_CURRENT_SCORE_ON = ("second", "first")


@dataclass(frozen=True)
class HotFlipConfig:
    """Every setting of one supervised HotFlip run (protocol §5.1–§5.2).

    Attributes:
        n_passages: N, the number of k-means clusters and adversarial passages.
        iterations: HotFlip iterations per cluster (the study: 5,000).
        candidates: Candidate tokens scored per iteration (``num_cand``, the study: 100).
        passage_length: Tokens per adversarial passage (the study: 50).
        batch_size: Query embeddings averaged into one centroid (the study: 64).
        seed: Seed of the row shuffle, the per-cluster shuffles, the initial gold passage and
            the positions (the study: 1999, 5, 27, 2016, 2026).
        validation_fraction: Share of a cluster's rows held out for validation (0.3) …
        max_validation: … at most this many rows (1000).
        target_query_max_length: Token limit of the per-cluster target embeddings, applied to
            prompt + query together (the ECIR 2025 code: 32; ``None``: the system's limit;
            §8.1 row 23: the prompt and query token counts are recorded).
        current_score_on: Centroid the current passage is scored on before a substitution is
            accepted: ``second`` (protocol §5.2 step 7.4, the candidates' centroid) or
            ``first`` (the published LLM script compares with the gradient centroid's score).
        prompt_mask_with_special_tokens: For ``prompt_mean`` pooling, count the document
            prompt's tokens with special tokens (the study, §8.1 row 8) or without (corrected).
        candidate_chunk: Candidates scored per forward pass; ``None`` scores all of them in one
            batched pass (the default and fastest on CPU; a chunk bounds GPU memory for 8B
            systems, and 1 is the one-candidate-at-a-time loop of the benchmark).
        checkpoint_every: Iterations between saved states.
    """

    n_passages: int = 10
    iterations: int = 5000
    candidates: int = 100
    passage_length: int = 50
    batch_size: int = 64
    seed: int = 1999
    validation_fraction: float = 0.3
    max_validation: int = 1000
    target_query_max_length: int | None = 32
    current_score_on: str = "second"
    prompt_mask_with_special_tokens: bool = True
    candidate_chunk: int | None = None
    checkpoint_every: int = 25

    def __post_init__(self):
        positive = ("n_passages", "candidates", "passage_length", "batch_size", "checkpoint_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HotFlipConfig.{name} must be a positive integer, got {value!r}")
        if self.candidate_chunk is not None and (
            not isinstance(self.candidate_chunk, int) or self.candidate_chunk < 1
        ):
            raise ValueError(
                f"HotFlipConfig.candidate_chunk must be None or a positive integer, "
                f"got {self.candidate_chunk!r}"
            )
        if not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"HotFlipConfig.iterations must be >= 0, got {self.iterations!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"HotFlipConfig.validation_fraction must lie in [0, 1), got {self.validation_fraction}"
            )
        if self.current_score_on not in _CURRENT_SCORE_ON:
            raise ValueError(
                f"HotFlipConfig.current_score_on must be one of {_CURRENT_SCORE_ON}, "
                f"got {self.current_score_on!r}"
            )

    def as_record(self) -> dict:
        """Every field as JSON values, for ``params.json`` and the checkpoint key."""
        return dataclasses.asdict(self)


#: The study's grid (§5.1): one :class:`HotFlipConfig` per (N, seed) with these settings.
PAPER_CONFIG = {
    "iterations": 5000,
    "candidates": 100,
    "passage_length": 50,
    "batch_size": 64,
    "n_passages": (10, 50),
    "seeds": (1999, 5, 27, 2016, 2026),
}
#: The embedded default (CPU, 2 cores): the study's settings except the iteration count.
#: ``benchmarks/hotflip_iteration.py`` (2026-12-02, idle 2-core machine, the matmul peak taken
#: from the faster of BLAS and oneDNN) puts a MiniLM iteration (100 candidates, 50 tokens) at
#: 0.41 s in float32 (1.40x its FLOP floor) and 0.27 s in bfloat16 (1.80x: PyTorch's CPU
#: attention kernel is a quarter of a bfloat16 candidate pass); 10 iterations x 10 clusters then
#: take about a minute. SmolLM2 has about ten times the per-token FLOPs, so its runs need
#: proportionally longer.
DEFAULT_CONFIG = {**PAPER_CONFIG, "iterations": 10, "n_passages": (10,), "seeds": (1999, 5)}


@dataclass(frozen=True)
class ClusterTargets:
    """The attack targets of one cluster (§5.2 step 4).

    Attributes:
        train_centroids: float32 ``(n_batches, d)``, means of consecutive batches of the
            shuffled training rows.
        validation_centroids: float32 ``(n_val_batches, d)``, the same for the held-out rows.
        n_train: Training rows.
        n_validation: Validation rows.
    """

    train_centroids: np.ndarray
    validation_centroids: np.ndarray
    n_train: int
    n_validation: int


@dataclass
class AdversarialPassage:
    """One cluster's passage and how it got there.

    Attributes:
        cluster: Cluster index (the ``cluster_key`` of its doc id).
        token_ids: The kept (best-on-validation) passage ids.
        initial_ids: The gold-passage initialisation.
        gold_doc_id: Corpus id of that gold passage.
        n_queries: Attacker rows in the cluster (training + validation).
        initial_similarity: Validation similarity of ``initial_ids``.
        best_similarity: Validation similarity of ``token_ids`` (never below the initial).
        accepted: Iterations whose substitution was applied.
        history: One ``[iteration, candidate score, validation similarity, best so far]`` row
            per accepted substitution.
    """

    cluster: int
    token_ids: list[int]
    initial_ids: list[int]
    gold_doc_id: str
    n_queries: int
    initial_similarity: float
    best_similarity: float
    accepted: int = 0
    history: list[list[float]] = field(default_factory=list)


@dataclass
class AttackResult:
    """The outcome of :func:`hotflip_attack`.

    Attributes:
        passages: One per cluster, in cluster order.
        config: The settings.
        record: Provenance: model, dataset and split, data checksum, prompts, query token
            counts, cluster sizes, timing.
    """

    passages: list[AdversarialPassage]
    config: HotFlipConfig
    record: dict


# --- attacker data and targets ------------------------------------------------------------
def attacker_pairs(train: Dataset, rng: np.random.Generator) -> list[tuple[str, str]]:
    """The attacker's (query id, gold doc id) rows (§5.2 step 1).

    Query order is shuffled with ``rng``; a query with several gold passages gives several
    consecutive rows. Judgements with grade ≤ 0 and doc ids missing from the corpus are skipped.

    Raises:
        ValueError: No usable judgement in ``train``.
    """
    qids = [q for q in train.qrels if q in train.queries]
    rows = [
        (qids[i], doc)
        for i in rng.permutation(len(qids))
        for doc, grade in train.qrels[qids[i]].items()
        if grade > 0 and doc in train.corpus
    ]
    if not rows:
        raise ValueError(
            f"{train.name}/{train.split}: no judged (query, gold passage) pair whose passage is in "
            f"the corpus; the attacker needs a training split with relevance judgements"
        )
    return rows


def cluster_queries(vectors: np.ndarray, n_clusters: int) -> np.ndarray:
    """k-means labels of the rows' query embeddings (§5.2 step 3).

    ``sklearn.cluster.KMeans(n_clusters, random_state=0)`` on float32 vectors, as the study.

    Raises:
        ValueError: Fewer rows than clusters.
    """
    from sklearn.cluster import KMeans

    if len(vectors) < n_clusters:
        raise ValueError(
            f"{len(vectors)} attacker rows cannot form {n_clusters} clusters; lower n_passages"
        )
    model = KMeans(n_clusters=n_clusters, random_state=0).fit(np.asarray(vectors, np.float32))
    return model.labels_.astype(np.int64)


def _batch_means(vectors: np.ndarray, batch_size: int) -> np.ndarray:
    starts = range(0, len(vectors), batch_size)
    return np.stack([vectors[s : s + batch_size].mean(axis=0) for s in starts]).astype(np.float32)


def cluster_targets(
    vectors: np.ndarray,
    rng: np.random.Generator,
    *,
    batch_size: int = 64,
    validation_fraction: float = 0.3,
    max_validation: int = 1000,
) -> ClusterTargets:
    """Shuffle one cluster's query embeddings, hold out validation rows, average batches.

    Args:
        vectors: float32 ``(n, d)`` query embeddings of the cluster's rows.
        rng: The cluster's generator.
        batch_size: Rows per centroid (64).
        validation_fraction: Held-out share; the last ``min(max_validation, ⌊fraction·n⌋)``
            rows after shuffling.
        max_validation: Cap on validation rows (1000).

    Raises:
        ValueError: The cluster leaves no training or no validation row.
    """
    shuffled = vectors[rng.permutation(len(vectors))]
    n_validation = min(max_validation, int(validation_fraction * len(vectors)))
    n_train = len(vectors) - n_validation
    if n_train < 1 or n_validation < 1:
        raise ValueError(
            f"a cluster of {len(vectors)} rows gives {n_train} training and {n_validation} "
            f"validation rows; use more attacker queries or fewer passages"
        )
    return ClusterTargets(
        _batch_means(shuffled[:n_train], batch_size),
        _batch_means(shuffled[n_train:], batch_size),
        n_train,
        n_validation,
    )


# --- passages as token ids ------------------------------------------------------------------
def fill_token_id(tokenizer) -> int:
    """The padding token of adversarial passages: mask, else unk, pad, bos, eos (§5.2 step 5)."""
    for name in ("mask_token_id", "unk_token_id", "pad_token_id", "bos_token_id", "eos_token_id"):
        token = getattr(tokenizer, name, None)
        if token is not None:
            return int(token)
    raise ValueError("the tokenizer has no mask, unk, pad, bos or eos token to pad passages with")


def gold_passage_ids(tokenizer, text: str, length: int) -> list[int]:
    """The first ``length`` ids of ``text`` tokenised with special tokens, padded with
    :func:`fill_token_id` (§5.2 step 5; also the query-text baseline's packing)."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"][:length]
    return ids + [fill_token_id(tokenizer)] * (length - len(ids))


class _DocumentPath:
    """``f(p)``: the system's document path applied to passage ids (§5.3 step 1)."""

    def __init__(self, encoder: Encoder, dataset: str, *, prompt_mask_with_special_tokens: bool):
        self.encoder = encoder
        prompt = encoder.spec.document_prompt(dataset)
        tokenizer = encoder.tokenizer
        self.prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        self.prompt_length = 0
        if encoder.spec.pooling == "prompt_mean":
            self.prompt_length = (
                encoder.prompt_length(prompt)
                if prompt_mask_with_special_tokens
                else len(self.prompt_ids)
            )
        self.uses_token_types = "token_type_ids" in tokenizer.model_input_names
        self.device = encoder.device

    def input_ids(self, passages: torch.Tensor) -> torch.Tensor:
        """Prompt ids, the passage ids and, for systems that append the end-of-sequence token
        to every text themselves (``ModelSpec.append_eos``: part of their document path, unlike
        a tokenizer's special tokens), that token."""
        prompt = torch.tensor(self.prompt_ids, dtype=torch.long, device=self.device)
        parts = [prompt.expand(passages.shape[0], -1), passages.to(self.device)]
        if self.encoder.spec.append_eos:
            eos = torch.tensor([self.encoder.tokenizer.eos_token_id], device=self.device)
            parts.append(eos.expand(passages.shape[0], -1))
        return torch.cat(parts, dim=1)

    def __call__(self, passages: torch.Tensor, *, inputs_embeds: torch.Tensor | None = None):
        """Pooled vectors of ``passages`` (``(batch, length)`` ids), or of ``inputs_embeds``
        (the embeddings of :meth:`input_ids`), differentiable."""
        ids = self.input_ids(passages)
        mask = torch.ones_like(ids)
        return self.encoder.embed_batch(
            mask,
            input_ids=None if inputs_embeds is not None else ids,
            inputs_embeds=inputs_embeds,
            token_type_ids=torch.zeros_like(ids) if self.uses_token_types else None,
            prompt_length=self.prompt_length,
        ).float()


def embed_passages(
    encoder: Encoder,
    passages: Sequence[Sequence[int]],
    dataset: str,
    *,
    batch_size: int = 64,
    prompt_mask_with_special_tokens: bool = True,
) -> np.ndarray:
    """Embed adversarial passages from their token ids (§5.3 step 1), in batches of 64.

    Returns:
        float32 ``(len(passages), d)``, pooled and normalised like the system's documents.

    Raises:
        ValueError: No passage, or passages of different lengths.
    """
    lengths = {len(p) for p in passages}
    if len(lengths) != 1:
        raise ValueError(
            f"adversarial passages must all have the same number of token ids (no padding is "
            f"added); got lengths {sorted(lengths) or 'none: no passage'}"
        )
    path = _DocumentPath(
        encoder, dataset, prompt_mask_with_special_tokens=prompt_mask_with_special_tokens
    )
    out = []
    with torch.inference_mode():
        for start in range(0, len(passages), batch_size):
            ids = torch.tensor([list(p) for p in passages[start : start + batch_size]])
            out.append(path(ids).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


# --- the attack -----------------------------------------------------------------------------
def _checkpoint_key(encoder: Encoder, train: Dataset, config: HotFlipConfig) -> str:
    return fingerprint({
        "model": encoder.spec.as_record(), "dtype": encoder.dtype, "dataset": train.name,
        "split": train.split, "checksum": train.checksum, "n_queries": len(train.queries),
        "config": {k: v for k, v in config.as_record().items() if k != "checkpoint_every"},
    })[:16]


def _rng_from_state(state: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


class ClusterAttack:
    """The HotFlip iteration of one cluster (§5.2 step 7).

    Args:
        encoder: The target system.
        dataset: Dataset key (decides the document prompt).
        targets: The cluster's centroids.
        config: The settings (candidates, chunking, comparison centroid, prompt masking).

    Used by :func:`hotflip_attack` and ``benchmarks/hotflip_iteration.py``.
    """

    def __init__(
        self, encoder: Encoder, dataset: str, targets: ClusterTargets, config: HotFlipConfig
    ):
        path = _DocumentPath(
            encoder, dataset,
            prompt_mask_with_special_tokens=config.prompt_mask_with_special_tokens,
        )
        self.path = path
        self.config = config
        self.train = torch.from_numpy(targets.train_centroids).to(path.device)
        self.validation_mean = torch.from_numpy(targets.validation_centroids.mean(axis=0)).to(
            path.device
        )
        self.embedding = path.encoder.input_embeddings.weight

    def validation_similarity(self, vector: torch.Tensor) -> float:
        """Mean of ``c · vector`` over the validation centroids."""
        return float(vector @ self.validation_mean)

    def step(self, ids: torch.Tensor, rng: np.random.Generator):
        """One iteration on passage ``ids`` (1-D); returns ``(accepted, ids after the step,
        best candidate score on c₂, the new passage's vector or None)``."""
        order = rng.permutation(len(self.train))
        if len(order) < 2:  # one training batch: no second centroid, nothing is accepted
            return False, ids, float("nan"), None
        first = self.train[order[0]]
        # gradient of c₁ · f(p) at the word embeddings of the passage positions
        full_ids = self.path.input_ids(ids.unsqueeze(0))
        embeds = self.embedding[full_ids].detach().requires_grad_(True)
        score = self.path(ids.unsqueeze(0), inputs_embeds=embeds)[0] @ first
        (gradient,) = torch.autograd.grad(score, embeds)
        position = int(rng.integers(len(ids)))
        offset = len(self.path.prompt_ids)
        with torch.no_grad():
            token_scores = self.embedding @ gradient[0, offset + position].to(self.embedding.dtype)
            candidates = token_scores.float().topk(self.config.candidates).indices
        second = self.train[order[1]]
        batch = ids.repeat(len(candidates) + 1, 1)
        batch[1:, position] = candidates
        chunk = self.config.candidate_chunk or len(batch)
        with torch.inference_mode():
            vectors = torch.cat([self.path(batch[s : s + chunk]) for s in range(0, len(batch), chunk)])
            scores = vectors @ second
        current = float(scores[0]) if self.config.current_score_on == "second" else float(score)
        best = int(scores[1:].argmax()) + 1
        if float(scores[best]) <= current:
            return False, ids, float(scores[best]), None
        return True, batch[best].clone(), float(scores[best]), vectors[best].clone()


def passage_file_name(dataset: str, model: str, config: HotFlipConfig) -> str:
    """The study's file name of one run's passages (§5.2 step 8)."""
    return (
        f"{dataset}_train_attacked_documents_seed_{config.seed}_{model}_supervised_hotflip_"
        f"N{config.n_passages}_Len{config.passage_length}_Iter{config.iterations}_"
        f"Pool{config.candidates}_InitTrue.json"
    )


def _attacker_queries(
    encoder: Encoder, train: Dataset, seed: int
) -> tuple[list[tuple[str, str]], dict[str, str], np.ndarray, np.ndarray]:
    """Rows, their distinct queries, each row's query index, and the rows' k-means input."""
    rows = attacker_pairs(train, np.random.default_rng(seed))
    queries = {q: train.queries[q] for q, _ in rows}
    position = {q: i for i, q in enumerate(queries)}
    index = np.array([position[q] for q, _ in rows])
    vectors = encoder.encode_queries(queries, train.name).vectors[index]
    return rows, queries, index, vectors


def _query_token_record(encoder: Encoder, train: Dataset, queries: dict, limit: int) -> dict:
    """Prompt and query token counts of the targets (§8.1 row 23)."""
    prompt = encoder.spec.query_prompt(train.name)
    tokenizer = encoder.tokenizer
    lengths = np.array([
        len(tokenizer(prompt + encoder.spec.separator + text)["input_ids"])
        for text in queries.values()
    ])
    return {
        "attacker_queries": len(queries),
        "query_prompt": prompt,
        "query_prompt_tokens": encoder.prompt_length(prompt),
        "target_query_tokens_median": float(np.median(lengths)),
        "target_query_tokens_max": int(lengths.max()),
        "target_queries_truncated": int((lengths > limit).sum()),
        "target_query_max_length": limit,
    }


def hotflip_attack(
    encoder: Encoder,
    train: Dataset,
    config: HotFlipConfig = HotFlipConfig(),
    *,
    checkpoint_dir: str | Path | None = None,
    callback: Callable[[int, int, bool], None] | None = None,
) -> AttackResult:
    """Supervised HotFlip corpus poisoning of one system on one training split (§5.2).

    Args:
        encoder: The target system (its model, tokenizer, device and dtype are used; its
            embedding cache serves the attacker queries).
        train: The attacker's split (SciFact: ``train``; NQ: ``nq-train``).
        config: The settings; see :class:`HotFlipConfig`.
        checkpoint_dir: Folder for the resumable state (``None``: no checkpoints). A state
            saved by a run with other parameters is ignored.
        callback: Called after every iteration with ``(cluster, iteration, accepted)``; an
            exception raised there stops the attack (the state saved last survives).

    Returns:
        The passages, one per cluster, and their provenance.
    """
    started = time.perf_counter()
    spec = encoder.spec
    query_encoder = Encoder(
        spec, device=str(encoder.device), dtype=encoder.dtype, batch_size=encoder.batch_size,
        max_length=config.target_query_max_length or encoder.max_length, cache=encoder.cache,
        progress=encoder.progress,
    )
    rows, queries, index, full = _attacker_queries(encoder, train, config.seed)
    targets_all = query_encoder.encode_queries(queries, train.name).vectors[index]
    record = {
        "attacker_rows": len(rows),
        **_query_token_record(encoder, train, queries, query_encoder.max_length),
    }
    state_path = None
    state: dict = {"clusters": []}
    if checkpoint_dir is not None:
        key = _checkpoint_key(encoder, train, config)
        state_path = Path(checkpoint_dir) / f"hotflip-{spec.key}-{train.name}-{key}.json"
        if state_path.exists():
            state = json.loads(state_path.read_text(encoding="utf-8"))
            log.info("resuming %s from %s", spec.key, state_path)
    if "labels" in state:
        labels = np.array(state["labels"])
    else:
        labels = cluster_queries(full, config.n_passages)
        state["labels"] = labels.tolist()
    path = _DocumentPath(
        encoder, train.name,
        prompt_mask_with_special_tokens=config.prompt_mask_with_special_tokens,
    )
    tokenizer = encoder.tokenizer

    def save():
        if state_path is not None:
            payload = json.dumps(state).encode("utf-8")
            atomic_write(state_path, lambda handle: handle.write(payload))

    passages = []
    sizes = []
    for cluster in range(config.n_passages):
        members = np.flatnonzero(labels == cluster)
        sizes.append(len(members))
        targets = cluster_targets(
            targets_all[members], np.random.default_rng([config.seed, cluster]),
            batch_size=config.batch_size, validation_fraction=config.validation_fraction,
            max_validation=config.max_validation,
        )
        loop = ClusterAttack(encoder, train.name, targets, config)
        if len(targets.train_centroids) < 2:
            log.warning("cluster %d has one training batch: no substitution can be accepted "
                        "(protocol §5.2 step 4)", cluster)
        if cluster < len(state["clusters"]):
            saved = state["clusters"][cluster]
        else:
            rng = np.random.default_rng([config.seed, cluster, 1])
            gold = rows[members[int(rng.integers(len(members)))]][1]
            initial = gold_passage_ids(
                tokenizer, document_text(train.corpus[gold]), config.passage_length
            )
            with torch.inference_mode():
                similarity = loop.validation_similarity(loop.path(torch.tensor([initial]))[0])
            saved = {
                "iteration": 0, "ids": initial, "best_ids": initial, "initial_ids": initial,
                "gold_doc_id": gold, "initial_similarity": similarity,
                "best_similarity": similarity, "accepted": 0, "history": [],
                "rng": rng.bit_generator.state,
            }
            state["clusters"].append(saved)
        rng = _rng_from_state(saved["rng"])
        ids = torch.tensor(saved["ids"], device=encoder.device)
        while saved["iteration"] < config.iterations:
            accepted, ids, candidate_score, vector = loop.step(ids, rng)
            saved["iteration"] += 1
            if accepted:
                saved["accepted"] += 1
                similarity = loop.validation_similarity(vector)
                if similarity > saved["best_similarity"]:
                    saved["best_similarity"] = similarity
                    saved["best_ids"] = ids.tolist()
                saved["history"].append(
                    [saved["iteration"], candidate_score, similarity, saved["best_similarity"]]
                )
            if saved["iteration"] % config.checkpoint_every == 0:
                saved["ids"] = ids.tolist()
                saved["rng"] = rng.bit_generator.state
                save()
            if callback is not None:
                callback(cluster, saved["iteration"], accepted)
        saved["ids"] = ids.tolist()
        saved["rng"] = rng.bit_generator.state
        save()
        passages.append(AdversarialPassage(
            cluster=cluster, token_ids=saved["best_ids"], initial_ids=saved["initial_ids"],
            gold_doc_id=saved["gold_doc_id"], n_queries=len(members),
            initial_similarity=saved["initial_similarity"],
            best_similarity=saved["best_similarity"], accepted=saved["accepted"],
            history=saved["history"],
        ))
    record.update({
        "model": spec.key, "dtype": encoder.dtype, "device": str(encoder.device),
        "dataset": train.name, "split": train.split, "data_checksum": train.checksum,
        "document_prompt": spec.document_prompt(train.name),
        "document_prompt_ids": path.prompt_ids, "fill_token_id": fill_token_id(tokenizer),
        "cluster_sizes": sizes, "kmeans": "sklearn.cluster.KMeans(random_state=0)",
        "elapsed_s": round(time.perf_counter() - started, 3),
    })
    return AttackResult(passages, config, record)


def query_text_passages(
    encoder: Encoder, train: Dataset, config: HotFlipConfig
) -> list[list[int]]:
    """The query-text injection baseline: one passage per cluster of the same attack setup.

    Each cluster's distinct training queries, closest to its k-means centre (by cosine) first,
    are joined with spaces and packed like a gold passage (:func:`gold_passage_ids`) into
    ``passage_length`` ids. The clusters are those of :func:`hotflip_attack` with ``config``.
    """
    rows, queries, _, vectors = _attacker_queries(encoder, train, config.seed)
    labels = cluster_queries(vectors, config.n_passages)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    passages = []
    for cluster in range(config.n_passages):
        members = np.flatnonzero(labels == cluster)
        centre = unit[members].mean(axis=0)
        closest = members[np.argsort(-(unit[members] @ centre), kind="stable")]
        texts = list(dict.fromkeys(rows[i][0] for i in closest))
        text = " ".join(queries[q] for q in texts)
        passages.append(gold_passage_ids(encoder.tokenizer, text, config.passage_length))
    return passages


def save_passages(
    path: str | Path, result: AttackResult, tokenizer, *, provenance: Mapping | None = None
) -> Path:
    """Write a run's passages as JSON (ids, decoded text, similarities) with provenance.

    The layout follows the study's file (``{cluster: {"best_adv_passage_ids", …}}``) inside
    ``{"passages": …, "config": …, "provenance": …}``. Written atomically.
    """
    path = Path(path)
    payload = {
        "passages": {
            str(p.cluster): {
                "best_adv_passage_ids": p.token_ids,
                "best_adv_text": tokenizer.decode(p.token_ids),
                "best_sim": p.best_similarity,
                "initial_ids": p.initial_ids,
                "initial_text": tokenizer.decode(p.initial_ids),
                "initial_sim": p.initial_similarity,
                "gold_doc_id": p.gold_doc_id,
                "accepted": p.accepted,
                "tot": p.n_queries,
            }
            for p in result.passages
        },
        "config": result.config.as_record(),
        "provenance": {**result.record, **(provenance or {})},
    }
    text = json.dumps(payload, ensure_ascii=False, indent=2).encode("utf-8")
    atomic_write(path, lambda handle: handle.write(text))
    return path
