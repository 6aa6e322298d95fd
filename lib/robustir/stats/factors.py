"""Dataset- and query-level factors of the generalizability analysis (protocol §3.1).

Task type and corpus type are between-dataset factors assigned by fixed maps over the 27 dataset
entries of the study; query type is the query-level NF-CATS label (protocol §3.2, labelled by
:mod:`robustir.query_types`). The display
orders are the ones the study's code prints tables and figures in.

Used by the book chapter *Generalizability* (``notebooks/generalizability.py``).
"""

from __future__ import annotations

import pandas as pd

TASK_TYPE_ORDER: tuple[str, ...] = (
    "Passage Retrieval",
    "Bio-Medical Retrieval",
    "Question Answering",
    "Duplicate Question Retrieval",
    "Entity Retrieval",
    "Citation-Prediction",
    "Fact Checking",
    "Argument Retrieval",
    "StackExchange Post Retrieval",
    "Code Retrieval",
    "Theorem Retrieval",
)

CORPUS_TYPE_ORDER: tuple[str, ...] = (
    "General Web",
    "Scientific Paper",
    "Wikipedia",
    "Online Community",
    "Domain KB",
)

QUERY_TYPE_ORDER: tuple[str, ...] = (
    "FACTOID",
    "INSTRUCTION",
    "REASON",
    "EVIDENCE-BASED",
    "COMPARISON",
    "EXPERIENCE",
    "DEBATE",
    "NOT-A-QUESTION",
)

_BRIGHT_STACKEXCHANGE = (
    "biology",
    "earth_science",
    "economics",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable_living",
)

TASK_TYPE: dict[str, str] = {
    "msmarco": "Passage Retrieval",
    "trec-covid": "Bio-Medical Retrieval",
    "nfcorpus": "Bio-Medical Retrieval",
    "nq": "Question Answering",
    "hotpotqa": "Question Answering",
    "fiqa": "Question Answering",
    "browsecomp_plus": "Question Answering",
    "quora": "Duplicate Question Retrieval",
    "dbpedia-entity": "Entity Retrieval",
    "scidocs": "Citation-Prediction",
    "fever": "Fact Checking",
    "climate-fever": "Fact Checking",
    "scifact": "Fact Checking",
    "arguana": "Argument Retrieval",
    "webis-touche2020": "Argument Retrieval",
    **{name: "StackExchange Post Retrieval" for name in _BRIGHT_STACKEXCHANGE},
    "leetcode": "Code Retrieval",
    "pony": "Code Retrieval",
    "aops": "Theorem Retrieval",
    "theoremqa_questions": "Theorem Retrieval",
    "theoremqa_theorems": "Theorem Retrieval",
}
"""Task type of each of the 27 dataset entries (protocol §3.1, 11 levels)."""

CORPUS_TYPE: dict[str, str] = {
    "msmarco": "General Web",
    "browsecomp_plus": "General Web",
    "trec-covid": "Scientific Paper",
    "nfcorpus": "Scientific Paper",
    "scidocs": "Scientific Paper",
    "scifact": "Scientific Paper",
    "nq": "Wikipedia",
    "hotpotqa": "Wikipedia",
    "dbpedia-entity": "Wikipedia",
    "fever": "Wikipedia",
    "climate-fever": "Wikipedia",
    "fiqa": "Online Community",
    "quora": "Online Community",
    **{name: "Online Community" for name in _BRIGHT_STACKEXCHANGE},
    "arguana": "Domain KB",
    "webis-touche2020": "Domain KB",
    "leetcode": "Domain KB",
    "pony": "Domain KB",
    "aops": "Domain KB",
    "theoremqa_questions": "Domain KB",
    "theoremqa_theorems": "Domain KB",
}
"""Corpus type of each of the 27 dataset entries (protocol §3.1, 5 levels)."""

TASK_TYPE_REFERENCE = "Question Answering"
"""Reference level of task type in the study's Analysis 2a (protocol §3.4)."""

CORPUS_TYPE_REFERENCE = "Wikipedia"
"""Reference level of corpus type in the study's Analysis 2b (protocol §3.4)."""

QUERY_TYPE_REFERENCE = "FACTOID"
"""Reference level of query type in the study's Analysis 1 (protocol §3.4)."""

MODEL_REFERENCE = "contriever"
"""Reference system of all three analyses (protocol §1.6, §3.4)."""


def dataset_factor(datasets: pd.Series | list[str], factor: str) -> pd.Series:
    """Map dataset names to a dataset-level factor, as an ordered categorical.

    Used by the chapter *Generalizability*.

    Args:
        datasets: Dataset entry names as the study spells them (``"scifact"``, ``"msmarco"``,
            ``"biology"``, ...). Cranfield and other datasets outside the study have no level.
        factor: ``"task_type"`` or ``"corpus_type"``.

    Returns:
        A categorical series (levels in the study's display order) aligned with ``datasets``.

    Raises:
        ValueError: If ``factor`` is unknown or a dataset has no level in the map; the message
            names the datasets and what to do.
    """
    maps = {"task_type": (TASK_TYPE, TASK_TYPE_ORDER), "corpus_type": (CORPUS_TYPE, CORPUS_TYPE_ORDER)}
    if factor not in maps:
        raise ValueError(f"unknown dataset factor {factor!r}; expected one of {sorted(maps)}")
    mapping, order = maps[factor]
    series = pd.Series(datasets, dtype="object")
    unknown = sorted(set(series[~series.isin(list(mapping))]))
    if unknown:
        raise ValueError(
            f"datasets {unknown} have no {factor} in the protocol §3.1 map; drop them before "
            f"adding the factor, or analyse them without it"
        )
    return pd.Series(
        pd.Categorical(series.map(mapping), categories=list(order)), index=series.index, name=factor
    )
