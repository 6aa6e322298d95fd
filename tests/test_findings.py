"""The verdict rules of the findings boxes, on hand cases, and the training chapter's targets."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from robustir.experiments.findings import (
    Finding,
    against_target,
    compare_direction,
    compare_number,
    findings_markdown,
    load_findings,
    save_findings,
    summary_markdown,
)
from robustir.experiments.geometry import findings as geometry_findings
from robustir.experiments.training import findings as training_findings

NAN = math.nan


@pytest.mark.parametrize("ours, published, tolerance, verdict", [
    (0.6451, 0.6451, 0.002, "reproduced"),
    (0.6471, 0.6451, 0.002, "reproduced"),   # exactly at the tolerance
    (0.6472, 0.6451, 0.002, "differs"),
    (0.6429, 0.6451, 0.002, "differs"),
    (NAN, 0.6451, 0.002, "not comparable"),
])
def test_compare_number(ours, published, tolerance, verdict):
    assert compare_number(ours, published, tolerance) == verdict


@pytest.mark.parametrize("difference, sign, interval, verdict", [
    (-0.05, -1, None, "consistent"),
    (0.05, -1, None, "differs"),
    (-0.05, -1, (-0.09, -0.01), "consistent"),
    (-0.05, -1, (-0.09, 0.02), "not comparable"),   # the interval straddles zero
    (0.05, -1, (0.01, 0.09), "differs"),
    (0.05, +1, (0.01, 0.09), "consistent"),
    (NAN, +1, None, "not comparable"),
])
def test_compare_direction(difference, sign, interval, verdict):
    assert compare_direction(difference, expected_sign=sign, interval=interval) == verdict


@pytest.mark.parametrize("value, bar, goal, verdict", [
    (0.55, 0.30, 0.50, "goal met"),
    (0.50, 0.30, 0.50, "goal met"),
    (0.42, 0.30, 0.50, "bar met"),
    (0.29, 0.30, 0.50, "missed"),
    (0.70, 0.68, None, "goal met"),   # a stretch target: beat a baseline
    (NAN, 0.30, 0.50, "not measured"),
    (0.70, NAN, None, "not measured"),   # the baseline did not run
])
def test_against_target(value, bar, goal, verdict):
    assert against_target(value, bar, goal) == verdict


def test_an_unknown_verdict_is_refused():
    with pytest.raises(ValueError, match="'agrees' is not one of"):
        Finding("claim", "scope", "1", "2", "agrees", "rule")


def test_findings_round_trip_through_the_store_and_render_one_row_each(tmp_path):
    rows = [Finding("a | b", "s", "0.5", "0.6", "differs", "±0.01"),
            Finding("c", "s", "0.5", "none", "not comparable", "-")]
    save_findings(tmp_path, "chapter", rows)
    assert load_findings(tmp_path) == {"chapter": rows}
    table = findings_markdown(rows).splitlines()
    assert len(table) == 2 + len(rows) and "a \\| b" in table[2]


def test_summary_lists_every_saved_chapter_in_title_order_unabridged():
    long_claim = "LLM-based retrievers lose less to typos than encoder-only ones, " * 3
    saved = {"geometry": [Finding("g", "s", "r = 0.6", "none", "differs", "-")],
             "effectiveness": [Finding(long_claim, "s", "0.6451", "0.645", "reproduced", "±0.002"),
                               Finding("b", "s", "0.5", "none", "consistent", "-")]}
    titles = {"effectiveness": "Clean effectiveness", "training": "Training", "geometry": "Geometry"}
    lines = summary_markdown(saved, titles).splitlines()
    assert lines[0] == "| chapter | the study's claim | ours | published | verdict |"
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| Clean effectiveness", "| Clean effectiveness", "| Geometry"]  # no training row
    assert long_claim.strip() in lines[2] and lines[4].endswith("| **differs** |")


def _clean(scores: dict[tuple[str, str], float]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "dataset": d, "nDCG@10": v} for (m, d), v in scores.items()])


def test_training_targets_from_hand_scores():
    clean = _clean({("ret", "scifact"): 0.55, ("ret", "cranfield"): 0.20, ("raw", "scifact"): 0.01,
                    ("ret_l10", "scifact"): 0.40, ("ret_l20", "scifact"): 0.50,
                    ("bm25", "scifact"): 0.68})
    rows = training_findings(clean, {"scifact": (0.30, 0.50), "cranfield": (0.15, 0.25)},
                             full="ret", depth_series=["ret_l10", "ret_l20", "ret"], control="raw")
    assert [r.verdict for r in rows] == ["goal met", "bar met", "goal met", "missed"]


def test_training_targets_not_run_are_not_measured_rather_than_missed():
    clean = _clean({("ret", "scifact"): 0.55})
    rows = training_findings(clean, {"scifact": (0.30, 0.50), "cranfield": (0.15, 0.25)},
                             full="ret", depth_series=["ret_l10", "ret"], control="raw")
    assert [r.verdict for r in rows] == ["goal met", "not measured", "not measured", "not measured"]
    # A non-monotone series is missed, not hidden.
    clean = _clean({("ret", "scifact"): 0.45, ("ret_l10", "scifact"): 0.50})
    rows = training_findings(clean, {"scifact": (0.30, 0.50)}, full="ret",
                             depth_series=["ret_l10", "ret"], control="raw")
    assert rows[1].verdict == "missed"


@pytest.mark.parametrize("r, p, verdict", [
    (0.90, 0.01, "consistent"),   # higher average cosine, larger drop, significant
    (-0.90, 0.01, "differs"),     # significant, but the other way
    (0.62, 0.13, "differs"),      # the claim's direction, not significant
])
def test_geometry_uniformity_claim_needs_the_sign_and_the_significance(r, p, verdict):
    grid = pd.DataFrame([{"stability_measure": "drop_rate", "dataset": "scifact", "variant": "mispelling",
                          "metric": "average_cosine", "n": 7, "pearson_r": r, "pearson_p": p,
                          "pearson_ci_low": r - 0.3, "pearson_ci_high": r + 0.1}])
    (uniformity, _) = geometry_findings(grid, pd.DataFrame())
    assert uniformity.verdict == verdict


@pytest.mark.parametrize("rates, verdict", [
    ((0.15, 0.12, 0.07), "consistent"),
    ((0.12, 0.15, 0.07), "differs"),     # the build's pattern: 20 layers drop more than 10
])
def test_scaling_claim_needs_a_fall_at_every_step_up_in_depth(rates, verdict):
    scaling = pd.DataFrame({"model": ["l10", "l20", "full"], "dataset": "scifact", "drop_rate": rates})
    (_, scale) = geometry_findings(pd.DataFrame(), scaling, depth_series=("l10", "l20", "full"))
    assert scale.verdict == verdict and "12.0%" in scale.ours
