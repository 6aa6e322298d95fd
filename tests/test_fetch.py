"""Data before jobs: ``robustir data fetch`` from a local mirror, then a grid that reads the
fetched data; the runner's data check; and the offline path of ``make book`` (one message, no
job started)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from archive_server import ArchiveServer
from robustir import data
from robustir.cli import main
from robustir.preflight import grid_dataset_needs, notebook_defaults
from robustir.results import ResultStore
from robustir.runs import load_grid
from smart_files import TINY_FILES, register_tiny_cranfield, smart_tarball

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = Path(__file__).parent / "fixtures" / "notebooks"
READER = str(NOTEBOOKS / "tiny_reader.py")
NO_DATA = str(NOTEBOOKS / "tiny_entry.py")

# A SciFact-like collection: claims judged against abstracts, a test and a train split.
SCIFACT_CORPUS = [
    {"_id": "4983", "title": "White matter in newborns", "text": "Diffusion imaging of the brain."},
    {"_id": "5836", "title": "Vitamin D and fractures", "text": "A randomised trial."},
    {"_id": "7912", "title": "Gene expression atlas", "text": "Transcripts across tissues."},
]
SCIFACT_QUERIES = [
    {"_id": "1", "text": "Newborn white matter develops before birth."},
    {"_id": "3", "text": "Vitamin D prevents fractures."},
    {"_id": "8", "text": "Expression differs between tissues."},
]
SCIFACT_QRELS = {"test": "query-id\tcorpus-id\tscore\n1\t4983\t1\n3\t5836\t1\n",
                 "train": "query-id\tcorpus-id\tscore\n8\t7912\t1\n"}


def _scifact_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, rows in (("corpus.jsonl", SCIFACT_CORPUS), ("queries.jsonl", SCIFACT_QUERIES)):
            bundle.writestr(f"scifact/{name}", "".join(json.dumps(r) + "\n" for r in rows))
        for split, text in SCIFACT_QRELS.items():
            bundle.writestr(f"scifact/qrels/{split}.tsv", text)
    return buffer.getvalue()


@pytest.fixture
def mirror_files(monkeypatch, tmp_path) -> dict[str, bytes]:
    """A mirror's archives, with the registry's checksums made theirs (BEIR's MD5 for the
    SciFact-like zip, the converted files' sha256 for the tiny Cranfield distribution)."""
    scifact = _scifact_zip()
    entry = data.DATASETS["scifact"]
    monkeypatch.setitem(data.DATASETS, "scifact", dataclasses.replace(
        entry, beir_md5=hashlib.md5(scifact).hexdigest()))
    register_tiny_cranfield(monkeypatch, tmp_path / "reference")
    cranfield = smart_tarball({k: v.encode() for k, v in TINY_FILES.items()}, folder="cran")
    return {"scifact.zip": scifact, "cran.tar.gz": cranfield}


def _refused_base() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def _grid_file(directory: Path, analyses: list[dict]) -> Path:
    grid = {"results": "results", "runs_dir": "runs", "workers": 2, "timeout_s": 120,
            "analyses": analyses}
    path = directory / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


# SciFact's test split for bm25 on both datasets, and its train split too for wordllama (the
# corpus-poisoning pattern: `attacker_split` set by the grid).
READER_ANALYSES = [
    {"experiment": "tiny_reader", "notebook": READER, "models": ["bm25"],
     "datasets": ["scifact", "cranfield"]},
    {"experiment": "tiny_reader", "notebook": READER, "models": ["wordllama"],
     "datasets": ["scifact"], "parameters": {"attacker_split": "train"}},
]


# --------------------------------------------------------------------------- what a grid needs


def test_needs_come_from_the_grid_and_the_notebook_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ROOT_ENV, "shared-data")  # relative: to the grid's base
    assert notebook_defaults(READER) == {"model": "bm25", "dataset": "scifact", "split": "test",
                                         "attacker_split": None, "data_root": None,
                                         "output": "results"}
    analyses = [*READER_ANALYSES,
                {"experiment": "tiny", "notebook": NO_DATA, "models": ["bm25"],
                 "datasets": ["data-x"]},  # reads no dataset: no data_root parameter
                {"experiment": "tiny_reader", "notebook": READER, "models": ["minilm"],
                 "datasets": ["nq"], "parameters": {"split": "dev", "data_root": "/elsewhere"}}]
    grid = load_grid(_grid_file(tmp_path, analyses), base=tmp_path)
    needs = grid_dataset_needs(grid)
    assert needs == [
        data.DatasetNeed(tmp_path / "shared-data" / "scifact", ("test", "train")),
        data.DatasetNeed(tmp_path / "shared-data" / "cranfield", ("test",)),
        data.DatasetNeed(Path("/elsewhere/nq"), ("dev",)),
    ]
    # only the jobs about to run count
    model_a = [job for job in grid.jobs if job.model == "bm25"]
    assert [need.splits for need in grid_dataset_needs(grid, model_a)] == [("test",), ("test",)]


def test_default_grid_needs_scifact_with_its_training_split_and_cranfield(monkeypatch):
    monkeypatch.setenv(data.DATA_ROOT_ENV, "/data")
    needs = grid_dataset_needs(load_grid(REPO / "configs" / "default.yaml", base=REPO))
    assert needs == [data.DatasetNeed(Path("/data/scifact"), ("test", "train")),
                     data.DatasetNeed(Path("/data/cranfield"), ("test",))]


def test_paper_grid_needs_nq_train_for_the_nq_attacker_and_nq_for_the_rest(monkeypatch):
    # BEIR's nq has no train qrels: the attack reads them from nq-train (protocol §5.1)
    monkeypatch.setenv(data.DATA_ROOT_ENV, "/data")
    needs = {need.name: need.splits
             for need in grid_dataset_needs(load_grid(REPO / "configs" / "paper.yaml", base=REPO))}
    assert needs["nq"] == ("test",) and needs["nq-train"] == ("train",)
    assert needs["hotpotqa"] == ("test", "train") and set(needs["msmarco"]) >= {"dev", "train"}


def test_an_incomplete_dataset_is_named_with_only_what_it_lacks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path / "data"))
    grid = _grid_file(tmp_path, READER_ANALYSES)
    folder = data.write_beir_folder(
        tmp_path / "data" / "scifact", corpus={"1": {"title": "", "text": "lift"}},
        queries={"1": "lift"}, qrels={"test": {"1": {"1": 1}}})
    assert main(["run", str(grid)]) == 2
    error = capsys.readouterr().err
    assert f"  scifact: qrels/train.tsv not found in {folder}\n" in error
    assert "  cranfield: corpus.jsonl, queries.jsonl, qrels/test.tsv not found" in error
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- fetch, then run


def test_fetch_by_name_from_a_mirror_then_load(tmp_path, mirror_files, capsys):
    root = tmp_path / "data"
    with ArchiveServer(mirror_files) as server:
        assert main(["data", "fetch", "scifact", "cranfield", "--data-root", str(root),
                     "--mirror", server.base, "--quiet"]) == 0
        assert main(["data", "fetch", "scifact", "cranfield", "--data-root", str(root),
                     "--mirror", server.base]) == 0
    # the second call found both complete and asked the mirror for nothing
    assert server.requests == [("/scifact.zip", None), ("/cran.tar.gz", None)]
    out = capsys.readouterr().out
    assert f"fetched scifact into {root / 'scifact'}" in out and "2 dataset(s) complete, 0 fetched" in out
    assert data.load_dataset("scifact", "test", root).qrels == {"1": {"4983": 1}, "3": {"5836": 1}}
    cranfield = data.load_dataset("cranfield", "test", root)
    assert cranfield.queries["2"] == "heat transfer at high mach numbers ."
    assert cranfield.qrels["2"] == {"2": 1, "3": 0}
    assert sorted(p.name for p in root.iterdir()) == ["cranfield", "scifact"]


def test_make_book_path_fetches_the_grid_data_then_the_jobs_read_it(tmp_path, mirror_files,
                                                                     monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path / "data"))
    grid = _grid_file(tmp_path, READER_ANALYSES)
    with ArchiveServer(mirror_files) as server:
        monkeypatch.setenv(data.DATA_MIRROR_ENV, server.base)
        assert main(["data", "fetch", "--grid", str(grid), "--quiet"]) == 0
    assert main(["run", str(grid), "--workers", "2"]) == 0
    assert "3 job(s) ran" in capsys.readouterr().out
    store = ResultStore(tmp_path / "results")

    def summary(model: str, dataset: str) -> dict:
        entry = store.entry_dir("tiny_reader", model, dataset, "clean", None)
        return json.loads((entry / "summary.json").read_text())

    assert summary("bm25", "scifact")["metrics"]["queries"] == 2  # test
    assert summary("wordllama", "scifact")["metrics"]["queries"] == 3  # test + train
    assert summary("bm25", "cranfield")["metrics"]["queries"] == 2
    assert summary("bm25", "cranfield")["documents"] == 3


# --------------------------------------------------------------------------- offline


def _robustir(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustir.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_offline_make_book_stops_with_one_message_and_no_job(tmp_path):
    grid = _grid_file(tmp_path, READER_ANALYSES)
    env = {**os.environ, data.DATA_ROOT_ENV: str(tmp_path / "data"),
           data.DATA_MIRROR_ENV: _refused_base()}  # offline: nothing answers
    started = time.monotonic()
    fetch = _robustir("data", "fetch", "--grid", "grid.yaml", env=env, cwd=tmp_path)
    run = _robustir("run", "grid.yaml", env=env, cwd=tmp_path)
    book = _robustir("book", "--config", "grid.yaml", env=env, cwd=tmp_path)
    assert time.monotonic() - started < 60

    assert fetch.returncode == 2 and fetch.stdout == ""
    assert fetch.stderr.startswith("robustir data fetch: could not fetch 2 dataset(s):\n  scifact: ")
    assert "Connection refused" in fetch.stderr
    assert "serving cran.tar.gz, scifact.zip" in fetch.stderr  # what to fetch
    data_root = tmp_path / "data"
    assert (f"  {data_root / 'scifact'}: corpus.jsonl, queries.jsonl, qrels/test.tsv, "
            "qrels/train.tsv\n") in fetch.stderr  # where to put it
    assert f"  {data_root / 'cranfield'}: corpus.jsonl, queries.jsonl, qrels/test.tsv\n" in fetch.stderr
    for process, command in ((run, "run"), (book, "book")):
        assert process.returncode == 2
        assert process.stderr.startswith(
            f"robustir {command}: 2 dataset(s) are missing or incomplete:\n  scifact: ")
        assert "`robustir data fetch --grid grid.yaml`" in process.stderr
        assert "No job was started." in process.stderr
    assert "Traceback" not in fetch.stderr + run.stderr + book.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()
    assert not list((tmp_path / "data").glob("*/*"))  # nothing half-installed


def test_make_book_fetches_the_grid_data_before_building():
    dry_run = subprocess.run(["make", "-n", "-o", ".venv/.robustir-setup", "book"], cwd=REPO,
                             capture_output=True, text=True, check=True, timeout=60).stdout
    commands = [line for line in dry_run.splitlines() if "robustir.cli" in line]
    assert len(commands) == 2
    assert commands[0].endswith("data fetch --grid configs/default.yaml")
    assert commands[1].endswith("book --config configs/default.yaml")


@pytest.mark.parametrize("args,message", [
    (["scifact", "--grid", "configs/default.yaml"], "give dataset names (with --data-root) or --grid"),
    ([], "name the datasets to fetch"),
    (["scifactt"], "unknown dataset 'scifactt'"),
])
def test_fetch_arguments_are_checked(args, message, capsys):
    assert main(["data", "fetch", *args]) == 2
    assert message in capsys.readouterr().err
