"""Killing the runner at random points: nothing is lost, nothing is left running.

A small grid is run once without interruption for reference. Then runners are started and
killed again and again on a second copy, with SIGKILL to the runner process alone (its workers
and kernels are not told) or to its whole process group. Each kill comes a random moment after
one of the stages of a run (start-up, workers started, a kernel started, an entry written, which
the job's record follows), so that every stage is hit whatever the machine's speed; a last run
completes the grid. Issue 15 #3: a runner killed alone left its pool worker and kernel alive, and they
wrote the job's record minutes later.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from robustir.results import ResultStore
from robustir.runs import job_finished, load_grid

from .conftest import REPO, TINY_NOTEBOOK

#: (stage after which to kill, what to kill), in order; each stage is waited for, then a random
#: delay of up to JITTER_S passes.
KILLS = (("start", "runner"), ("workers", "group"), ("kernel", "runner"), ("entry", "group"),
         ("kernel", "group"), ("kernel", "runner"))
JITTER_S = 0.4
OUTLIVE_S = 5.0
VARIANTS = ("clean", "typo")


def _grid(directory: Path) -> None:
    directory.mkdir()
    (directory / "grid.yaml").write_text(yaml.safe_dump({
        "results": "results", "runs_dir": "runs", "workers": 2, "timeout_s": 120,
        "analyses": [{"experiment": "tiny", "notebook": str(TINY_NOTEBOOK),
                      "models": ["bm25", "wordllama"], "datasets": ["data-x"],
                      "variants": {v: {"family": v} for v in VARIANTS},
                      "seeds": [1], "parameters": {"n_queries": 4}}]}))


def _runner(directory: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.Popen([sys.executable, "-m", "robustir.cli", "run", "grid.yaml"],
                            cwd=directory, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _entries(root: Path) -> dict[str, bytes]:
    """Every file of every entry (hidden lock files and killed writers' folders left out)."""
    return {str(path.relative_to(root)): path.read_bytes()
            for entry in ResultStore(root).entries("tiny") for path in sorted(entry.iterdir())}


def _working_in(directory: Path) -> list[psutil.Process]:
    """Every live process whose working folder is ``directory``: the runner, its workers, the
    resource tracker and the kernels (which papermill starts there), whoever their parent is."""
    found = []
    for process in psutil.process_iter(["cwd", "status", "cmdline"]):
        if process.info["cwd"] == str(directory) and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def _reached(stage: str, runner: psutil.Process, directory: Path, before: int) -> bool:
    try:
        commands = [" ".join(p.cmdline()) for p in runner.children(recursive=True)]
    except psutil.Error:  # a child ended while being read
        return False
    results = directory / "results"
    return {
        "start": True,
        "workers": any("spawn_main" in c and "resource_tracker" not in c for c in commands),
        "kernel": any("ipykernel_launcher" in c for c in commands),
        "entry": len(list(results.glob("**/summary.json"))) > before,
    }[stage]


def test_killed_runners_leave_no_process_and_lose_nothing(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    _grid(reference)
    _grid(interrupted)
    assert _runner(reference).wait(timeout=300) == 0
    expected = _entries(reference / "results")
    assert len(expected) == 2 * len(VARIANTS) * 4  # params, per-query, summary, job record

    rng = random.Random(15)
    finished_when_killed = []
    for stage, target in KILLS:
        results = interrupted / "results"
        before = len(list(results.glob("**/summary.json")))
        runner = _runner(interrupted)
        deadline = time.monotonic() + 120
        process = psutil.Process(runner.pid)
        while not _reached(stage, process, interrupted, before) and time.monotonic() < deadline:
            assert runner.poll() is None, f"the runner ended before stage {stage!r}"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, JITTER_S))
        assert runner.poll() is None, f"the runner ended before its kill after {stage!r}"
        (os.kill if target == "runner" else os.killpg)(runner.pid, signal.SIGKILL)
        runner.wait()
        killed = time.monotonic()
        while _working_in(interrupted) and time.monotonic() - killed < OUTLIVE_S:
            time.sleep(0.1)
        survivors = [(p.pid, p.info["cmdline"]) for p in _working_in(interrupted)]
        assert survivors == [], f"{OUTLIVE_S} s after a SIGKILL to the {target}: {survivors}"
        finished_when_killed.append(len(ResultStore(results).entries("tiny")))
    assert any(0 < n < 2 * len(VARIANTS) for n in finished_when_killed), finished_when_killed

    assert _runner(interrupted).wait(timeout=300) == 0
    assert _entries(interrupted / "results") == expected
    grid = load_grid(interrupted / "grid.yaml", base=interrupted)
    assert all(job_finished(grid, job) for job in grid.jobs)
