"""Tests of robustir.data: real shared datasets, hand-made malformed files, local-only downloads."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import socket
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from archive_server import ArchiveServer
from robustir import data
from robustir.data import (
    BeirFormatError,
    DatasetChecksumError,
    DatasetUnavailableError,
    UnknownDatasetError,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTIR_SHARED_DATA") or REPO.parent / "shared" / "datasets")

needs_shared = pytest.mark.skipif(
    not (SHARED / "scifact" / "corpus.jsonl").is_file(),
    reason=f"shared datasets not found at {SHARED} (set ROBUSTIR_SHARED_DATA)",
)


# --------------------------------------------------------------------------- helpers

GOOD_CORPUS = [
    {"_id": "d1", "title": "Wing lift", "text": "Lift grows with the angle of attack."},
    {"_id": "d2", "title": "", "text": "Boundary layers separate."},
    {"_id": "d3", "text": "No title field at all."},
]
GOOD_QUERIES = [
    {"_id": "q1", "text": "how does lift depend on angle"},
    {"_id": "q2", "text": "boundary layer separation"},
    {"_id": "q3", "text": "an unjudged query"},
]
GOOD_QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td2\t1\n"


def _jsonl(rows: list) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def write_dataset(
    folder: Path,
    *,
    corpus: list | None = None,
    queries: list | None = None,
    qrels: str = GOOD_QRELS,
    split: str = "test",
) -> Path:
    """Write a tiny BEIR folder; rows given as strings are written verbatim (malformed lines)."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(_jsonl(GOOD_CORPUS if corpus is None else corpus))
    (folder / "queries.jsonl").write_text(_jsonl(GOOD_QUERIES if queries is None else queries))
    (folder / "qrels" / f"{split}.tsv").write_text(qrels)
    return folder


# --------------------------------------------------------------------------- shared datasets


@needs_shared
def test_scifact_test_split_matches_published_counts():
    dataset = data.load_dataset("scifact", "test", SHARED)
    assert (dataset.name, dataset.split) == ("scifact", "test")
    assert len(dataset.corpus) == 5183
    assert len(dataset.queries) == 300
    assert sum(len(judged) for judged in dataset.qrels.values()) == 339
    assert set(dataset.queries) == set(dataset.qrels)
    assert {g for judged in dataset.qrels.values() for g in judged.values()} == {1}
    assert dataset.unknown_doc_judgements == 0
    expected = hashlib.sha256()
    for name in ("qrels/test.tsv", "queries.jsonl", "corpus.jsonl"):
        expected.update((SHARED / "scifact" / name).read_bytes())
    assert dataset.checksum == expected.hexdigest()


@needs_shared
def test_scifact_train_split_is_disjoint_from_test():
    train = data.load_dataset(SHARED / "scifact", "train")
    test = data.load_dataset(SHARED / "scifact", "test")
    assert len(train.queries) == 809
    assert sum(len(judged) for judged in train.qrels.values()) == 919
    assert not set(train.queries) & set(test.queries)
    assert train.checksum != test.checksum
    assert data.available_splits(SHARED / "scifact") == ["test", "train"]


@needs_shared
def test_scifact_keep_unjudged_queries_gives_the_whole_file():
    dataset = data.load_dataset("scifact", "test", SHARED, keep_unjudged_queries=True)
    assert len(dataset.queries) == 1109
    assert dataset.queries == data.load_queries(SHARED / "scifact" / "queries.jsonl")


@needs_shared
def test_cranfield_graded_judgements():
    dataset = data.load_dataset("cranfield", data_root=SHARED)
    assert len(dataset.corpus) == 1400
    assert len(dataset.queries) == 225
    grades = Counter(g for judged in dataset.qrels.values() for g in judged.values())
    assert sum(grades.values()) == 1837
    assert grades == {4: 128, 3: 387, 2: 734, 1: 363, 0: 225}
    # two Cranfield documents have neither title nor text: the study encodes them as "[PAD]"
    padded = [i for i, doc in dataset.corpus.items() if data.document_text(doc) == "[PAD]"]
    assert sorted(padded) == ["471", "995"]


@needs_shared
def test_name_resolves_through_the_environment(monkeypatch):
    monkeypatch.setenv("ROBUSTIR_DATA", str(SHARED))
    assert data.load_dataset("scifact").path == SHARED / "scifact"


# --------------------------------------------------------------------------- data root, text


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("ROBUSTIR_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data.data_root() == tmp_path / "data"
    monkeypatch.setenv("ROBUSTIR_DATA", str(tmp_path / "env"))
    assert data.data_root() == tmp_path / "env"
    assert data.data_root(tmp_path / "explicit") == tmp_path / "explicit"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"title": "Wing lift", "text": "grows"}, "Wing lift grows"),
        ({"title": "", "text": "grows"}, "grows"),
        ({"text": "grows"}, "grows"),
        ({"title": "Wing", "text": ""}, "Wing "),  # title kept, joined with a space
        ({"title": "", "text": ""}, "[PAD]"),
        ({"title": "", "text": "  \n"}, "[PAD]"),
    ],
)
def test_document_text(doc, expected):
    assert data.document_text(doc) == expected


def test_document_text_empty_option():
    assert data.document_text({"title": "", "text": ""}, empty=None) == ""
    assert data.document_text({"title": "", "text": " "}, empty="<empty>") == "<empty>"
    assert data.pad_empty("  ") == "[PAD]"
    assert data.pad_empty(" a ") == " a "


# --------------------------------------------------------------------------- small good files


def test_tiny_dataset_restricts_queries_in_qrels_order(tmp_path):
    dataset = data.load_dataset(write_dataset(tmp_path / "tiny"))
    assert dataset.queries == {"q1": GOOD_QUERIES[0]["text"], "q2": GOOD_QUERIES[1]["text"]}
    assert dataset.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d2": 1}}
    assert dataset.corpus["d3"] == {"title": "", "text": "No title field at all."}


def test_query_variant_files_with_extra_keys(tmp_path):
    path = tmp_path / "variants.jsonl"
    path.write_text(
        _jsonl([{"_id": "q1", "text": "lfit", "original": "lift", "changed": True, "seed": 3}])
    )
    assert data.load_queries(path) == {"q1": "lfit"}


def test_qrels_header_detected_by_content(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("q1\td1\t1\nq1\td2\t1\nq2\td3\t1\n")
    assert data.load_qrels(path) == {"q1": {"d2": 1}, "q2": {"d3": 1}}  # study's quirk
    assert data.load_qrels(path, skip_first_qrels_line_for_headerless_files=False) == {
        "q1": {"d1": 1, "d2": 1},
        "q2": {"d3": 1},
    }
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert data.load_qrels(path) == {"q1": {"d1": 1}}


def test_headerless_quirk_can_drop_a_whole_query(tmp_path, caplog):
    folder = write_dataset(tmp_path / "bright", qrels="q1\td1\t1\nq2\td2\t1\n")
    with caplog.at_level(logging.WARNING, logger="robustir.data"):
        replicated = data.load_dataset(folder)
    assert list(replicated.queries) == ["q2"]
    assert replicated.skipped_headerless_line == ("q1", "d1", 1)
    assert "no header" in caplog.text
    corrected = data.load_dataset(folder, skip_first_qrels_line_for_headerless_files=False)
    assert list(corrected.queries) == ["q1", "q2"]
    assert corrected.skipped_headerless_line is None


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("which", "rows", "message"),
    [
        (
            "corpus",
            [GOOD_CORPUS[0], '{"_id": "d2", "text": oops}'],
            r"corpus\.jsonl:2: malformed JSON",
        ),
        ("queries", [GOOD_QUERIES[0], "{not json"], r"queries\.jsonl:2: malformed JSON"),
        ("corpus", [GOOD_CORPUS[0], "[1, 2]"], r"corpus\.jsonl:2: expected a JSON object"),
        (
            "corpus",
            [{"title": "t", "text": "x"}],
            r"corpus\.jsonl:1: corpus record lacks the field '_id'",
        ),
        (
            "corpus",
            [{"_id": "d1", "title": "t"}],
            r"corpus\.jsonl:1: corpus record lacks the field 'text'",
        ),
        (
            "queries",
            [GOOD_QUERIES[0], {"_id": "q2"}],
            r"queries\.jsonl:2: queries record lacks the field 'text'",
        ),
        (
            "corpus",
            [{"_id": "d1", "text": 5}],
            r"corpus\.jsonl:1: field 'text' .* must be a string, got int",
        ),
        (
            "corpus",
            [GOOD_CORPUS[0], GOOD_CORPUS[1], {"_id": "d1", "text": "again"}],
            r"corpus\.jsonl:3: duplicate corpus id 'd1' \(first on line 1\)",
        ),
        (
            "queries",
            [GOOD_QUERIES[0], {"_id": "q1", "text": "again"}, GOOD_QUERIES[1]],
            r"queries\.jsonl:2: duplicate queries id 'q1' \(first on line 1\)",
        ),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, which, rows, message):
    folder = write_dataset(tmp_path / "bad", **{which: rows})
    with pytest.raises(BeirFormatError, match=message):
        data.load_dataset(folder)


def test_blank_lines_are_skipped_but_line_numbers_are_kept(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text(json.dumps(GOOD_QUERIES[0]) + "\n\n" + '{"_id": 1}\n')
    with pytest.raises(BeirFormatError, match=r"queries\.jsonl:3: .*lacks the field 'text'"):
        data.load_queries(path)


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        (
            "query-id\tcorpus-id\tscore\nq1 d1 1\n",
            r"test\.tsv:2: expected 3 tab-separated columns .* found 1",
        ),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\textra\n", r"test\.tsv:2: expected 3 .* found 4"),
        (
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0.5\n",
            r"test\.tsv:3: relevance grade '0\.5' is not an integer",
        ),
        (
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td2\t1\n",
            r"test\.tsv:3: query id 'q9' is not in .*queries\.jsonl",
        ),
    ],
)
def test_malformed_qrels(tmp_path, qrels, message):
    with pytest.raises(BeirFormatError, match=message):
        data.load_dataset(write_dataset(tmp_path / "bad", qrels=qrels))


def test_unknown_judged_doc_ids_warn_or_fail(tmp_path, caplog):
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tgone\t1\nq2\tlost\t2\n"
    folder = write_dataset(tmp_path / "bad", qrels=qrels)
    with caplog.at_level(logging.WARNING, logger="robustir.data"):
        dataset = data.load_dataset(folder)
    assert dataset.unknown_doc_judgements == 2
    assert dataset.qrels["q1"] == {"d1": 1, "gone": 1}  # kept, as the study's loader does
    assert "2 judged (query, doc) pairs name doc ids absent" in caplog.text
    with pytest.raises(BeirFormatError, match=r"2 judged doc ids are not in .*first 'gone'"):
        data.load_dataset(folder, unknown_doc_ids="error")


def test_empty_query_text(tmp_path):
    queries = [GOOD_QUERIES[0], {"_id": "q2", "text": "   "}, {"_id": "q3", "text": ""}]
    folder = write_dataset(tmp_path / "bad", queries=queries)
    with pytest.raises(
        BeirFormatError,
        match=r"queries\.jsonl:2: query 'q2' has empty text.*allow_empty_queries=True",
    ):
        data.load_dataset(folder)
    dataset = data.load_dataset(folder, allow_empty_queries=True)
    assert dataset.queries["q2"] == "   "
    with pytest.raises(BeirFormatError, match=r"queries\.jsonl:2: query 'q2'"):
        data.load_queries(folder / "queries.jsonl")
    assert data.load_queries(folder / "queries.jsonl", allow_empty_queries=True)["q3"] == ""


def test_empty_unjudged_query_does_not_block_loading(tmp_path):
    queries = [*GOOD_QUERIES[:2], {"_id": "q3", "text": ""}]
    dataset = data.load_dataset(write_dataset(tmp_path / "ok", queries=queries))
    assert set(dataset.queries) == {"q1", "q2"}


def test_missing_split_lists_available_ones(tmp_path):
    folder = write_dataset(tmp_path / "tiny", split="dev")
    (folder / "qrels" / "train.tsv").write_text(GOOD_QRELS)
    with pytest.raises(
        DatasetUnavailableError, match=r"no split 'test' .*available splits: dev, train"
    ):
        data.load_dataset(folder)


def test_missing_dataset_says_where_to_put_files_and_where_to_download(tmp_path):
    with pytest.raises(DatasetUnavailableError) as raised:
        data.load_dataset("nfcorpus", data_root=tmp_path)
    message = str(raised.value)
    assert str(tmp_path / "nfcorpus" / "corpus.jsonl") in message
    assert (
        "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/nfcorpus.zip" in message
    )
    assert "download_dataset('nfcorpus')" in message


def test_missing_unknown_dataset_lists_known_keys(tmp_path):
    with pytest.raises(
        DatasetUnavailableError,
        match=r"not a registry key either; known datasets: msmarco, trec-covid",
    ):
        data.load_dataset("scifactt", data_root=tmp_path)
    with pytest.raises(
        UnknownDatasetError, match=r"unknown dataset 'scifactt'; known datasets: .*scifact"
    ):
        data.get_dataset_entry("scifactt")


def test_non_utf8_line(tmp_path):
    folder = write_dataset(tmp_path / "bad")
    (folder / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "caf\xe9"}\n')
    with pytest.raises(BeirFormatError, match=r"queries\.jsonl:1: not valid UTF-8"):
        data.load_dataset(folder)


# --------------------------------------------------------------------------- registry


def test_registry_holds_the_study_27_entries():
    assert len(data.STUDY_DATASETS) == 27
    # protocol §2.2: 42,524 scored queries in total, Quora 23.5% of them
    total = sum(data.DATASETS[key].queries_scored for key in data.STUDY_DATASETS)
    assert total == 42524
    assert round(data.DATASETS["quora"].queries_scored / total, 3) == 0.235
    benchmarks = Counter(data.DATASETS[key].benchmark for key in data.STUDY_DATASETS)
    assert benchmarks == {"BEIR": 13, "BRIGHT": 12, "MS MARCO": 1, "BrowseComp-Plus": 1}
    assert data.DATASETS["theoremqa_theorems"].queries_scored == 75
    assert data.DATASETS["msmarco"].splits == ("dev", "trec_dl19", "trec_dl20")
    assert data.DATASETS["browsecomp_plus"].splits == ("golds", "evidence")
    for key in data.STUDY_DATASETS:
        entry = data.DATASETS[key]
        assert entry.study_url == (
            "https://github.com/liyongkang123/extended_beir_datasets/releases/download/"
            f"beir_v1.0/{key}.zip"
        )
        assert (entry.beir_url is not None) == (entry.benchmark == "BEIR")
        assert entry.beir_md5 is None or len(entry.beir_md5) == 32
    assert data.DATASETS["scifact"].beir_md5 == "5f7d1de60b170fc8027bb7898e2efca1"
    assert data.DATASETS["scifact"].corpus_size == 5183
    assert data.DATASETS["cranfield"].study_url is None


def test_nq_is_attacked_with_the_nq_train_collection():
    # protocol §5.1: the attacker uses the training qrels, which for NQ live in nq-train
    entry = data.DATASETS["nq-train"]
    assert entry.splits == ("train",) and entry.queries_scored == 0
    assert entry.study_url == "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/nq-train.zip"
    assert data.DATASETS["nq"].attacker_dataset == "nq-train"
    assert {key: data.attacker_dataset_for(key) for key in ("nq", "hotpotqa", "msmarco", "scifact")} \
        == {"nq": "nq-train", "hotpotqa": "hotpotqa", "msmarco": "msmarco", "scifact": "scifact"}
    assert data.attacker_dataset_for("/data/my-nq") == "/data/my-nq"  # a folder: itself
    assert "nq-train" not in data.STUDY_DATASETS and data.ATTACKER_DATASETS == {"nq-train"}


def test_nq_training_split_loads_from_nq_train_only(tmp_path):
    write_dataset(tmp_path / "nq")  # BEIR's nq: test qrels only
    write_dataset(tmp_path / "nq-train", split="train")
    with pytest.raises(DatasetUnavailableError, match="'nq' has no split 'train'"):
        data.load_dataset("nq", "train", tmp_path)  # what the attack loaded before the mapping
    train = data.load_dataset(data.attacker_dataset_for("nq"), "train", tmp_path)
    assert (train.name, train.split, len(train.qrels)) == ("nq-train", "train", 2)


# --------------------------------------------------------------------------- downloads (local only)


def _dataset_zip(
    key: str, *, member_prefix: str | None = None, splits: tuple[str, ...] = ("test",)
) -> bytes:
    buffer = io.BytesIO()
    prefix = f"{key}/" if member_prefix is None else member_prefix
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr(f"{prefix}corpus.jsonl", _jsonl(GOOD_CORPUS))
        bundle.writestr(f"{prefix}queries.jsonl", _jsonl(GOOD_QUERIES))
        for split in splits:
            bundle.writestr(f"{prefix}qrels/{split}.tsv", GOOD_QRELS)
    return buffer.getvalue()


class _ZipServer(ArchiveServer):
    """The mirror server with one payload at ``/tiny.zip``, which it may truncate at first."""

    def __init__(self, payload: bytes, **options) -> None:
        super().__init__({"tiny.zip": payload}, **options)
        self.url = self.url_of("tiny.zip")

    @property
    def range_headers(self) -> list[str | None]:
        return [header for _, header in self.requests]


def _refused_url() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/scifact.zip"


def test_download_verifies_md5_and_unpacks(tmp_path):
    payload = _dataset_zip("scifact")
    with _ZipServer(payload) as server:
        folder = data.download_dataset(
            "scifact",
            tmp_path,
            progress=False,
            sources=[(server.url, hashlib.md5(payload).hexdigest())],
        )
    assert folder == tmp_path / "scifact"
    assert data.load_dataset("scifact", data_root=tmp_path).qrels["q1"] == {"d1": 2, "d2": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scifact"]  # zip and .part removed


def test_download_resumes_an_interrupted_transfer(tmp_path):
    payload = _dataset_zip("scifact")
    md5 = hashlib.md5(payload).hexdigest()
    with _ZipServer(payload, truncate_first=True) as server:
        with pytest.raises(DatasetUnavailableError, match=r"resumed on the next call"):
            data.download_dataset("scifact", tmp_path, progress=False, sources=[(server.url, md5)])
        (part,) = tmp_path.glob("scifact.*.zip.part")
        assert part.stat().st_size == len(payload) // 2
        data.download_dataset("scifact", tmp_path, progress=False, sources=[(server.url, md5)])
    assert server.range_headers == [None, f"bytes={len(payload) // 2}-"]
    assert data.load_dataset("scifact", data_root=tmp_path).corpus["d2"]["text"] == (
        "Boundary layers separate."
    )


def test_download_restarts_when_the_server_ignores_range(tmp_path):
    payload = _dataset_zip("scifact")
    with _ZipServer(payload, honour_range=False) as server:
        part = data._partial_download_path(tmp_path, "scifact", server.url)
        part.write_bytes(b"bytes of some other file")
        data.download_dataset(
            "scifact",
            tmp_path,
            progress=False,
            sources=[(server.url, hashlib.md5(payload).hexdigest())],
        )
    assert server.range_headers == ["bytes=24-"]
    assert not part.exists()
    assert (tmp_path / "scifact" / "corpus.jsonl").is_file()


def test_download_finishes_a_complete_part_file_without_fetching(tmp_path):
    payload = _dataset_zip("scifact")
    with _ZipServer(payload) as server:
        data._partial_download_path(tmp_path, "scifact", server.url).write_bytes(payload)
        data.download_dataset(
            "scifact",
            tmp_path,
            progress=True,
            sources=[(server.url, hashlib.md5(payload).hexdigest())],
        )
    assert server.range_headers == [f"bytes={len(payload)}-"]  # answered 416: nothing left
    assert (tmp_path / "scifact" / "qrels" / "test.tsv").is_file()


def test_download_with_bad_checksum_deletes_the_file(tmp_path):
    with _ZipServer(_dataset_zip("scifact")) as server:
        with pytest.raises(
            DatasetChecksumError, match=r"does not match the published 0{32}.*deleted"
        ):
            data.download_dataset(
                "scifact", tmp_path, progress=False, sources=[(server.url, "0" * 32)]
            )
    assert list(tmp_path.iterdir()) == []


def test_download_without_published_checksum_logs_the_sha256(tmp_path, caplog):
    payload = _dataset_zip("pony")
    with _ZipServer(payload) as server, caplog.at_level(logging.WARNING, logger="robustir.data"):
        data.download_dataset("pony", tmp_path, progress=False, sources=[(server.url, None)])
    assert (
        f"cannot verify; sha256 of the download is {hashlib.sha256(payload).hexdigest()}"
        in caplog.text
    )
    assert (tmp_path / "pony" / "qrels" / "test.tsv").is_file()


def test_download_falls_back_to_the_next_source(tmp_path):
    payload = _dataset_zip("scifact")
    with _ZipServer(payload) as server:
        data.download_dataset(
            "scifact",
            tmp_path,
            progress=False,
            sources=[(_refused_url(), "1" * 32), (server.url, hashlib.md5(payload).hexdigest())],
        )
    assert (tmp_path / "scifact" / "corpus.jsonl").is_file()


def test_download_offline_says_where_to_put_the_files(tmp_path):
    with pytest.raises(DatasetUnavailableError) as raised:
        data.download_dataset("scifact", tmp_path, progress=False, sources=[(_refused_url(), None)])
    message = str(raised.value)
    assert "could not download dataset 'scifact'" in message
    assert "Connection refused" in message
    assert f"Put the files by hand in {tmp_path / 'scifact'}: corpus.jsonl" in message
    assert "thakur/BEIR/datasets/scifact.zip" in message


def test_download_rejects_archives_without_the_dataset_folder(tmp_path):
    payload = _dataset_zip("scifact", member_prefix="")
    with _ZipServer(payload) as server:
        with pytest.raises(DatasetUnavailableError, match=r"must hold a top-level scifact/ folder"):
            data.download_dataset("scifact", tmp_path, progress=False, sources=[(server.url, None)])


def test_download_rejects_members_outside_the_root(tmp_path):
    payload = _dataset_zip("scifact", member_prefix="../escape/")
    with _ZipServer(payload) as server:
        with pytest.raises(DatasetUnavailableError, match=r"would be written outside"):
            data.download_dataset(
                "scifact", tmp_path / "root", progress=False, sources=[(server.url, None)]
            )
    assert not (tmp_path / "escape").exists()


def test_download_of_local_only_or_present_data_needs_no_network(tmp_path, monkeypatch):
    local_only = dataclasses.replace(data.DATASETS["cranfield"], original=None)
    monkeypatch.setitem(data.DATASETS, "cranfield", local_only)
    with pytest.raises(
        DatasetUnavailableError, match=r"'cranfield' cannot be downloaded: not part of the study"
    ):
        data.download_dataset("cranfield", tmp_path, progress=False)
    write_dataset(tmp_path / "scifact")
    assert data.download_dataset("scifact", tmp_path, sources=[(_refused_url(), None)]) == (
        tmp_path / "scifact"
    )
    with pytest.raises(UnknownDatasetError):
        data.download_dataset("scifactt", tmp_path)


def test_download_completes_a_folder_that_lacks_a_split(tmp_path):
    folder = write_dataset(tmp_path / "scifact")
    (folder / "corpus.jsonl").write_text(_jsonl(GOOD_CORPUS[:1]))  # replaced by the archive's
    assert data.missing_files(folder, ["test", "train"]) == ["qrels/train.tsv"]
    payload = _dataset_zip("scifact", splits=("test", "train"))
    with _ZipServer(payload) as server:
        data.download_dataset("scifact", tmp_path, progress=False, splits=("test", "train"),
                              sources=[(server.url, hashlib.md5(payload).hexdigest())])
    assert data.missing_files(folder, ["test", "train"]) == []
    assert len(data.load_dataset(folder, "train").corpus) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scifact"]


def test_mirror_replaces_the_registry_sources_and_keeps_their_checksums(monkeypatch):
    scifact = data.DATASETS["scifact"]
    assert data._download_sources(scifact, None) == [
        (scifact.beir_url, "5f7d1de60b170fc8027bb7898e2efca1"), (scifact.study_url, None)]
    # BEIR's and the study's zip share a file name: the mirror is asked once, with BEIR's MD5
    assert data._download_sources(scifact, "http://mirror.local/beir/") == [
        ("http://mirror.local/beir/scifact.zip", "5f7d1de60b170fc8027bb7898e2efca1")]
    assert data._download_sources(data.DATASETS["cranfield"], "http://mirror.local") == [
        ("http://mirror.local/cran.tar.gz", None)]


def test_bright_excluded_ids_are_read_from_query_metadata_and_leave_the_run(tmp_path):
    from robustir.experiments.evaluation import evaluate

    queries = [
        {"_id": "q1", "text": "lift and angle of attack", "metadata": {"excluded_ids": ["d1", "N/A"]}},
        {"_id": "q2", "text": "boundary layer separation", "metadata": {"excluded_ids": ["N/A"]}},
    ]
    dataset = data.load_dataset(write_dataset(tmp_path / "bright-like", queries=queries))
    assert dataset.excluded_ids == {"q1": ["d1"]}
    # d1 is q1's best BM25 hit and its relevant document; excluded, it is gone from the run
    kept = evaluate("bm25", dataset, progress=False, excluded_ids={})
    filtered = evaluate("bm25", dataset, progress=False)
    assert "d1" in kept.run["q1"] and "d1" not in filtered.run["q1"]
    assert filtered.run["q2"] == kept.run["q2"] and filtered.params["excluded_ids"] is True
    assert filtered.per_query.loc["q1", "nDCG@10"] < kept.per_query.loc["q1", "nDCG@10"]


def test_malformed_excluded_ids_name_the_file_and_line(tmp_path):
    queries = [{"_id": "q1", "text": "lift", "metadata": {"excluded_ids": "d1"}},
               {"_id": "q2", "text": "boundary layer separation"}]
    with pytest.raises(BeirFormatError, match=r"queries.jsonl:1: metadata.excluded_ids of query 'q1'"):
        data.load_dataset(write_dataset(tmp_path / "bad", queries=queries))
