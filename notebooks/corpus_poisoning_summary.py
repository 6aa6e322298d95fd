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
# # Corpus poisoning across systems, datasets and seeds
#
# The aggregate of the `corpus_poisoning` runs in the results store, in the layout of the
# study's Table 3 (protocol §5.3 step 5): ASR@20 × 100, mean ± population standard deviation
# over the seeds, for N = 10 and N = 50 adversarial passages. The number of seeds behind each
# cell is in parentheses. The baselines (the initial gold passages and query-text injection)
# and the change in nDCG@10 caused by the poisoning (improvement §8.2 item 11) follow.

# %% tags=["parameters"]
output = "results"  # results-store root written by notebooks/corpus_poisoning.py
measure = "ASR@20"  # the study reports ASR@20
n_passages = [10, 50]  # the N shown (the study: 10 and 50)

# %%

from robustir.attack import poisoning_table
from robustir.results import ResultStore

summaries = ResultStore(output).read_summaries("corpus_poisoning")
if summaries.empty:
    raise FileNotFoundError(
        f"no corpus_poisoning results under {output!r}: run notebooks/corpus_poisoning.py "
        "(or `robustir poison`) first"
    )
shown = summaries[summaries["variant"].str.extract(r"_N(\d+)")[0].astype(int).isin(n_passages)]

# %% [markdown]
# ## Table 3: attack success of HotFlip passages
#
# Rows are the systems (float32 attack; a bfloat16 attack, when run, is a separate row block),
# columns the evaluation datasets and N.

# %%
table = poisoning_table(shown, measure)
has_hotflip = "hotflip" in table.index.get_level_values("passages")
table.xs("hotflip", level="passages") if has_hotflip else table.iloc[:0]

# %% [markdown]
# ## What the optimisation adds
#
# The same measure for the passages HotFlip starts from (`gold`) and for passages made of the
# clusters' training queries (`query_text`), beside the optimised ones.

# %%
table

# %% [markdown]
# ## Damage to retrieval quality
#
# Mean change of nDCG@10 (poisoned − clean, ×100) over the test queries; negative values mean
# adversarial passages pushed relevant documents out of the top 10.

# %%
poisoning_table(shown, "nDCG@10 change", digits=2)

# %% [markdown]
# ## Last-token pooling: the passage's final token decides
#
# For systems that pool the last token's hidden state, the table lists each run's final tokens
# of the initial (gold) passages and the share of test queries that end with one of them, beside
# the ASR of the gold and the optimised passages. SmolLM2, never trained for retrieval, puts
# much of a text's embedding into its final token: a seed whose clusters happen to start from a
# passage ending as most queries do (SciFact's claims end with a full stop) succeeds before any
# optimisation, and a seed whose passages all end otherwise fails, whatever the text. A few
# HotFlip steps at random positions rarely reach the last position.

# %%
import functools

import pandas as pd
from robustir.attack import final_tokens
from robustir.data import load_dataset
from robustir.encode import Encoder
from robustir.models import get_model_spec


@functools.cache
def tokenizer_of(model: str):
    return Encoder(get_model_spec(model), progress=False).tokenizer


@functools.cache
def test_queries(dataset: str) -> dict[str, str]:
    return load_dataset(dataset, "test").queries


rows = []
hotflip = shown[shown["variant"].str.startswith("hotflip_")]
for _, run in hotflip.iterrows():
    if get_model_spec(run["model"]).pooling != "last_token" or not isinstance(run.get("passages_file"), str):
        continue
    found = final_tokens(run["passages_file"], test_queries(run["dataset"]), tokenizer_of(run["model"]))
    gold = shown[(shown["model"] == run["model"]) & (shown["dataset"] == run["dataset"])
                 & (shown["seed"] == run["seed"])
                 & (shown["variant"] == f"gold_N{int(run['n_passages'])}")]
    rows.append({
        "model": run["model"], "dataset": run["dataset"], "passages": run["variant"], "seed": run["seed"],
        "final tokens of the gold passages": " ".join(repr(t) for t in found["final_tokens"]),
        "queries ending alike": round(found["queries_ending_alike"], 3),
        f"gold {measure}": round(float(gold[measure].iloc[0]), 3) if len(gold) else None,
        f"HotFlip {measure}": round(float(run[measure]), 3),
    })
pd.DataFrame(rows)

# %%
# NBVAL_CHECK_OUTPUT
for (passages, dtype, model), row in table.iterrows():
    print(passages, dtype, model, " | ".join(f"{d} N={n}: {v}" for (d, n), v in row.dropna().items()))
