"""Protocol references: every "protocol §x.y" in the library, the notebooks and the book has an
anchor in the Protocol appendix, and the strict build links them or fails naming the dangling one
(``book/_ext/protocol_refs.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS = ROOT / "book" / "_ext"
sys.path.insert(0, str(EXTENSIONS))

from protocol_refs import anchors_in, references, target  # noqa: E402

APPENDIX = ROOT / "book" / "protocol.md"
SCANNED = ("lib", "book", "notebooks")
TEXT_SUFFIXES = {".py", ".md", ".bib", ".yml", ".yaml", ".ipynb"}

# the protocol's numbered sections, the rows of §8.1 and the items of §8.2
SECTIONS = {1: 6, 2: 6, 3: 7, 4: 4, 5: 3, 6: 7, 7: 3, 8: 2}
QUIRK_ROWS, IMPROVEMENTS = 24, 11


def _anchors() -> frozenset[str]:
    return anchors_in(APPENDIX.read_text(encoding="utf-8"))


def _scanned_files():
    """The text files of the scanned folders, without executed notebooks (``book/runs``) and the
    extension itself, whose docstring shows the grammar with a dangling example."""
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            skipped = {"runs", "_ext"} & set(path.relative_to(ROOT).parts)
            if path.suffix in TEXT_SUFFIXES and path.is_file() and not skipped:
                yield path


def test_every_protocol_reference_in_the_sources_has_an_anchor():
    anchors = _anchors()
    found, dangling = 0, []
    for path in _scanned_files():
        text = path.read_text(encoding="utf-8")
        for reference in references(text):
            found += 1
            if target(reference, anchors) is None:
                line = text.count("\n", 0, reference.start) + 1
                dangling.append(f"{path.relative_to(ROOT)}:{line}: {reference.text_in(text)}")
    assert found > 150, "the scan should see the library's protocol references"
    assert not dangling, "references without an anchor in book/protocol.md:\n" + "\n".join(dangling)


def test_the_appendix_anchors_every_section_row_and_item_of_the_protocol():
    anchors = _anchors()
    expected = {f"protocol-{n}" for n in range(1, 11)}
    expected |= {f"protocol-{n}-{m}" for n, count in SECTIONS.items() for m in range(1, count + 1)}
    expected |= {f"protocol-8-1-row-{r}" for r in range(1, QUIRK_ROWS + 1)}
    expected |= {f"protocol-8-2-item-{i}" for i in range(1, IMPROVEMENTS + 1)}
    expected |= {f"protocol-1-4-{i}" for i in range(1, 10)} | {f"protocol-2-3-{i}" for i in range(1, 9)}
    assert expected <= anchors, sorted(expected - anchors)
    # no anchor is defined twice
    labels = re.findall(r"^\((protocol[\w-]*)\)=", APPENDIX.read_text(encoding="utf-8"), re.M)
    assert len(labels) == len(set(labels))


ANCHORS = frozenset({"protocol-1-4", "protocol-1-4-8", "protocol-2-5", "protocol-4-3", "protocol-5-1",
                     "protocol-5-2", "protocol-5-2-step-7", "protocol-6-1", "protocol-6-5",
                     "protocol-8-1", "protocol-8-1-row-13", "protocol-8-2", "protocol-8-2-item-7",
                     "protocol-10"})


@pytest.mark.parametrize(("text", "expected"), [
    ("exact search (protocol §2.5).", [("§2.5", "protocol-2-5")]),
    ("empty texts (§1.4.8) and prompts (§1.4)",
     [("§1.4.8", "protocol-1-4-8"), ("§1.4", "protocol-1-4")]),
    ("unchanged (protocol §8.1 row 13: reported)", [("§8.1 row 13", "protocol-8-1-row-13")]),
    ("improvements (protocol §8.2 items 7, 8)", [("§8.2 items 7", "protocol-8-2-item-7")]),
    ("accepted (§5.2 step 7.4, the candidates')", [("§5.2 step 7.4", "protocol-5-2-step-7")]),
    ("the table (protocol §4.3, row 6; inferred)", [("§4.3, row 6", "protocol-4-3")]),
    ("attacker data (protocol §5.1-5.2);", [("§5.1-5.2", "protocol-5-1")]),
    ("embeddings (protocol §6.1–§6.5).", [("§6.1", "protocol-6-1"), ("§6.5", "protocol-6-5")]),
    ("Facts from protocol.md §10;", [("§10", "protocol-10")]),
    ("changes (environment.md §4.4, pitfall 2)", []),
    ("offline (environment.md §7.1, §7.3) and protocol §2.5", [("§2.5", "protocol-2-5")]),
])
def test_references_are_read_and_linked_to_the_nearest_anchor(text, expected):
    found = [(r.text_in(text), target(r, ANCHORS)) for r in references(text)]
    assert found == expected


@pytest.mark.parametrize("text", ["protocol §9.9", "§8.1 row 99", "§5.2 step 9", "§5.1-5.9",
                                  "§8.2 item 3"])
def test_a_reference_to_a_missing_section_row_or_item_dangles(text):
    (reference,) = references(text)
    assert target(reference, ANCHORS) is None


# --- the strict build ------------------------------------------------------------------------
_CONF = """
import sys
sys.path[:0] = [{extensions!r}, {modules!r}]
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "protocol_refs"]
protocol_document = "protocol"
nb_execution_mode = "off"
exclude_patterns = ["_build"]
"""
_APPENDIX = """
# Protocol

(protocol-1-4)=
## 1.4 Special cases

(protocol-1-4-8)=
**8. Empty text.** Replaced by "[PAD]".

(protocol-8-1)=
## 8.1 Quirks

(protocol-8-1-row-13)=
**Row 13.** Unchanged queries.
"""
_MODULE = '''
"""A module that pools (protocol §1.4)."""


def pad(text):
    """Pad an empty text.

    Args:
        text: The text; empty ones become "[PAD]" (protocol §1.4.8, §8.1 row 13).
    """
'''


def _notebook(path: Path) -> None:
    """An executed notebook: a Markdown cell citing the protocol, a code cell whose printed
    output mentions a section that does not exist (output is not prose)."""
    import nbformat

    printed = "§9.9 is printed, not cited"
    code = nbformat.v4.new_code_cell(f"print({printed!r})")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed + "\n")]
    prose = nbformat.v4.new_markdown_cell("# Run\n\nUnchanged queries are counted (§8.1 row 13).")
    notebook = nbformat.v4.new_notebook(cells=[prose, code])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, str(path))


def _project(folder: Path, *, page: str, module: str = _MODULE) -> Path:
    (folder / "modules").mkdir(parents=True)
    (folder / "modules" / "toymod.py").write_text(module)
    (folder / "conf.py").write_text(_CONF.format(extensions=str(EXTENSIONS),
                                                 modules=str(folder / "modules")))
    (folder / "protocol.md").write_text(_APPENDIX)
    (folder / "page.md").write_text(page)
    (folder / "api.md").write_text("# API\n\n```{eval-rst}\n.. automodule:: toymod\n"
                                   "   :members:\n```\n")
    _notebook(folder / "run.ipynb")
    (folder / "index.md").write_text("# Book\n\n```{toctree}\npage\nrun\napi\nprotocol\n```\n")
    return folder


def _build(source: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b",
                           "html", str(source), str(source / "_build")],
                          capture_output=True, text=True, check=False)


PAGE = textwrap.dedent("""
    # Page

    Empty queries are padded (protocol §1.4.8), and counted (§8.1 row 13).

    ```text
    literal §9.9 stays as it is
    ```

    and so does `§9.9` in code.
    """)


def test_the_build_links_references_in_pages_and_docstrings(tmp_path):
    source = _project(tmp_path / "ok", page=PAGE)
    result = _build(source)
    assert result.returncode == 0, result.stderr
    page = (source / "_build" / "page.html").read_text()
    assert 'href="protocol.html#protocol-1-4-8"' in page
    assert 'href="protocol.html#protocol-8-1-row-13"' in page
    assert "literal §9.9 stays as it is" in page
    run = (source / "_build" / "run.html").read_text()
    assert 'href="protocol.html#protocol-8-1-row-13"' in run and "§9.9 is printed, not cited" in run
    api = (source / "_build" / "api.html").read_text()
    for label in ("protocol-1-4", "protocol-1-4-8", "protocol-8-1-row-13"):
        assert f'href="protocol.html#{label}"' in api


def test_the_strict_build_fails_on_a_dangling_reference_and_names_it(tmp_path):
    module = _MODULE.replace("§8.1 row 13", "§8.1 row 99")
    source = _project(tmp_path / "bad", page=PAGE + "\nSee also protocol §9.9.\n", module=module)
    result = _build(source)
    assert result.returncode != 0
    warnings = [line for line in result.stderr.splitlines() if "no anchor" in line]
    assert any("page.md" in line and "'§9.9'" in line for line in warnings), result.stderr
    assert any("toymod.py:docstring of toymod.pad" in line and "'§8.1 row 99'" in line
               for line in warnings), result.stderr
    assert len(warnings) == 2, result.stderr
