"""Checks of a grid file before any job starts: every problem at once, each with its YAML line.

A grid (:mod:`robustir.runs`) is read with a YAML loader that remembers where each mapping key
and list item stands, so a problem is reported as ``grid.yaml:14: analyses[1]: ...``.
:class:`Problems` collects them and raises one :class:`GridError` listing all. The checks here
are the ones that need more than the grid itself:

* parameter names must be Python identifiers declared in the notebook's ``parameters`` cell
  (papermill pastes names into the notebook as code, so a name is never allowed to be anything
  else), and the runner's own parameters (``model``, ``dataset``, ``seed``, the store root)
  must be declared there too;
* values must be JSON values of the type of the notebook's default (an ``int`` default takes an
  integer, a ``float`` default a number, ...; a ``None`` default or one that is not a literal
  takes any JSON value);
* splits are names (:func:`robustir.data.check_name`), and the query-variation families of
  analyses of the query-variation experiment are registered ones.

Used in the book: "Reproducing at paper scale" (what ``robustir run`` checks before starting).
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from robustir.preflight import NOT_LITERAL, SPLIT_PARAMETERS, notebook_parameters

__all__ = ["GridError", "Problems", "check_parameters", "line_of", "load_yaml"]

#: The notebook parameter holding a query-variation family.
FAMILY_PARAMETER = "family"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class GridError(ValueError):
    """A grid file is malformed; the message names the file, the line, the entry and the field."""


class _LocatedDict(dict):
    """A YAML mapping with the line of the mapping (``line``) and of each key (``lines``)."""

    line: int | None = None
    lines: dict = {}


class _LocatedList(list):
    """A YAML sequence with the line of the sequence (``line``) and of each item (``lines``)."""

    line: int | None = None
    lines: list = []


class _LineLoader(yaml.SafeLoader):
    """PyYAML's safe loader, building mappings and lists that remember their lines."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode):
    data = _LocatedDict()
    data.line = node.start_mark.line + 1
    yield data
    data.update(loader.construct_mapping(node))  # merges (<<: *anchor) are flattened here
    data.lines = {loader.construct_object(key): key.start_mark.line + 1 for key, _ in node.value}


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode):
    data = _LocatedList()
    data.line = node.start_mark.line + 1
    yield data
    data.extend(loader.construct_sequence(node))
    data.lines = [item.start_mark.line + 1 for item in node.value]


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (no Python objects), keeping line numbers for :func:`line_of`.

    Raises:
        yaml.YAMLError: Not valid YAML.
    """
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass


def line_of(container: Any, key: Any = None) -> int | None:
    """The 1-based line of ``container[key]`` (of the key, for a mapping), else of
    ``container``; None for values that were not read by :func:`load_yaml`."""
    lines = getattr(container, "lines", None)
    if key is not None and lines:
        if isinstance(lines, dict) and key in lines:
            return lines[key]
        if isinstance(lines, list) and isinstance(key, int) and 0 <= key < len(lines):
            return lines[key]
    return getattr(container, "line", None)


class Problems:
    """The problems of one grid file, collected so that all are reported at once.

    Args:
        path: The grid file (named in every line of the message).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[tuple[int, str]] = []

    def __bool__(self) -> bool:
        return bool(self.found)

    def add(self, where: str, message: str, container: Any = None, key: Any = None) -> None:
        """Record ``message`` about ``where`` (e.g. ``analyses[0]``), placed at the line of
        ``container[key]``."""
        line = line_of(container, key)
        location = f"{self.path}:{line}" if line is not None else str(self.path)
        prefix = f"{location}: {where}: " if where else f"{location}: "
        self.found.append((line or 0, prefix + message))

    def raise_if_any(self) -> None:
        """Raise one :class:`GridError` listing every problem, in file order.

        Raises:
            GridError: At least one problem was recorded.
        """
        if not self.found:
            return
        messages = [message for _, message in sorted(self.found, key=lambda item: item[0])]
        if len(messages) == 1:
            raise GridError(messages[0])
        listing = "\n".join(f"  {message}" for message in messages)
        raise GridError(f"{self.path}: {len(messages)} problems; no job was started:\n{listing}")


def _json_problem(value: Any) -> str | None:
    """Why ``value`` is not a JSON value (str, number, bool, null, list, mapping with string
    keys), or None."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if isinstance(value, list):
        return next((p for p in map(_json_problem, value) if p), None)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return f"mapping keys must be strings, got {sorted(map(repr, value))}"
        return next((p for p in map(_json_problem, value.values()) if p), None)
    return f"{value!r} is a {type(value).__name__}, not a JSON value (quote it to make a string)"


def _type_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace a notebook default ``default``, or None."""
    problem = _json_problem(value)
    if problem is not None or default is None or default is NOT_LITERAL:
        return problem
    expected: tuple[type, ...]
    if isinstance(default, bool):
        expected, name = (bool,), "true or false"
    elif isinstance(default, int):
        expected, name = (int,), "an integer"
    elif isinstance(default, float):
        expected, name = (int, float), "a number"
    elif isinstance(default, str):
        expected, name = (str,), "a string"
    elif isinstance(default, (list, tuple)):
        expected, name = (list,), "a list"
    elif isinstance(default, dict):
        expected, name = (dict,), "a mapping"
    else:
        return None
    if isinstance(value, expected) and (bool in expected or not isinstance(value, bool)):
        return None
    return f"must be {name} like the notebook's default {default!r}, got {value!r}"


def check_parameters(problems: Problems, where: str, notebook: Path,
                     parameters: Mapping[str, Any], *, runner_sets: tuple[str, ...] = ()) -> None:
    """Record every parameter of ``parameters`` the notebook cannot take.

    Args:
        problems: Where to record them.
        where: The grid entry, e.g. ``analyses[0]: parameters``.
        notebook: The notebook the parameters go to.
        parameters: Name to value, as read by :func:`load_yaml` (for the lines).
        runner_sets: Parameters the runner injects itself; they must be declared too, their
            values are not checked here.
    """
    declared = notebook_parameters(notebook)
    for name in runner_sets:
        if name not in declared:
            problems.add(where, f"the notebook {notebook.name} declares no parameter {name!r} "
                                "in its parameters cell; the runner sets it", parameters)
    for name, value in parameters.items():
        if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or keyword.iskeyword(name):
            problems.add(where, f"parameter name {name!r} is not a Python identifier (letters, "
                                "digits and _, not starting with a digit)", parameters, name)
        elif name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems.add(where, f"unknown parameter {name!r}: the parameters cell of "
                                f"{notebook.name} declares {known}", parameters, name)
        elif (problem := _type_problem(value, declared[name])) is not None:
            problems.add(where, f"parameter {name!r} {problem}", parameters, name)
        elif name in SPLIT_PARAMETERS and value is not None:
            _check_split(problems, where, name, value, parameters)


def _check_split(problems: Problems, where: str, name: str, value: Any, container: Any) -> None:
    from robustir.data import check_name

    try:
        check_name(value, name)
    except ValueError as error:
        problems.add(where, str(error), container, name)


def check_family(problems: Problems, where: str, value: Any, container: Any) -> None:
    """Record a ``family`` value that names no registered query-variation family."""
    from robustir.perturb import resolve_family

    if not isinstance(value, str):
        problems.add(where, f"{FAMILY_PARAMETER!r} must be a family name, got {value!r}",
                     container, FAMILY_PARAMETER)
        return
    try:
        resolve_family(value)
    except ValueError as error:
        problems.add(where, str(error), container, FAMILY_PARAMETER)
