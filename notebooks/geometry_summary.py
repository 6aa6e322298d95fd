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
# The aggregate of the geometry runs (`notebooks/geometry.py`, experiment `geometry`), set
# against the stability results of the query-variation runs (experiment `query_variations`)
# and the corpus-poisoning runs (experiment `corpus_poisoning`), coloured by clean
# effectiveness (experiment `evaluate`). It follows the layout of the study's Figures 2 and 3
# {cite}`li2026robustness`: one panel per (geometry metric, perturbation family), one point per
# system, the Pearson r in the title with the study's `*` (p < 0.05) and `**` (p < 0.01).
#
# Panels whose stability results are absent from the store are skipped with a note. Each point
# is one system's seed mean; the study had 7 systems per panel (its 8 dense RQ1 systems without
# Contriever, whose geometry it computed but did not correlate; protocol §1.6) and the offline
# book has the catalog's offline encoders, so every coefficient rests on a handful of points and
# carries a wide interval, printed beside it.

# %% tags=["parameters"]
output = "results"  # results-store root
reference_dir = "../shared/reference"  # the study's published CSV files
models = None  # catalog keys to include; None: every model with geometry results
correlation_models = None  # systems of the Figure 2-3 panels and tests; None: all with geometry
geometry_metrics = ["average_cosine", "isoscore", "uniformity", "alignment", "mean_spectral_norm"]
clean_measure = "nDCG@10"  # clean effectiveness, used as colour and as the partial control
clean_sources = [["evaluate", "clean"], ["query_variations", "none"]]  # first source wins
drop_rate_measure = "drop_rate"  # measure of experiment `query_variations` (one variant per family)
chance_level = 0.05  # clean nDCG@10 below which a system's relative drop rate is left out
asr_measure = "ASR@20"  # measure of experiment `corpus_poisoning`
asr_variant = None  # variant of corpus_poisoning to use (the study: 50 passages); None: all
confidence = 0.95  # coverage of the correlation intervals
alpha = 0.05  # level of the Holm / Benjamini-Hochberg decisions

# %%
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from robustir.models import MODELS
from robustir.results import ResultStore
from robustir.stats import correlation

store = ResultStore(output)
reference = Path(reference_dir)
PAPER = "Li et al. (2026)"


def seed_means(frame: pd.DataFrame, keys: list[str], measures: list[str]) -> pd.DataFrame:
    """Mean and population std (ddof = 0, as the study) over seeds of each measure."""
    grouped = frame.groupby(keys)[measures]
    means = grouped.mean()
    spreads = grouped.std(ddof=0).add_suffix("_std")
    return means.join(spreads).reset_index()


# %% [markdown]
# ## Geometry of the offline encoders
#
# Seed mean (and population std over seeds) of every geometry value. On a corpus smaller than
# the sample size every seed samples the whole corpus, so only the random-pair average cosine
# varies with the seed.

# %%
geometry_runs = store.read_summaries("geometry")
if models is not None:
    geometry_runs = geometry_runs[geometry_runs["model"].isin(models)]
if geometry_runs.empty:
    raise RuntimeError(
        f"no results of experiment 'geometry' under {output!r}: run notebooks/geometry.py "
        "(e.g. `robustir run configs/default.yaml`) first"
    )
metrics = [m for m in geometry_metrics if m in geometry_runs.columns]
geometry_table = seed_means(geometry_runs, ["model", "dataset"], metrics + ["exact_average_cosine"])
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
    id_vars=["model", "dataset"], value_vars=[m for m in ("isoscore", "average_cosine") if m in metrics],
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
    if "mean_spectral_norm" in metrics else pd.Series(dtype=float, name="this book")
)
pd.concat(
    [published_spectral.set_index("model")["mean_spectral_norm"].rename(PAPER), spectral_ours],
    axis=1,
).round(3)

# %% [markdown]
# ## Stability and clean effectiveness from the store

# %%
def measure_table(experiment: str, measure: str, variant: str | None = None) -> pd.DataFrame:
    """Seed means of one measure per (model, dataset, variant); empty when absent."""
    runs = store.read_summaries(experiment)
    if variant is not None and not runs.empty:
        runs = runs[runs["variant"] == variant]
    if runs.empty or measure not in runs.columns or runs[measure].isna().all():
        display(Markdown(f"*No `{measure}` in experiment `{experiment}` under `{output}`: "
                         "the panels that need it are skipped.*"))
        return pd.DataFrame(columns=["model", "dataset", "variant", measure])
    runs = runs.dropna(subset=[measure])  # e.g. the clean reference entries of query_variations
    return runs.groupby(["model", "dataset", "variant"], as_index=False)[measure].mean()


# Clean effectiveness: the evaluate runs, completed by the clean reference runs that the
# query-variation experiment stores for systems without an evaluate run (the same evaluation).
clean = (
    pd.concat([measure_table(experiment, clean_measure, variant)
               for experiment, variant in clean_sources])
    .drop_duplicates(["model", "dataset"], keep="first")
    .drop(columns="variant")
)
all_drop_rates = measure_table("query_variations", drop_rate_measure)
asr = measure_table("corpus_poisoning", asr_measure, asr_variant)

# A drop rate divides by the clean score: for a system at chance level it is noise over noise.
# Such systems stay in the absolute-change panels (clean − perturbed nDCG@10, no division).
at_chance = clean[clean[clean_measure] < chance_level][["model", "dataset"]]
chance_keys = set(map(tuple, at_chance.to_numpy()))
drop_rates = all_drop_rates[[key not in chance_keys for key in zip(all_drop_rates["model"],
                                                                    all_drop_rates["dataset"])]]
absolute_measure = f"absolute drop of {clean_measure}"
absolute_drops = (
    measure_table("query_variations", "clean")
    .merge(measure_table("query_variations", "perturbed"), on=["model", "dataset", "variant"])
    .assign(**{absolute_measure: lambda frame: frame["clean"] - frame["perturbed"]})
    [["model", "dataset", "variant", absolute_measure]]
)
if chance_keys:
    display(Markdown(
        f"Systems below {chance_level} clean {clean_measure}, left out of the drop-rate panels "
        "(their relative drop divides by a near-zero score) and kept in the absolute ones: "
        + ", ".join(f"{m} on {d}" for m, d in sorted(chance_keys)) + "."
    ))
if correlation_models is None:
    correlation_systems = sorted(geometry_table["model"].unique())
else:
    correlation_systems = list(correlation_models)
    absent = sorted(set(correlation_systems) - set(geometry_table["model"]))
    if absent:
        display(Markdown("*No geometry results for " + ", ".join(absent) + " (named in "
                         "`correlation_models`): they are absent from every panel.*"))
    left_out = sorted(set(geometry_table["model"]) - set(correlation_systems))
    if left_out:
        display(Markdown("Geometry reported above but left out of the correlation panels "
                         "(`correlation_models`): " + ", ".join(left_out) + "."))
seed_geometry = geometry_table[geometry_table["model"].isin(correlation_systems)][
    ["model", "dataset", *metrics]
]


def panel_data(stability: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Geometry, stability and clean effectiveness, one row per (model, dataset, variant)."""
    joined = seed_geometry.merge(stability, on=["model", "dataset"])
    return joined.merge(clean, on=["model", "dataset"], how="left")


# %% [markdown]
# ## Figure 2 layout: geometry against drop rate
#
# One figure per dataset; rows are geometry metrics, columns perturbation families. Colour is
# clean nDCG@10.

# %%
def scatter_grid(data: pd.DataFrame, measure: str, label: str) -> None:
    """The study's panel grid for one dataset: metrics × variants, colour = clean nDCG@10."""
    for dataset_name, by_dataset in data.groupby("dataset"):
        variants = sorted(by_dataset["variant"].unique())
        figure, axes = plt.subplots(
            len(metrics), len(variants), figsize=(3.2 * len(variants), 2.8 * len(metrics)),
            squeeze=False, sharey="col",
        )
        for row, metric in enumerate(metrics):
            for col, variant_name in enumerate(variants):
                axis = axes[row][col]
                points = by_dataset[by_dataset["variant"] == variant_name].dropna(subset=[metric])
                colours = points.get(clean_measure)
                drawn = axis.scatter(points[metric], points[measure], c=colours, cmap="viridis",
                                     edgecolors="black", linewidths=0.5)
                for _, point in points.iterrows():
                    axis.annotate(point["model"], (point[metric], point[measure]), fontsize=6)
                title = variant_name
                if len(points) >= 4 and points[metric].nunique() > 1 and points[measure].nunique() > 1:
                    r = correlation.pearson(points[metric], points[measure])
                    title += f"\nr = {r.estimate:.2f}{correlation.significance_marker(r.p_value)}"
                axis.set_title(title, fontsize=8)
                axis.set_xlabel(metric, fontsize=8)
                if col == 0:
                    axis.set_ylabel(label, fontsize=8)
                if colours is not None and col == len(variants) - 1:
                    figure.colorbar(drawn, ax=axis, label=f"clean {clean_measure}")
        figure.suptitle(f"{dataset_name}: geometry vs {label}")
        figure.tight_layout()
        plt.show()


drop_panels = panel_data(drop_rates, drop_rate_measure)
if drop_panels.empty:
    display(Markdown("*Figure 2 skipped: no query-variation results for these models.*"))
else:
    scatter_grid(drop_panels, drop_rate_measure, "drop rate")

# %% [markdown]
# The same layout with the absolute change of nDCG@10 (clean − perturbed), which stays
# defined for systems at chance level.

# %%
absolute_panels = panel_data(absolute_drops, absolute_measure)
if absolute_panels.empty:
    display(Markdown("*Skipped: no query-variation results for these models.*"))
else:
    scatter_grid(absolute_panels, absolute_measure, f"clean − perturbed {clean_measure}")

# %% [markdown]
# ## Figure 3 layout: geometry against attack success

# %%
asr_panels = panel_data(asr, asr_measure)
if asr_panels.empty:
    display(Markdown("*Figure 3 skipped: no corpus-poisoning results for these models.*"))
else:
    scatter_grid(asr_panels, asr_measure, asr_measure)

# %% [markdown]
# ## Every test of the grid
#
# Pearson r with its Fisher-z interval, Spearman ρ, Kendall τ-b, and the partial correlation
# controlling for clean nDCG@10. The partial correlation's p-value uses the correct `n − 3`
# degrees of freedom; `partial_p_study` is the study's `n − 2` version. The study tested every
# panel at p < 0.05 **without any multiple-comparison correction**; the Holm (family-wise) and
# Benjamini–Hochberg (false discovery rate) adjustments below run across the whole grid.
# Panels with fewer than 5 systems are left out.
#
# The mean spectral norm is a property of the weights, and catalog siblings (one backbone read
# at another layer or with another pooling) share their weights: its panels compare as many
# backbones as `distinct_geometry_values` counts, not as many systems as `n`.

# %%
long_panels = pd.concat(
    [
        frame.melt(id_vars=["model", "dataset", "variant", measure, clean_measure],
                   value_vars=metrics, var_name="metric", value_name="geometry")
        .rename(columns={measure: "stability"}).assign(stability_measure=measure)
        for frame, measure in ((drop_panels, drop_rate_measure), (absolute_panels, absolute_measure),
                               (asr_panels, asr_measure))
        if not frame.empty and clean_measure in frame
    ]
    or [pd.DataFrame(columns=["model", "dataset", "variant", "metric", "geometry", "stability",
                              "stability_measure", clean_measure])]
).dropna(subset=["geometry", "stability", clean_measure])
grid = (
    correlation.correlation_table(
        long_panels, x="geometry", y="stability",
        by=["stability_measure", "dataset", "variant", "metric"], control=clean_measure,
        confidence=confidence, alpha=alpha,
    )
    if not long_panels.empty else pd.DataFrame()
)
if not grid.empty:
    panel = ["stability_measure", "dataset", "variant", "metric"]
    distinct = long_panels.groupby(panel)["geometry"].nunique().rename("distinct_geometry_values")
    grid = grid.join(distinct, on=panel)
if grid.empty:
    display(Markdown("*No panel has 5 or more systems with geometry, stability and clean "
                     "results: the correlation grid is empty.*"))
grid.round(3)

# %% [markdown]
# ### Leave one system out
#
# For the panel with the smallest unadjusted p-value: the Pearson r with each system left out.
# A coefficient that changes sign or collapses without one system rests on that system.

# %%
if not grid.empty:
    strongest = grid.sort_values("pearson_p").iloc[0]
    chosen = long_panels[
        (long_panels["stability_measure"] == strongest["stability_measure"])
        & (long_panels["dataset"] == strongest["dataset"])
        & (long_panels["variant"] == strongest["variant"])
        & (long_panels["metric"] == strongest["metric"])
    ]
    display(Markdown(f"Panel: {strongest['metric']} vs {strongest['stability_measure']}, "
                     f"{strongest['dataset']}, {strongest['variant']}"))
    display(correlation.leave_one_out(chosen["geometry"], chosen["stability"], chosen["model"]).round(3))

# %% [markdown]
# ## Scale: effectiveness and robustness against parameter count
#
# The study compares Qwen3-Embedding at 0.6B, 4B and 8B parameters descriptively
# {cite}`li2026robustness`: its clean nDCG@10 (published) rises with size; its drop rates and
# attack success rates were not released, so only effectiveness and spectral norm of the three
# sizes can be shown here. Beside them, our
# offline encoders by parameter count, with their clean effectiveness and, where present,
# their mean drop rate and attack success. Reading the same backbone at a shallower layer or
# with another pooling does not change the parameter count, so those variants stack vertically.

# %%
published_clean = pd.read_csv(reference / "li2026_clean_ndcg10_stability_splits.csv")
qwen_sizes = {"qwen3_0.6B": 0.6e9, "qwen3_4B": 4e9, "qwen3": 8e9}
published_scaling = (
    published_clean.melt(id_vars="split", value_vars=list(qwen_sizes), var_name="model",
                         value_name="clean_ndcg10_x100")
    .assign(parameters=lambda frame: frame["model"].map(qwen_sizes))
    .merge(published_spectral[["model", "mean_spectral_norm"]], on="model", how="left")
)
our_models = sorted(set(geometry_table["model"]) | set(clean["model"]))
ours_scaling = pd.DataFrame(
    {"model": our_models, "parameters": [MODELS[m].parameters if m in MODELS else math.nan
                                          for m in our_models]}
).merge(clean, on="model", how="left")
for frame, measure in ((drop_rates, drop_rate_measure), (asr, asr_measure)):
    if not frame.empty:
        mean_over_variants = frame.groupby(["model", "dataset"], as_index=False)[measure].mean()
        ours_scaling = ours_scaling.merge(mean_over_variants, on=["model", "dataset"], how="left")

figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for split_name, rows in published_scaling.groupby("split"):
    axes[0].plot(rows["parameters"], rows["clean_ndcg10_x100"] / 100, marker="o",
                 label=f"{PAPER}: Qwen3-Embedding, {split_name}")
if clean_measure in ours_scaling:
    for dataset_name, rows in ours_scaling.dropna(subset=[clean_measure]).groupby("dataset"):
        axes[0].scatter(rows["parameters"], rows[clean_measure], marker="s",
                        label=f"this book, {dataset_name}")
        for _, row in rows.iterrows():
            axes[0].annotate(row["model"], (row["parameters"], row[clean_measure]), fontsize=6)
axes[0].set(xscale="log", xlabel="parameters", ylabel="clean nDCG@10",
            title="Effectiveness against scale")
axes[0].legend(fontsize=6)
robustness = [m for m in (drop_rate_measure, asr_measure) if m in ours_scaling]
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
glue("geometry_n_encoders", n_encoders, display=False)
glue("geometry_n_tests", len(grid), display=False)
glue("geometry_max_panel_systems", int(grid["n"].max()) if not grid.empty else 0, display=False)
