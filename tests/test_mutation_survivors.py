"""Hand cases that kill the mutants ``make mutation`` found alive in the stability measures and
the query-level resampling: exact error messages, boundaries and the fields of the results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustir.metrics.stability import (
    drop_rates,
    jaccard_at_k,
    kendall_tau_b,
    kendall_tau_union,
    query_change_fractions,
    rank_biased_overlap,
    rank_stability,
)
from robustir.stats.resampling import paired_randomisation_test, paired_tests, wilcoxon_test

# -- metrics/stability.py -------------------------------------------------------------------------


def test_mismatched_queries_are_named_three_at_a_time():
    clean = pd.Series(1.0, index=["a", "b", "c", "d"])
    other = pd.Series(1.0, index=["w", "x", "y", "z"])
    with pytest.raises(ValueError) as error:
        drop_rates(clean, {3: other})
    assert str(error.value) == ("seed 3: the clean and perturbed per-query scores cover different "
                                "queries (e.g. ['a', 'b', 'c']); evaluate both on the same query set")
    with pytest.raises(ValueError, match=r"^query_change_fractions: the clean and perturbed"):
        query_change_fractions(clean, other)
    with pytest.raises(ValueError) as error:
        rank_stability({q: {} for q in "abcd"}, {q: {} for q in "wxyz"})
    assert str(error.value) == "the clean and perturbed runs cover different queries (e.g. ['a', 'b', 'c'])"


def test_drop_rates_errors_and_fields():
    with pytest.raises(ValueError) as error:
        drop_rates(pd.Series({"a": 1.0}), {})
    assert str(error.value) == "drop_rates needs at least one perturbed seed"
    with pytest.raises(ValueError) as error:
        drop_rates({1: pd.Series({"a": 1.0})}, {2: pd.Series({"a": 1.0})})
    assert str(error.value).endswith("give one clean series per perturbed seed, or a single "
                                     "series shared by all seeds")
    result = drop_rates(pd.Series({"a": 0.8, "b": 0.4}), {1: pd.Series({"a": 0.6, "b": 0.3})})
    assert result.perturbed == {1: pytest.approx(0.45)} and result.clean_per_seed == {1: pytest.approx(0.6)}


def test_change_fractions_of_one_query_and_at_the_tolerance():
    assert query_change_fractions(pd.Series({"a": 0.5}), pd.Series({"a": 0.25})) == {
        "drop": 1.0, "equal": 0.0, "rise": 0.0}
    # |Δ| equal to the tolerance counts as equal (binary-exact values: 0.5 − 0.25 = 0.25)
    clean = pd.Series({"a": 0.5, "b": 0.5, "c": 0.5})
    perturbed = pd.Series({"a": 0.25, "b": 0.75, "c": 0.5})
    assert query_change_fractions(clean, perturbed, tolerance=0.25) == {
        "drop": 0.0, "equal": 1.0, "rise": 0.0}


def test_jaccard_of_disjoint_lists_is_zero():
    assert jaccard_at_k(["a", "b"], ["c", "d"], k=2) == 0.0


def test_rank_biased_overlap_edge_cases():
    assert rank_biased_overlap([], []) == 1.0
    assert rank_biased_overlap([], ["a"]) == 0.0 and rank_biased_overlap(["a"], []) == 0.0
    for p in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=rf"RBO persistence p must be in \(0, 1\), got {p}"):
            rank_biased_overlap(["a"], ["a"], p=p)


def test_rank_stability_reads_the_top_k_and_the_rbo_depth():
    # clean a > b > c > d; perturbed b > a > d > c: the top-2 sets agree, the top-1 sets do not
    clean = {"q": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}}
    perturbed = {"q": {"b": 4.0, "a": 3.0, "d": 2.0, "c": 1.0}}
    one = rank_stability(clean, perturbed, k=1, rbo_depth=1, p=0.5).loc["q"]
    assert one["Jaccard@1"] == 0.0 and one["RBO@1"] == 0.0
    # τ over the union {a, b} of the top-1 lists: positions (1, 2) and (2, 1) → −1
    assert one["KendallTau@1"] == -1.0
    two = rank_stability(clean, perturbed, k=2, rbo_depth=2, p=0.5).loc["q"]
    # RBO_ext of (a, b) and (b, a), p = 0.5: X1 = 0, X2 = 2 → (1 − p)/p · (X2/2)·p² + (X2/2)·p² = 0.5
    assert two["Jaccard@2"] == 1.0 and two["RBO@2"] == pytest.approx(0.5)


def test_kendall_tau_b_hand_cases():
    assert kendall_tau_b([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    # pairs (12, 13, 23): x signs (+, +, +), y signs (+, 0, −) → (1 + 0 − 1) / √(3 · 2) = 0
    assert kendall_tau_b([1, 2, 3], [1, 2, 1]) == 0.0
    # x signs (+, +, 0), y signs (+, +, +): 2 / √(2 · 3)
    assert kendall_tau_b([1, 2, 2], [1, 2, 3]) == pytest.approx(2 / 6**0.5)
    assert np.isnan(kendall_tau_b([1.0, 1.0], [1.0, 2.0]))


def test_kendall_tau_union_ranks_absent_documents_last():
    # union of the top-2 lists {a, b, c}; a is absent from the second ranking (length 2 → 3)
    assert kendall_tau_union(["a", "b"], ["b", "c"], k=2) == pytest.approx(
        kendall_tau_b([1, 2, 3], [3, 1, 2]))
    assert kendall_tau_union(["a", "b", "c"], ["a", "b", "c"], k=1) != kendall_tau_union(
        ["a", "b", "c"], ["a", "c", "b"], k=3)


# -- stats/resampling.py --------------------------------------------------------------------------


def test_randomisation_test_fields_and_default_resamples():
    clean = np.linspace(0.2, 0.9, 30)
    test = paired_randomisation_test(clean, clean - 0.1, rng=np.random.default_rng(0))
    assert test.test == "randomisation" and test.n_queries == 30
    assert test.statistic == pytest.approx(-0.1)
    # every sign flip lowers |mean| below 0.1: p = 1 / (1 + B) with the default B = 10,000
    assert test.p_value == pytest.approx(1 / 10_001)


def test_wilcoxon_hand_case_with_a_zero_difference():
    """Differences (0, 0.1, −0.2, 0.3, 0.4, 0.5, −0.6): the zero is dropped, the ranks of the
    other six are 1…6, W+ = 1 + 3 + 4 + 5 = 13, W− = 2 + 6 = 8; the two-sided exact p of
    W = 8 with n = 6 is 2 · #{subsets of 1…6 summing to at most 8} / 2⁶ = 2 · 22 / 64
    (sums 0…8 have 1, 1, 1, 2, 2, 3, 4, 4, 4 subsets)."""
    clean = np.full(7, 0.5)
    perturbed = clean + np.array([0.0, 0.1, -0.2, 0.3, 0.4, 0.5, -0.6])
    test = wilcoxon_test(clean, perturbed)
    assert (test.test, test.n_queries) == ("wilcoxon", 6)
    assert test.statistic == 8.0 and test.p_value == pytest.approx(44 / 64)
    unchanged = wilcoxon_test(clean, clean)
    assert (unchanged.statistic, unchanged.p_value, unchanged.n_queries) == (0.0, 1.0, 0)


def test_paired_tests_check_the_seeds_and_pass_the_resamples_on():
    clean = np.linspace(0.2, 0.9, 30)
    with pytest.raises(ValueError) as error:
        paired_tests(clean, np.vstack([clean, clean]), seeds=[1], rng=np.random.default_rng(0))
    assert str(error.value) == "1 seeds for 2 rows of perturbed scores"
    table = paired_tests(clean, (clean - 0.1)[None, :], seeds=[7], rng=np.random.default_rng(0),
                         n_resamples=99)
    randomisation = table[table.test == "randomisation"]
    assert randomisation["p_value"].tolist() == pytest.approx([1 / 100, 1 / 100])
    assert paired_tests(clean, (clean - 0.1)[None, :], seeds=[7],
                        rng=np.random.default_rng(0))["p_value"].iloc[0] == pytest.approx(1 / 10_001)


def test_rank_biased_overlap_extrapolates_an_uneven_pair():
    """S = (a, x), L = (a, b, c), p = 0.5 (Webber et al. eq. 32): X1 = X2 = X3 = 1, s = 2, l = 3;
    Σ X_d/d·p^d = 1/2 + 1/8 + 1/24, tail X_s·(3 − 2)/(2·3)·p³ = 1/48, so (1 − p)/p · 33/48
    + ((X3 − X2)/3 + X2/2)·p³ = 33/48 + 1/16 = 0.75."""
    assert rank_biased_overlap(["a", "x"], ["a", "b", "c"], p=0.5) == pytest.approx(0.75)
    assert rank_biased_overlap(["a", "b", "c"], ["a", "x"], p=0.5) == pytest.approx(0.75)


def test_kendall_tau_of_two_items():
    assert kendall_tau_b([1, 2], [1, 2]) == 1.0  # the denominator is exactly 1
    assert kendall_tau_union(["a", "b"], ["b", "a"], k=2) == -1.0  # a union of two


def test_rank_stability_reads_k_for_kendall_and_names_its_index():
    clean = {"q": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}}
    perturbed = {"q": {"b": 4.0, "a": 3.0, "d": 2.0, "c": 1.0}}
    frame = rank_stability(clean, perturbed, k=1)
    assert frame.index.name == "query_id"
    # over the whole lists τ would be (4 − 2)/6; over the top-1 union {a, b} it is −1
    assert frame.loc["q", "KendallTau@1"] == -1.0


# -- metrics/poisoning.py ---------------------------------------------------------------------------


def test_tie_rule_errors_name_every_rule_and_reject_non_integer_cutoffs():
    from robustir.metrics.poisoning import attack_success_rate

    run = {"q": {"adv_doc_0_0": 0.5, "d": 0.4}}
    with pytest.raises(ValueError) as error:
        attack_success_rate(run, tie_rule="zhong")
    assert str(error.value) == ("unknown tie rule 'zhong'; use one of adversarial_loses, "
                                "adversarial_wins, trec_eval, run_order")
    for cutoffs in ([True], [2.5], [0]):
        with pytest.raises(ValueError, match="cutoffs must be positive integers"):
            attack_success_rate(run, cutoffs)
    with pytest.raises(ValueError) as error:
        attack_success_rate({})
    assert str(error.value) == "the run has no query; ASR@k is undefined"


def test_run_order_keeps_a_real_document_ahead_of_a_tied_adversarial_one():
    from robustir.metrics.poisoning import rank_with_tie_rule

    hits = {"d1": 0.5, "adv_doc_0_0": 0.5}
    assert rank_with_tie_rule(hits, "run_order") == ["d1", "adv_doc_0_0"]
    assert rank_with_tie_rule(hits, "adversarial_wins") == ["adv_doc_0_0", "d1"]
    # the default rule: the adversarial passage loses the tie
    assert rank_with_tie_rule({"adv_doc_0_0": 0.5, "d1": 0.5, "d2": 0.9}) == ["d2", "d1", "adv_doc_0_0"]


def test_a_custom_adversarial_prefix_decides_ties_and_success():
    from robustir.metrics.poisoning import attack_success_rate, per_query_attack_success

    run = {"q": {"evil_1": 0.5, "d": 0.5}}  # the adversarial id first in the run's order
    assert attack_success_rate(run, [1], adversarial_prefix="evil") == {"ASR@1": 0.0}
    assert attack_success_rate(run, [1], tie_rule="run_order", adversarial_prefix="evil") == {"ASR@1": 1.0}
    frame = per_query_attack_success({"q": {"d": 0.9, "evil_1": 0.5}}, [1, 2], adversarial_prefix="evil")
    assert frame.index.name == "query_id" and frame.to_dict("index") == {"q": {"ASR@1": 0.0, "ASR@2": 1.0}}
    assert list(per_query_attack_success({}, [5]).columns) == ["ASR@5"]


def test_ties_at_cutoff_counts_every_tied_query():
    from robustir.metrics.poisoning import ties_at_cutoff

    tied = {"a": 0.5, "b": 0.5}
    assert ties_at_cutoff({"q1": tied, "q2": tied, "q3": {"a": 0.9, "b": 0.1}}, [1]) == {"ASR@1": 2}


# -- perturb/variation.py ---------------------------------------------------------------------------


def test_the_per_query_stream_is_pinned():
    """The seed is the first 8 bytes (big-endian) of SHA-256("seed␟dataset␟qid"): changing it
    would silently change every variant file made with rng_scope="query"."""
    import hashlib
    import random

    from robustir.perturb import query_rng

    digest = hashlib.sha256("27\x1ftoy\x1fq4".encode()).digest()
    expected = random.Random(int.from_bytes(digest[:8], byteorder="big"))
    assert query_rng(27, "toy", "q4").random() == expected.random()
