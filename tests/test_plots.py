"""The shared figure helpers render, colour systems by family, and keep thin panels honest."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from robustir import plots  # noqa: E402
from robustir.models import FAMILIES  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _texts(figure) -> list[str]:
    return [t.get_text() for axis in figure.axes for t in [*axis.texts, axis.title]]


def test_systems_of_one_family_share_a_hue_and_families_differ():
    qwen = [plots.model_color(k) for k in ("qwen3", "linq", "gte")]
    assert len(set(qwen)) == 3  # shades, not one colour
    base = np.array(plots.family_color(FAMILIES["general instruction-tuned"]))
    assert np.allclose(qwen[0], base)
    # every shade lies on the line from the family colour to black or white
    for colour in qwen[1:]:
        direction = np.array(colour) - base
        assert np.allclose(np.cross(direction, base), 0, atol=1e-9) or np.allclose(
            np.cross(direction, np.ones(3) - base), 0, atol=1e-9)
    assert plots.model_color("bm25") != plots.model_color("minilm")
    assert plots.model_color("someone/else") == plots.family_color(FAMILIES["user model"])


def test_bar_chart_draws_one_bar_per_system_and_group_with_error_bars(tmp_path):
    table = pd.DataFrame({
        "family": ["Misspelling", "Misspelling", "Reordering", "Reordering"],
        "model": ["minilm", "bm25", "minilm", "bm25"],
        "drop": [5.0, 3.0, -1.0, 0.5], "std": [1.0, 0.5, 0.2, 0.1],
    })
    axis = plots.bar_chart(table, x="family", y="drop", hue="model", error="std")
    bars = [p for p in axis.patches]
    assert len(bars) == 4
    assert sorted(round(b.get_height(), 3) for b in bars) == [-1.0, 0.5, 3.0, 5.0]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["Misspelling", "Reordering"]
    axis.figure.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 0


def test_scatter_grid_shows_r_only_with_enough_distinct_points(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for variant, n in (("many", 6), ("few", 3)):
        for i in range(n):
            rows.append({"metric": "isoscore", "variant": variant, "model": f"m{i}",
                         "geometry": float(i), "stability": float(i + rng.normal(0, 0.1)),
                         "clean": 0.5})
    panels = pd.DataFrame(rows)
    figure = plots.scatter_grid(panels, rows="metric", cols="variant", x="geometry",
                                y="stability", color="clean", min_points=4,
                                correlation=lambda x, y: (np.corrcoef(x, y)[0, 1], "*"))
    titles = {axis.get_title() for axis in figure.axes if axis.get_title()}
    many = next(t for t in titles if t.startswith("many"))
    assert float(many.split("r = ")[1].rstrip("*")) > 0.95 and many.endswith("*")
    assert "few" in titles  # no correlation in the title of the thin panel
    assert any("< 4 distinct points" in t for t in _texts(figure))
    figure.savefig(tmp_path / "grid.png")


def test_interval_plot_has_one_row_per_system_and_a_family_legend(tmp_path):
    table = pd.DataFrame({"Model": ["bm25", "minilm", "qwen3"], "mean": [0.4, 0.5, 0.6],
                          "low": [0.3, 0.45, 0.5], "high": [0.5, 0.55, 0.7]})
    figure = plots.interval_plot(table, estimate="mean", low="low", high="high")
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["qwen3", "minilm", "bm25"]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["lexical", "general instruction-tuned", "offline encoder-only"]
    figure.savefig(tmp_path / "intervals.png")
