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
# # Training a small LLM retriever
#
# The study is about LLM-based dense retrievers, but none of its systems loads without a model
# hub, and the decoder-only model that does (SmolLM2-135M-Instruct {cite}`allal2025smollm2`) is a chat model: read as a
# retriever it scores at chance. So this book trains one, on the 2-core CPU that builds it, with
# the recipe the study's LLM retrievers share (RepLLaMA {cite}`ma2024repllama`, E5-Mistral
# {cite}`wang2024e5mistral`, Qwen3-Embedding {cite}`zhang2025qwen3`):
#
# :::{admonition} Targets and results
# :class: findings
# ```{glue:md} training_findings
# :format: gfm
# ```
# :::
#
# * **instruction-prefixed queries**: `Instruct: <task>\nQuery:<query>`, the catalog's prompt
#   style; documents have no prompt;
# * **the end-of-sequence token appended** to every text, and its final hidden state, L2-normalised,
#   as the embedding (last-token pooling); scores are cosines;
# * **a contrastive loss**: InfoNCE with temperature τ over each query's positive document, one
#   hard negative mined with BM25, and every other document of the batch;
# * **LoRA** {cite}`hu2022lora` adapters on every linear layer of the top third of the layers; the lower two thirds
#   stay frozen, so their hidden states are computed once per text instead of at every step —
#   what makes a few hundred steps fit on two cores.
#
# The same recipe turns three depths of SmolLM2 into retrievers: all 30 layers
# (`smollm2_ret`), the first 20 (`smollm2_ret_l20`) and the first 10 (`smollm2_ret_l10`), our
# offline stand-in for the study's scaling series (Qwen3-Embedding 0.6B, 4B, 8B). The untrained
# SmolLM2 stays in every analysis as a control. `make retrain` (or `robustir train-retriever
# --config configs/train.yaml`) reproduces the shipped adapters from scratch.

# %% tags=["parameters"]
output = "results"  # results-store root (clean evaluations of the trained retrievers)
retrievers = ["smollm2_ret_l10", "smollm2_ret_l20", "smollm2_ret"]  # the depth series, smallest first
control = "smollm2"  # the untrained model
# the targets for the full-depth retriever: (bar, goal) nDCG@10 per dataset
targets = {"scifact": [0.30, 0.50], "cranfield": [0.15, 0.25]}

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown
from myst_nb import glue

from robustir import plots
from robustir.experiments import evaluation, training
from robustir.experiments.findings import findings_markdown, save_findings
from robustir.models import MODELS, display_name

plots.apply_theme()
records = {key: json.loads((MODELS[key].adapter_location() / "training.json").read_text())
           for key in retrievers}
clean = evaluation.summarise(output)
findings = training.findings(clean, targets, full=retrievers[-1], depth_series=retrievers,
                             control=control)
save_findings(output, "training", findings)
glue("training_findings", Markdown(findings_markdown(findings)), display=False)

# %% [markdown]
# ## The data: SciFact's train split and corpus, never its test split
#
# Each source and its size, as recorded with the weights. The supervised pairs are SciFact's
# training claims with the abstracts judged for them; 100 of those claims are held out to watch
# the training (validation); the pseudo-queries are the titles of the corpus's papers, each
# paired with its own abstract's text. No test claim and no test judgment reaches the trainer
# (`robustir.experiments.training.training_data` refuses a held-out split, and a test checks
# that no test query id or text appears).

# %%
pd.DataFrame([{"retriever": key, "source": source, **sizes}
              for key, record in records.items() for source, sizes in record["data"].items()])

# %% [markdown]
# ## Settings and cost
#
# One recipe; only the depth differs. Times are for the 2-core CPU of the build machines.

# %%
pd.DataFrame({
    key: {
        "layers (frozen + trained)": f"{r['layers']['frozen']} + {r['layers']['trained']}",
        "trainable parameters": r["trainable_parameters"],
        "steps × batch": f"{r['config']['steps']} × {r['config']['batch_size']}",
        "temperature": r["config"]["temperature"],
        "learning rate": r["config"]["learning_rate"],
        "max length": r["config"]["max_length"],
        "frozen states (s)": r["frozen_states_seconds"],
        "total training time (s)": r["training_seconds"],
    }
    for key, r in records.items()
})

# %% [markdown]
# ## The training curves
#
# The InfoNCE loss per step (chance is the log of the number of documents in a batch) and the
# validation nDCG@10 of the held-out training claims against the whole corpus.

# %%
figure, (loss_axis, validation_axis) = plt.subplots(1, 2, figsize=(11, 3.6))
for key, record in records.items():
    history = pd.DataFrame(record["history"])
    loss_axis.plot(history["step"], history["loss"].rolling(10, min_periods=1).mean(),
                   color=plots.model_color(key), label=display_name(key))
    validated = history.dropna(subset=["validation_ndcg@10"])
    validation_axis.plot(validated["step"], validated["validation_ndcg@10"], marker="o",
                         color=plots.model_color(key), label=display_name(key))
loss_axis.set(xlabel="step", ylabel="InfoNCE loss (10-step mean)", title="training loss")
validation_axis.set(xlabel="step", ylabel="nDCG@10", title="validation (held-out train claims)")
validation_axis.legend(fontsize=7)
figure.tight_layout()

# %% [markdown]
# ## Clean effectiveness of the depth series and the control

# %%
systems = [*retrievers, control]
shown = clean[clean["model"].isin(systems)].assign(system=lambda f: f["model"].map(display_name))
figure, axis = plt.subplots(figsize=(7, 3.4))
plots.bar_chart(shown, x="dataset", y="nDCG@10", hue="model", hue_order=[s for s in systems
                if s in set(shown["model"])], labels=dict(zip(shown["model"], shown["system"])), ax=axis)
axis.set(ylabel="nDCG@10", xlabel="", title="test splits (never seen in training)")
figure.tight_layout()
shown.pivot_table(index="system", columns="dataset", values="nDCG@10").round(4)

# %% [markdown]
# ### Reading the depth series
#
# The targets box says whether more layers gave better retrieval on SciFact. Three facts of the
# recipe bear on that reading, whatever the verdict. Every depth trains for the same number of
# steps on the same pairs, and LoRA reaches only its top third of layers (4, 7 and 10 layers),
# so the shallower models adapt a larger share of what they have. A truncated SmolLM2 ends at an
# intermediate layer that was never trained to be read out: its final state is a pretraining
# feature in the middle of the network, not a representation made for the next-token head, and
# how well LoRA can reshape it differs from depth to depth. And the validation claims are few
# (100), so the validation curves above rank the depths with a sampling error of a few points.
# The study's own scaling series (Qwen3-Embedding 0.6B, 4B, 8B) comprises separately pretrained
# models, each trained to the end as a retriever; ours is one model cut at three depths, a
# cheaper stand-in that answers a narrower question.

# %% tags=["remove-cell"]
# NBVAL_CHECK_OUTPUT
# (a test checks these numbers; the cell is not shown in the book)
print(shown.set_index(["model", "dataset"])["nDCG@10"].round(4).sort_index().to_string())
