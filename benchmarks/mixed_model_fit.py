"""Benchmark: the study-scale mixed models in robustir versus R's lme4, lmerTest and emmeans.

Two cases on ``../shared/bench/lmm_paper_scale.csv.gz`` (382,716 rows, protocol §3.4), each run
once by robustir and once by R, every run in its own child process:

- ``fit``: ``ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)`` (REML, reference
  levels contriever and FACTOID) and the system marginal means (asymptotic inference);
  R: lme4 + emmeans (``tests/r/fit_paper_scale.R``).
- ``query-level``: the study's three query-level models ``ndcg_10 ~ Model * X +
  (1 | dataset_name/query_id)`` for X = query type, task type, corpus type (task and corpus type
  from the dataset registry), each with the Type-III ANOVA with Satterthwaite df and the Model x X
  cell marginal means with Satterthwaite df; R: lmerTest + emmeans
  (``tests/r/fit_query_level_models.R``), with the study's bobyqa settings. At this scale
  bobyqa stops where the REML criterion is flat to its rounding, with the variance parameters
  ~1e-4 (relative) from the optimum, and lmerTest's numerical Hessian (numDeriv, step 1e-4) is
  dominated by that rounding: at robustir's optimum of the corpus-type model its entry for the
  dataset-level theta is 901 with lmerTest's step, 95.1 with step 1e-3 and 84.5 with 1e-2, where
  the exact value is 84.2. ``--r-start robustir`` starts R at robustir's optimum to tell the
  optimizer's share of the differences from the Hessian's.

Wall time and peak resident memory (``wait4`` rusage of the child) are reported as ratios
robustir / R, with the largest relative difference of each reported quantity. Both sides run
with single-threaded BLAS (R's reference BLAS is single-threaded; OpenBLAS threads only contend
on a shared machine), so the ratios compare algorithms.

Usage::

    python benchmarks/mixed_model_fit.py [--case fit|query-level|all] [--table PATH]
    python benchmarks/mixed_model_fit.py --queries-per-dataset 500   # a subsample, both sides
    python benchmarks/mixed_model_fit.py --case query-level --r-start robustir
    python benchmarks/mixed_model_fit.py --skip-r                    # robustir only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FORMULA = "ndcg_10 ~ Model * query_type + (1 | dataset_name/query_id)"
REFERENCE = {"Model": "contriever", "query_type": "FACTOID"}
KEY_COLUMNS = ["query_id", "dataset_name", "query_type", "Model"]
SINGLE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
R_SCRIPTS = {"fit": "tests/r/fit_paper_scale.R", "query-level": "tests/r/fit_query_level_models.R"}


def fit_worker(table: str, out: str) -> None:
    """Child process: fit the query-type model with robustir and write the system means."""
    from robustir.stats.mixed import fit_mixed

    data = pd.read_csv(table, dtype={c: "category" for c in KEY_COLUMNS})
    fit = fit_mixed(data, FORMULA, reference=REFERENCE)
    means = fit.marginal_means("Model", ddf="asymptotic")
    means.assign(log_likelihood=fit.log_likelihood).to_csv(out, index=False)


def query_level_worker(table: str, out: str) -> None:
    """Child process: the three query-level models, Type-III ANOVA and cell means (robustir)."""
    from robustir.stats.factors import dataset_factor
    from robustir.stats.generalizability import QUERY_LEVEL_FACTORS
    from robustir.stats.mixed import fit_mixed

    data = pd.read_csv(table, dtype={c: "category" for c in KEY_COLUMNS})
    for factor in ("task_type", "corpus_type"):
        data[factor] = dataset_factor(data["dataset_name"].astype(str), factor).to_numpy()
    rows = []
    for factor, (reference, _) in QUERY_LEVEL_FACTORS.items():
        formula = f"ndcg_10 ~ Model * {factor} + (1 | dataset_name/query_id)"
        fit = fit_mixed(data, formula, reference={"Model": "contriever", factor: reference})
        anova = fit.anova(ddf="satterthwaite")
        for quantity, column in (("F", "F_value"), ("num_df", "num_df"), ("den_df", "den_df"), ("p", "p_value")):
            rows += [(factor, f"anova_{quantity}", t, v) for t, v in zip(anova["term"], anova[column])]
        cells = fit.marginal_means(["Model", factor], ddf="satterthwaite")
        labels = cells["Model"].astype(str) + " " + cells[factor].astype(str)
        for quantity, column in (("estimate", "marginal_mean"), ("se", "std_error"), ("df", "df"),
                                 ("lower", "ci_lower"), ("upper", "ci_upper")):
            rows += [(factor, f"cell_{quantity}", n, v) for n, v in zip(labels, cells[column])]
        rows.append((factor, "loglik", "logLik", fit.log_likelihood))
        theta = fit.satterthwaite.parameters[:-1]  # lme4's order: query within dataset, dataset
        rows += [(factor, "theta", f"theta{i + 1}", t) for i, t in enumerate(theta)]
    pd.DataFrame(rows, columns=["case", "quantity", "name", "value"]).to_csv(out, index=False)


WORKERS = {"fit": fit_worker, "query-level": query_level_worker}


def run_child(command: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB) of that child alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **SINGLE_THREAD})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[0]} failed with status {status}")
    return wall, usage.ru_maxrss / 1024.0


def relative_differences(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Largest |ours - R| / |R| of each quantity (0 where both are 0), with where it occurs,
    and the largest absolute difference of that quantity."""
    merged = ours.merge(theirs, on=["case", "quantity", "name"], suffixes=("_ours", "_r"), how="outer")
    if merged[["value_ours", "value_r"]].isna().any().any():
        unmatched = merged[merged[["value_ours", "value_r"]].isna().any(axis=1)]
        raise SystemExit(f"robustir and R report different rows, e.g.\n{unmatched.head()}")
    a, b = merged["value_ours"].to_numpy(float), merged["value_r"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        merged["relative"] = np.where(a == b, 0.0, np.abs(a - b) / np.abs(b))
    merged["absolute"] = np.abs(a - b)
    worst = merged.loc[merged.groupby("quantity")["relative"].idxmax()].set_index("quantity")
    worst["max_absolute"] = merged.groupby("quantity")["absolute"].max()
    columns = ["case", "name", "value_ours", "value_r", "relative", "max_absolute"]
    return worst[columns].reset_index()


def subsample(table: Path, queries_per_dataset: int | None, folder: Path) -> Path:
    """The table, or its first ``queries_per_dataset`` queries of every dataset."""
    if queries_per_dataset is None:
        return table
    data = pd.read_csv(table)
    first = data.drop_duplicates("query_id").groupby("dataset_name").head(queries_per_dataset)
    path = folder / "subsample.csv.gz"
    data[data["query_id"].isin(first["query_id"])].to_csv(path, index=False)
    return path


def r_input(case: str, table: Path, folder: Path) -> Path:
    """Plain CSV for R (the query-level case adds task and corpus type from the registry)."""
    from robustir.stats.factors import dataset_factor

    data = pd.read_csv(table)
    if case == "query-level":
        for factor in ("task_type", "corpus_type"):
            data[factor] = dataset_factor(data["dataset_name"], factor).astype(str).to_numpy()
    path = folder / f"{case}-input.csv"
    data.to_csv(path, index=False)
    return path


def run_case(case: str, table: Path, folder: Path, skip_r: bool, r_start: str) -> None:
    ours_csv, r_csv = folder / f"{case}-robustir.csv", folder / f"{case}-r.csv"
    ours = run_child([sys.executable, __file__, "--worker", case, str(table), str(ours_csv)])
    rows = [("robustir", *ours)]
    if not skip_r:
        script = REPO / R_SCRIPTS[case]
        command = ["Rscript", str(script), str(r_input(case, table, folder)), str(r_csv)]
        label = "R"
        if case == "query-level" and r_start == "robustir":
            start = pd.read_csv(ours_csv).query("quantity == 'theta'")[["case", "value"]]
            start.to_csv(folder / "start.csv", index=False)
            command.append(str(folder / "start.csv"))
            label = "R (from robustir's optimum)"
        theirs = run_child(command)
        rows.append((label, *theirs))
    print(f"\n== case {case}: {table.name} ({len(pd.read_csv(table, usecols=['query_id'])):,} rows)")
    print(f"{'implementation':28s} {'wall s':>9s} {'peak MiB':>9s}")
    for name, wall, memory in rows:
        print(f"{name:28s} {wall:9.1f} {memory:9.0f}")
    if skip_r:
        return
    print(f"{'ratio robustir / R':28s} {ours[0] / theirs[0]:9.3f} {ours[1] / theirs[1]:9.3f}")
    if case == "fit":
        mine = pd.read_csv(ours_csv).set_index("Model")
        r = pd.read_csv(r_csv)
        r_means = r[r.quantity == "emmean"].set_index("name")["value"]
        r_loglik = float(r.loc[r.quantity == "loglik", "value"].iloc[0])
        diff = (mine["marginal_mean"] - r_means[mine.index]).abs().max()
        print(f"max |marginal mean difference| = {diff:.2e}; "
              f"logLik robustir {mine['log_likelihood'].iloc[0]:.4f}, R {r_loglik:.4f}")
    else:
        ours_numbers = pd.read_csv(ours_csv).query("quantity != 'theta'")
        worst = relative_differences(ours_numbers, pd.read_csv(r_csv))
        print("largest relative difference robustir vs R per reported quantity (goal 1e-6; F, df 1e-4):")
        print(worst.to_string(index=False, float_format=lambda v: f"{v:.6g}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(REPO.parent / "shared/bench/lmm_paper_scale.csv.gz"))
    parser.add_argument("--case", choices=[*WORKERS, "all"], default="all")
    parser.add_argument("--queries-per-dataset", type=int, default=None,
                        help="use the first N queries of every dataset (both sides)")
    parser.add_argument("--skip-r", action="store_true")
    parser.add_argument("--r-start", choices=["default", "robustir"], default="default",
                        help="where R's bobyqa starts in the query-level case")
    parser.add_argument("--worker", nargs=3, metavar=("CASE", "TABLE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case, table, out = args.worker
        WORKERS[case](table, out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        table = subsample(Path(args.table), args.queries_per_dataset, Path(tmp))
        for case in WORKERS if args.case == "all" else [args.case]:
            run_case(case, table, Path(tmp), args.skip_r, args.r_start)


if __name__ == "__main__":
    main()
