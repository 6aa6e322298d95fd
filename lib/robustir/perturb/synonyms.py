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

import contextlib
import logging
import math
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from robustir.perturb.augment import Candidate, WordTransformation
from robustir.perturb.family import FamilyUnavailable, batched_rehearsal
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


@lru_cache(maxsize=1)
def english_wordnet():
    """NLTK's reader of the WordNet found under ``NLTK_DATA``, for English lemmas only.

    NLTK's own loader (``nltk.corpus.wordnet``) also maps every sense of WordNet 3.0 onto the
    loaded version for its multilingual lookups, even when the loaded version is 3.0 itself:
    about 3.5 s per process that the synonym family, which reads English lemmas only, skips.

    Raises:
        FamilyUnavailable: WordNet is not installed where NLTK looks.

    Used in the book chapter "Query variations".
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNet(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return None  # the multilingual sense mapping, unused here

    try:
        root = nltk.data.find("corpora/wordnet")
    except LookupError as error:
        raise FamilyUnavailable("synonym", _WORDNET_HELP) from error
    with warnings.catch_warnings():  # "multilingual functions are not available": as intended
        warnings.simplefilter("ignore", UserWarning)
        return EnglishWordNet(root, None)


@lru_cache(maxsize=65536)
def _wordnet_synonyms(word: str) -> tuple[str, ...]:
    synsets = english_wordnet().synsets(word)
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


class RememberedSentences:
    """A sentence encoder that remembers the vector of every text it has encoded.

    The similarity constraint compares the original window with each candidate's, and one
    query's windows recur across steps and seeds: each distinct text is encoded once, in one
    batch per call. Vectors are kept up to ``max_texts`` texts (then forgotten all at once).

    Used in the book chapter "Query variations".
    """

    def __init__(self, encode: SentenceEncoder, max_texts: int = 200_000):
        self.encode = encode
        self.max_texts = max_texts
        self._vectors: dict[str, np.ndarray] = {}
        self._noted: dict[str, None] | None = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if self._noted is not None:  # a rehearsal: one vector for all, so every cosine is 1
            self._noted.update(dict.fromkeys(missing))
            return np.ones((len(texts), 1), dtype=np.float32)
        if missing:
            if len(self._vectors) + len(missing) > self.max_texts:
                self._vectors.clear()
            self._vectors.update(zip(missing, self.encode(missing)))
        return np.stack([self._vectors[t] for t in texts])

    def rehearsal(self) -> contextlib.AbstractContextManager[bool]:
        """Within: note the texts asked for and answer as if all were identical (every candidate
        passes the similarity constraint); on exit, encode the noted texts in one batch.

        A pass over the queries made within, then the same pass again, encodes in one batch what
        the second pass would have encoded call by call: all of it when each step's first-drawn
        candidate passes, as most do; the second pass encodes the rest itself.
        """
        return batched_rehearsal(self, self)


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

    @cached_property
    def _index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.words)}

    @cached_property
    def _found(self) -> dict[tuple[str, int], list[tuple[str, float]]]:
        return {}

    def neighbours(self, word: str, count: int) -> list[tuple[str, float]]:
        """The ``count`` nearest other words by cosine, with their cosines; ``[]`` if unknown."""
        if (word, count) not in self._found:
            self.find_neighbours([word], count)
        return self._found[(word, count)]

    def find_neighbours(self, words: Iterable[str], count: int, chunk: int = 512) -> None:
        """Look up the neighbours of many words at once (one matrix product per ``chunk`` words);
        :meth:`neighbours` then answers from memory."""
        todo = [w for w in dict.fromkeys(words) if (w, count) not in self._found]
        for word in todo:
            if word not in self._index:
                self._found[(word, count)] = []
        todo = [w for w in todo if w in self._index]
        depth = min(count, len(self.words) - 1)
        for start in range(0, len(todo), chunk):
            batch = todo[start : start + chunk]
            rows = np.array([self._index[w] for w in batch])
            cosines = self.vectors[rows] @ self.vectors.T
            cosines[np.arange(len(batch)), rows] = -np.inf  # not a neighbour of itself
            # the `depth` best (never the word itself), in vocabulary order so that ties keep it
            top = np.sort(np.argpartition(-cosines, depth, axis=1)[:, :depth], axis=1)
            for word, row, candidates in zip(batch, cosines, top):
                candidates = candidates[np.argsort(-row[candidates], kind="stable")]
                self._found[(word, count)] = [(self.words[i], float(row[i])) for i in candidates]


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

    def rehearsal(self) -> contextlib.AbstractContextManager[bool]:
        """The constraint's encoder batches the windows of a rehearsal (:class:`RememberedSentences`)."""
        encode = getattr(self.post_constraint, "encode", None)
        return encode.rehearsal() if isinstance(encode, RememberedSentences) else super().rehearsal()

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

    def prepare(self, texts: Sequence[str]) -> None:
        """Find the neighbours of every word of ``texts`` in a few matrix products."""
        words = (w.text.lower() for text in texts for w in query_words(text) if self.modifiable(w))
        self.embedding.find_neighbours(words, self.max_candidates)

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
    try:
        version = english_wordnet().get_version()
    except (LookupError, OSError) as error:
        raise FamilyUnavailable("synonym", f"{_WORDNET_HELP} ({error})") from error
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
    similarity = None if sentence_encoder is None else SentenceSimilarity(RememberedSentences(sentence_encoder))
    if similarity is None:
        log.warning("synonym family without a sentence-similarity constraint (a deviation)")
    return EmbeddingNeighbourSwap(embedding), WordNetSwap(similarity)
