# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo bytecode test test-fast test-compiled compiled pure lint example docs bench bench-events bench-event-cpu bench-goals bench-rules bench-sandbox bench-triage triage-data sandbox clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sync demo

# The packages' bytecode, written as `pip install` writes it for an installed crm-sync: an editable
# install writes none, and where PYTHONDONTWRITEBYTECODE is set every CLI or daemon a test starts
# would compile each module it imports again (0.28 s a start on a 2-core Intel Xeon). Python
# still recompiles, in memory, a module whose source changed since.
PACKAGES := core rules connectors state sync sandbox
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q $(PACKAGES)

# Both run on every core (pytest-xdist), each worker taking the next test as it is free and the
# last tests from the others' queues (--dist worksteal: the suite's few minute-long tests no longer
# leave a core idle at the end), with one worker more than the cores: many tests wait on a real
# clock or on a process they started, and a worker waiting leaves its core idle (2-core Intel Xeon,
# the whole suite: 531.7 s with 2 workers, 488.5 s with 3). `make test PYTEST_ARGS=-n0` runs
# them in one process.
WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
XDIST := -n $(WORKERS) --dist worksteal
test: bytecode
	$(BIN)/python -m pytest -q $(XDIST) $(PYTEST_ARGS)

# Unit tests only, in-process (the in-process sandbox included): no e2e run of the CLI or daemon,
# no chaos trial, nothing `slow` (a process started, a real clock waited on).
test-fast: bytecode
	$(BIN)/python -m pytest -q $(XDIST) -m "not e2e and not chaos and not slow" $(PYTEST_ARGS)

# Optional: the rules and the planner compiled with mypyc (needs a C compiler and the Python
# headers): a cold or `--full` cycle at less CPU (README, "The compiled build"). `make
# pure` goes back to the sources; crm-sync and the tests refuse to run a build older than its sources.
compiled: $(STAMP)
	$(BIN)/python -m sync.compiled build

pure:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m sync.compiled clean

# The compiled build under the unit tests and the end-to-end runs of the CLI and the daemon (CI
# runs it after `make test`; the whole suite passes against it too: `make compiled test`), then
# back to the sources, whatever the tests said.
COMPILED_E2E := tests/test_e2e_cli.py tests/test_e2e_daemon.py tests/test_e2e_events.py tests/test_e2e_rules.py \
	tests/test_e2e_round_robin.py tests/test_e2e_plan.py tests/test_e2e_real_org.py tests/test_call_counts.py
test-compiled: compiled bytecode
	$(BIN)/python -m pytest -q $(XDIST) -m "not e2e and not chaos and not slow" $(PYTEST_ARGS) && \
	$(BIN)/python -m pytest -q $(XDIST) -m "not chaos and not slow" $(COMPILED_E2E) $(PYTEST_ARGS); \
	status=$$?; $(BIN)/python -m sync.compiled clean; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The example config is written from the settings' declarations (sync/example.py); a test checks it.
example: $(STAMP)
	$(BIN)/python -m sync.example > sync/config.example.toml.new && mv sync/config.example.toml.new sync/config.example.toml

# docs/rules.md is written from the rule definitions (sync/rulesdoc.py); a test checks it.
docs: $(STAMP)
	$(BIN)/python -m sync.rulesdoc > docs/rules.md.new && mv docs/rules.md.new docs/rules.md

# Requests, time and memory per scenario; the webhook path; then issue #17's goal table (today's tree and this one).
bench: $(STAMP)
	$(BIN)/python bench/scenarios.py $(BENCH_ARGS)
	$(BIN)/python bench/events.py
	$(BIN)/python bench/goals.py

# The webhook path alone (issue 17): latency and requests per event over 200 events each way.
bench-events: $(STAMP)
	$(BIN)/python bench/events.py

# An event's CPU as the book grows (issue 17): mini-cycles on a 2,000- and a 20,000-account book.
bench-event-cpu: $(STAMP)
	$(BIN)/python bench/event_cpu.py

bench-goals: $(STAMP)
	$(BIN)/python bench/goals.py $(GOALS_ARGS)

bench-rules: $(STAMP)
	$(BIN)/python bench/rule_set.py

bench-sandbox: $(STAMP)
	$(BIN)/python bench/sandbox_throughput.py

# Demo-form triage: every classifier on the labelled corpus (cross-validated and held out).
# `pip install -e '.[bench]'` first to include the scikit-learn baselines.
bench-triage: $(STAMP)
	$(BIN)/python bench/triage.py

# Copy the tuning corpus (tests/data/triage/corpus.jsonl) into the package the model trains on.
triage-data: $(STAMP)
	$(BIN)/python bench/triage.py --write-training-data

sandbox: $(STAMP)
	$(BIN)/python -m sync sandbox --generate 200

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info build .compiled.json
	find . -maxdepth 2 -name "*.so" -not -path "./.venv/*" -delete
