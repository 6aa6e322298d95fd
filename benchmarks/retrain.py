"""Benchmark: retraining the shipped decoder retrievers from scratch reproduces them.

Trains every model of ``configs/train.yaml`` into a scratch folder (what ``make retrain`` does,
without touching the shipped adapters), evaluates the retrained and the shipped adapters the same
way on SciFact test (nDCG@10, bfloat16, the catalog's settings), and prints, per model, both
scores, their difference (goal: within ±0.01) and the training time on this machine.

Usage::

    python benchmarks/retrain.py [--only smollm2_ret_l10] [--datasets scifact cranfield]

Training all three takes about an hour on 2 idle cores (the model cards record each run's time).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from robustir.experiments.evaluation import evaluate
from robustir.experiments.training import load_training_configs, retriever_spec, train_retrievers
from robustir.models import MODELS

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 0.01


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "train.yaml"))
    parser.add_argument("--only", nargs="+", default=None)
    parser.add_argument("--datasets", nargs="+", default=["scifact"])
    args = parser.parse_args(argv)
    configs = [c for c in load_training_configs(args.config) if not args.only or c.key in args.only]
    with tempfile.TemporaryDirectory(prefix="retrain-") as scratch:
        started = time.perf_counter()
        results = train_retrievers(configs, scratch, progress=False)
        hours = (time.perf_counter() - started) / 3600
        print(f"retrained {len(configs)} model(s) in {hours:.2f} h")
        failed = False
        print(f"{'model':<18}{'dataset':<11}{'shipped':>9}{'retrained':>11}{'difference':>12}")
        for config, result in zip(configs, results):
            for dataset in args.datasets:
                scores = []
                for spec in (MODELS[config.key], retriever_spec(config, result.adapter)):
                    spec = dataclasses.replace(spec, key=f"{config.key}-{len(scores)}")
                    run = evaluate(spec, dataset, dtype=config.dtype, progress=False)
                    scores.append(run.summary["metrics"]["nDCG@10"])
                difference = scores[1] - scores[0]
                failed |= abs(difference) > TOLERANCE
                print(f"{config.key:<18}{dataset:<11}{scores[0]:>9.4f}{scores[1]:>11.4f}"
                      f"{difference:>+12.4f}")
    print(f"goal: every |difference| <= {TOLERANCE}: {'met' if not failed else 'NOT met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
