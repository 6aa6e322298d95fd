"""Dataset- and query-level factors of the generalizability analysis (protocol §3.1).

Task type and corpus type are between-dataset factors that the dataset registry
(:data:`robustir.data.DATASETS`) declares for the 27 dataset entries of the study; query type is
the query-level NF-CATS label (protocol §3.2, labelled by :mod:`robustir.query_types`). The
display orders are the ones the study's code prints tables and figures in.

Used by the book chapter *Generalizability* (``notebooks/generalizability.py``).
"""

from __future__ import annotations

import pandas as pd

from robustir.data import DATASETS, STUDY_DATASETS

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

TASK_TYPE: dict[str, str] = {key: DATASETS[key].task_type for key in STUDY_DATASETS}
"""Task type of each of the 27 dataset entries (protocol §3.1, 11 levels), from the registry."""

CORPUS_TYPE: dict[str, str] = {key: DATASETS[key].corpus_type for key in STUDY_DATASETS}
"""Corpus type of each of the 27 dataset entries (protocol §3.1, 5 levels), from the registry."""

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
