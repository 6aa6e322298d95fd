"""The word-level augmenter of the study (TextAttack ``Augmenter`` semantics, protocol §4.2).

A :class:`WordTransformation` proposes edits of single words (or, for reordering, of a pair);
:func:`augment` applies the study's loop to one query:

1. every *modifiable* word (not excluded by the pre-transformation constraints: stop-words,
   minimum length) yields its candidate edits;
2. a word-swap candidate that replaces a word by itself is dropped (TextAttack's ``WordSwap``);
   a reordering swap of two identical words is kept (``WordInnerSwapRandom`` has no such
   check), so it can be chosen and leave the query unchanged;
3. the post-transformation constraint (if any) filters the rest;
4. one survivor is chosen uniformly at random; the words it changed count as modified, and
   every step counts at least one word, as TextAttack's ``words_swapped`` does;

repeated until ``max(floor(pct_words_to_swap × n_words), 1)`` words have changed — one word for
queries under 20 words. When nothing survives, the query comes back unchanged.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from robustir.perturb.family import QueryGenerator
from robustir.perturb.stopwords import ENGLISH_STOPWORD_SET
from robustir.perturb.words import Word, is_single_word, query_words, replace_words

#: TextAttack's default share of words to change (protocol §4.2).
PCT_WORDS_TO_SWAP = 0.1

#: Candidates a lazy post-constraint checks in its first call; each later call checks twice as
#: many (see :func:`augment`). Most candidates pass, so the first call usually decides.
_FIRST_CONSTRAINT_BATCH = 1


@dataclass(frozen=True)
class Candidate:
    """A candidate query produced by one step of :func:`augment`.

    Attributes:
        text: The edited query.
        indices: The word indices the step changed.

    Used in the book chapter "Query variations".
    """

    text: str
    indices: tuple[int, ...]


#: Post-transformation constraint: (original query, candidates) → keep flag per candidate.
PostConstraint = Callable[[str, Sequence[Candidate]], Sequence[bool]]


class WordTransformation(QueryGenerator):
    """A word-level generator: which words it may edit and which edits it proposes.

    Subclasses set :attr:`name` and implement :meth:`edits`. The defaults are the
    misspelling constraints of the study: stop-words are skipped (case-sensitively, as
    TextAttack's ``StopwordModification`` does: a capitalised "The" is editable) and words
    shorter than ``min_word_length`` characters are never edited.

    Attributes:
        name: Generator name recorded with every variant.
        skip_stopwords: Apply the stop-word constraint.
        min_word_length: Minimum word length in characters (0 disables the constraint).
        drop_identity_edits: Drop an edit that rewrites its words as themselves (TextAttack's
            ``WordSwap`` drops a replacement equal to the word; ``WordInnerSwapRandom`` keeps
            a swap of two identical words).
        post_constraint: Optional filter applied to the candidates of one step.

    Used in the book chapter "Query variations".
    """

    name: str = "word_transformation"
    skip_stopwords: bool = True
    min_word_length: int = 3
    drop_identity_edits: bool = True
    post_constraint: PostConstraint | None = None

    def modifiable(self, word: Word) -> bool:
        """Whether the pre-transformation constraints allow editing ``word``."""
        if self.skip_stopwords and word.text in ENGLISH_STOPWORD_SET:
            return False
        return len(word.text) >= self.min_word_length

    def edits(self, words: Sequence[Word], index: int, rng: random.Random) -> list[dict[int, str]]:
        """Candidate edits at word ``index``: each maps word indices to replacement words."""
        raise NotImplementedError

    def __call__(self, text: str, rng: random.Random) -> str:
        """This generator's candidate for ``text``: :func:`augment` with its defaults."""
        return augment(text, self, rng)


def augment(
    text: str,
    transformation: WordTransformation,
    rng: random.Random,
    *,
    pct_words_to_swap: float = PCT_WORDS_TO_SWAP,
) -> str:
    """Apply one word-level generator to one query with the study's augmenter loop.

    A step's survivor is drawn uniformly from the candidates that pass the post-constraint.
    With a post-constraint the candidates are visited in a uniformly random order and checked
    in batches of 1, 2, 4, … until one passes; the first passing one of a uniform permutation
    is a uniform draw from the survivors, so this equals "filter all, then choose" in
    distribution while sparing the sentence encoder on long queries. The batch sizes change
    only the work, never the survivor. Later steps may re-edit a word (no
    ``RepeatModification``, as in the study).

    Args:
        text: The query.
        transformation: The generator.
        rng: Random source for the generator's draws and the choice of the survivor.
        pct_words_to_swap: Share of words to change; at least one word changes.

    Returns:
        The perturbed query; ``text`` itself when no candidate survives, or when every chosen
        candidate was a swap of two identical words.

    Used in the book chapter "Query variations".
    """
    original = text
    words = query_words(text)
    words_to_swap = max(int(pct_words_to_swap * len(words)), 1)
    modified: set[int] = set()
    words_swapped = 0
    while words_swapped < words_to_swap:
        edits = []
        for index, word in enumerate(words):
            if not transformation.modifiable(word):
                continue
            for edit in transformation.edits(words, index, rng):
                unchanged = all(words[i].text == new for i, new in edit.items())
                if unchanged and transformation.drop_identity_edits:
                    continue
                if all(is_single_word(new) for new in edit.values()):
                    edits.append(edit)
        chosen = _choose_survivor(original, text, words, edits, transformation.post_constraint, rng)
        if chosen is None:
            break
        text, words = chosen.text, query_words(chosen.text)
        modified.update(chosen.indices)
        words_swapped = max(len(modified), words_swapped + 1)
    return text


def _choose_survivor(
    original: str,
    text: str,
    words: list[Word],
    edits: list[dict[int, str]],
    constraint: PostConstraint | None,
    rng: random.Random,
) -> Candidate | None:
    """Draw one edit uniformly among those whose query satisfies ``constraint``.

    Candidate queries are only built for the edits drawn or checked: a long query has
    thousands of candidate edits per step.
    """

    def candidate(edit: dict[int, str]) -> Candidate:
        changed = (i for i, new in edit.items() if new != words[i].text)
        return Candidate(replace_words(text, words, edit), tuple(sorted(changed)))

    if not edits:
        return None
    if constraint is None:
        return candidate(rng.choice(edits))
    order = rng.sample(edits, len(edits))
    start, size = 0, _FIRST_CONSTRAINT_BATCH
    while start < len(order):
        batch = [candidate(edit) for edit in order[start : start + size]]
        for chosen, keep in zip(batch, constraint(original, batch)):
            if keep:
                return chosen
        start, size = start + size, 2 * size
    return None
