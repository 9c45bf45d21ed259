"""Persistence: the SQLite state database (sqlite-utils) and the one-instance lock."""

from __future__ import annotations

from state.db import LastWritten, PlanLog, StateDB, StateUnusableError
from state.lock import InstanceLockedError, StateLock
from state.writes import OutboxRow, Owner, OwnerChoice, PlannedWrite, write_key

__all__ = [
    "InstanceLockedError",
    "LastWritten",
    "OutboxRow",
    "Owner",
    "OwnerChoice",
    "PlanLog",
    "PlannedWrite",
    "StateDB",
    "StateLock",
    "StateUnusableError",
    "write_key",
]
