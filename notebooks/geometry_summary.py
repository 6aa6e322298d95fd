# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Embedding geometry, stability and scale
#
# Do geometric properties of a model's embedding space predict how robust it is? The study
# correlates IsoScore, average cosine and spectral norms with drop rates and ASR@20 over seven
# systems {cite}`li2026robustness` ({doc}`../../teaching/geometry`), and compares three sizes of
# one family (Qwen3-Embedding 0.6B, 4B, 8B). Here the geometry runs (`notebooks/geometry.py`,
# experiment `geometry`) are set against the stability results of the query-variation runs
# and the corpus-poisoning runs, coloured by clean effectiveness, in the layout of the study's
# Figures 2 and 3: one panel per (geometry metric, perturbation family), one point per system,
# the Pearson r in the title with the study's `*` (p < 0.05) and `**` (p < 0.01). The depth
# series of the retriever trained here (10, 20 and 30 layers of SmolLM2) stands in for the
# scaling comparison.
#
# :::{admonition} Findings
# :class: findings
# ```{glue:md} geometry_findings
# :format: gfm
# ```
# :::
#
# Panels whose stability results are absent from the store are skipped with a note. Each point
# is one system's seed mean; the study had 7 systems per panel (its 8 dense RQ1 systems without
# Contriever, whose geometry it computed but did not correlate; protocol §1.6) and the offline
# book has the catalog's offline encoders, so every coefficient rests on a handful of points and
# carries a wide interval, printed beside it. A correlation is computed and drawn only where a
# panel has at least four distinct values on each axis. Systems below a floor of clean
# effectiveness are *controls*: their relative drop rates divide by a near-zero score, so they
# are drawn in a separate panel and never enter a correlation.

# %% tags=["parameters"]
output = "results"  # results-store root
reference_dir = "../shared/reference"  # the study's published CSV files
models = None  # systems to include; None: every model with geometry results
correlation_models = None  # systems of the Figure 2-3 panels and tests; None: all with geometry
clean_measure = "nDCG@10"  # clean effectiveness, used as colour and as the partial control
chance_level = 0.05  # clean nDCG@10 below which a system is a control, not a headline point
asr_measure = "ASR@20"  # measure of experiment `corpus_poisoning`
asr_variant = None  # variant of corpus_poisoning to use (the study: 50 passages); None: all
confidence = 0.95  # coverage of the correlation intervals
alpha = 0.05  # level of the Holm / Benjamini-Hochberg decisions

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from robustir import plots
from robustir.experiments import geometry as experiment
from robustir.experiments.findings import findings_markdown, save_findings
from robustir.models import MODELS
from robustir.stats import correlation

plots.apply_theme()
reference = Path(reference_dir)
PAPER = "Li et al. (2026)"

# %% [markdown]
# ## Geometry of the offline encoders
#
# Seed mean (and population std over seeds) of every geometry value. When the sample size covers
# the whole corpus, every seed samples all of it, so only the random-pair average cosine varies
# with the seed.

# %%
geometry_table = experiment.summarise(output, models=models)
n_encoders = geometry_table["model"].nunique()
geometry_table.round(4)

# %% [markdown]
# ## Our values beside the study's
#
# The study's IsoScore and average cosine are seed means over 100,000 sampled documents of NQ,
# HotpotQA and MS MARCO for eight large systems; the spectral norms cover all ten dense systems
# {cite}`li2026robustness`. The offline encoders and corpora differ, so the comparison is of
# ranges, not of matched numbers.

# %%
published_geometry = pd.read_csv(reference / "li2026_geometry.csv")
published_spectral = pd.read_csv(reference / "li2026_spectral_norm.csv")
published_long = published_geometry.melt(id_vars=["metric", "split"], var_name="model").replace(
    {"metric": {"avg_cosine": "average_cosine"}}
)
ours_long = geometry_table.melt(
    id_vars=["model", "dataset"],
    value_vars=[m for m in ("isoscore", "average_cosine") if m in geometry_table],
    var_name="metric",
).rename(columns={"dataset": "split"})
side_by_side = pd.concat(
    [published_long.assign(source=PAPER), ours_long.assign(source="this book")]
).groupby(["metric", "source"])["value"].describe()[["count", "min", "50%", "max"]]
side_by_side

# %% [markdown]
# The study's values in full ({cite}`li2026robustness`, seed means of 5 samples):

# %%
# NBVAL_CHECK_OUTPUT
published_geometry

# %%
spectral_ours = (
    geometry_table.groupby("model")["mean_spectral_norm"].first().dropna().rename("this book")
    if "mean_spectral_norm" in geometry_table else pd.Series(dtype=float, name="this book")
)
pd.concat(
    [published_spectral.set_index("model")["mean_spectral_norm"].rename(PAPER), spectral_ours],
    axis=1,
).round(3)

# %% [markdown]
# ## Stability and clean effectiveness from the store
#
# Three stability measures per system: the relative **drop rate** of nDCG@10 per
# query-variation family, the **absolute drop** (clean − perturbed nDCG@10, defined at chance
# level too) and the attack success rate of corpus poisoning.

# %%
panels = experiment.stability_panels(output, models=correlation_models or models,
                                     clean_measure=clean_measure,
                                     floor=chance_level, asr_measure=asr_measure,
                                     asr_variant=asr_variant)
controls = sorted(set(panels.loc[panels["control"], "model"]))
if controls:
    display(Markdown(
        f"Controls (clean {clean_measure} below {chance_level}), drawn apart and left out of "
        "every correlation: " + ", ".join(controls) + "."))
if correlation_models is not None:
    absent = sorted(set(correlation_models) - set(geometry_table["model"]))
    if absent:
        display(Markdown("*No geometry results for " + ", ".join(absent) + " (named in "
                         "`correlation_models`): they are absent from every panel.*"))
    left_out = sorted(set(geometry_table["model"]) - set(correlation_models))
    if left_out:
        display(Markdown("Geometry reported above but left out of the correlation panels "
                         "(`correlation_models`): " + ", ".join(left_out) + "."))


def pearson(x, y):
    result = correlation.pearson(x, y)
    return result.estimate, correlation.significance_marker(result.p_value)


def draw(measure: str, label: str, *, control: bool = False) -> None:
    """One figure per dataset: geometry metric (rows) × variant (columns)."""
    chosen = panels[(panels["stability_measure"] == measure) & (panels["control"] == control)]
    if chosen.empty:
        display(Markdown(f"*No {label} results{' for controls' if control else ''}: skipped.*"))
        return
    for dataset_name, rows in chosen.groupby("dataset"):
        figure = plots.scatter_grid(
            rows, rows="metric", cols="variant", x="geometry", y="stability",
            color=None if control else clean_measure,
            correlation=None if control else pearson,
            min_points=experiment.MIN_DISTINCT_POINTS, ylabel=label)
        figure.suptitle(f"{dataset_name}: geometry vs {label}" + (" (controls)" if control else ""))
        plt.show()


# %% [markdown]
# ## Figure 2 layout: geometry against drop rate
#
# One figure per dataset; rows are geometry metrics, columns perturbation families; colour is
# clean nDCG@10.

# %%
draw("drop_rate", "drop rate")

# %% [markdown]
# The same layout with the absolute change of nDCG@10 (clean − perturbed).

# %%
draw(f"absolute drop of {clean_measure}", f"clean − perturbed {clean_measure}")

# %% [markdown]
# ## Figure 3 layout: geometry against attack success

# %%
draw(asr_measure, asr_measure)

# %% [markdown]
# ## Controls
#
# The systems below the floor, with their absolute drops and attack success: what an encoder
# that retrieves at chance looks like, not a point on a robustness trend.

# %%
draw(f"absolute drop of {clean_measure}", f"clean − perturbed {clean_measure}", control=True)
draw(asr_measure, asr_measure, control=True)

# %% [markdown]
# ## Every test of the grid
#
# Pearson r with its Fisher-z interval, Spearman ρ, Kendall τ-b, and the partial correlation
# controlling for clean nDCG@10. The partial correlation's p-value uses the correct `n − 3`
# degrees of freedom; `partial_p_study` is the study's `n − 2` version. The study tested every
# panel at p < 0.05 **without any multiple-comparison correction**; the Holm (family-wise) and
# Benjamini–Hochberg (false discovery rate) adjustments below run across the whole grid.
# Only panels with at least four distinct values on each axis are tested: the mean spectral
# norm is a property of the weights, and one backbone read at another layer or with another
# pooling shares it, so `distinct_geometry_values` counts backbones, not systems.

# %%
grid = experiment.correlation_grid(panels, clean_measure=clean_measure, confidence=confidence,
                                   alpha=alpha)
if grid.empty:
    display(Markdown("*No panel has four distinct points on each axis among the systems above "
                     "the floor: the correlation grid is empty.*"))
grid.round(3)

# %% [markdown]
# ### Leave one system out
#
# For the panel with the smallest unadjusted p-value: the Pearson r with each system left out.
# A coefficient that changes sign or collapses without one system rests on that system.

# %%
if not grid.empty:
    strongest = grid.sort_values("pearson_p").iloc[0]
    chosen = panels[~panels["control"]
                    & (panels["stability_measure"] == strongest["stability_measure"])
                    & (panels["dataset"] == strongest["dataset"])
                    & (panels["variant"] == strongest["variant"])
                    & (panels["metric"] == strongest["metric"])]
    display(Markdown(f"Panel: {strongest['metric']} vs {strongest['stability_measure']}, "
                     f"{strongest['dataset']}, {strongest['variant']}"))
    display(correlation.leave_one_out(chosen["geometry"], chosen["stability"], chosen["model"]).round(3))

# %% [markdown]
# ## Scale: effectiveness and robustness against parameter count
#
# The study compares Qwen3-Embedding at 0.6B, 4B and 8B parameters descriptively
# {cite}`li2026robustness`: its clean nDCG@10 (published) rises with size; its drop rates and
# attack success rates were not released, so only effectiveness and spectral norm of the three
# sizes can be shown here. Beside them, our systems by parameter count, with their clean
# effectiveness and, where present, their mean drop rate and attack success.

# %%
published_clean = pd.read_csv(reference / "li2026_clean_ndcg10_stability_splits.csv")
qwen_sizes = {"qwen3_0.6B": 0.6e9, "qwen3_4B": 4e9, "qwen3": 8e9}
published_scaling = (
    published_clean.melt(id_vars="split", value_vars=list(qwen_sizes), var_name="model",
                         value_name="clean_ndcg10_x100")
    .assign(parameters=lambda frame: frame["model"].map(qwen_sizes))
    .merge(published_spectral[["model", "mean_spectral_norm"]], on="model", how="left")
)
sizes = {m: MODELS[m].parameters for m in set(geometry_table["model"]) if m in MODELS
         and MODELS[m].parameters}
ours_scaling = experiment.scaling_table(output, sizes, clean_measure=clean_measure,
                                        asr_measure=asr_measure)
figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for split_name, rows in published_scaling.groupby("split"):
    axes[0].plot(rows["parameters"], rows["clean_ndcg10_x100"] / 100, marker="o",
                 label=f"{PAPER}: Qwen3-Embedding, {split_name}")
for dataset_name, rows in ours_scaling.dropna(subset=[clean_measure]).groupby("dataset"):
    axes[0].scatter(rows["parameters"], rows[clean_measure], marker="s",
                    c=[plots.model_color(m) for m in rows["model"]], label=f"this book, {dataset_name}")
    for _, row in rows.iterrows():
        axes[0].annotate(row["model"], (row["parameters"], row[clean_measure]), fontsize=6)
axes[0].set(xscale="log", xlabel="parameters", ylabel="clean nDCG@10",
            title="Effectiveness against scale")
axes[0].legend(fontsize=6)
robustness = [m for m in ("drop_rate", asr_measure) if m in ours_scaling]
for measure in robustness:
    rows = ours_scaling.dropna(subset=[measure])
    axes[1].scatter(rows["parameters"], rows[measure], label=measure)
axes[1].set(xscale="log", xlabel="parameters", ylabel="mean over families / variants",
            title="Robustness against scale (this book)")
if robustness:
    axes[1].legend(fontsize=7)
else:
    axes[1].text(0.5, 0.5, "no stability results in the store", ha="center",
                 transform=axes[1].transAxes)
figure.tight_layout()
plt.show()
published_scaling

# %%
ours_scaling.round(4)

# %%
findings = experiment.findings(grid, ours_scaling)
save_findings(output, "geometry", findings)
glue("geometry_findings", Markdown(findings_markdown(findings)), display=False)
glue("geometry_n_encoders", n_encoders, display=False)
glue("geometry_n_tests", len(grid), display=False)
glue("geometry_max_panel_systems", int(grid["n"].max()) if not grid.empty else 0, display=False)
