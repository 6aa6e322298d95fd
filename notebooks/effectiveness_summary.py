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
# # Clean effectiveness
#
# Before measuring robustness we check that the pipeline reproduces known numbers, and we see
# how well each system of the offline default retrieves at all. Each section of this chapter
# is one executed run of `notebooks/evaluate.py`: one system on one test split, the top 1,000
# documents by exact search, scored with trec_eval's conventions
# ({doc}`../../teaching/evaluation`).
#
# :::{admonition} Findings
# :class: findings
# ```{glue:md} effectiveness_findings
# :format: gfm
# ```
# :::

# %% tags=["parameters"]
output = "results"  # results-store root
reference_dir = "../shared/reference"  # the study's published CSV files
chance_level = 0.05  # clean nDCG@10 below which a system is a control, not a headline point
measures = ["nDCG@10", "Recall@100", "MRR@10"]  # columns of the table

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown
from myst_nb import glue

from robustir import plots
from robustir.experiments import evaluation
from robustir.experiments.findings import findings_markdown, save_findings
from robustir.models import display_name, family_label, MODELS

plots.apply_theme()
table = evaluation.summarise(output)
table["system"] = table["model"].map(display_name)
table["family"] = [family_label(MODELS[m].family) if m in MODELS else "your model" for m in table["model"]]
table["control"] = table["nDCG@10"] < chance_level
published = pd.read_csv(Path(reference_dir) / "li2026_per_dataset_ndcg10.csv")
findings = evaluation.findings(table, published)
save_findings(output, "effectiveness", findings)
glue("effectiveness_findings", Markdown(findings_markdown(findings)), display=False)

# %% [markdown]
# ## Every system on every dataset
#
# Means over each split's test queries, in [0, 1]. Systems below the floor of clean nDCG@10 set
# in the parameters are *controls*: they are shown, marked, and kept out of the figures'
# headline panels.

# %%
columns = ["system", "family", "dataset", "n_queries", *[m for m in measures if m in table], "control"]
table[columns].sort_values(["dataset", "nDCG@10"], ascending=[True, False]).round(4)

# %% [markdown]
# ## nDCG@10 by system
#
# The systems above the floor, coloured by family; the controls in their own panel, on their
# own scale.

# %%
shown = table[~table["control"]]
controls = table[table["control"]]
figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [4, 1]})
datasets = sorted(table["dataset"].unique())
plots.bar_chart(shown, x="dataset", y="nDCG@10", hue="model", x_order=datasets,
                labels=dict(zip(table["model"], table["system"])), ax=axes[0])
axes[0].set(ylabel="nDCG@10", xlabel="", title="systems")
if controls.empty:
    axes[1].axis("off")
else:
    plots.bar_chart(controls, x="dataset", y="nDCG@10", hue="model",
                    labels=dict(zip(table["model"], table["system"])), ax=axes[1])
    axes[1].set(title="controls", xlabel="")
figure.tight_layout()

# %% [markdown]
# ## Beside the study's SciFact numbers
#
# The study's clean nDCG@10 on SciFact for its nine RQ1 systems {cite}`li2026robustness`, and
# ours for the offline systems. The systems differ except BM25; the rows of the findings box
# above compare the numbers that can be compared.

# %%
study = (published.set_index("dataset").loc["scifact"].drop("n_queries") / 100).rename("nDCG@10").to_frame()
study["source"] = "Li et al. (2026)"
study.index = [display_name(k) for k in study.index]
ours = table[table["dataset"] == "scifact"].set_index("system")[["nDCG@10"]].assign(source="this book")
pd.concat([study, ours]).sort_values("nDCG@10", ascending=False).round(4)

# %% tags=["remove-cell"]
# NBVAL_CHECK_OUTPUT
# (a test checks these numbers; the cell is not shown in the book)
print(table.set_index(["model", "dataset"])["nDCG@10"].round(4).sort_index().to_string())
