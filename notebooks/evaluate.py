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
# # Clean evaluation: one system on one dataset
#
# One run of the clean-effectiveness analysis (protocol §2): the corpus and the split's judged
# queries are encoded with the system's prompts and pooling (the corpus through the embedding
# cache, so every later analysis reuses it), every query is searched exactly over the whole
# corpus (top 1000), and each query's ranking is scored with trec_eval semantics. The
# per-query scores go to the results store under experiment `evaluate`; they are the response
# variable of the generalizability models and the baseline of every stability analysis.

# %% tags=["parameters"]
model = "minilm"  # catalog key, model folder, .yaml model spec or mapping (robustir.model_sources)
dataset = "scifact"  # dataset key under the data root, or a BEIR folder
split = "test"  # qrels split
variant = "clean"  # name of this query set / qrels set in the results store
top_k = 1000  # hits per query (the study: 1000)
batch_size = 32  # texts per forward pass (the study: 32 for clean encoding)
max_length = None  # token limit; None: the system's own
dtype = None  # weights dtype; None: float32 on a CPU, the system's on CUDA
device = None  # None: CUDA when available, else CPU
data_root = None  # None: $ROBUSTIR_DATA or ./data
cache_dir = None  # embedding cache; None: $ROBUSTIR_CACHE/embeddings
output = "results"  # results-store root

# %%
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from robustir import plots
from robustir.cache import EmbeddingCache
from robustir.experiments.evaluation import evaluate
from robustir.model_sources import resolve_model

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
logging.getLogger("bm25s").setLevel(logging.WARNING)

spec = resolve_model(model)
result = evaluate(
    spec, dataset, split=split, variant=variant, top_k=top_k, batch_size=batch_size,
    max_length=max_length, dtype=dtype, device=device, data_root=data_root,
    cache=EmbeddingCache(cache_dir), progress=False,
)
entry = Path(result.write(output)).resolve().relative_to(Path(output).resolve())
print(f"{spec.display_name} on {result.params['dataset']}/{split}: "
      f"{result.summary['n_queries']} queries in {result.summary['elapsed_s']:.0f} s; "
      f"written to the results store as {entry.as_posix()}")  # no machine path on the page
if not spec.retrieval_trained:
    print(f"Note: {spec.display_name} is {spec.note}.")

# %% [markdown]
# ## Summary
#
# Means over the evaluated queries, in [0, 1]. nDCG@10 is the study's primary measure;
# MRR@10 is `recip_rank` on each ranking cut at 10 in trec_eval order.

# %%
# NBVAL_CHECK_OUTPUT
summary = pd.Series(result.summary["metrics"], name=spec.display_name).round(4)
print(summary.to_string())

# %% [markdown]
# ## How the queries spread
#
# A mean hides how unevenly a system serves its queries: the distribution of per-query
# nDCG@10 shows how many queries are answered perfectly and how many not at all.

# %%
plots.apply_theme()
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.hist(result.per_query["nDCG@10"], bins=20, range=(0, 1),
        color=plots.model_color(spec.key), edgecolor="white")
ax.set_xlabel("nDCG@10 per query")
ax.set_ylabel("queries")
ax.set_title(f"{spec.display_name} on {result.params['dataset']} ({split})")
fig.tight_layout()
plt.show()

# %%
shares = {
    "nDCG@10 = 0": float((result.per_query["nDCG@10"] == 0).mean()),
    "nDCG@10 = 1": float((result.per_query["nDCG@10"] == 1).mean()),
}
pd.Series(shares, name="share of queries").round(3).to_frame()
