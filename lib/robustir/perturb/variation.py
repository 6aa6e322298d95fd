"""Generate one variant per query for a family and a seed, and save it with its provenance.

The study's semantics (protocol §4.2): for every query of the split, every generator of the
family yields one candidate (the unchanged query when it has none); one candidate is chosen
uniformly at random. Each variant records the generator chosen and whether the text
changed (protocol §8.1 row 13: the unchanged fraction is reported next to every drop rate).

Randomness (``rng_scope``):

* ``"stream"`` (default, the study's semantics): one ``random.Random(seed)`` per
  (dataset, family, seed), consumed query by query in the query set's order and generator by
  generator, as the study seeds its global generators once per run. A query's variant therefore
  depends on the queries before it.
* ``"query"`` (an improvement, protocol §8.2 item 9): each query's generator is seeded from
  SHA-256 of (seed, dataset, query id), so a variant does not depend on order or on the other
  queries. Results made with it are labelled by the recorded ``rng_scope``.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from robustir.cache import atomic_write_text
from robustir.perturb.augment import PCT_WORDS_TO_SWAP
from robustir.perturb.family import Family, FamilyUnavailable, QueryGenerator
from robustir.perturb.naturalize import naturalizing_generators
from robustir.perturb.reorder import reordering_generators
from robustir.perturb.stopwords import STOPWORDS_SOURCE
from robustir.perturb.typos import misspelling_generators

log = logging.getLogger(__name__)

#: The study's five seeds (protocol §4.1).
STUDY_SEEDS: tuple[int, ...] = (1999, 5, 27, 2016, 2026)

RNG_SCOPES = ("stream", "query")

#: Revision of the generators' semantics, recorded with every variant set; a stored variant
#: file of another revision is not reused. Revision 2: TextAttack 0.3.10's per-word QWERTY
#: failure and the identical-word swaps of the reordering (revision 1 had neither). Revision 3:
#: the offline paraphraser ranks tied token probabilities by token id, and the synonym
#: neighbours exclude the word itself and keep vocabulary order within ties.
GENERATORS_REVISION = 3

@dataclass(frozen=True)
class FamilyDefinition:
    """How to build one query-variation family; see :func:`register_family`.

    Attributes:
        key: Code key (the study's spelling for its families).
        display_name: Name in figures and tables.
        build: ``build(encoder=…, device=…) -> (generators, parameters)``; raises
            :class:`FamilyUnavailable` when its resources are missing.
        aliases: Other names accepted for the family (case-insensitive).
    """

    key: str
    display_name: str
    build: Callable[..., tuple[Sequence[QueryGenerator], dict[str, Any]]]
    aliases: tuple[str, ...] = ()


#: The registered families by code key, in figure order (registration order).
FAMILIES: dict[str, FamilyDefinition] = {}
#: ``{key: display name}`` of the registered families, in figure order.
FAMILY_NAMES: dict[str, str] = {}
_ALIASES: dict[str, str] = {}


def register_family(key: str, display_name: str, *, aliases: Sequence[str] = ()):
    """Decorator: register ``build`` as the builder of query-variation family ``key``.

    The builder takes keyword options (``encoder``, the system's
    :class:`~robustir.encode.Encoder` or ``None``; ``device``) and ignores those it does not
    need; it returns the family's generators (:class:`QueryGenerator`, one candidate each per
    query) and the parameters recorded as provenance. Every experiment, the CLI (``robustir
    vary --family key``) and grids then accept the family.

    Raises:
        ValueError: ``key`` or an alias is registered already for another family.
    """
    def decorate(build):
        names = {key.lower(), display_name.lower(), *(a.lower() for a in aliases)}
        taken = {n: _ALIASES[n] for n in names if _ALIASES.get(n, key) != key}
        if taken:
            raise ValueError(f"query-variation family name(s) {sorted(taken)} are taken by "
                             f"{sorted(set(taken.values()))}")
        FAMILIES[key] = FamilyDefinition(key, display_name, build, tuple(aliases))
        FAMILY_NAMES[key] = display_name
        _ALIASES.update({name: key for name in names})
        return build

    return decorate


@register_family("mispelling", "Misspelling", aliases=("misspelling",))
def _misspelling(**options):
    return misspelling_generators(), {"pct_words_to_swap": PCT_WORDS_TO_SWAP, "min_word_length": 3,
                                      "stopword_check": "case-sensitive"}


@register_family("ordering", "Reordering", aliases=("reordering",))
def _reordering(**options):
    return reordering_generators(), {"pct_words_to_swap": PCT_WORDS_TO_SWAP}


def _minilm(encoder, device: str):
    """The family's sentence encoder: ``encoder`` when given, else all-MiniLM-L6-v2."""
    if encoder is not None:
        return encoder
    from robustir.encode import Encoder
    from robustir.models import get_model_spec

    return Encoder(get_model_spec("minilm"), device=device, progress=False)


@register_family("synonym", "Synonymizing", aliases=("synonymizing",))
def _synonymizing(*, encoder=None, device: str = "cpu", **options):
    from robustir.perturb import synonyms

    encoder = _minilm(encoder, device)
    embedding = synonyms.WordEmbedding.from_encoder(encoder)
    generators = synonyms.synonym_generators(lambda texts: encoder.encode_texts(list(texts)), embedding)
    return generators, {
        "pct_words_to_swap": PCT_WORDS_TO_SWAP,
        "sentence_encoder": f"{encoder.spec.hf_id} (deviation: the study uses the Universal Sentence Encoder)",
        "sentence_similarity_threshold": synonyms.SENTENCE_SIMILARITY_THRESHOLD,
        "sentence_window_size": synonyms.SENTENCE_WINDOW_SIZE,
        "word_embedding": f"{embedding.source} (deviation: the study uses counter-fitted GloVe)",
        "embedding_max_candidates": synonyms.EMBEDDING_MAX_CANDIDATES,
        "embedding_min_cos_sim": synonyms.EMBEDDING_MIN_COS_SIM,
        "wordnet": "3.0",
    }


@register_family("paraphrase", "Paraphrasing", aliases=("paraphrasing",))
def _paraphrasing(*, encoder=None, device: str = "cpu", **options):
    """The study's back-translation and T5 generators when their models load, else the offline
    substitute :class:`~robustir.perturb.llm_paraphrase.LLMParaphrase` (a recorded deviation)."""
    from robustir.perturb import llm_paraphrase, paraphrase

    try:
        return paraphrase.paraphrasing_generators(device=device), {
            "generators_used": "study",
            "back_translation_model": paraphrase.BACK_TRANSLATION_MODEL,
            "paraphrase_model": paraphrase.PARAPHRASE_MODEL,
            "num_beams": paraphrase.PARAPHRASE_NUM_BEAMS,
            "max_length": paraphrase.PARAPHRASE_MAX_LENGTH,
        }
    except FamilyUnavailable as unavailable:
        study_reason = unavailable.reason
    log.warning("paraphrase: the study's generators are unavailable (%s); using the offline "
                "substitute %s (a deviation)", study_reason, llm_paraphrase.LLMParaphrase.name)
    encoder = _minilm(encoder, device)
    generator = llm_paraphrase.llm_paraphraser(
        lambda texts: encoder.encode_texts(list(texts)), device=device)
    return (generator,), {
        "generators_used": "substitute (deviation: the study uses M2M100 back-translation and a T5 "
                           "paraphraser)",
        "study_generators_unavailable": study_reason,
        "sentence_encoder": encoder.spec.hf_id,
        **generator.parameters(),
    }


@register_family("naturality", "Naturalizing", aliases=("naturalizing",))
def _naturalizing(**options):
    return naturalizing_generators(), {}


def resolve_family(name: str) -> str:
    """The code key of a family given its key or display name, case-insensitively.

    Raises:
        ValueError: Unknown family; the message lists the known ones.

    Used in the book chapter "Query variations".
    """
    key = _ALIASES.get(name.strip().lower())
    if key is None:
        raise ValueError(f"unknown query-variation family {name!r}; choose one of {', '.join(FAMILY_NAMES)}")
    return key


def build_family(name: str, *, encoder=None, device: str = "cpu") -> Family:
    """Build a family's generators (chapter "Query variations").

    Args:
        name: Family key or display name.
        encoder: A ``robustir.encode.Encoder`` for the synonym family's sentence-similarity
            constraint and word vectors and the substitute paraphraser's cosine filter (default:
            all-MiniLM-L6-v2, loaded here).
        device: Torch device for the paraphrasing models.

    Raises:
        FamilyUnavailable: The family's resources are missing (WordNet not installed; neither
            the study's paraphrasing models nor the substitute's SmolLM2 weights).
    """
    definition = FAMILIES[resolve_family(name)]
    generators, parameters = definition.build(encoder=encoder, device=device)
    parameters = {**parameters, "stopwords": STOPWORDS_SOURCE}
    return Family(definition.key, definition.display_name, tuple(generators), parameters)


@dataclass(frozen=True)
class FamilyStatus:
    """Whether a family can be computed here, and if not, why.

    Attributes:
        family: Code key.
        available: ``True`` when its generators could be built.
        reason: Empty when available; otherwise what is missing and how to get it.

    Used in the book chapter "Query variations".
    """

    family: str
    available: bool
    reason: str = ""


def family_status(name: str, **build_options) -> FamilyStatus:
    """Try to build a family and report the outcome (chapter "Query variations")."""
    key = resolve_family(name)
    try:
        build_family(key, **build_options)
    except FamilyUnavailable as error:
        return FamilyStatus(key, False, error.reason)
    return FamilyStatus(key, True)


@dataclass(frozen=True)
class QueryVariation:
    """One perturbed query.

    Attributes:
        query_id: The query's id.
        text: The variant (may equal ``original``; may be empty after naturalizing).
        original: The clean query.
        generator: Name of the generator whose candidate was chosen.
        changed: ``text != original``.

    Used in the book chapter "Query variations".
    """

    query_id: str
    text: str
    original: str
    generator: str
    changed: bool


@dataclass
class VariationSet:
    """The variants of one (dataset, split, family, seed), with provenance.

    Attributes:
        variations: Query id → variant, in the query set's order.
        provenance: Family, seed, RNG scope, generators, parameters, library version, counts.

    Used in the book chapter "Query variations".
    """

    variations: dict[str, QueryVariation]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def queries(self) -> dict[str, str]:
        """The perturbed queries as BEIR ``{qid: text}``."""
        return {qid: v.text for qid, v in self.variations.items()}

    @property
    def unchanged_fraction(self) -> float:
        """Share of queries whose variant equals the original (in [0, 1])."""
        return sum(not v.changed for v in self.variations.values()) / max(len(self.variations), 1)

    def save(self, path: str | Path) -> Path:
        """Write JSONL ``{"_id", "text", "original", "generator", "changed"}`` and a provenance sidecar.

        Returns:
            The sidecar's path, ``<path without suffix>.provenance.json``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps({"_id": v.query_id, "text": v.text, "original": v.original,
                        "generator": v.generator, "changed": v.changed}, ensure_ascii=False)
            for v in self.variations.values()
        ]
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        sidecar = provenance_path(path)
        atomic_write_text(sidecar, json.dumps(self.provenance, indent=2, sort_keys=True) + "\n")
        return sidecar

    @classmethod
    def load(cls, path: str | Path) -> VariationSet:
        """Read a set written by :meth:`save`.

        Raises:
            ValueError: A line is not JSON or lacks a field; the message names file, line and field.
            FileNotFoundError: The file or its provenance sidecar is missing.
        """
        path = Path(path)
        variations: dict[str, QueryVariation] = {}
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error
                for name, kind in (("_id", str), ("text", str), ("original", str),
                                   ("generator", str), ("changed", bool)):
                    if not isinstance(record.get(name), kind):
                        raise ValueError(
                            f"{path}:{number}: field {name!r} missing or not a {kind.__name__}; "
                            "regenerate the file with `robustir vary`"
                        )
                variations[record["_id"]] = QueryVariation(
                    record["_id"], record["text"], record["original"], record["generator"], record["changed"]
                )
        provenance = json.loads(provenance_path(path).read_text(encoding="utf-8"))
        return cls(variations, provenance)


def provenance_path(path: str | Path) -> Path:
    """The provenance sidecar written beside a variant file.

    Used in the book chapter "Query variations".
    """
    path = Path(path)
    return path.with_name(path.stem + ".provenance.json")


def query_rng(seed: int, dataset: str, query_id: str) -> random.Random:
    """The per-query generator of ``rng_scope="query"``: seeded by SHA-256 of (seed, dataset, qid).

    Used in the book chapter "Query variations".
    """
    digest = hashlib.sha256(f"{seed}\x1f{dataset}\x1f{query_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _validate_queries(queries: Mapping[str, str]) -> None:
    for query_id, text in queries.items():
        if not isinstance(text, str):
            raise TypeError(f"query {query_id!r}: text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(
                f"query {query_id!r} is empty; remove it from the query set or give it text "
                "before generating variations"
            )


def _draw(
    queries: Mapping[str, str], family: Family, seed: int, dataset: str, rng_scope: str
) -> tuple[dict[str, QueryVariation], Counter, Counter]:
    """One pass of the generators over the queries: the variants, the count of each generator
    chosen, and the count of each generator's fall-backs to the unchanged query."""
    stream = random.Random(seed)
    variations: dict[str, QueryVariation] = {}
    chosen, fallbacks = Counter(), Counter()
    for query_id, original in queries.items():
        rng = stream if rng_scope == "stream" else query_rng(seed, dataset, query_id)
        candidates = []
        for generator in family.generators:
            candidates.append((generator.name, generator(original, rng)))
            fallbacks[generator.name] += generator.fell_back
        name, text = rng.choice(candidates)
        chosen[name] += 1
        variations[query_id] = QueryVariation(query_id, text, original, name, text != original)
    return variations, chosen, fallbacks


def generate_variations(
    queries: Mapping[str, str],
    family: Family | str,
    seed: int,
    *,
    dataset: str,
    split: str = "test",
    rng_scope: str = "stream",
) -> VariationSet:
    """One variant per query for a family and a seed (chapter "Query variations").

    Args:
        queries: ``{qid: text}`` in the query set's order (the order matters for
            ``rng_scope="stream"``).
        family: A built :class:`Family`, or a name to build with defaults.
        seed: The seed (the study's: :data:`STUDY_SEEDS`).
        dataset: Dataset name, recorded and used by ``rng_scope="query"``.
        split: Split name, recorded.
        rng_scope: ``"stream"`` (the study's) or ``"query"`` (order-independent); see the module.

    Returns:
        The variants and their provenance.

    Raises:
        ValueError: An empty query, or an unknown ``rng_scope``.
        FamilyUnavailable: The family cannot be built here.
    """
    if rng_scope not in RNG_SCOPES:
        raise ValueError(f"rng_scope must be one of {RNG_SCOPES}, got {rng_scope!r}")
    _validate_queries(queries)
    if isinstance(family, str):
        family = build_family(family)
    for generator in family.generators:
        generator.prepare(list(queries.values()))
    with contextlib.ExitStack() as rehearsals:
        # a list, not a generator: every generator's context is entered, not only up to the first
        if any([rehearsals.enter_context(g.rehearsal()) for g in family.generators]):
            _draw(queries, family, seed, dataset, rng_scope)  # gathers the work to batch, then discarded
    variations, chosen, fallbacks = _draw(queries, family, seed, dataset, rng_scope)
    result = VariationSet(variations)
    empty = sum(not v.text.strip() for v in variations.values())
    if empty:
        log.warning("%s/%s: %d variants are empty (encoded as [PAD])", dataset, family.key, empty)
    from robustir import __version__

    result.provenance = {
        "dataset": dataset,
        "split": split,
        "family": family.key,
        "family_display_name": family.display_name,
        "seed": seed,
        "rng_scope": rng_scope,
        "generators": [g.name for g in family.generators],
        "generators_revision": GENERATORS_REVISION,
        "parameters": family.parameters,
        "robustir_version": __version__,
        "n_queries": len(variations),
        "n_changed": sum(v.changed for v in variations.values()),
        "unchanged_fraction": result.unchanged_fraction,
        "n_empty": empty,
        "chosen_per_generator": dict(chosen),
        # queries whose candidate is the unchanged query because the generator's own filter
        # rejected every attempt (the substitute paraphraser), per generator
        "fallbacks_per_generator": {g.name: fallbacks[g.name] for g in family.generators},
    }
    log.info("%s/%s seed %d: %d of %d queries changed", dataset, family.key, seed,
             result.provenance["n_changed"], len(variations))
    return result


__all__ = [
    "FAMILIES",
    "FAMILY_NAMES",
    "FamilyDefinition",
    "GENERATORS_REVISION",
    "RNG_SCOPES",
    "STUDY_SEEDS",
    "FamilyStatus",
    "QueryVariation",
    "VariationSet",
    "build_family",
    "family_status",
    "generate_variations",
    "provenance_path",
    "query_rng",
    "register_family",
    "resolve_family",
]
