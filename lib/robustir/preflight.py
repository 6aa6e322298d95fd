"""Data before jobs: the datasets a grid's notebooks read, checked before any job starts.

A notebook reads a dataset when its parameters cell declares ``data_root`` (the convention of
the project's analysis notebooks: ``data_root = None  # None: $ROBUSTIR_DATA or ./data``). Such
a job loads its ``dataset`` with the qrels splits named by the parameters in
:data:`SPLIT_PARAMETERS` (``split``, and ``attacker_split`` for corpus poisoning), as the grid
sets them or, where it does not, as the notebook's own defaults do. The attacker's split is read
from the job's ``attacker_dataset`` or, when that is unset, from the registry's attacker data of
its ``dataset`` (:func:`robustir.data.attacker_dataset_for`: ``nq-train`` for ``nq``, protocol
§5.1), as :func:`robustir.experiments.corpus_poisoning.run_corpus_poisoning` reads it. The folder is resolved as
:func:`robustir.data.load_dataset` will resolve it inside the notebook: under the job's
``data_root``, else ``$ROBUSTIR_DATA``, else ``./data``, relative to the grid's base folder (the
notebooks' working directory).

Used in the book: the preface ("Rerunning this book") and "Reproducing at paper scale".
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustir.data import DatasetNeed, attacker_dataset_for, check_datasets, dataset_folder

if TYPE_CHECKING:
    from robustir.runs import Grid, Job

#: Notebook parameters that name a qrels split the notebook loads.
SPLIT_PARAMETERS = ("split", "attacker_split")
#: The parameter naming the dataset that ``attacker_split`` is loaded from (module docstring).
ATTACKER_DATASET_PARAMETER = "attacker_dataset"
#: The parameter by which a notebook declares that it reads a dataset from the data root.
DATA_ROOT_PARAMETER = "data_root"


class _NotLiteral:
    def __repr__(self) -> str:
        return "<not a literal>"


#: The value :func:`notebook_parameters` gives a parameter whose default is not a literal.
NOT_LITERAL = _NotLiteral()


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """Every parameter a notebook's ``parameters`` cell declares, with its default.

    Args:
        notebook: a py:percent or ``.ipynb`` notebook.

    Returns:
        ``{name: value}`` for each top-level ``name = ...`` (or ``name: type = ...``) of the
        cell tagged ``parameters``, later assignments winning; the value is the literal
        assigned, or :data:`NOT_LITERAL` when it is an expression. Empty when the notebook has
        no such cell.
    """
    import jupytext

    for cell in jupytext.read(notebook).cells:
        if "parameters" in cell.metadata.get("tags", []):
            declared: dict[str, Any] = {}
            for statement in ast.parse(cell.source).body:
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                    target, value = statement.targets[0], statement.value
                elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                    target, value = statement.target, statement.value
                else:
                    continue
                if isinstance(target, ast.Name):
                    try:
                        declared[target.id] = ast.literal_eval(value)
                    except (ValueError, TypeError):
                        declared[target.id] = NOT_LITERAL
            return declared
    return {}


def notebook_defaults(notebook: str | Path) -> dict[str, Any]:
    """The literal values a notebook's ``parameters`` cell assigns.

    Args:
        notebook: a py:percent or ``.ipynb`` notebook.

    Returns:
        ``{name: value}`` for each top-level ``name = <literal>`` of the cell tagged
        ``parameters`` (later assignments win); empty when the notebook has no such cell.
        Assignments whose value is not a Python literal are left out.
    """
    return {name: value for name, value in notebook_parameters(notebook).items()
            if value is not NOT_LITERAL}


def grid_dataset_needs(grid: Grid, jobs: Iterable[Job] | None = None) -> list[DatasetNeed]:
    """The dataset folders, and the splits of each, that the jobs of a grid read.

    Args:
        grid: from :func:`robustir.runs.load_grid`.
        jobs: the jobs to look at; default every job of the grid.

    Returns:
        One need per folder, in the order the jobs first name it, with its splits in the order
        they first appear; jobs whose notebook reads no dataset (module docstring) add nothing.
    """
    defaults_by_notebook: dict[str, dict[str, Any]] = {}
    splits_by_folder: dict[Path, list[str]] = {}
    for job in grid.jobs if jobs is None else jobs:
        if job.notebook not in defaults_by_notebook:
            defaults_by_notebook[job.notebook] = notebook_defaults(grid.base / job.notebook)
        defaults = defaults_by_notebook[job.notebook]
        if DATA_ROOT_PARAMETER not in defaults:
            continue
        parameters = {**defaults, **job.parameters}
        root = parameters[DATA_ROOT_PARAMETER]
        dataset = job.dataset_source
        attacker = parameters.get(ATTACKER_DATASET_PARAMETER) or attacker_dataset_for(dataset)
        read_from = {"split": dataset, "attacker_split": attacker}  # per split parameter
        splits_by_folder.setdefault(dataset_folder(dataset, root, base=grid.base), [])
        for name in SPLIT_PARAMETERS:
            split = parameters.get(name)
            if split is None:
                continue
            folder = dataset_folder(read_from[name], root, base=grid.base)
            splits = splits_by_folder.setdefault(folder, [])
            if split not in splits:
                splits.append(split)
    return [DatasetNeed(folder, tuple(splits)) for folder, splits in splits_by_folder.items()]


def check_grid_datasets(grid: Grid, jobs: Iterable[Job] | None = None) -> None:
    """Fail before any job starts unless every dataset the jobs read is present and complete.

    Args:
        grid: from :func:`robustir.runs.load_grid`.
        jobs: the jobs about to run; default every job of the grid.

    Raises:
        robustir.data.MissingDatasetsError: one message listing every missing or incomplete
            dataset, its missing files, and ``robustir data fetch --grid <grid file>``.
    """
    check_datasets(grid_dataset_needs(grid, jobs),
                   fetch_command=f"robustir data fetch --grid {grid.path}")
