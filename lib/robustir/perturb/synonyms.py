"""The synonymizing family (``synonym``): WordNet swap and embedding-neighbour swap (protocol §4.3).

Two documented deviations, because the study's resources are not obtainable offline:

* **Sentence-similarity constraint.** The study filters WordNet swaps with the Universal
  Sentence Encoder (cosine ≥ 0.7 between the 15-word windows around the swapped word, skipped
  for candidates under 15 words). Here the same rule uses all-MiniLM-L6-v2 sentence vectors
  (``robustir.encode.Encoder(get_model_spec("minilm"))``). The threshold keeps the study's 0.7,
  which was calibrated for USE, not MiniLM. Queries under 15 words are unaffected, as in the
  study.
* **Embedding-neighbour swap.** The study's ``WordSwapEmbedding`` takes the 15 nearest
  neighbours in counter-fitted GloVe (paragram-cf) and keeps those with word-vector cosine
  ≥ 0.8. Here the vectors are MiniLM's input word-piece embeddings, restricted to whole
  lower-case alphabetic word pieces; neighbours are ranked by cosine. Counter-fitting pushes
  antonyms apart and these vectors were not counter-fitted, so a neighbour can be an antonym
  or an inflection ("increase" → "increases", "decrease"); at the 0.8 threshold mostly
  inflections pass.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from robustir.perturb.augment import Candidate, WordTransformation
from robustir.perturb.family import FamilyUnavailable
from robustir.perturb.words import Word, is_single_word, query_words

log = logging.getLogger(__name__)

#: Study defaults (TextAttack): USE threshold and window, embedding neighbours and cosine.
SENTENCE_SIMILARITY_THRESHOLD = 0.7
SENTENCE_WINDOW_SIZE = 15
EMBEDDING_MAX_CANDIDATES = 15
EMBEDDING_MIN_COS_SIM = 0.8

#: Texts → unit-norm sentence vectors ``(n, d)``.
SentenceEncoder = Callable[[Sequence[str]], np.ndarray]

_WORDNET_HELP = (
    "WordNet 3.0 for NLTK was not found: run `scripts/fetch-wordnet.sh build/nltk_data` and set "
    "NLTK_DATA to that folder (environment.md §8.1)"
)


def wordnet_synonyms(word: str) -> tuple[str, ...]:
    """WordNet 3.0 synonyms of a word, as TextAttack's ``WordSwapWordNet`` lists them.

    All lemma names of all synsets of ``word`` (any part of speech; NLTK lower-cases and
    lemmatises the lookup), except ``word`` itself and multi-word lemmas. Sorted, so that a
    seed gives the same draw in every process (TextAttack's set order varies with
    ``PYTHONHASHSEED``). Used in the chapter "Query variations".

    Raises:
        FamilyUnavailable: WordNet is not installed where NLTK looks.
    """
    return _wordnet_synonyms(word)


@lru_cache(maxsize=65536)
def _wordnet_synonyms(word: str) -> tuple[str, ...]:
    from nltk.corpus import wordnet

    try:
        synsets = wordnet.synsets(word)
    except LookupError as error:
        raise FamilyUnavailable("synonym", _WORDNET_HELP) from error
    names = {name for synset in synsets for name in synset.lemma_names()}
    return tuple(sorted(n for n in names if n != word and "_" not in n and is_single_word(n)))


def restore_case(replacement: str, original: str) -> str:
    """Give ``replacement`` the case pattern of ``original`` (lower, UPPER or Capitalised).

    Used in the book chapter "Query variations".
    """
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def text_window(words: Sequence[Word], text: str, index: int, size: int) -> str:
    """The span of ``text`` covering ``size`` words centred on word ``index``.

    Near either end the window is shifted to stay inside the query (TextAttack's
    ``text_window_around_index`` rule): it starts at word ``index − ceil((size−1)/2)``.

    Used in the book chapter "Query variations".
    """
    half = (size - 1) / 2
    if index - half < 0:
        first, last = 0, min(size - 1, len(words) - 1)
    elif index + half >= len(words):
        first, last = max(0, len(words) - size), len(words) - 1
    else:
        first, last = index - math.ceil(half), index + math.floor(half)
    return text[words[first].start : words[last].end]


@dataclass(frozen=True)
class SentenceSimilarity:
    """The study's sentence-similarity post-constraint with a substitute encoder.

    Attributes:
        encode: Sentence encoder (unit vectors); MiniLM here, USE in the study.
        threshold: Minimum cosine between the original and the candidate windows.
        window_size: Words per window; candidates with fewer words always pass.

    Used in the book chapter "Query variations".
    """

    encode: SentenceEncoder
    threshold: float = SENTENCE_SIMILARITY_THRESHOLD
    window_size: int = SENTENCE_WINDOW_SIZE

    def __call__(self, original: str, candidates: Sequence[Candidate]) -> list[bool]:
        """Keep flags for ``candidates`` compared against the ``original`` query."""
        original_words = query_words(original)
        keep = [True] * len(candidates)
        pairs = []
        for position, candidate in enumerate(candidates):
            words = query_words(candidate.text)
            if len(words) < self.window_size:
                continue
            index = min(candidate.indices)
            pairs.append(
                (
                    position,
                    text_window(original_words, original, index, self.window_size),
                    text_window(words, candidate.text, index, self.window_size),
                )
            )
        if pairs:
            vectors = self.encode([p[1] for p in pairs] + [p[2] for p in pairs])
            first, second = vectors[: len(pairs)], vectors[len(pairs) :]
            cosines = np.sum(first * second, axis=1)
            for (position, _, _), cosine in zip(pairs, cosines):
                keep[position] = bool(cosine >= self.threshold)
        return keep


@dataclass(frozen=True, eq=False)
class WordEmbedding:
    """A static word-vector table for the embedding-neighbour swap.

    Attributes:
        words: The vocabulary (lower case, one word each).
        vectors: Unit-norm float32 vectors, one row per word.
        source: Where the vectors come from (recorded as provenance).

    Used in the book chapter "Query variations".
    """

    words: tuple[str, ...]
    vectors: np.ndarray
    source: str

    @classmethod
    def from_encoder(cls, encoder) -> WordEmbedding:
        """The input word-piece embeddings of a ``robustir.encode.Encoder``'s model.

        Keeps only whole, lower-case, alphabetic vocabulary entries (no ``##`` pieces, no
        special or ``[unused]`` tokens).
        """
        vocabulary = encoder.tokenizer.get_vocab()
        entries = sorted((i, t) for t, i in vocabulary.items() if t.isalpha() and t.islower())
        table = encoder.input_embeddings.weight.detach().float().cpu().numpy()
        vectors = table[[i for i, _ in entries]].astype(np.float32)
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        source = f"{encoder.spec.hf_id} input embeddings ({len(entries)} whole words)"
        return cls(tuple(t for _, t in entries), vectors, source)

    def neighbours(self, word: str, count: int) -> list[tuple[str, float]]:
        """The ``count`` nearest other words by cosine, with their cosines; ``[]`` if unknown."""
        return _neighbours(self, word, count)


@lru_cache(maxsize=65536)
def _neighbours(table: WordEmbedding, word: str, count: int) -> list[tuple[str, float]]:
    index = _word_index(table).get(word)
    if index is None:
        return []
    cosines = table.vectors @ table.vectors[index]
    cosines[index] = -np.inf
    top = np.argpartition(-cosines, min(count, len(cosines) - 1))[:count]
    top = top[np.argsort(-cosines[top], kind="stable")]
    return [(table.words[i], float(cosines[i])) for i in top]


@lru_cache(maxsize=8)
def _word_index(table: WordEmbedding) -> dict[str, int]:
    return {word: i for i, word in enumerate(table.words)}


class WordNetSwap(WordTransformation):
    """Replace a non-stop-word by one of its WordNet synonyms (``WordSwapWordNet``).

    Args:
        sentence_similarity: The post-constraint (``None`` applies none, which for queries of
            15 or more words is a further deviation and is recorded as such).

    Used in the book chapter "Query variations".
    """

    name = "wordnet_swap"
    min_word_length = 0

    def __init__(self, sentence_similarity: SentenceSimilarity | None):
        self.post_constraint = sentence_similarity

    def edits(self, words: Sequence[Word], index: int, rng: random.Random) -> list[dict[int, str]]:
        return [{index: synonym} for synonym in wordnet_synonyms(words[index].text)]


class EmbeddingNeighbourSwap(WordTransformation):
    """Replace a non-stop-word by a near neighbour in a word-vector table (``WordSwapEmbedding``).

    Args:
        embedding: The word vectors.
        max_candidates: Neighbours considered per word.
        min_cos_sim: Minimum word-vector cosine (the ``WordEmbeddingDistance`` constraint).

    Used in the book chapter "Query variations".
    """

    name = "embedding_swap"
    min_word_length = 0

    def __init__(
        self,
        embedding: WordEmbedding,
        max_candidates: int = EMBEDDING_MAX_CANDIDATES,
        min_cos_sim: float = EMBEDDING_MIN_COS_SIM,
    ):
        self.embedding = embedding
        self.max_candidates = max_candidates
        self.min_cos_sim = min_cos_sim

    def edits(self, words: Sequence[Word], index: int, rng: random.Random) -> list[dict[int, str]]:
        word = words[index].text
        return [
            {index: restore_case(neighbour, word)}
            for neighbour, cosine in self.embedding.neighbours(word.lower(), self.max_candidates)
            if cosine >= self.min_cos_sim
        ]


def check_wordnet() -> None:
    """Raise :class:`FamilyUnavailable` unless NLTK can read WordNet 3.0.

    Used in the book chapter "Query variations".
    """
    from nltk.corpus import wordnet

    try:
        version = wordnet.get_version()
    except LookupError as error:
        raise FamilyUnavailable("synonym", _WORDNET_HELP) from error
    if version != "3.0":
        raise FamilyUnavailable("synonym", f"NLTK found WordNet {version}; the study uses 3.0")


def synonym_generators(
    sentence_encoder: SentenceEncoder | None,
    embedding: WordEmbedding,
) -> tuple[EmbeddingNeighbourSwap, WordNetSwap]:
    """The two generators of the synonymizing family, in the study's order (chapter "Query variations").

    Args:
        sentence_encoder: Encoder for the sentence-similarity constraint (``None``: no constraint).
        embedding: Word vectors for the embedding-neighbour swap.

    Raises:
        FamilyUnavailable: WordNet is missing.
    """
    check_wordnet()
    similarity = SentenceSimilarity(sentence_encoder) if sentence_encoder is not None else None
    if similarity is None:
        log.warning("synonym family without a sentence-similarity constraint (a deviation)")
    return EmbeddingNeighbourSwap(embedding), WordNetSwap(similarity)
