"""Bad input files and options: one message naming the file, line or option; nothing written."""

from __future__ import annotations

import json
import stat

import pytest

from robustir.data import BeirFormatError, dataset_key, load_dataset
from robustir.results import ResultStore

from .conftest import CORPUS, QUERIES, snapshot, write_beir


def _bm25(cli, dataset, output, *extra):
    return cli("evaluate", "--model", "bm25", "--dataset", dataset, "--output", output, "--quiet",
               *extra)


def test_another_folder_named_like_a_dataset_never_replaces_its_results(cli, tmp_path):
    # issue 15 #4: a folder that happened to be named scifact replaced SciFact's results
    real = write_beir(tmp_path / "data" / "scifact")
    impostor = write_beir(tmp_path / "elsewhere" / "scifact", queries=QUERIES[:1],
                          qrels=[("q1", "d1", 1)])
    store = tmp_path / "results"
    assert _bm25(cli, "scifact", store, "--data-root", tmp_path / "data")[0] == 0
    by_name = store / "evaluate/bm25/scifact/clean/seed-none"
    before = snapshot(by_name)
    code, out, _ = _bm25(cli, impostor, store)
    assert code == 0 and f"written to {store}/evaluate/bm25/{dataset_key(impostor)}/" in out
    assert snapshot(by_name) == before  # the named entry is untouched
    summaries = ResultStore(store).read_summaries("evaluate").set_index("dataset")["n_queries"]
    assert summaries.to_dict() == {"scifact": 3, dataset_key(impostor): 1}
    assert dataset_key(real) != dataset_key(impostor)  # same name, other content, other key


@pytest.mark.parametrize("split", ["../../other/qrels/test", "/etc/test", "..", "a/b"])
def test_a_split_is_a_name_not_a_path(split, cli, tiny, tmp_path):
    # issue 15 #5: --split ../../other/qrels/test read another folder's judgements
    code, _, err = _bm25(cli, tiny, tmp_path / "results", "--split", split)
    assert code == 2 and f"argument --split: split {split!r} is not a name" in err
    assert not (tmp_path / "results").exists()
    with pytest.raises(ValueError, match="is not a name"):
        load_dataset(tiny, split)


@pytest.mark.parametrize("bad_id,kind", [("null", "NoneType"), ('["a"]', "list"),
                                         ("true", "bool"), ("1.5", "float")])
def test_ids_must_be_strings_or_integers(bad_id, kind, tmp_path):
    # issue 15 #15: "_id": null or a list became the ids "None" or "['a']"
    lines = [json.dumps(d) for d in CORPUS]
    lines[2] = f'{{"_id": {bad_id}, "text": "a document"}}'
    folder = write_beir(tmp_path / "ids", corpus_text="\n".join(lines) + "\n")
    with pytest.raises(BeirFormatError, match=rf"corpus.jsonl:3: the corpus id .* is a {kind}"):
        load_dataset(folder)


def test_integer_ids_are_read_as_strings(tmp_path):
    lines = [json.dumps({"_id": 7, "text": "seven"}), *[json.dumps(d) for d in CORPUS]]
    folder = write_beir(tmp_path / "ints", corpus_text="\n".join(lines) + "\n")
    assert "7" in load_dataset(folder).corpus


def test_an_empty_corpus_says_so(tmp_path):
    # issue 15 #16: an empty corpus failed with "max() arg is an empty sequence"
    folder = write_beir(tmp_path / "empty", corpus_text="\n")
    with pytest.raises(BeirFormatError, match=r"corpus.jsonl: the corpus has no documents"):
        load_dataset(folder)


def test_qrels_with_only_a_header_say_so(tmp_path):
    folder = write_beir(tmp_path / "header", qrels_text="query-id\tcorpus-id\tscore\n")
    with pytest.raises(BeirFormatError, match=r"test.tsv: the qrels judge no query"):
        load_dataset(folder)


def test_byte_order_marks_are_dropped(tmp_path):
    # issue 15 #16: a BOM in the qrels gave "grade 'score' is not an integer"
    plain = load_dataset(write_beir(tmp_path / "plain"))
    marked_folder = write_beir(tmp_path / "marked")
    for name in ("qrels/test.tsv", "queries.jsonl", "corpus.jsonl"):
        path = marked_folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    marked = load_dataset(marked_folder)
    assert (marked.qrels, marked.queries, marked.corpus) == (plain.qrels, plain.queries, plain.corpus)
    assert marked.checksum != plain.checksum  # the checksum is over the bytes as they are


def _run_file(tmp_path, *lines: str | bytes):
    path = tmp_path / "run.txt"
    path.write_bytes(b"".join(line if isinstance(line, bytes) else line.encode() for line in lines))
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\nq2 0 d2 1\n")
    return path, qrels


@pytest.mark.parametrize("score", ["nan", "NaN", "inf", "-inf"])
def test_a_score_that_is_not_finite_is_refused(score, cli, tmp_path):
    # issue 15 #10: a NaN document ranked first in one tool and last in another
    run, qrels = _run_file(tmp_path, "q1 Q0 d1 1 2.0 t\n", f"q1 Q0 d2 2 {score} t\n")
    code, out, err = cli("evaluate-run", "--qrels", qrels, "--run", run)
    assert code == 2 and out == ""
    assert f"{run}:2: score {score!r} is not a finite number" in err


def test_a_run_file_that_is_not_utf8_names_the_line(cli, tmp_path):
    # issue 15 #17: the error named no file or line
    run, qrels = _run_file(tmp_path, "q1 Q0 d1 1 2.0 t\n", b"q1 Q0 d\xe9 2 1.0 t\n")
    code, out, err = cli("evaluate-run", "--qrels", qrels, "--run", run)
    assert code == 2 and out == "" and f"{run}:2: not valid UTF-8" in err


def test_an_empty_run_is_refused(cli, tmp_path):
    # issue 15 #9: an empty run printed nan for every measure with exit status 0
    run, qrels = _run_file(tmp_path, "\n")
    code, out, err = cli("evaluate-run", "--qrels", qrels, "--run", run)
    assert code == 2 and out == "" and f"{run}: the run is empty" in err


def test_a_run_sharing_no_query_with_the_qrels_names_both_counts(cli, tmp_path):
    # issue 15 #9
    run, qrels = _run_file(tmp_path, "x1 Q0 d1 1 2.0 t\n", "x2 Q0 d2 1 1.0 t\n", "x3 Q0 d1 1 1 t\n")
    code, out, err = cli("evaluate-run", "--qrels", qrels, "--run", run)
    assert code == 2 and out == "" and "nan" not in err
    assert "no query in common: the run has hits for 3 queries, the qrels judge 2" in err


@pytest.mark.parametrize("option,value,message", [
    ("--top-k", "0", "must be at least 1, got 0"),
    ("--top-k", "-5", "must be at least 1, got -5"),
    ("--max-length", "-3", "must be at least 1, got -3"),
    ("--batch-size", "0", "must be at least 1, got 0"),
    ("--batch-size", "-4", "must be at least 1, got -4"),
    ("--device", "tpu9", "unknown device 'tpu9'"),
])
def test_numbers_and_devices_are_checked_when_parsed(option, value, message, cli, tiny, tmp_path):
    # issue 15 #11, #12: --top-k 0 wrote a 0-query entry, the others failed after the encoding
    code, _, err = cli("evaluate", "--model", "minilm", "--dataset", tiny, "--output",
                       tmp_path / "results", "--cache-dir", tmp_path / "cache", option, value)
    assert code == 2 and f"argument {option}: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_zero_hits_per_query_is_refused_by_the_library(tiny):
    from robustir.experiments.evaluation import evaluate

    with pytest.raises(ValueError, match="top_k must be an integer of at least 1, got 0"):
        evaluate("bm25", tiny, top_k=0)


def test_an_unwritable_output_is_found_before_any_work(cli, tiny, tmp_path):
    # issue 15 #13: the error came only after all the computation
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = cli("evaluate", "--model", "minilm", "--dataset", tiny, "--output",
                       tmp_path / "a-file" / "results", "--cache-dir", tmp_path / "cache")
    assert code == 2 and f"--output {tmp_path / 'a-file' / 'results'} is not writable" in err
    assert snapshot(tmp_path / "cache") == {}  # nothing was encoded


def test_variant_files_respect_the_umask(cli, tiny, tmp_path, umask):
    # issue 15 #18: variant files were forced to 0644 under umask 077
    umask(0o077)
    output = tmp_path / "typos.jsonl"
    assert cli("vary", "--dataset", tiny, "--family", "ordering", "--seed", "5",
               "--output", output)[0] == 0
    written = [output, output.with_name("typos.provenance.json")]
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [0o600, 0o600]


def test_an_unknown_family_is_refused_when_parsed(cli, tiny, tmp_path):
    code, _, err = cli("vary", "--dataset", tiny, "--family", "typoo", "--seed", "5",
                       "--output", tmp_path / "v.jsonl")
    assert code == 2 and "unknown query-variation family 'typoo'" in err
    assert not (tmp_path / "v.jsonl").exists()
