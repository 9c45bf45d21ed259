"""The daemon's event receiver: Vitally Playbook webhooks and Salesforce Outbound Messages, on the
same listener as `/healthz` (`[daemon] health_host:health_port`), behind a reverse proxy in
production.

    POST /events/vitally/<secret>      a Playbook "Webhook" action: JSON, the account under `match.account`
    POST /events/vitally               the same, the secret in `Authorization: Bearer <secret>`
    POST /events/salesforce/<secret>   an Outbound Message on Lead or Opportunity: SOAP `notifications`; answered
                                       with `Ack`

Every request is authenticated before its body is read: the shared secret (`[events]
vitally_secret`, `salesforce_secret`, compared in constant time), and for Salesforce also the
message's `OrganizationId` against `[events] salesforce_org_id` (Outbound Messages carry no
signature: the secret can only be in the URL Salesforce is given). Anything else is answered 401
and logged (`event_rejected`: the source, the reason, the client's address; never the path, which
holds the secret). An endpoint whose secret is not configured does not exist (404).

An accepted request's events are stored in the event inbox beside the state file
(`state.events.EventInbox`: one row per record named, on disk before the call returns) and only
then acknowledged: 200 with `{"queued": n}` for Vitally, the SOAP `Ack` for Salesforce. The inbox
is a file of its own, so storing never waits for a cycle (which holds the state's write lock for
its whole plan). When the events cannot be stored within `[events] queue_wait_seconds` (the
inbox file refused the write or stayed locked that long: a failing disk) the answer is 503 and
nothing is acknowledged: Salesforce sends the message again later; a Vitally webhook is lost, and
the scheduled cycle routes the account. A repeated delivery is stored once (a Salesforce
notification by its Id, for good; a Vitally body while an identical one waits) and acknowledged
again. The daemon's main thread processes what is stored (`sync.minicycle`), woken by `wake`.

This runs in the HTTP server's threads: it touches the inbox, the log and the metrics, never the
main thread's state connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter

from state.events import Event, EventInbox, EventNotQueuedError, EventSource
from sync import outbound
from sync.event_settings import EventSettings
from sync.safe import printable
from sync.throttle import Throttled
from sync.vocabulary import Log, iso

__all__ = ["MAX_BODY_BYTES", "PREFIX", "EventMetrics", "EventSettings", "Receiver"]

PREFIX = "/events/"
MAX_BODY_BYTES = 1 << 20  # 100 notifications of a few kB each fit many times over
_REJECTIONS_LOGGED = 20  # `event_rejected` lines per minute at most; the rest are counted
_OUTCOMES = ("queued", "duplicate", "ignored", "no_data", "rejected", "malformed", "not_queued")


class EventMetrics:
    """The receiver's and the mini-cycles' metrics, on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "crm_sync_event_requests_total",
            "Webhook requests by source and outcome (queued, duplicate: a delivery already stored, ignored: "
            "neither a Lead nor an Opportunity, no_data: a notification naming no record, rejected: 401, "
            "malformed: 400, 411 or 413, not_queued: 503).",
            ["source", "outcome"],
            registry=registry,
        )
        self.processed = Counter(
            "crm_sync_events_processed_total",
            "Records processed by mini-cycles, by source and outcome (done, failed: given up after max_attempts).",
            ["source", "outcome"],
            registry=registry,
        )
        for source in ("vitally", "salesforce"):
            for outcome in _OUTCOMES:
                self.requests.labels(source, outcome)
            for done in ("done", "failed"):
                self.processed.labels(source, done)


@dataclass(frozen=True)
class _Answer:
    status: str
    content_type: str
    body: bytes

    @classmethod
    def json(cls, status: str, value: Mapping[str, Any]) -> _Answer:
        return cls(status, "application/json", json.dumps(value).encode())


_NOT_FOUND = _Answer.json("404 Not Found", {"error": "not found"})
_UNAUTHORIZED = _Answer.json("401 Unauthorized", {"error": "unauthorized"})
_NOT_QUEUED = _Answer.json("503 Service Unavailable", {"error": "not stored; send it again later"})


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class Receiver:
    """The WSGI application for `/events/…` (see the module docstring). `wake()` is called after
    events were stored; `clock` stamps when they arrived."""

    def __init__(
        self,
        settings: EventSettings,
        inbox: EventInbox,
        log: Log,
        *,
        wake: Callable[[], None],
        metrics: EventMetrics | None = None,
        clock: Callable[[], datetime] = _wall_clock,
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.log = log
        self.wake = wake
        self.metrics = metrics
        self.clock = clock
        self._rejected = Throttled(log, "event_rejected", _REJECTIONS_LOGGED)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            answer = self._answer(environ)
        except Exception as error:  # a thread of the HTTP server: an error here must not print a traceback
            self.log("event_receiver_error", {"error": type(error).__name__})
            answer = _Answer.json("500 Internal Server Error", {"error": "internal error"})
        headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body)))]
        start_response(answer.status, [*headers, ("Cache-Control", "no-store")])
        return [answer.body]

    def _answer(self, environ: WSGIEnvironment) -> _Answer:
        source, path_secret = _route(str(environ.get("PATH_INFO", "")))
        expected = self._secret(source)
        if source is None or expected is None:
            return _NOT_FOUND
        if environ.get("REQUEST_METHOD") != "POST":
            return _Answer.json("405 Method Not Allowed", {"error": "use POST"})
        offered = path_secret if path_secret is not None else _bearer(environ) if source == "vitally" else None
        if offered is None or not hmac.compare_digest(offered.encode(), expected.encode()):
            return self._reject(environ, source, "no secret" if offered is None else "wrong secret")
        if environ.get("HTTP_TRANSFER_ENCODING") and not environ.get("CONTENT_LENGTH"):
            # A chunked body: the WSGI server does not decode it, so it cannot be read here. Say
            # so (the sender, or the reverse proxy in front, must send a Content-Length) instead
            # of judging an empty body "not a webhook".
            self._count(source, "malformed")
            problem = "a body without Content-Length (Transfer-Encoding) cannot be read: send Content-Length"
            self.log("event_malformed", {"source": source, "problem": problem})
            return _Answer.json("411 Length Required", {"error": problem})
        body = _body(environ)
        if body is None:
            # Logged: a sender retries the same body (Salesforce for 24 hours), so it never gets in.
            self._count(source, "malformed")
            problem = f"a body over {MAX_BODY_BYTES} bytes ({environ.get('CONTENT_LENGTH')} announced) is not read"
            self.log("event_malformed", {"source": source, "problem": problem})
            return _Answer.json("413 Content Too Large", {"error": f"at most {MAX_BODY_BYTES} bytes"})
        if source == "vitally":
            return self._vitally(body)
        return self._salesforce(environ, body)

    def _secret(self, source: EventSource | None) -> str | None:
        if source == "vitally":
            return self.settings.vitally_secret
        if source == "salesforce":
            return self.settings.salesforce_secret
        return None

    # -- the two sources ---------------------------------------------------------------------------

    def _vitally(self, body: bytes) -> _Answer:
        account_id = _vitally_account(body)
        if account_id is None:
            return self._malformed("vitally", "expected JSON with match.account.id")
        delivery = "vitally:" + hashlib.sha256(body).hexdigest()
        added = self._queue("vitally", [Event(delivery, "vitally", account_id)])
        return _NOT_QUEUED if added is None else _Answer.json("200 OK", {"queued": added})

    def _salesforce(self, environ: WSGIEnvironment, body: bytes) -> _Answer:
        try:
            message = outbound.parse(body)
        except outbound.SoapError as error:
            return self._malformed("salesforce", str(error))
        org = self.settings.salesforce_org_id or ""
        if not outbound.same_org(message.organization_id, org):
            return self._reject(environ, "salesforce", "organization id")
        for problem in message.unreadable:
            # Reported and acknowledged with the others: a retry would carry the same nothing, and
            # the record, if any, is read by the next scheduled cycle (a deletion, most often).
            self._count("salesforce", "no_data")
            self.log("event_no_data", {"source": "salesforce", "problem": printable(problem[:200])})
        # A Lead routes itself; an Opportunity opened, moved or closed changes its accounts' plans
        # (`sync.minicycle` tells them apart by the Id's key prefix, checked by `outbound.parse`).
        wanted = [n for n in message.notifications if n.sobject in outbound.EVENT_OBJECTS]
        if len(wanted) < len(message.notifications):
            others = sorted({n.sobject for n in message.notifications} - set(outbound.EVENT_OBJECTS))
            self.log("event_ignored", {"source": "salesforce", "objects": [printable(o[:40]) for o in others]})
            self._count("salesforce", "ignored", len(message.notifications) - len(wanted))
        events = [Event(f"salesforce:{n.id}", "salesforce", n.record_id) for n in wanted]
        if self._queue("salesforce", events) is None:
            return _NOT_QUEUED
        return _Answer("200 OK", "text/xml; charset=utf-8", outbound.ACK)

    # -- storing -----------------------------------------------------------------------------------

    def _queue(self, source: EventSource, events: list[Event]) -> int | None:
        """Store the events (before anything is acknowledged); how many were new, or None when
        they could not be stored."""
        try:
            added = self.inbox.put(events, iso(self.clock())) if events else 0
        except EventNotQueuedError as error:
            self._count(source, "not_queued", max(len(events), 1))
            self.log("event_not_queued", {"source": source, "records": len(events), "error": str(error)})
            return None
        self._count(source, "queued", added)
        self._count(source, "duplicate", len(events) - added)
        self.log("event_received", {"source": source, "records": len(events), "new": added})
        if added:
            self.wake()
        return added

    def _reject(self, environ: WSGIEnvironment, source: EventSource, reason: str) -> _Answer:
        self._count(source, "rejected")
        self._rejected({"source": source, "reason": reason, **_client(environ)})
        return _UNAUTHORIZED

    def _malformed(self, source: EventSource, problem: str) -> _Answer:
        self._count(source, "malformed")
        self.log("event_malformed", {"source": source, "problem": printable(problem[:200])})
        return _Answer.json("400 Bad Request", {"error": problem[:200]})

    def _count(self, source: EventSource, outcome: str, amount: int = 1) -> None:
        if self.metrics is not None and amount > 0:
            self.metrics.requests.labels(source, outcome).inc(amount)


def _route(path: str) -> tuple[EventSource | None, str | None]:
    """The source a path names and the secret in it, if any: `/events/<source>[/<secret>]`."""
    if not path.startswith(PREFIX):
        return None, None
    name, _, rest = path[len(PREFIX) :].partition("/")
    source: EventSource | None = "vitally" if name == "vitally" else "salesforce" if name == "salesforce" else None
    if source is None or "/" in rest:
        return None, None
    return source, rest or None


def _bearer(environ: WSGIEnvironment) -> str | None:
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _body(environ: WSGIEnvironment) -> bytes | None:
    """The request body, or None when it is larger than `MAX_BODY_BYTES` (never read then)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        return None
    stream = environ["wsgi.input"]
    return bytes(stream.read(length)) if length > 0 else b""


def _vitally_account(body: bytes) -> str | None:
    """The account id of a Playbook webhook's body (`match.account.id`), None when absent."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    match = payload.get("match") if isinstance(payload, dict) else None
    account = match.get("account") if isinstance(match, dict) else None
    account_id = account.get("id") if isinstance(account, dict) else None
    if not isinstance(account_id, str) or not account_id.strip() or len(account_id) > 200:
        return None
    return account_id


def _client(environ: WSGIEnvironment) -> dict[str, str]:
    """Who sent it: the peer's address, and the first `X-Forwarded-For` hop a proxy added."""
    found = {"remote": printable(str(environ.get("REMOTE_ADDR", ""))[:64])}
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")[0].strip()
    if forwarded:
        found["forwarded_for"] = printable(forwarded[:64])
    return found
