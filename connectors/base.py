"""What every connector offers: the `Connector` protocol, per-record `WriteResult`s and a request counter.

A connector reads the records changed since a cursor, writes a batch and returns one result per
record, and decides once how an I/O failure maps onto the `core.errors` tree. Adapters return
raw service JSON (dicts); parsing into typed records happens elsewhere.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from core.errors import SyncError

__all__ = ["Connector", "RequestCounter", "WriteResult", "parse_iso_utc"]


@dataclass(frozen=True)
class WriteResult:
    """The outcome of writing one record.

    `key` is what the caller used to name the record (external id for upserts, record id for
    updates). On success `id` is the service's id and `created` tells an insert from an update
    when the service says so. On failure `code` is the service's error code, `fields` the fields
    it blamed, and `transient` says whether sending the same record again later may succeed
    (e.g. `UNABLE_TO_LOCK_ROW`) or not (e.g. `DUPLICATES_DETECTED`).
    """

    key: str
    ok: bool
    id: str | None = None
    created: bool | None = None
    code: str | None = None
    message: str | None = None
    fields: tuple[str, ...] = ()
    transient: bool = False


@runtime_checkable
class Connector(Protocol):
    """One external system as the sync engine sees it."""

    def read_changed(self, since: str | None) -> Iterator[dict[str, Any]]:
        """Yield raw records changed at or after `since` (closed bound; None = everything).

        Records on the boundary may be yielded again on the next read: callers drop them by key.
        """
        ...

    def write_batch(self, records: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        """Write `records`; return exactly one result per record, in input order.

        Per-record refusals are results; failures of the whole request raise a `SyncError`.
        """
        ...

    def classify(self, error: BaseException) -> SyncError:
        """Map an I/O failure of this service onto the error tree (an instance carrying data)."""
        ...


class RequestCounter:
    """Counts HTTP requests (every attempt, retries included) by `(method, path template)`.

    Path templates name the endpoint, not the record: `("GET", "/resources/accounts/:id")`.
    Thread-safe, because a bounded parallel writer may share one client.
    """

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, method: str, template: str) -> None:
        """Record one request."""
        with self._lock:
            self._counts[(method.upper(), template)] += 1

    def __getitem__(self, key: tuple[str, str]) -> int:
        with self._lock:
            return self._counts[(key[0].upper(), key[1])]

    @property
    def total(self) -> int:
        """All requests counted so far."""
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy of the counts, safe to keep while requests go on."""
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"RequestCounter({self.snapshot()!r})"


def parse_iso_utc(value: str) -> datetime:
    """Parse an ISO-8601 timestamp as both services write it into an aware UTC datetime.

    Accepts `Z`, `+00:00` and Salesforce's `+0000`; a timestamp without an offset is taken as UTC.
    Raises `ValueError` for anything else: callers turn that into the error that fits their layer.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
