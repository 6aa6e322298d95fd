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
# # Query variations: one system, one family, one seed
#
# One run of the query-variation analysis (protocol §4): every query of the split is perturbed
# by one family of unintentional variations — misspelling, reordering, synonymizing,
# paraphrasing or naturalizing — with one seed, and the system is evaluated on the clean and on
# the perturbed queries. The corpus embeddings come from the cache; only the perturbed queries
# are encoded again, as in the study.
#
# Reported, as in the study: the **drop rate** of nDCG@10, (clean − perturbed) / clean, for this
# seed. Beyond the study (improvements, §8.2): the share of queries whose variant is unchanged
# (§8.1 row 13), the shares of queries that drop, stay or rise, the rank stability of each
# query's top results (Jaccard@10, RBO, Kendall's τ), a query-bootstrap interval of the drop
# rate and two paired tests. The values go to the results store under experiment
# `query_variations`; `query_variations_summary.py` aggregates the seeds.

# %% tags=["parameters"]
model = "minilm"  # catalog key, model folder, .yaml model spec or mapping (robustir.model_sources)
dataset = "scifact"  # dataset key under the data root
family = "mispelling"  # mispelling, ordering, synonym, paraphrase or naturality
seed = 1999  # the study's seeds: 1999, 5, 27, 2016, 2026
split = "test"  # qrels split whose queries are perturbed
rng_scope = "stream"  # "stream": the study's one seeded stream per run; "query": per-query seeds (improvement)
data_root = None  # None: $ROBUSTIR_DATA or ./data
cache_dir = None  # embedding cache; None: $ROBUSTIR_CACHE/embeddings or ~/.cache/robustir/embeddings
device = None  # None: CUDA when available, else CPU
batch_size = 64  # queries per forward pass (the study: 64 for perturbed queries)
max_length = None  # token limit; None: the system's own
dtype = None  # weights dtype; None: float32 on a CPU, the system's on CUDA
top_k = 1000  # hits per query (the study: 1000)
n_resamples = 1000  # bootstrap resamples (the sign-flip test uses 10x)
output = "results"  # results-store root
variants_dir = "results/query_variants"  # shared variant files, one per (dataset, split, family, seed)

# %%
import logging

import matplotlib.pyplot as plt
import pandas as pd

from robustir import plots
from robustir.cache import EmbeddingCache
from robustir.data import load_dataset
from robustir.experiments.query_variations import evaluate_variation, write_variation_run
from robustir.retrievers import make_retriever

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

retriever = make_retriever(model, device=device, batch_size=batch_size, max_length=max_length,
                           dtype=dtype, cache=EmbeddingCache(cache_dir), progress=False)
spec = retriever.spec
data = load_dataset(dataset, split=split, data_root=data_root)
run = evaluate_variation(retriever, data, family, seed, rng_scope=rng_scope,
                         variants_dir=variants_dir, top_k=top_k, n_resamples=n_resamples)
provenance = run.variations.provenance
print(f"{spec.display_name} on {data.name}/{data.split}: {provenance['family_display_name']}, "
      f"seed {seed}, {provenance['n_changed']} of {provenance['n_queries']} queries changed")

# %% [markdown]
# ## The variants
#
# A sample of changed queries, with the generator whose candidate was drawn. Each generator of
# the family proposes one candidate per query and one candidate is chosen uniformly; a
# generator without a candidate (the QWERTY typo on a query whose eligible words all drew a
# digit or a symbol) proposes the query itself, and a reordering may swap two identical words,
# so some variants equal the original.

# %%
changed = [v for v in run.variations.variations.values() if v.changed]
pd.DataFrame(
    [{"query": v.query_id, "generator": v.generator, "original": v.original, "variant": v.text}
     for v in changed[:8]]
)

# %%
pd.Series(provenance["chosen_per_generator"], name="queries").rename_axis("generator chosen").to_frame()

# %% [markdown]
# ## Clean vs perturbed
#
# The drop rate is computed from the unrounded per-query values (protocol §8.1 row 16); a
# negative drop rate means the variants scored better. The interval resamples queries
# (B = `n_resamples`, percentile); the p-values are two-sided paired tests on per-query nDCG@10.

# %%
summary = run.summary
pd.Series({
    "clean nDCG@10": summary["clean"],
    "perturbed nDCG@10": summary["perturbed"],
    "drop rate (%)": 100 * summary["drop_rate"],
    "95% bootstrap interval (%)": f"[{100 * summary['drop_rate_ci_low']:.2f}, {100 * summary['drop_rate_ci_high']:.2f}]",
    "unchanged queries": summary["unchanged_fraction"],
    "queries dropping / equal / rising": f"{summary['fraction_drop']:.3f} / {summary['fraction_equal']:.3f} / {summary['fraction_rise']:.3f}",
    "randomisation test p": summary["randomisation_p"],
    "Wilcoxon signed-rank p": summary["wilcoxon_p"],
    "mean Jaccard@10": summary["Jaccard@10"],
    "mean RBO@100 (p = 0.9)": summary["RBO@100"],
    "mean Kendall τ@10": summary["KendallTau@10"],
}, name="value").to_frame()

# %%
# NBVAL_CHECK_OUTPUT
print(f"clean nDCG@10 {summary['clean']:.4f}, perturbed {summary['perturbed']:.4f}, "
      f"drop rate {100 * summary['drop_rate']:.2f}%, unchanged {summary['unchanged_fraction']:.3f}")

# %% [markdown]
# ## Per-query change
#
# The distribution of ΔnDCG@10 = perturbed − clean over queries, and how rank overlap relates
# to it: a variant that leaves the top of the ranking in place (RBO near 1) cannot move nDCG@10
# much.

# %%
delta = run.perturbed.per_query["nDCG@10"] - run.clean.per_query["nDCG@10"]
figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
left.hist(delta, bins=30, color=plots.model_color(spec.key))
left.set(xlabel="ΔnDCG@10 (perturbed − clean)", ylabel="queries")
right.scatter(run.stability["RBO@100"], delta.reindex(run.stability.index), s=8,
              color=plots.model_color(spec.key))
right.set(xlabel="RBO@100 (clean vs perturbed ranking)", ylabel="ΔnDCG@10")
figure.suptitle(f"{spec.display_name}, {data.name}, {provenance['family_display_name']}, seed {seed}")
figure.tight_layout()

# %%
clean_entry, entry = write_variation_run(run, output, seed)
print(f"wrote {clean_entry} and {entry}")
