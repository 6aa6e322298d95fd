"""``robustir train-retriever``: train the decoder-only retrievers of a training grid.

Used in the book chapter "Training a small LLM retriever" (``make retrain``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Where the catalog's trained retrievers live (``ModelSpec.adapter`` is relative to it).
SHIPPED = Path(__file__).resolve().parents[1] / "resources" / "retrievers"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-retriever`` subcommand."""
    p = subparsers.add_parser(
        "train-retriever", help="train decoder-only retrievers (LoRA, contrastive) from a grid",
        description="Train each model of a training grid (configs/train.yaml) on the train "
                    "split and corpus of its dataset, never a test split, and save its "
                    "adapter with every setting and the training log. A killed run resumes.")
    p.add_argument("--config", default="configs/train.yaml", help="training grid")
    p.add_argument("--only", nargs="+", default=None, metavar="KEY", help="train these keys only")
    p.add_argument("--output", default=str(SHIPPED),
                   help="folder of the adapters (default: the package's, which the catalog reads)")
    p.add_argument("--data-root", default=None, help="default: $ROBUSTIR_DATA or ./data")
    p.add_argument("--evaluate", nargs="*", default=[], metavar="DATASET",
                   help="after training, evaluate each model on these datasets' test splits "
                        "and put the scores in its model card (e.g. scifact cranfield)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=train_command)


def train_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir train-retriever``: trains, then prints validation and time."""
    from robustir.experiments.evaluation import evaluate
    from robustir.experiments.training import (
        load_training_configs,
        retriever_spec,
        train_retrievers,
        write_model_card,
    )

    configs = load_training_configs(args.config)
    if args.only:
        unknown = sorted(set(args.only) - {c.key for c in configs})
        if unknown:
            raise ValueError(f"--only names {unknown}, which {args.config} does not train "
                             f"(it trains {', '.join(c.key for c in configs)})")
        configs = [c for c in configs if c.key in args.only]
    results = train_retrievers(configs, args.output, data_root=args.data_root,
                               progress=not args.quiet)
    for config, result in zip(configs, results):
        scores = {}
        for dataset in args.evaluate:
            measured = evaluate(retriever_spec(config, result.adapter), dataset,
                                data_root=args.data_root, dtype=config.dtype,
                                progress=not args.quiet)
            scores[f"{dataset}/test"] = measured.summary["metrics"]
        write_model_card(result.adapter, scores)
        last = result.record["history"][-1]
        print(f"{config.key}: {result.record['training_seconds']:.0f} s, loss {last['loss']:.3f}, "
              f"validation nDCG@10 {last.get('validation_ndcg@10', float('nan')):.4f}; "
              f"adapter in {result.adapter} (sha256 {result.record['adapter_sha256'][:12]})")
    return 0
