# `make run` and `make test` are the two commands a fresh clone needs (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-fast bench bench-gpu browser label-studio clean

# The venv is (re)built whenever the dependency list or the pins change. constraints.txt pins
# torch/torchvision (an unpinned torch pulls a newer release and gigabytes of CUDA wheels).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-cache-dir -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/crayon run --out runs/quickstart

test: $(STAMP) browser label-studio
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=25

# Everyday work: everything but the slow end-to-end tier (`make test` runs it all; CI calls make test).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder -m "not slow" --durations=10

# The annotation page's browser test drives Debian's Chromium through its ChromeDriver (nothing is
# downloaded). Installed here when missing; if apt-get cannot, that one test skips and says why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "warning: could not install chromium and chromium-driver; the browser test will be skipped"

# The Label Studio round-trip test runs the real server, a program with pins of its own: it goes
# into its own environment, never the project's. If it cannot be installed, that test skips and says why.
LS_VENV := .venv-label-studio
LS_REQUIREMENTS := tests/annotation/label-studio-requirements.txt
label-studio: $(LS_VENV)/.installed-stamp
$(LS_VENV)/.installed-stamp: $(LS_REQUIREMENTS)
	@{ test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV); } && \
	  $(LS_VENV)/bin/pip install --quiet --upgrade pip && \
	  $(LS_VENV)/bin/pip install --quiet --no-cache-dir -r $(LS_REQUIREMENTS) && touch $@ || \
	  echo "warning: could not install Label Studio into $(LS_VENV); the Label Studio server test will be skipped"

# Speed targets, as ratios measured in one run (never as timed unit tests: this machine is shared).
bench: $(STAMP)
	$(BIN)/python benchmarks/pruning_cost.py
	$(BIN)/python benchmarks/study_cost.py
	$(BIN)/python benchmarks/validation_cost.py
	$(BIN)/python benchmarks/streaming_memory.py

# GPU figures (docs/gpu.md): the CUDA tests, the training step, throughput, loading and the CRAYON
# setting at real size, at most 8 minutes on one GPU. `benchmarks/gpu.py --dry-run` is its CPU rehearsal.
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/gpu.py

clean:
	rm -rf $(VENV) $(LS_VENV) runs .pytest_cache .hypothesis
