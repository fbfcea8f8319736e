# Entry points, each doing all set-up from a fresh clone:
#   make demo   set up, then run edgekit's main job on the built-in demo model
#   make test   set up, then run the whole test suite
#   make test-fast  set up, then run the tests not marked slow (no end-to-end compiles or training; under 2 minutes)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
# make test runs one pytest-xdist worker per core, at most 4 (each compile holds one core and up to 2-3 GB)
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))

.PHONY: setup demo test test-fast lava sample-report clean

$(BIN)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; fix: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

# Lava needs Python 3.10 and numpy<2: its own environment, made by a script (optional; doctor reports it)
lava:
	@bash scripts/setup-lava.sh

setup: $(BIN)/.installed lava

demo: setup
	$(BIN)/edgekit compile --target onnx

test: setup
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile --durations=25

test-fast: setup
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile -m "not slow"

# reports/: the demo model on every target (static numbers in demo.json are checked by the tests)
sample-report: setup
	$(BIN)/edgekit energy --target sample --out build/sample-report --report-dir reports

clean:
	rm -rf $(VENV) .venv-lava build dist
