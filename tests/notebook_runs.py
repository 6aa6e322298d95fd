"""Executing a py:percent notebook of ``notebooks/`` in a test, as the grid runner does.

The notebook is converted with jupytext and executed by papermill from the repository root
with the given parameters; the executed copy is written under ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import papermill

ROOT = Path(__file__).resolve().parents[1]


def execute_notebook(name: str, tmp_path: Path, parameters: dict) -> Path:
    """Execute ``notebooks/<name>.py`` with ``parameters``; return the executed ``.ipynb``."""
    source = tmp_path / f"{name}.ipynb"
    jupytext.write(jupytext.read(ROOT / "notebooks" / f"{name}.py"), source)
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(source), str(executed), cwd=str(ROOT), progress_bar=False,
                               kernel_name="python3", parameters=parameters)
    return executed
