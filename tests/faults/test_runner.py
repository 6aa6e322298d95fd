"""Grids are checked whole before any job starts; the runner reruns what does not verify, runs
each job once even beside another runner, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from robustir.runs import GridError, execute_notebook, job_finished, load_grid, run_grid

from .conftest import REPO, TINY_NOTEBOOK, snapshot, write_beir

EVALUATE = REPO / "notebooks" / "evaluate.py"
VARIATIONS = REPO / "notebooks" / "query_variations.py"


def _analysis(**overrides) -> dict:
    analysis = {"experiment": "tiny", "notebook": str(TINY_NOTEBOOK), "models": ["bm25"],
                "datasets": ["data-x"], "variants": {"clean": {"family": "clean"},
                                                     "typo": {"family": "typo"}},
                "seeds": [1], "parameters": {"n_queries": 3}}
    analysis.update(overrides)
    return {key: value for key, value in analysis.items() if value is not None}


def _grid(directory: Path, *analyses: dict, **top) -> Path:
    path = directory / "grid.yaml"
    path.write_text(yaml.safe_dump({"results": "results", "runs_dir": "runs", "workers": 2,
                                    "timeout_s": 120, **top,
                                    "analyses": list(analyses) or [_analysis()]},
                                   sort_keys=False))
    return path


def _line(path: Path, text: str) -> int:
    """The (1-based) line of ``path`` that is ``text`` once stripped of indentation."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1)
                if line.strip() == text)


def _rejected(path: Path, base: Path) -> str:
    with pytest.raises(GridError) as error:
        load_grid(path, base=base)
    assert not (base / "results").exists() and not (base / "runs").exists()
    return str(error.value)


def test_an_unknown_model_stops_the_grid_at_its_line(tmp_path):
    # issue 15 #6: each job started a kernel and failed, the cause in a 178-line traceback
    path = _grid(tmp_path, _analysis(models=["bm25", "bm2"]))
    message = _rejected(path, tmp_path)
    assert f"{path}:{_line(path, '- bm2')}: analyses[0]: models[1]: unknown model 'bm2'" in message


def test_an_unknown_dataset_stops_the_grid_at_its_line(tmp_path):
    path = _grid(tmp_path, _analysis(notebook=str(EVALUATE), datasets=["scifcat"],
                                     variants={"clean": {}}, seeds=None, parameters={}))
    message = _rejected(path, tmp_path)
    assert (f"{path}:{_line(path, '- scifcat')}: analyses[0]: datasets[0]: unknown dataset "
            "'scifcat': not in the registry") in message


def test_a_misspelt_parameter_is_named_with_the_notebook_parameters(tmp_path):
    # issue 15 #7: the job ran with the default and was recorded as finished
    path = _grid(tmp_path, _analysis(parameters={"n_queries": 3, "top_kk": 5}))
    message = _rejected(path, tmp_path)
    assert (f"{path}:{_line(path, 'top_kk: 5')}: analyses[0]: parameters: unknown parameter "
            "'top_kk': the parameters cell of tiny_entry.py declares dataset, family") in message


def test_a_parameter_name_holding_code_is_never_pasted(tmp_path, monkeypatch):
    # issue 15 #8: papermill pasted the name into the notebook, and the code ran
    monkeypatch.chdir(tmp_path)
    name = 'x = 1; open("pwned", "w") #'
    path = _grid(tmp_path, _analysis(variants={"clean": {"family": "clean", name: 1}}))
    assert f"parameter name {name!r} is not a Python identifier" in _rejected(path, tmp_path)
    with pytest.raises(ValueError, match="are not Python identifiers"):
        execute_notebook(TINY_NOTEBOOK, tmp_path / "out.ipynb", {name: 1}, cwd=tmp_path,
                         timeout_s=60)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out.ipynb").exists()


@pytest.mark.parametrize("value,expected", [("five", "an integer like the notebook's default 5"),
                                            (2.5, "an integer"), (True, "an integer"),
                                            (None, "an integer")])
def test_a_value_of_the_wrong_type_is_refused(value, expected, tmp_path):
    path = _grid(tmp_path, _analysis(parameters={"n_queries": value}))
    assert f"parameter 'n_queries' must be {expected}" in _rejected(path, tmp_path)


def test_an_unknown_family_is_refused(tmp_path):
    path = _grid(tmp_path, _analysis(experiment="query_variations", notebook=str(VARIATIONS),
                                     models=["minilm"], datasets=["scifact"],
                                     variants={"typo": {"family": "typoo"}}, parameters={}))
    message = _rejected(path, tmp_path)
    assert (f"{path}:{_line(path, 'family: typoo')}: analyses[0]: variants['typo']: unknown "
            "query-variation family 'typoo'") in message


def test_a_split_in_a_grid_is_a_name(tmp_path):
    path = _grid(tmp_path, _analysis(notebook=str(EVALUATE), datasets=["scifact"],
                                     variants={"clean": {}}, seeds=None,
                                     parameters={"split": "../../other/qrels/test"}))
    assert "split '../../other/qrels/test' is not a name" in _rejected(path, tmp_path)


def test_the_runner_parameters_must_be_declared_by_the_notebook(tmp_path):
    notebook = tmp_path / "no_seed.py"
    notebook.write_text(TINY_NOTEBOOK.read_text().replace("seed = 1\n", ""))
    path = _grid(tmp_path, _analysis(notebook=str(notebook)))
    assert "declares no parameter 'seed' in its parameters cell" in _rejected(path, tmp_path)


@pytest.mark.parametrize("name,source", [("seed", "from 'seeds'"), ("dataset", "from 'datasets'"),
                                         ("output", "it receives the results-store root")])
def test_a_parameter_the_runner_sets_is_not_overridden_silently(name, source, tmp_path):
    path = _grid(tmp_path, _analysis(variants={"clean": {"family": "clean", name: "x"}}))
    message = _rejected(path, tmp_path)
    assert (f"{path}:{_line(path, f'{name}: x')}: analyses[0]: parameter {name!r} is set by the "
            f"runner ({source})") in message


def test_every_problem_is_reported_at_once_in_file_order(tmp_path):
    path = _grid(tmp_path, _analysis(models=["bm2"], parameters={"top_kk": 1}),
                 _analysis(datasets=["a/../b"], seeds=["one"]), workers=0)
    message = _rejected(path, tmp_path)
    assert message.startswith(f"{path}: 5 problems; no job was started:")
    lines = [int(line.split(":")[1]) for line in message.splitlines()[1:]]
    assert len(lines) == 5 and lines == sorted(lines)


def test_a_dataset_folder_in_a_grid_is_keyed_by_its_content(tmp_path):
    from robustir.data import dataset_key

    folder = write_beir(tmp_path / "mine" / "scifact")
    grid = load_grid(_grid(tmp_path, _analysis(notebook=str(EVALUATE), datasets=["mine/scifact"],
                                               variants={"clean": {}}, seeds=None,
                                               parameters={})), base=tmp_path)
    (job,) = grid.jobs
    assert job.dataset == dataset_key(folder) != "scifact"
    assert job.dataset_source == str(folder)


def test_an_unwritable_store_is_found_before_any_job(tmp_path):
    (tmp_path / "a-file").write_text("")
    grid = load_grid(_grid(tmp_path, results="a-file/results"), base=tmp_path)
    with pytest.raises(OSError, match="the results store .*a-file/results is not writable"):
        run_grid(grid, workers=1)
    assert not (tmp_path / "runs").exists()


def test_damaged_entries_of_finished_jobs_run_again(tmp_path, umask):
    # issue 15 #14: a truncated per_query.csv was skipped as finished
    umask(0o077)
    grid = load_grid(_grid(tmp_path), base=tmp_path)
    assert len(run_grid(grid).ran) == 2
    results = tmp_path / "results"
    finished = snapshot(results)
    assert {stat.S_IMODE(p.stat().st_mode) for p in results.rglob("job.json")} == {0o600}
    truncated, replaced = (grid.entry_dir(job) / "per_query.csv" for job in grid.jobs)
    truncated.write_text("".join(truncated.read_text().splitlines(keepends=True)[:2]))
    replaced.write_text(replaced.read_text().replace("0.", "0.1"))  # same queries, other values
    assert not any(job_finished(grid, job) for job in grid.jobs)
    assert len(run_grid(grid).ran) == 2
    assert snapshot(results) == finished


def _logging_notebook(directory: Path, *, then_wait_s: int = 0) -> Path:
    """The tiny notebook with a cell that logs each execution to ``executions.log`` (and then
    waits ``then_wait_s`` seconds, so that the job is still running when the log appears)."""
    notebook = directory / "logged.py"
    notebook.write_text(TINY_NOTEBOOK.read_text() + "\n# %%\nwith open('executions.log', 'a') as "
                        "log:\n    print(family, file=log)\n"
                        f"import time\ntime.sleep({then_wait_s})\n")
    return notebook


def _as_in_a_terminal() -> None:
    """Ctrl-C reaches the runner as it does a terminal's foreground command, also when the tests
    themselves run in the background (a shell without job control starts `cmd &` with SIGINT
    ignored, and children inherit that, as they inherit a blocked signal)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _runner(directory: Path, *argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.Popen([sys.executable, "-m", "robustir.cli", "run", "grid.yaml", *argv],
                            cwd=directory, env=env, start_new_session=True, preexec_fn=_as_in_a_terminal,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runners_never_run_the_same_job(tmp_path):
    _grid(tmp_path, _analysis(notebook=str(_logging_notebook(tmp_path))))
    first, second = _runner(tmp_path, "--workers", "1"), _runner(tmp_path, "--workers", "1")
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    assert sorted((tmp_path / "executions.log").read_text().split()) == ["clean", "typo"]
    grid = load_grid(tmp_path / "grid.yaml", base=tmp_path)
    assert all(job_finished(grid, job) for job in grid.jobs)


def _family_tree(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def _alive(processes) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_ctrl_c_prints_one_line_and_leaves_no_process(tmp_path):
    # issue 15 #19: Ctrl-C printed a traceback
    _grid(tmp_path, _analysis(notebook=str(_logging_notebook(tmp_path, then_wait_s=5))))
    runner = _runner(tmp_path)
    deadline = time.monotonic() + 60
    while not (tmp_path / "executions.log").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # until a kernel runs a job
    tree = _family_tree(psutil.Process(runner.pid))
    os.killpg(runner.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 130
    assert "robustir run: interrupted; rerun with --only-missing" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    time.sleep(1)
    assert _alive(tree) == []
