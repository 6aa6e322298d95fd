"""The reordering family (``ordering``): swap two words (protocol §4.3).

TextAttack's ``WordInnerSwapRandom`` with no constraints: for every word index i it draws one
partner j ≠ i uniformly and proposes the query with words i and j exchanged; the augmenter then
keeps one of these n proposals uniformly. As in TextAttack 0.3.10, a swap of two identical words
is a proposal like any other: chosen, it changes no word, ends the step and leaves the query
unchanged. A query of n words with one word written twice therefore stays unchanged with
probability 2 / (n (n − 1)) (1/21 for 7 words). A one-word query has no proposal, so it stays
unchanged too.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from robustir.perturb.augment import WordTransformation
from robustir.perturb.words import Word


class WordInnerSwap(WordTransformation):
    """Exchange the word at an index with a uniformly drawn other word.

    Used in the book chapter "Query variations".
    """

    name = "word_inner_swap"
    skip_stopwords = False
    min_word_length = 0
    drop_identity_edits = False

    def edits(self, words: Sequence[Word], index: int, rng: random.Random) -> list[dict[int, str]]:
        if len(words) < 2:
            return []
        partner = rng.choice([j for j in range(len(words)) if j != index])
        return [{index: words[partner].text, partner: words[index].text}]


def reordering_generators() -> tuple[WordInnerSwap, ...]:
    """The one generator of the reordering family (chapter "Query variations")."""
    return (WordInnerSwap(),)
