"""Helpers of the fault suite: tiny BEIR folders, the command line in-process, file snapshots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_NOTEBOOK = REPO / "tests" / "fixtures" / "notebooks" / "tiny_entry.py"

CORPUS = [
    {"_id": "d1", "title": "Bones", "text": "vitamin d deficiency and bone fractures in the elderly"},
    {"_id": "d2", "title": "", "text": "aspirin lowers the risk of a first stroke"},
    {"_id": "d3", "title": "Sleep", "text": "sleep deprivation impairs memory consolidation"},
    {"_id": "d4", "title": "Diet", "text": "a diet rich in fibre lowers blood pressure"},
]
QUERIES = [{"_id": "q1", "text": "vitamin d fractures"}, {"_id": "q2", "text": "aspirin stroke"},
           {"_id": "q3", "text": "sleep and memory"}]
QRELS = [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d3", 2)]


def write_beir(folder: Path, *, corpus=CORPUS, queries=QUERIES, qrels=QRELS,
               corpus_text: str | None = None, queries_text: str | None = None,
               qrels_text: str | None = None) -> Path:
    """A BEIR folder with split ``test``; ``*_text`` replace a file's content verbatim."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text(
        corpus_text if corpus_text is not None else "".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text(
        queries_text if queries_text is not None
        else "".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        qrels_text if qrels_text is not None else
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in qrels))
    return folder


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path → bytes); empty when ``root`` is absent."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A small BEIR folder ``tiny`` with split ``test``."""
    return write_beir(tmp_path / "tiny")


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """``cli(*argv) -> (exit status, stdout, stderr)`` of ``robustir``, in ``tmp_path``."""
    from robustir.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:  # argparse rejects an option at parse time
            code = stop.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def umask():
    """``umask(mask)`` sets the process's umask for the test; the old one is restored."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)
