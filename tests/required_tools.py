"""The external tools some tests need (R for the cross-checks, headless Chromium for the reader
test): skipped where a developer has not installed them, a failure in CI, which installs them
(``make setup``), so that a broken install can never pass as a row of skips.

``conftest.py`` applies :func:`require_marked_tools` to every test marked ``r`` or ``browser``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess

import pytest

#: The R packages the ``r`` tests load.
R_PACKAGES = ("lme4", "lmerTest", "emmeans")


def in_ci() -> bool:
    """Whether this run is CI's (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def missing_tool(reason: str) -> None:
    """Fail in CI, skip elsewhere, with ``reason`` (what is missing and how to install it)."""
    if in_ci():
        pytest.fail(f"{reason}; CI installs it (make setup), so this run's setup is broken",
                    pytrace=False)
    pytest.skip(reason)


@functools.lru_cache(maxsize=1)
def r_missing() -> str | None:
    """Why the R cross-checks cannot run here, or ``None`` when Rscript and its packages are present."""
    if shutil.which("Rscript") is None:
        return "Rscript not found: install r-base-core r-cran-lme4 r-cran-lmertest r-cran-emmeans"
    absent = absent_r_packages(R_PACKAGES)
    if absent:
        return "R packages missing: install " + " ".join(f"r-cran-{p.lower()}" for p in absent)
    return None


def absent_r_packages(packages: tuple[str, ...]) -> list[str]:
    """The ``packages`` R cannot load (Rscript must be on the PATH)."""
    probe = "for (p in commandArgs(TRUE)) if (!requireNamespace(p, quietly = TRUE)) cat(p, '')"
    found = subprocess.run(["Rscript", "-e", probe, *packages],
                           capture_output=True, text=True, timeout=120, check=True)
    return found.stdout.split()


@functools.lru_cache(maxsize=1)
def browser_missing() -> str | None:
    """Why headless Chromium cannot run here, or ``None`` when Chromium, its driver and Selenium are present."""
    absent = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if absent:
        return f"{' and '.join(absent)} not found: install Debian's chromium chromium-driver"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


def require_marked_tools(item: pytest.Item) -> None:
    """Skip or fail ``item`` (see :func:`missing_tool`) when a tool its markers name is absent."""
    for marker, missing in (("r", r_missing), ("browser", browser_missing)):
        if item.get_closest_marker(marker) is not None:
            reason = missing()
            if reason is not None:
                missing_tool(reason)
