"""What a reader sees at the top of every run page of the book.

An executed run notebook is one job of a grid; its source's title is the same for every job
("Clean evaluation: one system on one dataset"). :func:`decorate_run_page` makes each page say
which run it is, in place, after the notebook ran:

* the title names the system, the dataset, the variant and the seed;
* a table lists every parameter of the run beside the study's value, so each reduction against
  the study (iterations, seeds, maximum length, dtype, …) is visible where the numbers are;
* the exact commands that rerun the page (the grid entry, and the ``robustir`` command where one
  exists) close the header, with a pointer to running it on another model;
* the markers by which the notebook tests find the cell they check are removed from the
  rendered code.

Used by the grid runner (:func:`robustir.runs.execute_job`) for every page of the Results part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["decorate_run_page", "page_title", "parameter_table", "rerun_commands", "study_settings"]

# Lines of notebook sources that only the tests read (nbval's checked-cell marker).
_TEST_MARKERS = ("# " + "NBVAL" + "_CHECK_OUTPUT",)
#: Parameters that only say where things are, not what was computed.
_LOCATIONS = {"output", "data_root", "cache_dir", "variants_dir", "device"}


def study_settings(experiment: str) -> dict[str, Any]:
    """The study's value of each parameter of an experiment (its module's ``STUDY_SETTINGS``)."""
    from robustir.experiments import corpus_poisoning, evaluation, geometry, query_variations

    modules = (evaluation, query_variations, corpus_poisoning, geometry)
    return next((m.STUDY_SETTINGS for m in modules if m.EXPERIMENT == experiment), {})


def page_title(job) -> str:
    """``<system> on <dataset>``, then the variant and the seed when they name one."""
    from robustir.models import display_name

    title = f"{display_name(job.model)} on {job.dataset}"
    details = [v for v in (job.variant if job.variant not in ("clean", "none") else "",
                           f"seed {job.seed}" if job.seed is not None else "") if v]
    return title + (f" ({', '.join(details)})" if details else "")


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return text.replace("|", "\\|")


def parameter_table(job, defaults: Mapping[str, Any]) -> str:
    """A Markdown table: every parameter of the run, its value here and the study's."""
    study = study_settings(job.experiment)
    values = {**{k: v for k, v in defaults.items() if k not in _LOCATIONS},
              **{k: v for k, v in job.parameters.items() if k not in _LOCATIONS}}
    rows = ["| parameter | this run | the study |", "| --- | --- | --- |"]
    for name, value in values.items():
        shown = "the system's own" if value is None and name in ("max_length", "dtype") else value
        rows.append(f"| `{name}` | {_cell(shown)} | {_cell(study.get(name, '–'))} |")
    return "\n".join(rows)


_COMMANDS = {
    "evaluate": "robustir evaluate --model {model} --dataset {dataset}",
    "corpus_poisoning": ("robustir poison --model {model} --dataset {dataset} --n-passages "
                         "{n_passages} --iterations {iterations} --seed {seed}"),
    "geometry": "robustir geometry --model {model} --dataset {dataset} --seed {seed}",
}
_FLAGS = {"max_length": "--max-length", "dtype": "--dtype", "top_k": "--top-k",
          "candidates": "--candidates", "sample_size": "--sample-size", "n_pairs": "--n-pairs"}


def rerun_commands(job) -> str:
    """Markdown with the grid entry that reruns this page and, where one exists, the command."""
    import yaml

    model = job.model_source if isinstance(job.model_source, str) else dict(job.model_source)
    entry = {"experiment": job.experiment, "notebook": job.notebook, "models": [model],
             "datasets": [job.dataset],
             "parameters": {k: v for k, v in job.parameters.items()
                            if k not in ("model", "dataset", "seed") and k not in _LOCATIONS}}
    if job.seed is not None:
        entry["seeds"] = [job.seed]
    text = ["Rerun this page (a grid entry for `robustir run`, e.g. in a copy of "
            "`configs/default.yaml`):", "", "```yaml",
            yaml.safe_dump([entry], sort_keys=False).rstrip(), "```"]
    template = _COMMANDS.get(job.experiment)
    if template is not None and isinstance(job.model_source, str):
        fields = {**job.parameters, "model": job.model, "seed": job.seed}
        try:
            command = template.format(**fields)
        except KeyError:
            command = None
        if command:
            command += "".join(f" {flag} {job.parameters[name]}" for name, flag in _FLAGS.items()
                               if job.parameters.get(name) is not None and f"{{{name}}}" not in template)
            text += ["", "or on the command line:", "", "```bash", command, "```"]
    text += ["", "Replace the model by a folder of your own (`--model ./my-model`, or "
             "`models: [./my-model]`) to measure it the same way ({doc}`/book/reproducing`)."]
    return "\n".join(text)


def decorate_run_page(notebook_path: str | Path, job, *, defaults: Mapping[str, Any]) -> None:
    """Title, parameter table and rerun commands at the top of an executed run notebook.

    Args:
        notebook_path: The executed notebook (changed in place).
        job: Its :class:`robustir.runs.Job`.
        defaults: The notebook's own parameter defaults (the table shows every parameter).
    """
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = "\n".join(line for line in cell.source.splitlines()
                                    if line.strip() not in _TEST_MARKERS)
    first = next((c for c in notebook.cells if c.cell_type == "markdown"), None)
    header = "\n\n".join([parameter_table(job, defaults), rerun_commands(job)])
    header_cell = nbformat.v4.new_markdown_cell(header)
    if first is not None and first.source.startswith("# "):
        lines = first.source.split("\n", 1)
        first.source = f"# {page_title(job)}\n\n*{lines[0][2:].strip()}.*" + (
            "\n" + lines[1] if len(lines) > 1 else "")
        notebook.cells.insert(notebook.cells.index(first) + 1, header_cell)
    else:
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {page_title(job)}"))
        notebook.cells.insert(1, header_cell)
    nbformat.write(notebook, notebook_path)
