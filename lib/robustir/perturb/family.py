"""What a query-variation family is: named generators, and how a family reports being unavailable.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@contextlib.contextmanager
def batched_rehearsal(owner: Any, make: Callable[[list], object]) -> Iterator[bool]:
    """A rehearsal that notes requests and makes them in one batch on exit.

    Within, ``owner._noted`` is a dict whose keys are the requests noted so far (the owner's
    ``__call__`` adds to it instead of doing the work); outside, it is ``None``. On exit, even
    after an error inside, the noting stops; then, if anything was noted, ``make(requests)``
    runs on them in the order they were first noted. The context's value is ``True``: the owner
    rehearses (see :meth:`QueryGenerator.rehearsal`).
    """
    owner._noted = {}
    try:
        yield True
    finally:
        noted, owner._noted = list(owner._noted), None
    if noted:
        make(noted)


class QueryGenerator:
    """One generator of a family: turns a query into one candidate variant.

    Attributes:
        name: Generator name recorded with every variant (e.g. ``qwerty_substitution``).
        fell_back: Whether the last call's candidate is the unchanged query because the
            generator's own filter rejected everything it produced (counted per generator in
            the variant set's provenance); always ``False`` for generators without a filter.

    Used in the book chapter "Query variations".
    """

    name: str = "generator"
    fell_back: bool = False

    def prepare(self, texts: Sequence[str]) -> None:
        """Batch work ahead of the per-query calls (model-based generators); a no-op here."""

    def rehearsal(self) -> contextlib.AbstractContextManager[bool]:
        """A context for a rehearsal: a pass over the queries, discarded, ahead of the real one.

        A generator whose per-query model calls depend on its own random draws cannot batch
        them ahead with :meth:`prepare`; instead it notes them during the rehearsal and makes
        them in one batch on exit, so that the real pass finds them done. The context's value
        says whether the generator rehearses (here: no, so no rehearsal is run for it).
        """
        return contextlib.nullcontext(False)

    def __call__(self, text: str, rng: random.Random) -> str:
        """Return this generator's candidate for ``text`` (may equal ``text``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Family:
    """A query-variation family of the study.

    Attributes:
        key: The study's code key (``mispelling``, ``ordering``, ``synonym``, ``paraphrase``,
            ``naturality``).
        display_name: The paper's name (Misspelling, Reordering, …).
        generators: The generators, in the study's order; each contributes one candidate.
        parameters: Everything else that shapes the output, recorded as provenance.

    Used in the book chapter "Query variations".
    """

    key: str
    display_name: str
    generators: tuple[QueryGenerator, ...]
    parameters: dict[str, Any] = field(default_factory=dict)


class FamilyUnavailable(RuntimeError):
    """A family cannot be computed as specified here (e.g. a generation model is missing).

    Attributes:
        family: The family's code key.
        reason: Why, and what would make it available.

    Used in the book chapter "Query variations".
    """

    def __init__(self, family: str, reason: str):
        super().__init__(f"query-variation family {family!r} is unavailable: {reason}")
        self.family = family
        self.reason = reason
