"""Log lines of one event, at most so many a minute (the listener's and the receiver's: what a
client sends, an attacker's flood included, must not flood the daemon's log)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Throttled"]


class Throttled:
    """One event's log lines, at most `per_minute` of them a minute; the next line logged says how
    many were left out (`suppressed`). Safe to call from several threads."""

    def __init__(self, log: Callable[[str, Mapping[str, Any]], None], event: str, per_minute: int) -> None:
        self._log = log
        self._event = event
        self._per_minute = per_minute
        self._lock = threading.Lock()
        self._window: float | None = None
        self._logged = 0
        self._suppressed = 0

    def __call__(self, data: Mapping[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            if self._window is None or now - self._window >= 60:
                self._window, self._logged = now, 0
            if self._logged >= self._per_minute:
                self._suppressed += 1
                return
            self._logged += 1
            suppressed, self._suppressed = self._suppressed, 0
        self._log(self._event, {**data, "suppressed": suppressed} if suppressed else data)
