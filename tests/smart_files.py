"""Cranfield's SMART-format files for testing the converter: a tiny hand-written distribution
(:data:`TINY_FILES`) and a writer of whole collections from BEIR dicts.

:func:`render_smart` is the inverse of :func:`robustir.cranfield.read_cranfield`, following the
original layout: ``.I`` records with ``.T``, ``.A``, ``.B`` and ``.W`` fields whose text is
wrapped over lines of about 70 characters, some indented like the original's paragraphs and some
with trailing blanks; query records numbered non-sequentially (``.I 001`` … ``.I 365``); and
``cranqrel`` lines ``<query> <document> <code>`` in no particular order within a query. The
original authors and sources are not in the BEIR copy, so ``.A`` and ``.B`` hold placeholders
(the converter drops both fields).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import re
import tarfile
from pathlib import Path

from robustir import data
from robustir.cranfield import read_cranfield

CODE_BY_GAIN = {4: 1, 3: 2, 2: 3, 1: 4, 0: -1}

# A hand-written distribution in the original layout: wrapped and indented field text, two
# spaces after a full stop inside a line, an empty document, a text line that starts with a dot,
# authors and sources that the conversion drops, non-sequential query numbers, a -1 code.
TINY_DOCUMENTS = """\
.I 1
.T
lift of a thin wing
in a slipstream .
.A
doe,j.
.B
j. ae. scs. 1, 1950, 1.
.W
lift of a thin wing
in a slipstream .
  the lift grows with the angle of attack .  the
results agree with a potential flow theory .\x20\x20

  a second paragraph after a blank line .
.I 2
.T
.A
.B
.W
.I 3
.T
heat transfer at mach numbers 3
.5 and 8 .5 .
.A
.B
.W
heat transfer at mach numbers 3
.5 and 8 .5 .
"""
TINY_QUERIES = """\
.I 001
.W
what is the lift of a thin wing
in a slipstream .
.I 004
.W
  heat transfer at high mach numbers .
"""
TINY_JUDGEMENTS = "1 3 2\n1 1 1 \n2 3 -1\n2 2 4\n1 2 3\n"
TINY_FILES = {"cran.all.1400": TINY_DOCUMENTS, "cran.qry": TINY_QUERIES, "cranqrel": TINY_JUDGEMENTS}


def wrap(text: str, rng: random.Random, *, width: int = 70) -> list[str]:
    """Lines of ``text`` broken only at single blanks between words, so that stripping each line
    and joining them with one blank gives ``text`` back (double blanks stay inside a line)."""
    if not text:
        return []
    lines = [""]
    for word in re.split(r"(?<=\S) (?=\S)", text):
        if lines[-1] and len(lines[-1]) + 1 + len(word) > width:
            lines.append(word)
        else:
            lines[-1] = f"{lines[-1]} {word}" if lines[-1] else word
    return [("  " if i and rng.random() < 0.2 else "") + line + (" " if rng.random() < 0.1 else "")
            for i, line in enumerate(lines)]


def render_smart(corpus: dict, queries: dict, qrels: dict, *, seed: int = 1400) -> dict[str, bytes]:
    """``{file name: bytes}`` of ``cran.all.1400``, ``cran.qry`` and ``cranqrel``.

    Args:
        corpus: ``{doc_id: {"title", "text"}}`` with numeric ids.
        queries: ``{query_id: text}`` with ids ``"1"`` … in order.
        qrels: ``{query_id: {doc_id: gain}}`` with gains 0..4.
        seed: for the wrapping decorations and the judgement order.
    """
    rng = random.Random(seed)
    documents = []
    for doc_id, doc in corpus.items():
        empty = not doc["text"]  # the two empty documents have no authors or source either
        documents += [f".I {doc_id}", ".T", *wrap(doc["title"], rng),
                      ".A", *([] if empty else [f"author {doc_id}, a."]),
                      ".B", *([] if empty else [f"source of document {doc_id}, 1958."]),
                      ".W", *wrap(doc["text"], rng)]
    smart_queries = []
    for index, text in enumerate(queries.values(), start=1):
        number = index * 365 // len(queries)  # increasing, with gaps: the original runs to 365
        smart_queries += [f".I {number:03d}", ".W", *wrap(text, rng)]
    judgements = []
    for query_id, judged in qrels.items():
        lines = [f"{query_id} {doc_id} {CODE_BY_GAIN[gain]}" + " " * rng.randint(0, 1)
                 for doc_id, gain in judged.items()]
        rng.shuffle(lines)
        judgements += lines
    return {name: ("\n".join(lines) + "\n").encode("ascii") for name, lines in (
        ("cran.all.1400", documents), ("cran.qry", smart_queries), ("cranqrel", judgements))}


def smart_tarball(files: dict[str, bytes], *, folder: str = "") -> bytes:
    """A gzipped tar of ``files``, under ``folder/`` when given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, payload in files.items():
            member = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            member.size = len(payload)
            bundle.addfile(member, io.BytesIO(payload))
    return buffer.getvalue()


def register_tiny_cranfield(monkeypatch, workdir: Path) -> Path:
    """Make the registry's Cranfield checksums those of the tiny distribution's conversion.

    Returns:
        The expected BEIR folder (converted with the project's reader and writer).
    """
    source = workdir / "tiny-smart"
    source.mkdir(parents=True)
    for name, text in TINY_FILES.items():
        (source / name).write_text(text)
    corpus, queries, qrels = read_cranfield(source)
    expected = data.write_beir_folder(workdir / "tiny-beir" / "cranfield", corpus=corpus,
                                      queries=queries, qrels=qrels)
    entry = data.DATASETS["cranfield"]
    checksums = tuple((name, hashlib.sha256((expected / name).read_bytes()).hexdigest())
                      for name, _ in entry.original.converted_sha256)
    original = dataclasses.replace(entry.original, converted_sha256=checksums)
    monkeypatch.setitem(data.DATASETS, "cranfield", dataclasses.replace(entry, original=original))
    return expected
