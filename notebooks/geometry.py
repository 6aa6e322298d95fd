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
model = "minilm"  # catalog key (robustir.models.MODELS)
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
output = "results"  # results-store root

# %%
import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from robustir import geometry
from robustir.cache import EmbeddingCache
from robustir.data import load_dataset
from robustir.encode import Encoder
from robustir.models import get_model_spec
from robustir.provenance import library_versions
from robustir.results import ResultStore

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

spec = get_model_spec(model)
data = load_dataset(dataset, split=split, data_root=data_root)
cache = EmbeddingCache(cache_dir)
encoder = Encoder(spec, device=device, batch_size=batch_size, max_length=max_length, cache=cache,
                  progress=False)
corpus_embeddings = encoder.encode_corpus(data.corpus, data.name)
print(f"{spec.display_name} on {data.name}: {len(corpus_embeddings)} documents, "
      f"dimension {corpus_embeddings.vectors.shape[1]}")

# %% [markdown]
# ## The sample
#
# The corpus is sorted by `len(title + text)`, longest first, cut into shards of `shard_size`,
# and `sample_size` documents are split equally over the shards. A corpus smaller than the
# sample size is taken whole, so on SciFact or Cranfield every seed sees the same documents and
# only the random pairs of the average cosine change with the seed.

# %%
sample_ids, sample = geometry.sample_corpus_embeddings(
    data.corpus, corpus_embeddings, sample_size, shard_size=shard_size, seed=seed
)
values = geometry.sample_geometry(
    sample, seed=seed, n_pairs=n_pairs, uniformity_t=uniformity_t, device=device
)
print(f"sampled {len(sample_ids)} of {len(data.corpus)} documents")

# %% [markdown]
# ## Alignment of queries with their gold passages
#
# Each judged (query, relevant document) pair of the split is one positive pair; the per-query
# value is the mean over that query's relevant documents, the reported alignment the mean over
# all pairs.

# %%
query_embeddings = encoder.encode_queries(data.queries, data.name)
anchors, positives, pair_query_ids = geometry.positive_pairs(
    query_embeddings, corpus_embeddings, data.qrels
)
distances = geometry.pair_distances(anchors, positives)
values["alignment"] = float(distances.mean())
per_query = (
    pd.DataFrame({"query_id": pair_query_ids, "value": distances})
    .groupby("query_id", sort=False, as_index=False)["value"].mean()
    .assign(measure="alignment")[["query_id", "measure", "value"]]
)

# %% [markdown]
# ## Spectral norm of the Linear layers
#
# Every `torch.nn.Linear` outside `pooler` and `lm_head` counts, as in the study. Systems read at
# an intermediate layer (`minilm_l3`, `smollm2_l15`) share the weights, and so the value, of
# their full-depth sibling; a static embedding model (`wordllama`) has no Linear layer and no
# value.

# %%
if spec.backend == "transformers":
    layer_norms = geometry.linear_spectral_norms(encoder.model)
    spectral = geometry.spectral_norm_summary(layer_norms)
    values["mean_spectral_norm"] = spectral.mean
    values["n_linear_layers"] = spectral.n_layers
    spectral_record = spectral.as_dict()
else:
    layer_norms, spectral_record = {}, None
    values["mean_spectral_norm"] = float("nan")
    values["n_linear_layers"] = 0

# %%
# NBVAL_CHECK_OUTPUT
pd.Series(values, name=spec.display_name).round(3).to_frame()

# %% [markdown]
# ## Variance spectrum
#
# IsoScore summarises this curve: the share of variance along each principal component of the
# sample. A flat curve is isotropic; a steep head means a few directions dominate.

# %%
variances = geometry.principal_component_variances(sample)
figure, axis = plt.subplots(figsize=(6, 3.5))
axis.plot(np.arange(1, variances.size + 1), variances / variances.sum())
axis.set(xscale="log", yscale="log", xlabel="principal component",
         ylabel="share of variance", title=f"{spec.display_name}, {data.name}, seed {seed}")
figure.tight_layout()

# %%
store = ResultStore(output)
params = {
    "model": spec.as_record(),
    "dataset": data.name,
    "split": data.split,
    "data_checksum": data.checksum,
    "variant": variant,
    "seed": seed,
    "sample_size": sample_size,
    "shard_size": shard_size,
    "n_pairs": n_pairs,
    "uniformity_t": uniformity_t,
    "alignment_pairs": "query and each document with grade >= 1 in the split's qrels",
    "encoding": {"device": str(encoder.device), "dtype": encoder.dtype,
                 "batch_size": encoder.batch_size, "max_length": encoder.max_length,
                 "document_prompt": spec.document_prompt(data.name),
                 "query_prompt": spec.query_prompt(data.name)},
    "libraries": library_versions(),
}
summary = {
    "metrics": values,
    "n_queries": int(per_query["query_id"].nunique()),
    "n_sampled_documents": len(sample_ids),
    "n_corpus_documents": len(data.corpus),
    "dimension": int(sample.shape[1]),
    "n_alignment_pairs": int(distances.size),
    "spectral_norm": spectral_record,
    "layer_spectral_norms": layer_norms,
}
entry = store.write_entry(
    store.entry_dir("geometry", model, dataset, variant, seed), params, per_query, summary
)
print(f"wrote {entry}")
