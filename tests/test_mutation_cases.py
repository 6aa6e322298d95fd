"""One test per bug of issue 16's mutation table, each against a hand computation or an
independent reference, never the code's own formula.

Each test names the mutation it exists for; every one was checked to fail with that mutation
applied and to pass without it (the issue's closing note lists the before/after).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from robustir.metrics import per_query_metrics
from robustir.metrics.poisoning import ties_at_cutoff
from robustir.metrics.stability import query_change_fractions
from robustir.models import get_model_spec
from robustir.perturb.reorder import WordInnerSwap
from robustir.perturb.typos import RandomCharacterSubstitution
from robustir.perturb.words import query_words
from robustir.stats.resampling import bootstrap_drop_rates

# -- metrics/__init__.py: MRR@k cuts the ranking in trec_eval order, not in file order ------------


def test_mrr_at_k_cuts_in_score_order_when_the_file_order_disagrees():
    # the relevant document comes last in the run's own order but has the highest score
    run = {"q": {"d0": 0.1, "d1": 0.2, "d2": 0.3, "r": 0.9}}
    frame = per_query_metrics({"q": {"r": 1}}, run, ["MRR@1", "MRR@3"])
    assert frame.loc["q"].tolist() == [1.0, 1.0]  # ranking r, d2, d1, d0: r at rank 1


def test_mrr_at_k_breaks_a_tie_at_the_cut_by_doc_id_descending():
    # a and b tie; trec_eval ranks b (the larger id) first, so a is at rank 2: cut away at k = 1
    run = {"q": {"a": 0.5, "b": 0.5}}
    frame = per_query_metrics({"q": {"a": 1}}, run, ["MRR@1", "MRR@2"])
    assert frame.loc["q"].tolist() == [0.0, 0.5]


# -- metrics/stability.py: the direction of a per-query change -----------------------------------


def test_change_fractions_tell_a_drop_from_a_rise():
    # by hand: a, b, c fall; d rises; e stays → 3/5 drop, 1/5 rise, 1/5 equal
    clean = pd.Series({"a": 0.9, "b": 0.5, "c": 0.4, "d": 0.1, "e": 0.3})
    perturbed = pd.Series({"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.8, "e": 0.3})
    assert query_change_fractions(clean, perturbed) == {
        "drop": pytest.approx(0.6), "equal": pytest.approx(0.2), "rise": pytest.approx(0.2)}


# -- stats/resampling.py: the bootstrap interval has the coverage it is labelled with ------------


def test_bootstrap_interval_equals_the_binomial_quantiles():
    """Clean scores all 1, 30 of 100 perturbed scores 0 and the others 1: a resample's drop rate
    is (zeros drawn) / 100, and the zeros drawn are Binomial(100, 0.3). So the 95% percentile
    interval is [F⁻¹(0.025), F⁻¹(0.975)] / 100 = [0.21, 0.39] of that binomial (scipy); a 90%
    interval labelled 95% would be [0.23, 0.38]."""
    n, zeros = 100, 30
    clean, perturbed = np.ones(n), np.ones((1, n))
    perturbed[0, :zeros] = 0.0
    binomial = scipy.stats.binom(n, zeros / n)
    for confidence in (0.95, 0.90):
        (per_seed,), _ = bootstrap_drop_rates(clean, perturbed, rng=np.random.default_rng(0),
                                              n_resamples=20_000, confidence=confidence)
        tail = (1 - confidence) / 2
        assert per_seed.estimate == pytest.approx(0.3)
        assert per_seed.low * n == pytest.approx(binomial.ppf(tail), abs=0.5)
        assert per_seed.high * n == pytest.approx(binomial.ppf(1 - tail), abs=0.5)
        assert per_seed.confidence == confidence


# -- encode.py: prompt attachment, normalisation and mean pooling, against hand pooling ----------


def test_a_prompt_is_attached_without_a_separator():
    """Protocol §1.2: the prompt is prepended as is. SmolLM2's byte-level tokenizer keeps
    spaces, so a separator slipped in changes the tokens and the embedding."""
    from robustir.encode import Encoder

    encoder = Encoder(get_model_spec("smollm2"), progress=False)
    prompt = "Instruct: find evidence\nQuery:"
    attached = encoder.encode_texts(["vitamin d"], prompt)
    by_hand = encoder.encode_texts([prompt + "vitamin d"])
    np.testing.assert_allclose(attached, by_hand, atol=1e-5)
    spaced = encoder.encode_texts([prompt + " vitamin d"])
    assert not np.allclose(attached, spaced, atol=1e-3)  # the test can see a space


TEXTS = ["Vitamin D deficiency raises the risk of fractures.",
         "x",
         "Aspirin lowers the risk of a second stroke in older adults, in a trial of 2,000 people."]


def _hand_mean_pooled(texts: list[str]) -> np.ndarray:
    """MiniLM's mean over each text's own tokens, one text per forward pass (so no padding),
    straight from transformers: the reference for the encoder's batched pooling."""
    from transformers import AutoModel, AutoTokenizer

    location = get_model_spec("minilm").weights_location()
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, dtype=torch.float32).eval()
    vectors = []
    with torch.inference_mode():
        for text in texts:
            tokens = tokenizer(text, return_tensors="pt")
            vectors.append(model(**tokens).last_hidden_state[0].mean(dim=0).numpy())
    return np.stack(vectors)


@pytest.fixture(scope="module")
def hand_pooled() -> np.ndarray:
    return _hand_mean_pooled(TEXTS)


def test_mean_pooling_of_a_padded_batch_equals_hand_pooling_of_each_text(hand_pooled):
    from robustir.encode import Encoder

    # one batch: "x" is padded to the longest text; no cache, so the model really runs
    batched = Encoder(get_model_spec("minilm"), progress=False, batch_size=8).encode_texts(TEXTS)
    expected = hand_pooled / np.linalg.norm(hand_pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(batched, expected, atol=1e-5)


def test_a_dot_product_system_keeps_its_unnormalised_vectors(hand_pooled):
    from robustir.encode import Encoder

    # Contriever's path (normalize = False, score = dot) on MiniLM's weights
    spec = replace(get_model_spec("minilm"), normalize=False, score="dot")
    vectors = Encoder(spec, progress=False, batch_size=8).encode_texts(TEXTS)
    np.testing.assert_allclose(vectors, hand_pooled, atol=1e-5)
    norms = np.linalg.norm(vectors, axis=1)
    assert np.all(np.abs(norms - 1.0) > 0.1), norms  # far from unit length: nothing normalised


# -- experiments/evaluation.py: ArguAna's self-matches ------------------------------------------


def _write_beir(folder: Path, corpus: dict[str, str], queries: dict[str, str],
                qrels: dict[str, dict[str, int]]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in corpus.items()))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items()))
    return folder


# ArguAna's shape: each query is itself an argument of the corpus, under the same id, and its
# relevant document is the counter-argument.
ARGUMENTS = {
    "a1": "school uniforms reduce bullying and social pressure among pupils",
    "c1": "uniforms do not reduce bullying among pupils",
    "a2": "nuclear power is a safe low carbon energy source",
    "c2": "nuclear power leaves waste that stays dangerous for millennia",
    "z1": "tax on sugar in soft drinks",
}


@pytest.mark.parametrize("name, removed", [("arguana", True), ("scifact", False)])
def test_self_matches_are_removed_on_arguana_only(tmp_path, name, removed):
    from robustir.experiments.evaluation import evaluate

    folder = _write_beir(tmp_path / name, ARGUMENTS, {"a1": ARGUMENTS["a1"], "a2": ARGUMENTS["a2"]},
                         {"a1": {"c1": 1}, "a2": {"c2": 1}})
    result = evaluate("bm25", folder, progress=False)
    assert result.params["remove_self_matches"] is removed
    assert all((qid in hits) is not removed for qid, hits in result.run.items())
    # by hand: the query's own text ranks first; without it the counter-argument is at rank 1
    # (nDCG@10 = 1), with it at rank 2 (nDCG@10 = 1 / log2(3))
    expected = 1.0 if removed else 1 / math.log2(3)
    assert result.per_query["nDCG@10"].tolist() == pytest.approx([expected, expected])


# -- metrics/poisoning.py: a tie at the cutoff needs a hit below it -------------------------------


def test_a_query_with_exactly_k_hits_has_no_tie_at_k():
    run = {
        "k_hits_tied": {"a": 0.5, "b": 0.5},  # tie inside the top 2, nothing below rank 2
        "k_hits": {"a": 0.9, "b": 0.4},
        "k_plus_one": {"a": 0.9, "b": 0.4, "c": 0.4},  # the 2nd score continues at rank 3
    }
    # by hand, per cutoff: k = 1 → "k_hits_tied" (0.5 = 0.5 at ranks 1 and 2); k = 2 → "k_plus_one"
    assert ties_at_cutoff(run, [1, 2]) == {"ASR@1": 1, "ASR@2": 1}


# -- perturb/reorder.py: a word is never swapped with itself ----------------------------------


def test_reordering_draws_a_partner_other_than_the_word_itself():
    words = query_words("alpha beta gamma")
    partners = {index: [] for index in range(3)}
    for seed in range(300):
        for index in range(3):
            (edit,) = WordInnerSwap().edits(words, index, random.Random(seed))
            assert index in edit and len(edit) == 2, edit  # two positions exchange their words
            (partner,) = set(edit) - {index}
            partners[index].append(partner)
    # uniform over the two other words: each drawn 150 ± 40 times in 300 (±4.6 sd)
    for index, drawn in partners.items():
        counts = np.bincount(drawn, minlength=3)
        assert counts[index] == 0 and all(110 <= c <= 190 for i, c in enumerate(counts) if i != index)


def test_reordering_always_changes_a_query_of_distinct_words():
    text = "alpha beta gamma delta"
    assert all(WordInnerSwap()(text, random.Random(seed)) != text for seed in range(200))


# -- perturb/augment.py: floor(10% of the words), at least one ------------------------------


@pytest.mark.parametrize("n_words, edited", [(9, 1), (10, 1), (15, 1), (16, 1), (19, 1)])
def test_a_query_under_20_words_gets_exactly_one_word_edited(n_words, edited):
    # floor(0.1 × 16) = 1 and floor(0.1 × 19) = 1; rounding would edit two words from 15 on
    text = " ".join(f"term{chr(97 + i)}{chr(97 + i)}" for i in range(n_words))  # distinct, eligible
    for seed in range(20):
        variant = RandomCharacterSubstitution()(text, random.Random(seed))
        changed = [a for a, b in zip(text.split(), variant.split()) if a != b]
        assert len(changed) == edited, (seed, variant)


def test_a_query_of_26_words_gets_two_editing_steps():
    # floor(0.1 × 26) = 2 steps; a later step may re-edit the first word, so 1 or 2 words change
    # and over 40 seeds both happen with distinct words (a re-edit has probability 1/26)
    text = " ".join(f"term{chr(97 + i)}{chr(97 + i)}" for i in range(26))
    counts = set()
    for seed in range(40):
        variant = RandomCharacterSubstitution()(text, random.Random(seed))
        counts.add(sum(a != b for a, b in zip(text.split(), variant.split())))
    assert counts <= {1, 2} and 2 in counts


# -- stats/mixed.py: marginal-mean standard errors and intervals without R --------------------
#
# The R-free hand cases are in tests/test_mixed_inference.py (a balanced randomized-block
# design): test_system_marginal_mean_se_df_and_interval_by_hand fails when the standard errors
# ignore the covariance of the coefficients, test_asymptotic_intervals_are_two_sided_z when the
# interval uses a one-sided quantile.
