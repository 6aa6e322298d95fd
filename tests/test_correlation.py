"""Tests for robustir.stats.correlation: hand cases, independent definitions, invariants."""

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from robustir.stats import correlation

# A partial-correlation hand case: z is the control; a and b are orthogonal to 1 and to z, so
# the residuals of x = 3z + a and y = −z + b on z are exactly a and b, and
# r_xy·z = a·b / (‖a‖‖b‖) = −2 / √(14 · 6).
Z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
A = np.array([1.0, -2.0, 2.0, -2.0, 1.0])
B = np.array([1.0, 0.0, -2.0, 0.0, 1.0])
X = 3 * Z + A
Y = -Z + B


def test_partial_correlation_hand_case():
    result = correlation.partial_correlation(X, Y, Z)
    assert result.estimate == pytest.approx(-2 / math.sqrt(84), abs=1e-12)
    assert result.df == 2 and result.n == 5
    np.testing.assert_allclose(correlation.residualize(X, Z), A, atol=1e-12)
    # the raw correlation, by hand: x·y = −32, ‖x‖² = 104, ‖y‖² = 16 (both already centred)
    assert correlation.pearson(X, Y).estimate == pytest.approx(-32 / math.sqrt(104 * 16), abs=1e-12)


def test_partial_correlation_equals_recursive_formula_and_residual_regression():
    rng = np.random.default_rng(0)
    control = rng.normal(size=9)
    x = control + rng.normal(size=9)
    y = 0.5 * control + 0.7 * x + rng.normal(size=9)
    r = lambda a, b: np.corrcoef(a, b)[0, 1]
    formula = (r(x, y) - r(x, control) * r(y, control)) / math.sqrt(
        (1 - r(x, control) ** 2) * (1 - r(y, control) ** 2)
    )
    result = correlation.partial_correlation(x, y, control)
    assert result.estimate == pytest.approx(formula, abs=1e-12)
    # df n − 3: the p-value equals the t-test of x's slope in OLS of y on (1, x, control)
    ols = sm.OLS(y, sm.add_constant(np.column_stack([x, control]))).fit()
    assert result.p_value == pytest.approx(ols.pvalues[1], rel=1e-9)
    # the study's p-value: pearsonr on the residuals, df n − 2, smaller for the same r
    residual_r = correlation.pearson(
        correlation.residualize(x, control), correlation.residualize(y, control)
    )
    assert result.p_value_study == pytest.approx(residual_r.p_value, rel=1e-9)
    assert result.p_value_study < result.p_value


def test_pearson_matches_textbook_fisher_interval():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    y = [2.0, 1.0, 4.0, 3.0, 7.0, 5.0, 6.0]
    result = correlation.pearson(x, y)
    r = np.corrcoef(x, y)[0, 1]
    half = 1.959963984540054 / math.sqrt(4)
    assert result.estimate == pytest.approx(r)
    assert result.ci_low == pytest.approx(math.tanh(math.atanh(r) - half))
    assert result.ci_high == pytest.approx(math.tanh(math.atanh(r) + half))
    assert result.df == 5


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall_tau_b"])
def test_intervals_contain_the_estimate_and_shrink_with_n(method):
    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 100, 1000):
        x = rng.normal(size=n)
        y = 0.5 * x + rng.normal(size=n)
        result = getattr(correlation, method)(x, y)
        assert result.ci_low < result.estimate < result.ci_high
        widths.append(result.ci_high - result.ci_low)
    assert widths[0] > widths[1] > widths[2]


def test_partial_interval_contains_estimate_and_shrinks():
    rng = np.random.default_rng(2)
    widths = []
    for n in (10, 200):
        control = rng.normal(size=n)
        x = control + rng.normal(size=n)
        y = control + 0.5 * x + rng.normal(size=n)
        result = correlation.partial_correlation(x, y, control)
        assert result.ci_low < result.estimate < result.ci_high
        widths.append(result.ci_high - result.ci_low)
    assert widths[0] > widths[1]


def test_spearman_and_kendall_of_a_monotone_relation_are_one():
    x = np.arange(1, 8, dtype=float)
    y = np.exp(x)  # monotone, far from linear
    assert correlation.spearman(x, y).estimate == pytest.approx(1.0)
    assert correlation.kendall_tau_b(x, y).estimate == pytest.approx(1.0)
    assert correlation.pearson(x, y).estimate < 0.9


def test_kendall_tau_b_hand_case_with_ties():
    # x = (1, 2, 2, 3, 4), y = (2, 3, 1, 4, 4): concordant 7, discordant 1, one tie in each
    # variable among the 10 pairs, so τ-b = (7 − 1) / √(9 · 9) = 2/3.
    result = correlation.kendall_tau_b([1, 2, 2, 3, 4], [2, 3, 1, 4, 4])
    assert result.estimate == pytest.approx(2 / 3)


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    x = rng.normal(size=7)
    y = x + 0.5 * rng.normal(size=7)
    first = correlation.bootstrap_interval(x, y, method="pearson", n_resamples=500, seed=1999)
    assert first == correlation.bootstrap_interval(x, y, method="pearson", n_resamples=500, seed=1999)
    assert first[0] < correlation.pearson(x, y).estimate < first[1] <= 1.0


def test_leave_one_out_drops_each_system_once():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 20.0]
    y = [1.2, 1.9, 3.1, 4.2, 4.8, -5.0]  # the last system is the outlier that flips the sign
    table = correlation.leave_one_out(x, y, list("abcdef"))
    assert list(table["left_out"]) == list("abcdef")
    assert (table["n"] == 5).all()
    assert table.set_index("left_out").loc["f", "estimate"] > 0.99
    assert (table.set_index("left_out").drop("f")["estimate"] < 0).all()


def test_adjust_p_values_hand_cases():
    p = [0.01, 0.04, 0.03]
    _, holm = correlation.adjust_p_values(p, method="holm")
    np.testing.assert_allclose(holm, [0.03, 0.06, 0.06])
    reject, bh = correlation.adjust_p_values(p, method="fdr_bh")
    np.testing.assert_allclose(bh, [0.03, 0.04, 0.04])
    assert reject.all()


def test_significance_markers_follow_the_study():
    assert [correlation.significance_marker(p) for p in (0.009, 0.01, 0.049, 0.05)] == ["**", "*", "*", ""]


def test_correlation_table_adjusts_across_the_grid():
    rng = np.random.default_rng(4)
    frames = []
    for dataset in ("nq_test", "hotpotqa_test"):
        for family in ("mispelling", "ordering", "synonym"):
            clean = rng.uniform(0.3, 0.7, size=7)
            geometry_value = rng.uniform(size=7)
            frames.append(pd.DataFrame({
                "dataset": dataset, "family": family, "system": list("abcdefg"),
                "isoscore": geometry_value, "drop_rate": geometry_value + rng.normal(size=7),
                "clean_ndcg10": clean,
            }))
    data = pd.concat(frames)
    table = correlation.correlation_table(
        data, x="isoscore", y="drop_rate", by=["dataset", "family"], control="clean_ndcg10"
    )
    assert len(table) == 6 and (table["n"] == 7).all()
    assert (table["pearson_p_holm"] >= table["pearson_p"]).all()
    assert (table["pearson_p_holm"] >= table["pearson_p_bh"] - 1e-12).all()
    np.testing.assert_allclose(table["r_squared"], table["pearson_r"] ** 2)
    first = data[(data.dataset == "hotpotqa_test") & (data.family == "mispelling")]
    assert table.iloc[0]["pearson_r"] == pytest.approx(np.corrcoef(first.isoscore, first.drop_rate)[0, 1])
    with pytest.raises(KeyError, match=r"\['asr20'\] are missing"):
        correlation.correlation_table(data, x="isoscore", y="asr20", by=["dataset"])


def test_correlation_table_skips_panels_with_a_constant_variable(caplog):
    data = pd.DataFrame({
        "family": ["a"] * 5 + ["b"] * 5,
        "isoscore": [0.1, 0.2, 0.3, 0.4, 0.5] * 2,
        "drop_rate": [0.3, 0.1, 0.4, 0.2, 0.5] + [0.2] * 5,
    })
    table = correlation.correlation_table(data, x="isoscore", y="drop_rate", by=["family"])
    assert list(table["family"]) == ["a"]
    assert "{'family': 'b'} skipped, drop_rate constant" in caplog.text


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="must pair one value per system; got lengths 5 and 4"):
        correlation.pearson([1, 2, 3, 4, 5], [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"y\[2\] is NaN"):
        correlation.spearman([1, 2, 3, 4], [1, 2, float("nan"), 4])
    with pytest.raises(ValueError, match="y is constant"):
        correlation.pearson([1, 2, 3, 4], [2, 2, 2, 2])
    with pytest.raises(ValueError, match="at least 4 systems"):
        correlation.pearson([1, 2, 3], [3, 1, 2])
    with pytest.raises(ValueError, match="exact linear function of the control"):
        correlation.partial_correlation(Z * 2 + 1, A, Z)
    with pytest.raises(ValueError, match="'holm' or 'fdr_bh'"):
        correlation.adjust_p_values([0.1], method="bonferroni")
