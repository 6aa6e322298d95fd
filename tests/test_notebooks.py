"""Every notebook runs under nbval with small parameters, and its one summary cell is checked.

Each py:percent notebook is converted with jupytext into ``build/nbtest/``, given small
parameters by papermill (``prepare_only``: nothing runs yet) and executed by nbval in a separate
pytest process with ``--nbval-lax --nbval-current-env`` (environment.md §5): every cell must run
without an exception, and the outputs of the cell marked ``# NBVAL_CHECK_OUTPUT`` must equal the
reviewed outputs recorded in ``tests/fixtures/notebook_outputs/<stem>.json``.

To record (or, after a reviewed change, re-record) a notebook's summary::

    ROBUSTIR_RECORD_NOTEBOOK_OUTPUTS=<stem>[,<stem>…] pytest tests/test_notebooks.py

then read the JSON file before committing it: it is the expectation the test enforces. Every
number in it needs an entry in ``<stem>.provenance.json`` beside it (reference, hand or
snapshot; ``tests/test_notebook_provenance.py`` checks them and recomputes the independent ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Analyses first, then the notebooks that aggregate their results from the shared store.
AGGREGATES = ("generalizability", "findings")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"),
                   key=lambda p: (p.stem.endswith("_summary") or p.stem in AGGREGATES,
                                  p.stem == "findings", p.stem))
FIXTURE = ROOT / "tests" / "fixtures" / "notebooks" / "tiny_entry.py"
EXPECTED = ROOT / "tests" / "fixtures" / "notebook_outputs"
NBTEST = ROOT / "build" / "nbtest"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
# "1" records every notebook's summary; a comma-separated list of stems records only those
RECORD = os.environ.get("ROBUSTIR_RECORD_NOTEBOOK_OUTPUTS", "")


def small_parameters(stem: str, data_root: Path, store: Path, full_data: Path) -> dict | None:
    """Parameters that make ``notebooks/<stem>.py`` run in seconds (None: not known yet).

    Data: the 300-document, 40-query SciFact subset of ``conftest.scifact_mini``; the attack
    needs SciFact's training split, so it reads ``full_data`` (its corpus embeddings come from
    the session cache). All notebooks share one store, so the aggregates (run last) read what
    the analyses wrote.
    """
    data = {"data_root": str(data_root)}
    table = {
        "tiny_entry": {"model": "model-a", "dataset": "data-x", "seed": 1999, "output": str(store)},
        "evaluate": {"model": "minilm", "dataset": "scifact", "output": str(store), **data},
        "query_variations": {"model": "minilm", "dataset": "scifact", "family": "ordering",
                             "seed": 1999, "n_resamples": 100, "output": str(store),
                             "variants_dir": str(store / "query_variants"), **data},
        "geometry": {"model": "minilm", "dataset": "scifact", "seed": 1999, "sample_size": 200,
                     "n_pairs": 1000, "output": str(store), **data},
        "corpus_poisoning": {"model": "minilm", "dataset": "scifact", "n_passages": 1,
                             "iterations": 2, "candidates": 4, "passage_length": 8,
                             "batch_size": 8, "seed": 1999, "baselines": False,
                             "output": str(store), "data_root": str(full_data)},
        "corpus_poisoning_summary": {"output": str(store), "n_passages": [1]},
        "generalizability": {"output": str(store), "classify_query_types": False,
                             "reference_dir": str(ROOT.parent / "shared" / "reference")},
        "query_variations_summary": {"output": str(store), "n_resamples": 100},
        "geometry_summary": {"output": str(store),
                             "reference_dir": str(ROOT.parent / "shared" / "reference")},
        "effectiveness_summary": {"output": str(store),
                                  "reference_dir": str(ROOT.parent / "shared" / "reference")},
        "findings": {"output": str(store)},
        # The shipped retrievers' training records; the store holds MiniLM only, which stands
        # in for the control so that the chapter's clean-effectiveness table has a row.
        "training_summary": {"output": str(store), "control": "minilm"},
    }
    return table.get(stem)


def _check_cell(notebook) -> int:
    marked = [i for i, cell in enumerate(notebook.cells)
              if cell.cell_type == "code" and CHECK_MARKER in cell.source]
    assert len(marked) == 1, f"expected exactly one cell marked {CHECK_MARKER}, found {len(marked)}"
    return marked[0]


def _comparable(outputs: list) -> list:
    """Outputs without execution counts and metadata, as nbval compares them."""
    kept = []
    for output in outputs:
        output = {k: v for k, v in dict(output).items() if k not in ("execution_count", "metadata")}
        kept.append(json.loads(json.dumps(output)))
    return kept


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One results store for all notebooks of this module."""
    return tmp_path_factory.mktemp("notebook-store") / "results"


@pytest.mark.parametrize("source", [FIXTURE, *NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_runs_with_small_parameters(source, scifact_mini, shared_data, store, tmp_path):
    import jupytext
    import nbformat
    import papermill

    parameters = small_parameters(source.stem, scifact_mini.parent, store, shared_data)
    if parameters is None:
        pytest.skip(f"no small parameters for notebooks/{source.name} yet: add them to "
                    "small_parameters() in tests/test_notebooks.py")
    NBTEST.mkdir(parents=True, exist_ok=True)
    converted = NBTEST / f"{source.stem}.source.ipynb"
    jupytext.write(jupytext.read(source), converted)
    prepared = NBTEST / f"{source.stem}.ipynb"
    papermill.execute_notebook(str(converted), str(prepared), parameters=parameters,
                               prepare_only=True, kernel_name="python3", progress_bar=False)
    notebook = nbformat.read(prepared, as_version=4)
    index = _check_cell(notebook)
    expected_file = EXPECTED / f"{source.stem}.json"

    if RECORD == "1" or source.stem in RECORD.split(","):
        executed = tmp_path / "executed.ipynb"
        papermill.execute_notebook(str(prepared), str(executed), kernel_name="python3",
                                   cwd=str(ROOT), progress_bar=False)
        outputs = _comparable(nbformat.read(executed, as_version=4).cells[index].outputs)
        EXPECTED.mkdir(parents=True, exist_ok=True)
        expected_file.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    if not expected_file.is_file():
        pytest.fail(f"no reviewed summary for {source.name}: record it with "
                    "ROBUSTIR_RECORD_NOTEBOOK_OUTPUTS=1 (see this module's docstring)")
    notebook.cells[index].outputs = [nbformat.from_dict(o) for o in
                                     json.loads(expected_file.read_text())]
    notebook.cells[index].execution_count = 1  # nbval compares only cells that "ran"
    nbformat.write(notebook, prepared)

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval-lax",
         "--nbval-current-env", str(prepared)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, f"nbval failed on {source.name}:\n{result.stdout[-6000:]}"
