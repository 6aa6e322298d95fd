"""Words of a query and in-place word replacement, with TextAttack's notion of a word.

The study counts and edits words the way TextAttack 0.3.10 does (protocol §4.2): a word is a
run of word characters that may continue with the joiners ``' - * @`` (so ``don't``,
``covid-19`` and ``e-mail`` are one word each), and punctuation is not a word. Replacing a
word rewrites only its character span, so spacing and punctuation of the query survive.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

# A word starts with a word character (letters and digits of any script, or "_") and may
# continue with word characters and the joiners TextAttack keeps inside words.
_WORD = re.compile(r"[^\W][\w'\-*@]*")


@dataclass(frozen=True)
class Word:
    """One word of a query and where it sits.

    Attributes:
        text: The word as written (case preserved).
        start: Offset of its first character in the query (0-based, in characters).
        end: Offset just past its last character.

    Used in the book chapter "Query variations".
    """

    text: str
    start: int
    end: int


def query_words(text: str) -> list[Word]:
    """Split a query into words with their character spans (chapter "Query variations").

    Args:
        text: The query.

    Returns:
        The words in reading order; punctuation and whitespace are not words.

    Examples:
        >>> [w.text for w in query_words("What's COVID-19? A (new) virus.")]
        ["What's", 'COVID-19', 'A', 'new', 'virus']
    """
    return [Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


@lru_cache(maxsize=131072)
def is_single_word(text: str) -> bool:
    """Whether ``text`` is exactly one word in the sense of :func:`query_words`.

    Replacements that are not (multi-word WordNet lemmas, a deletion that leaves a bare
    joiner) are discarded, as TextAttack discards multi-token substitutes.

    Used in the book chapter "Query variations".
    """
    if text.isalnum():  # letters and digits only: one word (the common case, checked first)
        return True
    words = query_words(text)
    return len(words) == 1 and words[0].text == text


def replace_words(text: str, words: Sequence[Word], edits: Mapping[int, str]) -> str:
    """Return ``text`` with the words at the given indices replaced.

    Args:
        text: The query that ``words`` was computed from.
        words: ``query_words(text)``.
        edits: Word index → replacement word. Several indices are replaced at once, which is
            how a reordering swaps two words.

    Returns:
        The edited query; characters outside the edited spans are unchanged.

    Used in the book chapter "Query variations".
    """
    pieces, cursor = [], 0
    for index in sorted(edits):
        word = words[index]
        pieces += [text[cursor : word.start], edits[index]]
        cursor = word.end
    pieces.append(text[cursor:])
    return "".join(pieces)
