# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Generalizability: which systems win once datasets are a random effect?
#
# The study's first research question asks how well each retriever generalizes across tasks,
# corpora and query types (protocol §3). Raw averages over datasets mix two things: how good a
# system is, and which datasets happen to be in the pool. A **linear mixed model** separates them:
# each dataset gets its own random intercept (some datasets are simply harder for everyone), and
# the systems' fixed effects are what remains. The **estimated marginal means** (EMMs) of the
# systems, averaged with equal weights over the levels of a factor such as task type, are the
# study's headline numbers (protocol §3.5).
#
# :::{admonition} Findings
# :class: findings
# ```{glue:md} generalizability_findings
# :format: gfm
# ```
# :::
#
# This chapter fits these models with `robustir.stats.mixed.fit_mixed` (checked against R's
# lme4 and emmeans to 1e-4 in `tests/test_mixed.py`) on
#
# 1. the study's **published** per-dataset nDCG@10 of 9 systems on 27 datasets, with the task-type
#    and corpus-type factors of protocol §3.1 (`robustir.stats.factors`);
# 2. **our own** query-level nDCG@10 from the results store, with queries nested in datasets.
#
# Learning outcomes: read a mixed-model formula; tell a marginal mean from a raw mean; test a
# family contrast such as the "specialization tax" of reasoning-tuned retrievers
# ({doc}`../../teaching/mixed_models`).

# %% tags=["parameters"]
reference_dir = "../shared/reference"  # folder with li2026_per_dataset_ndcg10.csv
output = "results"  # results-store root
experiment = "evaluate"  # results-store experiment holding clean query-level scores
variant = "clean"  # results-store variant
measure = "nDCG@10"  # measure of per_query.csv used as the response
chance_level = 0.05  # clean nDCG@10 below which a system is a control, left out of the fit
classify_query_types = True  # try to load the NF-CATS classifier (needs the model hub)

# %%
import logging

import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from robustir import plots
from robustir.experiments import generalizability as experiment_module
from robustir.experiments.findings import findings_markdown, save_findings
from robustir.query_types import QueryTypeClassifierUnavailable, query_type_classifier
from robustir.stats.mixed import fit_mixed

logging.basicConfig(level=logging.WARNING)
plots.apply_theme()

# %% [markdown]
# ## The published table: 9 systems × 27 datasets
#
# The study's per-dataset nDCG@10 (×100 in the file, rescaled here to the [0, 1] scale of its
# mixed models) gives one score per system and dataset. Each dataset also carries a task type
# and a corpus type (protocol §3.1).

# %%
scores = experiment_module.published_scores(reference_dir)
systems = list(dict.fromkeys(scores["Model"]))
display(scores.head())

# %% [markdown]
# Three models, all fitted by REML with `contriever` as the reference system (as the study):
#
# * **Dataset only:** `ndcg ~ Model + (1 | dataset)`. A system's EMM is its mean over the 27
#   datasets; the random intercept soaks up dataset difficulty, which tightens the comparisons
#   between systems.
# * **Task type:** `ndcg ~ Model * task_type + (1 | dataset)`; the system EMM now weighs the 11
#   task types equally, whatever their number of datasets.
# * **Corpus type:** `ndcg ~ Model * corpus_type + (1 | dataset)`, equal weights over 5 corpora.

# %%
fits = experiment_module.fit_dataset_level(scores)
findings = experiment_module.findings(fits, systems)
save_findings(output, "generalizability", findings)
glue("generalizability_findings", Markdown(findings_markdown(findings)), display=False)
variance = pd.concat(
    {name: fit.variance_components.set_index("group")["std_dev"] for name, fit in fits.items()},
    axis=1,
)
display(variance)

# %%
emms = pd.concat(
    [fit.marginal_means("Model").assign(fit=name) for name, fit in fits.items()],
    ignore_index=True,
)
order = (
    emms[emms.fit == "dataset only"].sort_values("marginal_mean", ascending=False)["Model"].tolist()
)
display(emms.pivot(index="Model", columns="fit", values="marginal_mean").loc[order].round(3))

# %%
joint = pd.concat({name: fit.joint_tests() for name, fit in fits.items()}, names=["fit"])
display(joint.round(4))

# %% tags=["hide-input"]
plots.interval_plot(emms.set_index("Model").loc[order].reset_index(), estimate="marginal_mean",
                    low="ci_lower", high="ci_upper", panel="fit",
                    xlabel="marginal mean nDCG@10 (95% CI)");

# %% [markdown]
# ## The "specialization tax"
#
# The paper's abstract says that reasoning-tuned retrievers (ReasonIR, DIVER, ReasonEmbed) pay a
# *specialization tax*: they generalize worse than general instruction-tuned LLM retrievers
# (Qwen3, Linq, GTE). The matching test is a **family contrast** between EMMs: the mean EMM of
# one family minus that of another, with Holm-adjusted p-values over the three comparisons.

# %%
tax = pd.concat(
    {name: experiment_module.family_contrasts(fit, systems) for name, fit in fits.items()},
    names=["fit"],
).reset_index(level=0)
display(tax.round(4))

# %%
best = emms[emms.fit == "dataset only"].sort_values("marginal_mean").iloc[-1]
glue("best_system", best["Model"], display=False)
glue("best_system_emm", float(best["marginal_mean"]), display=False)
for name in fits:
    key = name.replace(" ", "_")
    row = tax[(tax.fit == name) & (tax.contrast == "reasoning − general")].iloc[0]
    glue(f"tax_{key}", float(row["estimate"]), display=False)
    glue(f"tax_{key}_p", float(row["p_value"]), display=False)
    row = tax[(tax.fit == name) & (tax.contrast == "general − encoder-only")].iloc[0]
    glue(f"llm_gain_{key}", float(row["estimate"]), display=False)
glue("dataset_sd", float(variance.loc["dataset", "dataset only"]), display=False)
glue("residual_sd", float(variance.loc["Residual", "dataset only"]), display=False)

# %% [markdown]
# **Reading.** With datasets as a random effect, {glue:text}`best_system` has the highest
# marginal mean nDCG@10 ({glue:text}`best_system_emm:.3f`). Datasets differ a lot: the
# between-dataset standard deviation is {glue:text}`dataset_sd:.3f`, against a residual
# (system × dataset) standard deviation of {glue:text}`residual_sd:.3f`, which is why raw means
# over different dataset pools are hard to compare. The reasoning-tuned family scores
# {glue:text}`tax_dataset_only:.3f` nDCG@10 relative to the general instruction-tuned family
# (Holm p = {glue:text}`tax_dataset_only_p:.2g`); weighting task types equally the difference is
# {glue:text}`tax_task_type:.3f` (p = {glue:text}`tax_task_type_p:.2g`), and weighting corpus
# types equally {glue:text}`tax_corpus_type:.3f` (p = {glue:text}`tax_corpus_type_p:.2g`). A
# negative difference is the specialization tax. General instruction-tuned systems lead the
# encoder-only baselines by {glue:text}`llm_gain_dataset_only:.3f`. These are 27 dataset-level
# scores, not the study's 42,524 queries, so the intervals are wider than those of the paper's
# query-level models.

# %% [markdown]
# ## Query type (NF-CATS)
#
# The study's query-type factor labels every query with the NF-CATS classifier
# (`Lurunchik/nf-cats`, protocol §3.2) in the study's own head (a RoBERTa encoder, its own
# pooler and a two-layer Mish head, `robustir.query_types`). The book loads it by id when the
# model hub (or a local copy) is available.

# %%
query_type_status = "not attempted"
if classify_query_types:
    try:
        classify = query_type_classifier()
        query_type_status = "available"
    except QueryTypeClassifierUnavailable as error:
        query_type_status = "unavailable"
        logging.getLogger("generalizability").warning("%s", error)
glue("query_type_status", query_type_status, display=False)
print(f"NF-CATS query-type classifier: {query_type_status}")

# %% [markdown]
# The query-type factor is {glue:text}`query_type_status` in this build. Without it, the
# query-level model below uses system and dataset only; the study's Analysis 1
# (`ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)`) runs unchanged once labels exist
# (`benchmarks/mixed_model_fit.py` fits it at the study's scale of 382,716 rows).

# %% [markdown]
# ## Our own query-level results
#
# The evaluation notebooks store one nDCG@10 per query in the results store. Queries are nested
# in datasets, so the model is `ndcg_10 ~ Model + (1 | dataset_name/query_id)`: a random
# intercept per dataset and one per query within its dataset (protocol §3.4), and the system
# EMMs compare systems on the same queries.

# %%
own = experiment_module.query_level_table(output, experiment=experiment, variant=variant,
                                          measure=measure)
clean_means = own.groupby(["Model", "dataset_name"])["ndcg_10"].mean()
controls = sorted(set(clean_means[clean_means < chance_level].index.get_level_values("Model")))
own, left_out = experiment_module.balanced_design(own, exclude=controls)
n_models, n_datasets = own["Model"].nunique(), own["dataset_name"].nunique()
glue("own_models", n_models, display=False)
glue("own_datasets", n_datasets, display=False)
glue("own_left_out", ", ".join(left_out) if left_out else "none", display=False)
print(f"{len(own)} query scores, {n_models} systems, {n_datasets} datasets; left out: "
      f"{', '.join(left_out) or 'none'} (controls below {chance_level} nDCG@10, or systems "
      "missing a dataset)")

# %%
own_fit = None
if n_models >= 2 and n_datasets >= 2:
    own_fit = fit_mixed(own, "ndcg_10 ~ Model + (1 | dataset_name/query_id)")
    own_emms = own_fit.marginal_means("Model")
    display(own_fit.variance_components)
    display(own_fit.contrasts("Model", adjust="tukey").round(4))
    plots.interval_plot(own_emms, estimate="marginal_mean", low="ci_lower", high="ci_upper",
                        xlabel="marginal mean nDCG@10 (95% CI)")
    glue("own_best", own_emms.sort_values("marginal_mean").iloc[-1]["Model"], display=False)
else:
    glue("own_best", "none (fewer than two systems or datasets)", display=False)
    print(
        f"Skipping the query-level fit: the results store has {n_models} system(s) "
        f"and {n_datasets} dataset(s) for experiment {experiment!r}, variant {variant!r}; a "
        "mixed model with datasets as a random effect needs at least two of each."
    )

# %% [markdown]
# ### The study's Tables 1–2 on our query-level scores
#
# The study's three query-level models, `ndcg_10 ~ Model * X + (1 | dataset_name/query_id)` for
# X = query type, task type and corpus type (reference levels contriever, FACTOID, Question
# Answering, Wikipedia where present), with the marginal mean of every Model × X cell, the
# Type-III ANOVA with Satterthwaite degrees of freedom (lmerTest's) and the refit without Quora
# (`robustir.stats.generalizability.query_level_tables`, checked against R in the tests). A
# model that our store cannot support (a factor with one level, or levels that are single
# datasets, so the factor cannot be told from the datasets) is skipped with the reason.

# %%
from robustir.stats.generalizability import query_level_tables

tables = query_level_tables(own) if n_models >= 2 else None
for name, analysis in (tables.analyses.items() if tables else []):
    if analysis.skipped:
        display(Markdown(f"**{name}**: not fitted: {analysis.skipped}"))
        continue
    display(Markdown(f"**{name}**: `{analysis.formula}` on {analysis.n_obs} rows"))
    display(analysis.cell_means.pivot(index="Model", columns=analysis.factor,
                                      values="marginal_mean").round(3))
    display(analysis.anova.round(4))

# %% [markdown]
# **Reading.** Our store holds {glue:text}`own_models` system(s) on {glue:text}`own_datasets`
# dataset(s); the system with the highest marginal mean is {glue:text}`own_best`. A variance
# between datasets estimated from so few datasets is poorly identified, so the EMM intervals
# mostly reflect the between-query spread; the pairwise Tukey contrasts, which compare systems on
# the same queries, are the informative part.

# %% tags=["remove-cell"]
# NBVAL_CHECK_OUTPUT
# (a test checks these numbers; the cell is not shown in the book)
print(emms[emms.fit == "dataset only"].set_index("Model")["marginal_mean"].round(4).to_string())
