"""``robustir vary``: write one query-variation set (family × seed) of a dataset split.

Writes JSONL ``{"_id", "text", "original", "generator", "changed"}`` (readable by
``robustir evaluate --queries FILE``) and a ``<stem>.provenance.json`` sidecar.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import argparse
import os
import sys

from robustir.cli._inputs import check_output_folders, device, split_name
from robustir.perturb import FAMILY_NAMES, RNG_SCOPES, STUDY_SEEDS, FamilyUnavailable, resolve_family


def _family(text: str) -> str:
    try:
        resolve_family(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``vary`` subcommand to the ``robustir`` parser.

    Used in the book chapter "Query variations".
    """
    vary = subparsers.add_parser(
        "vary", help="write perturbed queries of one family and seed (JSONL + provenance)",
        description="Generate one variant per query of a dataset split with one of the study's "
                    "query-variation families, seeded, and save it with its provenance.")
    vary.add_argument("--dataset", required=True, help="dataset key under the data root, or a folder")
    vary.add_argument("--family", required=True, type=_family,
                      help=f"family: {', '.join(FAMILY_NAMES)} (display names also accepted)")
    vary.add_argument("--seed", required=True, type=int,
                      help=f"random seed (the study's: {', '.join(map(str, STUDY_SEEDS))})")
    vary.add_argument("--output", required=True, help="JSONL file to write")
    vary.add_argument("--split", type=split_name, default="test")
    vary.add_argument("--data-root", default=None, help="default: $ROBUSTIR_DATA or ./data")
    vary.add_argument("--rng-scope", choices=RNG_SCOPES, default="stream",
                      help="stream: the study's one stream per run (default); query: per-query "
                           "generators from (seed, dataset, qid), an improvement")
    vary.add_argument("--device", type=device, default="cpu", help="torch device for model-based families")
    vary.set_defaults(handler=vary_command)


def vary_command(args: argparse.Namespace) -> int:
    """Handler of ``robustir vary``; returns 0, or 3 when the family is unavailable here.

    Used in the book chapter "Query variations".
    """
    from robustir.data import load_dataset
    from robustir.perturb import build_family, generate_variations

    check_output_folders(output=os.path.dirname(os.path.abspath(args.output)))
    dataset = load_dataset(args.dataset, args.split, args.data_root)
    try:
        family = build_family(args.family, device=args.device)
    except FamilyUnavailable as error:
        print(f"robustir vary: {error}", file=sys.stderr)
        return 3
    result = generate_variations(dataset.queries, family, args.seed, dataset=dataset.name,
                                 split=dataset.split, rng_scope=args.rng_scope)
    sidecar = result.save(args.output)
    provenance = result.provenance
    print(f"{family.display_name} ({family.key}), seed {args.seed}, {dataset.name}/{dataset.split}: "
          f"{provenance['n_changed']} of {provenance['n_queries']} queries changed "
          f"(unchanged fraction {provenance['unchanged_fraction']:.3f})")
    for generator, count in provenance["fallbacks_per_generator"].items():
        if count:
            print(f"{generator}: {count} queries kept unchanged (every attempt failed its filter)")
    print(f"written to {args.output} (provenance: {sidecar})")
    return 0
