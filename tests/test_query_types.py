"""The study's NF-CATS head (protocol §3.2) with random weights, its loader, and its offline error."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from transformers import AutoModel, RobertaConfig  # noqa: E402

from robustir.query_types import (  # noqa: E402
    NF_CATS_LABELS,
    NF_CATS_MODEL_ID,
    QueryTypeClassifierUnavailable,
    RobertaNFQAClassification,
    classify_query_types,
    query_type_classifier,
)
from robustir.stats.factors import QUERY_TYPE_ORDER  # noqa: E402


def tiny_config(vocab_size: int = 100, pad_token_id: int = 1) -> RobertaConfig:
    """A two-layer RoBERTa of width 32 with the NF-CATS labels in the checkpoint's order."""
    return RobertaConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=80, pad_token_id=pad_token_id,
        id2label=dict(enumerate(NF_CATS_LABELS)), label2id={l: i for i, l in enumerate(NF_CATS_LABELS)},
    )


def tiny_model(**config) -> RobertaNFQAClassification:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return RobertaNFQAClassification(tiny_config(**config)).eval()


def test_labels_are_the_protocol_eight_in_the_checkpoint_order():
    assert set(NF_CATS_LABELS) == set(QUERY_TYPE_ORDER) and len(NF_CATS_LABELS) == 8
    # id2label order: the model card's, i.e. by frequency in the NF-CATS training data
    assert NF_CATS_LABELS == ("NOT-A-QUESTION", "FACTOID", "DEBATE", "EVIDENCE-BASED",
                              "INSTRUCTION", "REASON", "EXPERIENCE", "COMPARISON")


def test_head_has_the_checkpoint_layout_and_output_shapes():
    model = tiny_model()
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items()
              if not name.startswith("embedder.")}
    # the names under which Lurunchik/nf-cats stores its head (utils/nfqa_model.py)
    assert shapes == {
        "pooler.dense.weight": (32, 32), "pooler.dense.bias": (32,),
        "feedforward.linear_layers.0.weight": (768, 32), "feedforward.linear_layers.0.bias": (768,),
        "feedforward.linear_layers.1.weight": (512, 768), "feedforward.linear_layers.1.bias": (512,),
        "feedforward.classification_layer.weight": (8, 512),
        "feedforward.classification_layer.bias": (8,),
    }
    assert "embedder.pooler.dense.weight" in model.state_dict()  # stored by the study, unused
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (2, 8)


def test_logits_are_the_mish_head_over_the_pooled_first_token():
    model = tiny_model()
    ids = torch.tensor([[0, 11, 12, 13, 2]])
    with torch.no_grad():
        hidden = model.embedder(ids).last_hidden_state[:, 0]
        pooled = torch.tanh(hidden @ model.pooler.dense.weight.T + model.pooler.dense.bias)
        x = pooled
        for layer in model.feedforward.linear_layers:
            z = x @ layer.weight.T + layer.bias
            x = z * torch.tanh(torch.log1p(torch.exp(z)))  # Mish, by its definition
        head = model.feedforward.classification_layer
        expected = x @ head.weight.T + head.bias
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from robustir.models import get_model_spec

    try:
        return get_model_spec("minilm").weights_location()
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_saved_classifier_loads_and_labels_through_id2label(tmp_path, minilm_tokenizer):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_tokenizer)
    model = tiny_model(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():  # every query's argmax is logit 5, whatever the encoder says
        model.feedforward.classification_layer.weight.zero_()
        model.feedforward.classification_layer.bias.copy_(torch.arange(8) == 5)
    model.save_pretrained(tmp_path / "nf-cats")
    queries = {"q1": "why is the sky blue", "q2": "compare", "q3": "how do I tie a bowline knot"}
    labels = classify_query_types(queries, model_id=tmp_path / "nf-cats",
                                  tokenizer_id=minilm_tokenizer, batch_size=2)
    assert labels == {"q1": "REASON", "q2": "REASON", "q3": "REASON"}
    classify = query_type_classifier(tmp_path / "nf-cats", tokenizer_id=minilm_tokenizer)
    assert classify(["a", "b"]) == ["REASON", "REASON"]


def test_a_checkpoint_without_the_nf_cats_head_is_refused(tmp_path, minilm_tokenizer):
    AutoModel.from_config(tiny_config()).save_pretrained(tmp_path / "plain")  # encoder only
    with pytest.raises(QueryTypeClassifierUnavailable, match="not an NF-CATS checkpoint.*feedforward"):
        query_type_classifier(tmp_path / "plain", tokenizer_id=minilm_tokenizer)


def test_a_checkpoint_with_other_labels_is_refused(tmp_path, minilm_tokenizer):
    config = tiny_config()
    config.id2label = {i: f"LABEL_{i}" for i in range(8)}
    RobertaNFQAClassification(config).save_pretrained(tmp_path / "generic")
    with pytest.raises(QueryTypeClassifierUnavailable, match="LABEL_0.*not the 8 NF-CATS labels"):
        query_type_classifier(tmp_path / "generic", tokenizer_id=minilm_tokenizer)


def test_offline_the_real_classifier_is_unavailable_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(QueryTypeClassifierUnavailable,
                       match="query-type classifier unavailable.*Lurunchik/nf-cats.*huggingface-cli"):
        classify_query_types({"q": "why is the sky blue"})
    with pytest.raises(QueryTypeClassifierUnavailable, match="no-such-classifier.*factor is unavailable"):
        query_type_classifier("robustir-test/no-such-classifier", tokenizer_id="robustir-test/no-such-tokenizer")
    assert NF_CATS_MODEL_ID == "Lurunchik/nf-cats"
