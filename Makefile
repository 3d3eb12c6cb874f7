# `make run`: set up .venv (if needed) and run the workflow on config.yaml.
# `make test`: the same set-up, then the test suite.
# `make test-cluster`: start a one-node SLURM cluster here (root, apt-get) and run the cluster tests.
PYTHON ?= python3
# The torch that .venv gets: TORCH_SPEC from pip's default index (here a local CPU wheel; on Linux from
# PyPI a CUDA build), or from TORCH_INDEX, e.g. https://download.pytorch.org/whl/cu128 (a CUDA version)
# or .../whl/cpu. An existing .venv keeps its torch: `make clean setup TORCH_INDEX=...` replaces it.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: setup run test test-cluster bench clean

setup: $(STAMP)

# torch is pinned (TORCH_SPEC, from TORCH_INDEX when given); torch-scatter/torch-cluster
# have no wheels for it and build from source against it (pip caches the built
# wheels). If that build fails, the pure-torch path is used and a warning says so.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)') '$(TORCH_SPEC)'
	$(BIN)/pip install --quiet -e '.[test]'  # with the SLURM executor plugin (extra `slurm`)
	$(BIN)/pip install --quiet --no-build-isolation torch-scatter torch-cluster \
	  || echo "WARNING: torch-scatter/torch-cluster did not build; aenet_core uses its pure-torch path"
	touch $(STAMP)

run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/pytest -q -m "not cluster"

test-cluster: setup
	PATH="$(abspath $(BIN)):$$PATH" tests/run-cluster-tests.sh

bench: setup
	$(BIN)/python bench/featurize.py --data ../shared/data/TiO2
	$(BIN)/python bench/featurize.py --data ../shared/data/LMNTO
	$(BIN)/python bench/train.py --data ../shared/data/TiO2 --cache
	$(BIN)/python bench/database.py --data ../shared/data
	$(BIN)/python bench/active_learning.py

clean:
	rm -rf $(VENV) .snakemake .pytest_cache
