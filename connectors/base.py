"""What the connectors offer: the ports a sync cycle uses (`VitallyPort`, `SalesforcePort`),
per-record `WriteResult`s and a request counter.

A port reads the records changed since a cursor and writes a batch with one result per record;
each adapter decides once how an I/O failure maps onto the `core.errors` tree. Adapters return
raw service JSON (dicts); parsing into typed records happens in `core.records`. The cycle
(`sync.cycle`) is typed against these protocols only, so a test can hand it any object that
satisfies them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from core.decoding import Unreadable
from core.errors import SyncError

__all__ = [
    "AnnouncePort",
    "RequestCounter",
    "SalesforcePort",
    "TicketPort",
    "VitallyPort",
    "WriteResult",
    "parse_iso_utc",
]


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
class VitallyPort(Protocol):
    """What a sync cycle needs from Vitally (`connectors.vitally.VitallyClient` is the adapter)."""

    def iter_accounts_since(self, watermark: str | None) -> Iterator[dict[str, Any] | Unreadable]:
        """Raw accounts newest-first, down to `watermark` (closed bound; None = every account).

        Records on the boundary may be yielded again on the next read: callers drop them by key.
        An account that could not be decoded within the limits comes as an `Unreadable`, in its
        place.
        """
        ...

    def put_traits_many(
        self, items: Iterable[tuple[str, Mapping[str, Any]]], *, workers: int = ...
    ) -> Iterator[tuple[str, dict[str, Any] | SyncError]]:
        """PUT each `(account id, traits)`, up to `workers` in flight, reading `items` lazily; yield
        `(account id, the account Vitally answered)` or `(account id, the error)` as each ends. A
        failed write is yielded, never raised; after one that stops the whole service nothing new
        starts."""
        ...

    def upsert_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Create the task, or update the one with the same `externalId` (created once)."""
        ...

    def iter_account_tasks(self, account_id: str) -> Iterator[dict[str, Any] | Unreadable]:
        """The raw tasks of one account, page by page."""
        ...

    def iter_account_ids(self) -> Iterator[str | None]:
        """The id of every account Vitally has, active or churned (None for one that cannot be
        read): what a comparison with the mirror finds deleted accounts by."""
        ...


@runtime_checkable
class SalesforcePort(Protocol):
    """What a sync cycle needs from Salesforce (`connectors.salesforce.SalesforceClient` is the adapter)."""

    last_query_time: datetime | None
    """When the latest query ran, by Salesforce's clock (its Date header); None before any."""

    def iter_changed(
        self, sobject: str, fields: Iterable[str], since: str | None, *, lookback_seconds: int = ...
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """Raw records of `sobject` whose SystemModstamp is at or after `since` minus the look-back
        (an `Unreadable` in place of one that could not be decoded within the limits)."""
        ...

    def read_by_ids(
        self, sobject: str, fields: Iterable[str], ids: Sequence[str]
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """The current `fields` (and `Id`) of these records of `sobject`, in one query per 200 ids;
        a record that no longer exists is simply absent."""
        ...

    def read_where(
        self, sobject: str, fields: Iterable[str], field: str, values: Sequence[str]
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """The current `fields` (and `Id`) of the records of `sobject` whose `field` holds one of
        `values` (an external id: `Sync_Key__c`), in one query per 200 values."""
        ...

    def iter_ids(self, sobject: str) -> Iterator[str | None]:
        """The Id of every record of `sobject` that exists (not deleted: the recycle bin left out);
        None in place of a record that could not be read (the list is then incomplete)."""
        ...

    def update(self, sobject: str, records: Sequence[Mapping[str, Any]], *, set_owner: bool) -> list[WriteResult]:
        """Update records by Id in collections; exactly one result per record, in input order.
        Per-record refusals are results; a failure of the whole request raises a `SyncError`."""
        ...

    def upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]], *, set_owner: bool
    ) -> list[WriteResult]:
        """Upsert records on an external id in collections; one result per record, in input order."""
        ...


@runtime_checkable
class AnnouncePort(Protocol):
    """Where new leads are announced (`connectors.slack.SlackClient` is the adapter)."""

    def post(self, text: str, lead_id: str, key: str) -> str:
        """Post one announcement identified by `key`; returns the service's id for it ("" if none)."""
        ...

    def posted_since(self, oldest: float) -> set[str]:
        """The leads announced since `oldest` (Unix seconds), by id."""
        ...


@runtime_checkable
class TicketPort(Protocol):
    """Where support requests become tickets (`connectors.zendesk.ZendeskClient` is the adapter)."""

    def find(self, external_id: str) -> dict[str, Any] | None:
        """The ticket carrying `external_id`, or None when there is none."""
        ...

    def create(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        """Create the ticket once (idempotent on its `external_id`); returns it."""
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
