"""Cranfield 1400 from its original SMART-format files, read into BEIR's dict model.

The original collection (Cleverdon, 1967), distributed by the University of Glasgow's IR group
as ``cran.tar.gz`` (:data:`CRANFIELD_URL`), holds three plain-text files:

* ``cran.all.1400``: 1,400 documents, each a record ``.I <number>`` followed by the fields
  ``.T`` (title), ``.A`` (authors), ``.B`` (bibliographic source) and ``.W`` (abstract, which in
  this collection starts by repeating the title). A field's marker stands alone on its line and
  its text fills the lines after it, wrapped, with paragraphs indented by a few spaces.
* ``cran.qry``: 225 queries, ``.I <number>`` and ``.W``; the ``.I`` numbers run
  non-sequentially from 001 to 365.
* ``cranqrel``: one judgement per line, ``<query> <document> <code>``, where the query is
  numbered 1..225 in the order of ``cran.qry`` (not by its ``.I`` number), and the code is
  Cleverdon's 1 (complete answer) … 4 (minimum interest), or -1 (no interest).

The conversion is the one of the project's shared copy (``../shared/datasets/cranfield``,
environment.md §7.1):

* a field's text is its lines, each stripped of leading and trailing whitespace, joined by one
  space (blank lines dropped); spacing inside a line is kept (the abstracts have two spaces
  after many full stops);
* a document's ``_id`` is its ``.I`` number, ``title`` its ``.T`` text, ``text`` its ``.W``
  text; ``.A`` and ``.B`` are not used; a document without a field gets ``""`` for it (two
  documents, 471 and 995, are empty);
* queries are renumbered ``"1"`` … ``"225"`` in file order, as ``cranqrel`` numbers them;
* a judgement's grade (nDCG gain) is ``5 - code`` for codes 1..4 and 0 for code -1
  (:data:`GAIN_BY_CODE`); judgements are ordered by query, then by document number.

Written out by :func:`robustir.data.write_beir_folder`, this reproduces the shared copy's files
byte for byte. That was verified against a faithful SMART rendering of the shared copy (the
tests' fixture), not against the original archive, which could not be reached from the machines
the project was built on; :func:`robustir.data.download_dataset` therefore checks every
converted file against the shared copy's sha256 and stops, naming the file, on a difference.

Used in the book chapter *Datasets and evaluation protocol* (where Cranfield comes from).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: The original distribution (University of Glasgow IR group's test collections page).
CRANFIELD_URL = "http://ir.dcs.gla.ac.uk/resources/test_collections/cran/cran.tar.gz"
#: The three SMART files of the distribution: documents, queries, relevance judgements.
DOCUMENTS_FILE = "cran.all.1400"
QUERIES_FILE = "cran.qry"
JUDGEMENTS_FILE = "cranqrel"
#: Cleverdon's relevance codes and the gains the project stores for them.
GAIN_BY_CODE = {1: 4, 2: 3, 3: 2, 4: 1, -1: 0}
#: The qrels split the judgements form (the collection has no training queries).
SPLIT = "test"

_RECORD = re.compile(r"\.I(?:\s+(\S+))?\s*")
_FIELD = re.compile(r"\.([A-Z])\s*")


class SmartFormatError(ValueError):
    """A SMART-format file is malformed; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class SmartRecord:
    """One ``.I`` record of a SMART file.

    Attributes:
        number: the ``.I`` number as written (e.g. ``"001"``).
        fields: ``{marker letter: text}`` with each field's lines joined (module docstring).
        line: the line number of the ``.I`` line (1-based).
    """

    number: str
    fields: dict[str, str]
    line: int


def _lines(path: Path):
    """Yield ``(line_number, line)`` of an ASCII/UTF-8 text file, without line ends."""
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                yield line_number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise SmartFormatError(
                    f"{path}:{line_number}: not valid UTF-8 ({error}); the original files are "
                    "plain ASCII, re-extract them from the archive."
                ) from None


def join_field_lines(lines: list[str]) -> str:
    """A SMART field's text: its lines stripped and joined by one space, blank lines dropped.

    Args:
        lines: the lines after a field marker, as in the file.

    Returns:
        The field's text on one line; spacing inside each line is kept.

    Examples:
        >>> join_field_lines(["lift of a wing .  the", "  results agree ", ""])
        'lift of a wing .  the results agree'
    """
    return " ".join(stripped for line in lines if (stripped := line.strip()))


def read_smart(path: str | Path, *, fields: tuple[str, ...]) -> list[SmartRecord]:
    """Read the records of a SMART-format file.

    A line is a marker when it is ``.I`` with a number, or a dot and one capital letter alone
    (``.T``); any other line, ``.5 and 8`` included, is text of the current field.

    Args:
        path: ``cran.all.1400`` or ``cran.qry``.
        fields: the marker letters a record may hold, e.g. ``("T", "A", "B", "W")``.

    Returns:
        The records in file order; a field absent from a record is absent from its ``fields``.

    Raises:
        SmartFormatError: text before the first record or before a record's first field, an
            ``.I`` without a number, a repeated ``.I`` number, an unknown or repeated field
            marker; the message names the file and the line.
    """
    path = Path(path)
    records: list[SmartRecord] = []
    first_line: dict[str, int] = {}
    current: SmartRecord | None = None
    field: str | None = None
    field_lines: list[str] = []

    def close_field() -> None:
        if current is not None and field is not None:
            current.fields[field] = join_field_lines(field_lines)

    for line_number, line in _lines(path):
        where = f"{path}:{line_number}"
        if record := _RECORD.fullmatch(line):
            close_field()
            number = record.group(1)
            if number is None:
                raise SmartFormatError(f"{where}: '.I' without a record number; write '.I 1'.")
            if number in first_line:
                raise SmartFormatError(
                    f"{where}: record number {number} repeats line {first_line[number]}; "
                    "each '.I' number must be unique."
                )
            first_line[number] = line_number
            current, field, field_lines = SmartRecord(number, {}, line_number), None, []
            records.append(current)
        elif marker := _FIELD.fullmatch(line):
            close_field()
            field, field_lines = marker.group(1), []
            if current is None:
                raise SmartFormatError(f"{where}: field '.{field}' before the first '.I' record.")
            if field not in fields:
                raise SmartFormatError(
                    f"{where}: unknown field marker '.{field}' in record {current.number}; "
                    f"{path.name} records hold {', '.join('.' + f for f in fields)}."
                )
            if field in current.fields:
                raise SmartFormatError(
                    f"{where}: field '.{field}' appears twice in record {current.number}."
                )
            current.fields[field] = ""
        elif field is not None:
            field_lines.append(line)
        elif line.strip():
            owner = "the first '.I' record" if current is None else "a field of record"
            raise SmartFormatError(
                f"{where}: text outside {owner}{'' if current is None else ' ' + current.number}; "
                "every text line follows a field marker such as '.W'."
            )
    close_field()
    return records


def read_judgements(
    path: str | Path, *, n_queries: int
) -> dict[str, dict[str, int]]:
    """Read ``cranqrel`` into qrels with the project's gains.

    Args:
        path: the judgements file, lines ``<query> <document> <code>`` (whitespace-separated).
        n_queries: the number of queries in ``cran.qry``; query numbers must lie in 1..n.

    Returns:
        ``{query_id: {doc_id: gain}}`` ordered by query number, then document number, with
        gains from :data:`GAIN_BY_CODE`.

    Raises:
        SmartFormatError: a line without three integers, a query number outside 1..n, a code
            other than 1, 2, 3, 4 or -1, or a repeated (query, document) pair; the message
            names the file and the line.
    """
    path = Path(path)
    judged: dict[tuple[int, int], tuple[int, int]] = {}
    for line_number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        columns = line.split()
        try:
            query, document, code = (int(c) for c in columns)
        except ValueError:
            raise SmartFormatError(
                f"{where}: expected three integers '<query> <document> <code>', got {line!r}."
            ) from None
        if not 1 <= query <= n_queries:
            raise SmartFormatError(
                f"{where}: query {query} is outside 1..{n_queries} (the queries of "
                f"{QUERIES_FILE}, numbered in file order); are the files from one distribution?"
            )
        if code not in GAIN_BY_CODE:
            raise SmartFormatError(
                f"{where}: relevance code {code} is not one of Cleverdon's codes "
                f"{', '.join(map(str, GAIN_BY_CODE))}."
            )
        if (query, document) in judged:
            raise SmartFormatError(
                f"{where}: query {query}, document {document} was already judged on line "
                f"{judged[query, document][1]}; keep one judgement per pair."
            )
        judged[query, document] = (GAIN_BY_CODE[code], line_number)
    qrels: dict[str, dict[str, int]] = {}
    for (query, document), (gain, _) in sorted(judged.items()):
        qrels.setdefault(str(query), {})[str(document)] = gain
    return qrels


def _find(folder: Path, name: str) -> Path:
    matches = sorted(p for p in folder.rglob(name) if p.is_file())
    if len(matches) != 1:
        found = "none" if not matches else ", ".join(str(p) for p in matches)
        raise FileNotFoundError(
            f"expected one {name} in {folder} (the Cranfield distribution holds {DOCUMENTS_FILE}, "
            f"{QUERIES_FILE} and {JUDGEMENTS_FILE}); found {found}."
        )
    return matches[0]


def read_cranfield(
    folder: str | Path,
) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, dict[str, dict[str, int]]]]:
    """Read an unpacked Cranfield distribution into BEIR's dict model (module docstring).

    Used by :func:`robustir.data.download_dataset` (the registry's ``cranfield`` entry).

    Args:
        folder: where ``cran.tar.gz`` was unpacked; the three files are found by name anywhere
            below it.

    Returns:
        ``(corpus, queries, qrels)``: ``{doc_id: {"title": str, "text": str}}`` in file order;
        ``{query_id: text}`` with ids ``"1"`` … in file order; and
        ``{"test": {query_id: {doc_id: gain}}}``, the one split (:data:`SPLIT`).

    Raises:
        FileNotFoundError: one of the three files is missing (or present twice).
        SmartFormatError: a file is malformed (see :func:`read_smart`, :func:`read_judgements`)
            or a query has no ``.W`` text.
    """
    folder = Path(folder)
    documents = read_smart(_find(folder, DOCUMENTS_FILE), fields=("T", "A", "B", "W"))
    queries_path = _find(folder, QUERIES_FILE)
    queries = {}
    for index, record in enumerate(read_smart(queries_path, fields=("W",)), start=1):
        if not record.fields.get("W"):
            raise SmartFormatError(
                f"{queries_path}:{record.line}: query {record.number} has no '.W' text."
            )
        queries[str(index)] = record.fields["W"]
    corpus = {
        record.number: {"title": record.fields.get("T", ""), "text": record.fields.get("W", "")}
        for record in documents
    }
    qrels = read_judgements(_find(folder, JUDGEMENTS_FILE), n_queries=len(queries))
    return corpus, queries, {SPLIT: qrels}
