"""BEIR-format datasets: data root, loading, validation, the study's registry and downloads.

The interchange model is BEIR's plain dicts (see ``CONTRIBUTING.md``):

* corpus ``{doc_id: {"title": str, "text": str}}``;
* queries ``{query_id: text}``;
* qrels ``{query_id: {doc_id: grade}}`` with integer grades used as nDCG gains.

A dataset folder holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``
(protocol §2.1). Datasets are looked up under a *data root*: an explicit argument, else the
``ROBUSTIR_DATA`` environment variable, else ``./data``.

Used in the book chapter *Datasets and evaluation protocol* and by every experiment notebook.
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from robustir import cranfield
from robustir.provenance import files_sha256

logger = logging.getLogger(__name__)

#: Environment variable naming the data root.
DATA_ROOT_ENV = "ROBUSTIR_DATA"
#: Data root used when neither an argument nor ``ROBUSTIR_DATA`` is given (relative to the cwd).
DEFAULT_DATA_ROOT = "data"
#: Literal that replaces empty query or document text (protocol §1.2, §1.4.8).
PAD_TEXT = "[PAD]"
#: First field of a BEIR qrels header line (protocol §8.1 row 2: detect the header by content).
QRELS_HEADER_FIELD = "query-id"

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"

UnknownDocPolicy = Literal["warn", "error"]


class BeirFormatError(ValueError):
    """A BEIR-format file is malformed; the message names the file, the line and the fix."""


class DatasetUnavailableError(FileNotFoundError):
    """A dataset, split or download is not available; the message says where to put the files."""


@dataclass(frozen=True)
class Dataset:
    """One split of a BEIR-format dataset, ready for encoding and evaluation.

    Attributes:
        name: dataset key (the folder name, e.g. ``"scifact"``).
        split: qrels split (e.g. ``"test"``).
        path: the dataset folder.
        corpus: ``{doc_id: {"title": str, "text": str}}``, in file order.
        queries: ``{query_id: text}``; by default only the queries judged in ``split``
            (protocol §2.3.1), in qrels order.
        qrels: ``{query_id: {doc_id: grade}}``, integer grades (protocol §2.3.8).
        checksum: hex sha256 over the bytes of the three files read, in the order qrels
            (this split), queries, corpus; recorded with every result.
        unknown_doc_judgements: number of judged (query, doc) pairs whose doc id is not in
            the corpus; they are kept, as the study's loader does, and count as unretrievable
            relevant documents.
        skipped_headerless_line: the ``(query_id, doc_id, grade)`` row dropped by the BRIGHT
            header-line quirk (protocol §8.1 row 2), or ``None``.
        excluded_ids: ``{query_id: [doc_id, …]}`` from the queries' ``metadata.excluded_ids``
            (BRIGHT; ``"N/A"`` dropped), removed from each query's hits after retrieval
            (protocol §2.3.6); empty for datasets without them.
        key: the dataset's identity in the results store and in file names: the ``name`` of
            a dataset looked up by name under the data root; ``<name>-<10 hex digits>`` of a
            dataset given as a folder, the digits hashing its files (:func:`dataset_key`), so
            that another folder that happens to share a name never replaces its results.
            Defaults to ``name``.
    """

    name: str
    split: str
    path: Path
    corpus: dict[str, dict[str, str]] = field(repr=False)
    queries: dict[str, str] = field(repr=False)
    qrels: dict[str, dict[str, int]] = field(repr=False)
    checksum: str
    unknown_doc_judgements: int = 0
    skipped_headerless_line: tuple[str, str, int] | None = None
    excluded_ids: dict[str, list[str]] = field(default_factory=dict, repr=False)
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)


def data_root(
    explicit: str | os.PathLike[str] | None = None, *, base: str | os.PathLike[str] | None = None
) -> Path:
    """Resolve the data root.

    Used in the book chapter *Datasets and evaluation protocol* (where the data live).

    Args:
        explicit: a folder given by the caller; wins over everything else.
        base: the folder a relative root is relative to (a notebook's working directory);
            default the current working directory.

    Returns:
        ``explicit`` if given, else ``$ROBUSTIR_DATA`` if set and non-empty, else ``./data``;
        as an absolute path (not required to exist).

    Examples:
        >>> data_root("/tmp/beir").as_posix()
        '/tmp/beir'
        >>> data_root("beir", base="/srv/book").as_posix()
        '/srv/book/beir'
    """
    if explicit is not None:
        root = Path(explicit)
    else:
        root = Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)
    return _absolute(root, base)


def _absolute(path: Path, base: str | os.PathLike[str] | None) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (Path(base) if base is not None else Path.cwd()) / path


# ``load_dataset`` takes a ``data_root`` argument, which shadows the function inside it.
_resolve_data_root = data_root


def pad_empty(text: str, *, empty: str | None = PAD_TEXT) -> str:
    """Replace text that is empty after ``strip()`` by ``empty`` (protocol §1.4.8).

    Used in the book chapter *Query variations* (naturalized queries can become empty).

    Args:
        text: a query or document text.
        empty: the replacement, ``"[PAD]"`` as in the study; ``None`` keeps the text unchanged.

    Returns:
        ``text``, or ``empty`` when ``text.strip() == ""`` and ``empty`` is not ``None``.

    Examples:
        >>> pad_empty("  ")
        '[PAD]'
    """
    if empty is not None and not text.strip():
        return empty
    return text


def document_text(doc: dict[str, str], *, empty: str | None = PAD_TEXT) -> str:
    """The text a dense system encodes for a corpus document (protocol §1.2, §1.4.7).

    Used in the book chapter *Datasets and evaluation protocol* and by ``robustir.encode``.

    Args:
        doc: a corpus entry with ``"text"`` and optionally ``"title"``.
        empty: replacement for a result that is empty after ``strip()`` (see :func:`pad_empty`).

    Returns:
        ``title + " " + text`` when the title is non-empty (``len(title) > 0``), else ``text``.

    Examples:
        >>> document_text({"title": "Wings", "text": "lift"})
        'Wings lift'
        >>> document_text({"title": "", "text": ""})
        '[PAD]'
    """
    title = doc.get("title") or ""
    text = doc["text"]
    joined = f"{title} {text}" if len(title) > 0 else text
    return pad_empty(joined, empty=empty)


# --------------------------------------------------------------------------- reading files


def _numbered_lines(path: Path, digest=None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a UTF-8 file.

    A byte-order mark at the start of the file (as some editors write) is dropped.
    ``digest`` (a ``hashlib`` object) is updated with every raw byte read, so the dataset
    checksum costs no second pass over large corpora.
    """
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if digest is not None:
                digest.update(raw)
            if line_number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise BeirFormatError(
                    f"{path}:{line_number}: not valid UTF-8 ({error}); re-save the file as UTF-8."
                ) from None
            if line.strip():
                yield line_number, line


def _excluded_ids(path: Path, record: dict, line_number: int) -> list[str]:
    """A query's ``metadata.excluded_ids`` without BRIGHT's ``"N/A"`` placeholder."""
    metadata = record.get("metadata")
    excluded = metadata.get("excluded_ids") if isinstance(metadata, dict) else None
    if excluded is None:
        return []
    if not isinstance(excluded, list) or not all(isinstance(d, (str, int)) for d in excluded):
        raise BeirFormatError(
            f"{path}:{line_number}: metadata.excluded_ids of query {record['_id']!r} must be a list "
            "of doc ids; BRIGHT writes e.g. [\"N/A\"] or [\"doc1\", \"doc2\"]."
        )
    return [str(d) for d in excluded if str(d) != "N/A"]


def _read_jsonl_records(
    path: Path, *, kind: str, required: tuple[str, ...], digest=None
) -> dict[str, tuple[dict, int]]:
    """Read a BEIR JSONL file into ``{_id: (record, line_number)}``, validating each row.

    Extra keys are allowed (query variant files carry them); ``_id`` values are read as strings.
    """
    records: dict[str, tuple[dict, int]] = {}
    for line_number, line in _numbered_lines(path, digest):
        where = f"{path}:{line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise BeirFormatError(
                f"{where}: malformed JSON in the {kind} file ({error.msg} at column "
                f"{error.colno}); every line must be one JSON object such as "
                '{"_id": "1", "text": "..."}.'
            ) from None
        if not isinstance(record, dict):
            raise BeirFormatError(
                f"{where}: expected a JSON object in the {kind} file, got "
                f"{type(record).__name__}; every line must be one JSON object."
            )
        for key in required:
            if key not in record:
                raise BeirFormatError(
                    f"{where}: {kind} record lacks the field {key!r}; BEIR {kind} lines "
                    f"need {', '.join(repr(k) for k in required)}."
                )
        for key in ("text", "title"):
            if key in record and not isinstance(record[key], str):
                raise BeirFormatError(
                    f"{where}: field {key!r} of the {kind} record must be a string, got "
                    f"{type(record[key]).__name__}."
                )
        if isinstance(record["_id"], bool) or not isinstance(record["_id"], (str, int)):
            raise BeirFormatError(
                f"{where}: the {kind} id {record['_id']!r} is a {type(record['_id']).__name__}; "
                'an "_id" must be a string (or an integer), e.g. "_id": "12".'
            )
        record_id = str(record["_id"])
        if not record_id.strip():
            raise BeirFormatError(f"{where}: the {kind} id is empty; give every line an id.")
        if record_id in records:
            raise BeirFormatError(
                f"{where}: duplicate {kind} id {record_id!r} (first on line "
                f"{records[record_id][1]}); ids must be unique, remove or rename one."
            )
        records[record_id] = (record, line_number)
    return records


def _read_corpus(path: Path, digest=None) -> dict[str, dict[str, str]]:
    records = _read_jsonl_records(path, kind="corpus", required=("_id", "text"), digest=digest)
    if not records:
        raise BeirFormatError(f"{path}: the corpus has no documents; every line of "
                              'corpus.jsonl is one document such as {"_id": "d1", "text": "..."}.')
    return {
        doc_id: {"title": record.get("title") or "", "text": record["text"]}
        for doc_id, (record, _) in records.items()
    }


def load_corpus(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """Load a BEIR ``corpus.jsonl``.

    Used in the book chapter *Datasets and evaluation protocol*.

    Args:
        path: the JSONL file; each line ``{"_id", "title" (optional), "text"}``. Empty text is
            allowed here (Cranfield has two such documents); :func:`document_text` pads it.

    Returns:
        ``{doc_id: {"title": str, "text": str}}`` in file order; a missing title becomes ``""``.

    Raises:
        BeirFormatError: malformed JSON, a missing ``_id``/``text``, a non-string field or a
            duplicate id, naming the file and line.
    """
    return _read_corpus(Path(path))


def _check_query_text(path: Path, query_id: str, line_number: int, text: str) -> None:
    if not text.strip():
        raise BeirFormatError(
            f"{path}:{line_number}: query {query_id!r} has empty text; fix the file, or pass "
            "allow_empty_queries=True to keep it (it is then encoded as '[PAD]', as in the study)."
        )


def load_queries(
    path: str | os.PathLike[str], *, allow_empty_queries: bool = False
) -> dict[str, str]:
    """Load a BEIR ``queries.jsonl`` or one of the project's query-variant files.

    Used in the book chapters *Datasets and evaluation protocol* and *Query variations*.

    Args:
        path: the JSONL file; each line has ``_id`` and ``text``; further keys (``metadata``,
            the variant files' bookkeeping) are ignored.
        allow_empty_queries: keep queries whose text is empty after ``strip()`` instead of failing.

    Returns:
        ``{query_id: text}`` in file order.

    Raises:
        BeirFormatError: malformed JSON, a missing field, a duplicate id, or (unless
            ``allow_empty_queries``) an empty query text, naming the file, line and query id.
    """
    path = Path(path)
    records = _read_jsonl_records(path, kind="queries", required=("_id", "text"))
    if not allow_empty_queries:
        for query_id, (record, line_number) in records.items():
            _check_query_text(path, query_id, line_number, record["text"])
    return {query_id: record["text"] for query_id, (record, _) in records.items()}


def _read_qrels(
    path: Path, *, skip_first_qrels_line_for_headerless_files: bool, digest=None
) -> tuple[dict[str, dict[str, int]], dict[str, int], tuple[str, str, int] | None]:
    """Parse a qrels TSV; return the qrels, the first line of each query, and any skipped row."""
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[str, int] = {}
    skipped: tuple[str, str, int] | None = None
    duplicates = 0
    for index, (line_number, line) in enumerate(_numbered_lines(path, digest)):
        fields = line.rstrip("\r\n").split("\t")
        if index == 0 and fields[0].strip() == QRELS_HEADER_FIELD:
            continue
        where = f"{path}:{line_number}"
        if len(fields) != 3:
            raise BeirFormatError(
                f"{where}: expected 3 tab-separated columns (query-id, corpus-id, score), "
                f"found {len(fields)}; use tabs, not spaces, and no trailing columns."
            )
        query_id, doc_id, grade_text = (part.strip() for part in fields)
        if not query_id or not doc_id:
            raise BeirFormatError(f"{where}: empty query id or document id; every judgement "
                                  "names both.")
        try:
            grade = int(grade_text)
        except ValueError:
            raise BeirFormatError(
                f"{where}: relevance grade {grade_text!r} is not an integer; BEIR qrels grades "
                "are integers (0 = judged not relevant)."
            ) from None
        if index == 0 and skip_first_qrels_line_for_headerless_files:
            skipped = (query_id, doc_id, grade)
            logger.warning(
                "%s has no header; dropping its first row %s as the study's loader does "
                "(protocol §8.1 row 2). Pass skip_first_qrels_line_for_headerless_files=False "
                "for the corrected qrels.",
                path,
                skipped,
            )
            continue
        judged = qrels.setdefault(query_id, {})
        first_line.setdefault(query_id, line_number)
        if doc_id in judged:
            duplicates += 1
        judged[doc_id] = grade
    if not qrels:
        raise BeirFormatError(
            f"{path}: the qrels judge no query (the file is empty or holds only a header); "
            "add one 'query-id<TAB>corpus-id<TAB>score' line per judgement."
        )
    if duplicates:
        logger.warning(
            "%s judges %d (query, doc) pairs more than once; the last grade wins, as in BEIR.",
            path,
            duplicates,
        )
    return qrels, first_line, skipped


def load_qrels(
    path: str | os.PathLike[str],
    *,
    skip_first_qrels_line_for_headerless_files: bool = True,
) -> dict[str, dict[str, int]]:
    """Load a BEIR qrels TSV (``query-id  corpus-id  score``).

    A header is recognised by content (first field ``query-id``), not by position.

    Used in the book chapter *Datasets and evaluation protocol*.

    Args:
        path: the TSV file.
        skip_first_qrels_line_for_headerless_files: replicate the study's loader, which always
            skips line 1 and so drops the first judged pair of a file without a header (the
            BRIGHT qrels; protocol §2.3.7, §8.1 row 2). ``False`` keeps every pair. Files with
            a header are unaffected.

    Returns:
        ``{query_id: {doc_id: grade}}`` with integer grades, in file order.

    Raises:
        BeirFormatError: a row without exactly 3 tab-separated columns or with a non-integer
            grade, naming file and line.
    """
    qrels, _, _ = _read_qrels(
        Path(path),
        skip_first_qrels_line_for_headerless_files=skip_first_qrels_line_for_headerless_files,
    )
    return qrels


def available_splits(path: str | os.PathLike[str]) -> list[str]:
    """The splits of a dataset folder: the stems of ``qrels/*.tsv``, sorted.

    Used in the book chapter *Datasets and evaluation protocol*.

    Args:
        path: the dataset folder.

    Returns:
        e.g. ``["test", "train"]``; empty when there is no ``qrels`` folder.
    """
    qrels_dir = Path(path) / QRELS_DIR
    if not qrels_dir.is_dir():
        return []
    return sorted(p.stem for p in qrels_dir.glob("*.tsv") if p.is_file())


def missing_files(folder: str | os.PathLike[str], splits: Iterable[str]) -> list[str]:
    """The files :func:`load_dataset` needs for ``splits`` that ``folder`` lacks.

    Used by the grid runner's data check (:mod:`robustir.preflight`) and by
    :func:`download_dataset`.

    Args:
        folder: a dataset folder.
        splits: the qrels splits to be loaded, e.g. ``("test", "train")``.

    Returns:
        Paths relative to ``folder`` (``corpus.jsonl``, ``queries.jsonl``,
        ``qrels/<split>.tsv``), in that order; empty when the folder is complete.

    Examples:
        >>> missing_files("/nonexistent/scifact", ["test"])
        ['corpus.jsonl', 'queries.jsonl', 'qrels/test.tsv']
    """
    folder = Path(folder)
    needed = [CORPUS_FILE, QUERIES_FILE, *(f"{QRELS_DIR}/{split}.tsv" for split in splits)]
    return [name for name in needed if not (folder / name).is_file()]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_name(value: object, what: str) -> str:
    """``value`` if it is a plain name (a split, a dataset key), else a clear error.

    Names become file names (``qrels/<split>.tsv``, ``<data root>/<key>``), so a path in
    their place would read another folder's files.

    Raises:
        ValueError: ``value`` is not a string of letters, digits and ``_.+-`` starting with a
            letter or digit (no path separator, no ``..``).

    Examples:
        >>> check_name("test", "split")
        'test'
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not a name: use letters, digits and _.+- only (no path "
            "separators or '..'), e.g. 'test'"
        )
    return value


def is_dataset_path(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether a ``--dataset`` value is a folder (a ``Path``, or a string with a path
    separator) rather than a dataset key under the data root."""
    text = os.fspath(name_or_path)
    return isinstance(name_or_path, os.PathLike) or "/" in text or os.sep in text


def dataset_sha256(folder: str | os.PathLike[str]) -> str:
    """SHA-256 over a BEIR folder's ``corpus.jsonl``, ``queries.jsonl`` and every
    ``qrels/*.tsv`` (names and bytes): its identity by content."""
    folder = Path(folder)
    files = [CORPUS_FILE, QUERIES_FILE,
             *(f"{QRELS_DIR}/{p.name}" for p in (folder / QRELS_DIR).glob("*.tsv") if p.is_file())]
    return files_sha256(folder, [name for name in files if (folder / name).is_file()])


def dataset_key(folder: str | os.PathLike[str]) -> str:
    """The results-store key of a dataset given as a folder: its readable name and the first
    10 hex digits of :func:`dataset_sha256`, e.g. ``scifact-3f2a9c01b7``.

    Used in the book chapter "Rerun it on your model" (your own data in the results store).
    """
    folder = Path(folder)
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "-", folder.resolve().name).strip("-.") or "dataset"
    return f"{name}-{dataset_sha256(folder)[:10]}"


def dataset_folder(
    name_or_path: str | os.PathLike[str],
    data_root: str | os.PathLike[str] | None = None,
    *,
    base: str | os.PathLike[str] | None = None,
) -> Path:
    """The folder :func:`load_dataset` reads for a dataset name or path.

    Used in the book chapter *Datasets and evaluation protocol* and by the grid runner's data
    check (:mod:`robustir.preflight`).

    Args:
        name_or_path: a bare name (no path separator) is a folder under the data root; a
            ``Path`` or a string containing ``/`` is the folder itself.
        data_root: see :func:`data_root`.
        base: the folder relative paths are relative to; default the working directory.

    Returns:
        The absolute folder (not required to exist).

    Examples:
        >>> dataset_folder("scifact", "/data").as_posix()
        '/data/scifact'
    """
    if is_dataset_path(name_or_path):
        return _absolute(Path(name_or_path), base)
    return _resolve_data_root(data_root, base=base) / check_name(
        os.fspath(name_or_path), "dataset")


def _missing_files_message(folder: Path, missing: list[str]) -> str:
    name = folder.name
    lines = [
        f"dataset {name!r}: {', '.join(missing)} not found in {folder}.",
        "Put the BEIR-format files there: "
        f"{folder / CORPUS_FILE}, {folder / QUERIES_FILE}, {folder / QRELS_DIR}/<split>.tsv "
        f"(or point {DATA_ROOT_ENV} / data_root at the folder that holds {name!r}/).",
    ]
    entry = DATASETS.get(name)
    if entry is not None:
        lines.append(entry.download_hint())
    else:
        lines.append(
            f"{name!r} is not a registry key either; known datasets: {', '.join(DATASETS)}."
        )
    return " ".join(lines)


def load_dataset(
    name_or_path: str | os.PathLike[str],
    split: str = "test",
    data_root: str | os.PathLike[str] | None = None,
    *,
    keep_unjudged_queries: bool = False,
    allow_empty_queries: bool = False,
    unknown_doc_ids: UnknownDocPolicy = "warn",
    skip_first_qrels_line_for_headerless_files: bool = True,
) -> Dataset:
    """Load one split of a BEIR-format dataset and validate it.

    Used in the book chapter *Datasets and evaluation protocol* and by every experiment notebook.

    Args:
        name_or_path: a dataset key resolved to ``<data root>/<key>/`` (a string without a path
            separator), or a dataset folder (a ``Path`` or a string containing ``/``).
        split: the qrels split, i.e. ``qrels/<split>.tsv``.
        data_root: data root for a key; see :func:`data_root`.
        keep_unjudged_queries: keep every query of ``queries.jsonl``; by default only the
            queries judged in ``split`` are kept, in qrels order (protocol §2.3.1).
        allow_empty_queries: keep queries with empty text (they are encoded as ``"[PAD]"``)
            instead of failing.
        unknown_doc_ids: what to do when the qrels judge a doc id absent from the corpus:
            ``"warn"`` (default) logs the count and keeps the judgements, as the study's BEIR
            loader does (some BEIR sets contain a few); ``"error"`` fails naming the first one.
        skip_first_qrels_line_for_headerless_files: see :func:`load_qrels`.

    Returns:
        The :class:`Dataset`, with a sha256 checksum over the three files read, keyed by its
        name, or (a folder given as a path) by its name and a hash of its files.

    Raises:
        ValueError: ``split`` or a dataset key is not a plain name (:func:`check_name`).
        DatasetUnavailableError: the folder, a file or the split is missing; the message says
            where to put the files and where to download them.
        BeirFormatError: a malformed file (see the loaders), an empty corpus or qrels, qrels
            naming a query id absent from ``queries.jsonl``, an empty judged query, or
            (``unknown_doc_ids="error"``) a judged doc id absent from the corpus.
    """
    if unknown_doc_ids not in ("warn", "error"):
        raise ValueError(f"unknown_doc_ids must be 'warn' or 'error', got {unknown_doc_ids!r}")
    check_name(split, "split")
    folder = dataset_folder(name_or_path, data_root)
    corpus_path, queries_path = folder / CORPUS_FILE, folder / QUERIES_FILE
    qrels_path = folder / QRELS_DIR / f"{split}.tsv"

    missing = [p.name for p in (corpus_path, queries_path) if not p.is_file()]
    splits = available_splits(folder)
    if not splits:
        missing.append(f"{QRELS_DIR}/<split>.tsv")
    if missing:
        raise DatasetUnavailableError(_missing_files_message(folder, missing))
    if not qrels_path.is_file():
        raise DatasetUnavailableError(
            f"dataset {folder.name!r} has no split {split!r} ({qrels_path} not found); "
            f"available splits: {', '.join(splits)}."
        )

    digest = hashlib.sha256()
    qrels, first_line, skipped = _read_qrels(
        qrels_path,
        skip_first_qrels_line_for_headerless_files=skip_first_qrels_line_for_headerless_files,
        digest=digest,
    )
    query_records = _read_jsonl_records(
        queries_path, kind="queries", required=("_id", "text"), digest=digest
    )
    corpus = _read_corpus(corpus_path, digest)

    for query_id, line_number in first_line.items():
        if query_id not in query_records:
            raise BeirFormatError(
                f"{qrels_path}:{line_number}: query id {query_id!r} is not in {queries_path}; "
                "every judged query needs a line in queries.jsonl (check the split and id format)."
            )
    kept = list(query_records) if keep_unjudged_queries else list(qrels)
    if not allow_empty_queries:
        for query_id in kept:
            record, line_number = query_records[query_id]
            _check_query_text(queries_path, query_id, line_number, record["text"])
    queries = {query_id: query_records[query_id][0]["text"] for query_id in kept}
    excluded_ids = {
        query_id: excluded
        for query_id in kept
        if (excluded := _excluded_ids(queries_path, *query_records[query_id]))
    }

    unknown = [
        (query_id, doc_id)
        for query_id, judged in qrels.items()
        for doc_id in judged
        if doc_id not in corpus
    ]
    if unknown and unknown_doc_ids == "error":
        query_id, doc_id = unknown[0]
        raise BeirFormatError(
            f"{qrels_path}: {len(unknown)} judged doc ids are not in {corpus_path}, first "
            f"{doc_id!r} (query {query_id!r}); fix the corpus or qrels, or pass "
            "unknown_doc_ids='warn' to keep them as unretrievable judgements."
        )
    if unknown:
        logger.warning(
            "%s: %d judged (query, doc) pairs name doc ids absent from the corpus, e.g. %r; "
            "kept as unretrievable judgements.",
            qrels_path,
            len(unknown),
            unknown[0],
        )
    dataset = Dataset(
        name=folder.name,
        split=split,
        path=folder,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        checksum=digest.hexdigest(),
        unknown_doc_judgements=len(unknown),
        skipped_headerless_line=skipped,
        excluded_ids=excluded_ids,
        key=dataset_key(folder) if is_dataset_path(name_or_path) else folder.name,
    )
    logger.info(
        "loaded %s/%s: %d docs, %d queries, %d judgements",
        dataset.name,
        split,
        len(corpus),
        len(queries),
        sum(len(j) for j in qrels.values()),
    )
    return dataset


# --------------------------------------------------------------------------- the study's registry

#: Where the study downloads every dataset (protocol §2.1).
STUDY_URL_TEMPLATE = (
    "https://github.com/liyongkang123/extended_beir_datasets/releases/download/beir_v1.0/{key}.zip"
)
#: BEIR's official download location (environment.md §7.3); serves the 13 BEIR sets and MS MARCO.
BEIR_URL_TEMPLATE = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{key}.zip"


class UnknownDatasetError(LookupError):
    """A dataset key is not in :data:`DATASETS`; the message lists the known keys."""


#: Reads an unpacked original distribution into ``(corpus, queries, {split: qrels})``.
OriginalReader = Callable[
    [Path],
    tuple[dict[str, dict[str, str]], dict[str, str], dict[str, dict[str, dict[str, int]]]],
]


@dataclass(frozen=True)
class OriginalDistribution:
    """A collection's original files, which the project converts to BEIR layout itself.

    Attributes:
        url: the archive (tar or zip) as its maintainers distribute it.
        read: the project's reader of the unpacked archive, e.g.
            :func:`robustir.cranfield.read_cranfield`.
        converted_sha256: ``(path relative to the dataset folder, sha256)`` of every BEIR file
            the conversion must produce; :func:`download_dataset` refuses a conversion that
            differs in any of them.
    """

    url: str
    read: OriginalReader
    converted_sha256: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset entry of the study (protocol §2.2) with where to get it.

    Attributes:
        key: the study's dataset key, also the folder name under the data root.
        benchmark: ``"BEIR"``, ``"BRIGHT"``, ``"MS MARCO"``, ``"BrowseComp-Plus"`` or ``"local"``.
        splits: the qrels splits the study evaluates.
        queries_scored: queries with a query-level score in the study (all splits together).
        corpus_size: number of documents (exact counts; BEIR's README rounds them, e.g. 171K);
            ``None`` where no count is published (``nq-train``).
        task_type: the study's task-type factor level (protocol §3.1).
        corpus_type: the study's corpus-type factor level (protocol §3.1).
        study_url: the study's download (extended-BEIR release), ``None`` for local-only data.
        beir_url: BEIR's official download, for the 13 BEIR sets; ``None`` otherwise.
        beir_md5: MD5 of the BEIR zip as published in BEIR's README; ``None`` if not published.
        note: provenance and caveats.
        original: the original distribution the project converts itself (``cranfield``);
            ``None`` for datasets published in BEIR layout.
        attacker_dataset: key of the entry whose ``train`` qrels (queries, gold passages and
            corpus) the corpus-poisoning attacker uses against this entry (protocol §5.1-5.2);
            ``None``: this entry's own training split. NQ: ``nq-train``, since BEIR's ``nq``
            has no training qrels.
    """

    key: str
    benchmark: str
    splits: tuple[str, ...]
    queries_scored: int
    corpus_size: int | None
    task_type: str
    corpus_type: str
    study_url: str | None
    beir_url: str | None = None
    beir_md5: str | None = None
    note: str = ""
    original: OriginalDistribution | None = None
    attacker_dataset: str | None = None

    def download_hint(self) -> str:
        """One sentence saying where the files of this entry come from."""
        command = (
            f"`robustir data fetch {self.key}` (robustir.data.download_dataset({self.key!r})) "
            "on a machine with internet"
        )
        if self.original is not None:
            return (
                f"Run {command}: it downloads the original distribution {self.original.url} "
                "and converts it to BEIR layout, checked against the project's checksums."
            )
        if self.study_url is None:
            return f"{self.key!r} cannot be downloaded: {self.note}"
        urls = " or ".join(u for u in (self.beir_url, self.study_url) if u)
        return f"Download {urls} and unzip it into the data root, or run {command}."


def _beir(
    key: str, queries: int, corpus: int, task: str, corpus_type: str, md5: str,
    attacker_dataset: str | None = None,
) -> DatasetEntry:
    return DatasetEntry(
        key=key,
        benchmark="BEIR",
        splits=("test",),
        queries_scored=queries,
        corpus_size=corpus,
        task_type=task,
        corpus_type=corpus_type,
        study_url=STUDY_URL_TEMPLATE.format(key=key),
        beir_url=BEIR_URL_TEMPLATE.format(key=key),
        beir_md5=md5,
        note="copy of the original BEIR release (protocol §2.1)",
        attacker_dataset=attacker_dataset,
    )


def _bright(key: str, queries: int, corpus: int, task: str, corpus_type: str) -> DatasetEntry:
    return DatasetEntry(
        key=key,
        benchmark="BRIGHT",
        splits=("test",),
        queries_scored=queries,
        corpus_size=corpus,
        task_type=task,
        corpus_type=corpus_type,
        study_url=STUDY_URL_TEMPLATE.format(key=key),
        note=(
            "converted from HF xlangai/BRIGHT (short-document gold ids, grade 1, excluded_ids in "
            "the query metadata); qrels have no header line (protocol §2.3.7)"
        ),
    )


_STACKEXCHANGE = ("StackExchange Post Retrieval", "Online Community")

#: The study's 27 dataset entries (protocol §2.2) plus the project's local ``cranfield``.
DATASETS: dict[str, DatasetEntry] = {
    entry.key: entry
    for entry in (
        DatasetEntry(
            key="msmarco",
            benchmark="MS MARCO",
            splits=("dev", "trec_dl19", "trec_dl20"),
            queries_scored=7077,
            corpus_size=8_841_823,
            task_type="Passage Retrieval",
            corpus_type="General Web",
            study_url=STUDY_URL_TEMPLATE.format(key="msmarco"),
            note=(
                "dev 6,980 + TREC DL19 43 + DL20 54 queries over the untitled BEIR corpus; "
                "DL qrels graded 0-3 (protocol §2.1). BEIR's own msmarco.zip lacks the DL qrels, "
                "so only the study's bundle is listed."
            ),
        ),
        _beir(
            "trec-covid",
            50,
            171_332,
            "Bio-Medical Retrieval",
            "Scientific Paper",
            "ce62140cb23feb9becf6270d0d1fe6d1",
        ),
        _beir(
            "nfcorpus",
            323,
            3_633,
            "Bio-Medical Retrieval",
            "Scientific Paper",
            "a89dba18a62ef92f7d323ec890a0d38d",
        ),
        _beir(
            "nq",
            3452,
            2_681_468,
            "Question Answering",
            "Wikipedia",
            "d4d3d2e48787a744b6f6e691ff534307",
            attacker_dataset="nq-train",
        ),
        DatasetEntry(
            key="nq-train",
            benchmark="BEIR",
            splits=("train",),
            queries_scored=0,
            corpus_size=None,
            task_type="Question Answering",
            corpus_type="Wikipedia",
            study_url=BEIR_URL_TEMPLATE.format(key="nq-train"),
            note=(
                "attacker data only: NQ's training qrels over their own corpus, which keeps the "
                "duplicate passages that BEIR removed from nq's (BEIR issue #108); the corpus "
                "poisoning of nq attacks with it (protocol §5.1-5.2) and downloads it from BEIR; "
                "no query is scored. Prompts are nq's (protocol §1.3)."
            ),
        ),
        _beir(
            "hotpotqa",
            7405,
            5_233_329,
            "Question Answering",
            "Wikipedia",
            "f412724f78b0d91183a0e86805e16114",
        ),
        _beir(
            "fiqa",
            648,
            57_638,
            "Question Answering",
            "Online Community",
            "17918ed23cd04fb15047f73e6c3bd9d9",
        ),
        _beir(
            "arguana",
            1406,
            8_674,
            "Argument Retrieval",
            "Domain KB",
            "8ad3e3c2a5867cdced806d6503f29b99",
        ),
        _beir(
            "webis-touche2020",
            49,
            382_545,
            "Argument Retrieval",
            "Domain KB",
            "46f650ba5a527fc69e0a6521c5a23563",
        ),
        _beir(
            "quora",
            10000,
            522_931,
            "Duplicate Question Retrieval",
            "Online Community",
            "18fb154900ba42a600f84b839c173167",
        ),
        _beir(
            "dbpedia-entity",
            400,
            4_635_922,
            "Entity Retrieval",
            "Wikipedia",
            "c2a39eb420a3164af735795df012ac2c",
        ),
        _beir(
            "scidocs",
            1000,
            25_657,
            "Citation-Prediction",
            "Scientific Paper",
            "38121350fc3a4d2f48850f6aff52e4a9",
        ),
        _beir(
            "fever",
            6666,
            5_416_568,
            "Fact Checking",
            "Wikipedia",
            "5a818580227bfb4b35bb6fa46d9b6c03",
        ),
        _beir(
            "climate-fever",
            1535,
            5_416_593,
            "Fact Checking",
            "Wikipedia",
            "8b66f0a9126c521bae2bde127b4dc99d",
        ),
        _beir(
            "scifact",
            300,
            5_183,
            "Fact Checking",
            "Scientific Paper",
            "5f7d1de60b170fc8027bb7898e2efca1",
        ),
        _bright("biology", 103, 57_359, *_STACKEXCHANGE),
        _bright("earth_science", 116, 121_249, *_STACKEXCHANGE),
        _bright("economics", 103, 50_220, *_STACKEXCHANGE),
        _bright("psychology", 101, 52_835, *_STACKEXCHANGE),
        _bright("robotics", 101, 61_961, *_STACKEXCHANGE),
        _bright("stackoverflow", 117, 107_081, *_STACKEXCHANGE),
        _bright("sustainable_living", 108, 60_792, *_STACKEXCHANGE),
        _bright("leetcode", 142, 413_932, "Code Retrieval", "Domain KB"),
        _bright("pony", 112, 7_894, "Code Retrieval", "Domain KB"),
        _bright("aops", 111, 188_002, "Theorem Retrieval", "Domain KB"),
        _bright("theoremqa_questions", 194, 188_002, "Theorem Retrieval", "Domain KB"),
        # 75 scored, 76 in the extended-BEIR README: the header-line quirk (protocol §2.3.7).
        _bright("theoremqa_theorems", 75, 23_839, "Theorem Retrieval", "Domain KB"),
        DatasetEntry(
            key="browsecomp_plus",
            benchmark="BrowseComp-Plus",
            splits=("golds", "evidence"),
            queries_scored=830,
            corpus_size=100_195,
            task_type="Question Answering",
            corpus_type="General Web",
            study_url=STUDY_URL_TEMPLATE.format(key="browsecomp_plus"),
            note=(
                "corpus from HF Tevatron/browsecomp-plus-corpus, decrypted queries, qrels from "
                "qrel_golds.txt (2,407 pairs) and qrel_evidence.txt (5,064 pairs)"
            ),
        ),
        DatasetEntry(
            key="cranfield",
            benchmark="local",
            splits=("test",),
            queries_scored=225,
            corpus_size=1_400,
            task_type="Ad-hoc Retrieval",  # not one of the study's levels
            corpus_type="Scientific Paper",
            study_url=None,
            note=(
                "not part of the study; the project's second small collection: the classic "
                "Cranfield 1400 files in SMART format, converted to BEIR layout (graded 0-4) by "
                "robustir.cranfield; also in the shared data folder (../shared/datasets/cranfield)."
            ),
            original=OriginalDistribution(
                url=cranfield.CRANFIELD_URL,
                read=cranfield.read_cranfield,
                # the shared copy's files (../shared/datasets/README.md)
                converted_sha256=(
                    (
                        CORPUS_FILE,
                        "bfe1bdbaf720f4a58e0725957c7ab7c4aa423e7006a0a96f0b779962227aa7db",
                    ),
                    (
                        QUERIES_FILE,
                        "9c4c83930942813998f2bddda240fd9490c98b96f57c3eccc53087d5cc9a9393",
                    ),
                    (
                        f"{QRELS_DIR}/test.tsv",
                        "e7b383328755149ea45b2c47c86b2e9e3dd437a963d3e10f0557df23e20f54f8",
                    ),
                ),
            ),
        ),
    )
}

#: Keys of the collections used only as another entry's attacker data (protocol §5.1).
ATTACKER_DATASETS: frozenset[str] = frozenset(
    e.attacker_dataset for e in DATASETS.values() if e.attacker_dataset is not None
)

#: Keys of the study's 27 dataset entries, in protocol §2.2 order.
STUDY_DATASETS: tuple[str, ...] = tuple(
    k for k, e in DATASETS.items() if e.benchmark != "local" and k not in ATTACKER_DATASETS
)


def attacker_dataset_for(dataset: str) -> str:
    """The dataset whose training split the corpus-poisoning attacker uses against ``dataset``.

    The study attacks NQ with the ``nq-train`` collection and HotpotQA and MS MARCO with their
    own ``train`` qrels (protocol §5.1): the registry's :attr:`DatasetEntry.attacker_dataset`,
    else the dataset itself (also for keys outside the registry, such as a local folder).

    Used in the book chapter "Corpus poisoning".
    """
    entry = DATASETS.get(dataset)
    if entry is None or entry.attacker_dataset is None:
        return dataset
    return entry.attacker_dataset


def get_dataset_entry(key: str) -> DatasetEntry:
    """Look up a dataset entry of the registry.

    Used in the book chapter *Datasets and evaluation protocol* (the table of the 27 entries).

    Args:
        key: a dataset key such as ``"scifact"``.

    Returns:
        The :class:`DatasetEntry`.

    Raises:
        UnknownDatasetError: the key is unknown; the message lists the known keys.
    """
    try:
        return DATASETS[key]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {key!r}; known datasets: {', '.join(DATASETS)}"
        ) from None


# --------------------------------------------------------------------------- writing


def write_beir_folder(
    folder: str | os.PathLike[str],
    *,
    corpus: Mapping[str, Mapping[str, str]],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, Mapping[str, int]]],
) -> Path:
    """Write a dataset in BEIR layout, as the project's shared copies are written.

    Each JSONL line is one ``json.dumps`` object (``", "`` and ``": "`` separators, non-ASCII
    characters escaped) with the keys ``_id``, ``title``, ``text`` (corpus) or ``_id``,
    ``text`` (queries) in that order; each qrels file starts with the header
    ``query-id<TAB>corpus-id<TAB>score``; every line ends with a line feed; rows follow the
    order of the mappings.

    Used by :func:`download_dataset` for collections the project converts itself (Cranfield).

    Args:
        folder: the dataset folder to create (or overwrite files in).
        corpus: ``{doc_id: {"title": str, "text": str}}``.
        queries: ``{query_id: text}``.
        qrels: ``{split: {query_id: {doc_id: grade}}}``, one ``qrels/<split>.tsv`` per split.

    Returns:
        ``folder``, as a ``Path``.
    """
    folder = Path(folder)
    (folder / QRELS_DIR).mkdir(parents=True, exist_ok=True)
    with (folder / CORPUS_FILE).open("w", encoding="utf-8", newline="\n") as out:
        for doc_id, doc in corpus.items():
            record = {"_id": doc_id, "title": doc.get("title", ""), "text": doc["text"]}
            out.write(json.dumps(record) + "\n")
    with (folder / QUERIES_FILE).open("w", encoding="utf-8", newline="\n") as out:
        for query_id, text in queries.items():
            out.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    for split, judgements in qrels.items():
        with (folder / QRELS_DIR / f"{split}.tsv").open("w", encoding="utf-8", newline="\n") as out:
            out.write(f"{QRELS_HEADER_FIELD}\tcorpus-id\tscore\n")
            for query_id, judged in judgements.items():
                for doc_id, grade in judged.items():
                    out.write(f"{query_id}\t{doc_id}\t{grade}\n")
    return folder


# --------------------------------------------------------------------------- downloading

#: Bytes read per network round trip while downloading.
DOWNLOAD_CHUNK_BYTES = 1 << 20
#: Seconds without data before a download attempt is abandoned (it can be resumed).
DOWNLOAD_TIMEOUT_S = 60.0
#: Environment variable naming a mirror: a base URL that serves the registry's archives under
#: their file names (``<mirror>/scifact.zip``, ``<mirror>/cran.tar.gz``) instead of their sites.
DATA_MIRROR_ENV = "ROBUSTIR_DATA_MIRROR"


class DatasetChecksumError(ValueError):
    """A downloaded archive, or a file converted from it, does not match its checksum."""


class DatasetDownloadError(DatasetUnavailableError):
    """No source of a dataset could be reached.

    Attributes:
        failures: one ``"<url>: <reason>"`` per source tried.
    """

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = failures


def _download_sources(entry: DatasetEntry, mirror: str | None) -> list[tuple[str, str | None]]:
    """``(url, md5)`` pairs to try in order: the original distribution or BEIR's official zip
    (verifiable) first, the study's release last; from ``mirror`` instead when one is given."""
    sources: list[tuple[str, str | None]] = []
    if entry.original is not None:
        sources.append((entry.original.url, None))
    if entry.beir_url is not None:
        sources.append((entry.beir_url, entry.beir_md5))
    if entry.study_url is not None:
        sources.append((entry.study_url, None))
    if mirror:
        sources = [(f"{mirror.rstrip('/')}/{_archive_name(url)}", md5) for url, md5 in sources]
    unique: dict[str, str | None] = {}
    for url, md5 in sources:  # a mirror serves BEIR's and the study's zip under one name
        unique.setdefault(url, md5)
    return list(unique.items())


def _archive_name(url: str) -> str:
    return PurePosixPath(urllib.parse.urlsplit(url).path).name


def _fetch_with_resume(url: str, part: Path, *, progress: bool) -> None:
    """Download ``url`` into ``part``, continuing a partial file with an HTTP Range request."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "robustir"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to fetch: the part is complete
            logger.info("%s: %s already complete (%d bytes)", url, part, offset)
            return
        raise
    with response:
        if offset and response.status != 206:
            logger.info("%s ignores Range; restarting the download from byte 0", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        with (
            part.open(mode) as sink,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=part.name,
                disable=not progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0"),
            ) as bar,
        ):
            received = offset
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                sink.write(chunk)
                bar.update(len(chunk))
                received += len(chunk)
    # http.client returns a short body without raising when the server hangs up early
    if total is not None and received < total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")


def _file_digests(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(DOWNLOAD_CHUNK_BYTES):
            md5.update(block)
            sha256.update(block)
    return md5.hexdigest(), sha256.hexdigest()


def _check_members(archive: Path, names: list[str], destination: Path) -> None:
    for name in names:
        if not (destination / name).resolve().is_relative_to(destination):
            raise DatasetUnavailableError(
                f"{archive}: member {name!r} would be written outside {destination}; "
                "the archive is not a dataset release, delete it."
            )


def _unpack(archive: Path, destination: Path) -> None:
    """Unpack a zip or tar archive into ``destination``, refusing members that would land
    outside it; of a tar archive only regular files and folders are unpacked (no links)."""
    destination = destination.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            _check_members(archive, bundle.namelist(), destination)
            bundle.extractall(destination)
        return
    if not tarfile.is_tarfile(archive):
        raise DatasetUnavailableError(f"{archive} is neither a zip nor a tar archive")
    with tarfile.open(archive) as bundle:
        members = [m for m in bundle.getmembers() if m.isfile() or m.isdir()]
        _check_members(archive, [m.name for m in members], destination)
        for member in members:
            target = destination / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.extractfile(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)


def _partial_download_path(root: Path, key: str, url: str) -> Path:
    """One ``.part`` file per source, so bytes from two servers are never spliced together."""
    tag = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    name = _archive_name(url)
    suffix = ".tar.gz" if name.endswith(".tar.gz") else PurePosixPath(name).suffix
    return root / f"{key}.{tag}{suffix}.part"


def _verify_archive(entry: DatasetEntry, part: Path, url: str, md5: str | None) -> None:
    """Check a complete download against its published MD5; delete it on a mismatch."""
    actual_md5, actual_sha256 = _file_digests(part)
    if md5 is None and entry.original is not None:
        logger.info(
            "%s: sha256 %s (no published checksum; the converted files are checked instead)",
            url,
            actual_sha256,
        )
    elif md5 is None:
        logger.warning(
            "%s: no published checksum, cannot verify; sha256 of the download is %s",
            url,
            actual_sha256,
        )
    elif actual_md5 != md5:
        part.unlink()
        raise DatasetChecksumError(
            f"{url}: MD5 {actual_md5} does not match the published {md5}; the download "
            f"was deleted, run download_dataset({entry.key!r}) again or fetch the zip by hand."
        )
    else:
        logger.info("%s: MD5 verified (%s); sha256 %s", url, md5, actual_sha256)


def _verify_conversion(original: OriginalDistribution, staged: Path, url: str) -> None:
    """Check the converted BEIR files in ``staged`` against the project's checksums."""
    mismatches = []
    for name, expected in original.converted_sha256:
        path = staged / name
        actual = _file_digests(path)[1] if path.is_file() else "none (file not written)"
        if actual != expected:
            mismatches.append(f"{name} has sha256 {actual}, expected {expected}")
    if mismatches:
        raise DatasetChecksumError(
            f"{url}: the converted files differ from the project's copy ({'; '.join(mismatches)}). "
            "Nothing was installed and the download was deleted. The archive is not the one the "
            f"project's copy was converted from; copy that copy (../shared/datasets/{staged.name}) "
            "into the data root instead."
        )


def _install(
    entry: DatasetEntry, archive: Path, folder: Path, splits: tuple[str, ...], url: str
) -> None:
    """Unpack ``archive`` (and convert it, for an original distribution) into ``folder``.

    The work happens in a staging folder beside ``folder``: files are moved into place only once
    the whole archive is unpacked, converted and verified, so an interruption never leaves a
    truncated file where :func:`load_dataset` would read it.
    """
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{entry.key}-staging-") as scratch:
        staging = Path(scratch)
        staged = staging / entry.key
        try:
            if entry.original is None:
                _unpack(archive, staging)
            else:
                _unpack(archive, staging / "unpacked")
                corpus, queries, qrels = entry.original.read(staging / "unpacked")
                write_beir_folder(staged, corpus=corpus, queries=queries, qrels=qrels)
        except (DatasetUnavailableError, zipfile.BadZipFile, tarfile.TarError) as error:
            raise DatasetUnavailableError(
                f"{url} did not give a readable archive ({error}); it was kept as {archive} for "
                f"inspection. {entry.download_hint()}"
            ) from None
        except (FileNotFoundError, ValueError) as error:  # the reader's: a file absent or malformed
            raise DatasetUnavailableError(
                f"{url}: cannot convert the archive ({error}); it was kept as {archive} for "
                "inspection."
            ) from None
        if entry.original is not None:
            _verify_conversion(entry.original, staged, url)
        lacking = missing_files(staged, splits)
        if lacking:
            raise DatasetUnavailableError(
                f"{url} unpacked without {', '.join(f'{entry.key}/{n}' for n in lacking)}; the "
                f"archive must hold a top-level {entry.key}/ folder in BEIR layout with the "
                f"qrels of the splits {', '.join(splits)}. It was kept as {archive}."
            )
        for path in sorted(staged.rglob("*")):
            if path.is_file():
                target = folder / path.relative_to(staged)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)


def download_dataset(
    key: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    sources: list[tuple[str, str | None]] | None = None,
    splits: Iterable[str] | None = None,
    mirror: str | None = None,
) -> Path:
    """Download a registry dataset into the data root, resuming and verifying it.

    The archive is fetched to ``<root>/<key>.<url tag>.<suffix>.part``; an interrupted
    download leaves that file in place and the next call continues it with an HTTP ``Range``
    request. A complete archive is checked against its published MD5 when one is known (BEIR's
    13 sets); on a mismatch the ``.part`` file is deleted (resuming it could never succeed) and
    :class:`DatasetChecksumError` is raised. An archive without a published checksum is logged
    with its sha256 as unverified, except an original distribution (Cranfield's SMART files),
    which is converted to BEIR layout by the project's reader and verified file by file against
    the checksums of the project's copy (:class:`OriginalDistribution`). The files are unpacked
    or converted in a staging folder and moved into ``<root>/<key>/`` once complete; then the
    archive is deleted.

    Sources are tried in order (the original distribution or BEIR's official location before
    the study's release), and the next one is used when a source cannot be reached.

    Used by ``robustir data fetch`` and ``make book`` (README, *Two commands*).

    Args:
        key: a key of :data:`DATASETS`.
        data_root: destination root; see :func:`data_root`.
        progress: show a byte progress bar (also silenced by ``TQDM_DISABLE``).
        sources: ``(url, md5 or None)`` pairs overriding the registry's (tests).
        splits: the qrels splits the folder must hold; default the entry's. A folder that
            already holds them is left alone, without any network access.
        mirror: base URL of a mirror serving the registry's archives under their file names
            (``<mirror>/scifact.zip``), checked as the originals are; default
            ``$ROBUSTIR_DATA_MIRROR``. Ignored when ``sources`` is given.

    Returns:
        The dataset folder ``<root>/<key>``.

    Raises:
        UnknownDatasetError: ``key`` is not in the registry.
        DatasetDownloadError: no source could be reached (offline); the message says where to
            put the files by hand.
        DatasetUnavailableError: the entry has no download, or the archive is unreadable or
            lacks a needed file (it is kept for inspection).
        DatasetChecksumError: the archive does not match its published MD5, or a converted file
            differs from the project's copy (the message names the file).
    """
    entry = get_dataset_entry(key)
    root = _resolve_data_root(data_root)
    folder = root / key
    splits = tuple(entry.splits if splits is None else splits)
    if not missing_files(folder, splits):
        logger.info("%s already present in %s; nothing to download", key, folder)
        return folder
    if sources is None:
        sources = _download_sources(entry, mirror or os.environ.get(DATA_MIRROR_ENV))
    if not sources:
        raise DatasetUnavailableError(f"{entry.download_hint()} Expected folder: {folder}.")
    root.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url, md5 in sources:
        part = _partial_download_path(root, key, url)
        try:
            _fetch_with_resume(url, part, progress=progress)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            failures.append(f"{url}: {getattr(error, 'reason', error)}")
            logger.info("could not download %s; trying the next source, if any", failures[-1])
            continue
        _verify_archive(entry, part, url, md5)
        archive = part.with_suffix("")
        part.replace(archive)
        try:
            _install(entry, archive, folder, splits, url)
        except DatasetChecksumError:
            archive.unlink()  # not the archive the checksums describe: fetching it again won't help
            raise
        archive.unlink()
        return folder
    raise DatasetDownloadError(
        f"could not download dataset {key!r} ({'; '.join(failures)}). Offline? Put the files "
        f"by hand in {folder}: {', '.join(missing_files(folder, splits))}. "
        f"{entry.download_hint()} Partial downloads, if any, are kept as "
        f"{root / (key + '.*.part')} and resumed on the next call.",
        failures,
    )


# --------------------------------------------------------------------------- data before jobs


@dataclass(frozen=True)
class DatasetNeed:
    """A dataset folder and the qrels splits that must be loadable from it.

    Attributes:
        folder: the dataset folder; its name is the registry key when it has one.
        splits: the qrels splits to be loaded, e.g. ``("test", "train")``.
    """

    folder: Path
    splits: tuple[str, ...]

    @property
    def name(self) -> str:
        """The dataset's name (the folder's)."""
        return self.folder.name

    def missing(self) -> list[str]:
        """The files the folder lacks (:func:`missing_files`)."""
        return missing_files(self.folder, self.splits)


class MissingDatasetsError(DatasetUnavailableError):
    """Datasets are missing or incomplete; the one message lists every file and how to get it."""


def _listing(lacking: list[tuple[DatasetNeed, str]]) -> str:
    return "\n".join(f"  {need.name}: {detail}" for need, detail in lacking)


def check_datasets(needs: Iterable[DatasetNeed], *, fetch_command: str) -> None:
    """Fail with one message unless every dataset folder holds the files its splits need.

    Used by the grid runner before any job starts (:func:`robustir.preflight.check_grid_datasets`).

    Args:
        needs: the folders and splits to check.
        fetch_command: the command that fetches what is missing, named in the message.

    Raises:
        MissingDatasetsError: every folder that lacks files, with the files, where they go and
            the command that fetches them.
    """
    lacking = [
        (need, f"{', '.join(files)} not found in {need.folder}")
        for need in needs
        if (files := need.missing())
    ]
    if lacking:
        raise MissingDatasetsError(
            f"{len(lacking)} dataset(s) are missing or incomplete:\n{_listing(lacking)}\n"
            f"Fetch them with `{fetch_command}` on a machine with internet (`make book` does "
            "this first), or put the BEIR-format files there by hand, e.g. copies of "
            "../shared/datasets/<name> (the data root is $ROBUSTIR_DATA, else ./data). "
            "No job was started."
        )


def fetch_datasets(
    needs: Iterable[DatasetNeed], *, progress: bool = True, mirror: str | None = None
) -> list[Path]:
    """Download every dataset whose folder lacks files, and report all failures at once.

    Used by ``robustir data fetch`` and ``make book`` (README, *Two commands*).

    Args:
        needs: folders (named by registry keys) and the splits each must hold.
        progress: show byte progress bars.
        mirror: see :func:`download_dataset`.

    Returns:
        The folders downloaded (those already complete are left alone and not listed).

    Raises:
        MissingDatasetsError: one or more datasets could not be fetched; the message lists each
            with its reason, the archives to fetch and where to put the files by hand.
    """
    fetched: list[Path] = []
    failed: list[tuple[DatasetNeed, str]] = []
    for need in needs:
        if not need.missing():
            continue
        if need.name not in DATASETS:
            failed.append((need, "not in the dataset registry; only a copy by hand will do"))
            continue
        try:
            fetched.append(
                download_dataset(
                    need.name,
                    need.folder.parent,
                    progress=progress,
                    splits=need.splits,
                    mirror=mirror,
                )
            )
        except DatasetDownloadError as error:
            failed.append((need, "; ".join(error.failures)))
        except (DatasetUnavailableError, DatasetChecksumError) as error:
            failed.append((need, str(error)))
    if failed:
        archives = sorted(
            {
                _archive_name(url)
                for need, _ in failed
                if need.name in DATASETS
                for url, _ in _download_sources(DATASETS[need.name], None)
            }
        )
        by_hand = "\n".join(f"  {need.folder}: {', '.join(need.missing())}" for need, _ in failed)
        raise MissingDatasetsError(
            f"could not fetch {len(failed)} dataset(s):\n{_listing(failed)}\n"
            f"Offline? Fetch them on a machine with internet, or from a local mirror "
            f"({DATA_MIRROR_ENV}=<base URL> serving {', '.join(archives) or 'nothing known'}), "
            f"or put the BEIR-format files there by hand (e.g. copies of "
            f"../shared/datasets/<name>):\n{by_hand}\n"
            "Partial downloads are kept beside those folders and resumed next time."
        )
    return fetched
