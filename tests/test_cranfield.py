"""Cranfield from its original SMART files: the converter field by field, its errors, and the
download that converts and verifies (byte-identical to the shared copy, resumable, refusing an
archive whose conversion differs)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from archive_server import ArchiveServer
from robustir import cranfield, data
from robustir.cranfield import SmartFormatError, read_cranfield, read_judgements, read_smart
from robustir.data import DatasetChecksumError, DatasetDownloadError
from smart_files import (
    TINY_FILES,
    TINY_JUDGEMENTS,
    register_tiny_cranfield,
    render_smart,
    smart_tarball,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTIR_SHARED_DATA") or REPO.parent / "shared" / "datasets")
CONVERTED = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")

needs_shared = pytest.mark.skipif(
    not (SHARED / "cranfield" / "corpus.jsonl").is_file(),
    reason=f"shared datasets not found at {SHARED} (set ROBUSTIR_SHARED_DATA)",
)


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the converter


def test_converter_maps_every_field(tmp_path):
    corpus, queries, qrels = read_cranfield(_write(tmp_path / "cran", TINY_FILES))
    assert corpus == {
        "1": {"title": "lift of a thin wing in a slipstream .",
              "text": "lift of a thin wing in a slipstream . the lift grows with the angle of "
                      "attack .  the results agree with a potential flow theory . a second "
                      "paragraph after a blank line ."},
        "2": {"title": "", "text": ""},
        "3": {"title": "heat transfer at mach numbers 3 .5 and 8 .5 .",
              "text": "heat transfer at mach numbers 3 .5 and 8 .5 ."},
    }
    # renumbered in file order (.I 001, 004 -> 1, 2), as cranqrel numbers them
    assert queries == {"1": "what is the lift of a thin wing in a slipstream .",
                       "2": "heat transfer at high mach numbers ."}
    # gains 5 - code, and 0 for -1; ordered by query, then document number
    assert qrels == {"test": {"1": {"1": 4, "2": 2, "3": 3}, "2": {"2": 1, "3": 0}}}
    assert list(qrels["test"]["1"]) == ["1", "2", "3"]


def test_converted_folder_is_written_and_loads(tmp_path):
    corpus, queries, qrels = read_cranfield(_write(tmp_path / "cran", TINY_FILES))
    folder = data.write_beir_folder(tmp_path / "cranfield", corpus=corpus, queries=queries,
                                    qrels=qrels)
    assert (folder / "qrels" / "test.tsv").read_text() == (
        "query-id\tcorpus-id\tscore\n1\t1\t4\n1\t2\t2\n1\t3\t3\n2\t2\t1\n2\t3\t0\n")
    assert (folder / "queries.jsonl").read_text().splitlines()[1] == (
        '{"_id": "2", "text": "heat transfer at high mach numbers ."}')
    assert (folder / "corpus.jsonl").read_text().splitlines()[1] == (
        '{"_id": "2", "title": "", "text": ""}')
    loaded = data.load_dataset(folder, "test")
    assert loaded.qrels == qrels["test"]
    assert data.document_text(loaded.corpus["2"]) == "[PAD]"


def test_judgements_sort_document_numbers_as_numbers(tmp_path):
    path = tmp_path / "cranqrel"
    path.write_text("1 10 1\n1 9 2\n1 2 -1\n")
    assert list(read_judgements(path, n_queries=1)["1"].items()) == [("2", 0), ("9", 3), ("10", 4)]


@pytest.mark.parametrize("text,message", [
    (".I 1\n.T\nlift\n.X\nwhat\n", r"cran.all.1400:4: unknown field marker '.X' in record 1; "
                                   r"cran.all.1400 records hold .T, .A, .B, .W"),
    ("lift\n.I 1\n.W\nlift\n", r"cran.all.1400:1: text outside the first '.I' record"),
    (".I 1\nlift\n", r"cran.all.1400:2: text outside a field of record 1"),
    (".I 1\n.W\nlift\n.I 1\n.W\ndrag\n", r"cran.all.1400:4: record number 1 repeats line 1"),
    (".I 1\n.W\nlift\n.W\ndrag\n", r"cran.all.1400:4: field '.W' appears twice in record 1"),
    (".I\n.W\nlift\n", r"cran.all.1400:1: '.I' without a record number"),
    (".T\nlift\n", r"cran.all.1400:1: field '.T' before the first '.I' record"),
])
def test_malformed_smart_files_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "cran.all.1400"
    path.write_text(text)
    with pytest.raises(SmartFormatError, match=message):
        read_smart(path, fields=("T", "A", "B", "W"))


@pytest.mark.parametrize("text,message", [
    ("1 1 1\n1 2 5\n", r"cranqrel:2: relevance code 5 is not one of Cleverdon's codes 1, 2, 3, 4, -1"),
    ("1 1\n", r"cranqrel:1: expected three integers '<query> <document> <code>', got '1 1'"),
    ("3 1 1\n", r"cranqrel:1: query 3 is outside 1..2"),
    ("1 1 1\n\n1 1 2\n", r"cranqrel:3: query 1, document 1 was already judged on line 1"),
])
def test_malformed_judgements_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "cranqrel"
    path.write_text(text)
    with pytest.raises(SmartFormatError, match=message):
        read_judgements(path, n_queries=2)


def test_a_missing_file_or_query_text_is_named(tmp_path):
    folder = _write(tmp_path / "cran", {k: v for k, v in TINY_FILES.items() if k != "cranqrel"})
    with pytest.raises(FileNotFoundError, match=r"expected one cranqrel in .*found none"):
        read_cranfield(folder)
    _write(folder, {"cranqrel": TINY_JUDGEMENTS, "cran.qry": ".I 001\n.W\nlift\n.I 002\n.W\n"})
    with pytest.raises(SmartFormatError, match=r"cran.qry:4: query 002 has no '.W' text"):
        read_cranfield(folder)


# --------------------------------------------------------------------------- download and conversion


def test_registry_names_the_original_distribution_and_the_shared_checksums():
    original = data.DATASETS["cranfield"].original
    assert original.url == "http://ir.dcs.gla.ac.uk/resources/test_collections/cran/cran.tar.gz"
    assert original.read is cranfield.read_cranfield
    assert [name for name, _ in original.converted_sha256] == list(CONVERTED)
    assert "robustir data fetch cranfield" in data.DATASETS["cranfield"].download_hint()


@needs_shared
def test_original_distribution_converts_byte_identical_to_the_shared_copy(tmp_path):
    shared = SHARED / "cranfield"
    # the registry's checksums are the shared copy's
    assert dict(data.DATASETS["cranfield"].original.converted_sha256) == {
        name: _sha256(shared / name) for name in CONVERTED}
    corpus = data.load_corpus(shared / "corpus.jsonl")
    queries = data.load_queries(shared / "queries.jsonl")
    qrels = data.load_qrels(shared / "qrels" / "test.tsv")
    assert len(corpus) == 1400 and len(queries) == 225 and sum(map(len, qrels.values())) == 1837
    archive = smart_tarball(render_smart(corpus, queries, qrels))
    with ArchiveServer({"cran.tar.gz": archive}) as server:
        folder = data.download_dataset("cranfield", tmp_path, progress=False, mirror=server.base)
    assert server.requests == [("/cran.tar.gz", None)]
    for name in CONVERTED:
        assert (folder / name).read_bytes() == (shared / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cranfield"]  # archive, staging gone


def test_conversion_that_differs_from_the_project_copy_is_refused_naming_the_files(tmp_path):
    archive = smart_tarball({k: v.encode() for k, v in TINY_FILES.items()})
    with ArchiveServer({"cran.tar.gz": archive}) as server:
        with pytest.raises(DatasetChecksumError) as raised:
            data.download_dataset("cranfield", tmp_path, progress=False, mirror=server.base)
    message = str(raised.value)
    for name in CONVERTED:
        assert f"{name} has sha256 " in message
    assert "expected bfe1bdbaf720f4a5" in message and "Nothing was installed" in message
    assert list(tmp_path.iterdir()) == []  # no folder, no staging, the download deleted


def test_interrupted_download_of_the_distribution_resumes(tmp_path, monkeypatch):
    reference = register_tiny_cranfield(monkeypatch, tmp_path / "reference")
    archive = smart_tarball({k: v.encode() for k, v in TINY_FILES.items()}, folder="cran")
    root = tmp_path / "data"
    size = len(archive)
    with ArchiveServer({"cran.tar.gz": archive}, truncate_first=True) as server:
        with pytest.raises(DatasetDownloadError, match=r"resumed on the next call"):
            data.download_dataset("cranfield", root, progress=False, mirror=server.base)
        (part,) = root.glob("cranfield.*.tar.gz.part")
        assert part.stat().st_size == size // 2
        data.download_dataset("cranfield", root, progress=False, mirror=server.base)
    assert server.requests == [("/cran.tar.gz", None), ("/cran.tar.gz", f"bytes={size // 2}-")]
    for name in CONVERTED:
        assert (root / "cranfield" / name).read_bytes() == (reference / name).read_bytes()
    assert data.load_dataset("cranfield", "test", root).qrels["2"] == {"2": 1, "3": 0}


def test_an_archive_without_the_smart_files_is_kept_and_named(tmp_path):
    archive = smart_tarball({"README": b"not the collection\n"})
    with ArchiveServer({"cran.tar.gz": archive}) as server:
        with pytest.raises(data.DatasetUnavailableError,
                           match=r"cannot convert the archive \(expected one cran.all.1400"):
            data.download_dataset("cranfield", tmp_path, progress=False, mirror=server.base)
    kept = data._partial_download_path(tmp_path, "cranfield", server.url_of("cran.tar.gz"))
    assert list(tmp_path.iterdir()) == [kept.with_suffix("")]  # no folder, no staging
