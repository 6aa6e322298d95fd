"""Drop rates, rank stability and query-level resampling, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from robustir.metrics.stability import (
    drop_rate,
    drop_rates,
    jaccard_at_k,
    kendall_tau_b,
    kendall_tau_union,
    query_change_fractions,
    rank_biased_overlap,
    rank_stability,
    rankings,
)
from robustir.stats.resampling import (
    bootstrap_drop_rates,
    paired_randomisation_test,
    paired_tests,
    wilcoxon_test,
)


def test_drop_rate_per_seed_mean_and_population_std():
    clean = pd.Series({"a": 0.8, "b": 0.4})  # mean 0.6
    perturbed = {1: pd.Series({"b": 0.3, "a": 0.6}), 2: pd.Series({"a": 0.9, "b": 0.6})}  # 0.45, 0.75
    result = drop_rates(clean, perturbed)
    assert result.per_seed == {1: pytest.approx(0.25), 2: pytest.approx(-0.25)}
    assert result.mean == pytest.approx(0.0)
    assert result.std == pytest.approx(0.25)  # population std (ddof = 0); the sample std is 0.354
    assert drop_rate(0.5, 0.4) == pytest.approx(0.2)


def test_drop_rate_divides_each_seed_by_its_own_clean_score():
    """DR_s = (M_clean,s - M_pert,s) / M_clean,s: by hand, 0.25 for both seeds; dividing both by
    the pooled clean mean 0.7 would give 0.357 and 0.143."""
    clean = {1: pd.Series({"a": 0.8, "b": 0.4}), 2: pd.Series({"a": 1.0, "b": 0.6})}  # 0.6, 0.8
    perturbed = {1: pd.Series({"a": 0.5, "b": 0.4}), 2: pd.Series({"a": 0.6, "b": 0.6})}  # 0.45, 0.6
    result = drop_rates(clean, perturbed)
    assert result.per_seed == {1: pytest.approx(0.25), 2: pytest.approx(0.25)}
    assert result.std == pytest.approx(0.0, abs=1e-12)
    assert result.clean_per_seed == {1: pytest.approx(0.6), 2: pytest.approx(0.8)}
    assert result.clean == pytest.approx(0.7)
    with pytest.raises(ValueError, match=r"clean scores are given for seeds \[1\] but perturbed scores for seeds \[1, 2\]"):
        drop_rates({1: clean[1]}, perturbed)


def test_drop_rate_rejects_a_zero_clean_score_and_mismatched_queries():
    with pytest.raises(ValueError, match="positive clean score"):
        drop_rate(0.0, 0.1)
    with pytest.raises(ValueError, match="seed 3: the clean and perturbed per-query scores cover different queries"):
        drop_rates(pd.Series({"a": 1.0}), {3: pd.Series({"b": 1.0})})


def test_query_change_fractions():
    clean = pd.Series({"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.0})
    perturbed = pd.Series({"a": 0.2, "b": 0.5, "c": 0.9, "d": 0.0})
    assert query_change_fractions(clean, perturbed) == {"drop": 0.25, "equal": 0.5, "rise": 0.25}


def test_jaccard_at_k():
    assert jaccard_at_k(list("abcd"), list("cdef"), k=4) == pytest.approx(2 / 6)
    assert jaccard_at_k(list("abcd"), list("dcba"), k=4) == 1.0
    assert jaccard_at_k([], [], k=10) == 1.0


def test_rank_biased_overlap_hand_computed():
    # identical and disjoint rankings
    assert rank_biased_overlap(list("abcde"), list("abcde")) == pytest.approx(1.0)
    assert rank_biased_overlap(list("abc"), list("xyz")) == 0.0
    # even lengths, k = 2, p = 0.9: X1 = 0, X2 = 2 → (X2/2)·p² + (1−p)/p·(X2/2)·p² = 0.81 + 0.09
    assert rank_biased_overlap(list("ab"), list("ba"), p=0.9) == pytest.approx(0.9)
    # uneven (Webber et al. eq. 32): S = [a], L = [b, a], p = 0.5; X1 = 0, X2 = 1, X_s = 0
    # (1-p)/p · (X1·p/1 + X2·p²/2) + ((X2 − X1)/2 + X1/1)·p² = 0.125 + 0.125
    assert rank_biased_overlap(["a"], ["b", "a"], p=0.5) == pytest.approx(0.25)
    assert rank_biased_overlap(["b", "a"], ["a"], p=0.5) == pytest.approx(0.25)  # symmetric
    with pytest.raises(ValueError, match="persistence"):
        rank_biased_overlap(["a"], ["a"], p=1.0)


def test_kendall_tau_on_the_union_of_top_k():
    assert kendall_tau_union(list("abcdef"), list("abcdef"), k=3) == pytest.approx(1.0)
    # union of top-2 = {a, b, c}; ranks first: a1 b2 c3; second (c, b, a): a3 b2 c1 → τ = −1
    assert kendall_tau_union(list("abc"), list("cba"), k=2) == pytest.approx(-1.0)
    # a document missing from a run gets its length + 1: union {a, b, c}, ranks (1, 2, 3) and
    # (1, 3, 2): pairs ab, ac concordant, bc discordant → τ = (2 − 1) / 3
    assert kendall_tau_union(["a", "b"], ["a", "c"], k=2) == pytest.approx(1 / 3)
    assert math.isnan(kendall_tau_union(["a"], ["a"], k=10))


def test_kendall_tau_b_equals_scipy_with_ties():
    from scipy import stats

    rng = np.random.default_rng(5)
    for _ in range(20):
        x, y = rng.integers(0, 6, 15), rng.integers(0, 6, 15)  # many ties
        assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))


def test_rank_stability_uses_trec_eval_order():
    clean = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    # ties broken by doc id descending: d3 before d2 before d1
    perturbed = {"q": {"d1": 1.0, "d2": 1.0, "d3": 1.0}}
    frame = rank_stability(clean, perturbed, k=3, rbo_depth=3)
    assert list(frame.columns) == ["Jaccard@3", "RBO@3", "KendallTau@3"]
    assert frame.loc["q", "Jaccard@3"] == 1.0
    assert frame.loc["q", "KendallTau@3"] == pytest.approx(-1.0)
    assert rank_stability(clean, clean).loc["q", "RBO@100"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="different queries"):
        rank_stability(clean, {"other": {}})


def test_rank_stability_reads_a_given_clean_ranking_instead_of_sorting_the_run():
    clean = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    perturbed = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    assert rankings(clean) == {"q": ["d1", "d2", "d3"]}
    assert rankings({"q": {"d1": 1.0, "d2": 1.0, "d3": 2.0}}) == {"q": ["d3", "d2", "d1"]}
    same = rank_stability(clean, perturbed, k=3, rbo_depth=3, clean_ranking=rankings(clean))
    assert same.loc["q", "KendallTau@3"] == pytest.approx(1.0)
    # the given ranking is what counts: reversed, the same runs disagree completely
    reversed_ = rank_stability(clean, perturbed, k=3, rbo_depth=3, clean_ranking={"q": ["d3", "d2", "d1"]})
    assert reversed_.loc["q", "KendallTau@3"] == pytest.approx(-1.0)


def test_bootstrap_interval_covers_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(11)
    clean = rng.uniform(0.2, 1.0, 200)
    perturbed = np.vstack([clean * 0.9, clean * 0.8])  # drop rates exactly 0.1 and 0.2
    per_seed, mean = bootstrap_drop_rates(clean, perturbed, rng=np.random.default_rng(0), n_resamples=500)
    # a constant ratio gives the same drop rate in every resample
    assert per_seed[0].estimate == pytest.approx(0.1) and per_seed[0].low == pytest.approx(0.1)
    assert mean.estimate == pytest.approx(0.15) and mean.high == pytest.approx(0.15)
    noisy = np.vstack([clean - rng.uniform(0, 0.2, 200)])
    first = bootstrap_drop_rates(clean, noisy, rng=np.random.default_rng(1), n_resamples=500)[1]
    again = bootstrap_drop_rates(clean, noisy, rng=np.random.default_rng(1), n_resamples=500)[1]
    assert first == again and first.low < first.estimate < first.high
    with pytest.raises(ValueError, match="n_seeds, n_queries"):
        bootstrap_drop_rates(clean, clean[:10], rng=rng)


def test_paired_tests_detect_a_shift_and_not_identity():
    rng = np.random.default_rng(3)
    clean = rng.uniform(0, 1, 60)
    same = wilcoxon_test(clean, clean)
    assert same.p_value == 1.0 and same.n_queries == 0
    assert paired_randomisation_test(clean, clean, rng=rng, n_resamples=999).p_value == 1.0
    shifted = clean - 0.1
    assert paired_randomisation_test(clean, shifted, rng=rng, n_resamples=999).p_value == pytest.approx(1 / 1000)
    assert wilcoxon_test(clean, shifted).p_value < 1e-6
    # exact small case: differences (+1, +2, +3); all 8 sign patterns equally likely,
    # |mean| >= 2 only for all-plus and all-minus → p = 2/8 in the limit of many resamples
    p = paired_randomisation_test(np.zeros(3), np.array([1.0, 2.0, 3.0]), rng=rng, n_resamples=20000).p_value
    assert p == pytest.approx(0.25, abs=0.015)
    table = paired_tests(clean, np.vstack([shifted, clean]), seeds=[5, 27], rng=rng, n_resamples=199)
    assert list(table["scores"]) == [5, 5, 27, 27, "seed mean", "seed mean"]
    assert table.loc[(table.scores == 27) & (table.test == "wilcoxon"), "p_value"].item() == 1.0
