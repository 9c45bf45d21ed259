"""The daemon's main loop naps between turns until its nap ends or the receiver stores an event
(`_Events.wait`). Events that cannot be processed yet (a failed batch's retry pause, no cycle has
read the services) must not keep cutting the nap short: found by a review of the event path, the
loop spun at 100 % of a core (1.8 million turns a second) until the pause ended or, with the
services down from the start, until a cycle succeeded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from state import StateDB
from state.events import Event
from sync.config import example_against
from sync.daemon import _Events
from sync.event_settings import EventSettings
from sync.health import Health

SECRET = "vitally-webhook-secret-0123456789abcdef"


@pytest.fixture
def events(tmp_path: Path) -> Iterator[_Events]:
    config = example_against("http://127.0.0.1:1").with_state(tmp_path / "state.db")
    config = replace(config, events=EventSettings(vitally_secret=SECRET))
    state = StateDB.open(config.state_path)
    cycles = SimpleNamespace(health=Health(60, version="test"))
    made = _Events(config, state, cycles, lambda *a, **k: None, lambda: False)  # type: ignore[arg-type]
    try:
        yield made
    finally:
        made.close()
        state.close()


def _stored(events: _Events) -> None:
    """An event as the receiver stores it: in the inbox, then the loop woken."""
    assert events.inbox is not None
    events.inbox.put([Event("vitally:1", "vitally", "acc_1")], "2026-11-22T09:00:00.000Z")
    events.wake.set()


def test_an_event_waiting_for_the_retry_pause_does_not_cut_the_naps_short(events: _Events) -> None:
    with events.state.atomic():
        events.state.set_cursor("vitally.accounts", "2026-11-20T09:00:00.000Z")  # a cycle has read
    events._retry_at = time.monotonic() + 60  # a batch just failed: tried again in a minute
    _stored(events)

    events.process()

    assert not events.wake.is_set()  # the next nap lasts its length
    assert events.state.event_counts() == {"pending": 1}  # and the event still waits


def test_an_event_waiting_for_the_first_cycle_does_not_cut_the_naps_short(events: _Events) -> None:
    assert events.state.cursor("vitally.accounts") is None
    _stored(events)

    events.process()

    assert not events.wake.is_set()
    assert events.state.event_counts() == {"pending": 1}


def test_an_event_stored_after_the_wakeup_was_taken_wakes_the_loop_again(events: _Events) -> None:
    events._retry_at = time.monotonic() + 60
    events.process()
    _stored(events)  # arrives during the pause
    assert events.wake.is_set()  # the nap ends for it (and the next turn looks at it)
