"""One look for every figure of the book: a seaborn theme, colours per model family, and the
figure helpers the notebooks share.

Colours come from seaborn's colour-blind palette and are fixed per model *family*
(:data:`robustir.models.FAMILIES`), so a family has the same hue in every chapter; the systems of
one family are lighter or darker shades of it, in catalog order. Models outside the catalog (your
own) share the "your model" hue.

Helpers: :func:`bar_chart` (grouped bars with error bars, e.g. drop rates per family and
system), :func:`scatter_grid` (the study's Figure 2/3 panel layout, with the correlation in each
title only where the panel has enough distinct points), :func:`interval_plot` (estimates with
confidence intervals, e.g. marginal means), and :func:`family_legend`.

Used by every run and aggregate notebook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from robustir.models import FAMILIES, MODELS, family_label

__all__ = [
    "FAMILY_COLORS",
    "apply_theme",
    "bar_chart",
    "family_color",
    "family_legend",
    "interval_plot",
    "model_color",
    "model_palette",
    "scatter_grid",
]

_PALETTE = sns.color_palette("colorblind", 10)
#: The colour of each family label, in :data:`robustir.models.FAMILIES` order.
FAMILY_COLORS: dict[str, tuple[float, float, float]] = {
    label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(FAMILIES.values())
}


def apply_theme() -> None:
    """The book's seaborn theme: white grid, paper context, colour-blind palette."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)


def _family_of(key: str) -> str:
    return family_label(MODELS[key].family) if key in MODELS else FAMILIES["user model"]


def family_color(label: str) -> tuple[float, float, float]:
    """The colour of a family label (grey for a label outside :data:`FAMILY_COLORS`)."""
    return FAMILY_COLORS.get(label, (0.5, 0.5, 0.5))


def model_color(key: str) -> tuple[float, float, float]:
    """The fixed colour of a system: its family's hue, a shade per system in catalog order."""
    family = _family_of(key)
    base = np.array(family_color(family))
    members = [k for k in MODELS if _family_of(k) == family]
    if key not in members or len(members) == 1:
        return tuple(base)
    # shades from the family colour towards black and white, the first system unshaded
    position = members.index(key)
    step = (position + 1) // 2 * (0.45 / max(1, len(members) // 2))
    target = np.zeros(3) if position % 2 else np.ones(3)
    return tuple(base + (target - base) * step)


def model_palette(keys: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """``{key: colour}`` for seaborn's ``palette=`` argument."""
    return {key: model_color(key) for key in keys}


def family_legend(axis_or_figure, keys: Sequence[str], **legend_options):
    """A legend with one entry per family among ``keys`` (in family display order)."""
    families = list(dict.fromkeys(_family_of(k) for k in keys))
    order = list(FAMILIES.values())
    families.sort(key=lambda f: order.index(f) if f in order else len(order))
    handles = [Line2D([], [], marker="o", ls="", color=family_color(f), label=f) for f in families]
    return axis_or_figure.legend(handles=handles, **legend_options)


def bar_chart(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str,
    error: str | None = None,
    x_order: Sequence[str] | None = None,
    hue_order: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    ax=None,
):
    """Grouped bars of ``y`` per ``x`` (groups) and ``hue`` (systems), with error bars.

    Args:
        table: One row per (x, hue).
        x: Column of the groups (e.g. the perturbation family).
        y: Column of the bar heights.
        hue: Column of the systems (coloured with :func:`model_color`).
        error: Column of the half-widths of the error bars (e.g. a std over seeds).
        x_order, hue_order: Orders (default: as they first appear).
        labels: Display names of the ``hue`` values (default: the values).
        ax: Axes to draw on (default: a new figure).

    Returns:
        The axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.6))
    x_order = list(x_order or dict.fromkeys(table[x]))
    hue_order = list(hue_order or dict.fromkeys(table[hue]))
    labels = labels or {}
    width = 0.8 / max(1, len(hue_order))
    positions = np.arange(len(x_order))
    for i, system in enumerate(hue_order):
        rows = table[table[hue] == system].set_index(x).reindex(x_order)
        offsets = positions - 0.4 + width * (i + 0.5)
        ax.bar(offsets, rows[y], width, color=model_color(system), label=labels.get(system, system),
               yerr=rows[error] if error else None, capsize=2, edgecolor="white", linewidth=0.5)
    ax.set_xticks(positions, x_order)
    ax.axhline(0, color="black", linewidth=0.6)
    # below the axes: inside, a legend of many systems covers the tallest bars
    ax.legend(fontsize=7, ncol=min(4, len(hue_order)), frameon=False, loc="upper center",
              bbox_to_anchor=(0.5, -0.12))
    return ax


def scatter_grid(
    panels: pd.DataFrame,
    *,
    rows: str,
    cols: str,
    x: str,
    y: str,
    color: str | None = None,
    label: str = "model",
    min_points: int = 4,
    correlation: Callable[[pd.Series, pd.Series], tuple[float, str]] | None = None,
    row_order: Sequence[str] | None = None,
    col_order: Sequence[str] | None = None,
    ylabel: str | None = None,
):
    """The study's panel grid (Figures 2–3): one scatter per (row, column), one point per system.

    A panel with fewer than ``min_points`` distinct ``x`` or ``y`` values gets no correlation
    and says so inside the panel; axis limits come from the points shown.

    Args:
        panels: Long table, one row per (row value, column value, system).
        rows, cols: Columns whose values make the grid's rows (e.g. geometry metric) and
            columns (e.g. perturbation family).
        x, y: Columns of the axes.
        color: Column of a continuous colour (e.g. clean nDCG@10); ``None``: family colours.
        label: Column of the point labels.
        min_points: Fewest distinct values per axis for a correlation.
        correlation: ``f(x, y) -> (r, marker)`` shown in the title (e.g. Pearson r and ``*``).
        row_order, col_order: Orders of the rows and columns.
        ylabel: Label of the y axes (default: ``y``).

    Returns:
        The figure.
    """
    row_order = list(row_order or dict.fromkeys(panels[rows]))
    col_order = list(col_order or dict.fromkeys(panels[cols]))
    figure, axes = plt.subplots(len(row_order), len(col_order),
                                figsize=(2.9 * len(col_order) + 0.8, 2.5 * len(row_order)),
                                squeeze=False)
    drawn = None
    vmin, vmax = (panels[color].min(), panels[color].max()) if color else (None, None)
    for r, row_value in enumerate(row_order):
        for c, col_value in enumerate(col_order):
            axis = axes[r][c]
            points = panels[(panels[rows] == row_value) & (panels[cols] == col_value)]
            points = points.dropna(subset=[x, y])
            colours = points[color] if color else [model_color(k) for k in points[label]]
            drawn = axis.scatter(points[x], points[y], c=colours, cmap="viridis" if color else None,
                                 vmin=vmin, vmax=vmax, edgecolors="black", linewidths=0.4, s=28)
            for _, point in points.iterrows():
                axis.annotate(str(point[label]), (point[x], point[y]), fontsize=6,
                              xytext=(2, 2), textcoords="offset points")
            title = str(col_value)
            enough = points[x].nunique() >= min_points and points[y].nunique() >= min_points
            if enough and correlation is not None:
                estimate, marker = correlation(points[x], points[y])
                title += f"\nr = {estimate:.2f}{marker}"
            elif not enough:
                axis.text(0.5, 0.04, f"< {min_points} distinct points: no r", fontsize=6,
                          ha="center", transform=axis.transAxes, color="0.35")
            axis.set_title(title, fontsize=8)
            axis.tick_params(labelsize=7)
            axis.set_xlabel(str(row_value), fontsize=8)
            if c == 0:
                axis.set_ylabel(ylabel or y, fontsize=8)
    if color and drawn is not None:
        figure.colorbar(drawn, ax=axes.ravel().tolist(), label=color, shrink=0.8)
    return figure


def interval_plot(
    table: pd.DataFrame,
    *,
    estimate: str,
    low: str,
    high: str,
    label: str = "Model",
    panel: str | None = None,
    xlabel: str = "",
):
    """Estimates with their intervals, one row per system, coloured by family (e.g. marginal
    means with 95% CIs); one panel per value of ``panel`` when given.

    Returns:
        The figure.
    """
    groups = list(table.groupby(panel, sort=False)) if panel else [("", table)]
    systems = list(dict.fromkeys(table[label]))
    figure, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups) + 1, 0.6 + 0.32 * len(systems)),
                                sharey=True, squeeze=False)
    for axis, (name, rows) in zip(axes[0], groups):
        rows = rows.set_index(label).reindex(systems[::-1]).dropna(subset=[estimate])
        positions = np.arange(len(rows))
        colours = [model_color(k) for k in rows.index]
        axis.hlines(positions, rows[low], rows[high], colors=colours)
        axis.scatter(rows[estimate], positions, c=colours, zorder=3)
        axis.set_yticks(positions, rows.index)
        axis.set_title(str(name), fontsize=9)
        axis.set_xlabel(xlabel)
    family_legend(figure, systems, loc="lower center", ncol=4, frameon=False, fontsize=7,
                  bbox_to_anchor=(0.5, -0.02))
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure
