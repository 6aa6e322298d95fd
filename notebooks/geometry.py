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
# # Embedding geometry of one system on one dataset
#
# One run of the geometry analysis (protocol §6): the clean corpus embeddings of one catalog
# system are sampled with the study's length-stratified scheme (§6.1) and described by
#
# * **IsoScore** (§6.2, {cite}`rudman2022isoscore`): how evenly the variance spreads over the
#   dimensions, 1 = isotropic;
# * **average cosine** (§6.3): the study's mean cosine over random pairs, higher = narrower cone,
#   with the exact distinct-pair mean beside it (improvement §8.2 item 7);
# * **alignment and uniformity** ({cite}`wang2020understanding`, improvement §8.2 item 8):
#   query–gold-passage distance and spread on the sphere, lower = better for both;
# * **mean spectral norm** of the system's Linear layers (§6.4), a property of the weights alone.
#
# The values go to the results store under experiment `geometry`; the aggregate notebook
# `geometry_summary.py` sets them against the stability measures.

# %% tags=["parameters"]
model = "minilm"  # catalog key, model folder, .yaml model spec or mapping (robustir.model_sources)
dataset = "scifact"  # dataset key under the data root
split = "test"  # qrels split whose queries give the alignment pairs
variant = "clean"  # results-store variant: the clean corpus embeddings
seed = 1999  # sampling seed; the study used 1999, 5, 27, 2016, 2026
sample_size = 100_000  # documents per sample (the study: 100,000)
shard_size = 50_000  # documents per length-sorted shard (the study: 50,000)
n_pairs = 100_000  # random pairs for the average cosine (the study: 100,000)
uniformity_t = 2.0  # temperature of the uniformity loss
data_root = None  # None: $ROBUSTIR_DATA or ./data
cache_dir = None  # embedding cache folder; None: $ROBUSTIR_CACHE/embeddings or ~/.cache/robustir/embeddings
device = None  # None: CUDA when available, else CPU
batch_size = 32  # texts per forward pass (the study: 32 for the clean corpus)
max_length = None  # token limit; None: the catalog's. Match the evaluate runs to share the cache
dtype = None  # weights dtype; None: float32 on a CPU. Match the evaluate runs to share the cache
output = "results"  # results-store root

# %%
import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from robustir import geometry
from robustir.cache import EmbeddingCache
from robustir.experiments.geometry import run_geometry
from robustir.model_sources import resolve_model

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

spec = resolve_model(model)
run = run_geometry(
    spec, dataset, split=split, seed=seed, sample_size=sample_size, shard_size=shard_size,
    n_pairs=n_pairs, uniformity_t=uniformity_t, variant=variant, data_root=data_root,
    cache=EmbeddingCache(cache_dir), device=device, batch_size=batch_size,
    max_length=max_length, dtype=dtype,
)
print(f"{spec.display_name} on {run.params['dataset']}: {run.summary['n_corpus_documents']} "
      f"documents, dimension {run.summary['dimension']}")

# %% [markdown]
# ## The sample
#
# The corpus is sorted by `len(title + text)`, longest first, cut into shards of `shard_size`,
# and `sample_size` documents are split equally over the shards. A corpus smaller than the
# sample size is taken whole, so on SciFact or Cranfield every seed sees the same documents and
# only the random pairs of the average cosine change with the seed.
#
# Alignment pairs each judged (query, relevant document) of the split; the per-query value is
# the mean over that query's relevant documents, the reported alignment the mean over all pairs.
#
# The spectral norm counts every `torch.nn.Linear` outside `pooler` and `lm_head`, as in the
# study. Systems read at an intermediate layer (`minilm_l3`, `smollm2_l15`) share the weights,
# and so the value, of their full-depth sibling; a static embedding model (`wordllama`) has no
# Linear layer and no value.

# %%
# NBVAL_CHECK_OUTPUT
pd.Series(run.values, name=spec.display_name).round(3).to_frame()

# %% [markdown]
# ## Variance spectrum
#
# IsoScore summarises this curve: the share of variance along each principal component of the
# sample. A flat curve is isotropic; a steep head means a few directions dominate.

# %%
variances = geometry.principal_component_variances(run.sample)
figure, axis = plt.subplots(figsize=(6, 3.5))
axis.plot(np.arange(1, variances.size + 1), variances / variances.sum())
axis.set(xscale="log", yscale="log", xlabel="principal component",
         ylabel="share of variance", title=f"{spec.display_name}, {run.params['dataset']}, seed {seed}")
figure.tight_layout()

# %%
entry = run.write(output)
print(f"wrote {entry}")
