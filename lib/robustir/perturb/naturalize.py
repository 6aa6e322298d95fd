"""The naturalizing family (``naturality``): stop-word removal (protocol §4.3).

The query is lower-cased, split on whitespace, stripped of every token in the project's
English stop-word list, and joined with single spaces. The result does not depend on the seed,
so this family's spread over seeds is zero. A query of stop-words only becomes empty; the
encoder embeds an empty query as ``"[PAD]"`` (protocol §1.4), and the variation records it.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import random

from robustir.perturb.family import QueryGenerator
from robustir.perturb.stopwords import ENGLISH_STOPWORD_SET


class StopwordRemoval(QueryGenerator):
    """Lower-case the query and drop its stop-word tokens.

    Used in the book chapter "Query variations".
    """

    name = "stopword_removal"

    def __call__(self, text: str, rng: random.Random) -> str:
        return " ".join(t for t in text.lower().split() if t not in ENGLISH_STOPWORD_SET)


def naturalizing_generators() -> tuple[StopwordRemoval]:
    """The one generator of the naturalizing family (chapter "Query variations")."""
    return (StopwordRemoval(),)
