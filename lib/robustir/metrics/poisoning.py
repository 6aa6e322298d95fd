"""Attack success rate of corpus poisoning, with an explicit tie rule (protocol §5.3).

ASR@k is the share of queries whose top k contains at least one adversarial passage, i.e. a
doc id starting with ``adv_doc``. The top k depends on how a tie between an adversarial and a
real passage is broken, which the study left to the search output order (§8.1 row 11). Here the
rule is a parameter:

* ``adversarial_loses`` (default; Zhong et al. 2023): among equal scores real passages rank
  first; within each kind the run's order is kept.
* ``adversarial_wins``: among equal scores adversarial passages rank first.
* ``trec_eval``: score descending, then doc id descending as strings; ``adv_doc…`` then wins
  against numeric ids and loses against ``doc…`` ids.
* ``run_order``: a stable sort by score over the run's own order, which is what the study's
  ``sorted(…, reverse=True)`` over the search output does.

A query with fewer than k hits is judged on the hits it has; a query with no hit counts as a
failure. :func:`ties_at_cutoff` counts the queries whose k-th score is shared with a passage
ranked below k, the cases where the rule can matter.

Used in the book chapter "Corpus poisoning".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

__all__ = [
    "ADVERSARIAL_PREFIX",
    "ASR_CUTOFFS",
    "TIE_RULES",
    "attack_success_rate",
    "per_query_attack_success",
    "rank_with_tie_rule",
    "ties_at_cutoff",
]

#: Doc-id prefix of adversarial passages (the study's ``adv_doc_{file}_{cluster}``).
ADVERSARIAL_PREFIX = "adv_doc"
#: The study's cutoffs (§5.3 step 4); ASR@20 × 100 is the reported value.
ASR_CUTOFFS = (5, 10, 20, 50)
#: Tie rules accepted by the functions of this module.
TIE_RULES = ("adversarial_loses", "adversarial_wins", "trec_eval", "run_order")

Run = Mapping[str, Mapping[str, float]]


def _check(cutoffs: Iterable[int], tie_rule: str) -> list[int]:
    if tie_rule not in TIE_RULES:
        raise ValueError(f"unknown tie rule {tie_rule!r}; use one of {', '.join(TIE_RULES)}")
    cutoffs = list(cutoffs)
    bad = [k for k in cutoffs if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if bad or not cutoffs:
        raise ValueError(f"cutoffs must be positive integers, got {cutoffs}")
    return cutoffs


def rank_with_tie_rule(
    hits: Mapping[str, float],
    tie_rule: str = "adversarial_loses",
    *,
    adversarial_prefix: str = ADVERSARIAL_PREFIX,
) -> list[str]:
    """Doc ids of one query's hits, best first, ties broken by ``tie_rule``.

    Args:
        hits: ``{doc_id: score}`` in the run's order (the search output order).
        tie_rule: One of :data:`TIE_RULES` (see the module docstring).
        adversarial_prefix: Doc ids starting with it are adversarial.

    Returns:
        All doc ids of ``hits``, ranked.

    Example:
        >>> rank_with_tie_rule({"adv_doc_0_0": 0.5, "d1": 0.5, "d2": 0.9})
        ['d2', 'd1', 'adv_doc_0_0']
    """
    _check([1], tie_rule)
    ids = list(hits)
    if tie_rule == "trec_eval":
        return sorted(ids, key=lambda d: (hits[d], d), reverse=True)
    if tie_rule == "run_order":
        return sorted(ids, key=lambda d: hits[d], reverse=True)
    # stable sorts: the run's order survives inside each (score, kind) group
    adversarial_last = tie_rule == "adversarial_loses"
    return sorted(
        ids,
        key=lambda d: (-hits[d], d.startswith(adversarial_prefix) == adversarial_last),
    )


def per_query_attack_success(
    run: Run,
    cutoffs: Iterable[int] = ASR_CUTOFFS,
    *,
    tie_rule: str = "adversarial_loses",
    adversarial_prefix: str = ADVERSARIAL_PREFIX,
) -> pd.DataFrame:
    """Per query, 1.0 when an adversarial passage is in its top k, else 0.0.

    Args:
        run: ``{qid: {doc_id: score}}`` over the poisoned corpus; every query of the run
            counts, a query with no hits as a failure.
        cutoffs: The k of ASR@k.
        tie_rule: One of :data:`TIE_RULES`.
        adversarial_prefix: Doc ids starting with it are adversarial.

    Returns:
        DataFrame indexed by query id (sorted), one column ``ASR@k`` per cutoff.
    """
    cutoffs = _check(cutoffs, tie_rule)
    rows = {}
    for qid, hits in run.items():
        ranked = rank_with_tie_rule(hits, tie_rule, adversarial_prefix=adversarial_prefix)
        first = next(
            (rank for rank, d in enumerate(ranked, 1) if d.startswith(adversarial_prefix)),
            None,
        )
        rows[qid] = {f"ASR@{k}": float(first is not None and first <= k) for k in cutoffs}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=[f"ASR@{k}" for k in cutoffs])
    frame.index.name = "query_id"
    return frame.sort_index()


def attack_success_rate(
    run: Run,
    cutoffs: Iterable[int] = ASR_CUTOFFS,
    *,
    tie_rule: str = "adversarial_loses",
    adversarial_prefix: str = ADVERSARIAL_PREFIX,
) -> dict[str, float]:
    """ASR@k for each cutoff: the share of the run's queries with an adversarial id in the top k.

    Values lie in [0, 1] (the study reports ×100). See :func:`per_query_attack_success`.

    Raises:
        ValueError: The run has no query, a cutoff is not a positive integer, or the tie rule
            is unknown.
    """
    if not run:
        raise ValueError("the run has no query; ASR@k is undefined")
    per_query = per_query_attack_success(
        run, cutoffs, tie_rule=tie_rule, adversarial_prefix=adversarial_prefix
    )
    return {column: float(per_query[column].mean()) for column in per_query.columns}


def ties_at_cutoff(run: Run, cutoffs: Iterable[int] = ASR_CUTOFFS) -> dict[str, int]:
    """Queries whose k-th score equals the score of a hit ranked below k, per cutoff.

    Only such queries can change their ASR@k with the tie rule. A query with at most k hits
    has no tie at k.

    Returns:
        ``{"ASR@k": count}``.
    """
    cutoffs = _check(cutoffs, "run_order")
    counts = {f"ASR@{k}": 0 for k in cutoffs}
    for hits in run.values():
        scores = sorted(hits.values(), reverse=True)
        for k in cutoffs:
            if len(scores) > k and scores[k - 1] == scores[k]:
                counts[f"ASR@{k}"] += 1
    return counts
