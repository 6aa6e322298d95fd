"""``robustir poison``: supervised HotFlip corpus poisoning of one system on one dataset.

Used in the book chapter "Corpus poisoning" (the command behind the ``corpus_poisoning``
notebook).
"""

from __future__ import annotations

import argparse
import sys

from robustir.cli._inputs import check_output_folders, device, split_name
from robustir.cli._models import add_model_arguments, model_overrides, positive_int
from robustir.metrics.poisoning import TIE_RULES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``poison`` subcommand to the ``robustir`` parser."""
    p = subparsers.add_parser(
        "poison", help="generate HotFlip adversarial passages and measure ASR@k (protocol §5)",
        description="Attack one system with supervised HotFlip on the attacker split, append "
                    "the passages to the clean test corpus, and write ASR@k and nDCG@10 to the "
                    "results store (experiment corpus_poisoning). A killed run resumes.")
    add_model_arguments(p)
    p.add_argument("--dataset", required=True, help="dataset key under the data root")
    p.add_argument("--n-passages", type=positive_int, required=True, help="N: clusters = passages")
    p.add_argument("--iterations", type=positive_int, required=True, help="per cluster (the study: 5000)")
    p.add_argument("--seed", type=int, required=True, help="the study: 1999, 5, 27, 2016, 2026")
    p.add_argument("--candidates", type=positive_int, default=100, help="tokens scored per iteration")
    p.add_argument("--passage-length", type=positive_int, default=50, help="tokens per passage")
    p.add_argument("--batch-size", type=positive_int, default=64, help="queries per centroid")
    p.add_argument("--attacker-dataset", default=None,
                   help="dataset of the attacker's training qrels (default: the registry's, "
                        "nq-train for nq, else --dataset)")
    p.add_argument("--attacker-split", type=split_name, default="train")
    p.add_argument("--split", type=split_name, default="test", help="evaluation split")
    p.add_argument("--tie-rule", choices=TIE_RULES, default="adversarial_loses")
    p.add_argument("--top-k", type=positive_int, default=1000)
    p.add_argument("--checkpoint-every", type=positive_int, default=25, help="iterations between saves")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the gold-passage and query-text baselines")
    p.add_argument("--bf16", action="store_true",
                   help="run the attack with bfloat16 weights (evaluation stays float32)")
    p.add_argument("--device", type=device, default=None)
    p.add_argument("--data-root", default=None, help="default: $ROBUSTIR_DATA or ./data")
    p.add_argument("--cache-dir", default=None, help="embedding cache (default: $ROBUSTIR_CACHE)")
    p.add_argument("--output", default="results", help="results store root")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=poison_command,
                   on_interrupt="rerun the same command: the attack resumes from its checkpoint")


def poison_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir poison``; prints ASR@k per variant and returns the exit status."""
    from robustir.attack import HotFlipConfig
    from robustir.cache import EmbeddingCache
    from robustir.experiments.corpus_poisoning import run_corpus_poisoning
    from robustir.model_sources import resolve_model

    try:
        config = HotFlipConfig(
            n_passages=args.n_passages, iterations=args.iterations, candidates=args.candidates,
            passage_length=args.passage_length, batch_size=args.batch_size, seed=args.seed,
            checkpoint_every=args.checkpoint_every,
        )
    except ValueError as error:
        print(f"robustir poison: error: {error}", file=sys.stderr)
        return 2
    cache = EmbeddingCache(args.cache_dir)
    check_output_folders(output=args.output, cache_dir=str(cache.root))
    spec = resolve_model(args.model, where="--model", **model_overrides(args))
    evaluations = run_corpus_poisoning(
        spec, args.dataset, config, max_length=args.max_length, dtype=args.dtype,
        attacker_dataset=args.attacker_dataset, attacker_split=args.attacker_split, split=args.split,
        data_root=args.data_root, output=args.output, cache=cache,
        device=args.device, attack_dtype="bfloat16" if args.bf16 else None,
        tie_rule=args.tie_rule, top_k=args.top_k, baselines=not args.no_baselines,
        progress=not args.quiet,
    )
    print(f"{spec.key} on {args.dataset}/{args.split}, N={args.n_passages}, seed {args.seed} "
          f"(tie rule {args.tie_rule}); results in {args.output}/corpus_poisoning")
    for variant, evaluation in evaluations.items():
        metrics = evaluation.summary["metrics"]
        values = "  ".join(f"{m}={v:.4f}" for m, v in metrics.items())
        print(f"{variant:<22} {values}")
    return 0
