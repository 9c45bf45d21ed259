"""The event inbox: webhook events stored on disk before they are acknowledged.

The inbox is an SQLite file of its own beside the state file (`inbox_path`: `<state>.events`,
next to the state's real path; WAL, `synchronous=FULL`, owner-only), not a table of the state:
SQLite lets one connection write to a file at a time, and a cycle holds the state's write lock
for its whole read-and-plan transaction (tens of seconds on a large book), so an insert into the
state would wait for it, and a webhook that waits too long is answered 503 (a Vitally Playbook
webhook is never sent again). The inbox's only writers are the receiver's inserts and the main
thread's short updates (`StateDB.pending_events`, `finish_events`, …), each a transaction of a
few milliseconds: storing an event never waits on a cycle.

The receiver (`sync.receiver`) runs in the HTTP server's threads, the cycles in the main thread,
and an SQLite connection belongs to one thread: the receiver writes through an `EventInbox`, a
connection of its own, and the main thread reads and finishes the events through `StateDB`'s
own connection to the inbox. The inbox belongs to its state file: created and migrated when the
state is opened (`StateDB.open`), covered by the state's instance lock (`state.lock`: only the
process holding it writes either file), and backed up, moved or deleted together with it.

The two files are not committed together, and need not be: an event is finished (`done`) only
after the mini-cycle that processed it applied its writes, so a crash anywhere before leaves it
pending, and processing it again is harmless (the record is read fresh; a planned write or a
drawn owner is keyed, so it is found again rather than repeated).

Each delivery is stored once (`delivery` is unique: a Salesforce notification Id, kept until the
event is purged, as Salesforce asks listeners to; a digest of a Vitally webhook's body, a repeat
only while the first waits); events name a record and carry nothing else of it: the mini-cycle reads
the record fresh, so their order does not matter and the record's latest state is what counts.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.errors import SyncError

__all__ = [
    "EVENT_SOURCES",
    "INBOX_SUFFIX",
    "Event",
    "EventInbox",
    "EventNotQueuedError",
    "EventSource",
    "QueuedEvents",
    "connect_inbox",
    "inbox_path",
]

EventSource = Literal["vitally", "salesforce"]
EVENT_SOURCES: tuple[EventSource, ...] = ("vitally", "salesforce")
INBOX_SUFFIX = ".events"
_INBOX_VERSION = 1  # `PRAGMA user_version` of an inbox file whose schema is complete

_SCHEMA = (
    # `delivery` identifies one delivery, so a repeat is stored once.
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, delivery TEXT NOT NULL UNIQUE, "
    "source TEXT NOT NULL, record TEXT NOT NULL, received_at TEXT NOT NULL, "
    "status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, run_id INTEGER, "
    "processed_at TEXT, note TEXT)",
    "CREATE INDEX IF NOT EXISTS events_status ON events (status, id)",
)


def inbox_path(state_path: Path) -> Path:
    """The inbox file of a state file: `<state>.events` beside the state's real path (a symlinked
    `--state` finds the same inbox, as it finds the same lock)."""
    real = Path(os.path.realpath(state_path))
    return real.with_name(real.name + INBOX_SUFFIX)


def connect_inbox(path: Path | None, *, timeout: float) -> sqlite3.Connection:
    """A connection to the inbox file at `path` (created owner-only, its schema made when
    missing; in memory when None), in autocommit mode (each caller opens its own short
    transactions), WAL with `synchronous=FULL`: a commit is on disk when it returns."""
    if path is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created here only when missing: closing a descriptor of a file drops every POSIX lock
        # this process holds on it, SQLite's included, and with them gone another process's
        # connection would take itself for the last one and delete the WAL under ours.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))  # -wal/-shm inherit the mode
        os.chmod(path, 0o600)
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        if path is not None:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < _INBOX_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {_INBOX_VERSION}")
            conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


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
    """The receiver's connection to the inbox of the state file at `state_path` (thread-safe:
    one insert at a time).

    `put` returns only once the events are on disk (WAL, `synchronous=FULL`), so an event is
    acknowledged only after it is durable. It waits only for the inbox's other writers (the
    main thread's updates of a few milliseconds), never for a cycle."""

    def __init__(self, state_path: Path, *, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._conn = connect_inbox(inbox_path(state_path), timeout=wait_seconds)

    def put(self, events: Sequence[Event], received_at: str) -> int:
        """Store `events` in one transaction; returns how many were new (a delivery seen before
        is not stored again). Raises `EventNotQueuedError` when they could not be stored within
        `wait_seconds` (the inbox file refused the write, or another writer held it that long)."""
        started = time.monotonic()
        if not self._lock.acquire(timeout=self.wait_seconds):
            raise EventNotQueuedError("the event inbox is busy")
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {max(1, int(1000 * self._left(started)))}")
            return self._insert(events, received_at)
        except sqlite3.Error as error:
            raise EventNotQueuedError(f"the event inbox did not take the event: {error}") from None
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
