"""Tests marked ``r`` or ``browser`` skip without their tool on a developer's machine and fail
without it in CI, which installs R and Chromium with ``make setup``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from required_tools import absent_r_packages, in_ci, missing_tool

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, ci", [("true", True), ("1", True), ("", False), ("false", False),
                                       ("0", False), (None, False)])
def test_ci_is_told_by_the_ci_variable(monkeypatch, value, ci):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_a_missing_tool_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Rscript not found; CI installs it"):
        missing_tool("Rscript not found")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="Rscript not found"):
        missing_tool("Rscript not found")


@pytest.mark.parametrize("tests, marker, reason", [
    ("tests/test_mixed.py", "r", "Rscript not found"),
    ("tests/test_book.py", "browser", "chromium and chromedriver not found"),
])
def test_marked_tests_fail_in_ci_without_their_tool(tmp_path, tests, marker, reason):
    """The real marked tests, run with a PATH that holds no tool at all."""
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PATH": str(tmp_path)}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs", "-m", marker, tests]
    outside = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert outside.returncode == 0 and " skipped" in outside.stdout and reason in outside.stdout, outside.stdout[-2000:]
    assert " failed" not in outside.stdout and " passed" not in outside.stdout
    ci = subprocess.run(command, cwd=ROOT, env=env | {"CI": "true"}, capture_output=True, text=True, timeout=300)
    # a failure in setup: pytest reports the tests as errors and exits 1
    assert ci.returncode == 1 and reason in ci.stdout, ci.stdout[-2000:]
    assert " error" in ci.stdout.splitlines()[-1] and " skipped" not in ci.stdout.splitlines()[-1]


@pytest.mark.r
def test_an_absent_r_package_is_named():
    assert absent_r_packages(("lme4", "robustir.no.such.package")) == ["robustir.no.such.package"]
