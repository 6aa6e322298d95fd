"""lme4-style formula parsing and treatment-contrast coding for ``robustir.stats.mixed``.

Private helper: the public entry point is :func:`robustir.stats.mixed.fit_mixed`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

_RANDOM_TERM = re.compile(r"\(([^()|]+)(\|\|?)([^()|]+)\)")
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


class MixedModelInputError(ValueError):
    """A formula or data frame that :func:`~robustir.stats.mixed.fit_mixed` cannot fit."""


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(effects | grouping)`` after ``/`` and ``||`` expansion.

    The effects of one term are correlated (one unstructured covariance matrix per term, as in
    lme4); uncorrelated effects are separate terms on the same grouping.

    Attributes:
        intercept: Whether the term has a random intercept.
        slopes: Numeric columns with random slopes.
        grouping: Columns whose combination defines the groups (``("a", "b")`` for ``a:b``).
    """

    intercept: bool
    slopes: tuple[str, ...]
    grouping: tuple[str, ...]

    @property
    def group_name(self) -> str:
        """lme4's name of the grouping factor (``cask:batch`` for ``batch/cask``)."""
        return ":".join(reversed(self.grouping))


@dataclass(frozen=True)
class ParsedFormula:
    """A parsed lme4-style formula.

    Attributes:
        text: The formula as given.
        response: Response column.
        fixed_terms: Fixed-effect terms besides the intercept, each a tuple of column names, in
            R's order (by degree, then by first appearance).
        random_terms: Random-effect terms, ``a/b`` expanded to ``a`` and ``a:b``.
    """

    text: str
    response: str
    fixed_terms: tuple[tuple[str, ...], ...]
    random_terms: tuple[RandomTerm, ...]

    @property
    def fixed_variables(self) -> tuple[str, ...]:
        """Columns used by the fixed part, in first-appearance order."""
        return tuple(dict.fromkeys(v for term in self.fixed_terms for v in term))

    def columns(self) -> tuple[str, ...]:
        """Every column the formula names."""
        names = [self.response, *self.fixed_variables]
        for term in self.random_terms:
            names.extend(term.slopes)
            names.extend(term.grouping)
        return tuple(dict.fromkeys(names))


def _split_names(text: str, sep: str, formula: str) -> list[str]:
    names = [part.strip() for part in text.split(sep)]
    for name in names:
        if not _NAME.match(name) and name not in {"0", "1"}:
            raise MixedModelInputError(
                f"formula {formula!r}: cannot read {name!r}; use plain column names joined by "
                "'+', '*' and ':' (no functions, no transformations)"
            )
    return names


def parse_formula(formula: str) -> ParsedFormula:
    """Parse ``response ~ fixed + (effects | group)`` into its parts.

    Supported: fixed terms ``a``, ``a + b``, ``a * b`` (all interactions), ``a:b``; random terms
    ``(1 | g)``, ``(1 | g1/g2)``, ``(1 | g1:g2)``, ``(x | g)``, ``(1 + x | g)`` and, as lme4
    expands them, uncorrelated effects ``(1 + x || g)`` = ``(1 | g) + (0 + x | g)``. Several terms
    may share one grouping factor.

    Raises:
        MixedModelInputError: On syntax this parser does not support; the message says what is
            supported.
    """
    if formula.count("~") != 1:
        raise MixedModelInputError(f"formula {formula!r} must contain exactly one '~'")
    lhs, rhs = (part.strip() for part in formula.split("~"))
    if not _NAME.match(lhs):
        raise MixedModelInputError(f"formula {formula!r}: the response must be a column name")
    random_terms: list[RandomTerm] = []
    for effects, bars, grouping in _RANDOM_TERM.findall(rhs):
        parts = _split_names(effects, "+", formula)
        if "0" in parts and "1" in parts:
            raise MixedModelInputError(f"formula {formula!r}: random term has both 0 and 1")
        slopes = tuple(p for p in parts if p not in {"0", "1"})
        intercept = "0" not in parts
        if bars == "||":  # lme4: one term per effect, so no correlations
            blocks = [(True, ())] if intercept else []
            blocks += [(False, (slope,)) for slope in slopes]
        else:
            blocks = [(intercept, slopes)]
        chain = _split_names(grouping, "/", formula)
        for depth in range(1, len(chain) + 1):
            columns = tuple(c for level in chain[:depth] for c in _split_names(level, ":", formula))
            random_terms.extend(RandomTerm(i, s, columns) for i, s in blocks)
    fixed_text = _RANDOM_TERM.sub("", rhs)
    terms: list[tuple[str, ...]] = []
    for chunk in fixed_text.split("+"):
        chunk = chunk.strip()
        if not chunk or chunk == "1":
            continue
        if chunk in {"0", "-1"} or chunk.startswith("-"):
            raise MixedModelInputError(
                f"formula {formula!r}: removing the intercept is not supported"
            )
        if "*" in chunk:
            names = _split_names(chunk, "*", formula)
            for degree in range(1, len(names) + 1):
                terms.extend(itertools.combinations(names, degree))
        else:
            terms.append(tuple(_split_names(chunk, ":", formula)))
    unique: dict[frozenset[str], tuple[str, ...]] = {}
    for term in terms:
        unique.setdefault(frozenset(term), term)
    ordered = sorted(unique.values(), key=len)
    present = set(unique)
    for term in ordered:
        for degree in range(1, len(term)):
            for sub in itertools.combinations(term, degree):
                if frozenset(sub) not in present:
                    raise MixedModelInputError(
                        f"formula {formula!r}: term {':'.join(term)} needs its marginal term "
                        f"{':'.join(sub)}; write it with '*'"
                    )
    if not random_terms:
        raise MixedModelInputError(
            f"formula {formula!r} has no random term such as (1 | group); use ordinary least "
            "squares for a fixed-effects model"
        )
    return ParsedFormula(formula, lhs, tuple(ordered), tuple(random_terms))


@dataclass(frozen=True)
class FixedDesign:
    """Treatment-contrast coding of the fixed part (R's default contrasts).

    Attributes:
        terms: Fixed terms besides the intercept, in column order.
        levels: Levels of each factor, reference level first.
        covariate_means: Mean of each numeric covariate over the data.
        column_names: R-style coefficient names (``(Intercept)``, ``Modelbge_m3``,
            ``Modelbge_m3:query_typeDEBATE``).
    """

    terms: tuple[tuple[str, ...], ...]
    levels: dict[str, tuple[str, ...]]
    covariate_means: dict[str, float]
    column_names: tuple[str, ...]

    def term_columns(self) -> dict[tuple[str, ...], slice]:
        """The columns of each fixed term (the intercept is column 0)."""
        slices, start = {}, 1
        for term in self.terms:
            width = int(np.prod([len(self.levels[v]) - 1 if v in self.levels else 1 for v in term]))
            slices[term] = slice(start, start + width)
            start += width
        return slices

    def matrix(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Design rows for given variable values.

        Args:
            values: For each factor its integer level codes (index into ``levels``), for each
                covariate its float values; all arrays the same length.

        Returns:
            Array (rows, len(column_names)).
        """
        length = len(next(iter(values.values()))) if values else 1
        columns = [np.ones((length, 1))]
        for term in self.terms:
            block = np.ones((length, 1))
            for var in term:  # the first variable varies fastest, as in R
                if var in self.levels:
                    k = len(self.levels[var])
                    own = (values[var][:, None] == np.arange(1, k)[None, :]).astype(float)
                else:
                    own = np.asarray(values[var], dtype=float)[:, None]
                block = (block[:, None, :] * own[:, :, None]).reshape(length, -1)
            columns.append(block)
        return np.concatenate(columns, axis=1)


def _column_names(terms, levels) -> tuple[str, ...]:
    names = ["(Intercept)"]
    for term in terms:
        labels = [""]
        for var in term:
            own = [f"{var}{lv}" for lv in levels[var][1:]] if var in levels else [var]
            labels = [f"{a}:{b}" if a else b for b in own for a in labels]
        names.extend(labels)
    return tuple(names)


def build_fixed_design(
    frame: pd.DataFrame, parsed: ParsedFormula, reference: dict[str, str] | None
) -> tuple[FixedDesign, dict[str, np.ndarray]]:
    """Code the fixed part of ``parsed`` on ``frame``.

    Non-numeric columns (and categoricals) are factors. Levels are the observed ones, in
    categorical order or sorted (C collation), with the reference level moved first (R's
    ``relevel``).

    Returns:
        The design and the per-row values (factor codes or covariate floats).

    Raises:
        MixedModelInputError: A factor with one level, or a reference level that is absent.
    """
    reference = dict(reference or {})
    unknown = sorted(set(reference) - set(parsed.fixed_variables))
    if unknown:
        raise MixedModelInputError(
            f"reference levels given for {unknown}, which are not fixed-effect factors of "
            f"{parsed.text!r}"
        )
    levels: dict[str, tuple[str, ...]] = {}
    means: dict[str, float] = {}
    values: dict[str, np.ndarray] = {}
    for var in parsed.fixed_variables:
        column = frame[var]
        if pd.api.types.is_numeric_dtype(column) and not isinstance(
            column.dtype, pd.CategoricalDtype
        ) and var not in reference:
            values[var] = column.to_numpy(dtype=float)
            means[var] = float(values[var].mean())
            continue
        if isinstance(column.dtype, pd.CategoricalDtype):
            observed = set(column.unique())
            order = [str(c) for c in column.cat.categories if c in observed]
            text = column.astype(str)
        else:
            text = column.astype(str)
            order = sorted(text.unique())
        if len(order) < 2:
            raise MixedModelInputError(
                f"factor {var!r} has a single level {order!r} in the data; a fixed effect needs "
                f"at least two levels, so drop {var!r} from the formula or add data"
            )
        if var in reference:
            ref = str(reference[var])
            if ref not in order:
                raise MixedModelInputError(
                    f"reference level {ref!r} of factor {var!r} is not in the data; levels are "
                    f"{order}"
                )
            order.remove(ref)
            order.insert(0, ref)
        levels[var] = tuple(order)
        values[var] = pd.Categorical(text, categories=order).codes.astype(np.int64)
    design = FixedDesign(parsed.fixed_terms, levels, means, _column_names(parsed.fixed_terms, levels))
    return design, values
