# `make demo` and `make test` set everything up themselves: a .venv next to this file.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): setup.py rna_localization/_dependencies.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,notebooks,formats]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: install
	$(BIN)/rna-localization demo

lint: install
	$(BIN)/ruff check rna_localization tests benchmarks batch-processing-scripts

# Tests run in TEST_WORKERS processes (pytest-xdist; "auto": one per core, at most 4, each
# with its own embedded PostgreSQL): 9 minutes on 2 cores against 15-17 in one process.
TEST_WORKERS ?= auto

test: install lint
	$(BIN)/python -m pytest -ra -n $(TEST_WORKERS) --maxprocesses 4

bench: install
	# Big-FISH, the detection benchmark's baseline (setup.py extra "bench"), the first
	# release's aicssegmentation steps, the segmentation-time baseline (without napari/itk),
	# and sim-fish, the Big-FISH authors' simulator (its "big-fish" requirement is the
	# bench extra's big-fish-reloaded, which provides the same module).
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m pip install --quiet --no-deps "aicssegmentation>=0.5.3" "sim-fish>=0.2"
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
