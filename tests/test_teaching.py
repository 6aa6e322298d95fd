"""The teaching chapters and what makes every page rerunnable: figures drawn and named, exercises
whose hidden solutions check themselves with the library, the data the chapters read, the
"rerun with another model" recipe, and the notebook downloads and launch buttons
(``book/_ext/page_notebooks.py``)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from robustir.book import chapter_dataset
from robustir.data import DatasetUnavailableError
from robustir.model_sources import MODEL_OVERRIDES

ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS = ROOT / "book" / "_ext"
sys.path.insert(0, str(EXTENSIONS))

from page_notebooks import launch_target  # noqa: E402

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
CHAPTERS = sorted((ROOT / "book" / "teaching").glob("*.md"))


def _cells(chapter: Path) -> list:
    return jupytext.read(chapter).cells


def test_there_are_five_teaching_chapters():
    assert [c.stem for c in CHAPTERS] == ["dense_retrieval", "evaluation", "geometry",
                                          "mixed_models", "perturbations"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_draws_a_named_captioned_figure_that_its_prose_cites(chapter):
    cells = _cells(chapter)
    figures = [cell.metadata["mystnb"]["figure"] for cell in cells
               if cell.cell_type == "code" and "figure" in cell.metadata.get("mystnb", {})]
    assert figures, f"{chapter.name} draws no figure"
    prose = "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
    for figure in figures:
        assert figure.get("caption", "").strip(), f"{chapter.name}: figure without caption"
        assert f"{{numref}}`{figure['name']}`" in prose, f"{chapter.name}: {figure['name']} not cited"
    figure_code = [cell.source for cell in cells
                   if cell.cell_type == "code" and "figure" in cell.metadata.get("mystnb", {})]
    assert all("apply_theme()" in code for code in figure_code), "figures use the book's theme"


def _library_names(cells) -> set[str]:
    names = set()
    for cell in cells:
        if cell.cell_type != "code":
            continue
        for match in re.finditer(r"^from robustir[\w.]* import ([\w, ()\n]+?)$", cell.source, re.M):
            names |= {n.strip() for n in match.group(1).strip("()").split(",") if n.strip()}
    return names


def _solutions(cells):
    """``(label, options, code cells inside it)`` of every gated solution, in order (one Markdown
    cell can end a solution and start the next)."""
    solutions, current = [], None
    for cell in cells:
        if cell.cell_type == "code":
            if current is not None:
                current[2].append(cell.source)
            continue
        for marker in re.finditer(r"\{solution-(start|end)\}(.*?)```", cell.source, re.S):
            if marker.group(1) == "start":
                current = (marker.group(2).split()[0], marker.group(2), [])
            else:
                solutions.append(current)
                current = None
    return solutions


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_a_hidden_solution_that_runs_the_library_and_checks_itself(chapter):
    cells = _cells(chapter)
    library = _library_names(cells)
    checked = []
    for label, opening, code in _solutions(cells):
        assert ":class: dropdown" in opening, f"{chapter.name}: solution {label} is not hidden"
        source = "\n".join(code)
        if "assert" in source and any(re.search(rf"\b{name}\b", source) for name in library):
            checked.append(label)
    exercises = re.findall(r":label: (ex-[\w-]+)", chapter.read_text(encoding="utf-8"))
    assert checked, f"{chapter.name}: no solution runs the library and asserts its answer"
    assert set(checked) <= set(exercises)


def test_chapters_find_their_dataset_in_the_data_root_first(scifact_mini, monkeypatch):
    monkeypatch.setenv("ROBUSTIR_DATA", str(scifact_mini.parent))
    assert len(chapter_dataset("scifact", "test").queries) == 40  # the mini copy, not the full set


def test_chapters_fall_back_to_the_collections_beside_the_checkout(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTIR_DATA", str(tmp_path))
    assert len(chapter_dataset("scifact", "test").queries) == 300


def test_a_missing_chapter_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTIR_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailableError, match=r"robustir data fetch no-such-set"):
        chapter_dataset("no-such-set")


# --- the recipe "Rerun this page with another model" ---------------------------------------------
def _recipe() -> str:
    text = (ROOT / "book" / "reproducing.md").read_text(encoding="utf-8")
    start = text.index("(rerun-your-model)=")
    return text[start:text.index("\n## ", start + len("(rerun-your-model)=\n## "))]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_recipe_commands_are_accepted_by_the_command_line():
    from robustir.cli import _parser

    commands = [line.split("  #")[0] for block in _blocks(_recipe(), "bash")
                for line in block.splitlines() if line.startswith("robustir ")]
    assert len(commands) >= 5
    for command in commands:
        args = _parser().parse_args(shlex.split(command)[1:])
        if hasattr(args, "model"):
            assert args.model == "./my-model", command


def test_the_recipe_spec_and_grid_use_real_options_and_the_default_grid_entry():
    spec, grid = (yaml.safe_load(block) for block in _blocks(_recipe(), "yaml"))
    assert set(spec) <= {"source", *MODEL_OVERRIDES} and spec["source"] == "./my-model"
    (entry,) = grid["analyses"]
    assert all(m == "./my-model" or set(m) <= {"source", *MODEL_OVERRIDES} for m in entry["models"])
    default = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text(encoding="utf-8"))
    same = [a for a in default["analyses"] if a["notebook"] == entry["notebook"]
            and a["experiment"] == entry["experiment"] and a["parameters"] == entry["parameters"]]
    assert same, "the recipe's grid entry no longer matches configs/default.yaml"
    assert (ROOT / entry["notebook"]).is_file()


# --- downloads and launch buttons -------------------------------------------------------------
def _executed(path: Path, input_path: str | None) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A run")])
    notebook.metadata["kernelspec"] = KERNELSPEC
    if input_path:
        notebook.metadata["papermill"] = {"input_path": input_path}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


def test_a_run_page_launches_the_notebook_that_produced_it(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "evaluate.py").write_text("# %%\n")
    run = _executed(tmp_path / "book/runs/evaluate/m/d/clean/seed-none.ipynb",
                    "/tmp/robustir-nb-x/evaluate.ipynb")
    orphan = _executed(tmp_path / "book/runs/other.ipynb", "/tmp/robustir-nb-y/gone.ipynb")
    committed = _executed(tmp_path / "book/chapter.ipynb", None)
    teaching = tmp_path / "book" / "teaching.md"
    teaching.write_text("# Teaching\n")
    assert launch_target(tmp_path, run) == "notebooks/evaluate.py"
    assert launch_target(tmp_path, orphan) is None
    assert launch_target(tmp_path, committed) == "book/chapter.ipynb"
    assert launch_target(tmp_path, teaching) == "book/teaching.md"


_CONF = """
import sys
sys.path.insert(0, {extensions!r})
extensions = ["myst_nb", "page_notebooks"]
html_theme = "sphinx_book_theme"
html_theme_options = {{
    "repository_url": "https://github.com/robustir/robustir", "repository_branch": "main",
    "path_to_docs": "", "use_download_button": True,
    "launch_buttons": {{"binderhub_url": "https://mybinder.org",
                        "colab_url": "https://colab.research.google.com",
                        "notebook_interface": "jupyterlab"}},
}}
nb_execution_mode = "off"
exclude_patterns = ["_build", "notebooks"]
"""
_TEACHING = """\
---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---
# Teaching

```{code-cell} ipython3
print("hello")
```
"""


def test_every_page_downloads_as_a_notebook_and_launches_one_that_exists(tmp_path):
    source = tmp_path / "book"
    (source / "notebooks").mkdir(parents=True)
    (source / "notebooks" / "evaluate.py").write_text("# %%\nprint(1)\n")
    (source / "conf.py").write_text(_CONF.format(extensions=str(EXTENSIONS)))
    (source / "index.md").write_text("# Book\n\n```{toctree}\nteaching\nplain\nrun\nchapter\n```\n")
    (source / "teaching.md").write_text(_TEACHING)
    (source / "plain.md").write_text("# Plain\n\nNo code here.\n\n```bash\nrobustir run g.yaml\n```\n")
    _executed(source / "run.ipynb", "/tmp/robustir-nb-1/evaluate.ipynb")
    _executed(source / "chapter.ipynb", None)
    out = tmp_path / "html"
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(source),
                             str(out)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr

    def page(name):
        return (out / f"{name}.html").read_text(encoding="utf-8")

    for name in ("index", "teaching", "plain", "run", "chapter"):
        html = page(name)
        assert f'_sources/{name}.ipynb"' in html, f"{name} has no .ipynb download"
        nbformat.validate(nbformat.read(str(out / "_sources" / f"{name}.ipynb"), as_version=4))
    plain = nbformat.read(str(out / "_sources" / "plain.ipynb"), as_version=4)
    assert "No code here." in plain.cells[0].source
    binder = "https://mybinder.org/v2/gh/robustir/robustir/main?urlpath=lab/tree/"
    assert binder + "teaching.md" in page("teaching") and "colab.research" not in page("teaching")
    assert binder + "notebooks/evaluate.py" in page("run") and "run.ipynb?" not in page("run")
    colab = "https://colab.research.google.com/github/robustir/robustir/blob/main/"
    assert colab + "chapter.ipynb" in page("chapter")
    assert "mybinder.org" not in page("plain")
