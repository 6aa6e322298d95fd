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
# # Corpus poisoning of one system on one dataset
#
# One run of the adversarial-stability analysis (protocol §5): supervised HotFlip
# ({cite}`zhong2023poisoning`, in the study's mean-embedding re-implementation) writes N
# adversarial passages from the **training** queries of the dataset, one per k-means cluster of
# their embeddings. The passages are appended to the clean **test** corpus and the clean test
# queries are searched again. The attack succeeds on a query when an adversarial passage
# reaches its top k (ASR@k); the study reports ASR@20 × 100.
#
# Two baselines show what the optimisation adds: the gold passages the attack starts from, and
# query-text injection (each cluster's training queries pasted into a passage of the same
# length). Everything goes to the results store under experiment `corpus_poisoning`; the
# aggregate notebook `corpus_poisoning_summary.py` builds the Table 3 layout.

# %% tags=["parameters"]
model = "minilm"  # catalog key, model folder, .yaml model spec or mapping (robustir.model_sources)
dataset = "scifact"  # dataset key under the data root (evaluation)
attacker_dataset = None  # the attacker's training qrels; None: the registry's (nq: nq-train)
attacker_split = "train"  # the attacker's queries and gold passages
split = "test"  # evaluation split (clean queries, poisoned corpus)
n_passages = 10  # N, the number of clusters and of adversarial passages (the study 10 and 50)
iterations = 10  # HotFlip iterations per cluster (the study: 5,000)
seed = 1999  # the study: 1999, 5, 27, 2016, 2026
candidates = 100  # candidate tokens per iteration (the study: 100)
passage_length = 50  # tokens per passage (the study: 50)
batch_size = 64  # queries averaged into one centroid (the study: 64)
tie_rule = "adversarial_loses"  # robustir.metrics.poisoning.TIE_RULES; Zhong et al.'s default
bf16 = False  # run the attack with bfloat16 weights (the evaluation stays float32)
baselines = True  # also evaluate the gold-passage and query-text baselines
data_root = None  # None: $ROBUSTIR_DATA or ./data
cache_dir = None  # embedding cache; None: $ROBUSTIR_CACHE/embeddings or ~/.cache/robustir/embeddings
device = None  # None: CUDA when available, else CPU
max_length = None  # token limit of queries and test documents; None: the system's own
dtype = None  # evaluation weights dtype; None: float32 on a CPU, the system's on CUDA
output = "results"  # results-store root

# %%
import json
import logging
from pathlib import Path

import pandas as pd
from robustir.attack import HotFlipConfig
from robustir.cache import EmbeddingCache
from robustir.experiments.corpus_poisoning import run_corpus_poisoning
from robustir.model_sources import resolve_model

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

config = HotFlipConfig(
    n_passages=n_passages, iterations=iterations, candidates=candidates,
    passage_length=passage_length, batch_size=batch_size, seed=seed,
)
spec = resolve_model(model)
evaluations = run_corpus_poisoning(
    spec, dataset, config, attacker_dataset=attacker_dataset, attacker_split=attacker_split,
    split=split, data_root=data_root, output=output, cache=EmbeddingCache(cache_dir),
    device=device, max_length=max_length, dtype=dtype,
    attack_dtype="bfloat16" if bf16 else None, tie_rule=tie_rule, baselines=baselines,
)

# %% [markdown]
# ## Attack success and retrieval quality
#
# ASR@k in %, per set of injected passages, with the tie rule above; `nDCG@10 change` is the
# poisoned minus the clean nDCG@10 of the same queries (×100).

# %%
table = pd.DataFrame({
    variant: {**{m: 100 * v for m, v in e.summary["metrics"].items()},
              "clean nDCG@10": 100 * e.summary["clean_nDCG@10"]}
    for variant, e in evaluations.items()
}).T.round(2)
table

# %% [markdown]
# ## Does the tie rule matter?
#
# ASR@k under each tie rule (improvement §8.2 item 11), and the number of queries whose k-th
# score is shared with a passage below k. Exact ties are rare with a float32 index.

# %%
hotflip = next(v for v in evaluations if v.startswith("hotflip"))
rules = pd.DataFrame(evaluations[hotflip].summary["asr_by_tie_rule"]).T.mul(100).round(2)
rules.loc["queries tied at k"] = pd.Series(evaluations[hotflip].summary["ties_at_cutoff"])
rules

# %% [markdown]
# ## The passages
#
# Validation similarity (mean dot product with the held-out query centroids) of each cluster's
# initial gold passage and of the kept passage, and the kept passage decoded. The passages are
# embedded from their token ids, so the decoded text is for reading only.

# %%
summary = evaluations[hotflip].summary
passages = json.loads(Path(summary["passages_file"]).read_text(encoding="utf-8"))["passages"]
pd.DataFrame([
    {"cluster": c, "queries": p["tot"], "initial sim": round(p["initial_sim"], 4),
     "best sim": round(p["best_sim"], 4), "accepted flips": p["accepted"],
     "passage": p["best_adv_text"][:120]}
    for c, p in passages.items()
])

# %%
print(f"{summary['attack_elapsed_s']:.0f} s for {iterations} iterations × {n_passages} clusters "
      f"({summary['seconds_per_iteration']:.2f} s per iteration)")

# %%
# NBVAL_CHECK_OUTPUT
for variant, evaluation in evaluations.items():
    print(f"{spec.key} {dataset} {variant}: ASR@20 = "
          f"{100 * evaluation.summary['metrics']['ASR@20']:.1f}%")
