"""The experiments layer: one module per analysis of the book.

Each module has the same small surface:

* a ``run`` function (or ``evaluate``) that runs the analysis from plain parameters and
  returns a result object with a ``write(store)`` method;
* :data:`EXPERIMENT`, the results-store key its entries live under
  (``<store>/<EXPERIMENT>/<model>/<dataset>/<variant>/seed-<seed>/``);
* a ``summarise`` function that reads the store back for the aggregate notebooks.

Modules: :mod:`~robustir.experiments.evaluation` (clean effectiveness),
:mod:`~robustir.experiments.query_variations`, :mod:`~robustir.experiments.corpus_poisoning`,
:mod:`~robustir.experiments.geometry`, :mod:`~robustir.experiments.generalizability` (the
model-fitting step) and :mod:`~robustir.experiments.training` (training a retriever). They sit
above the generators (:mod:`robustir.perturb`, :mod:`robustir.attack`) and the stages
(encoding, retrieval, metrics, statistics), and below the fronts (notebooks, ``runs``, CLI).
CONTRIBUTING.md shows how to add one.
"""
