"""The model options every command that takes a model shares: ``--model`` and its overrides.

``--model`` accepts a catalog key, a local Hugging Face or sentence-transformers folder, a YAML
model spec or a hub id (:func:`robustir.model_sources.resolve_model`); the overrides replace what
the source says (pooling, prompts, normalisation, maximum length, dtype).

Used in the book chapter "Reproducing" (its section "Rerun this page with another model").
"""

from __future__ import annotations

import argparse
from typing import Any

from robustir.cli._inputs import positive_int
from robustir.model_sources import MODEL_OVERRIDES

__all__ = ["add_model_arguments", "model_overrides", "positive_int", "resolved_model"]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model`` and the model overrides to ``parser``."""
    parser.add_argument("--model", required=True,
                        help="catalog key (see `robustir models`), a local Hugging Face or "
                             "sentence-transformers folder, a .yaml model spec, or a hub id")
    group = parser.add_argument_group("model overrides (replace what the model's source says)")
    group.add_argument("--pooling", choices=("mean", "cls", "last_token", "prompt_mean"),
                       default=None)
    group.add_argument("--query-prompt", default=None, help="prompt prepended to every query")
    group.add_argument("--document-prompt", default=None, help="prompt prepended to every document")
    group.add_argument("--max-length", type=positive_int, default=None, help="tokens per text")
    group.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                       help="L2-normalise the pooled vectors")
    group.add_argument("--score", choices=("cos", "dot"), default=None)
    group.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                       help="weights dtype (default: float32 on a CPU, the model's on CUDA)")


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides given on the command line (unset ones left out)."""
    return {name: getattr(args, name) for name in MODEL_OVERRIDES
            if getattr(args, name, None) is not None}


def resolved_model(args: argparse.Namespace):
    """The :class:`~robustir.models.ModelSpec` of ``--model`` with the overrides applied."""
    from robustir.model_sources import resolve_model

    return resolve_model(args.model, where="--model", **model_overrides(args))
