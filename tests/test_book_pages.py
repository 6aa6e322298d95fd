"""Run pages say which run they are: title, parameters beside the study's, rerun commands."""

from __future__ import annotations

import nbformat
import yaml

from robustir.book_pages import decorate_run_page, page_title, rerun_commands
from robustir.runs import Job


def _job(**changes) -> Job:
    settings = dict(experiment="corpus_poisoning", notebook="notebooks/corpus_poisoning.py",
                    notebook_sha="0" * 16, model="smollm2", dataset="scifact",
                    variant="hotflip_N10_bfloat16", seed=5,
                    parameters={"model": "smollm2", "dataset": "scifact", "seed": 5,
                                "iterations": 5, "candidates": 20, "max_length": 64,
                                "n_passages": 10, "output": "/somewhere/results"})
    return Job(**{**settings, **changes})


def test_the_title_names_system_dataset_variant_and_seed():
    assert page_title(_job()) == "SmolLM2-135M on scifact (hotflip_N10_bfloat16, seed 5)"
    clean = _job(experiment="evaluate", variant="clean", seed=None)
    assert page_title(clean) == "SmolLM2-135M on scifact"


def test_the_page_gets_its_parameters_beside_the_study_and_loses_test_markers(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Corpus poisoning of one system on one dataset\n\nWhat it does."),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)"),
    ])
    path = tmp_path / "page.ipynb"
    nbformat.write(notebook, path)
    decorate_run_page(path, _job(), defaults={"iterations": 10, "passage_length": 50,
                                              "data_root": None, "bf16": False})
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].source.startswith("# SmolLM2-135M on scifact (hotflip_N10_bfloat16, seed 5)\n\n"
                                      "*Corpus poisoning of one system on one dataset.*")
    table = cells[1].source
    # grid values win over the notebook's defaults; locations are not parameters of the result
    assert "| `iterations` | 5 | 5000 |" in table
    assert "| `passage_length` | 50 | 50 |" in table
    assert "| `max_length` | 64 | 8192 (Contriever: 512) |" in table
    assert "data_root" not in table and "/somewhere" not in table
    assert "NBVAL" not in cells[2].source and "print(1)" in cells[2].source


def test_the_rerun_commands_reproduce_the_job():
    text = rerun_commands(_job())
    entry = yaml.safe_load(text.split("```yaml\n")[1].split("```")[0])[0]
    assert entry["models"] == ["smollm2"] and entry["seeds"] == [5]
    assert entry["parameters"] == {"iterations": 5, "candidates": 20, "max_length": 64,
                                   "n_passages": 10}
    assert ("robustir poison --model smollm2 --dataset scifact --n-passages 10 --iterations 5 "
            "--seed 5 --max-length 64 --candidates 20") in text
