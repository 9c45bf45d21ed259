"""The last look before Vitally PUTs (sync/freshness.py) remembers the accounts changed since the
cycle's read, so that a write on a later page of the outbox is checked against what an earlier
look saw. A look that runs while PUTs are answered but not yet committed sees their echoes as
changes; once an account's writes are done, nothing later in the cycle writes it again, and the
look forgets it. Kept, those echoes grew with every account written: a fifth of a cold run's
accounts at 10,000; at 100,000 the cold applied run's peak RSS was 177 MiB, 143 MiB without them
(the cold dry run's is 141 MiB; bench/scenarios.py on an Intel Xeon, 2026-12-06)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import sync.apply
from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import example_against
from sync.cycle import run_cycle
from sync.freshness import LastLook

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


def test_a_cold_cycles_last_looks_forget_each_account_once_its_writes_are_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looks: list[LastLook] = []
    seen: set[str] = set()  # every account a look took for changed since the read

    class Recording(LastLook):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            looks.append(self)

        def accounts(self, groups: Any) -> None:
            super().accounts(groups)
            seen.update(self._changed)

    monkeypatch.setattr(sync.apply, "LastLook", Recording)
    # Commit the PUTs' successes only at the end of each outbox page: every look after the first
    # then runs while earlier PUTs of its page are answered and not committed.
    monkeypatch.setattr(sync.apply, "_COMMIT_EVERY", 10**6)
    monkeypatch.setattr(sync.apply, "_COMMIT_WITHIN", 10.0**6)
    with Sandbox(generate_book(300, seed=7, now=NOW), now=NOW) as sandbox:
        config = example_against(sandbox.url)
        state = StateDB.memory()
        report = run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW)

    written = {w.record for w in report.plan if w.system == "vitally" and w.op == "set_traits"}
    assert report.counts["vitally_puts"] == len(written) > 100  # more than two runs of 50 PUTs
    assert len(looks) == 1
    # The looks did take this cycle's own echoes for changes (that is what is remembered)...
    assert seen & written
    # ...and none of them is remembered once the account's PUT is done.
    assert not set(looks[0]._changed) & written
    assert state.pending_count() == 0
