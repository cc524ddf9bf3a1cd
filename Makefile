# The developer loop is the CI loop: `make test` is what .ci/run calls.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Some images set PYTHONDONTWRITEBYTECODE=1: then every process of a test run (each pytest
# worker, each forked server, each `loom` command a test runs) compiles Loom and the test
# modules from source, and pytest rewrites every test module's asserts again. Cached bytecode
# (in the git-ignored __pycache__ folders) saves about 8 s of CPU per pytest process.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: serve test test-fast lint typecheck walls pytest explore bench lock clean

$(STAMP): pyproject.toml constraints.txt
	@echo "loom: installing loom and its dependencies into $(VENV) (first run, or pyproject.toml or constraints.txt changed; about 30 s)..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)
	@echo "loom: $(VENV) is ready ($(BIN)/loom; \`source $(BIN)/activate\` puts loom on PATH)"

## Start the server on the embedded SQLite default (data in the platform data dir).
serve: $(STAMP)
	$(BIN)/loom serve $(ARGS)

## Install everything, then run ruff, mypy (strict), the import walls and the whole pytest suite.
## The checks run alongside pytest (their ~8 s of CPU fits in the suite's waits); their output
## is printed after the tests', and a failure of either fails the target.
test: $(STAMP)
	@if [ -n "$$TMPDIR" ]; then mkdir -p -m 700 "$$TMPDIR"; fi
	@checks_log=$$(mktemp); \
	$(MAKE) --no-print-directory -j 3 --output-sync=target lint typecheck walls >"$$checks_log" 2>&1 & checks=$$!; \
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS); tests_rc=$$?; \
	wait $$checks; checks_rc=$$?; \
	echo "loom: ruff, mypy and the import walls (run alongside the tests):"; cat "$$checks_log"; rm -f "$$checks_log"; \
	if [ $$checks_rc -ne 0 ]; then echo "loom: the static checks failed (above)"; fi; \
	[ $$tests_rc -eq 0 ] && [ $$checks_rc -eq 0 ]

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

## The import walls of docs/architecture.md (import-linter contracts in pyproject.toml).
walls: $(STAMP)
	$(BIN)/lint-imports

# Three workers on this two-core machine: a fifth of the suite's wall time is waiting (on
# servers starting and stopping, timers, PostgreSQL), which a third worker fills with work
# (measured: 154 s with two, 131-142 s with three, 136 s with four). Tests marked
# xdist_group("races") share one worker.
XDIST ?= -n 3 --dist loadgroup

# The test run's scratch files (~400 MB a run: SQLite databases, servers' data folders, the
# release wheel; pytest keeps the last three runs) go to RAM, in /dev/shm, when it is a
# tmpfs with 4 GB free and TMPDIR is not set. On this machine's disk (ext4 mounted with
# `discard`) pytest spent 5.5 s (cProfile) at the end of a run deleting the run before last
# (23,269 files, ~90 us an unlink); SQLite's checkpoints were fsyncs to the disk.
ifeq ($(origin TMPDIR),undefined)
ifeq ($(shell df -Pk -t tmpfs /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 > 4000000 {print "ok"}'),ok)
test pytest test-fast explore: export TMPDIR := /dev/shm/loom-tests-$(shell id -u)
endif
endif

pytest: $(STAMP)
	@if [ -n "$$TMPDIR" ]; then mkdir -p -m 700 "$$TMPDIR"; fi
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

## The inner loop: lint, types, walls and every test not marked slow (no real-server races,
## no fuzzing), on three workers.
test-fast: $(STAMP) lint typecheck walls
	@if [ -n "$$TMPDIR" ]; then mkdir -p -m 700 "$$TMPDIR"; fi
	$(BIN)/pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

## Hunt for new failures: every property and state-machine test, random seeds, 10x budgets
## (hypothesis profile `explore`; `make test` uses `dev`, or the derandomized `ci` when CI is set).
explore: $(STAMP)
	@if [ -n "$$TMPDIR" ]; then mkdir -p -m 700 "$$TMPDIR"; fi
	HYPOTHESIS_PROFILE=explore $(BIN)/pytest -m hypothesis $(PYTEST_ARGS)

## Run every benchmark (prints its figures; see BENCHMARKS.md). Starts its own servers.
bench: $(STAMP)
	$(BIN)/python bench/parse_corpus.py
	$(BIN)/python bench/import_corpus.py --postgres
	$(BIN)/python bench/api.py
	$(BIN)/python bench/leases.py
	$(BIN)/python bench/burndown.py
	$(BIN)/python bench/large.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/auth.py
	$(BIN)/python bench/stream.py

## Refresh constraints.txt (the exact versions `make test` installs) to the newest versions
## pyproject.toml allows, resolved in a throwaway virtualenv.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	head -2 constraints.txt > constraints.new
	.venv-lock/bin/python -m pip freeze --exclude-editable >> constraints.new
	mv constraints.new constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
