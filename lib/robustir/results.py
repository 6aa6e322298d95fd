"""The results store: one directory per finished run, written atomically.

Layout (architecture.md, "Results store")::

    <root>/<experiment>/<model>/<dataset>/<variant>/seed-<seed>/
        params.json     every parameter of the run, library versions, model revision, data checksum
        per_query.csv   long format: ``query_id, measure, value`` (one row per query and measure)
        summary.json    ``{"metrics": {measure: mean}, "n_queries": ..., "params_hash": ...}``

An entry is *finished* when its ``summary.json`` exists and the parameter hash recorded there
equals the hash of the parameters a new run would use; the grid runner skips finished entries
whose files also verify. :func:`verify_entry` checks an entry's files against each other (the
parameter hash, the number of queries, complete lines) and against checksums a caller recorded
(the runner's ``job.json``); ``robustir verify`` applies it to every entry of a store, and
:meth:`ResultStore.read_per_query` refuses a ``per_query.csv`` that
holds another number of queries than its ``summary.json`` says.
Entries are first written to a temporary directory ``<root>/.tmp-*`` and then renamed into
place, so a killed writer never leaves a half-written entry behind: a reader sees either the
old entry, no entry, or the complete new one.

Aggregate notebooks read the store only through :func:`ResultStore.read_summaries` and
:func:`ResultStore.read_per_query`.

Used in the book: chapter "Reproducing at paper scale" (``book/reproducing.md``) describes the
store; every results chapter reads it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from robustir.provenance import file_sha256

logger = logging.getLogger(__name__)

PER_QUERY_COLUMNS = ("query_id", "measure", "value")
"""Columns of ``per_query.csv``, in this order."""

TEMPORARY_PREFIX = ".tmp-"
"""Prefix of the store's temporary directories (``make clean`` removes them)."""

_ENTRY_KEYS = ("model", "dataset", "variant", "seed")


class ResultStoreError(ValueError):
    """A results-store entry or argument is malformed; the message names the file and field."""


def _canonical_json(params: Mapping[str, Any]) -> str:
    """Serialise ``params`` with sorted keys and no whitespace, so equal dicts give equal text."""
    try:
        return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except TypeError as error:
        raise ResultStoreError(
            f"run parameters must be JSON values (str, int, float, bool, None, list, dict): {error}; "
            "convert paths with str() and arrays with .tolist() before recording them"
        ) from error


def params_hash(params: Mapping[str, Any]) -> str:
    """Hash of a run's parameters, independent of key order.

    Args:
        params: The run's parameters (JSON values only). Two dicts with the same keys and
            values give the same hash whatever their insertion order.

    Returns:
        The first 16 hexadecimal digits of the SHA-256 of the canonical JSON text.

    Raises:
        ResultStoreError: A value is not JSON-serialisable.

    Examples:
        >>> params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1})
        True

    Used in the book: "Reproducing at paper scale" (when a rerun skips a job).
    """
    return hashlib.sha256(_canonical_json(params).encode("utf-8")).hexdigest()[:16]


def is_finished(entry: str | os.PathLike[str], params: Mapping[str, Any]) -> bool:
    """Whether ``entry`` holds a finished run with exactly these parameters.

    Args:
        entry: An entry directory (from :meth:`ResultStore.entry_dir`).
        params: The parameters the caller would run with.

    Returns:
        True when ``entry/summary.json`` exists, is valid JSON and records
        ``params_hash(params)``; False otherwise (missing, unreadable, or other parameters).

    Used in the book: "Reproducing at paper scale" (``robustir run --only-missing``).
    """
    summary_path = Path(entry) / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, json.JSONDecodeError) as error:
        logger.warning("treating %s as unfinished: %s", summary_path, error)
        return False
    return isinstance(summary, dict) and summary.get("params_hash") == params_hash(params)


def _read_json_file(path: Path) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, what is wrong)`` for a missing or unreadable JSON file."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{path.name} cannot be read ({error})"


def _read_per_query_csv(path: Path) -> pd.DataFrame:
    """``per_query.csv`` with ``query_id`` and ``measure`` as strings; :class:`ResultStoreError`
    naming the file when it cannot be read or has other columns."""
    try:
        table = pd.read_csv(path, dtype={"query_id": str, "measure": str},
                            keep_default_na=False, na_values=[""])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as error:
        raise ResultStoreError(f"{path}: cannot read per-query scores: {error}") from None
    if list(table.columns) != list(PER_QUERY_COLUMNS):
        raise ResultStoreError(
            f"{path}: columns {list(table.columns)}, expected {list(PER_QUERY_COLUMNS)}")
    return table


def _query_count_problem(table: pd.DataFrame, summary: Mapping[str, Any]) -> str | None:
    n_queries = summary.get("n_queries")
    found = int(table["query_id"].nunique())
    if isinstance(n_queries, int) and found != n_queries:
        return (f"per_query.csv holds {found} queries where summary.json says {n_queries} "
                "(a truncated or replaced file)")
    return None


def verify_entry(entry: str | os.PathLike[str],
                 checksums: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with the files of a finished entry; empty when they verify.

    Checks that ``summary.json`` and ``params.json`` are readable and agree (the parameter
    hash), that ``per_query.csv`` is complete (its last line ends) and holds ``n_queries``
    queries, and, when given, that each file has its recorded SHA-256.

    Args:
        entry: An entry directory.
        checksums: ``{file name: sha256}`` recorded when the entry was finished (the runner's
            ``job.json``); every file named must exist and match.

    Returns:
        One sentence per problem, each naming the file.

    Used in the book: "Reproducing at paper scale" (``robustir verify``).
    """
    entry = Path(entry)
    problems = []
    for name, expected in (checksums or {}).items():
        path = entry / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(path) != expected:
            problems.append(f"{name} does not match its recorded checksum")
    summary, problem = _read_json_file(entry / "summary.json")
    if problem is None and not (isinstance(summary, dict)
                                and isinstance(summary.get("metrics"), dict)):
        problem = "summary.json lacks its 'metrics'"
    if problem is not None:
        return [*problems, problem]
    params, problem = _read_json_file(entry / "params.json")
    if problem is None and not isinstance(params, dict):
        problem = "params.json is not a JSON object"
    if problem is None and params_hash(params) != summary.get("params_hash"):
        problem = "params.json does not match the parameter hash in summary.json"
    if problem is not None:
        problems.append(problem)
    per_query = entry / "per_query.csv"
    try:
        table = _read_per_query_csv(per_query)
        with per_query.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                problems.append("per_query.csv ends in the middle of a line (a truncated file)")
        if (problem := _query_count_problem(table, summary)) is not None:
            problems.append(problem)
    except FileNotFoundError:
        problems.append("per_query.csv is missing")
    except (ResultStoreError, OSError) as error:
        problems.append(f"per_query.csv cannot be read ({str(error).split(': ', 1)[-1]})")
    return list(dict.fromkeys(problems))


def _path_component(field: str, value: object) -> str:
    """One directory name of an entry path, checked to be a single safe component."""
    text = str(value)
    if not text or "/" in text or "\\" in text or text.startswith(".") or text != text.strip():
        raise ResultStoreError(
            f"{field}={value!r} cannot name a results-store directory: use a non-empty name "
            "without slashes, surrounding spaces or a leading dot"
        )
    return text


def _seed_component(seed: int | None) -> str:
    if seed is None:
        return "seed-none"
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ResultStoreError(f"seed={seed!r} must be an int (or None for a deterministic run)")
    return f"seed-{seed}"


def _parse_seed(name: str, path: Path) -> int | None:
    if not name.startswith("seed-"):
        raise ResultStoreError(f"{path}: expected a directory named seed-<int> or seed-none")
    value = name[len("seed-"):]
    if value == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise ResultStoreError(f"{path}: seed directory {name!r} is not seed-<int>") from None


def per_query_long(per_query_wide: pd.DataFrame) -> pd.DataFrame:
    """Turn a wide per-query table (index query id, one column per measure) into the long form.

    Args:
        per_query_wide: e.g. the output of ``robustir.metrics.per_query_metrics``.

    Returns:
        A DataFrame with columns ``query_id, measure, value``, sorted by query id then measure.

    Used in the book: "Evaluation" (the per-query table behind each mean).
    """
    frame = per_query_wide.copy()
    frame.index = frame.index.astype(str)
    frame.index.name = "query_id"
    long = frame.reset_index().melt(id_vars="query_id", var_name="measure", value_name="value")
    return long.sort_values(["query_id", "measure"], kind="stable").reset_index(drop=True)


def _check_per_query(per_query: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in PER_QUERY_COLUMNS if c not in per_query.columns]
    if missing:
        raise ResultStoreError(
            f"per_query lacks column(s) {missing}; it must be long with columns "
            f"{list(PER_QUERY_COLUMNS)} (convert a wide table with robustir.results.per_query_long)"
        )
    table = per_query.loc[:, list(PER_QUERY_COLUMNS)].copy()
    table["query_id"] = table["query_id"].astype(str)
    table["measure"] = table["measure"].astype(str)
    duplicated = table.duplicated(["query_id", "measure"])
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise ResultStoreError(
            f"per_query has {int(duplicated.sum())} duplicate (query_id, measure) rows, "
            f"e.g. ({first['query_id']!r}, {first['measure']!r}); each pair must appear once"
        )
    try:
        table["value"] = pd.to_numeric(table["value"], errors="raise").astype(float)
    except (TypeError, ValueError) as error:
        raise ResultStoreError(f"per_query column 'value' must be numeric: {error}") from None
    return table


def _move_into_place(staging: Path, entry: Path, root: Path, attempts: int = 20) -> list[Path]:
    """Rename ``staging`` to ``entry``, moving any existing entry aside first.

    A directory cannot be renamed over a non-empty one, so an existing entry is renamed to a
    temporary name and the rename retried; another process writing the same entry at the same
    time (e.g. the clean run shared by several query-variation jobs) just makes us retry.

    Returns:
        The directories moved aside, for the caller to delete.
    """
    replaced = []
    for _ in range(attempts):
        try:
            os.replace(staging, entry)
            return replaced
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        aside = root / f"{TEMPORARY_PREFIX}old-{uuid.uuid4().hex}"
        try:
            os.replace(entry, aside)
        except FileNotFoundError:
            continue
        replaced.append(aside)
    raise ResultStoreError(f"could not move a new entry into {entry}: other writers kept "
                           f"replacing it ({attempts} attempts)")


class ResultStore:
    """A results store rooted at a directory (created on first write).

    Args:
        root: The store's root directory, e.g. ``results``.

    Used in the book: every results chapter (through the aggregate notebooks) and
    "Reproducing at paper scale".
    """

    params_hash = staticmethod(params_hash)
    is_finished = staticmethod(is_finished)

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def entry_dir(
        self, experiment: str, model: str, dataset: str, variant: str, seed: int | None
    ) -> Path:
        """The directory of one run: ``<root>/<experiment>/<model>/<dataset>/<variant>/seed-<seed>``.

        Args:
            experiment: The analysis, e.g. ``"evaluate"``, ``"query_variations"``.
            model: A catalog key, e.g. ``"minilm"``.
            dataset: A dataset key, e.g. ``"scifact"``.
            variant: What distinguishes runs of the same model and dataset, e.g. a
                perturbation family or ``"clean"``.
            seed: The run's seed, or None for a deterministic run (directory ``seed-none``).

        Returns:
            The entry path (not created).

        Raises:
            ResultStoreError: A component is empty, contains a slash or starts with a dot.
        """
        parts = [
            _path_component("experiment", experiment),
            _path_component("model", model),
            _path_component("dataset", dataset),
            _path_component("variant", variant),
            _seed_component(seed),
        ]
        return self.root.joinpath(*parts)

    def write_entry(
        self,
        entry: str | os.PathLike[str],
        params: Mapping[str, Any],
        per_query: pd.DataFrame,
        summary: Mapping[str, Any],
    ) -> Path:
        """Write one finished run atomically, replacing any previous entry at that place.

        The three files are written into ``<root>/.tmp-<random>/`` and the directory is then
        renamed to ``entry``. An existing entry is first renamed aside and deleted after the new
        one is in place, so at every moment the entry is either absent or complete.

        Args:
            entry: The entry directory (from :meth:`entry_dir`); must lie on the store's
                file system.
            params: Every parameter of the run (JSON values only); stored as ``params.json``
                and hashed into ``summary.json["params_hash"]``.
            per_query: Long table with columns ``query_id, measure, value``.
            summary: At least ``{"metrics": {measure: mean}}``; ``n_queries`` is filled in
                from ``per_query`` when absent.

        Returns:
            The entry path.

        Raises:
            ResultStoreError: ``per_query`` is not long-form, has duplicate rows or non-numeric
                values; ``summary`` lacks ``metrics``; a value is not JSON-serialisable.
        """
        entry = Path(entry)
        table = _check_per_query(per_query)
        if not isinstance(summary.get("metrics"), Mapping):
            raise ResultStoreError(
                "summary must contain 'metrics': a dict {measure: mean value}, "
                f"got keys {sorted(summary)}"
            )
        record = dict(summary)
        record.setdefault("n_queries", int(table["query_id"].nunique()))
        record["params_hash"] = params_hash(params)
        params_text = json.dumps(params, sort_keys=True, indent=2, allow_nan=True)
        summary_text = json.dumps(record, sort_keys=True, indent=2, allow_nan=True)

        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            (staging / "params.json").write_text(params_text + "\n", encoding="utf-8")
            table.to_csv(staging / "per_query.csv", index=False, float_format="%.10g")
            # summary.json last: its presence is what marks an entry finished.
            (staging / "summary.json").write_text(summary_text + "\n", encoding="utf-8")
            entry.parent.mkdir(parents=True, exist_ok=True)
            replaced = _move_into_place(staging, entry, self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for old in replaced:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("wrote results entry %s (params %s)", entry, record["params_hash"])
        return entry

    def entries(self, experiment: str) -> list[Path]:
        """Finished entry directories of ``experiment`` (those holding ``summary.json``), sorted."""
        base = self.root / _path_component("experiment", experiment)
        found = base.glob("*/*/*/seed-*/summary.json")
        return sorted(p.parent for p in found if not any(
            part.startswith(".") for part in p.relative_to(base).parts))

    def all_entries(self) -> list[Path]:
        """Every entry directory of every experiment (``<experiment>/<model>/<dataset>/
        <variant>/seed-*``), finished or not, sorted; hidden and temporary ones left out."""
        if not self.root.is_dir():
            return []
        return sorted(path for path in self.root.glob("*/*/*/*/seed-*") if path.is_dir() and not
                      any(part.startswith(".") for part in path.relative_to(self.root).parts))

    def leftovers(self) -> list[Path]:
        """Temporary directories of writers that were killed (``<root>/.tmp-*``), sorted."""
        return sorted(self.root.glob(f"{TEMPORARY_PREFIX}*")) if self.root.is_dir() else []

    def _entry_keys(self, experiment: str, entry: Path) -> dict[str, Any]:
        model, dataset, variant, seed_name = entry.relative_to(self.root / experiment).parts
        return {
            "model": model,
            "dataset": dataset,
            "variant": variant,
            "seed": _parse_seed(seed_name, entry),
        }

    def read_summaries(self, experiment: str) -> pd.DataFrame:
        """One row per finished entry of ``experiment``.

        Args:
            experiment: The analysis name used when writing.

        Returns:
            Columns ``model, dataset, variant, seed`` (seed is None for ``seed-none``), one column
            per measure in ``summary["metrics"]`` (named as the measure, e.g. ``nDCG@10``), then
            every other scalar summary field (``n_queries``, ``params_hash``, ...). Empty (with
            the key columns) when the experiment has no entries.

        Raises:
            ResultStoreError: A ``summary.json`` is unreadable; the message names the file.

        Used in the book: every results chapter's aggregate notebook.
        """
        rows = []
        for entry in self.entries(experiment):
            path = entry / "summary.json"
            try:
                summary = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise ResultStoreError(f"{path}: cannot read summary: {error}") from None
            row = self._entry_keys(experiment, entry)
            row.update(summary.get("metrics", {}))
            for key, value in summary.items():
                if key != "metrics" and not isinstance(value, (dict, list)):
                    row.setdefault(key, value)
            rows.append(row)
        frame = pd.DataFrame(rows, columns=None if rows else list(_ENTRY_KEYS))
        return frame

    def read_per_query(
        self,
        experiment: str,
        *,
        model: str | None = None,
        dataset: str | None = None,
        variant: str | None = None,
        seed: int | None = None,
        measures: list[str] | None = None,
    ) -> pd.DataFrame:
        """Per-query scores of ``experiment``, long format, optionally filtered.

        Args:
            experiment: The analysis name used when writing.
            model, dataset, variant, seed: Keep only entries with these keys (None: all).
            measures: Keep only these measures (None: all).

        Returns:
            Columns ``model, dataset, variant, seed, query_id, measure, value``; ``query_id``
            is always a string (BEIR ids such as ``"0001"`` keep their zeros).

        Raises:
            ResultStoreError: A ``per_query.csv`` is malformed or holds another number of
                queries than its ``summary.json`` says; the message names the file.

        Used in the book: "Generalizability" (mixed models on query-level scores) and
        "Query variations" (paired per-query tests).
        """
        wanted = {"model": model, "dataset": dataset, "variant": variant, "seed": seed}
        frames = []
        for entry in self.entries(experiment):
            keys = self._entry_keys(experiment, entry)
            if any(v is not None and keys[k] != v for k, v in wanted.items()):
                continue
            path = entry / "per_query.csv"
            table = _read_per_query_csv(path)
            summary, _ = _read_json_file(entry / "summary.json")
            problem = _query_count_problem(table, summary if isinstance(summary, dict) else {})
            if problem is not None:
                raise ResultStoreError(f"{entry}: {problem}; `robustir verify --repair "
                                       f"{self.root}` removes the entry, a rerun writes it again")
            if measures is not None:
                table = table[table["measure"].isin(measures)]
            for key in reversed(_ENTRY_KEYS):
                table.insert(0, key, keys[key])
            frames.append(table)
        if not frames:
            return pd.DataFrame(columns=[*_ENTRY_KEYS, *PER_QUERY_COLUMNS])
        return pd.concat(frames, ignore_index=True)

