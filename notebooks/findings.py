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
# # Findings at a glance
#
# What the study claimed {cite}`li2026robustness`, what this build of the book measured
# offline, and whether they agree, one row per claim; each chapter's findings box has the
# details. The verdicts are computed from the numbers by stated rules
# (`robustir.experiments.findings.VERDICTS`):
#
# ```{glue:md} verdict_rules
# :format: gfm
# ```
#
# The study's findings, in its abstract's words: instruction-tuned LLM retrievers generalize
# best; reasoning-optimized ones pay a "specialization tax"; LLM retrievers are more robust than
# encoder-only baselines to typos and corpus poisoning but remain vulnerable to synonymizing;
# embedding geometry gives predictive signals for lexical stability; larger models are
# generally more robust. This book's offline default cannot load the study's 4–8B systems: it
# tests the claims on a decoder-only retriever it trains itself (135M parameters), an
# encoder-only one (MiniLM) and BM25, on SciFact and Cranfield, and re-analyses the study's
# published per-dataset scores.

# %% tags=["parameters"]
output = "results"  # results-store root; every aggregate notebook saved its findings there
chapters = ["effectiveness", "training", "generalizability", "query_variations",
            "corpus_poisoning", "geometry"]  # display order

# %%
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from robustir.experiments.findings import VERDICTS, findings_table, load_findings

glue("verdict_rules", Markdown("\n".join(f"* **{name}**: {rule}" for name, rule in VERDICTS.items())),
     display=False)
saved = load_findings(output)
missing = [c for c in chapters if c not in saved]
if missing:
    display(Markdown("*Not in this build: " + ", ".join(missing) + ".*"))
table = pd.concat([findings_table(saved[c]).assign(chapter=c) for c in chapters if c in saved],
                  ignore_index=True) if saved else pd.DataFrame()
table[["chapter", "the study's claim", "ours", "verdict"]] if not table.empty else table

# %%
# NBVAL_CHECK_OUTPUT
print(table.groupby("verdict").size().to_string() if not table.empty else "no findings")
