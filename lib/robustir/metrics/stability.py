"""How much a perturbation moves effectiveness and rankings: drop rates and rank stability.

* **Drop rate** (protocol §4.4): DR_s = (M_clean,s − M_pert,s) / M_clean,s, with M the mean
  nDCG@10 over the split's queries, per seed s (the study's clean run is the same for every
  seed); reported as the mean over seeds ± the *population* standard deviation (ddof = 0), as
  the study does. Computed from unrounded per-query values
  (protocol §8.1 row 16). A negative drop rate means the perturbation helped.
* **Per-query direction** (protocol §8.2 item 1): the share of queries whose nDCG@10 drops,
  stays equal or rises.
* **Rank stability** between the clean and the perturbed run of the same query (an
  improvement, §8.2 item 1): Jaccard@k of the top-k sets; extrapolated rank-biased overlap
  (RBO_ext, Webber, Moffat & Zobel 2010, eq. 32, persistence p = 0.9, depth 100); Kendall's τ-b
  over the union of the two top-10 lists, each document ranked by its position in each full
  run (a document absent from a run ties at that run's length + 1). Rankings follow trec_eval
  order (score descending, ties by doc id descending).

Used in the book chapter "Query variations".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustir.metrics import trec_eval_order

__all__ = [
    "DropRates",
    "drop_rate",
    "drop_rates",
    "jaccard_at_k",
    "kendall_tau_b",
    "kendall_tau_union",
    "query_change_fractions",
    "rank_biased_overlap",
    "rank_stability",
    "rankings",
]

Run = Mapping[str, Mapping[str, float]]

#: Defaults of the stability measures (protocol §8.2 item 1).
RBO_PERSISTENCE = 0.9
RBO_DEPTH = 100
OVERLAP_DEPTH = 10


def drop_rate(clean: float, perturbed: float) -> float:
    """Relative loss of a mean metric: (clean − perturbed) / clean, as a fraction.

    Raises:
        ValueError: ``clean`` is not positive, so the drop rate is undefined.

    Examples:
        >>> drop_rate(0.5, 0.4)
        0.19999999999999996

    Used in the book chapter "Query variations".
    """
    if not clean > 0:
        raise ValueError(f"the clean score is {clean}; a drop rate needs a positive clean score")
    return (clean - perturbed) / clean


@dataclass(frozen=True)
class DropRates:
    """Drop rates of one (model, dataset, family) over seeds, as fractions (× 100 for percent).

    Attributes:
        per_seed: Seed → drop rate.
        mean: Mean over seeds.
        std: Population standard deviation over seeds (ddof = 0), the study's error bar.
        clean: Mean clean score (the mean over seeds of :attr:`clean_per_seed`).
        perturbed: Seed → mean perturbed score.
        clean_per_seed: Seed → mean clean score that seed's drop rate divides by.

    Used in the book chapter "Query variations".
    """

    per_seed: dict[int, float]
    mean: float
    std: float
    clean: float
    perturbed: dict[int, float]
    clean_per_seed: dict[int, float]


def _aligned(clean: pd.Series, perturbed: pd.Series, label: object) -> pd.Series:
    if set(clean.index) != set(perturbed.index):
        missing = sorted(set(clean.index) ^ set(perturbed.index))[:3]
        raise ValueError(
            f"{label}: the clean and perturbed per-query scores cover different queries "
            f"(e.g. {missing}); evaluate both on the same query set"
        )
    return perturbed.reindex(clean.index)


def drop_rates(clean: pd.Series | Mapping[int, pd.Series], perturbed: Mapping[int, pd.Series]) -> DropRates:
    """Per-seed drop rates and their mean ± population std (chapter "Query variations").

    DR_s = (M_clean,s − M_pert,s) / M_clean,s (protocol §4.4): each seed divides by its own clean
    mean. The study's clean run is identical across seeds, so one clean series serves them all.

    Args:
        clean: Per-query clean scores (e.g. nDCG@10) indexed by query id, shared by every seed,
            or seed → per-query clean scores when the clean run differs by seed.
        perturbed: Seed → per-query perturbed scores on the same query ids.

    Raises:
        ValueError: No seeds, clean scores for other seeds than the perturbed ones, mismatched
            query sets, or a non-positive clean mean.
    """
    if not perturbed:
        raise ValueError("drop_rates needs at least one perturbed seed")
    if isinstance(clean, pd.Series):
        clean_by_seed = {seed: clean for seed in perturbed}
    else:
        clean_by_seed = dict(clean)
        if set(clean_by_seed) != set(perturbed):
            raise ValueError(
                f"clean scores are given for seeds {sorted(clean_by_seed)} but perturbed scores for "
                f"seeds {sorted(perturbed)}; give one clean series per perturbed seed, or a single "
                "series shared by all seeds"
            )
    clean_means = {seed: float(clean_by_seed[seed].mean()) for seed in perturbed}
    means = {
        seed: float(_aligned(clean_by_seed[seed], scores, f"seed {seed}").mean())
        for seed, scores in perturbed.items()
    }
    per_seed = {seed: drop_rate(clean_means[seed], mean) for seed, mean in means.items()}
    values = np.array(list(per_seed.values()))
    return DropRates(
        per_seed, float(values.mean()), float(values.std(ddof=0)),
        float(np.mean(list(clean_means.values()))), means, clean_means,
    )


def query_change_fractions(clean: pd.Series, perturbed: pd.Series, *, tolerance: float = 1e-12) -> dict[str, float]:
    """Shares of queries whose score drops, stays equal (within ``tolerance``) or rises.

    Returns:
        ``{"drop": …, "equal": …, "rise": …}``, fractions summing to 1.

    Used in the book chapter "Query variations".
    """
    delta = (_aligned(clean, perturbed, "query_change_fractions") - clean).to_numpy()
    n = max(len(delta), 1)
    return {
        "drop": float(np.sum(delta < -tolerance) / n),
        "equal": float(np.sum(np.abs(delta) <= tolerance) / n),
        "rise": float(np.sum(delta > tolerance) / n),
    }


def jaccard_at_k(first: Sequence[str], second: Sequence[str], k: int = OVERLAP_DEPTH) -> float:
    """|A ∩ B| / |A ∪ B| of the two top-k sets, in [0, 1] (1 for two empty lists).

    Used in the book chapter "Query variations".
    """
    a, b = set(first[:k]), set(second[:k])
    return len(a & b) / len(a | b) if a | b else 1.0


def rank_biased_overlap(first: Sequence[str], second: Sequence[str], p: float = RBO_PERSISTENCE) -> float:
    """Extrapolated rank-biased overlap RBO_ext of two rankings (Webber et al. 2010, eq. 32).

    Handles rankings of different lengths (the shorter one is taken as complete to its end).
    Items must be unique within a ranking. 1 for identical rankings, 0 for disjoint ones.

    Args:
        first, second: Ranked ids, best first.
        p: Persistence in (0, 1); the weight of depth d decays as p^(d−1).

    Used in the book chapter "Query variations".
    """
    if not 0 < p < 1:
        raise ValueError(f"RBO persistence p must be in (0, 1), got {p}")
    short, long = (first, second) if len(first) <= len(second) else (second, first)
    s, l = len(short), len(long)
    if s == 0:
        return 1.0 if l == 0 else 0.0
    seen_short, seen_long = set(), set()
    overlap = 0
    overlaps = np.zeros(l + 1)  # overlaps[d] = X_d, the overlap of the depth-d prefixes
    for d in range(1, l + 1):
        if d <= s:
            item = short[d - 1]
            overlap += item in seen_long
            seen_short.add(item)
        item = long[d - 1]
        overlap += item in seen_short  # after adding short[d-1], so a shared item counts once
        seen_long.add(item)
        overlaps[d] = overlap
    depths = np.arange(1, l + 1)
    weights = p ** depths
    total = np.sum(overlaps[1:] / depths * weights)
    tail = depths > s
    total += np.sum(overlaps[s] * (depths[tail] - s) / (s * depths[tail]) * weights[tail])
    return float((1 - p) / p * total + ((overlaps[l] - overlaps[s]) / l + overlaps[s] / s) * p**l)


def kendall_tau_b(first: Sequence[float], second: Sequence[float]) -> float:
    """Kendall's τ-b of two paired samples (ties corrected); ``nan`` if either is constant.

    τ-b = Σ sign(xᵢ−xⱼ)·sign(yᵢ−yⱼ) / √(Σ sign(xᵢ−xⱼ)² · Σ sign(yᵢ−yⱼ)²) over pairs i < j, the
    definition ``scipy.stats.kendalltau`` computes; written out because the stability measures
    call it on lists of at most 2k items, for every query.

    Used in the book chapter "Query variations".
    """
    x, y = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    upper = np.triu_indices(x.size, k=1)
    sign_x = np.sign(x[:, None] - x[None, :])[upper]
    sign_y = np.sign(y[:, None] - y[None, :])[upper]
    denominator = np.sqrt(np.sum(sign_x**2) * np.sum(sign_y**2))
    return float(np.sum(sign_x * sign_y) / denominator) if denominator > 0 else float("nan")


def kendall_tau_union(first: Sequence[str], second: Sequence[str], k: int = OVERLAP_DEPTH) -> float:
    """Kendall's τ-b over the union of the two top-k lists; ``nan`` if it is undefined.

    Each document of the union is ranked by its 1-based position in each full ranking; a
    document missing from a ranking gets that ranking's length + 1 (tied at the bottom).

    Used in the book chapter "Query variations".
    """
    union = list(dict.fromkeys(list(first[:k]) + list(second[:k])))
    if len(union) < 2:
        return float("nan")
    return kendall_tau_b(_positions(union, first), _positions(union, second))


def _positions(docs: Sequence[str], ranking: Sequence[str]) -> list[int]:
    """1-based position of each of a few ``docs`` in ``ranking``; ``len(ranking) + 1`` if absent."""
    positions = []
    for doc in docs:
        try:
            positions.append(ranking.index(doc) + 1)
        except ValueError:
            positions.append(len(ranking) + 1)
    return positions


def rankings(run: Run) -> dict[str, list[str]]:
    """``{qid: doc ids in trec_eval order}`` of a run (the order every stability measure reads)."""
    return {qid: trec_eval_order(hits) for qid, hits in run.items()}


def rank_stability(
    clean_run: Run,
    perturbed_run: Run,
    *,
    k: int = OVERLAP_DEPTH,
    rbo_depth: int = RBO_DEPTH,
    p: float = RBO_PERSISTENCE,
    clean_ranking: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Per-query rank stability between a clean and a perturbed run (chapter "Query variations").

    Args:
        clean_run, perturbed_run: ``{qid: {doc_id: score}}`` over the same query ids.
        k: Depth of Jaccard and of the lists whose union Kendall's τ ranks.
        rbo_depth: Depth at which both rankings are cut before RBO_ext.
        p: RBO persistence.
        clean_ranking: ``clean_run`` already in :func:`~robustir.metrics.trec_eval_order`
            (``{qid: [doc_id, …]}``, :func:`rankings`), so that a clean run compared with many
            perturbed runs is sorted once; computed when ``None``.

    Returns:
        DataFrame indexed by query id with columns ``Jaccard@{k}``, ``RBO@{rbo_depth}``,
        ``KendallTau@{k}``.

    Raises:
        ValueError: The runs cover different query ids.
    """
    if set(clean_run) != set(perturbed_run):
        example = sorted(set(clean_run) ^ set(perturbed_run))[:3]
        raise ValueError(f"the clean and perturbed runs cover different queries (e.g. {example})")
    if clean_ranking is None:
        clean_ranking = rankings(clean_run)
    rows = {}
    for qid in clean_run:
        clean = clean_ranking[qid]
        perturbed = trec_eval_order(perturbed_run[qid])
        rows[qid] = {
            f"Jaccard@{k}": jaccard_at_k(clean, perturbed, k),
            f"RBO@{rbo_depth}": rank_biased_overlap(clean[:rbo_depth], perturbed[:rbo_depth], p),
            f"KendallTau@{k}": kendall_tau_union(clean, perturbed, k),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "query_id"
    return frame
