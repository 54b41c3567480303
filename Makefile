# Two commands do all the set-up on a fresh machine:
#   make demo   ingest the sample papers, rank, render and deliver digests (SQLite, in-process, outbox)
#   make test   install what the tests need, start what they need, run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The semantic extra's torch: pinned so pip takes the CPU wheel, not a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0

.PHONY: demo test lint bench clean

# pip shows what it downloads and installs: the first run takes a few minutes.
$(BIN)/.installed: pyproject.toml
	@echo "installing papermail and its dependencies into $(VENV) (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -e '.[test,semantic]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/papermail demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(BIN)/.installed lint
	bash scripts/test-prerequisites.sh
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/python -m bench
	$(BIN)/python -m bench.e2e

clean:
	rm -rf var dist build artifacts .pytest_cache
