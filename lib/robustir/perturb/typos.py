"""The six misspelling generators of the study (family ``mispelling``, protocol §4.3).

Each edits one character of a chosen word w (|w| ≥ 3, not a stop-word): Penha et al.'s
neighbouring-character swap, random substitution and QWERTY-neighbour substitution, and the
DL-Typo additions of Zhuang & Zuccon (deletion, insertion, and the keyboard substitution that
falls back to a random key). The typo module is missing from the published code (protocol
§8.1 row 1), so these are re-implementations of the definitions, drawing letters from
``string.ascii_letters``, with TextAttack 0.3.10's semantics (the study's pin): every eligible
word proposes at most one edited form, a form equal to the word is discarded, and a word whose
drawn character has no keyboard neighbour proposes nothing while the other words still do.

Randomness: every draw comes from the ``random.Random`` passed in. The study split its draws
between NumPy's and Python's global generators; since its typo code is not published, its
exact draws cannot be replayed, and one explicit stream gives the same distributions.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence

from robustir.perturb.augment import WordTransformation
from robustir.perturb.words import Word

#: TextAttack's QWERTY adjacency table (lower case); protocol §4.3.
QWERTY_NEIGHBOURS: dict[str, str] = {
    "q": "was", "w": "qeasd", "e": "wsdfr", "r": "edfgt", "t": "rfghy", "y": "tghju",
    "u": "yhjki", "i": "ujklo", "o": "iklp", "p": "ol", "a": "qwszx", "s": "qweadzx",
    "d": "werfcxs", "f": "ertgvcd", "g": "rtyhbvd", "h": "tyugjbn", "j": "yuikmnh",
    "k": "uiolmj", "l": "iopk", "z": "asx", "x": "sdzc", "c": "xdfv", "v": "cfgb",
    "b": "vghn", "n": "bhjm", "m": "njk",
}  # fmt: skip


def keyboard_neighbours(character: str) -> str:
    """Keyboard neighbours of a character; upper case maps to upper case, others to ``""``.

    Used in the book chapter "Query variations".
    """
    neighbours = QWERTY_NEIGHBOURS.get(character.lower(), "")
    return neighbours.upper() if character.isupper() else neighbours


class _CharacterEdit(WordTransformation):
    """A typo generator: one random edit of every modifiable word, one candidate each."""

    def edits(self, words: Sequence[Word], index: int, rng: random.Random) -> list[dict[int, str]]:
        misspelt = self.misspell(words[index].text, rng)
        return [] if misspelt is None else [{index: misspelt}]

    def misspell(self, word: str, rng: random.Random) -> str | None:
        """Return ``word`` with this generator's edit applied (may equal ``word``).

        ``None`` means the word has no candidate for this draw; the other words still have theirs.
        """
        raise NotImplementedError


class NeighbouringCharacterSwap(_CharacterEdit):
    """Swap w[i] and w[i+1], i uniform in {0, …, |w|−2} (``WordSwapNeighboringCharacterSwap``).

    Used in the book chapter "Query variations".
    """

    name = "neighbouring_character_swap"

    def misspell(self, word: str, rng: random.Random) -> str:
        i = rng.randrange(len(word) - 1)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


class RandomCharacterSubstitution(_CharacterEdit):
    """Replace w[i] by a random ASCII letter (``WordSwapRandomCharacterSubstitution``).

    Used in the book chapter "Query variations".
    """

    name = "random_character_substitution"

    def misspell(self, word: str, rng: random.Random) -> str:
        i = rng.randrange(len(word))
        return word[:i] + rng.choice(string.ascii_letters) + word[i + 1 :]


class QwertySubstitution(_CharacterEdit):
    """Replace w[i] by a random keyboard neighbour (``WordSwapQWERTY``).

    When the drawn character has no neighbours (a digit, ``'``, ``-``, a non-ASCII letter), this
    word has no candidate and no neighbour is drawn; the other eligible words keep theirs, so
    "when did the 2018 world cup start" always gets a typo in "world", "cup" or "start". This
    is TextAttack 0.3.10 (the study's pin); earlier releases raised instead (``random.choice``
    of an empty list), and the study's misspelling loop then kept the whole query.

    Used in the book chapter "Query variations".
    """

    name = "qwerty_substitution"

    def misspell(self, word: str, rng: random.Random) -> str | None:
        i = rng.randrange(len(word))
        neighbours = keyboard_neighbours(word[i])
        if not neighbours:
            return None
        return word[:i] + rng.choice(neighbours) + word[i + 1 :]


class RandomCharacterDeletion(_CharacterEdit):
    """Delete w[i], i uniform in {0, …, |w|−1} (``WordSwapRandomCharacterDeletion``).

    Used in the book chapter "Query variations".
    """

    name = "random_character_deletion"

    def misspell(self, word: str, rng: random.Random) -> str:
        i = rng.randrange(len(word))
        return word[:i] + word[i + 1 :]


class RandomCharacterInsertion(_CharacterEdit):
    """Insert a random ASCII letter before w[i], i in {0, …, |w|−1} (never at the end).

    Used in the book chapter "Query variations".
    """

    name = "random_character_insertion"

    def misspell(self, word: str, rng: random.Random) -> str:
        i = rng.randrange(len(word))
        return word[:i] + rng.choice(string.ascii_letters) + word[i:]


class FixedQwertySubstitution(_CharacterEdit):
    """DL-Typo's ``FixWordSwapQWERTY``: as :class:`QwertySubstitution`, every word has a candidate.

    A character without neighbours is replaced by a uniformly drawn lower-case key of the
    26-letter table (protocol §4.3, row 6; inferred to be what the study used).

    Used in the book chapter "Query variations".
    """

    name = "fixed_qwerty_substitution"

    def misspell(self, word: str, rng: random.Random) -> str:
        i = rng.randrange(len(word))
        neighbours = keyboard_neighbours(word[i]) or "".join(QWERTY_NEIGHBOURS)
        return word[:i] + rng.choice(neighbours) + word[i + 1 :]


def misspelling_generators() -> tuple[_CharacterEdit, ...]:
    """The six generators of the misspelling family, in the study's order (chapter "Query variations")."""
    return (
        NeighbouringCharacterSwap(),
        RandomCharacterSubstitution(),
        QwertySubstitution(),
        RandomCharacterDeletion(),
        RandomCharacterInsertion(),
        FixedQwertySubstitution(),
    )
