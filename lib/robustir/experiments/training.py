"""Training a decoder-only LM into a dense retriever, with the recipe of the study's LLM retrievers.

The study's LLM-based retrievers (RepLLaMA, E5-Mistral, Qwen3-Embedding) share one recipe:
instruction-prefixed queries, an end-of-sequence token appended to every text, the last token's
final hidden state as the embedding, cosine scores, and a contrastive (InfoNCE) loss with a
temperature over in-batch and hard negatives, trained with LoRA. :func:`train_retriever`
applies it to a small decoder (SmolLM2-135M, the one the offline machines have), optionally
truncated to its first layers (the depth series that stands in for the study's scaling
analysis), on a 2-core CPU:

* **Data, never the test split** (:func:`training_data`): the dataset's ``train`` qrels
  (SciFact: 809 claims, 919 judged pairs), minus a seeded set of queries held out for
  validation, plus pseudo-queries made of each corpus document's title, paired with its text.
  Each query gets hard negatives: BM25's top documents for it that are not judged relevant.
  Test queries and test judgments are refused (:class:`TrainingDataError`).
* **Compute**: the lower layers stay frozen, so their hidden states are computed once per text
  (bfloat16) and only the top ``trained_layers`` layers run forward and backward at each step,
  with LoRA adapters on every linear layer there. The saved adapter applies to the (truncated)
  base model, so :class:`~robustir.encode.Encoder` reads the trained retriever like any catalog
  entry (``ModelSpec.adapter``, ``num_layers``, ``append_eos``).
* **Validation**: nDCG@10 of the held-out *train* queries against the whole corpus, every
  ``validate_every`` steps, logged with the loss; the adapter of the last step is saved, and the
  log shows whether validation still rose.

Runs are resumable: every ``checkpoint_every`` steps the adapter, the optimiser and the sampler
state are saved atomically, and a rerun with the same configuration continues from there (a
checkpoint of another configuration is refused). Every setting, the data sources and their
sizes, the training log, the time and the hardware are written beside the adapter
(``training.json``), with its SHA-256.

Used in the book chapter "Training a small LLM retriever" (``robustir train-retriever``,
``make retrain``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from robustir.data import Dataset, document_text, load_dataset
from robustir.metrics import per_query_metrics
from robustir.model_sources import ADAPTER_FILES, folder_sha256, resolve_model
from robustir.models import ModelSpec, TASKS
from robustir.retrieve import BM25Index

__all__ = [
    "MODEL_CARD",
    "TrainingConfig",
    "TrainingConfigError",
    "TrainingData",
    "TrainingDataError",
    "TrainingResult",
    "load_training_configs",
    "retriever_spec",
    "train_retriever",
    "findings",
    "training_data",
    "write_model_card",
]

log = logging.getLogger(__name__)

#: Splits whose queries or judgments never reach the trainer.
HELD_OUT_SPLITS = ("test", "dev", "validation")
#: The instruction of the title pseudo-queries (a second task keeps the instruction meaningful).
TITLE_TASK = "Given the title of a scientific paper, retrieve the paper's abstract"
_DECODER_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo2")


class TrainingDataError(ValueError):
    """The training data is empty, malformed, or would use a held-out split."""


class TrainingConfigError(ValueError):
    """A training configuration is invalid, or a checkpoint belongs to another one."""


@dataclass(frozen=True)
class TrainingConfig:
    """Every setting of one training run (recorded with the weights).

    Attributes:
        key: Catalog key of the trained retriever (e.g. ``smollm2_ret``).
        base_model: The decoder to start from (a catalog key, a folder, …).
        num_layers: Keep the base model's first ``num_layers`` layers (``None``: all).
        trained_layers: Top layers with LoRA adapters; the ones below stay frozen and their
            states are computed once (default: a third of the layers, rounded up).
        lora_rank: LoRA rank r; ``lora_alpha`` scales the update (alpha / r).
        pooling: ``last_token`` (the recipe; the EOS state) or ``mean``.
        temperature: InfoNCE temperature τ (logits are cosines / τ).
        learning_rate: Peak AdamW learning rate, after ``warmup_steps`` linear warm-up,
            then cosine decay to 0 at ``steps``.
        batch_size: Queries per step (each with its positive and hard negatives; every
            document of the step is a negative for the other queries).
        gradient_accumulation: Batches whose gradients are summed before one update.
        hard_negatives: BM25 negatives per query, drawn from its top ``negative_depth``.
        max_length: Tokens per text (queries with their prompt, documents), EOS included;
            the catalog entry encodes with the same limit.
        dataset: The dataset whose train split and corpus are used.
        train_split: The supervised split (never a held-out one).
        validation_queries: Train queries held out for validation (seeded).
        title_pseudo_queries: Add (title → text) pairs of the corpus documents.
        validate_every: Steps between validations (and at the last step).
        checkpoint_every: Steps between resumable checkpoints.
        seed: Seeds the held-out split, the sampling, the negatives and the LoRA init.
        dtype: Weights dtype of the frozen base (bfloat16: AVX-512 BF16 on these CPUs).
    """

    key: str
    base_model: str = "smollm2"
    num_layers: int | None = None
    trained_layers: int | None = None
    lora_rank: int = 16
    lora_alpha: int = 32
    pooling: str = "last_token"
    temperature: float = 0.02
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    steps: int = 400
    batch_size: int = 32
    gradient_accumulation: int = 1
    hard_negatives: int = 1
    negative_depth: int = 20
    max_length: int = 64
    dataset: str = "scifact"
    train_split: str = "train"
    validation_queries: int = 100
    title_pseudo_queries: bool = True
    validate_every: int = 100
    checkpoint_every: int = 50
    seed: int = 0
    dtype: str = "bfloat16"

    def __post_init__(self):
        checks = {
            "pooling": self.pooling in ("last_token", "mean"),
            "temperature": self.temperature > 0,
            "learning_rate": self.learning_rate > 0,
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 2,
            "gradient_accumulation": self.gradient_accumulation >= 1,
            "hard_negatives": self.hard_negatives >= 0,
            "negative_depth": self.negative_depth >= max(1, self.hard_negatives),
            "max_length": self.max_length >= 8,
            "lora_rank": self.lora_rank >= 1,
            "validation_queries": self.validation_queries >= 0,
            "dtype": self.dtype in ("bfloat16", "float32"),
            "train_split": self.train_split not in HELD_OUT_SPLITS,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise TrainingConfigError(f"training config {self.key!r}: invalid {values}")

    def record(self) -> dict[str, Any]:
        """Every setting as JSON values."""
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """SHA-256 of the settings (16 hex digits): a checkpoint resumes only the same run."""
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:16]


def load_training_configs(path: str | os.PathLike) -> list[TrainingConfig]:
    """The runs of a training grid (``configs/train.yaml``): shared ``defaults`` and one entry
    per trained model.

    Raises:
        TrainingConfigError: Unknown fields (named with the file), or an invalid value.
    """
    import yaml

    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    allowed = {f.name for f in dataclasses.fields(TrainingConfig)}
    defaults = raw.get("defaults", {}) or {}
    configs = []
    for index, entry in enumerate(raw.get("models", []) or []):
        merged = {**defaults, **(entry or {})}
        unknown = sorted(set(merged) - allowed)
        if unknown:
            raise TrainingConfigError(f"{path}: models[{index}]: unknown field(s) {unknown}; "
                                      f"allowed: {', '.join(sorted(allowed))}")
        if "key" not in merged:
            raise TrainingConfigError(f"{path}: models[{index}]: 'key' is required")
        configs.append(TrainingConfig(**merged))
    if not configs:
        raise TrainingConfigError(f"{path}: no models to train (a 'models:' list)")
    return configs


def retriever_spec(config: TrainingConfig, adapter: str | os.PathLike, *,
                   display_name: str | None = None) -> ModelSpec:
    """The catalog entry that reads a trained retriever: the base model's spec with the run's
    depth, pooling, maximum length, the EOS appended, the instruct prompts and the adapter."""
    base = resolve_model(config.base_model)
    depth = f", first {config.num_layers} layers" if config.num_layers else ""
    return dataclasses.replace(
        base, key=config.key,
        display_name=display_name or f"{base.display_name} retriever{depth}",
        family="offline decoder-only retriever", pooling=config.pooling, append_eos=True,
        num_layers=config.num_layers, adapter=str(adapter), max_length=config.max_length,
        prompt_style="instruct", padding_side="left", retrieval_trained=True,
        note=f"trained by robustir on {config.dataset}'s {config.train_split} split and corpus "
             "titles (configs/train.yaml); the offline stand-in for an LLM retriever",
    )


# --- data ------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Queries, documents and pairs the trainer sees, with where each came from.

    Attributes:
        queries: ``{query key: text with its instruction prompt}``.
        documents: ``{document key: text}`` (positives, negatives and the corpus).
        pairs: ``(query key, positive document key, [hard negative document keys])``.
        validation: ``{query key: {doc_id: grade}}`` of the held-out train queries.
        corpus_keys: The document keys of the whole corpus, in corpus order (for validation).
        sources: Each source with its size, for the record and the book.
    """

    queries: dict[str, str]
    documents: dict[str, str]
    pairs: list[tuple[str, str, list[str]]]
    validation: dict[str, dict[str, int]]
    corpus_keys: list[str]
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)


def _instruction(task: str) -> str:
    """The catalog's instruct prompt (protocol §1.3), as the trained retrievers use it."""
    return f"Instruct: {task}\nQuery:"


def training_data(config: TrainingConfig, *, data_root: str | os.PathLike | None = None,
                  dataset: Dataset | None = None) -> TrainingData:
    """The pairs of one training run, from the train split and the corpus only.

    Args:
        config: The run (dataset, split, held-out queries, pseudo-queries, negatives, seed).
        data_root: Where ``config.dataset`` is.
        dataset: The loaded train split (default: loaded here).

    Raises:
        TrainingDataError: A held-out split was given, the split has no judged pair, or a
            query text is empty.
    """
    if config.train_split in HELD_OUT_SPLITS:
        raise TrainingDataError(f"split {config.train_split!r} is held out: the trainer never "
                                "sees test queries or test judgments")
    data = dataset or load_dataset(config.dataset, config.train_split, data_root)
    if data.split in HELD_OUT_SPLITS:
        raise TrainingDataError(f"{data.name}/{data.split} is a held-out split")
    judged = {q: {d: g for d, g in docs.items() if g > 0} for q, docs in data.qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    if not judged:
        raise TrainingDataError(f"{data.name}/{data.split} has no judged (query, document) pair")
    empty = [q for q in judged if not data.queries.get(q, "").strip()]
    if empty:
        raise TrainingDataError(f"{data.name}/{data.split}: empty query text for {empty[:3]}")
    rng = random.Random(config.seed)
    qids = sorted(judged)
    rng.shuffle(qids)
    n_validation = min(config.validation_queries, len(qids) // 2)
    held, trained = qids[:n_validation], qids[n_validation:]
    prompt = _instruction(TASKS[data.name]) if data.name in TASKS else ""
    corpus = data.corpus
    documents = {f"d:{d}": document_text(corpus[d], empty=None) for d in corpus}
    queries = {f"q:{q}": prompt + data.queries[q] for q in trained}
    queries.update({f"v:{q}": prompt + data.queries[q] for q in held})
    index = BM25Index(corpus)
    depth = config.negative_depth + 5
    runs = index.search({q: data.queries[q] for q in trained}, top_k=depth)
    pairs = [(f"q:{q}", f"d:{d}",
              [f"d:{n}" for n in runs[q] if n not in judged[q]][:config.negative_depth])
             for q in trained for d in sorted(judged[q])]
    sources = {
        f"{data.name} {data.split} qrels": {"queries": len(trained), "pairs": len(pairs)},
        f"{data.name} {data.split} queries held out for validation": {"queries": len(held)},
    }
    if config.title_pseudo_queries:
        titled = [d for d in corpus if corpus[d].get("title", "").strip() and corpus[d].get("text", "").strip()]
        title_prompt = _instruction(TITLE_TASK)
        title_runs = index.search({d: corpus[d]["title"] for d in titled}, top_k=depth)
        for d in titled:
            queries[f"t:{d}"] = title_prompt + corpus[d]["title"]
            documents[f"x:{d}"] = corpus[d]["text"]
            negatives = [f"d:{n}" for n in title_runs[d] if n != d][:config.negative_depth]
            pairs.append((f"t:{d}", f"x:{d}", negatives))
        sources[f"{data.name} corpus titles as pseudo-queries (title -> text)"] = {
            "queries": len(titled), "pairs": len(titled)}
    validation = {f"v:{q}": judged[q] for q in held}
    return TrainingData(queries, documents, pairs, validation, [f"d:{d}" for d in corpus], sources)


# --- the model ---------------------------------------------------------------------------------
def _check_decoder(model, tokenizer, where: str) -> None:
    config = model.config
    decoder = (config.model_type in _DECODER_TYPES
               or any("CausalLM" in a for a in (getattr(config, "architectures", None) or [])))
    if not decoder or not hasattr(model, "layers") or not hasattr(model, "norm"):
        raise TrainingConfigError(f"{where}: {config.model_type!r} is not a decoder-only model "
                                  "with .layers and .norm (Llama, Mistral, Qwen); the recipe needs one")
    if tokenizer.eos_token_id is None:
        raise TrainingConfigError(f"{where}: the tokenizer has no end-of-sequence token to append")


def _layer_view(model, start: int, stop: int, *, final_norm: bool):
    """The layers ``[start, stop)`` of a decoder as a model of its own kind, sharing modules.

    Run with ``inputs_embeds`` = the hidden states entering layer ``start``; returns those
    leaving layer ``stop - 1`` (through the final norm when ``final_norm``).
    """
    view = copy.copy(model)
    view._modules = dict(model._modules)
    view.config = copy.deepcopy(model.config)
    view.config.num_hidden_layers = stop - start
    if getattr(view.config, "layer_types", None):
        view.config.layer_types = view.config.layer_types[start:stop]
    view.layers = torch.nn.ModuleList(list(model.layers)[start:stop])
    if not final_norm:
        view.norm = torch.nn.Identity()
    return view


class _Stacks:
    """The frozen bottom and the trainable top of a (truncated) decoder with LoRA on top."""

    def __init__(self, config: TrainingConfig, spec: ModelSpec):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel, AutoTokenizer

        from robustir.encode import base_weights_location, truncate_layers

        location = base_weights_location(spec)
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModel.from_pretrained(location, dtype=getattr(torch, config.dtype))
        _check_decoder(model, self.tokenizer, config.base_model)
        depth = config.num_layers or len(model.layers)
        truncate_layers(model, depth)
        top = config.trained_layers or math.ceil(depth / 3)
        if not 1 <= top <= depth:
            raise TrainingConfigError(f"trained_layers={top} must be in 1..{depth}")
        self.depth, self.frozen = depth, depth - top
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                          "up_proj", "down_proj"],
                          layers_to_transform=list(range(self.frozen, depth)),
                          layers_pattern="layers")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.peft = get_peft_model(model, lora)
        base = self.peft.base_model.model
        self.bottom = _layer_view(base, 0, self.frozen, final_norm=False)
        self.top = _layer_view(base, self.frozen, depth, final_norm=True)
        self.pooling = config.pooling
        self.max_length = config.max_length

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated to ``max_length - 1``, with the EOS appended (as
        :meth:`robustir.encode.Encoder.tokenize` does for ``append_eos`` specs)."""
        encoded = self.tokenizer(list(texts), max_length=self.max_length - 1, truncation=True)
        return [ids + [self.tokenizer.eos_token_id] for ids in encoded["input_ids"]]

    @torch.inference_mode()
    def frozen_states(self, texts: Mapping[str, str], *, layers: Sequence[int] | None = None,
                      batch_size: int = 64, progress: bool = True) -> dict[int, dict[str, torch.Tensor]]:
        """The hidden states entering each of ``layers``, per text (unpadded), from one pass.

        Args:
            texts: ``{key: text}``.
            layers: Layer indices, each at most this stack's first trained layer, so that every
                layer below them is the base model's own (default: that first trained layer).
                The depth series shares one pass this way: its frozen layers are the base's.
            batch_size: Texts per forward pass.
            progress: A progress bar.

        Returns:
            ``{layer: {key: states (tokens, hidden)}}`` in the weights' dtype.
        """
        layers = sorted(set(layers or [self.frozen]))
        if layers[-1] > self.frozen:
            raise ValueError(f"layer {layers[-1]} is above the frozen layers ({self.frozen})")
        keys = list(texts)
        ids = self.token_ids([texts[k] for k in keys])
        order = sorted(range(len(keys)), key=lambda i: -len(ids[i]))
        states: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
        for start in tqdm(range(0, len(order), batch_size), desc="frozen layers", disable=not progress):
            chunk = order[start:start + batch_size]
            width = max(len(ids[i]) for i in chunk)
            tokens = torch.full((len(chunk), width), self.tokenizer.pad_token_id or 0)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):  # right padding: real tokens never see a pad
                tokens[row, :len(ids[i])] = torch.tensor(ids[i])
                mask[row, :len(ids[i])] = 1
            if self.frozen:
                # hidden_states[k] enters layer k (the bottom's norm is the identity)
                hidden = self.bottom(input_ids=tokens, attention_mask=mask, use_cache=False,
                                     output_hidden_states=True).hidden_states
            else:
                hidden = (self.bottom.embed_tokens(tokens),)
            for layer in layers:
                for row, i in enumerate(chunk):
                    states[layer][keys[i]] = hidden[layer][row, :len(ids[i])].clone()
        return states

    def embed(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """Unit-length embeddings (float32) of texts given by their frozen states."""
        width = max(s.shape[0] for s in states)
        hidden = torch.zeros((len(states), width, states[0].shape[1]), dtype=states[0].dtype)
        mask = torch.zeros((len(states), width), dtype=torch.long)
        for row, s in enumerate(states):  # left padding, positions counted from the first token
            hidden[row, width - s.shape[0]:] = s
            mask[row, width - s.shape[0]:] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.top(inputs_embeds=hidden, attention_mask=mask, position_ids=positions,
                       use_cache=False).last_hidden_state
        if self.pooling == "last_token":
            vectors = out[:, -1]
        else:
            weights = mask.unsqueeze(-1).to(out.dtype)
            vectors = (out * weights).sum(1) / weights.sum(1)
        return F.normalize(vectors.float(), dim=-1)

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.peft.parameters() if p.requires_grad]


# --- training ----------------------------------------------------------------------------------
@dataclass
class TrainingResult:
    """What :func:`train_retriever` wrote and measured.

    Attributes:
        adapter: Folder of the saved adapter (``adapter_config.json``, weights, ``training.json``).
        record: The content of ``training.json``.
    """

    adapter: Path
    record: dict[str, Any]


def _validate(stacks: _Stacks, states: Mapping[str, torch.Tensor], data: TrainingData,
              batch_size: int) -> float:
    """nDCG@10 of the held-out train queries against the whole corpus (trec_eval semantics)."""
    if not data.validation:
        return float("nan")
    stacks.top.eval()
    with torch.inference_mode():
        corpus = torch.cat([stacks.embed([states[k] for k in data.corpus_keys[i:i + batch_size]])
                            for i in range(0, len(data.corpus_keys), batch_size)])
        keys = list(data.validation)
        queries = torch.cat([stacks.embed([states[k] for k in keys[i:i + batch_size]])
                             for i in range(0, len(keys), batch_size)])
        scores = queries @ corpus.T
        top = scores.topk(min(100, scores.shape[1]), dim=1)
    stacks.top.train()
    doc_ids = [k[2:] for k in data.corpus_keys]
    run = {k: {doc_ids[j]: float(s) for s, j in zip(row_s.tolist(), row_j.tolist())}
           for k, row_s, row_j in zip(keys, top.values, top.indices)}
    return float(per_query_metrics(data.validation, run, ["nDCG@10"])["nDCG@10"].mean())


def _learning_rate(config: TrainingConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    return config.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * step / config.steps))


def _save_atomically(folder: Path, write) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        write(staging)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _frozen_layers(config: TrainingConfig, location: str) -> int:
    """How many of a run's layers stay frozen (read from the base model's configuration)."""
    from transformers import AutoConfig

    depth = config.num_layers or AutoConfig.from_pretrained(location).num_hidden_layers
    top = config.trained_layers or math.ceil(depth / 3)
    if not 1 <= top <= depth:
        raise TrainingConfigError(f"{config.key}: trained_layers={top} must be in 1..{depth}")
    return depth - top


def _data_key(config: TrainingConfig) -> tuple:
    """What decides a run's texts and their frozen states (runs with equal keys share them)."""
    return (config.base_model, config.dataset, config.train_split, config.validation_queries,
            config.title_pseudo_queries, config.negative_depth, config.seed, config.max_length,
            config.dtype)


def train_retrievers(configs: Sequence[TrainingConfig], output: str | os.PathLike, *,
                     data_root: str | os.PathLike | None = None, progress: bool = True
                     ) -> list[TrainingResult]:
    """Train several retrievers; runs with the same data and base share one pass of the
    frozen layers (the depth series: every run's frozen layers are the base model's own).

    Args, Raises: as :func:`train_retriever`.

    Returns:
        One result per configuration, in order.
    """
    from robustir.encode import base_weights_location

    groups: dict[tuple, list[TrainingConfig]] = {}
    for config in configs:
        groups.setdefault(_data_key(config), []).append(config)
    results: dict[str, TrainingResult] = {}
    for group in groups.values():
        location = base_weights_location(resolve_model(group[0].base_model))
        frozen = {c.key: _frozen_layers(c, location) for c in group}
        data = training_data(group[0], data_root=data_root)
        if not data.pairs:
            raise TrainingDataError(f"no training pairs for {', '.join(frozen)}")
        deepest = max(group, key=lambda c: frozen[c.key])
        stacks = _Stacks(deepest, resolve_model(deepest.base_model))
        started = time.perf_counter()
        states = stacks.frozen_states({**data.queries, **data.documents},
                                      layers=sorted(set(frozen.values())), progress=progress)
        seconds = time.perf_counter() - started
        shared = [c.key for c in group]
        for config in group:
            results[config.key] = _train(
                config, output, data, states[frozen[config.key]], seconds, shared,
                stacks=stacks if config is deepest else None, progress=progress)
    return [results[c.key] for c in configs]


def train_retriever(
    config: TrainingConfig,
    output: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Train one retriever and save its adapter under ``output/<key>``.

    Args:
        config: The run.
        output: Folder of the adapters (``lib/robustir/resources/retrievers`` ships them).
        data_root: Where the dataset is.
        progress: Progress bars (the training bar shows the loss).

    Returns:
        Where the adapter went and the training record.

    Raises:
        TrainingConfigError: The base model is not decoder-only or has no EOS token; a
            checkpoint in ``output`` belongs to another configuration.
        TrainingDataError: See :func:`training_data`.
    """
    return train_retrievers([config], output, data_root=data_root, progress=progress)[0]


def _train(config: TrainingConfig, output: str | os.PathLike, data: TrainingData,
           states: Mapping[str, torch.Tensor], frozen_seconds: float, shared: Sequence[str], *,
           stacks: _Stacks | None, progress: bool) -> TrainingResult:
    """The training loop of one run, on the frozen states of its texts."""
    started = time.perf_counter()
    spec = resolve_model(config.base_model)
    target = Path(output) / config.key
    checkpoint = Path(output) / f".{config.key}.checkpoint"
    state = None
    if (checkpoint / "state.json").exists():
        state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
        if state.get("fingerprint") != config.fingerprint():
            raise TrainingConfigError(
                f"{checkpoint} was saved by another configuration of {config.key!r}; delete it "
                "to start afresh, or restore the configuration it was made with")
    stacks = stacks or _Stacks(config, spec)
    log.info("%s: %d layers, %d frozen, %d pairs", config.key, stacks.depth, stacks.frozen,
             len(data.pairs))
    parameters = stacks.trainable()
    optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    rng = random.Random(config.seed)
    history: list[dict[str, float]] = []
    order: list[int] = []
    step = 0
    if state is not None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(stacks.peft, load_file(checkpoint / "adapter.safetensors"))
        optimiser.load_state_dict(torch.load(checkpoint / "optimiser.pt", weights_only=True))
        rng.setstate(_tuple_state(state["rng"]))
        order, step, history = state["order"], state["step"], state["history"]
        log.info("%s: resuming at step %d", config.key, step)
    stacks.top.train()
    bar = tqdm(total=config.steps, initial=step, desc=config.key, disable=not progress)
    while step < config.steps:
        optimiser.zero_grad()
        losses, accuracies = [], []
        for _ in range(config.gradient_accumulation):
            while len(order) < config.batch_size:
                refill = list(range(len(data.pairs)))
                rng.shuffle(refill)
                order += refill
            batch = [data.pairs[i] for i in order[:config.batch_size]]
            del order[:config.batch_size]
            documents = [positive for _, positive, _ in batch]
            for _, _, negatives in batch:
                documents += rng.sample(negatives, min(config.hard_negatives, len(negatives)))
            queries = stacks.embed([states[q] for q, _, _ in batch])
            vectors = stacks.embed([states[d] for d in documents])
            logits = queries @ vectors.T / config.temperature
            labels = torch.arange(len(batch))
            loss = F.cross_entropy(logits, labels)
            (loss / config.gradient_accumulation).backward()
            losses.append(loss.item())
            accuracies.append((logits.argmax(1) == labels).float().mean().item())
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(config, step)
        norm = torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        step += 1
        row = {"step": step, "loss": float(np.mean(losses)), "accuracy": float(np.mean(accuracies)),
               "grad_norm": float(norm), "learning_rate": _learning_rate(config, step - 1),
               "seconds": round(time.perf_counter() - started, 1)}
        if step % config.validate_every == 0 or step == config.steps:
            row["validation_ndcg@10"] = _validate(stacks, states, data, config.batch_size * 2)
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", **({"val": f"{row['validation_ndcg@10']:.3f}"}
                                                        if "validation_ndcg@10" in row else {}))
        bar.update(1)
        if step % config.checkpoint_every == 0 and step < config.steps:
            _save_checkpoint(checkpoint, stacks, optimiser, rng, order, step, history, config)
    bar.close()
    seconds = time.perf_counter() - started
    record = {
        "key": config.key,
        "config": config.record(),
        "base_model": spec.as_record(),
        "layers": {"total": stacks.depth, "frozen": stacks.frozen,
                   "trained": stacks.depth - stacks.frozen},
        "trainable_parameters": int(sum(p.numel() for p in parameters)),
        "data": data.sources,
        "held_out_splits": list(HELD_OUT_SPLITS),
        "history": history,
        "frozen_states_seconds": round(frozen_seconds, 1),
        "frozen_states_shared_with": [k for k in shared if k != config.key],
        "training_seconds": round(seconds + frozen_seconds, 1),
        "hardware": {"machine": platform.machine(), "processor": platform.processor(),
                     "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "torch": torch.__version__},
    }

    def write(folder: Path) -> None:
        stacks.peft.save_pretrained(folder)
        # name the base by its id, not by this machine's folder of dequantised weights
        adapter_config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        adapter_config["base_model_name_or_path"] = spec.hf_id
        (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n",
                                                    encoding="utf-8")
        (folder / "training.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")

    _save_atomically(target, write)
    shutil.rmtree(checkpoint, ignore_errors=True)
    record["adapter_sha256"] = folder_sha256(target, files=ADAPTER_FILES)
    log.info("%s: trained in %.0f s, adapter %s", config.key, seconds, record["adapter_sha256"][:12])
    return TrainingResult(target, record)


def _tuple_state(value):
    """``random.Random.getstate()`` back from JSON lists."""
    return tuple(_tuple_state(v) for v in value) if isinstance(value, list) else value


def _save_checkpoint(folder: Path, stacks: _Stacks, optimiser, rng: random.Random,
                     order: list[int], step: int, history: list, config: TrainingConfig) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    def write(staging: Path) -> None:
        weights = {k: v.contiguous() for k, v in get_peft_model_state_dict(stacks.peft).items()}
        save_file(weights, staging / "adapter.safetensors")
        torch.save(optimiser.state_dict(), staging / "optimiser.pt")
        state = {"fingerprint": config.fingerprint(), "step": step, "order": order,
                 "history": history, "rng": rng.getstate()}
        (staging / "state.json").write_text(json.dumps(state), encoding="utf-8")

    _save_atomically(folder, write)


#: File name of the model card written beside each adapter.
MODEL_CARD = "README.md"


def write_model_card(adapter: str | os.PathLike, scores: Mapping[str, Mapping[str, float]] | None = None
                     ) -> Path:
    """Write the model card of a trained retriever from its ``training.json`` (and scores).

    Args:
        adapter: The adapter folder written by :func:`train_retriever`.
        scores: ``{dataset/split: {measure: value}}`` measured with ``robustir evaluate``
            after training (the test splits are only ever evaluated, never trained on).

    Returns:
        The card's path.
    """
    adapter = Path(adapter)
    record = json.loads((adapter / "training.json").read_text(encoding="utf-8"))
    config = record["config"]
    history = record["history"]
    validations = [(h["step"], h["validation_ndcg@10"]) for h in history if "validation_ndcg@10" in h]
    lines = [
        f"# {record['key']}",
        "",
        f"A dense retriever trained by robustir from {record['base_model']['display_name']} "
        f"({record['base_model']['hf_id']}), {record['layers']['total']} of its layers, with the "
        "recipe of the study's LLM retrievers: instruction-prefixed queries, the end-of-sequence "
        "token appended, its final hidden state as the embedding (cosine), InfoNCE over in-batch "
        "and BM25 hard negatives, LoRA adapters. Load it with `robustir evaluate --model "
        f"{record['key']}` (catalog entry) — no network needed.",
        "",
        "## Data (no test query, no test judgment)",
        "",
        *[f"- {name}: " + ", ".join(f"{v} {k}" for k, v in sizes.items()) for name, sizes in record["data"].items()],
        "",
        "## Recipe and hyper-parameters",
        "",
        f"- layers: {record['layers']['total']} ({record['layers']['frozen']} frozen, their states computed "
        f"once; LoRA r={config['lora_rank']}, alpha={config['lora_alpha']} on every linear layer of the top "
        f"{record['layers']['trained']}; {record['trainable_parameters']:,} trainable parameters)",
        f"- pooling: {config['pooling']}; max length {config['max_length']} tokens (EOS included)",
        f"- InfoNCE temperature {config['temperature']}; {config['hard_negatives']} BM25 hard negative(s) per "
        f"query from its top {config['negative_depth']}",
        f"- AdamW, learning rate {config['learning_rate']} ({config['warmup_steps']} warm-up steps, cosine decay), "
        f"{config['steps']} steps of {config['batch_size']} queries, seed {config['seed']}, {config['dtype']} weights",
        "",
        "## Training",
        "",
        f"- time: {record['frozen_states_seconds']:.0f} s for the frozen layers' states, "
        f"{record['training_seconds']:.0f} s in all",
        f"- hardware: {record['hardware']['cpu_count']} CPU cores ({record['hardware']['machine']}), "
        f"torch {record['hardware']['torch']} with {record['hardware']['torch_threads']} threads",
        f"- loss: {history[0]['loss']:.3f} at step 1, {history[-1]['loss']:.3f} at step {history[-1]['step']}",
        "- validation nDCG@10 (held-out train queries, whole corpus): "
        + ", ".join(f"{v:.4f} at step {s}" for s, v in validations),
    ]
    if scores:
        lines += ["", "## Scores (`robustir evaluate`, after training)", "",
                  "| dataset | " + " | ".join(next(iter(scores.values()))) + " |",
                  "| --- |" + " --- |" * len(next(iter(scores.values())))]
        lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in values.values()) + " |"
                  for name, values in scores.items()]
    lines += ["", f"SHA-256 of the adapter ({', '.join(ADAPTER_FILES)}; "
              f"`robustir.model_sources.folder_sha256`): `{folder_sha256(adapter, files=ADAPTER_FILES)}`", ""]
    path = adapter / MODEL_CARD
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def findings(clean: "pd.DataFrame", targets: Mapping[str, Sequence[float]], *, full: str,
             depth_series: Sequence[str], control: str, baseline: str = "bm25"):
    """The targets box of the training chapter, from the clean evaluations of the store.

    Args:
        clean: :func:`robustir.experiments.evaluation.summarise`'s table.
        targets: ``{dataset: (bar, goal)}`` nDCG@10 of the full-depth retriever.
        full: The full-depth retriever's key.
        depth_series: The retrievers, smallest first.
        control: The untrained model.
        baseline: The stretch target's system (beat it on the first dataset).
    """
    from robustir.experiments.findings import Finding, against_target, format_number, lookup
    from robustir.models import display_name

    rows = []
    for dataset, (bar, goal) in targets.items():
        ours = lookup(clean, "nDCG@10", model=full, dataset=dataset)
        untrained = lookup(clean, "nDCG@10", model=control, dataset=dataset)
        rows.append(Finding(
            claim=f"{display_name(full)} retrieves on {dataset} test (nDCG@10 bar {bar}, goal {goal})",
            scope="in-domain (SciFact's train split) " if dataset == "scifact" else
                  "out of domain: no query, judgment or document of this dataset in training",
            ours=f"{format_number(ours, 4)} (untrained: {format_number(untrained, 4)})",
            published="our target", verdict=against_target(ours, bar, goal),
            rule=f"bar {bar}, goal {goal}"))
    first = next(iter(targets))
    scores = {m: lookup(clean, "nDCG@10", model=m, dataset=first) for m in depth_series}
    monotone = all(a < b for a, b in zip(list(scores.values()), list(scores.values())[1:]))
    rows.append(Finding(
        claim="The depth series is monotone: more layers, better retrieval",
        scope=f"{len(depth_series)} depths, one recipe, on {first}",
        ours=", ".join(f"{display_name(m)} {format_number(v, 4)}" for m, v in scores.items()),
        published="our target",
        verdict=("not measured" if any(math.isnan(v) for v in scores.values())
                 else "goal met" if monotone else "missed"),
        rule="met only if nDCG@10 rises at every step up in depth"))
    ours, lexical = (lookup(clean, "nDCG@10", model=m, dataset=first) for m in (full, baseline))
    rows.append(Finding(
        claim=f"Stretch: {display_name(full)} beats {display_name(baseline)} on {first}",
        scope="the lexical baseline is strong on SciFact's scientific claims",
        ours=f"{format_number(ours, 4)} vs {format_number(lexical, 4)}",
        published="our target", verdict=against_target(ours, lexical),
        rule="met only above the baseline"))
    return rows
