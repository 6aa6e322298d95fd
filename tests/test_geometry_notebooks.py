"""The geometry aggregate notebook on a small store: panels drawn, absent ones skipped, grid sized."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustir.results import ResultStore

papermill = pytest.importorskip("papermill")
jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
MODELS = ["minilm", "minilm_cls", "minilm_l3", "smollm2", "smollm2_mean", "wordllama"]
FAMILIES = ["mispelling", "ordering", "synonym"]
GEOMETRY = ["average_cosine", "isoscore", "uniformity", "alignment", "mean_spectral_norm"]


def _write_store(root: Path) -> None:
    """Geometry (two seeds), clean nDCG@10 and drop rates for six systems; no poisoning runs.

    wordllama has no ``evaluate`` entry: its clean nDCG@10 comes only from the clean reference
    entry (variant ``none``) that the query-variation experiment stores, as in the real store.
    """
    rng = np.random.default_rng(0)
    store = ResultStore(root)
    per_query = pd.DataFrame({"query_id": ["q1"], "measure": ["alignment"], "value": [0.5]})
    for model in MODELS:
        clean = {"metrics": {"nDCG@10": rng.uniform(0.1, 0.7)}}
        if model != "wordllama":
            store.write_entry(store.entry_dir("evaluate", model, "scifact", "clean", None),
                              {"model": model}, per_query, clean)
        store.write_entry(store.entry_dir("query_variations", model, "scifact", "none", None),
                          {"model": model}, per_query, clean)
        for seed in (1999, 5):
            metrics = {name: rng.uniform(0.05, 0.9) for name in GEOMETRY}
            metrics["exact_average_cosine"] = metrics["average_cosine"]
            if model == "wordllama":
                metrics["mean_spectral_norm"] = float("nan")
            store.write_entry(store.entry_dir("geometry", model, "scifact", "clean", seed),
                              {"model": model, "seed": seed}, per_query, {"metrics": metrics})
            for family in FAMILIES:
                store.write_entry(store.entry_dir("query_variations", model, "scifact", family, seed),
                                  {"model": model, "family": family}, per_query,
                                  {"metrics": {"drop_rate": rng.uniform(0.0, 0.4)}})


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="needs ../shared/reference")
def test_geometry_summary_draws_figure2_and_skips_figure3(tmp_path):
    _write_store(tmp_path / "results")
    notebook = jupytext.read(ROOT / "notebooks" / "geometry_summary.py")
    source = tmp_path / "geometry_summary.ipynb"
    jupytext.write(notebook, source)
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(source), str(executed), cwd=str(ROOT), progress_bar=False, kernel_name="python3",
        parameters={"output": str(tmp_path / "results"), "reference_dir": str(REFERENCE)},
    )
    cells = json.loads(executed.read_text())["cells"]
    outputs = [output for cell in cells if cell["cell_type"] == "code" for output in cell["outputs"]]
    text = "\n".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "Figure 3 skipped" in text and "Figure 2 skipped" not in text
    glued = {}  # myst_nb's glue(display=False) prefixes the mime type of the stored value
    for output in outputs:
        record = output.get("metadata", {}).get("scrapbook")
        if record:
            glued[record["name"]] = output["data"][record["mime_prefix"] + "text/plain"]
    assert glued["geometry_n_encoders"] == "6"
    # 3 families × 5 metrics, and no panel for the clean reference variant "none"
    assert glued["geometry_n_tests"] == str(len(FAMILIES) * len(GEOMETRY))
    # all six systems in the fullest panel: wordllama's clean nDCG@10 came from the fallback
    assert glued["geometry_max_panel_systems"] == "6"
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures == 2  # Figure 2 for scifact and the scaling figure; no Figure 3
