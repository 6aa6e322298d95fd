"""The study's claims beside what this book measured, with a verdict computed by a stated rule.

Each Results chapter opens with a findings box: for each claim of the study
{cite}`li2026robustness` that the chapter can speak to, the claim in our words, what the offline
default can and cannot show, our number, the published number (or that none was published),
and a verdict. The verdict is computed here from the numbers, by the rule written in
:data:`VERDICTS`, never typed by hand, so the box cannot go stale when the results change:

* **reproduced**: a published number exists and ours is within the stated tolerance of it;
* **consistent**: no number can be matched, but our measurement points the way the claim does
  (with its uncertainty, where one is computed);
* **differs**: our number misses the published one beyond the tolerance, or points the other way;
* **not comparable**: the offline default cannot test the claim (the systems or data it needs are
  not here), said with the reason.

Used by every Results chapter (the aggregate notebooks glue :func:`findings_markdown`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

__all__ = [
    "TARGET_VERDICTS",
    "VERDICTS",
    "Finding",
    "against_target",
    "compare_direction",
    "compare_number",
    "findings_markdown",
    "findings_table",
    "format_number",
    "load_findings",
    "lookup",
    "mapping_text",
    "present",
    "summary_markdown",
    "save_findings",
]

#: The verdicts and the rule behind each.
VERDICTS: dict[str, str] = {
    "reproduced": "our number is within the stated tolerance of the published one",
    "consistent": "no number to match; our measurement points the way the claim does",
    "differs": "beyond the tolerance of the published number, or pointing the other way",
    "not comparable": "the offline default cannot test this claim",
}
#: The verdicts of this book's own targets (the training chapter), not of the study's claims.
TARGET_VERDICTS: dict[str, str] = {
    "goal met": "at or above the goal",
    "bar met": "at or above the bar, below the goal",
    "missed": "below the bar",
    "not measured": "a system of the target did not run in this build",
}


@dataclass(frozen=True)
class Finding:
    """One row of a findings box.

    Attributes:
        claim: The study's claim (or the reference value's source), in our words.
        scope: What the offline default can and cannot show about it.
        ours: Our number(s), formatted from the results.
        published: The published number, or why there is none.
        verdict: One of :data:`VERDICTS`.
        rule: How the verdict was decided (tolerance, comparison, interval).
    """

    claim: str
    scope: str
    ours: str
    published: str
    verdict: str
    rule: str

    def __post_init__(self):
        if self.verdict not in VERDICTS and self.verdict not in TARGET_VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of "
                             f"{[*VERDICTS, *TARGET_VERDICTS]}")


def compare_number(ours: float, published: float, tolerance: float) -> str:
    """``reproduced`` when ``|ours − published| ≤ tolerance``, else ``differs``; a missing
    value of ours (NaN) is ``not comparable``."""
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return "not comparable"
    return "reproduced" if abs(ours - published) <= tolerance + 1e-12 else "differs"


def against_target(value: float, bar: float, goal: float | None = None) -> str:
    """``goal met``, ``bar met``, ``missed``, or ``not measured`` when a value is missing."""
    if any(v is None or math.isnan(v) for v in (value, bar)):
        return "not measured"
    if value < bar:
        return "missed"
    return "goal met" if goal is None or value >= goal else "bar met"


def compare_direction(difference: float, *, expected_sign: int, interval: tuple[float, float] | None = None
                      ) -> str:
    """``consistent`` when ``difference`` has the claim's sign (and, with an ``interval``, the
    whole interval does), ``differs`` when it has the opposite sign beyond the interval,
    ``not comparable`` when it is missing or the interval straddles zero.

    Args:
        difference: E.g. our LLM retriever's drop rate minus our encoder-only one's.
        expected_sign: +1 or −1, the sign the claim predicts.
        interval: A confidence interval of ``difference``.
    """
    if difference is None or math.isnan(difference):
        return "not comparable"
    low, high = interval if interval is not None else (difference, difference)
    if expected_sign * low > 0 and expected_sign * high > 0:
        return "consistent"
    if expected_sign * low < 0 and expected_sign * high < 0:
        return "differs"
    return "not comparable"


def findings_table(findings: Iterable[Finding]) -> pd.DataFrame:
    """The findings as a table (one row per claim)."""
    rows = [{"the study's claim": f.claim, "what the offline default can show": f.scope,
             "ours": f.ours, "published": f.published, "verdict": f.verdict, "rule": f.rule}
            for f in findings]
    return pd.DataFrame(rows)


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_escape(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def findings_markdown(findings: Sequence[Finding]) -> str:
    """The findings box's content: a Markdown table, one row per claim, verdict last."""
    if not findings:
        raise ValueError("a findings box needs at least one finding")
    return _markdown_table(
        ("the study's claim", "what this book can show", "ours", "published", "verdict"),
        ((f.claim, f.scope, f.ours, f.published, f"**{f.verdict}** ({f.rule})") for f in findings))


def summary_markdown(saved: Mapping[str, Sequence[Finding]], titles: Mapping[str, str]) -> str:
    """The one-screen summary: every chapter's findings in one Markdown table, unabridged.

    Args:
        saved: Findings by chapter (:func:`load_findings`).
        titles: Chapter key → title, in display order; chapters not in ``saved`` are skipped.
    """
    return _markdown_table(
        ("chapter", "the study's claim", "ours", "published", "verdict"),
        ((title, f.claim, f.ours, f.published, f"**{f.verdict}**")
         for chapter, title in titles.items() for f in saved.get(chapter, ())))


def format_number(value: float, digits: int = 3) -> str:
    """A number for a findings box (``n/a`` when missing)."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def lookup(table: pd.DataFrame, column: str, **keys) -> float:
    """The single value of ``column`` where every ``keys`` column equals its value (NaN when
    absent)."""
    if table.empty or column not in table:
        return float("nan")
    mask = pd.Series(True, index=table.index)
    for name, value in keys.items():
        if name not in table:
            return float("nan")
        mask &= table[name] == value
    values = table.loc[mask, column]
    return float(values.iloc[0]) if len(values) else float("nan")


def present(table: pd.DataFrame, column: str, values: Iterable[str]) -> list[str]:
    """The ``values`` found in ``table[column]``, in the given order."""
    found = set(table[column]) if column in table else set()
    return [v for v in values if v in found]


def mapping_text(values: Mapping[str, float], digits: int = 3) -> str:
    """``a 0.123, b 0.456`` from ``{a: 0.123, b: 0.456}``."""
    return ", ".join(f"{name} {format_number(value, digits)}" for name, value in values.items())


def save_findings(store, chapter: str, findings: Sequence[Finding]) -> None:
    """Keep a chapter's findings in the results store (``<store>/findings/<chapter>.json``),
    for the one-screen summary of the home page."""
    import dataclasses
    import json
    from pathlib import Path

    from robustir.cache import atomic_write_text

    root = Path(store.root if hasattr(store, "root") else store)
    payload = [dataclasses.asdict(f) for f in findings]
    atomic_write_text(root / "findings" / f"{chapter}.json", json.dumps(payload, indent=1) + "\n")


def load_findings(store) -> dict[str, list[Finding]]:
    """Every chapter's saved findings, by chapter name (empty when none was saved)."""
    import json
    from pathlib import Path

    root = Path(store.root if hasattr(store, "root") else store) / "findings"
    return {path.stem: [Finding(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
            for path in sorted(root.glob("*.json"))}
