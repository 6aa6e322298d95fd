"""Statistics for the book: mixed models with lmerTest/emmeans-style inference (``mixed``), the
study's query-level models laid out as Tables 1-2 (``generalizability``), correlations and
multiple-comparison correction (``correlation``), resampling inference (``resampling``)."""
