# kdnmt — the two commands a new user runs are `make demo` and `make test`.
# Both set up .venv/ first; a second run reinstalls nothing (the stamp file below).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kdnmt-installed
REQS := requirements/lock.txt requirements/onmt.txt requirements/dev.txt pyproject.toml

.PHONY: install test demo lint clean-demo help

help:
	@echo "make demo    set up .venv/ and run the demo pipeline on the bundled de-en data"
	@echo "make test    set up .venv/ and run the test suite"
	@echo "make lint    ruff over the code"

install: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	# torch==2.13.0 first, on its own, so that nothing else can pull another (CUDA) build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements/lock.txt -r requirements/dev.txt
	# OpenNMT-py pins torch<2.3: install it without its dependencies (the ones it really
	# imports are pinned in requirements/lock.txt).
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/onmt.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check kdnmt tests bench

include recipes/demo/demo.mk
