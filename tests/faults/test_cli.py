"""The command line: a user's mistake is one line with exit status 2, a bug is a traceback, and
other libraries' debug output stays off unless --verbose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from .conftest import REPO, TINY_NOTEBOOK, snapshot, write_beir


def _robustir(*argv, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.run([sys.executable, "-m", "robustir.cli", *map(str, argv)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_third_party_debug_output_is_off_unless_verbose(tiny, tmp_path):
    # issue 15 #20: every command printed bm25s DEBUG lines
    quiet = _robustir("evaluate", "--model", "bm25", "--dataset", tiny, "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = _robustir("-v", "evaluate", "--model", "bm25", "--dataset", tiny, "--quiet",
                        "--output", "other", cwd=tmp_path)
    assert verbose.returncode == 0 and "INFO robustir" in verbose.stderr
    assert "DEBUG" not in verbose.stderr


def test_a_bad_data_file_is_one_line_not_a_traceback(cli, tmp_path):
    folder = write_beir(tmp_path / "bad", queries_text='{"_id": null, "text": "q"}\n')
    code, out, err = cli("evaluate", "--model", "bm25", "--dataset", folder, "--output",
                         tmp_path / "results")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"{folder / 'queries.jsonl'}:1: the queries id None is a NoneType" in err
    assert snapshot(tmp_path / "results") == {}


def test_a_bad_grid_through_the_command_line_lists_its_problems(cli, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"analyses": [{
        "experiment": "tiny", "notebook": str(TINY_NOTEBOOK), "models": ["bm2"],
        "datasets": ["data-x"], "parameters": {"top_kk": 1}}]}))
    code, _, err = cli("run", grid)
    assert code == 2 and "Traceback" not in err
    assert f"{grid}: 2 problems; no job was started:" in err
    assert "models[0]: unknown model 'bm2'" in err and "unknown parameter 'top_kk'" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_workers_are_checked_when_parsed(workers, cli, tmp_path):
    code, _, err = cli("run", tmp_path / "grid.yaml", "--workers", workers)
    assert code == 2 and "argument --workers" in err


def test_a_bug_still_shows_its_traceback(monkeypatch, tiny):
    from robustir.cli import evaluate, main

    def broken(args):
        raise TypeError("a bug in robustir")

    monkeypatch.setattr(evaluate, "evaluate_command", broken)
    with pytest.raises(TypeError, match="a bug in robustir"):
        main(["evaluate", "--model", "bm25", "--dataset", str(tiny)])
