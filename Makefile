# The developer interface. `make book` and `make test` work on a fresh machine: both set up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.robustir-setup
# The grid `make book` runs; its datasets are fetched first when missing (robustir data fetch).
GRID ?= configs/default.yaml
# The embedded default reads the shared collections when they sit beside the checkout.
ROBUSTIR_DATA ?= $(if $(wildcard ../shared/datasets),$(abspath ../shared/datasets),$(CURDIR)/data)
export ROBUSTIR_DATA
export HF_HUB_OFFLINE ?= 1
export ROBUSTIR_CACHE ?= $(CURDIR)/.cache/robustir
export NLTK_DATA := $(CURDIR)/build/nltk_data
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup book retrain test bench mutation clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP): pyproject.toml requirements/cpu.txt requirements/offline-models.txt scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

book: setup
	$(PY) -m robustir.cli data fetch --grid $(GRID)
	$(PY) -m robustir.cli --verbose book --config $(GRID)

retrain: setup
	$(PY) -m robustir.cli train-retriever --config configs/train.yaml --evaluate scifact cranfield

test: setup
	TQDM_DISABLE=1 $(PY) -m pytest -p no:cacheprovider

bench: setup
	$(VENV)/bin/pip install -q -e ".[bench]"
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Mutation testing of metrics/, stats/resampling.py, perturb/ and encode.py's pooling (mutmut,
# fast tests only): prints the kill ratio and every survivor. Not part of CI (about an hour).
mutation: setup
	$(VENV)/bin/pip install -q "mutmut==3.8.1"
	$(PY) scripts/mutation.py

clean:
	rm -rf _build build/nbtest results/.tmp-*
