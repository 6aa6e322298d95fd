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
# # Corpus poisoning
#
# How often does an attacker who inserts a handful of optimised passages into the corpus get one
# of them into the top 20? The study attacks ten dense systems with supervised HotFlip
# {cite}`zhong2023poisoning,li2025reproducing` at $N \in \{10, 50\}$ passages and 5,000
# iterations and reports ASR@20 ({doc}`../../teaching/perturbations`), as mean ± population
# standard deviation over seeds (its Table 3). The offline default runs far fewer iterations,
# chosen so that every attack finishes in minutes on two CPU cores, with bfloat16 weights as the
# study runs every system; the run pages state each run's settings. The initial gold passages
# and plain query-text injection are evaluated beside the optimised passages, so that what the
# optimisation adds is visible, and so is the damage to retrieval quality.
#
# :::{admonition} Findings
# :class: findings
# ```{glue:md} poisoning_findings
# :format: gfm
# ```
# :::

# %% tags=["parameters"]
output = "results"  # results-store root written by notebooks/corpus_poisoning.py
measure = "ASR@20"  # the study reports ASR@20
n_passages = [10, 50]  # the N shown (the study: 10 and 50)

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown
from myst_nb import glue

from robustir import plots
from robustir.experiments import corpus_poisoning
from robustir.experiments.corpus_poisoning import (
    final_token_table,
    poisoning_table,
    seed_statistics,
    summarise,
)
from robustir.experiments.findings import findings_markdown, save_findings
from robustir.models import display_name

plots.apply_theme()
shown = summarise(output, n_passages=n_passages)
findings = corpus_poisoning.findings(shown, measure=measure)
save_findings(output, "corpus_poisoning", findings)
glue("poisoning_findings", Markdown(findings_markdown(findings)), display=False)

# %% [markdown]
# ## Table 3: attack success of HotFlip passages
#
# Rows are the systems, in a block per precision of the attack (float32 or bfloat16), columns
# the evaluation datasets and N.

# %%
table = poisoning_table(shown, measure)
has_hotflip = "hotflip" in table.index.get_level_values("passages")
table.xs("hotflip", level="passages") if has_hotflip else table.iloc[:0]

# %% [markdown]
# ## What the optimisation adds
#
# The same measure for the passages HotFlip starts from (`gold`) and for passages made of the
# clusters' training queries (`query_text`), beside the optimised ones. Bars: the seed mean in
# percent; error bars: the population standard deviation over seeds. Each seed clusters the
# attacker's queries anew and starts from other gold passages, so the spread over seeds is the
# spread of the attack's set-up as well as of its optimisation. The set-up also depends on the
# last bits of the attacker queries' bfloat16 embeddings, which change with the number of CPU
# threads: the same seed run with other threads can cluster differently and land elsewhere.

# %%
bars = seed_statistics(shown, measure).reset_index()
bars["passages"] = (bars["passages"] + " " + bars["attack_dtype"]).str.replace(
    f" {corpus_poisoning.NO_ATTACK}", "").str.replace("_", " ")
panels = list(bars.groupby(["dataset", "N"]))
if panels:
    kinds = sorted(set(bars["passages"]), key=lambda kind: (not kind.startswith("gold"),
                                                             kind.startswith("hotflip"), kind))
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.4), squeeze=False)
    for axis, ((dataset, n), rows) in zip(axes[0], panels):
        plots.bar_chart(rows, x="passages", y="mean", hue="model", error="std", x_order=kinds,
                        labels={m: display_name(m) for m in rows["model"]}, ax=axis)
        axis.set(title=f"{dataset}, N = {n}", ylabel=f"{measure} (%)", xlabel="")
    figure.tight_layout()
table

# %% [markdown]
# ## Damage to retrieval quality
#
# Mean change of nDCG@10 (poisoned − clean, ×100) over the test queries; negative values mean
# adversarial passages pushed relevant documents out of the top 10.

# %%
poisoning_table(shown, "nDCG@10 change", digits=2)

# %% [markdown]
# ## Last-token pooling: does the passage's final token decide?
#
# A system that pools the last token's hidden state may put much of a text's embedding into its
# final token. If it does, a gold passage that ends as most queries do (SciFact's claims end
# with a full stop) could reach the top 20 before any optimisation, whatever the rest of its
# text, and HotFlip steps at random positions would rarely reach the position that matters. The
# table lets you check this run by run: for each last-token system, the final tokens of the
# initial (gold) passages, the share of test queries that end with one of them, and the ASR of
# the gold and of the optimised passages.

# %%
final_token_table(shown, measure)

# %% tags=["remove-cell"]
# NBVAL_CHECK_OUTPUT
# (a test checks these numbers; the cell is not shown in the book)
for (passages, dtype, model), row in table.iterrows():
    print(passages, dtype, model, " | ".join(f"{d} N={n}: {v}" for (d, n), v in row.dropna().items()))
