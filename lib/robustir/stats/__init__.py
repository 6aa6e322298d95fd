"""Statistics for the book: mixed models (``mixed``), correlations and multiple-comparison
correction (``correlation``), resampling inference (``resampling``)."""
