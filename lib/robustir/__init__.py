"""robustir: measuring how robust dense text retrievers are.

The library behind the robustir book, a re-implementation of Li, Eustratiadis, Fan & Kanoulas
(2026), "On the Robustness of LLM-Based Dense Retrievers". One module per pipeline stage:
``data → encode (+cache) → retrieve → metrics``, with ``perturb`` and ``attack`` producing new
queries and passages for the same path, and ``geometry``, ``stats`` and ``plots`` reading results.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
