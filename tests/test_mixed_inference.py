"""Satterthwaite inference, Type-III ANOVA and random-slope structures of robustir.stats.mixed.

Hand-computed cases (a balanced randomized-block design, where lmerTest's Satterthwaite df
reduce to the classical mean-square formulas), exact-derivative checks, and live cross-checks
against R lme4 + lmerTest + emmeans (``tests/r/satterthwaite_fits.R``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from robustir.stats import _generic
from robustir.stats._formula import parse_formula
from robustir.stats._generic import GeneralCriterion
from robustir.stats._nested_reml import NestedCriterion, sufficient_statistics
from robustir.stats.factors import dataset_factor
from robustir.stats.mixed import MixedModelInputError, fit_mixed
from test_mixed import STUDY_FORMULA, study_table

R_SCRIPT = Path(__file__).parent / "r" / "satterthwaite_fits.R"
BENCH_TABLE = Path(__file__).resolve().parents[2] / "shared/bench/lmm_paper_scale.csv.gz"
Z_975 = 1.959963984540054  # two-sided 95% normal quantile (one-sided would be 1.644854)


# -- a balanced randomized-block design, solved by hand ----------------------------------------


def randomized_block(n_queries: int = 12, n_systems: int = 4, seed: int = 11) -> pd.DataFrame:
    """Every query scored by every system: y = system mean + query effect + noise."""
    rng = np.random.default_rng(seed)
    means = np.linspace(0.3, 0.6, n_systems)
    query = rng.normal(0.0, 0.15, n_queries)
    y = means[None, :] + query[:, None] + rng.normal(0.0, 0.05, (n_queries, n_systems))
    return pd.DataFrame({
        "query_id": np.repeat([f"q{i:02d}" for i in range(n_queries)], n_systems),
        "Model": np.tile([f"s{j}" for j in range(n_systems)], n_queries),
        "ndcg_10": y.ravel(),
    })


def mean_squares(table: pd.DataFrame) -> dict[str, float]:
    y = table.pivot(index="query_id", columns="Model", values="ndcg_10").to_numpy()
    q, m = y.shape
    grand, by_query, by_system = y.mean(), y.mean(axis=1), y.mean(axis=0)
    residual = y - by_query[:, None] - by_system[None, :] + grand
    return {
        "q": q, "m": m, "system_means": by_system,
        "msb": m * np.sum((by_query - grand) ** 2) / (q - 1),
        "mse": np.sum(residual**2) / ((q - 1) * (m - 1)),
        "ms_system": q * np.sum((by_system - grand) ** 2) / (m - 1),
    }


@pytest.fixture(scope="module")
def block_fit():
    table = randomized_block()
    return fit_mixed(table, "ndcg_10 ~ Model + (1 | query_id)"), mean_squares(table)


def test_block_design_variances_are_the_anova_estimators(block_fit):
    fit, ms = block_fit
    components = fit.variance_components.set_index("group")["variance"]
    assert ms["msb"] > ms["mse"]  # so REML equals the ANOVA estimators
    assert components["Residual"] == pytest.approx(ms["mse"], rel=1e-9)
    assert components["query_id"] == pytest.approx((ms["msb"] - ms["mse"]) / ms["m"], rel=1e-8)


def test_system_marginal_mean_se_df_and_interval_by_hand(block_fit):
    """SE from both variance components (the covariance of intercept and system effect included),
    Satterthwaite's df of MSB and MSE, and a two-sided t interval."""
    fit, ms = block_fit
    q, m, msb, mse = ms["q"], ms["m"], ms["msb"], ms["mse"]
    variance = (msb + (m - 1) * mse) / (m * q)
    df = (msb + (m - 1) * mse) ** 2 / (msb**2 / (q - 1) + (m - 1) ** 2 * mse**2 / ((q - 1) * (m - 1)))
    means = fit.marginal_means("Model")
    np.testing.assert_allclose(means["marginal_mean"], ms["system_means"], rtol=1e-12)
    np.testing.assert_allclose(means["std_error"], np.sqrt(variance), rtol=1e-8)
    np.testing.assert_allclose(means["df"], df, rtol=1e-7)
    half = scipy.stats.t.ppf(0.975, df) * np.sqrt(variance)
    np.testing.assert_allclose(means["ci_upper"] - means["marginal_mean"], half, rtol=1e-7)
    np.testing.assert_allclose(means["marginal_mean"] - means["ci_lower"], half, rtol=1e-7)
    # The test has teeth: leaving out the (negative) intercept-effect covariance changes the SE.
    diagonal_only = np.sqrt(fit.covariance[0, 0] + fit.covariance[1, 1])
    assert abs(diagonal_only / np.sqrt(variance) - 1) > 0.05


def test_asymptotic_intervals_are_two_sided_z(block_fit):
    fit, ms = block_fit
    means = fit.marginal_means("Model", ddf="asymptotic")
    assert np.all(np.isinf(means["df"]))
    np.testing.assert_allclose(means["ci_upper"] - means["marginal_mean"], Z_975 * means["std_error"], rtol=1e-12)
    level_90 = fit.marginal_means("Model", ddf="asymptotic", level=0.90)
    np.testing.assert_allclose(level_90["ci_upper"] - level_90["marginal_mean"],
                               1.6448536269514722 * level_90["std_error"], rtol=1e-12)
    pairs = fit.contrasts("Model", adjust="none", ddf="asymptotic")
    assert "z_ratio" in pairs and "t_ratio" not in pairs
    np.testing.assert_allclose(pairs["ci_upper"] - pairs["estimate"], Z_975 * pairs["std_error"], rtol=1e-12)


def test_pairwise_contrasts_have_the_residual_df_and_tukey_by_hand(block_fit):
    fit, ms = block_fit
    q, m, mse = ms["q"], ms["m"], ms["mse"]
    df = (q - 1) * (m - 1)
    pairs = fit.contrasts("Model", adjust="tukey")
    assert pairs["contrast"].iloc[0] == "s0 - s1"
    np.testing.assert_allclose(pairs["std_error"], np.sqrt(2 * mse / q), rtol=1e-8)
    np.testing.assert_allclose(pairs["df"], df, rtol=1e-7)
    t = (ms["system_means"][0] - ms["system_means"][1]) / np.sqrt(2 * mse / q)
    assert pairs["t_ratio"].iloc[0] == pytest.approx(t, rel=1e-8)
    assert pairs["p_value"].iloc[0] == pytest.approx(scipy.stats.studentized_range.sf(abs(t) * np.sqrt(2), m, df), rel=1e-6)
    critical = scipy.stats.studentized_range.ppf(0.95, m, df) / np.sqrt(2)
    assert pairs["ci_upper"].iloc[0] - pairs["estimate"].iloc[0] == pytest.approx(critical * np.sqrt(2 * mse / q), rel=1e-6)


def test_type3_anova_of_the_block_design_is_the_classical_f_test(block_fit):
    fit, ms = block_fit
    row = fit.anova().set_index("term").loc["Model"]
    df = (ms["q"] - 1) * (ms["m"] - 1)
    assert row["F_value"] == pytest.approx(ms["ms_system"] / ms["mse"], rel=1e-8)
    assert (row["num_df"], row["den_df"]) == (ms["m"] - 1, pytest.approx(df, rel=1e-7))
    assert row["p_value"] == pytest.approx(scipy.stats.f.sf(ms["ms_system"] / ms["mse"], ms["m"] - 1, df), rel=1e-6)
    assert row["mean_sq"] == pytest.approx(ms["ms_system"], rel=1e-8)  # F x sigma^2
    assert row["sum_sq"] == pytest.approx(ms["ms_system"] * (ms["m"] - 1), rel=1e-8)


def test_published_table_tukey_p_is_satterthwaites_not_z():
    """Issue 13: on the study's 27 x 9 published table R (lmerTest + emmeans) gives Tukey
    p = 0.0623 for contriever - reasonir at df = (27 - 1)(9 - 1) = 208; z inference gave 0.0571."""
    published = Path(__file__).resolve().parents[2] / "shared/reference/li2026_per_dataset_ndcg10.csv"
    if not published.exists():
        pytest.skip(f"{published} not found")
    wide = pd.read_csv(published)
    scores = wide.melt(id_vars=["dataset", "n_queries"], var_name="Model", value_name="ndcg")
    fit = fit_mixed(scores.assign(ndcg=scores.ndcg / 100), "ndcg ~ Model + (1 | dataset)",
                    reference={"Model": "contriever"})
    pairs = {ddf: fit.contrasts("Model", ddf=ddf).set_index("contrast").loc["contriever - reasonir"]
             for ddf in ("satterthwaite", "asymptotic")}
    assert pairs["satterthwaite"]["df"] == pytest.approx(208, rel=1e-9)
    assert pairs["satterthwaite"]["p_value"] == pytest.approx(0.0623, abs=5e-5)
    assert pairs["asymptotic"]["p_value"] == pytest.approx(0.0571, abs=5e-5)


def test_f_test_of_one_row_is_the_squared_t_test():
    fit = fit_mixed(study_table(), STUDY_FORMULA, reference={"Model": "contriever"})
    row = np.zeros(len(fit.coefficients))
    row[[1, 2]] = [1.0, -0.5]
    t = fit.t_tests(row).iloc[0]
    f = fit.f_test(row)
    assert f["F_value"] == pytest.approx(t["t_value"] ** 2, rel=1e-10)
    assert (f["num_df"], f["den_df"]) == (1, pytest.approx(t["df"], rel=1e-10))
    # A repeated row adds no hypothesis: the test is on L's row space.
    doubled = fit.f_test(np.vstack([row, 2 * row]))
    assert doubled["num_df"] == 1 and doubled["F_value"] == pytest.approx(f["F_value"], rel=1e-8)


def test_joint_test_of_two_levels_is_the_squared_t_of_the_pair():
    table = study_table()
    table = table[table.Model.isin(["contriever", "qwen3"])]
    fit = fit_mixed(table, STUDY_FORMULA, reference={"Model": "contriever"})
    pair = fit.contrasts("Model", adjust="none").iloc[0]
    joint = fit.joint_tests().set_index("term").loc["Model"]
    assert joint["F_ratio"] == pytest.approx(pair["t_ratio"] ** 2, rel=1e-10)
    assert joint["df2"] == pytest.approx(pair["df"], rel=1e-10)
    assert joint["p_value"] == pytest.approx(pair["p_value"], rel=1e-8)


def test_inference_options_are_checked():
    fit = fit_mixed(study_table(), STUDY_FORMULA)
    with pytest.raises(MixedModelInputError, match="ddf='kenward-roger'; choose one of"):
        fit.marginal_means("Model", ddf="kenward-roger")
    with pytest.raises(MixedModelInputError, match="only the Type-III table"):
        fit.anova(type=2)
    with pytest.raises(MixedModelInputError, match=r"needs 12 finite columns, one per coefficient \['\(Intercept\)'"):
        fit.t_tests(np.ones(3))


# -- exact derivatives ----------------------------------------------------------------------------


def _central_differences(criterion, theta, step=1e-5):
    gradient, log_gradient = [], []
    for i in range(len(theta)):
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        (q_up, l_up), (q_down, l_down) = criterion.evaluate(up), criterion.evaluate(down)
        gradient.append((q_up - q_down) / (2 * step))
        log_gradient.append((l_up - l_down) / (2 * step))
    return np.array(gradient), np.array(log_gradient)


def _assert_derivatives(criterion, theta):
    d = criterion.derivatives(theta)
    gradient, log_gradient = _central_differences(criterion, theta)
    np.testing.assert_allclose(d.quad_gradient, gradient, rtol=1e-6, atol=1e-8 * np.abs(d.quad).max())
    np.testing.assert_allclose(d.log_det_gradient, log_gradient, rtol=1e-6)
    for i in range(len(theta)):  # second derivatives: differences of the exact first ones
        up, down = theta.copy(), theta.copy()
        up[i] += 1e-5
        down[i] -= 1e-5
        d_up, d_down = criterion.derivatives(up), criterion.derivatives(down)
        scale = np.abs(d.quad_hessian).max()
        np.testing.assert_allclose(d.quad_hessian[i], (d_up.quad_gradient - d_down.quad_gradient) / 2e-5,
                                   rtol=1e-5, atol=1e-7 * scale)
        np.testing.assert_allclose(d.log_det_hessian[i], (d_up.log_det_gradient - d_down.log_det_gradient) / 2e-5,
                                   rtol=1e-5, atol=1e-9)


def test_nested_criterion_derivatives_match_finite_differences():
    table = study_table()
    design = np.column_stack([np.ones(len(table)), (table.Model == "qwen3").to_numpy(float)])
    cells, cell_of_row = np.unique(design, axis=0, return_inverse=True)
    inner = table.groupby("query_id").ngroup().to_numpy()
    outer = table.groupby("query_id")["dataset_name"].first().astype("category").cat.codes.to_numpy()
    data = sufficient_statistics(cells, cell_of_row.ravel(), table.ndcg_10.to_numpy(), inner, outer)
    _assert_derivatives(NestedCriterion(data), np.array([0.8, 0.6]))
    single = sufficient_statistics(cells, cell_of_row.ravel(), table.ndcg_10.to_numpy(), inner, None)
    _assert_derivatives(NestedCriterion(single), np.array([1.3]))


def test_general_criterion_derivatives_match_finite_differences():
    sleep = sleep_like()
    parsed = parse_formula("Reaction ~ Days + (Days | Subject)")
    codes = [sleep.groupby("Subject").ngroup().to_numpy()]
    exog = np.column_stack([np.ones(len(sleep)), sleep.Days])
    criterion = GeneralCriterion(exog, sleep.Reaction.to_numpy(), parsed.random_terms, codes, sleep)
    _assert_derivatives(criterion, np.array([0.9, 0.05, 0.2]))


# -- uncorrelated random slopes -----------------------------------------------------------------


def sleep_like(seed: int = 3) -> pd.DataFrame:
    """A sleepstudy-shaped table: 18 subjects x 10 days, random intercepts and slopes."""
    rng = np.random.default_rng(seed)
    days = np.tile(np.arange(10.0), 18)
    subject = np.repeat([f"S{i:02d}" for i in range(18)], 10)
    intercept, slope = rng.normal(0, 25, 18), rng.normal(0, 6, 18)
    reaction = 250 + 10 * days + np.repeat(intercept, 10) + np.repeat(slope, 10) * days
    return pd.DataFrame({"Reaction": reaction + rng.normal(0, 25, 180), "Days": days, "Subject": subject})


def test_uncorrelated_slopes_are_two_terms_on_one_grouping_factor():
    sleep = sleep_like()
    bars = fit_mixed(sleep, "Reaction ~ Days + (Days || Subject)")
    separate = fit_mixed(sleep, "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)")
    correlated = fit_mixed(sleep, "Reaction ~ Days + (Days | Subject)")
    assert bars.method == "general profiled REML"
    assert list(bars.variance_components["group"]) == ["Subject", "Subject.1", "Residual"]
    assert list(bars.variance_components["term"]) == ["(Intercept)", "Days", ""]
    assert bars.n_groups == {"Subject": 18}
    np.testing.assert_allclose(bars.variance_components["variance"], separate.variance_components["variance"], rtol=1e-9)
    assert bars.log_likelihood == pytest.approx(separate.log_likelihood, abs=1e-9)
    pd.testing.assert_frame_equal(bars.t_tests(), separate.t_tests(), rtol=1e-8)
    # One parameter fewer than the correlated model, so a lower (or equal) REML likelihood.
    assert bars.log_likelihood < correlated.log_likelihood


def test_random_part_errors_name_the_problem(monkeypatch):
    sleep = sleep_like().assign(week=lambda t: np.where(t.Days < 5, "first", "second"))
    with pytest.raises(MixedModelInputError, match=r"random slope 'week' has dtype \w+; slopes must be numeric"):
        fit_mixed(sleep, "Reaction ~ Days + (week | Subject)")
    monkeypatch.setattr(_generic, "MAX_RANDOM_EFFECTS", 20)
    with pytest.raises(MixedModelInputError, match="36 random effects.*accepts at most 20.*Nested random intercepts"):
        fit_mixed(sleep, "Reaction ~ Days + (Days || Subject)")


# -- live cross-check against lme4 + lmerTest + emmeans -------------------------------------------


def study_subsample(queries_per_dataset: int = 20) -> pd.DataFrame:
    """The first queries of every dataset of the study-shaped benchmark table, with task and
    corpus type from the dataset registry."""
    table = pd.read_csv(BENCH_TABLE)
    first = table.drop_duplicates("query_id").groupby("dataset_name").head(queries_per_dataset)
    sample = table[table.query_id.isin(first.query_id)].reset_index(drop=True)
    for factor in ("task_type", "corpus_type"):
        sample[factor] = dataset_factor(sample.dataset_name, factor).astype(str).to_numpy()
    return sample


@pytest.fixture(scope="module")
def lmertest_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("lmertest")
    study_table().to_csv(out / "study.csv", index=False)
    command = ["Rscript", str(R_SCRIPT), str(out), str(out / "study.csv")]
    if BENCH_TABLE.exists():
        study_subsample().to_csv(out / "subsample.csv", index=False)
        command.append(str(out / "subsample.csv"))
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    return out, pd.read_csv(out / "satterthwaite.csv", keep_default_na=False)


def _reference(reference, case, quantity) -> pd.Series:
    rows = reference[(reference.case == case) & (reference.quantity == quantity)]
    assert len(rows), f"no {quantity} for {case}"
    return pd.Series(rows["value"].to_numpy(dtype=float), index=rows["name"].to_numpy())


def _assert_matches(ours: pd.Series, theirs: pd.Series, quantity: str, *, p_rtol: float = 1e-6):
    """Estimates, SEs, t ratios, intervals within 1e-6 relative; df and F within 1e-4.

    p-values within ``p_rtol``; below 1e-4 the comparison is of log p, since R's optimum carries
    ~1e-7 of optimizer noise (its df of balanced contrasts read 15.0000005) that the far tails
    amplify: a t of 36.8 off by 1e-7 moves p = 1.2e-17 by 1e-5 relative. Tukey p-values also
    allow 1e-9 absolute: R's ``ptukey`` gets the upper tail as 1 - P to about 9 digits (it gives
    5.5e-10 where the Bonferroni bound is 6.4e-11).
    """
    assert list(ours.index) == list(theirs.index), quantity
    ours, theirs = ours.to_numpy(dtype=float), theirs.to_numpy(dtype=float)
    if quantity.endswith(("_df", "_F", "den_df", "num_df", "df1", "df2")):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, err_msg=quantity)
    elif quantity.startswith("tukey") and quantity.endswith("_p"):
        np.testing.assert_allclose(ours, theirs, rtol=p_rtol, atol=1e-9, err_msg=quantity)
    elif quantity.endswith("_p"):
        tail = theirs < 1e-4
        np.testing.assert_allclose(ours[~tail], theirs[~tail], rtol=p_rtol, err_msg=quantity)
        np.testing.assert_allclose(np.log(ours[tail]), np.log(theirs[tail]), rtol=1e-6, err_msg=quantity)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12, err_msg=quantity)


def _check_table(table: pd.DataFrame, reference, case, prefix, columns, key):
    keys = table[key].astype(str).agg(" ".join, axis=1) if isinstance(key, list) else table[key].astype(str)
    indexed = table.set_index(keys.to_numpy())
    for suffix, column in columns.items():
        quantity = f"{prefix}{suffix}"
        _assert_matches(indexed[column], _reference(reference, case, quantity), quantity)


COEFFICIENTS = {"fixef": "estimate", "coef_se": "std_error", "coef_df": "df", "coef_t": "t_value", "coef_p": "p_value"}
ANOVA = {"sum_sq": "sum_sq", "mean_sq": "mean_sq", "num_df": "num_df", "den_df": "den_df", "F": "F_value", "p": "p_value"}
MEANS = {"_estimate": "marginal_mean", "_se": "std_error", "_df": "df", "_lower": "ci_lower", "_upper": "ci_upper"}
CONTRASTS = {"_estimate": "estimate", "_se": "std_error", "_df": "df", "_t": "t_ratio", "_p": "p_value",
             "_lower": "ci_lower", "_upper": "ci_upper"}
JOINT = {"_F": "F_ratio", "_df1": "df1", "_df2": "df2", "_p": "p_value"}


def _check_fit(fit, reference, case):
    tests = fit.t_tests().reset_index()
    for quantity, column in COEFFICIENTS.items():
        _assert_matches(tests.set_index("term")[column], _reference(reference, case, quantity), quantity)
    assert fit.log_likelihood == pytest.approx(_reference(reference, case, "loglik").iloc[0], rel=1e-9)


def _check_anova(fit, reference, case):
    _check_table(fit.anova(), reference, case, "anova_", ANOVA, "term")


@pytest.mark.r
def test_sleepstudy_random_slopes_match_lmertest(lmertest_reference):
    out, reference = lmertest_reference
    fit = fit_mixed(pd.read_csv(out / "sleepstudy.csv"), "Reaction ~ Days + (Days | Subject)")
    _check_fit(fit, reference, "sleep_slopes")
    _check_anova(fit, reference, "sleep_slopes")
    assert fit.t_tests().loc["Days", "df"] == pytest.approx(17.0, rel=1e-10)  # lmerTest's published 17


@pytest.mark.r
@pytest.mark.parametrize(
    ("case", "formula"),
    [("sleep_uncorrelated", "Reaction ~ Days + (Days || Subject)"),
     ("sleep_separate", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)")],
)
def test_uncorrelated_slopes_match_lme4(lmertest_reference, case, formula):
    out, reference = lmertest_reference
    fit = fit_mixed(pd.read_csv(out / "sleepstudy.csv"), formula)
    _check_fit(fit, reference, case)
    components = fit.variance_components
    ours = pd.Series(components["variance"].to_numpy(),
                     index=[f"{g}|{t}" if t else g for g, t in zip(components.group, components.term)])
    theirs = _reference(reference, case, "vcov")
    _assert_matches(ours[theirs.index], theirs, "vcov")


@pytest.mark.r
def test_factor_by_covariate_model_matches_lmertest_and_emmeans(lmertest_reference):
    out, reference = lmertest_reference
    sleep = pd.read_csv(out / "sleepstudy.csv")
    subject = sleep.Subject.astype("category").cat.codes.to_numpy()
    sleep["cohort"] = np.array(["a", "b", "c"])[(subject + 1) % 3]  # R: as.integer(Subject) %% 3 + 1
    fit = fit_mixed(sleep, "Reaction ~ Days * cohort + (Days | Subject)")
    case = "sleep_cohort"
    _check_fit(fit, reference, case)
    _check_anova(fit, reference, case)
    _check_table(fit.marginal_means("cohort"), reference, case, "emm", MEANS, "cohort")
    _check_table(fit.contrasts("cohort"), reference, case, "tukey", CONTRASTS, "contrast")
    _check_table(fit.joint_tests(), reference, case, "joint", JOINT, "term")


@pytest.mark.r
def test_study_table_matches_lmertest_and_emmeans(lmertest_reference):
    _, reference = lmertest_reference
    fit = fit_mixed(study_table(), STUDY_FORMULA, reference={"Model": "contriever"})
    _check_fit(fit, reference, "study")
    _check_anova(fit, reference, "study")
    _check_table(fit.marginal_means("Model"), reference, "study", "emm_model", MEANS, "Model")
    _check_table(fit.marginal_means("Model * query_type"), reference, "study", "emm_cell", MEANS,
                 ["Model", "query_type"])
    for adjust in ("tukey", "holm", "bonferroni"):
        _check_table(fit.contrasts("Model", adjust=adjust), reference, "study", adjust, CONTRASTS, "contrast")
    family = {"llm_minus_classic": {"bm25": -0.5, "contriever": -0.5, "qwen3": 0.5, "reasonir": 0.5}}
    _check_table(fit.contrasts("Model", family, adjust="none"), reference, "study", "custom", CONTRASTS, "contrast")
    _check_table(fit.joint_tests(), reference, "study", "joint", JOINT, "term")


@pytest.mark.r
def test_single_term_anova_uses_lmertests_type1_contrasts(lmertest_reference):
    """One fixed term: lmerTest falls back to Doolittle (Type-I) rows, whose Satterthwaite df
    differ from those of treatment contrasts on unbalanced data."""
    _, reference = lmertest_reference
    fit = fit_mixed(study_table(), "ndcg_10 ~ Model + (1 | dataset_name/query_id)", reference={"Model": "contriever"})
    _check_fit(fit, reference, "study_model_only")
    _check_anova(fit, reference, "study_model_only")


@pytest.mark.r
def test_singular_fit_matches_lmertest(lmertest_reference):
    """A variance on its bound: lmerTest's Hessian in (theta, sigma) still has the bound
    parameter's curvature (its criterion is even in theta), which the exact derivatives give."""
    _, reference = lmertest_reference
    flat = study_table()
    flat["ndcg_10"] = flat.ndcg_10 - flat.groupby("dataset_name").ndcg_10.transform("mean") + flat.ndcg_10.mean()
    fit = fit_mixed(flat, "ndcg_10 ~ Model + (1 | dataset_name/query_id)", reference={"Model": "contriever"})
    assert fit.singular and _reference(reference, "singular", "is_singular").iloc[0] == 1
    _check_fit(fit, reference, "singular")


@pytest.mark.r
@pytest.mark.parametrize(
    ("factor", "level"),
    [("query_type", "FACTOID"), ("task_type", "Question Answering"), ("corpus_type", "Wikipedia")],
)
def test_study_shaped_subsample_anova_matches_lmertest(lmertest_reference, factor, level):
    if not BENCH_TABLE.exists():
        pytest.skip(f"benchmark table {BENCH_TABLE} not found")
    _, reference = lmertest_reference
    fit = fit_mixed(study_subsample(), f"ndcg_10 ~ Model * {factor} + (1 | dataset_name/query_id)",
                    reference={"Model": "contriever", factor: level})
    anova = fit.anova().set_index("term")
    # Balanced (20 queries per dataset): our den_df are the exact 16 and 22, R's numerical
    # derivatives give 15.999995 and 22.000028, which moves p by up to 4e-6 relative.
    for quantity, column in (("den_df", "den_df"), ("F", "F_value"), ("p", "p_value"), ("num_df", "num_df")):
        _assert_matches(anova[column], _reference(reference, f"subsample_{factor}", f"anova_{quantity}"),
                        f"anova_{quantity}", p_rtol=1e-5)
    if factor != "query_type":
        exact = 27 - len(fit.design.levels[factor])
        assert anova.loc[factor, "den_df"] == pytest.approx(exact, rel=1e-9)


@pytest.mark.r
def test_query_level_tables_reproduce_lmertest_on_the_subsample(lmertest_reference):
    """The Tables 1-2 function, with task and corpus type from the registry, gives R's ANOVA."""
    if not BENCH_TABLE.exists():
        pytest.skip(f"benchmark table {BENCH_TABLE} not found")
    from robustir.stats.generalizability import query_level_tables

    _, reference = lmertest_reference
    tables = query_level_tables(study_subsample().drop(columns=["task_type", "corpus_type"]))
    for factor in ("query_type", "task_type", "corpus_type"):
        anova = tables.analyses[factor].anova.set_index("term")
        for quantity, column in (("den_df", "den_df"), ("F", "F_value"), ("p", "p_value")):
            _assert_matches(anova[column], _reference(reference, f"subsample_{factor}", f"anova_{quantity}"),
                            f"anova_{quantity}", p_rtol=1e-5)
