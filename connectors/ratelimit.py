"""A client-side rate limiter that follows the server's `RateLimit-*` headers.

Vitally allows 1,000 requests a minute per key (sliding window) and reports the state of that
window on every response: `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds
until the window admits again). `RateLimiter` keeps the latest of those and holds a request back
while the budget they announce is used up, so parallel writers rarely see a 429. It only prevents;
a 429 that happens anyway still goes through the one retry policy (`connectors.http`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["RateLimiter"]


class RateLimiter:
    """Holds requests back while the server's announced budget is spent; shared by threads.

    Every request is bracketed by `acquire()` … `release()` (or `with limiter.slot():`), and every
    response's headers are fed to `observe()`. `acquire()` lets a request start when

        remaining - in_flight > 0

    where `remaining` is the last `RateLimit-Remaining` (a higher value arriving before the reset
    moment is a stale response and is ignored, together with its `RateLimit-Reset`: within a
    window the count only goes down, and a budget and its reset are only true together) and
    `in_flight` the requests started and not yet released (the server may not have counted them
    yet). Otherwise it waits:

    - until the reset moment (when `RateLimit-Reset` was observed, plus its seconds), spent
      through `sleep`; once it has passed the window has room for at least one request (in a
      sliding window the oldest request has left it), so one goes and its response tells the rest;
    - for an in-flight request to be released, when the reset moment has already passed;
    - not at all when nothing is known (no headers yet, no reset, nothing in flight): the server
      decides, and its 429 is retried as usual.

    No single `acquire()` sleeps more than `max_wait` seconds in total. `clock` (monotonic
    seconds) and `sleep` are inputs, so tests need no real waiting.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._changed = threading.Condition()
        self._in_flight = 0
        self._budget: int | None = None  # the remaining count we trust (see class docstring)
        self._reset_at: float | None = None
        self.limit: int | None = None
        """The latest `RateLimit-Limit`, as sent; None until seen."""
        self.remaining: int | None = None
        """The latest `RateLimit-Remaining`, as sent; None until seen."""
        self.reset: float | None = None
        """The latest `RateLimit-Reset` (seconds), as sent; None until seen."""

    @property
    def in_flight(self) -> int:
        """Requests acquired and not yet released."""
        with self._changed:
            return self._in_flight

    def observe(self, *, limit: int | None, remaining: int | None, reset: float | None) -> None:
        """Record the `RateLimit-*` headers of one response (None: the header was absent)."""
        with self._changed:
            now = self._clock()
            before_reset = self._reset_at is not None and now < self._reset_at
            if limit is not None:
                self.limit = limit
            if reset is not None:
                self.reset = reset
            if remaining is not None:
                self.remaining = remaining
            stale = remaining is not None and before_reset and self._budget is not None and remaining > self._budget
            # A response's remaining budget and its reset go together: a stale answer's reset is
            # ignored with its count. Keeping the reset of an answer whose count was ignored
            # stretched a 429's one-second wait to a minute (issue #13).
            if not stale:
                if remaining is not None:
                    self._budget = remaining
                if reset is not None:
                    self._reset_at = now + reset
            self._changed.notify_all()

    def acquire(self) -> None:
        """Block until one more request may start (see the class docstring), then count it in flight."""
        waited = 0.0
        while True:
            with self._changed:
                now = self._clock()
                budget = self._available(now)
                if budget is None or budget > 0 or waited >= self._max_wait:
                    self._in_flight += 1
                    return
                if self._reset_at is not None and now < self._reset_at:
                    pause = min(self._reset_at - now, self._max_wait - waited)
                elif self._in_flight > 0:
                    self._changed.wait()  # a release or a fresher response changes the budget
                    continue
                else:
                    self._in_flight += 1
                    return
            self._sleep(pause)
            waited += pause

    def release(self) -> None:
        """A request acquired earlier has finished (answered or failed)."""
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """`acquire()` on entry, `release()` on exit, whatever happens inside."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def _available(self, now: float) -> int | None:
        """Requests that may still start now; None = no limit known."""
        if self._budget is None:
            return None
        budget = self._budget
        if self._reset_at is not None and now >= self._reset_at:
            budget = max(budget, 1)
        return budget - self._in_flight

    def __repr__(self) -> str:
        return f"RateLimiter(limit={self.limit}, remaining={self.remaining}, in_flight={self.in_flight})"
