"""Turning texts into embeddings for a :class:`~robustir.models.ModelSpec`.

One path serves every dense system: the prompt is attached to the text with the spec's
separator (protocol §1.2: none), empty texts become ``"[PAD]"`` (§1.4.8), texts are tokenised
with truncation to ``max_length`` and padded (to a multiple of 8 on CUDA), encoded in
batches sorted by token count, pooled in float32 (mean, CLS, last token or prompt-masked mean;
§1.4) and L2-normalised when the system scores by cosine. On a CPU the model runs with the fused
inference forwards of :mod:`robustir.fused`, in float32 or bfloat16, and a forward holds no more
texts than keep its widest activation within :data:`ACTIVATION_LIMIT_BYTES`. Corpus and query
embeddings go through the content-addressed :class:`~robustir.cache.EmbeddingCache`, so a corpus
is encoded once per (model, dataset) and reused by the clean, perturbed and poisoned runs.

Decoder-only models padded on the left get position ids counted from their first real token,
so a text's embedding does not depend on the other texts in its batch.

Used in the book chapter "Dense retrieval with encoder-only and decoder-only models".
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from robustir.cache import EmbeddingCache, default_cache_dir, fingerprint
from robustir.data import PAD_TEXT, document_text, pad_empty
from robustir.embeddings import Embeddings
from robustir.fused import fuse_for_cpu_inference, widest_output
from robustir.models import MODELS, ModelSpec

__all__ = [
    "ACTIVATION_LIMIT_BYTES",
    "ENCODER_OUTPUT_VERSION",
    "Encoder",
    "EncoderStats",
    "base_weights_location",
    "default_dtype",
    "forward_identity",
    "load_wordllama",
    "pool",
    "select_device",
    "truncate_layers",
]

log = logging.getLogger(__name__)

_POOLINGS = ("mean", "cls", "last_token", "prompt_mean")

#: Bytes of query vectors an :class:`Encoder` keeps in memory to skip re-encoding a text.
REMEMBERED_QUERY_BYTES = 256 * 2**20
#: Batches whose texts are tokenised together and sorted by token count (bounds the memory of
#: the token ids while keeping padding small).
SORT_WINDOW = 64
#: Largest activation (bytes) of one forward pass on a CPU. glibc's allocator serves a larger
#: block with fresh pages from the kernel each time (32 MiB is its largest mmap threshold), and
#: every page faults and is zeroed on first touch: a float32 MiniLM forward of 32 texts of 256
#: tokens spent a sixth of its matrix-product time there. Longer texts go in smaller forwards.
ACTIVATION_LIMIT_BYTES = 32 * 2**20


@dataclass
class EncoderStats:
    """Counters of what an :class:`Encoder` did, to verify that caches are used."""

    texts_encoded: int = 0
    cache_hits: int = 0
    cache_misses: int = 0


def select_device(device: str | None = None) -> torch.device:
    """The requested device, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pool(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    pooling: str,
    *,
    prompt_length: int = 0,
) -> torch.Tensor:
    """Pool token states into one vector per text (protocol §1.4.3–§1.4.6).

    Args:
        hidden: Token states, shape ``(batch, tokens, dim)``.
        attention_mask: 1 for real tokens, 0 for padding, shape ``(batch, tokens)``.
        pooling: ``mean`` over the mask, ``cls`` (position 0), ``last_token`` (the last
            position when every row ends in a real token, i.e. left padding, else each row's
            last real token) or ``prompt_mean`` (mean after zeroing the first
            ``prompt_length`` mask positions; requires right padding).
        prompt_length: Prompt tokens to exclude, for ``prompt_mean``.

    Returns:
        float32 tensor of shape ``(batch, dim)``, not normalised: half-precision states are
        pooled in float32.
    """
    if pooling == "cls":
        return hidden[:, 0].float()
    if pooling == "last_token":
        if bool(attention_mask[:, -1].all()):
            return hidden[:, -1].float()
        last = attention_mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
    hidden = hidden.float()
    mask = attention_mask.to(hidden.dtype)
    if pooling == "prompt_mean":
        if not bool(attention_mask[:, 0].all()):
            raise ValueError("prompt_mean pooling needs right padding (protocol §1.4.3)")
        mask = mask.clone()
        mask[:, :prompt_length] = 0
    elif pooling != "mean":
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {_POOLINGS}")
    summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
    return summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)


def _package_version(package: str | None) -> str | None:
    if package is None:
        return None
    try:
        return importlib.metadata.version(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return None


def _dequantised_copy(location: str, gguf_file: str) -> str:
    """A float32 copy of GGUF weights, written once, so later loads skip dequantisation.

    transformers dequantises GGUF files on every load (≈20 s for SmolLM2-135M on 2 cores) and
    refuses to save a GGUF-loaded model; we drop the quantiser record and save it once.
    """
    from transformers import AutoModel, AutoTokenizer

    digest = hashlib.sha256(f"{location}/{gguf_file}".encode()).hexdigest()[:16]
    target = default_cache_dir() / "models" / f"{gguf_file}-{digest}"
    if (target / "config.json").exists():
        return str(target)
    log.info("dequantising %s once into %s", gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(location, gguf_file=gguf_file)
    model = AutoModel.from_pretrained(location, gguf_file=gguf_file, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
        # Another process (a parallel grid job) finished the same copy first: use it.
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return str(target)


def base_weights_location(spec: ModelSpec) -> str:
    """Where ``spec``'s base weights load from: its folder or hub id, GGUF files dequantised
    once into a float32 copy (the trainer and the encoder share this)."""
    location = spec.weights_location()
    if spec.gguf_file:
        location = _dequantised_copy(location, spec.gguf_file)
    return location


def _load_transformer(spec: ModelSpec, device: str, dtype: str):
    """Tokenizer and model of ``spec``; catalog variants of one model share one load."""
    location = base_weights_location(spec)
    adapter = spec.adapter_location()
    try:
        return _load_weights(
            location, spec.trust_remote_code, spec.padding_side, device, dtype,
            spec.num_layers, str(adapter) if adapter else None,
        )
    except OSError as error:
        raise OSError(
            f"could not load model {spec.key!r} from {location!r}: {error}. Offline, only the "
            f"package-shipped models load (minilm*, smollm2*, wordllama) and local folders; the "
            f"study's models need the model hub or a local copy of {spec.hf_id!r}."
        ) from error


def truncate_layers(model: torch.nn.Module, num_layers: int) -> torch.nn.Module:
    """Keep the first ``num_layers`` transformer layers of a decoder model (its final norm
    stays): the truncated models of the depth series. Returns the model, changed in place."""
    layers = getattr(model, "layers", None)
    if layers is None or not 0 < num_layers <= len(layers):
        found = "no .layers" if layers is None else f"{len(layers)} layers"
        raise ValueError(f"cannot keep {num_layers} layers of a {type(model).__name__} ({found})")
    model.layers = torch.nn.ModuleList(list(layers)[:num_layers])
    model.config.num_hidden_layers = num_layers
    if hasattr(model.config, "layer_types"):
        model.config.layer_types = model.config.layer_types[:num_layers]
    return model


@functools.lru_cache(maxsize=4)
def _load_weights(
    location: str, trust_remote_code: bool, padding_side: str | None, device: str, dtype: str,
    num_layers: int | None = None, adapter: str | None = None,
):
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    # outside inference mode even when first used while encoding: the attack needs gradients
    # through buffers such as BERT's position ids
    bar_was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a bar per load clutters every notebook
    try:
        with torch.inference_mode(False):
            # adapters merge in float32, then the model takes the requested dtype
            model = AutoModel.from_pretrained(
                location, dtype=torch.float32 if adapter else getattr(torch, dtype),
                trust_remote_code=trust_remote_code,
            )
            if num_layers is not None:
                truncate_layers(model, num_layers)
            if adapter is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
                model = model.to(getattr(torch, dtype))
    finally:
        if bar_was_on:
            transformers_logging.enable_progress_bar()
    if padding_side:
        tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval().to(device)
    if torch.device(device).type == "cpu":
        fuse_for_cpu_inference(model)
    return tokenizer, model


@functools.lru_cache(maxsize=1)
def load_wordllama():
    """WordLlama from its wheel without a download (the loader looks in the wrong folder)."""
    from wordllama import WordLlama

    package = Path(importlib.util.find_spec("wordllama").origin).parent
    cache = default_cache_dir() / "wordllama"
    (cache / "tokenizers").mkdir(parents=True, exist_ok=True)
    config = "l2_supercat_tokenizer_config.json"
    if not (cache / "tokenizers" / config).exists():
        shutil.copy(package / "tokenizers" / config, cache / "tokenizers" / config)
    return WordLlama.load(cache_dir=cache, disable_download=True)


#: Version of what :class:`Encoder` computes from a model's weights. Bump it with any change to
#: tokenisation, prompting, padding, pooling or normalisation: it is part of every cache key, so
#: embeddings cached by an older encoder are never reused (``tests/test_encode.py`` fails when
#: the output on a fixed batch changes without a bump).
ENCODER_OUTPUT_VERSION = 2


def default_dtype(spec: ModelSpec, device: str | torch.device | None = None) -> str:
    """The dtype an encoder uses unless told otherwise: the spec's on CUDA, float32 elsewhere."""
    return spec.dtype if select_device(device).type == "cuda" else "float32"


@functools.lru_cache(maxsize=32)
def _adapter_sha256(path: str) -> str:
    from robustir.model_sources import ADAPTER_FILES, folder_sha256

    return folder_sha256(path, files=ADAPTER_FILES)


def forward_identity(spec: ModelSpec, *, max_length: int | None = None, dtype: str | None = None,
                     device: str | None = None) -> dict:
    """Everything that decides the hidden states of one forward pass of ``spec``'s model.

    The embedding cache keys on this (plus pooling, normalisation, layer, prompt and texts),
    and the grid runner groups jobs by it, so that catalog siblings (another pooling or layer of
    the same forward pass) share one corpus encoding: one definition serves both.

    Args:
        spec: The system.
        max_length: Token limit (default: the spec's).
        dtype: Weights dtype (default: :func:`default_dtype`).
        device: Device name or type (default: CUDA when available).
    """
    import transformers

    device_type = select_device(device).type
    adapter = spec.adapter_location()
    return {
        "encoder_output_version": ENCODER_OUTPUT_VERSION,
        "model": spec.weights_sha256 or spec.hf_id,
        "package": spec.package,
        "package_version": _package_version(spec.package),
        "gguf_file": spec.gguf_file,
        "backend": spec.backend,
        "num_layers": spec.num_layers,
        "adapter_sha256": _adapter_sha256(str(adapter)) if adapter else None,
        "append_eos": spec.append_eos,
        "padding_side": spec.padding_side,
        "max_length": max_length or spec.max_length,
        "dtype": dtype or default_dtype(spec, device_type),
        "device": device_type,
        "separator": spec.separator,
        "empty_text": PAD_TEXT,
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
    }


class Encoder:
    """Encodes texts with one catalog system.

    Args:
        spec: The system.
        device: ``cpu``, ``cuda``, … (default: CUDA when available).
        dtype: Weights dtype name (default: the spec's on CUDA, float32 on CPU).
        batch_size: Texts per forward pass (the study: 32 clean, 64 perturbed); on a CPU,
            fewer where their widest activation would exceed :data:`ACTIVATION_LIMIT_BYTES`.
        max_length: Token limit (default: the spec's).
        cache: Embedding cache for :meth:`encode_queries`/:meth:`encode_corpus`; ``None``
            disables caching.
        progress: Show progress bars (``TQDM_DISABLE=1`` silences them too).

    Example:
        >>> enc = Encoder(get_model_spec("minilm"))                # doctest: +SKIP
        >>> enc.encode_texts(["a query"]).shape                      # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        cache: EmbeddingCache | None = None,
        progress: bool = True,
    ):
        if spec.backend != "transformers":
            raise ValueError(f"{spec.key!r} is not a transformer model ({spec.backend}); use "
                             "robustir.retrievers.make_retriever")
        if spec.pooling not in _POOLINGS:
            raise ValueError(f"{spec.key}: unknown pooling {spec.pooling!r}")
        self.spec = spec
        self.device = select_device(device)
        self.dtype = dtype or default_dtype(spec, self.device)
        self.batch_size = batch_size
        self.max_length = max_length or spec.max_length
        self.cache = cache
        self.progress = progress
        self.stats = EncoderStats()
        self._loaded = None
        self._activation_bytes_per_token: int | None = None
        # (head key, prompt, text) → vector of every query this encoder embedded, so that a
        # query set that repeats texts (the unchanged queries of a variation) encodes only the
        # new ones; forgotten all at once past REMEMBERED_QUERY_BYTES
        self._remembered: dict[tuple[str, str, str], np.ndarray] = {}
        self._remembered_bytes = 0

    # --- model access -------------------------------------------------------------------
    def _weights(self):
        if self._loaded is None:
            self._loaded = _load_transformer(self.spec, str(self.device), self.dtype)
        return self._loaded

    @property
    def tokenizer(self):
        """The Hugging Face tokenizer (loaded on first use)."""
        return self._weights()[0]

    @property
    def model(self) -> torch.nn.Module:
        """The Hugging Face encoder model, without an LM head (loaded on first use)."""
        return self._weights()[1]

    @property
    def input_embeddings(self) -> torch.nn.Embedding:
        """The model's input word-embedding matrix (the HotFlip candidate source)."""
        return self.model.get_input_embeddings()

    def rows_per_forward(self, tokens: int, batch: int | None = None) -> int:
        """Texts of ``tokens`` tokens (padded) in one forward pass over a batch of ``batch``
        texts (default ``batch_size``): all of them, or on a CPU at most as many as keep the
        widest activation within :data:`ACTIVATION_LIMIT_BYTES` (at least one)."""
        rows = self.batch_size if batch is None else batch
        if self.device.type != "cpu":
            return rows
        if self._activation_bytes_per_token is None:
            self._activation_bytes_per_token = widest_output(self.model) * self.model.dtype.itemsize
        fitting = ACTIVATION_LIMIT_BYTES // max(1, self._activation_bytes_per_token * tokens)
        return max(1, min(rows, fitting))

    def prompt_length(self, prompt: str) -> int:
        """Tokens of ``prompt`` with special tokens, the mask length of ``prompt_mean``."""
        if not prompt:
            return 0
        return len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])

    # --- encoding -----------------------------------------------------------------------
    def _hidden_states(self, attention_mask: torch.Tensor, all_layers: bool, **inputs):
        kwargs = {"attention_mask": attention_mask}
        kwargs.update({name: value for name, value in inputs.items() if value is not None})
        if not bool(attention_mask[:, 0].all()):
            # left padding: count positions from each row's first real token
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.model(**kwargs, output_hidden_states=all_layers)

    @staticmethod
    def _head(output, attention_mask, spec: ModelSpec, prompt_length: int) -> torch.Tensor:
        layer = spec.layer
        hidden = output.hidden_states[layer] if layer is not None else output.last_hidden_state
        vectors = pool(hidden, attention_mask, spec.pooling, prompt_length=prompt_length)
        return F.normalize(vectors, dim=-1) if spec.normalize else vectors

    def embed_batch(
        self,
        attention_mask: torch.Tensor,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        prompt_length: int = 0,
    ) -> torch.Tensor:
        """Pooled (and, per the spec, L2-normalised) vectors of one tokenised batch.

        Differentiable: the attack passes ``inputs_embeds`` to get gradients at the word
        embeddings. Gives ``input_ids`` or ``inputs_embeds``, not both.

        A batch larger than :meth:`rows_per_forward` allows runs as several forwards of nearly
        equal size.

        Returns:
            float32 tensor ``(batch, dim)`` (pooled and normalised in float32 whatever the
            model's dtype).
        """
        rows, tokens = attention_mask.shape
        forwards = -(-rows // self.rows_per_forward(tokens, rows))
        if forwards > 1:
            size = -(-rows // forwards)
            parts = [slice(start, start + size) for start in range(0, rows, size)]
            return torch.cat([
                self.embed_batch(
                    attention_mask[part], prompt_length=prompt_length,
                    **{name: None if value is None else value[part] for name, value in (
                        ("input_ids", input_ids), ("inputs_embeds", inputs_embeds),
                        ("token_type_ids", token_type_ids))},
                )
                for part in parts
            ])
        output = self._hidden_states(
            attention_mask, self.spec.layer is not None, input_ids=input_ids,
            inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
        )
        return self._head(output, attention_mask, self.spec, prompt_length)

    def tokenize(self, texts: Sequence[str]):
        """Token ids and attention masks of ``texts`` (prompts already attached), padded.

        Truncation keeps ``max_length`` tokens; with ``append_eos`` the end-of-sequence token is
        appended after truncating to ``max_length - 1``, so every text ends in it. Multiples of
        8 pad only on CUDA (tensor cores); on a CPU they would only add padding.
        """
        return self._pad(self._token_ids(texts))

    def _token_ids(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        """Unpadded token ids (and masks, token types) of ``texts``, as :meth:`tokenize` truncates."""
        tokenizer = self.tokenizer
        if not self.spec.append_eos:
            return dict(tokenizer(list(texts), max_length=self.max_length, truncation=True))
        encoded = tokenizer(list(texts), max_length=self.max_length - 1, truncation=True)
        encoded["input_ids"] = [ids + [tokenizer.eos_token_id] for ids in encoded["input_ids"]]
        encoded["attention_mask"] = [mask + [1] for mask in encoded["attention_mask"]]
        encoded.pop("token_type_ids", None)  # decoder-only tokenizers; none for the EOS
        return dict(encoded)

    def _pad(self, encoded: dict[str, list[list[int]]]):
        pad_to = 8 if self.device.type == "cuda" else None
        return self.tokenizer.pad(encoded, padding=True, pad_to_multiple_of=pad_to, return_tensors="pt")

    def _with_prompt(self, texts: Iterable[str], prompt: str) -> list[str]:
        sep = self.spec.separator if prompt else ""
        return [prompt + sep + pad_empty(text) for text in texts]

    def encode_texts(self, texts: Sequence[str], prompt: str = "", *, desc: str = "encoding") -> np.ndarray:
        """Embed ``texts`` with ``prompt`` attached, as float32 ``(len(texts), dim)``.

        Texts are encoded longest first in batches of ``batch_size`` and returned in input
        order. Empty texts are encoded as ``"[PAD]"``.
        """
        return self._encode_heads(texts, prompt, [self.spec], desc=desc)[0]

    def _encode_heads(
        self, texts: Sequence[str], prompt: str, heads: list[ModelSpec], *, desc: str = "encoding"
    ) -> list[np.ndarray]:
        """Embeddings of ``texts`` for each head (a pooling/layer reading of this model's
        hidden states), all from one forward pass per batch.

        Texts are taken longest first (in characters) in windows of :data:`SORT_WINDOW` batches;
        each window is tokenised at once and batched by token count, so that batches hold texts
        of nearly equal length and little padding (:meth:`rows_per_forward` texts a batch)."""
        full = self._with_prompt(texts, prompt)
        order = sorted(range(len(full)), key=lambda i: len(full[i]), reverse=True)
        needs_prompt = any(head.pooling == "prompt_mean" for head in heads)
        prompt_length = self.prompt_length(prompt) if needs_prompt else 0
        all_layers = any(head.layer is not None for head in heads)
        out: list[np.ndarray] = []
        bar = tqdm(total=len(full), desc=desc, unit="text", disable=not self.progress)
        window = SORT_WINDOW * self.batch_size
        with torch.inference_mode():
            for first in range(0, len(order), window):
                texts_in = order[first : first + window]
                encoded = self._token_ids([full[i] for i in texts_in])
                by_tokens = sorted(range(len(texts_in)), key=lambda j: len(encoded["input_ids"][j]),
                                   reverse=True)
                start = 0
                while start < len(by_tokens):
                    longest = len(encoded["input_ids"][by_tokens[start]])
                    rows = by_tokens[start : start + self.rows_per_forward(longest)]
                    start += len(rows)
                    batch = self._pad({k: [v[j] for j in rows] for k, v in encoded.items()}).to(self.device)
                    index = [texts_in[j] for j in rows]
                    mask = batch["attention_mask"]
                    output = self._hidden_states(
                        mask, all_layers, input_ids=batch["input_ids"],
                        token_type_ids=batch.get("token_type_ids"),
                    )
                    for h, head in enumerate(heads):
                        vectors = self._head(output, mask, head, prompt_length).cpu().numpy()
                        if len(out) <= h:
                            out.append(np.empty((len(full), vectors.shape[1]), dtype=np.float32))
                        out[h][index] = vectors
                    bar.update(len(index))
        bar.close()
        self.stats.texts_encoded += len(full)
        if not out:
            return [np.empty((0, 0), dtype=np.float32) for _ in heads]
        return out

    def cache_inputs(self, prompt: str, head: ModelSpec | None = None) -> dict:
        """Everything except the texts that changes this encoder's output for ``prompt``
        (for ``head``, a catalog sibling read from the same forward pass; default: the spec)."""
        spec = head or self.spec
        return {
            **forward_identity(spec, max_length=self.max_length, dtype=self.dtype,
                               device=self.device.type),
            "pooling": spec.pooling,
            "normalize": spec.normalize,
            "layer": spec.layer,
            "prompt": prompt,
        }

    def siblings(self) -> list[ModelSpec]:
        """Catalog entries that read the same model's hidden states differently (another
        pooling or layer) with the same prompts and padding: one forward pass serves them all.
        """
        if self.spec.backend != "transformers":
            return []
        settings = dict(max_length=self.max_length, dtype=self.dtype, device=self.device.type)
        identity = forward_identity(self.spec, **settings)
        return [s for s in MODELS.values() if s.key != self.spec.key and s.backend == "transformers"
                and forward_identity(s, **settings) == identity]

    def _encode_remembered(self, texts: list[str], prompt: str, heads: list[ModelSpec], desc: str) -> list[np.ndarray]:
        """:meth:`_encode_heads` for query texts: texts embedded before with ``prompt`` are
        taken from memory and only the others are encoded."""
        if not texts:
            return self._encode_heads(texts, prompt, heads, desc=desc)
        new = [t for t in dict.fromkeys(texts) if any((h.key, prompt, t) not in self._remembered for h in heads)]
        if new:
            fresh = self._encode_heads(new, prompt, heads, desc=desc)
            added = sum(v.nbytes for v in fresh)
            if self._remembered_bytes + added > REMEMBERED_QUERY_BYTES:
                self._remembered.clear()
                self._remembered_bytes = 0
            self._remembered_bytes += added
            for head, vectors in zip(heads, fresh):
                self._remembered.update(((head.key, prompt, t), v) for t, v in zip(new, vectors))
        return [np.stack([self._remembered[(h.key, prompt, t)] for t in texts]) for h in heads]

    def _cached(self, ids: list[str], texts: list[str], prompt: str, desc: str, *, remember: bool = False) -> Embeddings:
        encode = self._encode_remembered if remember else self._encode_heads
        if self.cache is None:
            return Embeddings(ids, encode(texts, prompt, [self.spec], desc=desc)[0])
        text_hash = hashlib.sha256()
        for doc_id, text in zip(ids, texts):
            text_hash.update(doc_id.encode("utf-8") + b"\x00" + text.encode("utf-8") + b"\x01")
        texts_sha256 = text_hash.hexdigest()

        def key(head: ModelSpec) -> str:
            return fingerprint({**self.cache_inputs(prompt, head), "texts": texts_sha256})

        hit = self.cache.get(key(self.spec), ids)
        if hit is not None:
            self.stats.cache_hits += 1
            log.info("%s: %d embeddings from the cache", self.spec.key, len(ids))
            return Embeddings(hit[0], hit[1])
        self.stats.cache_misses += 1
        # siblings missing from the cache ride along on this forward pass
        heads = [self.spec] + [s for s in self.siblings() if self.cache.get(key(s), ids) is None]
        for head, vectors in zip(heads, encode(texts, prompt, heads, desc=desc)):
            inputs = {**self.cache_inputs(prompt, head), "texts_sha256": texts_sha256}
            self.cache.put(key(head), ids, vectors, inputs)
            if head is self.spec:
                result = Embeddings(ids, vectors)
        return result

    def encode_queries(
        self, queries: dict[str, str], dataset: str, *, browsecomp_wrapping: bool = True
    ) -> Embeddings:
        """Embed ``{qid: text}`` with the spec's query prompt for ``dataset`` (cached)."""
        prompt = self.spec.query_prompt(dataset, browsecomp_wrapping=browsecomp_wrapping)
        ids = list(queries)
        return self._cached(ids, [queries[i] for i in ids], prompt, f"{self.spec.key} queries", remember=True)

    def encode_corpus(self, corpus: dict[str, dict], dataset: str) -> Embeddings:
        """Embed a BEIR corpus (``title + " " + text``) with the document prompt (cached)."""
        prompt = self.spec.document_prompt(dataset)
        ids = list(corpus)
        texts = [document_text(corpus[i], empty=None) for i in ids]
        return self._cached(ids, texts, prompt, f"{self.spec.key} corpus")
