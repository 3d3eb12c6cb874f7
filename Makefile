# `make run`: set up .venv (if needed) and run the workflow on config.yaml.
# `make test`: the same set-up, then the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: setup run test bench clean

setup: $(STAMP)

# torch is pinned to the CPU wheel this machine carries; torch-scatter/torch-cluster
# have no wheels for it and build from source against it (pip caches the built
# wheels). If that build fails, the pure-torch path is used and a warning says so.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-build-isolation torch-scatter torch-cluster \
	  || echo "WARNING: torch-scatter/torch-cluster did not build; aenet_core uses its pure-torch path"
	touch $(STAMP)

run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/featurize.py --data ../shared/data/TiO2
	$(BIN)/python bench/featurize.py --data ../shared/data/LMNTO
	$(BIN)/python bench/train.py --data ../shared/data/TiO2 --cache
	$(BIN)/python bench/database.py --data ../shared/data

clean:
	rm -rf $(VENV) .snakemake .pytest_cache
