"""The synonymizing family: WordNet swap, sentence-similarity windows, embedding-neighbour swap."""

from __future__ import annotations

import random

import numpy as np
import pytest
from robustir.perturb import query_words
from robustir.perturb.augment import Candidate
from robustir.perturb.family import FamilyUnavailable
from robustir.perturb.stopwords import ENGLISH_STOPWORD_SET
from robustir.perturb.synonyms import (
    EmbeddingNeighbourSwap,
    RememberedSentences,
    SentenceSimilarity,
    WordEmbedding,
    WordNetSwap,
    check_wordnet,
    restore_case,
    text_window,
    wordnet_synonyms,
)


@pytest.fixture(scope="module")
def wordnet():
    try:
        check_wordnet()
    except FamilyUnavailable as error:
        pytest.skip(error.reason)


def character_trigram_encoder(texts):
    """A small, real sentence encoder: unit-norm counts of hashed character trigrams."""
    vectors = np.zeros((len(texts), 512), dtype=np.float32)
    for row, text in enumerate(texts):
        padded = f"  {text.lower()} "
        for i in range(len(padded) - 2):
            vectors[row, sum(map(ord, padded[i : i + 3])) % 512] += 1
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_wordnet_synonyms_match_the_documented_example(wordnet):
    # environment.md §8.1: the lemmas of "car"; multi-word ones and the word itself are excluded
    assert wordnet_synonyms("car") == ("auto", "automobile", "gondola", "machine", "motorcar", "railcar")


def test_wordnet_swap_replaces_one_non_stopword_by_a_wordnet_synonym(wordnet):
    text = "the car is very fast"
    seen = set()
    for seed in range(12):
        variant = WordNetSwap(None)(text, random.Random(seed))
        before, after = [w.text for w in query_words(text)], [w.text for w in query_words(variant)]
        diff = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(diff) == 1
        old, new = diff[0]
        assert old not in ENGLISH_STOPWORD_SET and new in wordnet_synonyms(old)
        seen.add(old)
    assert seen == {"car", "fast"}  # both eligible words get drawn over seeds


def test_text_window_is_15_words_centred_and_clamped():
    text = " ".join(f"w{i}" for i in range(20))
    words = query_words(text)

    def window(index):
        return [w.text for w in query_words(text_window(words, text, index, 15))]

    assert window(0) == [f"w{i}" for i in range(15)]
    assert window(10) == [f"w{i}" for i in range(3, 18)]
    assert window(19) == [f"w{i}" for i in range(5, 20)]
    assert len(window(7)) == 15


def test_sentence_similarity_is_skipped_below_15_words_and_applied_from_15():
    reject_all = SentenceSimilarity(character_trigram_encoder, threshold=1.01)
    short = "alpha beta gamma"
    assert reject_all(short, [Candidate("alpha beta delta", (2,))]) == [True]
    long = " ".join(["alpha", "beta", "gamma", "delta", "epsilon"] * 3)  # 15 words
    swapped = long.replace("gamma", "kappa", 1)
    assert reject_all(long, [Candidate(swapped, (2,))]) == [False]
    keep_similar = SentenceSimilarity(character_trigram_encoder, threshold=0.7)
    assert keep_similar(long, [Candidate(swapped, (2,)), Candidate("zz " * 14 + "zz", (2,))]) == [True, False]


def test_remembered_sentences_encode_each_distinct_text_once():
    calls = []

    def counting_encoder(texts):
        calls.append(list(texts))
        return character_trigram_encoder(texts)

    remembered = RememberedSentences(counting_encoder, max_texts=3)
    texts = ["alpha beta", "gamma", "alpha beta"]
    np.testing.assert_array_equal(remembered(texts), character_trigram_encoder(texts))
    assert calls == [["alpha beta", "gamma"]]
    remembered(["gamma", "delta"])
    assert calls[-1] == ["delta"]
    remembered(["epsilon", "zeta"])  # over max_texts: forgotten, then these two are kept
    remembered(["alpha beta"])
    assert calls[-2:] == [["epsilon", "zeta"], ["alpha beta"]]


def test_lazy_constraint_batches_choose_the_survivor_of_filter_then_choose(wordnet):
    # augment checks candidates in batches of 1, 2, 4, ...; the survivor must be the first
    # passing candidate of the permutation, as if every candidate had been filtered first
    long = "the car " + " ".join(["engine"] * 14)
    seen = []

    def reject_first_three(texts):
        vectors = character_trigram_encoder(texts)
        half = len(texts) // 2
        for row in range(half, len(texts)):  # candidate windows
            seen.append(texts[row])
            if len(seen) <= 3:
                vectors[row] = -vectors[row - half]
        return vectors

    variant = WordNetSwap(SentenceSimilarity(reject_first_three))(long, random.Random(3))
    edits = [{1: s} for s in wordnet_synonyms("car")] + [
        {i: s} for i in range(2, 16) for s in wordnet_synonyms("engine")]
    order = random.Random(3).sample(edits, len(edits))
    (index, synonym), = order[3].items()
    words = long.split()
    words[index] = synonym
    assert variant == " ".join(words)
    assert len(seen) == 1 + 2 + 4  # three rejected, then the batch of four that holds the survivor


def test_wordnet_swap_under_a_rejecting_constraint_keeps_long_queries(wordnet):
    long = "the car " + " ".join(["engine"] * 14)
    assert WordNetSwap(SentenceSimilarity(character_trigram_encoder, threshold=1.01))(long, random.Random(0)) == long
    short = "the car engine"
    assert WordNetSwap(SentenceSimilarity(character_trigram_encoder, threshold=1.01))(short, random.Random(0)) != short


def toy_embedding():
    vectors = np.array([[1.0, 0.0], [0.9, np.sqrt(1 - 0.81)], [0.5, np.sqrt(0.75)], [0.0, 1.0]], dtype=np.float32)
    return WordEmbedding(("car", "auto", "cat", "the"), vectors, "hand-made 2-d vectors")


def test_embedding_swap_keeps_neighbours_above_the_cosine_threshold_and_restores_case():
    embedding = toy_embedding()
    embedding.find_neighbours(["cat", "bus", "car"], 2)  # one matrix product for the three
    assert [w for w, _ in embedding.neighbours("car", 2)] == ["auto", "cat"]
    # cat · the = 0.866, cat · auto = 0.45 + 0.866 · 0.436 = 0.828, cat · car = 0.5
    assert [w for w, _ in embedding.neighbours("cat", 2)] == ["the", "auto"]
    assert embedding.neighbours("bus", 2) == []
    assert embedding.neighbours("car", 2)[0][1] == pytest.approx(0.9, abs=1e-6)
    swap = EmbeddingNeighbourSwap(embedding, max_candidates=3, min_cos_sim=0.8)
    assert {swap("Car the", random.Random(s)) for s in range(10)} == {"Auto the"}
    assert EmbeddingNeighbourSwap(embedding, min_cos_sim=0.95)("car", random.Random(0)) == "car"
    assert swap("bus", random.Random(0)) == "bus"  # unknown word: no candidate
    assert restore_case("auto", "CAR") == "AUTO" and restore_case("auto", "car") == "auto"


def test_minilm_word_embedding_and_synonym_family(wordnet):
    from robustir.encode import Encoder
    from robustir.models import get_model_spec
    from robustir.perturb import build_family, generate_variations

    encoder = Encoder(get_model_spec("minilm"), progress=False)
    family = build_family("synonym", encoder=encoder)
    embedding = family.generators[0].embedding
    assert "cancer" in embedding.words and not any(w.startswith("##") for w in embedding.words)
    neighbours = dict(embedding.neighbours("cancer", 15))
    assert neighbours["cancers"] >= 0.8 > neighbours["tumor"]
    assert "deviation" in family.parameters["sentence_encoder"]
    queries = {"a": "aspirin lowers stroke risk", "b": "protein folding in cells"}
    variants = generate_variations(queries, family, 5, dataset="toy")
    assert [g.name for g in family.generators] == ["embedding_swap", "wordnet_swap"]
    for v in variants.variations.values():
        if v.changed and v.generator == "wordnet_swap":
            old, new = [(a.text, b.text) for a, b in zip(query_words(v.original), query_words(v.text)) if a.text != b.text][0]
            assert new in wordnet_synonyms(old)


def test_a_rehearsal_batches_the_windows_and_changes_no_variant(wordnet):
    from robustir.perturb import generate_variations
    from robustir.perturb.family import Family

    words = ["cell", "growth", "protein", "signal", "tumour", "blood", "pressure", "heart", "drug", "risk"]
    queries = {f"q{i}": " ".join(random.Random(i).choices(words, k=16 + i % 5)) for i in range(12)}
    calls = []

    def counting_encoder(texts):
        calls.append(len(texts))
        return character_trigram_encoder(texts)

    def family(constraint):
        return Family("synonym", "Synonymizing", (WordNetSwap(constraint),), {})

    plain = generate_variations(queries, family(SentenceSimilarity(character_trigram_encoder, 0.9)), 7, dataset="toy")
    batched = generate_variations(
        queries, family(SentenceSimilarity(RememberedSentences(counting_encoder), 0.9)), 7, dataset="toy")
    assert {q: v.text for q, v in batched.variations.items()} == {q: v.text for q, v in plain.variations.items()}
    assert sum(v.changed for v in plain.variations.values()) >= 6
    # one batch after the rehearsal, then a few small calls where a first-drawn candidate failed
    assert calls[0] > 12 and len(calls) < 12
