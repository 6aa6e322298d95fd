"""Dataset- and query-level factors of the generalizability analysis (protocol §3.1).

Task type and corpus type are between-dataset factors that the dataset registry
(:data:`robustir.data.DATASETS`) declares for the 27 dataset entries of the study; query type is
the query-level NF-CATS label (protocol §3.2). The display orders are the ones the study's code
prints tables and figures in.

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


NF_CATS_MODEL_ID = "Lurunchik/nf-cats"
"""Model-hub id of the NF-CATS query-type classifier (protocol §3.2)."""

NF_CATS_TOKENIZER_ID = "deepset/roberta-base-squad2"
"""Tokenizer the study pairs with NF-CATS (protocol §3.2)."""


class QueryTypeClassifierUnavailable(RuntimeError):
    """The NF-CATS classifier cannot be loaded (no model hub access and no local copy)."""


def query_type_classifier(
    model_id: str = NF_CATS_MODEL_ID,
    *,
    tokenizer_id: str = NF_CATS_TOKENIZER_ID,
    max_length: int = 512,
    device: str = "cpu",
):
    """Load the NF-CATS query-type classifier by hub id (protocol §3.2).

    Used by the chapter *Generalizability*, which reports the query-type factor as unavailable
    when this raises.

    Args:
        model_id: Hub id or local directory of the RoBERTa sequence classifier.
        tokenizer_id: Hub id or local directory of its tokenizer.
        max_length: Truncation length in tokens (the study: 512).
        device: Torch device for inference.

    Returns:
        A function mapping a list of raw query texts (no prompt) to their NF-CATS labels
        (argmax of the logits through ``config.id2label``; one label per query).

    Raises:
        QueryTypeClassifierUnavailable: The model or tokenizer is not in the local cache and the
            hub cannot be reached (e.g. ``HF_HUB_OFFLINE=1``); the message says how to get it.
    """
    try:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_id)
        model = AutoModelForSequenceClassification.from_pretrained(model_id).to(device).eval()
    except (OSError, ValueError) as error:
        raise QueryTypeClassifierUnavailable(
            f"cannot load the NF-CATS classifier {model_id!r} (tokenizer {tokenizer_id!r}): "
            f"{error.__class__.__name__}. Download both with hub access "
            "(`huggingface-cli download Lurunchik/nf-cats` and deepset/roberta-base-squad2) or "
            "pass local directories; without it the query-type factor is unavailable"
        ) from error

    def classify(texts: list[str]) -> list[str]:
        labels: list[str] = []
        with torch.no_grad():
            for start in range(0, len(texts), 32):
                batch = tokenizer(
                    list(texts[start : start + 32]), truncation=True, max_length=max_length,
                    padding=True, return_tensors="pt",
                ).to(device)
                predicted = model(**batch).logits.argmax(dim=-1).tolist()
                labels.extend(model.config.id2label[i] for i in predicted)
        return labels

    return classify
