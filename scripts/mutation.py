"""Mutation testing of the numerical core with mutmut (``make mutation``; not part of CI).

Mutates ``metrics/``, ``stats/resampling.py``, ``perturb/`` (except ``paraphrase.py``, whose
model cannot load offline, so no test can run it here) and the pooling, normalisation and
prompt code of ``encode.py`` (``pool``, ``Encoder._head``, ``Encoder._with_prompt``), runs the
fast tests of those modules against every mutant, and prints the kill ratio and each survivor's
diff.

mutmut 3 derives module names from file paths and knows only the ``src/`` layout, so the
library is staged under ``build/mutation/src``; the staged tests read the shared datasets
through ``ROBUSTIR_SHARED_DATA``. Arguments are extra mutant-name globs that narrow the run
(e.g. ``'robustir.metrics.*'``); the ratio then covers those mutants only.

Usage::

    make mutation                                   # everything above (about an hour on 2 cores)
    python scripts/mutation.py 'robustir.metrics.*' # a subset
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

#: Mutant-name globs of the code under mutation (module path, then mutmut's mangled function).
TARGETS = (
    "robustir.metrics.*",
    "robustir.stats.resampling.*",
    "robustir.perturb.*",
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


def main(patterns: list[str]) -> int:
    stage()
    names = patterns or list(TARGETS)
    children = str(max(1, min(2, os.cpu_count() or 1)))
    if mutmut("run", "--max-children", children, *names).returncode != 0:
        print("mutation: mutmut run failed", file=sys.stderr)
        return 1
    listing = mutmut("results", "--all", "true", capture=True).stdout
    statuses = {}
    for line in listing.splitlines():
        match = re.match(r"\s+(\S+): (.+)$", line)
        if match and any(fnmatch.fnmatch(match.group(1), p) for p in names):
            statuses[match.group(1)] = match.group(2).strip()
    counts = Counter(statuses.values())
    judged = sum(n for status, n in counts.items() if status not in ("skipped", "not checked"))
    killed = counts["killed"] + counts["timeout"] + counts["segfault"]
    survivors = sorted(name for name, status in statuses.items()
                       if status not in ("killed", "timeout", "segfault", "skipped", "not checked"))
    for name in survivors:
        print(mutmut("show", name, capture=True).stdout)
    print(f"mutation: {dict(counts)}")
    print(f"mutation: {killed} of {judged} mutants killed ({100 * killed / max(judged, 1):.1f}%); "
          f"{len(survivors)} survivors:")
    for name in survivors:
        print(f"  {name}: {statuses[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
