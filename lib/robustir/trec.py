"""Reading TREC run files and qrels, for scoring runs made elsewhere.

A run file has six whitespace-separated columns ``qid Q0 docid rank score tag``; the rank
column is ignored, as trec_eval does. Qrels are read in TREC form (``qid iter docid grade``)
or BEIR form (tab-separated ``query-id corpus-id score`` with a header), told apart by the
column count.

Used in the book chapter "Evaluation: nDCG and trec_eval conventions" (``robustir evaluate-run``).
"""

from __future__ import annotations

import codecs
import math
import os
from pathlib import Path

from robustir.data import BeirFormatError, load_qrels

__all__ = ["read_qrels", "read_run"]


def _rows(path: Path):
    """``(line number, fields)`` of the non-blank lines; a leading byte-order mark is dropped."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.removeprefix(codecs.BOM_UTF8 if number == 1 else b"").decode("utf-8")
            except UnicodeDecodeError as error:
                raise BeirFormatError(f"{path}:{number}: not valid UTF-8 ({error}); re-save the "
                                      "file as UTF-8") from None
            if line.strip():
                yield number, line.split()


def read_run(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """A TREC run file as ``{qid: {docid: score}}``.

    Raises:
        BeirFormatError: An empty file, a line without 6 columns, a score that is not a finite
            number (NaN would rank differently from one tool to the next), a (qid, docid) pair
            listed twice, or bytes that are not UTF-8; the message names the file and line.
    """
    path = Path(path)
    run: dict[str, dict[str, float]] = {}
    for number, fields in _rows(path):
        if len(fields) != 6:
            raise BeirFormatError(
                f"{path}:{number}: a run line needs 6 columns 'qid Q0 docid rank score tag', "
                f"got {len(fields)}"
            )
        qid, _, docid, _, score, _ = fields
        try:
            value = float(score)
        except ValueError:
            raise BeirFormatError(f"{path}:{number}: score {score!r} is not a number") from None
        if not math.isfinite(value):
            raise BeirFormatError(f"{path}:{number}: score {score!r} is not a finite number; "
                                  "give every hit a real score")
        hits = run.setdefault(qid, {})
        if docid in hits:
            raise BeirFormatError(f"{path}:{number}: document {docid!r} listed twice for query {qid!r}")
        hits[docid] = value
    if not run:
        raise BeirFormatError(f"{path}: the run is empty; it needs lines 'qid Q0 docid rank "
                              "score tag'")
    return run


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Qrels in TREC form (4 columns) or BEIR form (3 tab-separated columns, header).

    Raises:
        BeirFormatError: An empty file, a line of neither form, a non-integer grade or bytes
            that are not UTF-8 (file and line named).
    """
    path = Path(path)
    first = next(_rows(path), (0, []))[1]
    if not first:
        raise BeirFormatError(f"{path}: the qrels file is empty; it needs one judgement per line")
    if len(first) == 3:
        return load_qrels(path)
    qrels: dict[str, dict[str, int]] = {}
    for number, fields in _rows(path):
        if len(fields) != 4:
            raise BeirFormatError(
                f"{path}:{number}: a TREC qrels line needs 4 columns 'qid iter docid grade', "
                f"got {len(fields)}"
            )
        try:
            grade = int(fields[3])
        except ValueError:
            raise BeirFormatError(f"{path}:{number}: grade {fields[3]!r} is not an integer") from None
        qrels.setdefault(fields[0], {})[fields[2]] = grade
    return qrels
