"""Tests of robustir.stats.mixed: hand-computed cases, statsmodels, and live lme4/emmeans."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from robustir.stats.factors import CORPUS_TYPE, TASK_TYPE, dataset_factor
from robustir.stats.mixed import MixedModelInputError, fit_mixed

R_SCRIPT = Path(__file__).parent / "r" / "reference_fits.R"
STUDY_FORMULA = "ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)"


def study_table(seed: int = 2026) -> pd.DataFrame:
    """A small study-shaped long table: 4 datasets x 6-12 queries x 4 systems, 3 query types.

    Three rows are dropped so that the query blocks are unbalanced.
    """
    rng = np.random.default_rng(seed)
    system_means = {"bm25": 0.30, "contriever": 0.35, "qwen3": 0.55, "reasonir": 0.48}
    type_shift = {"FACTOID": 0.05, "REASON": -0.08, "NOT-A-QUESTION": 0.0}
    rows = []
    for d, n_queries in enumerate([6, 9, 12, 8]):
        dataset_effect = rng.normal(0.0, 0.08)
        for q in range(n_queries):
            query_type = list(type_shift)[rng.integers(3)]
            query_effect = rng.normal(0.0, 0.12)
            for system, mean in system_means.items():
                score = mean + type_shift[query_type] + dataset_effect + query_effect
                score += rng.normal(0.0, 0.1)
                rows.append(
                    {
                        "query_id": f"d{d}__test__{q}",
                        "dataset_name": f"d{d}",
                        "query_type": query_type,
                        "Model": system,
                        "ndcg_10": float(np.clip(score, 0.0, 1.0)),
                    }
                )
    return pd.DataFrame(rows).drop(index=[5, 40, 77]).reset_index(drop=True)


# -- hand-computed and invariant checks (no R) ------------------------------------------------


def test_balanced_one_way_matches_anova_estimators():
    """Balanced one-way random intercepts: REML = the ANOVA estimators (when positive)."""
    rng = np.random.default_rng(7)
    groups, n = 8, 5
    effects = rng.normal(0.0, 2.0, groups)
    y = (effects[:, None] + rng.normal(0.0, 1.0, (groups, n)) + 10.0).ravel()
    frame = pd.DataFrame({"y": y, "g": np.repeat([f"g{i}" for i in range(groups)], n)})
    fit = fit_mixed(frame, "y ~ 1 + (1 | g)")
    table = y.reshape(groups, n)
    msw = ((table - table.mean(axis=1, keepdims=True)) ** 2).sum() / (groups * (n - 1))
    msb = n * ((table.mean(axis=1) - y.mean()) ** 2).sum() / (groups - 1)
    components = fit.variance_components.set_index("group")["variance"]
    assert components["Residual"] == pytest.approx(msw, rel=1e-6)
    assert components["g"] == pytest.approx((msb - msw) / n, rel=1e-6)
    assert fit.coefficients[0] == pytest.approx(y.mean(), rel=1e-10)
    assert fit.fixed_effects["std_error"].iloc[0] == pytest.approx(np.sqrt(msb / (groups * n)), rel=1e-6)


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning")
def test_nested_fit_matches_statsmodels_mixedlm():
    """The specialised estimator reaches statsmodels' optimum on the protocol §3.7 mapping."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    table = study_table()
    fit = fit_mixed(table, STUDY_FORMULA, reference={"Model": "contriever"})
    assert fit.method == "nested-intercept profiled REML"
    data = table.assign(Model=pd.Categorical(table.Model, ["contriever", "bm25", "qwen3", "reasonir"]))
    model = MixedLM.from_formula(
        "ndcg_10 ~ Model * query_type", data=data, groups="dataset_name", re_formula="1",
        vc_formula={"query": "0 + C(query_id)"},
    )
    reference = max(
        (model.fit(reml=True, method=[m]) for m in ("lbfgs", "powell")), key=lambda r: r.llf
    )
    assert fit.log_likelihood >= reference.llf - 1e-6
    assert fit.log_likelihood == pytest.approx(reference.llf, abs=1e-4)
    np.testing.assert_allclose(fit.coefficients, reference.fe_params.to_numpy(), atol=1e-4)
    components = fit.variance_components.set_index("group")["variance"]
    assert components["dataset_name"] == pytest.approx(float(reference.cov_re.iloc[0, 0]), abs=1e-4)
    assert components["query_id:dataset_name"] == pytest.approx(float(reference.vcomp[0]), abs=1e-4)
    assert components["Residual"] == pytest.approx(reference.scale, abs=1e-4)


def test_unique_query_ids_make_crossed_and_nested_forms_the_same_model():
    """Protocol §3.4: with ids unique across datasets, (1|d) + (1|q) equals (1|d/q)."""
    table = study_table()
    nested = fit_mixed(table, STUDY_FORMULA)
    crossed = fit_mixed(table, "ndcg_10 ~ Model * query_type + (1 | dataset_name) + (1 | query_id)")
    assert crossed.method == "nested-intercept profiled REML"
    assert crossed.log_likelihood == pytest.approx(nested.log_likelihood, abs=1e-9)
    np.testing.assert_allclose(crossed.coefficients, nested.coefficients, atol=1e-10)


def test_marginal_means_are_equal_weight_averages_of_cells():
    fit = fit_mixed(study_table(), STUDY_FORMULA, reference={"Model": "contriever"})
    cells = fit.marginal_means("Model:query_type")
    systems = fit.marginal_means("Model")
    assert list(systems["Model"]) == ["contriever", "bm25", "qwen3", "reasonir"]
    averaged = cells.groupby("Model", sort=False)["marginal_mean"].mean()
    np.testing.assert_allclose(systems["marginal_mean"], averaged[systems["Model"]], rtol=1e-12)
    # The reference cell's mean is the intercept.
    first = cells.iloc[0]
    assert (first["Model"], first["query_type"]) == ("contriever", "FACTOID")
    assert first["marginal_mean"] == pytest.approx(fit.coefficients[0], rel=1e-12)


def test_contrast_adjustments_hand_checked():
    fit = fit_mixed(study_table(), STUDY_FORMULA, reference={"Model": "contriever"})
    raw = fit.contrasts("Model", adjust="none", ddf="asymptotic")
    assert len(raw) == 6 and raw["contrast"].iloc[0] == "contriever - bm25"
    p = raw["p_value"].to_numpy()
    # a two-sided z test is the Wald chi-square test with one degree of freedom
    wald = (raw["estimate"] / raw["std_error"]) ** 2
    np.testing.assert_allclose(p, scipy.stats.chi2.sf(wald, 1), rtol=1e-9)
    # the adjustments against statsmodels' implementation
    from statsmodels.stats.multitest import multipletests

    holm = fit.contrasts("Model", adjust="holm", ddf="asymptotic")["p_value"].to_numpy()
    np.testing.assert_allclose(holm, multipletests(p, method="holm")[1], rtol=1e-12)
    bonferroni = fit.contrasts("Model", adjust="bonferroni", ddf="asymptotic")["p_value"].to_numpy()
    np.testing.assert_allclose(bonferroni, multipletests(p, method="bonferroni")[1], rtol=1e-12)
    tukey = fit.contrasts("Model", adjust="tukey", ddf="asymptotic")["p_value"].to_numpy()
    # Tukey lies between unadjusted and Bonferroni (up to underflow of tiny tail areas).
    assert np.all((tukey >= p) | (tukey < 1e-12)) and np.all(tukey <= bonferroni + 1e-12)


def test_joint_test_of_one_degree_of_freedom_is_squared_z():
    """A two-level factor's joint F equals the square of its pairwise z ratio."""
    table = study_table()
    table = table[table.Model.isin(["contriever", "qwen3"])]
    fit = fit_mixed(table, STUDY_FORMULA, reference={"Model": "contriever"})
    tests = fit.joint_tests(ddf="asymptotic").set_index("term")
    z = fit.contrasts("Model", adjust="none", ddf="asymptotic")["z_ratio"].iloc[0]
    assert tests.loc["Model", "df1"] == 1
    assert tests.loc["Model", "F_ratio"] == pytest.approx(z**2, rel=1e-10)
    assert tests.loc["Model:query_type", "df1"] == 2
    assert np.isinf(tests.loc["Model", "df2"])


def test_formula_naming_a_missing_column_is_rejected():
    with pytest.raises(MixedModelInputError, match=r"columns \['system'\].*lacks"):
        fit_mixed(study_table(), "ndcg_10 ~ system + (1 | dataset_name/query_id)")


def test_factor_with_one_level_is_rejected():
    table = study_table().assign(query_type="FACTOID")
    with pytest.raises(MixedModelInputError, match="'query_type' has a single level"):
        fit_mixed(table, STUDY_FORMULA)


def test_nan_scores_are_rejected_with_row():
    table = study_table()
    table.loc[17, "ndcg_10"] = np.nan
    with pytest.raises(MixedModelInputError, match="'ndcg_10' has 1 missing values.*row index 17"):
        fit_mixed(table, STUDY_FORMULA)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("ndcg_10 ~ Model:query_type + (1 | dataset_name)", "needs its marginal term Model"),
        ("ndcg_10 ~ log(Model) + (1 | dataset_name)", "cannot read 'log\\(Model\\)'"),
        ("ndcg_10 ~ Model", "has no random term"),
        ("ndcg_10 ~ 0 + Model + (1 | dataset_name)", "removing the intercept"),
    ],
)
def test_unsupported_formula_syntax_is_rejected(formula, message):
    with pytest.raises(MixedModelInputError, match=message):
        fit_mixed(study_table(), formula)


def test_summary_record_is_json_and_names_reference_levels():
    fit = fit_mixed(study_table(), STUDY_FORMULA, reference={"Model": "contriever"})
    record = json.loads(json.dumps(fit.summary_record()))
    assert record["reference_levels"] == {"Model": "contriever", "query_type": "FACTOID"}
    assert record["n_groups"] == {"dataset_name": 4, "query_id:dataset_name": 35}
    assert record["log_likelihood"] == pytest.approx(fit.log_likelihood)


def test_unknown_reference_level_and_spec_are_rejected():
    with pytest.raises(MixedModelInputError, match="'e5' of factor 'Model' is not in the data"):
        fit_mixed(study_table(), STUDY_FORMULA, reference={"Model": "e5"})
    fit = fit_mixed(study_table(), STUDY_FORMULA)
    with pytest.raises(MixedModelInputError, match="not a fixed-effect factor"):
        fit.marginal_means("dataset_name")


def test_factor_maps_cover_the_27_study_datasets():
    published = Path(__file__).resolve().parents[2] / "shared/reference/li2026_per_dataset_ndcg10.csv"
    assert len(TASK_TYPE) == len(CORPUS_TYPE) == 27
    assert dataset_factor(["scifact"], "task_type").iloc[0] == "Fact Checking"
    assert dataset_factor(["scifact"], "corpus_type").iloc[0] == "Scientific Paper"
    if published.exists():
        assert set(pd.read_csv(published)["dataset"]) == set(TASK_TYPE)
    with pytest.raises(ValueError, match=r"\['cranfield'\] have no task_type"):
        dataset_factor(["cranfield"], "task_type")


# -- live cross-check against lme4 + emmeans ---------------------------------------------------


@pytest.fixture(scope="module")
def r_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("r_reference")
    study_table().to_csv(out / "study.csv", index=False)
    subprocess.run(
        ["Rscript", str(R_SCRIPT), str(out), str(out / "study.csv")],
        check=True, capture_output=True, text=True, timeout=120,
    )
    reference = pd.read_csv(out / "reference.csv", keep_default_na=False)
    return out, reference


def _values(reference: pd.DataFrame, case: str, quantity: str) -> pd.Series:
    rows = reference[(reference.case == case) & (reference.quantity == quantity)]
    return pd.Series(rows["value"].to_numpy(dtype=float), index=rows["name"].to_numpy())


def _assert_fit_matches(fit, reference, case, rtol=1e-4):
    fixed = fit.fixed_effects
    r_fixef = _values(reference, case, "fixef")
    np.testing.assert_allclose(fixed.loc[r_fixef.index, "estimate"], r_fixef, rtol=rtol, atol=1e-6)
    r_se = _values(reference, case, "se")
    np.testing.assert_allclose(fixed.loc[r_se.index, "std_error"], r_se, rtol=rtol)
    assert fit.log_likelihood == pytest.approx(_values(reference, case, "loglik").iloc[0], rel=1e-6)
    ours = {}
    for row in fit.variance_components.itertuples():
        if row.group == "Residual":
            ours["Residual"] = row.variance
        elif row.term.startswith("cov("):
            ours[f"{row.group}|{row.term[4:-1].replace(', ', '|')}"] = row.variance
        else:
            ours[f"{row.group}|{row.term}"] = row.variance
    r_vc = _values(reference, case, "vcov")
    np.testing.assert_allclose([ours[k] for k in r_vc.index], r_vc, rtol=rtol, atol=1e-8)


@pytest.mark.r
def test_sleepstudy_random_slopes_match_lme4(r_reference):
    out, reference = r_reference
    sleep = pd.read_csv(out / "sleepstudy.csv")
    fit = fit_mixed(sleep, "Reaction ~ Days + (Days | Subject)")
    _assert_fit_matches(fit, reference, "sleepstudy")
    # lme4's published example output (?sleepstudy, Bates et al. 2015, JSS 67(1)).
    assert fit.coefficients == pytest.approx([251.405, 10.467], abs=5e-4)
    assert fit.reml_criterion == pytest.approx(1743.6, abs=0.05)
    assert fit.variance_components["std_dev"].iloc[[0, 1, 3]].to_numpy() == pytest.approx(
        [24.741, 5.922, 25.592], abs=1e-3
    )


@pytest.mark.r
def test_sleepstudy_random_intercepts_and_joint_test_match(r_reference):
    out, reference = r_reference
    fit = fit_mixed(pd.read_csv(out / "sleepstudy.csv"), "Reaction ~ Days + (1 | Subject)")
    assert fit.method == "nested-intercept profiled REML"
    _assert_fit_matches(fit, reference, "sleepstudy_intercept", rtol=1e-6)
    r_f = _values(reference, "sleepstudy_intercept", "joint_F")
    # emmeans rounds F ratios to 3 decimals.
    assert fit.joint_tests(ddf="asymptotic").set_index("term")["F_ratio"]["Days"] == pytest.approx(r_f["Days"], abs=5e-4)


@pytest.mark.r
def test_pastes_nested_intercepts_match_lme4(r_reference):
    out, reference = r_reference
    fit = fit_mixed(pd.read_csv(out / "pastes.csv"), "strength ~ 1 + (1 | batch/cask)")
    assert fit.n_groups == {"batch": 10, "cask:batch": 30}
    _assert_fit_matches(fit, reference, "pastes", rtol=1e-5)
    ml = fit_mixed(pd.read_csv(out / "pastes.csv"), "strength ~ 1 + (1 | batch/cask)", reml=False)
    # The ML surface is flat: log-likelihoods agree to 1e-12 while lme4's batch variance sits
    # 2.4e-5 (relative) from ours, so parameters are compared at the 1e-4.
    _assert_fit_matches(ml, reference, "pastes_ml", rtol=1e-4)
    assert ml.log_likelihood >= _values(reference, "pastes_ml", "loglik").iloc[0] - 1e-9


@pytest.mark.r
def test_penicillin_crossed_intercepts_match_lme4(r_reference):
    out, reference = r_reference
    fit = fit_mixed(pd.read_csv(out / "penicillin.csv"), "diameter ~ 1 + (1 | plate) + (1 | sample)")
    assert fit.method == "general profiled REML"
    # lme4's own optimum is flat to ~6e-5 (relative) in the sample variance on these data.
    _assert_fit_matches(fit, reference, "penicillin", rtol=1e-4)


@pytest.mark.r
def test_study_table_fit_means_and_contrasts_match_lme4_emmeans(r_reference):
    _, reference = r_reference
    fit = fit_mixed(study_table(), STUDY_FORMULA, reference={"Model": "contriever"})
    _assert_fit_matches(fit, reference, "study", rtol=1e-5)

    def check(table, key_columns, quantity, column, atol=1e-7):
        keys = table[key_columns].agg(" ".join, axis=1) if isinstance(key_columns, list) else table[key_columns]
        ours = pd.Series(table[column].to_numpy(), index=keys.to_numpy())
        theirs = _values(reference, "study", quantity)
        assert list(ours.index) == list(theirs.index)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=atol)

    emm = fit.marginal_means("Model", ddf="asymptotic")
    check(emm, "Model", "emm_model_estimate", "marginal_mean")
    check(emm, "Model", "emm_model_se", "std_error")
    check(emm, "Model", "emm_model_lower", "ci_lower")
    cells = fit.marginal_means("Model * query_type", ddf="asymptotic")
    check(cells, ["Model", "query_type"], "emm_cell_estimate", "marginal_mean")
    check(cells, ["Model", "query_type"], "emm_cell_se", "std_error")
    for adjust in ("tukey", "holm"):
        pairs = fit.contrasts("Model", adjust=adjust, ddf="asymptotic")
        check(pairs, "contrast", f"pairs_{adjust}_estimate", "estimate")
        check(pairs, "contrast", f"pairs_{adjust}_se", "std_error")
        check(pairs, "contrast", f"pairs_{adjust}_p", "p_value")
    check(fit.contrasts("Model", adjust="tukey", ddf="asymptotic"), "contrast", "pairs_tukey_lower", "ci_lower")
    family = {"llm_minus_classic": {"bm25": -0.5, "contriever": -0.5, "qwen3": 0.5, "reasonir": 0.5}}
    custom = fit.contrasts("Model", family, adjust="none", ddf="asymptotic")
    check(custom, "contrast", "custom_estimate", "estimate")
    check(custom, "contrast", "custom_p", "p_value")
    tests = fit.joint_tests(ddf="asymptotic")
    check(tests, "term", "joint_F", "F_ratio", atol=5e-4)  # emmeans rounds F to 3 decimals
    check(tests.assign(df1=tests.df1.astype(float)), "term", "joint_df1", "df1")
