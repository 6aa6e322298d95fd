"""The grid runner: plan jobs from a YAML grid, execute each notebook with papermill, skip finished ones.

A grid (``configs/default.yaml``, ``configs/paper.yaml``) lists *analyses*. Each analysis names a
py:percent notebook and the axes models × datasets × variants × seeds; every point of that
product is one :class:`Job`: one notebook executed once with one parameter set. The notebook
itself writes its results-store entry (:mod:`robustir.results`) at
``<results>/<experiment>/<model>/<dataset>/<variant>/seed-<seed>/``.

A grid is checked as a whole before any job starts (:mod:`robustir.grid_checks`): every model
and dataset resolved, every parameter name and value checked against the notebook's
``parameters`` cell, and all problems reported at once with their YAML lines.

A job is *finished* when three things hold, checked by :func:`job_finished`:

1. its entry has ``summary.json``;
2. the entry holds ``job.json``, written by this runner after the notebook succeeded, whose
   ``job_hash`` equals the job's hash (notebook source, parameters, library version), whose
   ``entry_params_hash`` equals the hash recorded in ``summary.json``, and whose checksums
   every file of the entry still matches, the files agreeing with each other
   (:func:`robustir.results.verify_entry`: e.g. ``per_query.csv`` holds ``n_queries`` queries);
3. the executed notebook exists at ``<runs_dir>/<experiment>/<model>/<dataset>/<variant>/seed-<seed>.ipynb``.

Every write is atomic (temporary name, then rename) and ``job.json`` is written last, so killing
the runner at any moment and rerunning it redoes at most the jobs that were in flight and loses
nothing that had finished. The runner owns its children (:mod:`robustir.processes`): workers
and kernels die with it, whatever signal ends it, and each job holds a lock while it runs, so
two runners on one store never run the same job at once.

Jobs run in parallel (``workers``), with one ordering rule: jobs that read the same corpus
embeddings (:func:`corpus_key`: the model's forward pass and the dataset) wait
until the first of them has finished, so that each corpus is encoded once and read from the
embedding cache by the others (:func:`leaders_first`).

Aggregate notebooks (``aggregates:`` in the grid) read the store and make the book's figures and
tables; :func:`run_aggregates` re-executes one only when its source, its parameters or the store's
contents changed.

Grid file format::

    results: results            # store root, relative to the working directory
    runs_dir: book/runs         # executed notebooks (git-ignored)
    workers: 1                  # parallel jobs (local executor) or Dask workers
    timeout_s: 3600             # per-cell time limit
    store_parameter: output     # notebook parameter that receives the store root
    analyses:
      - experiment: evaluate
        notebook: notebooks/evaluate.py
        models:                          # catalog keys, folders, .yaml specs, hub ids,
          - minilm                       # or mappings (source: plus overrides); each is
          - ./my-model                   # resolved before any job starts, and stored under
          - {source: minilm, pooling: cls}   # its key (a folder's: name + content hash)
        datasets: [scifact]
        variants: {clean: {}}            # variant name -> extra parameters (default {clean: {}})
        seeds: [1999, 5]                 # injected as `seed`; omit for deterministic runs
        parameters: {top_k: 1000}        # passed to every job of the analysis
        model_parameters: {smollm2: {max_length: 128}}   # per-model overrides
    aggregates:
      - notebook: notebooks/query_variations_summary.py
        parameters: {}

Used in the book: "Reproducing at paper scale" (``book/reproducing.md``) and the preface.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import itertools
import json
import keyword
import logging
import multiprocessing
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

import robustir
from robustir.cache import atomic_write_text, writable_folder
from robustir.grid_checks import (FAMILY_PARAMETER, GridError, Problems, check_family,
                                  check_parameters, load_yaml)
from robustir.preflight import DATA_ROOT_PARAMETER, check_grid_datasets, notebook_defaults
from robustir.processes import (OwnedKernelManager, end_children, interrupts_held, job_lock,
                                start_worker)
from robustir.provenance import file_sha256
from robustir.results import ResultStore, params_hash, verify_entry

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")
"""Names accepted by ``--executor``."""

JOB_RECORD = "job.json"
"""File the runner adds to a results entry once its notebook has run to the end."""

HIDDEN_INPUT_TAGS = ("parameters", "injected-parameters")
"""Cells whose input the book hides (environment.md §4.4, pitfall 4)."""

VARIATIONS_EXPERIMENT = "query_variations"
"""The experiment whose ``family`` parameter names a query-variation family (the ``EXPERIMENT``
of :mod:`robustir.experiments.query_variations`, which is slow to import)."""

_ANALYSIS_KEYS = {"experiment", "notebook", "models", "datasets", "variants", "seeds",
                  "parameters", "model_parameters", "store_parameter"}
_AGGREGATE_KEYS = {"notebook", "parameters", "store_parameter"}
_GRID_KEYS = {"results", "runs_dir", "workers", "timeout_s", "store_parameter", "analyses",
              "aggregates"}


class RunError(RuntimeError):
    """One or more jobs failed; ``failures`` maps each job's label to its error text."""

    def __init__(self, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        listing = "\n".join(f"  {label}: {error}" for label, error in self.failures.items())
        super().__init__(f"{len(self.failures)} job(s) failed:\n{listing}")


@dataclasses.dataclass(frozen=True)
class Job:
    """One notebook executed once with one parameter set.

    Attributes:
        experiment: The analysis (first level of the results store).
        notebook: Path of the py:percent (or .ipynb) source notebook.
        notebook_sha: SHA-256 (16 hex digits) of the notebook's bytes when planned.
        model, dataset, variant: Results-store keys of the entry the notebook writes (a model
            or dataset given as a folder is keyed by its name and a hash of its files).
        seed: The seed, or None for a deterministic analysis.
        parameters: The notebook parameters (JSON values), without the store location.
        store_parameter: Name of the notebook parameter that receives the store root.
    """

    experiment: str
    notebook: str
    notebook_sha: str
    model: str
    dataset: str
    variant: str
    seed: int | None
    parameters: Mapping[str, Any]
    store_parameter: str = "output"

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. ``evaluate/minilm/scifact/clean/seed-none``."""
        seed = "none" if self.seed is None else self.seed
        return f"{self.experiment}/{self.model}/{self.dataset}/{self.variant}/seed-{seed}"

    @property
    def model_source(self) -> str | Mapping[str, Any]:
        """What the notebook resolves into a model: a catalog key, a folder, a spec file or a
        mapping (:func:`robustir.model_sources.resolve_model`)."""
        return self.parameters["model"]

    @property
    def dataset_source(self) -> str:
        """What the notebook loads as its dataset: a key under the data root, or a folder."""
        return self.parameters["dataset"]

    @property
    def job_hash(self) -> str:
        """Hash of everything that changes what the job computes (not where it writes).

        The model's store key enters too: for a folder it holds a hash of the folder's files.
        """
        return params_hash({
            "notebook": self.notebook,
            "notebook_sha": self.notebook_sha,
            "model": self.model,
            "parameters": dict(self.parameters),
            "robustir": robustir.__version__,
        })


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """An aggregate notebook: reads the store, makes figures and tables for a results chapter."""

    notebook: str
    notebook_sha: str
    parameters: Mapping[str, Any]
    store_parameter: str = "output"

    @property
    def name(self) -> str:
        """The executed notebook's file stem (the source's stem)."""
        return Path(self.notebook).stem


@dataclasses.dataclass(frozen=True)
class Grid:
    """A parsed grid file. ``base`` is the directory notebooks run in and paths are relative to."""

    path: Path
    base: Path
    results: Path
    runs_dir: Path
    workers: int
    timeout_s: int
    jobs: tuple[Job, ...]
    aggregates: tuple[Aggregate, ...]

    @property
    def store(self) -> ResultStore:
        """The results store the grid writes."""
        return ResultStore(self.results)

    def entry_dir(self, job: Job) -> Path:
        """The results-store entry of ``job``."""
        return self.store.entry_dir(job.experiment, job.model, job.dataset, job.variant, job.seed)

    def notebook_path(self, job: Job) -> Path:
        """Where ``job``'s executed notebook goes; mirrors the store layout."""
        relative = self.entry_dir(job).relative_to(self.results)
        return self.runs_dir / relative.with_suffix(".ipynb")

    def aggregate_path(self, aggregate: Aggregate) -> Path:
        """Where an executed aggregate notebook goes: ``<runs_dir>/aggregates/<stem>.ipynb``."""
        return self.runs_dir / "aggregates" / f"{aggregate.name}.ipynb"


@dataclasses.dataclass
class GridReport:
    """What :func:`run_grid` did: labels of jobs skipped (already finished) and run."""

    skipped: list[str]
    ran: list[str]


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mapping(problems: Problems, container: Any, key: str, where: str, default: Any) -> dict:
    """``container[key]`` when it is a mapping (``null`` counts as ``default``), else a recorded
    problem and ``{}``."""
    value = container.get(key, default)
    value = default if value is None else value
    if not isinstance(value, dict):
        problems.add(where, f"'{key}' must be a mapping, got {value!r}", container, key)
        return {}
    return value


def _nonempty_list(problems: Problems, entry: Mapping[str, Any], field: str,
                   where: str) -> list:
    """``entry[field]`` when it is a non-empty list, else a recorded problem and ``[]``."""
    items = entry.get(field)
    if isinstance(items, list) and items:
        return items
    problems.add(where, f"'{field}' must be a non-empty list, got {items!r}", entry, field)
    return []


def _plan_models(entry: Mapping[str, Any], where: str, base: Path,
                 problems: Problems) -> dict[str, tuple[str, Any]]:
    """``{name in the grid: (store key, source for the notebook)}`` of an analysis's models.

    A model is a catalog key, a folder or ``.yaml`` spec (relative to the grid's base), a hub
    id, or an inline mapping (``source:`` plus overrides); each is resolved here, so a model
    that cannot be used stops the grid before any job starts.
    """
    from robustir.model_sources import ModelSourceError, resolve_model
    from robustir.models import UnknownModelError

    items = _nonempty_list(problems, entry, "models", where)
    planned: dict[str, tuple[str, Any]] = {}
    for index, item in enumerate(items):
        here = f"models[{index}]"
        if isinstance(item, str) and item:
            source: Any = str((base / item).resolve()) if (base / item).exists() else item
        elif isinstance(item, dict):
            source = {k: (str((base / v).resolve()) if k in ("source", "model", "path")
                          and isinstance(v, str) and (base / v).exists() else v)
                      for k, v in item.items()}
        else:
            problems.add(where, f"{here}: a model is a catalog key, a folder, a .yaml spec, a "
                                f"hub id or a mapping, got {item!r}", items, index)
            continue
        try:
            spec = resolve_model(source, where=here)
        except (ModelSourceError, UnknownModelError) as error:
            message = str(error)
            problems.add(where, message if message.startswith(here) else f"{here}: {message}",
                         items, index)
            continue
        name = item if isinstance(item, str) else spec.key
        planned[name] = (spec.key, source)
    return planned


def _plan_datasets(entry: Mapping[str, Any], where: str, base: Path, reads_data: Mapping | None,
                   problems: Problems) -> dict[str, tuple[str, str]]:
    """``{name in the grid: (store key, source for the notebook)}`` of an analysis's datasets.

    A dataset is a key under the data root or a BEIR folder (a path with a ``/``, relative to
    the grid's base). A folder is keyed by its name and a hash of its files
    (:func:`robustir.data.dataset_key`), so that another folder of the same name never
    replaces its results. When the notebook reads data (``reads_data``: its defaults merged
    with the analysis's parameters, else None), a key must be a registry entry or a folder
    under the data root.
    """
    from robustir.data import DATASETS, check_name, dataset_folder, dataset_key, is_dataset_path

    items = _nonempty_list(problems, entry, "datasets", where)
    planned: dict[str, tuple[str, str]] = {}
    for index, item in enumerate(items):
        here = f"datasets[{index}]"
        if not isinstance(item, str) or not item:
            problems.add(where, f"{here}: a dataset is a key or a folder, got {item!r}",
                         items, index)
        elif is_dataset_path(item):
            folder = dataset_folder(item, base=base)
            if not folder.is_dir():
                problems.add(where, f"{here}: dataset folder {item!r} not found (looked in "
                                    f"{folder})", items, index)
            else:
                planned[item] = (dataset_key(folder), str(folder))
        else:
            try:
                check_name(item, "dataset")
            except ValueError as error:
                problems.add(where, f"{here}: {error}", items, index)
                continue
            root = (reads_data or {}).get(DATA_ROOT_PARAMETER)
            if (reads_data is not None and item not in DATASETS
                    and not dataset_folder(item, root, base=base).is_dir()):
                problems.add(where, f"{here}: unknown dataset {item!r}: not in the registry "
                                    f"(see `robustir datasets`) and no folder "
                                    f"{dataset_folder(item, root, base=base)}", items, index)
            else:
                planned[item] = (item, item)
    return planned


def _check_keys(problems: Problems, entry: Mapping[str, Any], allowed: set[str],
                where: str) -> None:
    for key in sorted(set(entry) - allowed, key=str):
        problems.add(where, f"unknown field(s) [{key!r}]; allowed: {sorted(allowed)}", entry, key)


def _plan_analysis(entry: Any, where: str, base: Path, default_store_parameter: str,
                   problems: Problems) -> list[Job]:
    """The jobs of one analysis; problems are recorded, and an analysis with any gives none."""
    before = len(problems.found)
    if not isinstance(entry, dict):
        problems.add(where, f"an analysis must be a mapping, got {entry!r}")
        return []
    _check_keys(problems, entry, _ANALYSIS_KEYS, where)
    for field in ("experiment", "notebook"):
        if not isinstance(entry.get(field), str) or not entry[field]:
            problems.add(where, f"'{field}' is required (a non-empty string)", entry, field)
    notebook = base / str(entry.get("notebook") or "")
    if isinstance(entry.get("notebook"), str) and entry["notebook"] and not notebook.is_file():
        problems.add(where, f"notebook {entry['notebook']!r} not found (looked in {notebook})",
                     entry, "notebook")
    has_notebook = notebook.is_file()
    models = _plan_models(entry, where, base, problems)
    parameters = _mapping(problems, entry, "parameters", where, {})
    variants = _mapping(problems, entry, "variants", where, {"clean": {}})
    if "variants" in entry and not variants:
        problems.add(where, "'variants' must name at least one variant", entry, "variants")
    for name, extra in variants.items():
        if extra is not None and not isinstance(extra, dict):
            problems.add(where, f"variant {name!r} must be a mapping of parameters, got "
                                f"{extra!r}", variants, name)
    seeds = entry.get("seeds", [None])
    if not isinstance(seeds, list) or not seeds or not all(s is None or _is_int(s) for s in seeds):
        problems.add(where, f"'seeds' must be a non-empty list of integers, got {seeds!r}",
                     entry, "seeds")
    model_parameters = _mapping(problems, entry, "model_parameters", where, {})
    unknown_models = sorted(set(model_parameters) - set(models), key=str)
    if models and unknown_models:
        problems.add(where, f"model_parameters names {unknown_models}, which are not in "
                            f"models {list(models)}", entry, "model_parameters")
    store_parameter = entry.get("store_parameter", default_store_parameter)
    set_by_runner = {store_parameter: "it receives the results-store root",
                     "model": "from 'models'", "dataset": "from 'datasets'"}
    if isinstance(seeds, list) and any(s is not None for s in seeds):
        set_by_runner["seed"] = "from 'seeds'"
    for container in (parameters, *model_parameters.values(), *variants.values()):
        for name in set(set_by_runner) & set(container if isinstance(container, dict) else ()):
            problems.add(where, f"parameter {name!r} is set by the runner "
                                f"({set_by_runner[name]}); remove it from the grid",
                         container, name)
    reads_data = None
    if has_notebook:
        defaults = notebook_defaults(notebook)
        if DATA_ROOT_PARAMETER in defaults:
            reads_data = {**defaults, **parameters}
        check_parameters(problems, f"{where}: parameters", notebook, parameters,
                         runner_sets=tuple(set_by_runner))
        for name, extra in model_parameters.items():
            if isinstance(extra, dict):
                check_parameters(problems, f"{where}: model_parameters[{name!r}]", notebook,
                                 extra)
            elif extra is not None:
                problems.add(where, f"model_parameters[{name!r}] must be a mapping of "
                                    f"parameters, got {extra!r}", model_parameters, name)
        for name, extra in variants.items():
            if isinstance(extra, dict):
                check_parameters(problems, f"{where}: variants[{name!r}]", notebook, extra)
    datasets = _plan_datasets(entry, where, base, reads_data, problems)
    if entry.get("experiment") == VARIATIONS_EXPERIMENT:
        for container, label in [(parameters, "parameters"),
                                 *((extra, f"variants[{name!r}]") for name, extra in
                                   variants.items() if isinstance(extra, dict))]:
            if FAMILY_PARAMETER in container:
                check_family(problems, f"{where}: {label}", container[FAMILY_PARAMETER],
                             container)
    if len(problems.found) > before:
        return []
    sha = _file_sha(notebook)
    jobs = []
    for (name, (model, source)), (dataset, data_source), (variant, extra), seed in \
            itertools.product(models.items(), datasets.values(), variants.items(), seeds):
        job_parameters = {**parameters, **(model_parameters.get(name) or {}),
                          **(extra or {}), "model": source, "dataset": data_source}
        if seed is not None:
            job_parameters["seed"] = seed
        jobs.append(Job(entry["experiment"], entry["notebook"], sha, model, dataset,
                        str(variant), seed, job_parameters, store_parameter))
    return jobs


def _plan_aggregates(raw: Mapping[str, Any], base: Path, store_parameter: str,
                     problems: Problems) -> list[Aggregate]:
    items = raw.get("aggregates") or []
    if not isinstance(items, list):
        problems.add("", f"'aggregates' must be a list, got {items!r}", raw, "aggregates")
        return []
    aggregates = []
    for index, entry in enumerate(items):
        where = f"aggregates[{index}]"
        if not isinstance(entry, dict):
            problems.add(where, f"an aggregate must be a mapping, got {entry!r}", items, index)
            continue
        _check_keys(problems, entry, _AGGREGATE_KEYS, where)
        notebook = base / str(entry.get("notebook") or "")
        if not entry.get("notebook") or not notebook.is_file():
            problems.add(where, f"notebook {entry.get('notebook')!r} not found", entry,
                         "notebook")
            continue
        parameters = _mapping(problems, entry, "parameters", where, {})
        aggregate_store = entry.get("store_parameter", store_parameter)
        check_parameters(problems, f"{where}: parameters", notebook, parameters,
                         runner_sets=(aggregate_store,))
        aggregates.append(Aggregate(entry["notebook"], _file_sha(notebook), parameters,
                                    aggregate_store))
    return aggregates


def load_grid(path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None) -> Grid:
    """Read a grid file, check all of it and expand it into jobs.

    Every model and dataset is resolved, and every parameter checked against its notebook's
    ``parameters`` cell (:mod:`robustir.grid_checks`), before any job could start.

    Args:
        path: The YAML grid, e.g. ``configs/default.yaml``.
        base: Directory that relative paths in the grid are resolved against (default: the
            working directory, i.e. the repository root when run through ``make``).

    Returns:
        The grid with every job planned in file order (analysis, then model, dataset, variant,
        seed).

    Raises:
        robustir.grid_checks.GridError: The file is missing or not YAML, or has problems; the message lists every
            problem, each with the file, its line, the entry (``analyses[2]``) and the field.

    Used in the book: "Reproducing at paper scale".
    """
    path = Path(path)
    base = Path(base) if base is not None else Path.cwd()
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GridError(f"grid file {path} not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise GridError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise GridError(f"{path}: the grid must be a mapping with 'analyses', got {raw!r}")
    problems = Problems(path)
    _check_keys(problems, raw, _GRID_KEYS, "")
    store_parameter = raw.get("store_parameter", "output")
    analyses = raw.get("analyses")
    if not isinstance(analyses, list):
        problems.add("", f"'analyses' must be a list, got {analyses!r}", raw, "analyses")
        analyses = []
    jobs: list[Job] = []
    for index, entry in enumerate(analyses):
        jobs.extend(_plan_analysis(entry, f"analyses[{index}]", base, store_parameter, problems))
    labels = [job.label for job in jobs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        problems.add("", f"several jobs would write the same entry: {duplicates}", raw,
                     "analyses")
    aggregates = _plan_aggregates(raw, base, store_parameter, problems)
    workers = raw.get("workers", 1)
    timeout_s = raw.get("timeout_s", 3600)
    for field, value in (("workers", workers), ("timeout_s", timeout_s)):
        if not _is_int(value) or value < 1:
            problems.add("", f"'{field}' must be a positive integer, got {value!r}", raw, field)
    for field in ("results", "runs_dir"):
        if field in raw and (not isinstance(raw[field], str) or not raw[field]):
            problems.add("", f"'{field}' must be a folder name, got {raw[field]!r}", raw, field)
    problems.raise_if_any()
    base = base.resolve()
    return Grid(path, base, (base / raw.get("results", "results")).resolve(),
                (base / raw.get("runs_dir", "book/runs")).resolve(), workers, timeout_s,
                tuple(jobs), tuple(aggregates))


def job_finished(grid: Grid, job: Job) -> bool:
    """Whether ``job`` has finished with its current notebook and parameters (module docstring).

    Used in the book: "Reproducing at paper scale" (what a rerun skips).
    """
    entry = grid.entry_dir(job)
    try:
        record = json.loads((entry / JOB_RECORD).read_text(encoding="utf-8"))
        summary = json.loads((entry / "summary.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not (isinstance(record, dict) and isinstance(summary, dict)
            and record.get("job_hash") == job.job_hash
            and record.get("entry_params_hash") == summary.get("params_hash")):
        return False
    problems = job_record_problems(entry, record)
    executed = grid.notebook_path(job)
    if not executed.is_file():
        problems.append(f"its executed notebook {executed} is missing")
    if problems:
        logger.warning("%s will run again: %s", job.label, "; ".join(problems))
    return not problems


def job_record_problems(entry: Path, record: Mapping[str, Any] | None = None) -> list[str]:
    """What is wrong with a results entry the runner recorded as finished (empty: nothing).

    Every file listed in its ``job.json`` must exist with its recorded SHA-256, and the files
    must agree with each other (:func:`robustir.results.verify_entry`). Records written before
    checksums were recorded get the second check only.

    Args:
        entry: The entry directory.
        record: Its ``job.json``, when already read.
    """
    if record is None:
        try:
            record = json.loads((entry / JOB_RECORD).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return [f"{JOB_RECORD} cannot be read ({error})"]
    files = record.get("files") if isinstance(record, dict) else None
    return verify_entry(entry, files if isinstance(files, dict) else None)


def prepare_for_book(notebook_path: Path) -> None:
    """Make an executed notebook ready to be rendered as it is, in place.

    Tags the ``parameters`` and ``injected-parameters`` cells ``remove-input`` (papermill cannot
    hide the cell it injects; environment.md §4.4, pitfall 4), folds the input of every other
    code cell behind a "show code" toggle (``hide-input``; a cell tagged ``show-input`` stays
    open), so that a Results page reads as results first, and sets the notebook's
    ``mystnb.execution_mode`` to ``off``, so the book never executes it again (pitfall 1).
    """
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    notebook.metadata.setdefault("mystnb", {})["execution_mode"] = "off"
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if any(tag in tags for tag in HIDDEN_INPUT_TAGS):
            added = "remove-input"
        elif not set(tags) & {"remove-input", "hide-input", "show-input", "remove-cell"}:
            added = "hide-input"
        else:
            continue
        if added not in tags:
            cell.setdefault("metadata", {})["tags"] = [*tags, added]
    nbformat.write(notebook, notebook_path)


def execute_notebook(source: Path, output: Path, parameters: Mapping[str, Any], *,
                     cwd: Path, timeout_s: int,
                     decorate: Callable[[Path], None] | None = None) -> None:
    """Execute ``source`` with papermill into ``output``, atomically, with parameter cells hidden.

    A py:percent source is converted with jupytext to a temporary ``.ipynb`` first (papermill
    needs a path; environment.md §5). The executed notebook is written under a temporary name
    beside ``output`` and renamed into place only after the last cell succeeded. The kernel
    dies with the process that runs this (:class:`robustir.processes.OwnedKernelManager`).

    Raises:
        ValueError: A parameter name is not a Python identifier (papermill pastes names into
            the notebook as code).
        papermill.PapermillExecutionError: A cell raised; the partial notebook is kept as
            ``<output stem>.failed.ipynb`` for inspection.
    """
    import jupytext
    import papermill

    unsafe = [name for name in parameters if not (isinstance(name, str) and name.isidentifier())
              or keyword.iskeyword(name)]
    if unsafe:
        raise ValueError(f"parameter names {unsafe} are not Python identifiers; {source} "
                         "was not executed")

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".tmp-{uuid.uuid4().hex}-{output.name}")
    with tempfile.TemporaryDirectory(prefix="robustir-nb-") as scratch:
        if source.suffix == ".ipynb":
            converted = source
        else:
            converted = Path(scratch) / f"{source.stem}.ipynb"
            jupytext.write(jupytext.read(source), converted)
        try:
            papermill.execute_notebook(
                str(converted), str(partial), parameters=dict(parameters), kernel_name="python3",
                cwd=str(cwd), progress_bar=False, execution_timeout=timeout_s,
                kernel_manager_class=OwnedKernelManager)
        except BaseException:
            if partial.exists():
                os.replace(partial, output.with_name(f"{output.stem}.failed.ipynb"))
            raise
    prepare_for_book(partial)
    if decorate is not None:
        decorate(partial)
    os.replace(partial, output)


def execute_job(grid: Grid, job: Job, *, force: bool = False) -> str:
    """Run one job to the end and record it; returns the job's label.

    The job holds its lock (:func:`robustir.processes.job_lock`) while it runs; a job that
    another runner finished while this one waited for the lock is not run again, unless
    ``force``. The record (``job.json``, written last) lists the SHA-256 of every file of the
    entry, which :func:`job_finished` checks.

    Raises:
        RuntimeError: The notebook ran but wrote no results entry where the grid expects it
            (the analysis's ``experiment`` or variant names do not match the notebook's), or
            an entry that does not verify.
    """
    from robustir.book_pages import decorate_run_page

    entry = grid.entry_dir(job)
    with job_lock(entry, job.label):
        if not force and job_finished(grid, job):
            logger.info("%s was finished by another runner", job.label)
            return job.label
        logger.info("running %s", job.label)
        parameters = {**job.parameters, job.store_parameter: str(grid.results)}
        executed = grid.notebook_path(job)
        defaults = notebook_defaults(grid.base / job.notebook)
        execute_notebook(grid.base / job.notebook, executed, parameters,
                         cwd=grid.base, timeout_s=grid.timeout_s,
                         decorate=lambda path: decorate_run_page(path, job, defaults=defaults))
        try:
            summary = json.loads((entry / "summary.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RuntimeError(
                f"{job.notebook} ran to the end but wrote no results entry at {entry}; the "
                "grid's experiment, model, dataset, variant and seed must be the keys the "
                "notebook writes"
            ) from None
        problems = verify_entry(entry)
        if problems:
            raise RuntimeError(f"{job.notebook} wrote an entry that does not verify at {entry}: "
                               + "; ".join(problems))
        files = {path.name: file_sha256(path) for path in sorted(entry.iterdir())
                 if path.is_file() and path.name != JOB_RECORD}
        atomic_write_text(entry / JOB_RECORD, json.dumps({
            "job_hash": job.job_hash,
            "entry_params_hash": summary.get("params_hash"),
            "notebook": job.notebook,
            "notebook_sha": job.notebook_sha,
            "parameters": dict(job.parameters),
            "executed_notebook": str(executed.relative_to(grid.runs_dir)),
            "files": files,
        }, sort_keys=True, indent=2) + "\n")
    return job.label


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _start_worker(parent_pid: int, workers: int) -> None:
    """Initializer of a local worker process: owned by the runner, with its share of cores."""
    start_worker(parent_pid)
    _share_cores(workers)


def _share_cores(workers: int) -> None:
    """Give each of ``workers`` parallel jobs an equal share of the cores (at least one).

    Every kernel would otherwise start as many math threads as there are cores, and
    oversubscribed OpenMP threads slow each other down several-fold. Variables the user has
    set are kept. Runs in each worker process, whose kernels inherit its environment.
    """
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, threads)


def corpus_key(job: Job) -> str | None:
    """The corpus embeddings a job reads: the model's forward pass and the dataset.

    The forward pass is :func:`robustir.encode.forward_identity`, the same definition the
    embedding cache keys on, so jobs with equal keys share one corpus encoding through the
    cache (catalog siblings included); ``None`` for systems without a costly encoding (BM25,
    static vectors).
    """
    from robustir.cache import fingerprint
    from robustir.encode import forward_identity
    from robustir.model_sources import resolve_model

    spec = resolve_model(job.model_source)
    if spec.backend != "transformers":
        return None
    identity = forward_identity(spec, max_length=job.parameters.get("max_length"),
                                dtype=job.parameters.get("dtype"),
                                device=job.parameters.get("device"))
    return fingerprint([identity, job.dataset])


def leaders_first(jobs: Iterable[Job]) -> tuple[list[Job], dict[str, list[Job]]]:
    """Order jobs so that each corpus is encoded once, not by two jobs at the same time.

    The first job of each :func:`corpus_key` (its leader) runs before the other jobs of that
    key, which wait for it and then read the corpus from the cache; jobs without a key never
    wait.

    Returns:
        The jobs that may start now (the leaders first, then the rest, each in grid order) and,
        per leader label, the jobs that wait for it.
    """
    leaders: dict[tuple, Job] = {}
    free: list[Job] = []
    waiting: dict[str, list[Job]] = {}
    for job in jobs:
        key = corpus_key(job)
        if key is None:
            free.append(job)
        elif key not in leaders:
            leaders[key] = job
        else:
            waiting.setdefault(leaders[key].label, []).append(job)
    return list(leaders.values()) + free, waiting


def _drive(jobs: list[Job], submit: Callable[[Job], Any], first_done: Callable[[list], Iterable],
           on_done: Callable[[str], None]) -> dict[str, str]:
    """Run ``jobs`` through an executor's ``submit``, releasing each leader's followers when it
    ends (:func:`leaders_first`). ``first_done`` waits for at least one of the futures given and
    returns the finished ones. Returns the failures, by job label."""
    ready, waiting = leaders_first(jobs)
    running = {submit(job): job for job in ready}
    failures: dict[str, str] = {}
    while running:
        for future in first_done(list(running)):
            job = running.pop(future)
            try:
                on_done(future.result())
            except Exception as error:  # noqa: BLE001 - one failed job must not stop the others
                logger.error("job %s failed: %s", job.label, error)
                failures[job.label] = f"{type(error).__name__}: {error}"
            # followers run even after a failed leader: each then encodes the corpus itself
            for follower in waiting.pop(job.label, []):
                running[submit(follower)] = follower
    return failures


def _run_local(grid: Grid, jobs: list[Job], workers: int, force: bool,
               on_done: Callable[[str], None]) -> dict[str, str]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_start_worker,
            initargs=(os.getpid(), workers)) as pool:
        def submit(job: Job) -> concurrent.futures.Future:
            with interrupts_held():  # the pool may start a worker here
                return pool.submit(execute_job, grid, job, force=force)

        try:
            return _drive(
                jobs, submit,
                lambda futures: concurrent.futures.wait(
                    futures, return_when=concurrent.futures.FIRST_COMPLETED).done,
                on_done,
            )
        except BaseException:  # Ctrl-C, or a bug: end the jobs in flight, do not wait for them
            pool.shutdown(wait=False, cancel_futures=True)
            end_children()
            raise


def _run_dask(grid: Grid, jobs: list[Job], workers: int, scheduler: str | None, force: bool,
              on_done: Callable[[str], None]) -> dict[str, str]:
    from dask.distributed import Client, LocalCluster, wait

    cluster = None
    if scheduler is None:
        # Worker processes, one thread each: jobs do not compete for the same cores, and
        # papermill's own event loop never meets the one that runs an in-process worker
        # ("This event loop is already running").
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    client = Client(cluster if cluster is not None else scheduler)
    try:
        return _drive(
            jobs, lambda job: client.submit(execute_job, grid, job, force=force, pure=False),
            lambda futures: wait(futures, return_when="FIRST_COMPLETED").done,
            on_done,
        )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_grid(grid: Grid, *, force: bool = False, executor: str = "local",
             workers: int | None = None, scheduler: str | None = None) -> GridReport:
    """Run every job of ``grid`` that has not finished (or every job with ``force``).

    Args:
        grid: From :func:`load_grid`.
        force: Rerun finished jobs too (their entries are replaced atomically).
        executor: ``"local"`` (a process pool on this machine) or ``"dask"`` (a Dask
            distributed cluster: ``scheduler`` if given, else a local in-process cluster).
        workers: Parallel jobs; default the grid's ``workers``.
        scheduler: Address of a running Dask scheduler, e.g. ``tcp://10.0.0.1:8786``; only with
            ``executor="dask"``. Workers must see the same file system (the store and notebooks).

    Returns:
        Which jobs were skipped and which ran.

    Raises:
        RunError: At least one job failed; the others still ran and were recorded.
        ValueError: Unknown executor, or a scheduler without the Dask executor.
        OSError: The results store or the executed notebooks' folder is not writable;
            checked before any job starts.
        robustir.data.MissingDatasetsError: A dataset the jobs to run read is missing or
            incomplete; checked before any job starts (:mod:`robustir.preflight`).

    Used in the book: "Reproducing at paper scale" (``robustir run``).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    workers = workers or grid.workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    pending = [job for job in grid.jobs if force or not job_finished(grid, job)]
    skipped = [job.label for job in grid.jobs if job not in pending]
    check_grid_datasets(grid, pending)
    if pending:
        writable_folder(grid.results, "the results store")
        writable_folder(grid.runs_dir, "the executed notebooks' folder")
    logger.info("%s: %d job(s), %d finished, %d to run with the %s executor (%d worker(s))",
                grid.path, len(grid.jobs), len(skipped), len(pending), executor, workers)
    ran: list[str] = []

    def finished(label: str) -> None:
        # Logged here, in the parent: worker processes do not share its logging setup.
        ran.append(label)
        logger.info("finished %s (%d of %d)", label, len(ran), len(pending))

    if pending:
        if executor == "local":
            failures = _run_local(grid, pending, workers, force, finished)
        else:
            failures = _run_dask(grid, pending, workers, scheduler, force, finished)
        if failures:
            raise RunError(failures)
    return GridReport(skipped=skipped, ran=sorted(ran))


def store_fingerprint(store: ResultStore) -> str:
    """Hash of every finished entry's location and parameter hash in ``store``.

    Changes whenever an entry is added, removed or rewritten with other parameters; aggregate
    notebooks are re-executed only then.
    """
    listing = []
    if store.root.is_dir():
        for summary in sorted(store.root.glob("*/*/*/*/seed-*/summary.json")):
            relative = summary.relative_to(store.root)
            if not any(part.startswith(".") for part in relative.parts):
                recorded = json.loads(summary.read_text(encoding="utf-8")).get("params_hash")
                listing.append([str(relative.parent), recorded])
    return params_hash({"entries": listing})


@functools.cache
def library_sha() -> str:
    """SHA-256 of the ``robustir`` package's Python sources, in path order.

    Part of an aggregate's key: a change to the library (a verdict rule, a table's layout)
    re-executes the aggregates, which a version number alone, unchanged between commits, would
    not.
    """
    root = Path(robustir.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_aggregates(grid: Grid, *, force: bool = False,
                   only: Iterable[str] | None = None) -> list[str]:
    """Execute the grid's aggregate notebooks whose inputs changed since their last execution.

    An aggregate's key combines its source hash, its parameters, :func:`store_fingerprint` and
    :func:`library_sha`; it is kept beside the executed notebook as ``<stem>.json``.

    Args:
        grid: From :func:`load_grid`.
        force: Execute every aggregate.
        only: Execute only aggregates with these stems.

    Returns:
        Stems of the aggregates executed.

    Used in the book: every results chapter (the executed aggregates are its pages).
    """
    fingerprint = store_fingerprint(grid.store)
    executed = []
    for aggregate in grid.aggregates:
        if only is not None and aggregate.name not in set(only):
            continue
        output = grid.aggregate_path(aggregate)
        record_path = output.with_suffix(".json")
        key = params_hash({"notebook_sha": aggregate.notebook_sha,
                           "parameters": dict(aggregate.parameters),
                           "store": fingerprint, "robustir": robustir.__version__,
                           "library": library_sha()})
        try:
            current = json.loads(record_path.read_text(encoding="utf-8")).get("key")
        except (OSError, json.JSONDecodeError):
            current = None
        if not force and current == key and output.is_file():
            logger.info("aggregate %s is up to date", aggregate.name)
            continue
        logger.info("executing aggregate %s", aggregate.name)
        parameters = {**aggregate.parameters, aggregate.store_parameter: str(grid.results)}
        execute_notebook(grid.base / aggregate.notebook, output, parameters,
                         cwd=grid.base, timeout_s=grid.timeout_s)
        atomic_write_text(record_path, json.dumps({"key": key}) + "\n")
        executed.append(aggregate.name)
    return executed
