"""The event inbox: webhook events stored in the state file before they are acknowledged.

The daemon's receiver (`sync.receiver`) runs in the HTTP server's threads, the cycles in the main
thread, and an SQLite connection belongs to one thread: the receiver writes through an
`EventInbox`, a connection of its own to the same file, and the main thread reads and finishes
the events through `StateDB` (`pending_events`, `finish_events`). SQLite lets one connection
write at a time: an insert waits (up to `wait_seconds`) while a cycle's transaction holds the
write lock, and the main connection's transactions take the lock as they begin
(`StateDB.atomic`), so neither side ever fails on the other's commit.

Each delivery is stored once (`delivery` is unique: a Salesforce notification Id, kept until the
event is purged, as Salesforce asks listeners to; a digest of a Vitally webhook's body, a repeat
only while the first waits); events name a record and carry nothing else of it: the mini-cycle reads
the record fresh, so their order does not matter and the record's latest state is what counts.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.errors import SyncError

__all__ = ["EVENT_SOURCES", "Event", "EventInbox", "EventNotQueuedError", "EventSource", "QueuedEvents"]

EventSource = Literal["vitally", "salesforce"]
EVENT_SOURCES: tuple[EventSource, ...] = ("vitally", "salesforce")


class EventNotQueuedError(SyncError):
    """The inbox could not store an event in time (the state's write lock stayed busy, or the
    file refused the write): the sender must not be told it was received."""


@dataclass(frozen=True)
class Event:
    """One event as received: what identifies its delivery, where it comes from, which record."""

    delivery: str
    source: EventSource
    record: str


@dataclass(frozen=True)
class QueuedEvents:
    """The pending events of one record: the newest event's id (events up to it are finished
    together), when the first of them arrived, how many there are and how often processing them
    was tried."""

    source: EventSource
    record: str
    last_id: int
    first_received: str
    count: int
    attempts: int


class EventInbox:
    """The receiver's connection to the state file (thread-safe: one insert at a time).

    `put` returns only once the events are on disk (WAL, `synchronous=FULL`), so an event is
    acknowledged only after it is durable. It never runs migrations: the daemon opened the state
    (`StateDB.open`) before the receiver starts."""

    def __init__(self, path: Path, *, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), timeout=wait_seconds, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA synchronous=FULL")

    def put(self, events: Sequence[Event], received_at: str) -> int:
        """Store `events` in one transaction; returns how many were new (a delivery seen before
        is not stored again). Raises `EventNotQueuedError` when they could not be stored within
        `wait_seconds`."""
        started = time.monotonic()
        if not self._lock.acquire(timeout=self.wait_seconds):
            raise EventNotQueuedError("the event inbox is busy")
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {max(1, int(1000 * self._left(started)))}")
            return self._insert(events, received_at)
        except sqlite3.Error as error:
            raise EventNotQueuedError(f"the state file did not take the event: {error}") from None
        finally:
            self._lock.release()

    def _left(self, started: float) -> float:
        return self.wait_seconds - (time.monotonic() - started)

    def _insert(self, events: Sequence[Event], received_at: str) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # A Vitally webhook has no delivery id: the same body again is a repeat only while the
            # first one waits; once processed, it is news (a segment left and joined again).
            conn.executemany(
                "DELETE FROM events WHERE delivery = ? AND source = 'vitally' AND status != 'pending'",
                [(e.delivery,) for e in events if e.source == "vitally"],
            )
            added = conn.executemany(
                "INSERT OR IGNORE INTO events (delivery, source, record, received_at) VALUES (?, ?, ?, ?)",
                [(e.delivery, e.source, e.record, received_at) for e in events],
            ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return added

    def close(self) -> None:
        with self._lock:
            self._conn.close()
