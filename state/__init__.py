"""Persistence: the SQLite state database (sqlite-utils) and the one-instance lock."""

from __future__ import annotations

from state.db import OutboxRow, PlanLog, PlannedWrite, StateDB, write_key
from state.lock import InstanceLockedError, StateLock

__all__ = ["InstanceLockedError", "OutboxRow", "PlanLog", "PlannedWrite", "StateDB", "StateLock", "write_key"]
