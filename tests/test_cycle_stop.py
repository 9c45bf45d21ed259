"""Asked to stop while reading, a cycle plans and commits nothing, so nothing is lost."""

from __future__ import annotations

from datetime import UTC, datetime

from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import example_against
from sync.cycle import run_cycle

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


def test_cycle_stop_while_reading_commits_nothing_and_the_next_cycle_reads_it_all() -> None:
    with Sandbox(generate_book(150, seed=2, now=NOW), now=NOW) as sandbox:
        config = example_against(sandbox.url)
        state = StateDB.memory()
        reads = {"n": 0}

        def stop_after_50() -> bool:
            reads["n"] += 1
            return reads["n"] > 50

        stopped = run_cycle(
            config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, should_stop=stop_after_50
        )
        assert list(stopped.plan) == []
        assert state.cursor("vitally.accounts") is None
        assert state.account_versions() == {}
        assert state.outbox("pending") == []
        assert state.runs(1)[0]["status"] == "stopped"
        assert [c for c in sandbox.calls() if c["method"] != "GET"] == []

        full = run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW)
        assert full.counts["accounts_read"] == 150
        assert full.plan
