"""Pooling, prompts, padding invariance and the embedding cache, on the offline models."""

import numpy as np
import pytest
import torch

from robustir.cache import EmbeddingCache
from robustir.encode import Encoder, pool
from robustir.models import get_model_spec

TEXTS = [
    "Vitamin D deficiency raises the risk of fractures.",
    "A much longer text, with many more words in it than the first one has, so that the "
    "short one is padded when the two share a batch, whichever side the padding goes.",
    "x",
]


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]


def test_last_token_pooling_left_and_right_padding():
    hidden = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert pool(hidden, left, "last_token").tolist() == [[4.0, 5.0], [10.0, 11.0]]
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(hidden, right, "last_token").tolist() == [[2.0, 3.0], [10.0, 11.0]]


def test_prompt_masked_mean_drops_the_prompt_and_needs_right_padding():
    hidden = torch.tensor([[[10.0], [20.0], [1.0], [3.0], [99.0]]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    assert pool(hidden, mask, "prompt_mean", prompt_length=2).tolist() == [[2.0]]
    with pytest.raises(ValueError, match="right padding"):
        pool(hidden, torch.tensor([[0, 1, 1, 1, 1]]), "prompt_mean", prompt_length=2)


@pytest.mark.parametrize(
    "key", ["minilm", "minilm_cls", "minilm_l3", "smollm2", "smollm2_mean", "smollm2_l15"]
)
def test_embedding_does_not_depend_on_the_batch(key):
    encoder = Encoder(get_model_spec(key), progress=False, batch_size=8)
    prompt = get_model_spec(key).query_prompt("scifact")
    together = encoder.encode_texts(TEXTS, prompt)
    for i, text in enumerate(TEXTS):
        alone = encoder.encode_texts([text], prompt)
        np.testing.assert_allclose(alone[0], together[i], atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_prompt_mean_pooling_is_padding_invariant_on_a_real_model():
    spec = get_model_spec("minilm")
    from dataclasses import replace

    encoder = Encoder(replace(spec, pooling="prompt_mean"), progress=False)
    together = encoder.encode_texts(TEXTS, "Instruct: find evidence\nQuery:")
    alone = encoder.encode_texts(TEXTS[:1], "Instruct: find evidence\nQuery:")
    np.testing.assert_allclose(alone[0], together[0], atol=1e-5)
    plain = Encoder(spec, progress=False).encode_texts(TEXTS[:1], "Instruct: find evidence\nQuery:")
    assert not np.allclose(plain[0], alone[0], atol=1e-3)  # the prompt really was masked


def test_minilm_reproduces_the_sentence_transformers_example():
    # cos = 0.7553 in the sentence-transformers documentation for this pair
    vectors = Encoder(get_model_spec("minilm"), progress=False).encode_texts(
        ["A man is eating food.", "A man is eating a piece of bread."]
    )
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.7553, abs=5e-4)


def test_empty_text_is_encoded_as_pad_token():
    encoder = Encoder(get_model_spec("minilm"), progress=False)
    empty, pad = encoder.encode_texts(["   ", "[PAD]"])
    np.testing.assert_allclose(empty, pad, atol=1e-6)


def test_cache_serves_the_second_encoding(tmp_path):
    corpus = {"d1": {"title": "T", "text": "first"}, "d2": {"title": "", "text": "second"}}
    cache = EmbeddingCache(tmp_path)
    first = Encoder(get_model_spec("minilm"), cache=cache, progress=False)
    a = first.encode_corpus(corpus, "scifact")
    second = Encoder(get_model_spec("minilm"), cache=cache, progress=False)
    b = second.encode_corpus(corpus, "scifact")
    assert second.stats.texts_encoded == 0 and second.stats.cache_hits == 1
    assert b.ids == ["d1", "d2"] and np.array_equal(a.vectors, b.vectors)
    # anything that changes the output changes the key: a different max length misses
    third = Encoder(get_model_spec("minilm"), cache=cache, progress=False, max_length=8)
    third.encode_corpus(corpus, "scifact")
    assert third.stats.cache_misses == 1 and third.stats.texts_encoded == 2


@pytest.mark.parametrize("key", ["bm25", "wordllama"])
def test_only_transformer_models_are_encoders(key):
    with pytest.raises(ValueError, match="not a transformer model.*make_retriever"):
        Encoder(get_model_spec(key))


def test_study_model_offline_fails_with_a_clear_message():
    encoder = Encoder(get_model_spec("contriever"), progress=False)
    with pytest.raises(OSError, match="model hub or a local copy"):
        encoder.encode_texts(["q"])


def test_catalog_siblings_share_one_forward_pass(tmp_path):
    corpus = {"d1": {"title": "Bone", "text": "vitamin d and fractures"}, "d2": {"title": "", "text": "x"}}
    cache = EmbeddingCache(tmp_path)
    first = Encoder(get_model_spec("minilm"), cache=cache, progress=False)
    assert {s.key for s in first.siblings()} == {"minilm_cls", "minilm_l3"}
    first.encode_corpus(corpus, "scifact")
    assert first.stats.texts_encoded == 2  # one pass for the three readings
    for key in ("minilm_cls", "minilm_l3"):
        sibling = Encoder(get_model_spec(key), cache=cache, progress=False)
        cached = sibling.encode_corpus(corpus, "scifact")
        assert sibling.stats.texts_encoded == 0
        direct = Encoder(get_model_spec(key), progress=False).encode_corpus(corpus, "scifact")
        np.testing.assert_allclose(cached.vectors, direct.vectors, atol=1e-6)


def test_a_query_set_encodes_only_texts_it_has_not_embedded(tmp_path):
    # a variant set keeps some queries unchanged: those come from memory, not the model
    encoder = Encoder(get_model_spec("minilm"), cache=EmbeddingCache(tmp_path), progress=False)
    clean = encoder.encode_queries({"q1": "vitamin d and fractures", "q2": "aspirin and stroke"}, "scifact")
    variant = encoder.encode_queries({"q1": "vitamin d and fractrues", "q2": "aspirin and stroke"}, "scifact")
    assert encoder.stats.texts_encoded == 3 and encoder.stats.cache_misses == 2
    np.testing.assert_array_equal(variant.vectors[1], clean.vectors[1])
    direct = Encoder(get_model_spec("minilm"), progress=False).encode_queries(
        {"q1": "vitamin d and fractrues", "q2": "aspirin and stroke"}, "scifact")
    np.testing.assert_allclose(variant.vectors, direct.vectors, atol=1e-6)
    # the siblings' readings of the new text rode along and were stored too
    sibling = Encoder(get_model_spec("minilm_l3"), cache=EmbeddingCache(tmp_path), progress=False)
    sibling.encode_queries({"q1": "vitamin d and fractrues", "q2": "aspirin and stroke"}, "scifact")
    assert sibling.stats.texts_encoded == 0


# Reviewed outputs of the encoder on a fixed batch, by ENCODER_OUTPUT_VERSION: each text's
# vector projected on 4 fixed random directions (numpy seed 2026), rounded to 4 decimals. The
# three texts differ in length, so they are padded in one batch (right for MiniLM, left for
# SmolLM2): padding, pooling, prompting, truncation and normalisation all show here.
VERSION_TEXTS = [
    "Vitamin D deficiency raises the risk of fractures.",
    "Aspirin, taken daily for years by otherwise healthy adults, lowers the risk of a first "
    "stroke but raises the risk of bleeding.",
    "sleep",
]
VERSION_PROMPT = "Instruct: retrieve evidence\nQuery:"
REVIEWED_OUTPUTS = {
    2: {
        "minilm": [[-0.789, 0.8883, -0.6588, -0.163], [-0.4061, -1.1045, -0.7499, -0.3565],
                   [-0.8212, -1.0069, 0.2713, -1.5346]],
        "smollm2": [[0.4508, -0.442, 1.2029, -1.1151], [0.2348, -0.3889, 1.4345, -0.9413],
                    [0.8118, 0.4514, -0.1342, -0.9634]],
    },
}


@pytest.mark.parametrize("key", ["minilm", "smollm2"])
def test_encoder_output_changes_only_with_a_version_bump(key):
    # No cache: the vectors are computed now by this encoder's code (a cached entry would
    # hide a change). A failure means the encoder's output changed: if that is intended, bump
    # ENCODER_OUTPUT_VERSION (so cached embeddings of the old code are never reused) and
    # record the new reviewed projections under the new version.
    from robustir.encode import ENCODER_OUTPUT_VERSION

    assert ENCODER_OUTPUT_VERSION in REVIEWED_OUTPUTS, (
        f"record the reviewed outputs of ENCODER_OUTPUT_VERSION {ENCODER_OUTPUT_VERSION} here")
    encoder = Encoder(get_model_spec(key), progress=False, batch_size=8, cache=None)
    vectors = encoder.encode_texts(VERSION_TEXTS, VERSION_PROMPT)
    directions = np.random.default_rng(2026).standard_normal((vectors.shape[1], 4))
    np.testing.assert_allclose(vectors @ directions, REVIEWED_OUTPUTS[ENCODER_OUTPUT_VERSION][key],
                               atol=2e-3, err_msg="the encoder's output changed without a bump "
                               "of ENCODER_OUTPUT_VERSION")


def test_the_encoder_output_version_is_part_of_every_cache_key(monkeypatch):
    from robustir import encode
    from robustir.cache import fingerprint

    encoder = Encoder(get_model_spec("minilm"), progress=False)
    before = fingerprint(encoder.cache_inputs("prompt"))
    monkeypatch.setattr(encode, "ENCODER_OUTPUT_VERSION", encode.ENCODER_OUTPUT_VERSION + 1)
    assert fingerprint(encoder.cache_inputs("prompt")) != before


def test_bfloat16_encoding_on_a_cpu_is_close_to_float32_and_cached_apart(tmp_path):
    # bfloat16 weights (oneDNN's bf16 kernels on a CPU); states pooled and normalised in float32
    spec = get_model_spec("minilm")
    cache = EmbeddingCache(tmp_path)
    exact = Encoder(spec, device="cpu", dtype="float32", cache=cache, progress=False)
    half = Encoder(spec, device="cpu", dtype="bfloat16", cache=cache, progress=False)
    assert half.model.dtype == torch.bfloat16
    reference, vectors = exact.encode_texts(VERSION_TEXTS), half.encode_texts(VERSION_TEXTS)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert float(np.sum(vectors * reference, axis=1).min()) > 0.999
    assert not np.allclose(vectors, reference, atol=1e-5)  # the weights really were bfloat16
    corpus = {"d1": {"title": "Bone", "text": "vitamin d and fractures"}}
    exact.encode_corpus(corpus, "scifact")
    half.encode_corpus(corpus, "scifact")
    assert exact.stats.cache_misses == half.stats.cache_misses == 1  # one entry per dtype


def test_a_parallel_job_that_dequantised_first_wins_the_race(tmp_path, monkeypatch):
    """Two grid workers dequantise the same GGUF weights on a cold cache: the one that renames
    its copy second finds the target taken and uses it instead of failing."""
    import os

    from robustir import encode

    monkeypatch.setenv("ROBUSTIR_CACHE", str(tmp_path))
    spec = get_model_spec("smollm2")
    replace = os.replace

    def other_job_first(staging, target):
        replace(staging, target)  # the other worker's copy lands ...
        raise OSError(39, "Directory not empty")  # ... and ours cannot take its place

    monkeypatch.setattr(encode.os, "replace", other_job_first)
    location = encode.base_weights_location(spec)
    assert (tmp_path / "models").is_dir() and os.path.isfile(os.path.join(location, "config.json"))
    assert [p.name for p in (tmp_path / "models").iterdir()] == [os.path.basename(location)]


def test_cpu_forwards_hold_as_many_texts_as_keep_the_widest_activation_within_32_mib():
    # MiniLM's widest product is its 1536-wide intermediate layer: 6144 bytes a float32 token,
    # so 32 MiB holds 5461 tokens (21 texts of 256); 3072 bytes a bfloat16 token: 10922 tokens
    spec = get_model_spec("minilm")
    fp32 = Encoder(spec, device="cpu", dtype="float32", progress=False)
    assert [fp32.rows_per_forward(n) for n in (256, 170, 171, 10**6)] == [21, 32, 31, 1]
    assert [fp32.rows_per_forward(50, 101), fp32.rows_per_forward(256, 101)] == [101, 21]
    bf16 = Encoder(spec, device="cpu", dtype="bfloat16", batch_size=64, progress=False)
    assert [bf16.rows_per_forward(n) for n in (256, 170)] == [42, 64]


def test_texts_split_over_several_forwards_get_the_vectors_of_one_forward(monkeypatch):
    from robustir import encode

    encoder = Encoder(get_model_spec("minilm"), device="cpu", progress=False, batch_size=8)
    texts = TEXTS * 3
    tokenised = encoder.tokenize(texts)
    whole_texts = encoder.encode_texts(texts)
    with torch.inference_mode():
        whole_batch = encoder.embed_batch(tokenised["attention_mask"], input_ids=tokenised["input_ids"])
    longest = tokenised["attention_mask"].shape[1]
    limit = 2 * longest * 1536 * 4  # two of the longest texts a forward
    monkeypatch.setattr(encode, "ACTIVATION_LIMIT_BYTES", limit)
    forwards = []
    encoder.model.register_forward_pre_hook(
        lambda module, args, kwargs: forwards.append(tuple(kwargs["attention_mask"].shape)),
        with_kwargs=True)

    split_texts = encoder.encode_texts(texts)
    assert all(rows * tokens * 1536 * 4 <= limit for rows, tokens in forwards)
    assert sum(rows for rows, _ in forwards) == len(texts) and len(forwards) > 2
    np.testing.assert_allclose(split_texts, whole_texts, atol=1e-6)

    forwards.clear()
    with torch.inference_mode():
        split_batch = encoder.embed_batch(tokenised["attention_mask"][:5],
                                          input_ids=tokenised["input_ids"][:5])
    assert [rows for rows, _ in forwards] == [2, 2, 1]  # nearly equal parts, in order
    np.testing.assert_allclose(split_batch, whole_batch[:5], atol=1e-6)
