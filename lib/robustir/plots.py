"""One look for every figure of the book: a seaborn theme and fixed colours per model.

Colours come from seaborn's colour-blind palette and are fixed per catalog entry, so a system
has the same colour in every chapter; systems of one family share a hue family.

Used by every run and aggregate notebook.
"""

from __future__ import annotations

import seaborn as sns

from robustir.models import MODELS

__all__ = ["apply_theme", "model_color", "model_palette"]

_PALETTE = sns.color_palette("colorblind", 10)
_ORDER = [
    # the study's systems, in its display order, then the offline entries
    "bm25", "contriever", "bge_m3", "qwen3", "linq", "gte", "reasonir", "diver", "bge_reasoner",
    "qwen3_4B", "qwen3_0.6B", "minilm", "minilm_cls", "minilm_l3", "smollm2", "smollm2_mean",
    "smollm2_l15", "wordllama",
]


def apply_theme() -> None:
    """The book's seaborn theme: white grid, paper context, colour-blind palette."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)


def model_color(key: str) -> tuple[float, float, float]:
    """The fixed colour of a catalog entry (grey for keys outside the catalog)."""
    if key not in MODELS:
        return (0.5, 0.5, 0.5)
    return _PALETTE[_ORDER.index(key) % len(_PALETTE)]


def model_palette(keys) -> dict[str, tuple[float, float, float]]:
    """``{key: colour}`` for seaborn's ``palette=`` argument."""
    return {key: model_color(key) for key in keys}
