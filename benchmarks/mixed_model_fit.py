"""Benchmark: the study-scale mixed model in robustir versus R's lme4 + emmeans.

Fits ``ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)`` (REML, reference levels
contriever and FACTOID, protocol §3.4) on ``../shared/bench/lmm_paper_scale.csv.gz`` (382,716
rows) and computes the system marginal means, once with ``robustir.stats.mixed`` and once with
``Rscript tests/r/fit_paper_scale.R``, each in its own child process. Wall time and peak resident
memory (``wait4`` rusage of the child) are reported as ratios robustir / R, with the largest
difference between the two implementations' marginal means.

Usage::

    python benchmarks/mixed_model_fit.py [--table PATH]
    python benchmarks/mixed_model_fit.py --skip-r     # robustir only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FORMULA = "ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)"
REFERENCE = {"Model": "contriever", "query_type": "FACTOID"}


def python_worker(table: str, out: str) -> None:
    """Child process: fit with robustir and write the system marginal means."""
    from robustir.stats.mixed import fit_mixed

    columns = ["query_id", "dataset_name", "query_type", "Model"]
    data = pd.read_csv(table, dtype={c: "category" for c in columns})
    fit = fit_mixed(data, FORMULA, reference=REFERENCE)
    means = fit.marginal_means("Model")
    means.assign(log_likelihood=fit.log_likelihood).to_csv(out, index=False)


def run_child(command: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB) of that child alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[0]} failed with status {status}")
    return wall, usage.ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(REPO.parent / "shared/bench/lmm_paper_scale.csv.gz"))
    parser.add_argument("--skip-r", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("TABLE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        python_worker(*args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours_csv, r_csv = Path(tmp, "robustir.csv"), Path(tmp, "r.csv")
        ours = run_child([sys.executable, __file__, "--worker", args.table, str(ours_csv)])
        rows = [("robustir (nested profiled REML)", *ours)]
        if not args.skip_r:
            plain = Path(tmp, "table.csv")
            plain.write_bytes(pd.read_csv(args.table).to_csv(index=False).encode())
            script = REPO / "tests/r/fit_paper_scale.R"
            theirs = run_child(["Rscript", str(script), str(plain), str(r_csv)])
            rows.append(("R lme4 + emmeans", *theirs))
        print(f"{'implementation':34s} {'wall s':>9s} {'peak MiB':>9s}")
        for name, wall, memory in rows:
            print(f"{name:34s} {wall:9.1f} {memory:9.0f}")
        if not args.skip_r:
            print(f"{'ratio robustir / R':34s} {ours[0] / theirs[0]:9.3f} {ours[1] / theirs[1]:9.3f}")
            mine = pd.read_csv(ours_csv).set_index("Model")
            r = pd.read_csv(r_csv)
            r_means = r[r.quantity == "emmean"].set_index("name")["value"]
            r_loglik = float(r.loc[r.quantity == "loglik", "value"].iloc[0])
            diff = (mine["marginal_mean"] - r_means[mine.index]).abs().max()
            print(f"max |marginal mean difference| = {diff:.2e}; "
                  f"logLik robustir {mine['log_likelihood'].iloc[0]:.4f}, R {r_loglik:.4f}")


if __name__ == "__main__":
    main()
