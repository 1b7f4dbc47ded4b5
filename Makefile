# kdnmt — the two commands a new user runs are `make demo` and `make test`.
# Both set up .venv/ first; a second run reinstalls nothing (the stamp file below).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kdnmt-installed
REQS := requirements/lock.txt requirements/onmt.txt requirements/dev.txt pyproject.toml

.PHONY: install test test-fast lint help

# Every target a user runs, and the demo's variables with their current values (the demo's
# targets and DEMO_* variables are in recipes/demo/demo.mk, read before this recipe runs).
# tests/unit/test_make_help.py checks that every .PHONY target and DEMO_* variable is listed.
HELP_ROW := printf "  %-54s %s\n"
help:
	@echo "Targets:"
	@$(HELP_ROW) "make demo" "set up .venv/ and run the demo pipeline on the bundled de-en data"
	@$(HELP_ROW) "make demo-clean" "delete the demo's run directory (DEMO_RUN) to start over"
	@$(HELP_ROW) "make test" "set up .venv/ and run the test suite"
	@$(HELP_ROW) "make test-fast" "only the tests not marked slow (no training, no processes; under a minute)"
	@$(HELP_ROW) "make lint" "ruff and mypy over the code"
	@$(HELP_ROW) "make install" "only set up .venv/ (the targets above do it first)"
	@$(HELP_ROW) "make demo-bundled-teacher" "maintainers: train the bundled teacher on for a sitting (SHARED_DATA), release it"
	@$(HELP_ROW) "make demo-student-ce" "one demo student alone (make demo trains ce and seq side by side)"
	@$(HELP_ROW) "make demo-student-seq" "the other one"
	@echo "Demo variables (make demo VAR=value; current values shown):"
	@$(HELP_ROW) "DEMO_RUN=$(DEMO_RUN)" "run directory"
	@$(HELP_ROW) "DEMO_DATA=$(DEMO_DATA)" "directory of train/valid/test.{de,en}[.xz]"
	@$(HELP_ROW) "DEMO_TEACHER=$(DEMO_TEACHER)" "bundled: adopt DEMO_TEACHER_DIR; train: train one in the run"
	@$(HELP_ROW) "DEMO_TEACHER_DIR=$(DEMO_TEACHER_DIR)" "the teacher adopted with DEMO_TEACHER=bundled"
	@$(HELP_ROW) "DEMO_TEACHER_STEPS=$(DEMO_TEACHER_STEPS)" "teacher updates with DEMO_TEACHER=train"
	@$(HELP_ROW) "DEMO_TEACHER_MAX_MINUTES=$(DEMO_TEACHER_MAX_MINUTES)" "its safety cap in minutes"
	@$(HELP_ROW) "DEMO_STUDENT_STEPS=$(DEMO_STUDENT_STEPS)" "updates of each student (ce and seq)"
	@$(HELP_ROW) "DEMO_STUDENT_MAX_MINUTES=$(DEMO_STUDENT_MAX_MINUTES)" "their safety cap in minutes"
	@$(HELP_ROW) "DEMO_STUDENT_CONFIG=$(DEMO_STUDENT_CONFIG)" "their schedule (chosen on validation for 2,400 updates)"
	@$(HELP_ROW) "DEMO_STUDENT_THREADS=$(DEMO_STUDENT_THREADS)" "threads of each student (they train side by side)"
	@$(HELP_ROW) "DEMO_PRECISION=$(DEMO_PRECISION)" "training arithmetic: bf16 where the CPU has it natively, else fp32"
	@$(HELP_ROW) "DEMO_VOCAB=$(DEMO_VOCAB)" "SentencePiece size with DEMO_TEACHER=train"
	@echo "Recipes (each has a README.md; pass your own DATA= and TEACHER_DIR=):"
	@$(HELP_ROW) "make -f recipes/debian-de-en/Makefile all" "every KD method at equal budgets (also: prepare generate students eval clean; maintainers: corpus)"
	@$(HELP_ROW) "make -f recipes/debian-de-en/Makefile -j2 results" "every method at a real budget, two students at a time (RESULTS_TRAIN, RESULTS_STEPS, RESULTS_SELFEVO_FROM)"
	@$(HELP_ROW) "make -f recipes/debian-de-en/Makefile study-micro" "the KD study grid (also study-quick, study-full)"
	@$(HELP_ROW) "make -f recipes/debian-de-en/Makefile selfevo-start" "selfevo as a fine-tuning stage from a ce student"
	@$(HELP_ROW) "make -f recipes/iwslt14-de-en/Makefile all" "IWSLT14 de-en, downloaded (also: data prepare teacher generate students eval)"

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

# The tests not marked slow (pyproject.toml: no model training, no Python processes, none over
# about a second): 11 s on one core (KDNMT_THREADS=1 taskset -c 1), 31 s with that core shared.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check kdnmt tests bench recipes
	$(BIN)/mypy

include recipes/demo/demo.mk
