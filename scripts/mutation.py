"""Mutation testing of the numerical core with mutmut (``make mutation``; not part of CI).

Mutates ``metrics/``, ``stats/resampling.py``, ``perturb/`` and the pooling, normalisation and
prompt code of ``encode.py`` (``pool``, ``Encoder._head``, ``Encoder._with_prompt``), runs the
fast tests of those modules against every mutant, and prints the kill ratio and each survivor's
diff. Two modules of ``perturb/`` are left out, each for a reason:

* ``paraphrase.py``: its models (M2M100, a T5 paraphraser) cannot load offline, so no test can
  run it here.
* ``llm_paraphrase.py``, except its model-free helpers (``copy_key``, ``clean_candidate``,
  ``ParaphraseSettings.__post_init__``, ``LLMParaphrase._length_bounds`` and ``.rejection``,
  mutated with the three tests that check them by hand): every other function samples from a
  chat model, so each of its mutants would cost tens of seconds of generation on two cores.
  The behaviour tests of ``tests/test_llm_paraphrase.py`` cover them in the ordinary suite.

Survivors that no test can tell from the code (equivalent mutants) are listed with a one-line
reason in ``scripts/mutation_equivalents.toml``, and so are the few that a test kills in a
subprocess (mutmut switches a mutant on in its own process only; each was checked by applying
the mutation by hand). The report gives the raw ratio, killed / run, and the net one,
(killed + killed outside) / (run − equivalent), and lists the unexplained survivors apart. An
entry that a run finds killed, or that names no mutant of the run, is reported as stale.

mutmut 3 derives module names from file paths and knows only the ``src/`` layout, so the
library is staged under ``build/mutation/src``; the staged tests read the shared datasets
through ``ROBUSTIR_SHARED_DATA``. Arguments are extra mutant-name globs that narrow the run
(e.g. ``'robustir.metrics.*'``); the ratio then covers those mutants only. ``--report`` prints
the report of the staged run again (also of one stopped half-way) without running anything.

Usage::

    make mutation                                   # everything above (about an hour on 2 cores)
    python scripts/mutation.py 'robustir.metrics.*' # a subset
    python scripts/mutation.py --report             # the last run's report again
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "build" / "mutation"
EQUIVALENTS = Path(__file__).with_name("mutation_equivalents.toml")

#: Modules of ``perturb/`` left out of the mutation (see the module docstring for why).
PERTURB_LEFT_OUT = ("__init__", "paraphrase", "llm_paraphrase")

#: The model-free helpers of ``perturb/llm_paraphrase.py``, mutated nonetheless.
LLM_PARAPHRASE_HELPERS = (
    "x_copy_key",
    "x_clean_candidate",
    "xǁParaphraseSettingsǁ__post_init__",
    "xǁLLMParaphraseǁ_length_bounds",
    "xǁLLMParaphraseǁrejection",
)

#: Mutant-name globs of the code under mutation (module path, then mutmut's mangled function).
TARGETS = (
    "robustir.metrics.*",
    "robustir.stats.resampling.*",
    *(f"robustir.perturb.{module.stem}.*" for module in sorted((ROOT / "lib" / "robustir" / "perturb").glob("*.py"))
      if module.stem not in PERTURB_LEFT_OUT),
    *(f"robustir.perturb.llm_paraphrase.{helper}__mutmut_*" for helper in LLM_PARAPHRASE_HELPERS),
    "robustir.encode.x_pool__mutmut_*",
    "robustir.encode.xǁEncoderǁ_head__mutmut_*",
    "robustir.encode.xǁEncoderǁ_with_prompt__mutmut_*",
)

#: The fast tests of those modules (``-m "not slow and not r and not browser"``).
TESTS = (
    "tests/test_metrics.py",
    "tests/test_stability.py",
    "tests/test_poisoning_metrics.py",
    "tests/test_perturb.py",
    "tests/test_perturb_synonyms.py",
    "tests/test_encode.py",
    "tests/test_mutation_cases.py",
    "tests/test_mutation_survivors.py",
    "tests/test_registries.py",
    # the model-free checks of llm_paraphrase.py's helpers (the filter's on a tiny random Llama)
    "tests/test_llm_paraphrase.py::test_copy_key_and_cleaning_by_hand",
    "tests/test_llm_paraphrase.py::test_settings_are_checked",
    "tests/test_llm_paraphrase.py::test_filter_rejects_each_failure_by_name",
)

MUTMUT_CONFIG = f"""
[tool.mutmut]
source_paths = ["src"]
only_mutate = ["src/robustir/metrics/*", "src/robustir/stats/resampling.py",
               "src/robustir/perturb/*", "src/robustir/encode.py"]
do_not_mutate = ["src/robustir/perturb/paraphrase.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not slow and not r and not browser"]
pytest_add_cli_args_test_selection = {list(TESTS)!r}
process_isolation = "forkserver"
# each mutant's process loads its models afresh (seconds): no timeout below that
timeout_constant = 30.0
"""


#: mutmut's statuses of a killed mutant, and of one that was not run.
KILLED = ("killed", "timeout", "segfault")
NOT_RUN = ("skipped", "not checked")


def stage() -> None:
    """A fresh ``build/mutation``: the library as ``src/``, the tests, and a pyproject with the
    project's pytest settings and mutmut's."""
    shutil.rmtree(STAGE, ignore_errors=True)
    shutil.copytree(ROOT / "lib", STAGE / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "tests", STAGE / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    pytest_settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = "".join(f"    {m!r},\n" for m in pytest_settings["markers"])
    (STAGE / "pyproject.toml").write_text(
        f"[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\nmarkers = [\n{markers}]\n" + MUTMUT_CONFIG)


def mutmut(*arguments: str, capture: bool = False) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ROBUSTIR_SHARED_DATA": os.environ.get("ROBUSTIR_SHARED_DATA", str(ROOT.parent / "shared" / "datasets")),
        "NLTK_DATA": os.environ.get("NLTK_DATA", str(ROOT / "build" / "nltk_data")),
        # the dequantised SmolLM2 copy is made once there, not in every mutant's process
        "ROBUSTIR_CACHE": os.environ.get("ROBUSTIR_CACHE", str(ROOT / ".cache" / "robustir")),
        "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1",
        "PYTHONPATH": "",  # the staged, mutated library must be the one imported
    }
    return subprocess.run([sys.executable, "-m", "mutmut", *arguments], cwd=STAGE, env=env,
                          text=True, capture_output=capture, check=False)


def explained_survivors() -> tuple[dict[str, str], dict[str, str]]:
    """From ``mutation_equivalents.toml``: ``{mutant: why no test can kill it}`` (equivalent)
    and ``{mutant: the test that kills it where mutmut cannot see}`` (killed outside mutmut)."""
    table = tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    return table["equivalent"], table.get("killed_outside_mutmut", {})


def mutant_statuses(patterns: list[str]) -> dict[str, str]:
    """``{mutant name: mutmut's status}`` of the staged run's mutants that match ``patterns``."""
    listing = mutmut("results", "--all", "true", capture=True).stdout
    statuses = {}
    for line in listing.splitlines():
        match = re.match(r"\s+(\S+): (.+)$", line)
        if match and any(fnmatch.fnmatch(match.group(1), p) for p in patterns):
            statuses[match.group(1)] = match.group(2).strip()
    return statuses


def report(statuses: dict[str, str], equivalent: dict[str, str], outside: dict[str, str],
           patterns: list[str]) -> None:
    """Print the unexplained survivors' diffs, then the raw and net kill ratios and the lists.

    The net ratio leaves the equivalent mutants out and counts those killed outside mutmut
    (by a test in a subprocess, where mutmut does not switch the mutant on) as killed.
    """
    counts = Counter(statuses.values())
    run = sum(n for status, n in counts.items() if status not in NOT_RUN)
    killed = sum(counts[status] for status in KILLED)
    survivors = sorted(n for n, status in statuses.items() if status not in KILLED + NOT_RUN)
    explained = [n for n in survivors if n in equivalent]
    killed_outside = [n for n in survivors if n in outside]
    unexplained = [n for n in survivors if n not in equivalent and n not in outside]
    # listed, yet killed, or no longer a mutant (its function's code changed)
    stale = sorted(n for n in {**equivalent, **outside} if any(fnmatch.fnmatch(n, p) for p in patterns)
                   and statuses.get(n, "absent") not in ("survived", *NOT_RUN))
    for name in unexplained:
        print(mutmut("show", name, capture=True).stdout)
    net, net_killed = run - len(explained), killed + len(killed_outside)
    print(f"mutation: {dict(counts)}")
    print(f"mutation: {killed} of {run} mutants killed ({100 * killed / max(run, 1):.1f}%); net of "
          f"{len(explained)} equivalent and with {len(killed_outside)} killed outside mutmut, "
          f"{net_killed} of {net} ({100 * net_killed / max(net, 1):.1f}%)")
    print(f"mutation: {len(unexplained)} unexplained survivors:")
    for name in unexplained:
        print(f"  {name}: {statuses[name]}")
    for title, names, reasons in (("equivalent survivors", explained, equivalent),
                                  ("survivors killed outside mutmut", killed_outside, outside)):
        print(f"mutation: {len(names)} {title} ({EQUIVALENTS.name}):")
        for name in names:
            print(f"  {name}: {reasons[name]}")
    if stale:
        print(f"mutation: {len(stale)} stale entries of {EQUIVALENTS.name} (killed, or not a mutant "
              "of this run any more: re-check them with `mutmut show`):")
        for name in stale:
            print(f"  {name}: {statuses.get(name, 'absent')}")


def main(arguments: list[str]) -> int:
    report_only = "--report" in arguments
    patterns = [a for a in arguments if a != "--report"] or list(TARGETS)
    if not report_only:
        stage()
        children = str(max(1, min(2, os.cpu_count() or 1)))
        if mutmut("run", "--max-children", children, *patterns).returncode != 0:
            print("mutation: mutmut run failed", file=sys.stderr)
            return 1
    report(mutant_statuses(patterns), *explained_survivors(), patterns)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
