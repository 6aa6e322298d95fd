"""Prose that cannot go stale: a number the results compute is glued, never typed, and a sentence
that claims a direction ("larger than", "barely moves") about results is glued to a computation.

Checked on the Results notebooks' sources (the prose of every chapter of the Results part) and
on executed notebooks: a number that a cell's output prints must not also be typed in a Markdown
cell of the same notebook.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted([*(ROOT / "notebooks").glob("*_summary.py"), ROOT / "notebooks" / "generalizability.py",
                  ROOT / "notebooks" / "findings.py"])
#: Phrases that claim a direction; in Results prose each sentence holding one must hold a glue role.
DIRECTIONAL = ("larger than", "smaller than", "higher than", "lower than", "more robust",
               "less robust", "outperform", "beats ", "better than", "worse than", "barely",
               "dominates", "exceeds", "falls below", "rises above")
_SKIP = re.compile(r"\{glue:[a-z]+\}`[^`]*`|\{cite:?[a-z]*\}`[^`]*`|\{doc\}`[^`]*`|`[^`]*`"
                   r"|\$[^$]*\$|```.*?```|§\s*[\d.]+(?: row \d+)?|\(\w+ et al\., \d{4}\)"
                   r"|\b\w+ [=<>≤≥]+ \d+(?:\.\d+)?",  # a setting (p = 0.9, p < 0.05)
                   re.DOTALL)
#: Words that attribute a sentence to the study: it reports a published claim, not our result.
_ATTRIBUTED = ("study", "paper", "abstract", "claim", "{cite")
_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+|\d{2,}(?:,\d{3})*)(?![\w.])")


def prose_numbers(markdown: str) -> set[str]:
    """Numbers typed in Markdown prose: not in glue, citation or doc roles, code, math, section
    references or years."""
    text = _SKIP.sub(" ", markdown)
    found = {m.group(1).replace(",", "") for m in _NUMBER.finditer(text)}
    return {n for n in found if not re.fullmatch(r"(19|20)\d\d", n)}


def _output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        for mime, value in output.get("data", {}).items():
            if mime.startswith(("text/plain", "text/html", "text/markdown")):
                parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


def unglued_numbers(notebook) -> set[str]:
    """Decimals typed in the notebook's Markdown that its computed outputs also print (counts
    such as "27 datasets" are facts of the design, not results)."""
    typed = set()
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            typed |= prose_numbers(cell.source)
    outputs = "\n".join(_output_text(c) for c in notebook.cells if c.cell_type == "code")
    computed = {m.group(1).replace(",", "") for m in _NUMBER.finditer(outputs)}
    return {n for n in typed & computed if "." in n}


def unglued_directions(markdown: str) -> list[str]:
    """Sentences of ``markdown`` that claim a direction without a glue role."""
    sentences = re.split(r"(?<=[.!?])\s+", markdown.replace("\n", " "))
    return [s for s in sentences if any(p in s.lower() for p in DIRECTIONAL) and "{glue:" not in s
            and not any(word in s.lower() for word in _ATTRIBUTED)]


def test_the_checks_catch_a_typed_number_and_an_unglued_claim():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("MiniLM reaches 0.6451 nDCG@10, see §7.3 (2026)."),
        nbformat.v4.new_code_cell("print(0.6451)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="0.6451\n")]),
    ])
    assert unglued_numbers(notebook) == {"0.6451"}
    notebook.cells[0].source = "MiniLM reaches {glue:text}`minilm:.4f` nDCG@10, see §7.3 (2026)."
    assert unglued_numbers(notebook) == set()
    assert unglued_directions("Our retriever is more robust than MiniLM. It ran.") == [
        "Our retriever is more robust than MiniLM."]
    assert unglued_directions("It is {glue:text}`direction` robust: more robust than MiniLM.") == []
    assert unglued_directions("The study claims LLMs are more robust than encoders.") == []


@pytest.mark.parametrize("source", RESULTS, ids=lambda p: p.stem)
def test_results_prose_types_no_result_and_glues_every_direction(source):
    notebook = jupytext.read(source)
    markdown = "\n\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert unglued_directions(markdown) == [], source.name
    # numbers in Results prose are the study's settings or published facts, never our results:
    # those are glued; a typed decimal would be a result that can go stale
    decimals = {n for n in prose_numbers(markdown) if "." in n}
    assert decimals == set(), f"{source.name}: typed decimals {sorted(decimals)}: glue them"


def test_executed_aggregates_print_no_number_their_prose_types(tmp_path):
    """The generalizability chapter executed on the published table (no store needed)."""
    from notebook_runs import execute_notebook

    executed = execute_notebook("generalizability", tmp_path, parameters={
        "output": str(tmp_path / "results"), "classify_query_types": False,
        "reference_dir": str(ROOT.parent / "shared" / "reference")})
    assert unglued_numbers(nbformat.read(executed, as_version=4)) == set()
