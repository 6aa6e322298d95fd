"""The study's NF-CATS query-type classifier (protocol §3.2): its model class and loader.

The study labels every query with ``Lurunchik/nf-cats`` (Bolotova et al., SIGIR 2022) loaded
into its own head, ``RobertaNFQAClassification`` in ``utils/nfqa_model.py``, not into
``AutoModelForSequenceClassification``: a RoBERTa encoder, a separate RoBERTa pooler (dense +
tanh of the first token), then two linear layers each followed by Mish (768 and 512 units) and a
linear layer to the 8 labels. The checkpoint holds the weights of exactly these modules, so a
stock sequence-classification head would start from random weights and could not give the
study's labels. :class:`RobertaNFQAClassification` rebuilds the head with the checkpoint's
parameter names. The tokenizer is ``deepset/roberta-base-squad2``; the input is the raw query
text (no prompt), truncated to 512 tokens; the label is the argmax of the logits mapped through
``config.id2label``.

The weights come from the model hub only. Offline (``HF_HUB_OFFLINE=1``, no local copy),
loading raises :class:`QueryTypeClassifierUnavailable`, which the chapter *Generalizability*
turns into a sentence and skips the query-type models.

Used by the book chapter *Generalizability* (``notebooks/generalizability.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from transformers import RobertaConfig
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.roberta.modeling_roberta import (
    RobertaModel,
    RobertaPooler,
    RobertaPreTrainedModel,
)

log = logging.getLogger(__name__)

NF_CATS_MODEL_ID = "Lurunchik/nf-cats"
"""Model-hub id of the NF-CATS query-type classifier (protocol §3.2)."""

NF_CATS_TOKENIZER_ID = "deepset/roberta-base-squad2"
"""Tokenizer the study pairs with NF-CATS (protocol §3.2)."""

NF_CATS_LABELS: tuple[str, ...] = (
    "NOT-A-QUESTION",
    "FACTOID",
    "DEBATE",
    "EVIDENCE-BASED",
    "INSTRUCTION",
    "REASON",
    "EXPERIENCE",
    "COMPARISON",
)
"""The 8 NF-CATS labels in the checkpoint's ``id2label`` order (index = logit position).

The order is the one the model card lists, which is also the order of the labels by frequency in
the NF-CATS training set (2,858 NOT-A-QUESTION … 54 COMPARISON), as the AllenNLP vocabulary the
model was trained with numbers them. The checkpoint's own ``config.json`` is not readable
offline; predictions always go through the loaded ``config.id2label``, as in the study.
"""

NF_CATS_HEAD_DIMS: tuple[int, ...] = (768, 512)
"""Widths of the two Mish layers of the study's head (``NFQAClassificationHead`` defaults)."""


class QueryTypeClassifierUnavailable(RuntimeError):
    """The NF-CATS classifier cannot be loaded (no model hub access and no local copy, or a
    checkpoint without the NF-CATS head)."""


class NFQAClassificationHead(nn.Module):
    """Linear + Mish per hidden width, then a linear layer to the labels (no final activation).

    The study's head gives every hidden layer the encoder's width as input, which is only
    well-formed when that width is 768, the first hidden width (RoBERTa-base, the NF-CATS
    encoder). Here each layer takes the previous layer's output: the same network for the
    checkpoint, and one that also works for the small configurations of the tests.

    Args:
        input_dim: Width of the pooled encoder output (``config.hidden_size``).
        num_labels: Number of labels.
        hidden_dims: Widths of the Mish layers.
    """

    def __init__(self, input_dim: int, num_labels: int,
                 hidden_dims: Sequence[int] = NF_CATS_HEAD_DIMS) -> None:
        super().__init__()
        widths = [input_dim, *hidden_dims]
        self.linear_layers = nn.Sequential(
            *(nn.Linear(inputs, outputs) for inputs, outputs in zip(widths, widths[1:]))
        )
        self.classification_layer = nn.Linear(widths[-1], num_labels)
        self.activation = nn.Mish()

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, num_labels), from pooled states of shape (batch, input_dim)."""
        hidden = pooled
        for layer in self.linear_layers:
            hidden = self.activation(layer(hidden))
        return self.classification_layer(hidden)


class RobertaNFQAClassification(RobertaPreTrainedModel):
    """The study's NF-CATS model: RoBERTa encoder, its own pooler, the two-layer Mish head.

    Module names follow the checkpoint (``embedder``, ``pooler``, ``feedforward``), so
    ``from_pretrained("Lurunchik/nf-cats")`` fills every weight. The encoder keeps its own
    pooling layer, as in the study: the checkpoint stores it, and it is not used.

    Args:
        config: A ``RobertaConfig`` with ``num_labels`` and ``id2label`` set (NF-CATS: 8).

    Used by the book chapter *Generalizability*.
    """

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.embedder = RobertaModel(config, add_pooling_layer=True)
        self.pooler = RobertaPooler(config)
        self.feedforward = NFQAClassificationHead(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **encoder_inputs,
    ) -> SequenceClassifierOutput:
        """Logits of shape (batch, num_labels) for token ids of shape (batch, tokens).

        ``encoder_inputs`` (``token_type_ids``, ``position_ids``, …) go to the encoder.
        """
        states = self.embedder(input_ids, attention_mask=attention_mask, **encoder_inputs)
        logits = self.feedforward(self.pooler(states.last_hidden_state))
        return SequenceClassifierOutput(logits=logits)


class QueryTypeClassifier:
    """Label raw query texts with a loaded NF-CATS model (argmax through ``config.id2label``).

    Args:
        model: The classifier, in evaluation mode.
        tokenizer: Its tokenizer (the study: ``deepset/roberta-base-squad2``).
        max_length: Truncation length in tokens (the study: 512).
        batch_size: Queries per forward pass. The study classifies one query at a time; padding
            a batch changes no label, only the work.
        device: Torch device of ``model``.

    Used by the book chapter *Generalizability*.
    """

    def __init__(self, model: RobertaNFQAClassification, tokenizer: Callable, *,
                 max_length: int = 512, batch_size: int = 32, device: str = "cpu") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device

    def __call__(self, texts: Sequence[str]) -> list[str]:
        """One NF-CATS label per text, in order."""
        labels: list[str] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]), truncation=True,
                    max_length=self.max_length, padding=True, return_tensors="pt",
                ).to(self.device)
                predicted = self.model(**batch).logits.argmax(dim=-1).tolist()
                labels.extend(self.model.config.id2label[index] for index in predicted)
        return labels


def query_type_classifier(
    model_id: str | os.PathLike[str] = NF_CATS_MODEL_ID,
    *,
    tokenizer_id: str | os.PathLike[str] = NF_CATS_TOKENIZER_ID,
    max_length: int = 512,
    batch_size: int = 32,
    device: str = "cpu",
) -> QueryTypeClassifier:
    """Load the NF-CATS classifier into the study's head (protocol §3.2).

    Args:
        model_id: Hub id or local directory of the checkpoint.
        tokenizer_id: Hub id or local directory of its tokenizer.
        max_length: Truncation length in tokens (the study: 512).
        batch_size: Queries per forward pass.
        device: Torch device for inference.

    Returns:
        A :class:`QueryTypeClassifier`: a list of raw query texts (no prompt) → their labels.

    Raises:
        QueryTypeClassifierUnavailable: The model or tokenizer is neither in the local cache nor
            reachable on the hub (e.g. ``HF_HUB_OFFLINE=1``), or the checkpoint lacks weights of
            the NF-CATS head, or its labels are not the 8 NF-CATS labels; the message says what
            to do.

    Used by the book chapter *Generalizability*.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_id)
        model, loading = RobertaNFQAClassification.from_pretrained(model_id, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise QueryTypeClassifierUnavailable(
            f"query-type classifier unavailable: cannot load the NF-CATS classifier {model_id!r} "
            f"(tokenizer {tokenizer_id!r}): {error.__class__.__name__}. Download both with hub "
            f"access (`huggingface-cli download {NF_CATS_MODEL_ID}` and {NF_CATS_TOKENIZER_ID}) "
            "or pass local directories; without it the query-type factor is unavailable"
        ) from error
    source = os.fspath(model_id)
    missing = sorted(loading["missing_keys"], key=lambda name: (name.startswith("embedder."), name))
    if missing:  # from_pretrained would leave them random: the labels would be noise
        raise QueryTypeClassifierUnavailable(
            f"query-type classifier unavailable: {source!r} is not an NF-CATS checkpoint; "
            f"{len(missing)} weights of the study's model are missing from it, e.g. {missing[:3]}. "
            f"Pass {NF_CATS_MODEL_ID!r} or a local copy of it"
        )
    labels = set(model.config.id2label.values())
    if labels != set(NF_CATS_LABELS):
        raise QueryTypeClassifierUnavailable(
            f"query-type classifier unavailable: {source!r} labels its outputs "
            f"{sorted(labels)}, not the 8 NF-CATS labels {list(NF_CATS_LABELS)}"
        )
    log.info("NF-CATS classifier %s loaded on %s", source, device)
    return QueryTypeClassifier(model.to(device).eval(), tokenizer, max_length=max_length,
                               batch_size=batch_size, device=device)


def classify_query_types(
    queries: Mapping[str, str],
    *,
    model_id: str | os.PathLike[str] = NF_CATS_MODEL_ID,
    tokenizer_id: str | os.PathLike[str] = NF_CATS_TOKENIZER_ID,
    batch_size: int = 32,
    device: str = "cpu",
) -> dict[str, str]:
    """The NF-CATS query type of every query (protocol §3.2): load, then classify.

    Args:
        queries: ``{query_id: raw query text}``.
        model_id: Hub id or local directory of the checkpoint.
        tokenizer_id: Hub id or local directory of its tokenizer.
        batch_size: Queries per forward pass.
        device: Torch device for inference.

    Returns:
        ``{query_id: label}``, in the order of ``queries``.

    Raises:
        QueryTypeClassifierUnavailable: See :func:`query_type_classifier`.

    Used by the book chapter *Generalizability*.
    """
    classify = query_type_classifier(model_id, tokenizer_id=tokenizer_id,
                                     batch_size=batch_size, device=device)
    return dict(zip(queries, classify(list(queries.values()))))
