"""The geometry aggregate notebook on a small store: panels drawn, absent ones skipped, grid sized."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from notebook_runs import execute_notebook
from robustir.results import ResultStore

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
MODELS = ["minilm", "minilm_cls", "minilm_l3", "smollm2", "smollm2_mean", "wordllama"]
FAMILIES = ["mispelling", "ordering", "synonym"]
GEOMETRY = ["average_cosine", "isoscore", "uniformity", "alignment", "mean_spectral_norm"]


def _write_store(root: Path, *, chance_model: str | None = None, absolute: bool = False) -> None:
    """Geometry (two seeds), clean nDCG@10 and drop rates for six systems; no poisoning runs.

    wordllama has no ``evaluate`` entry: its clean nDCG@10 comes only from the clean reference
    entry (variant ``none``) that the query-variation experiment stores, as in the real store.
    ``chance_model`` gets a clean nDCG@10 of 0.01; with ``absolute`` the drop-rate entries also
    hold the clean and perturbed means, as real query-variation runs do.
    """
    rng = np.random.default_rng(0)
    store = ResultStore(root)
    per_query = pd.DataFrame({"query_id": ["q1"], "measure": ["alignment"], "value": [0.5]})
    for model in MODELS:
        ndcg = 0.01 if model == chance_model else rng.uniform(0.1, 0.7)
        clean = {"metrics": {"nDCG@10": ndcg}}
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
                drop = rng.uniform(0.0, 0.4)
                summary = {"metrics": {"drop_rate": drop}}
                if absolute:
                    summary.update(clean=ndcg, perturbed=ndcg * (1 - drop))
                store.write_entry(store.entry_dir("query_variations", model, "scifact", family, seed),
                                  {"model": model, "family": family}, per_query, summary)


def _run_summary(tmp_path: Path, **parameters) -> tuple[list[dict], str, dict[str, str]]:
    """Execute the notebook on ``tmp_path/results`` (with extra ``parameters``): outputs,
    markdown text, glued values."""
    executed = execute_notebook("geometry_summary", tmp_path, parameters={
        "output": str(tmp_path / "results"), "reference_dir": str(REFERENCE), **parameters})
    cells = json.loads(executed.read_text())["cells"]
    outputs = [output for cell in cells if cell["cell_type"] == "code" for output in cell["outputs"]]
    text = "\n".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    glued = {}  # myst_nb's glue(display=False) prefixes the mime type of the stored value
    for output in outputs:
        record = output.get("metadata", {}).get("scrapbook")
        if record:
            glued[record["name"]] = output["data"][record["mime_prefix"] + "text/plain"]
    return outputs, text, glued


def test_controls_are_flagged_and_thin_panels_never_tested(tmp_path):
    from robustir.experiments.geometry import correlation_grid, stability_panels

    _write_store(tmp_path / "results", chance_model="smollm2", absolute=True)
    panels = stability_panels(tmp_path / "results")
    assert set(panels.loc[panels["control"], "model"]) == {"smollm2"}
    assert set(panels["stability_measure"]) == {"drop_rate", "absolute drop of nDCG@10"}
    # the clean reference variant "none" is no panel
    assert set(panels["variant"]) == set(FAMILIES)
    grid = correlation_grid(panels)
    # controls never enter a correlation: 5 systems remain, 4 for the spectral norm
    # (wordllama has none), too few for a test
    assert set(grid["n"]) == {5}
    assert len(grid) == 2 * len(FAMILIES) * (len(GEOMETRY) - 1)
    assert "mean_spectral_norm" not in set(grid["metric"])


def test_a_panel_of_one_backbone_read_several_ways_is_not_tested(tmp_path):
    from robustir.experiments.geometry import correlation_grid, stability_panels

    _write_store(tmp_path / "results")
    panels = stability_panels(tmp_path / "results")
    spectral = panels["metric"] == "mean_spectral_norm"
    # three values only: one per backbone, shared by its readings
    panels.loc[spectral, "geometry"] = panels.loc[spectral, "model"].str.split("_").str[0].map(
        {"minilm": 5.7, "smollm2": 17.5, "wordllama": 1.0})
    grid = correlation_grid(panels)
    assert "mean_spectral_norm" not in set(grid["metric"])
    assert len(grid) == len(FAMILIES) * (len(GEOMETRY) - 1)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="needs ../shared/reference")
def test_geometry_summary_draws_figure2_and_skips_figure3(tmp_path):
    _write_store(tmp_path / "results")
    outputs, text, glued = _run_summary(tmp_path)
    assert "No ASR@20 results: skipped" in text and "No drop rate results" not in text
    assert glued["geometry_n_encoders"] == "6"
    # 3 families × 5 metrics, and no panel for the clean reference variant "none"
    assert glued["geometry_n_tests"] == str(len(FAMILIES) * len(GEOMETRY))
    # all six systems in the fullest panel: wordllama's clean nDCG@10 came from the fallback
    assert glued["geometry_max_panel_systems"] == "6"
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures == 2  # Figure 2 for scifact and the scaling figure; no Figure 3


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="needs ../shared/reference")
def test_a_system_at_chance_is_drawn_apart_as_a_control(tmp_path):
    _write_store(tmp_path / "results", chance_model="smollm2", absolute=True)
    outputs, text, glued = _run_summary(tmp_path)
    assert "left out of every correlation: smollm2." in text
    assert glued["geometry_n_tests"] == str(2 * len(FAMILIES) * (len(GEOMETRY) - 1))
    assert glued["geometry_max_panel_systems"] == "5"
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures == 4  # Figure 2, its absolute-change twin, the controls, the scaling figure


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="needs ../shared/reference")
def test_correlation_models_choose_the_panel_systems_and_keep_the_geometry_of_all(tmp_path):
    # as paper.yaml leaves Contriever out of Figures 2-3 while its geometry is still reported
    _write_store(tmp_path / "results")
    outputs, text, glued = _run_summary(tmp_path, correlation_models=MODELS[1:] + ["absent_model"])
    assert glued["geometry_n_encoders"] == "6"  # the geometry table still has every system
    assert glued["geometry_max_panel_systems"] == "5"
    assert "left out of the correlation panels (`correlation_models`): minilm." in text
    assert "No geometry results for absent_model" in text
