# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint example docs bench bench-events bench-goals bench-rules bench-sandbox bench-triage triage-data sandbox clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sync demo

# Both run on every core (pytest-xdist, -n auto); `make test PYTEST_ARGS=-n0` runs them in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto $(PYTEST_ARGS)

# Unit tests only, in-process (the in-process sandbox included), in under a minute: no e2e run of
# the CLI or daemon, no chaos trial, nothing `slow` (a process started, a real clock waited on).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m "not e2e and not chaos and not slow" $(PYTEST_ARGS)

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
