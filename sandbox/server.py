"""The sandbox server: one threaded HTTP server on loopback speaking Vitally and Salesforce, and
Slack (`sandbox/slack.py`: `/api/chat.postMessage`, `/api/conversations.history`, an incoming
webhook at `/services/T0SANDBOX/B0SALESLEADS/<token>`) and Zendesk (`sandbox/zendesk.py`:
`/api/v2/tickets`) for crm-sync's announcements and tickets; `state()` holds their messages and
tickets.

`Sandbox` owns the HTTP side (keep-alive, TCP_NODELAY, one thread per connection),
the single lock around the two services' state, and everything tests and demos
steer it with: a call log and counters, latency, fault injection, per-record
errors, session expiry, the clock, a state dump and simulated activity. Each
control is both a Python method and a JSON endpoint under `/_sandbox/` (no auth,
never logged):

    GET  /_sandbox/calls?since=N     {"calls": [{seq, system, method, path, template, status, at, fault?,
                                                 soql? (a Salesforce query's text), records? (an
                                                 sObject Collections write's external ids or Ids)}],
                                      "next": N'}
    GET  /_sandbox/counters          {"vitally": {"GET /resources/accounts": n}, "salesforce": {...}}
    POST /_sandbox/reset             clear call log and counters
    GET|POST /_sandbox/config        read / change SandboxConfig fields ({"latency_ms": 5, ...}, {"real_org":
                                     true}, {"sf_schema": {...}}); the answer's `effective` resolves
                                     the switches that follow `real_org`
    GET|POST|DELETE /_sandbox/faults {"method","path_prefix","kind","status","count" | "share"+"random_seed",
                                      "reset_seconds","body_contains"?: text the request body must
                                      hold (a gateway or WAF refusing one payload)}
    GET|POST|DELETE /_sandbox/record_errors  {"object","code","count","match"?,"message"?}
    POST /_sandbox/expire_sessions   every Salesforce token seen or issued so far gets 401
    POST /_sandbox/api_usage         {"used": n}: set the Salesforce daily request counter
    GET|POST /_sandbox/clock         {"now": iso} | {"advance_seconds": s} | {"real": true}
    GET  /_sandbox/state             the whole state, in the seed format
    POST /_sandbox/simulate          {"steps": 1, "random_seed": S}: MRR changes, signups, inbound leads
    POST /_sandbox/recycle_bin       {"object": "Lead"}: a person empties Salesforce's Recycle Bin of those
                                     records (deleted ones purged: QueryAll no longer returns them)
    POST /_sandbox/merge             {"object": "Lead", "master": id, "merged": [id, id?], "fields"?: {...}}: a
                                     person merges duplicates (merged ones deleted, MasterRecordId set)
    POST /_sandbox/undelete          {"object": "Account", "ids": [id, ...]}: a person restores records from the
                                     Recycle Bin (a merged one without its children: they stay on the master)
    POST /_sandbox/convert           {"lead": id, "account"?: id, "opportunity"?: true, "mapped"?: {lead field:
                                     Account field}}: a person converts a lead (Account, Contact, Opportunity)
    POST /_sandbox/load              a seed ({"vitally": {...}, "salesforce": {...}, "config"?: {...}}):
                                     settings applied, then records added or replaced by id, as
                                     `load()` does

Fault kinds: `status` answers with the status and the service's JSON error body (429 with
`RateLimit-Reset`), `empty` with the status and no body at all (Salesforce's 406), `html`
with the status and an HTML page (420: Salesforce Edge's "We are setting things up" page;
any other status, 200 included: a maintenance page), `timeout` waits `fault_timeout_s`
then closes without answering, `reset` closes the socket at once with a TCP reset,
`drop_response` applies the request and then closes without answering (the write took
effect but the client never hears so).

    GET|POST /_sandbox/events        {"settings", "deliveries", "pending"} | FeedSettings fields
                                     ({"vitally_url": ..., "salesforce_url": ..., "duplicate_share": 0.2}):
                                     the webhooks the services send (`sandbox.events`), off by default
    GET|POST /_sandbox/playbooks     pending delayed Playbook runs | {"run": "due" | "all"}: run them
    POST /_sandbox/segments          {"account", "segment", "present": true|false}: a person adds or
                                     removes a segment in the Vitally app
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from sandbox import generator
from sandbox.events import EventFeed, FeedSettings
from sandbox.salesforce import SalesforceService
from sandbox.slack import SlackService
from sandbox.store import (
    Clock,
    ControlError,
    Reply,
    Request,
    SandboxConfig,
    parse_timestamp,
    vitally_timestamp,
)
from sandbox.vitally import VitallyService, rate_limit_value
from sandbox.zendesk import ZendeskService

__all__ = ["ControlError", "FaultKind", "Sandbox", "SandboxConfig", "serve"]

_log = logging.getLogger(__name__)

_System = Literal["vitally", "salesforce", "slack", "zendesk"]
_SYSTEMS: tuple[_System, ...] = ("vitally", "salesforce", "slack", "zendesk")
FaultKind = Literal["status", "empty", "html", "timeout", "reset", "drop_response"]
"""What an injected fault does (`Sandbox.add_fault`)."""
_FAULT_KINDS: tuple[FaultKind, ...] = ("status", "empty", "html", "timeout", "reset", "drop_response")
_REPLYING_KINDS = ("status", "empty", "html")
# Salesforce's Edge answers 420 with this page while an org is being set up: the sentence is
# quoted by Airbyte's source-salesforce (AB-sf-retry in tests/fixtures/real/SOURCES.md); the
# markup around it is ours.
_EDGE_PAGE = (
    '<!DOCTYPE html>\n<html>\n<head><meta http-equiv="refresh" content="30"><title>Salesforce</title></head>\n'
    "<body>\n<p>We are setting things up. This process can take a few minutes. This page will auto-refresh when "
    'ready. If it takes too long, please contact support or visit our <a href="https://status.salesforce.com">'
    "status page</a> for more information.</p>\n</body>\n</html>\n"
)
# A maintenance or proxy page: what a load balancer answers when the service behind it is down
# (our wording; no source records one verbatim).
_MAINTENANCE_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>Service Unavailable</title></head>\n<body>\n"
    "<h1>Down for maintenance</h1>\n<p>We are performing scheduled maintenance and will be back shortly.</p>\n"
    "</body>\n</html>\n"
)
_Action = Literal["reply", "timeout", "reset", "drop"]
_CALL_LOG_MAX = 200_000
# How often the accept loop notices stop(): short, because every test fixture stops a sandbox.
_POLL_S = 0.02
_SF_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "INVALID_SESSION_ID",
    403: "REQUEST_LIMIT_EXCEEDED",
    404: "NOT_FOUND",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "UNKNOWN_EXCEPTION",
    502: "SERVER_UNAVAILABLE",
    503: "SERVER_UNAVAILABLE",
    504: "SERVER_UNAVAILABLE",
}


def _collection_keys(request: Request) -> list[str]:
    """The records of an sObject Collections write, for the call log: each one's external id value
    (an upsert's `…/{sobject}/{field}`) or its Id (an update); an unreadable body logs none."""
    parts = request.path.rstrip("/").split("/")
    field = parts[-1] if len(parts) >= 2 and parts[-2] != "sobjects" and parts[-1] != "sobjects" else "Id"
    try:
        records = json.loads(request.body).get("records")
    except (ValueError, AttributeError):
        return []
    if not isinstance(records, list):
        return []
    return [str(record.get(field)) for record in records if isinstance(record, dict)]


@dataclass
class _Fault:
    """One injected fault: requests matching method and path prefix (and, with `body_contains`, whose
    body holds that text: a gateway or a web application firewall refusing one payload wherever it
    travels, e.g. one lead of a collection), `count` times or by `share`."""

    kind: FaultKind
    method: str | None
    path_prefix: str
    status: int
    count: int | None
    share: float | None
    random_seed: int
    reset_seconds: int
    body_contains: str | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.random_seed)

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        if self.body_contains is not None and self.body_contains.encode() not in body:
            return False
        return (self.method is None or self.method == method) and path.startswith(self.path_prefix)

    def fires(self) -> bool:
        """Whether this matching request is hit; consumes one of `count`."""
        if self.share is not None:
            return self._rng.random() < self.share
        if self.count is not None and self.count > 0:
            self.count -= 1
            return True
        return False

    def spent(self) -> bool:
        return self.share is None and (self.count or 0) <= 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "path_prefix": self.path_prefix,
            "status": self.status,
            "count": self.count,
            "share": self.share,
            "random_seed": self.random_seed,
            "reset_seconds": self.reset_seconds,
            "body_contains": self.body_contains,
        }


class Sandbox:
    """A seeded Vitally + Salesforce imitation served over HTTP on loopback.

    `with Sandbox(seed) as sb:` starts it on an ephemeral port (`sb.url`) in a daemon
    thread and stops it on exit; `serve()` runs one until a stop signal (the CLI).
    All methods are thread-safe. `now` freezes the clock from the start (seed
    timestamps that are missing are filled from it).
    """

    def __init__(
        self,
        seed: Mapping[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SandboxConfig | None = None,
        now: datetime | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = Clock(now)
        self._config = config or SandboxConfig()
        self._vitally = VitallyService(self._config, self._clock)
        self._salesforce = SalesforceService(self._config, self._clock)
        self._slack = SlackService(self._config, self._clock)
        self._zendesk = ZendeskService(self._config, self._clock)
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._calls: list[dict[str, Any]] = []
        self._calls_base = 0
        self._counters: dict[str, dict[str, int]] = {system: {} for system in _SYSTEMS}
        self._faults: list[_Fault] = []
        self._events = EventFeed(self._event_record)
        self._vitally.segment_added = self._events.segment_added
        self._salesforce.lead_created = self._events.lead_created
        self._salesforce.opportunity_changed = self._events.opportunity_changed
        if seed:
            self.load(seed)

    # ------------------------------------------------------------- lifecycle

    def load(self, seed: Mapping[str, Any]) -> None:
        """Add a seed's records (`{"vitally": {...}, "salesforce": {...}}`); a seed's `config`
        (SandboxConfig settings, e.g. `real_org` or the org's `sf_schema`) is applied first, so
        that the records land in the org it describes. Other keys are ignored."""
        with self._lock:
            if seed.get("config"):
                self.configure(seed["config"])
            self._vitally.load(seed.get("vitally") or {})
            self._salesforce.load(seed.get("salesforce") or {})

    @property
    def url(self) -> str:
        """`http://host:port` once bound (after `start()` or inside `with`)."""
        if self._server is None:
            raise RuntimeError("the sandbox is not listening yet: call start() or use it as a context manager")
        return f"http://{self._host}:{self._server.server_address[1]}"

    def _bind(self) -> _Server:
        if self._server is None:
            self._server = _Server((self._host, self._port), self)
        return self._server

    def start(self) -> Sandbox:
        """Listen and serve in a daemon thread; returns self."""
        server = self._bind()
        if self._thread is None:
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": _POLL_S}, name="sandbox-http", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (and sending webhooks), drop open keep-alive connections and release the port."""
        self._events.stop()
        server = self._server
        if server is None:
            return
        if self._thread is not None:
            server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        server.close_connections()
        server.server_close()
        self._server = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -------------------------------------------------------------- controls

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, changes: Mapping[str, Any] | None = None, **settings: Any) -> SandboxConfig:
        """Change settings by name (see SandboxConfig); raises ControlError listing every bad one."""
        merged = {**(changes or {}), **settings}
        with self._lock:
            self._config = self._config.updated(merged)
            self._vitally.config = self._config
            self._salesforce.config = self._config
            self._slack.config = self._config
            self._zendesk.config = self._config
            return self._config

    def calls(self, since: int = 0) -> list[dict[str, Any]]:
        """Logged API calls with `seq >= since` (control calls are never logged)."""
        with self._lock:
            start = max(0, since - self._calls_base)
            return [dict(c) for c in self._calls[start:]]

    def calls_total(self) -> int:
        """How many API calls were logged since the last reset (the next call's `seq`)."""
        with self._lock:
            return self._calls_base + len(self._calls)

    def counters(self) -> dict[str, dict[str, int]]:
        """Call counts by system, then by `METHOD path-template` (Slack and Zendesk once called)."""
        with self._lock:
            return {
                system: dict(counts)
                for system, counts in self._counters.items()
                if counts or system in ("vitally", "salesforce")
            }

    def reset(self) -> None:
        """Clear the call log and the counters (state, faults and config stay)."""
        with self._lock:
            self._calls = []
            self._calls_base = 0
            self._counters = {system: {} for system in _SYSTEMS}

    def add_fault(
        self,
        kind: FaultKind,
        *,
        method: str | None = None,
        path_prefix: str = "/",
        status: int = 503,
        count: int | None = None,
        share: float | None = None,
        random_seed: int = 0,
        reset_seconds: int = 1,
        body_contains: str | None = None,
    ) -> dict[str, Any]:
        """Inject a fault on matching API calls: the next `count` (default 1) or a `share` of them
        (with `body_contains`, only calls whose body holds that text)."""
        if kind not in _FAULT_KINDS:
            raise ControlError(f"kind: expected one of {', '.join(_FAULT_KINDS)}")
        if not 100 <= status <= 599:
            raise ControlError("status: expected an HTTP status code")
        if share is not None and not 0.0 <= share <= 1.0:
            raise ControlError("share: expected a number between 0 and 1")
        if count is not None and count < 1:
            raise ControlError("count: expected an integer >= 1")
        if count is None and share is None:
            count = 1
        fault = _Fault(
            kind,
            method.upper() if method else None,
            path_prefix,
            status,
            count,
            share,
            random_seed,
            reset_seconds,
            body_contains,
        )
        with self._lock:
            self._faults.append(fault)
        return fault.to_json()

    def faults(self) -> list[dict[str, Any]]:
        """The faults still armed."""
        with self._lock:
            return [f.to_json() for f in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def add_record_errors(
        self,
        sobject: str,
        code: str,
        *,
        count: int = 1,
        match: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """The next `count` writes of `sobject` records matching `match` fail with per-record `code`."""
        spec = {
            "object": sobject,
            "code": code,
            "count": count,
            "match": dict(match or {}),
            "message": message,
        }
        with self._lock:
            return self._salesforce.add_record_errors(spec).to_json()

    def record_errors(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._salesforce.record_errors]

    def clear_record_errors(self) -> None:
        with self._lock:
            self._salesforce.record_errors.clear()

    def expire_sessions(self) -> None:
        """Every Salesforce session token seen or issued so far now answers 401 INVALID_SESSION_ID."""
        with self._lock:
            self._salesforce.expire_sessions()

    def set_api_usage(self, used: int) -> None:
        """Set today's Salesforce request counter (e.g. close to the quota for a demo)."""
        if isinstance(used, bool) or not isinstance(used, int) or used < 0:
            raise ControlError("used: expected an integer >= 0")
        with self._lock:
            self._salesforce.limit_header()  # roll the day first, so the value sticks to today
            self._salesforce.api_used = used

    def configure_events(self, changes: Mapping[str, Any] | None = None, **settings: Any) -> FeedSettings:
        """Turn the services' webhooks on (a URL each) and set their faults (`sandbox.events`
        FeedSettings); raises ControlError listing every bad setting."""
        try:
            return self._events.configure({**(changes or {}), **settings})
        except ValueError as exc:
            raise ControlError(str(exc)) from None

    def event_deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt so far (`EventFeed.deliveries`)."""
        return self._events.deliveries()

    def events_pending(self) -> int:
        """Webhook deliveries (and retries) not yet sent."""
        return self._events.pending()

    def _event_record(self, source: str, record: str) -> dict[str, Any] | None:
        """The record a webhook is about, as it is now: None when there is none (a Vitally account
        gone, a Lead or Opportunity whose create was rolled back: nothing is sent), `{}` for a
        Lead or Opportunity deleted since (in the recycle bin: its Outbound Message notification
        carries no data)."""
        with self._lock:
            if source == "vitally":
                found = self._vitally.accounts.by_id.get(record)
            else:
                table = self._salesforce.tables["opportunity" if record.startswith("006") else "lead"]
                found = table.get(record)
                if found is None and record in table.deleted:
                    return {}
            return copy.deepcopy(found) if found is not None else None

    def now(self) -> datetime:
        """The sandbox clock's current time."""
        return self._clock.now()

    def run_playbooks(self, *, everything: bool = False) -> int:
        """Run the delayed Vitally Playbook runs that are due on the sandbox clock (or all of
        them); returns how many accounts they processed."""
        with self._lock:
            return self._vitally.run_due_playbooks(everything=everything)

    def pending_playbooks(self) -> list[dict[str, str]]:
        """Delayed Playbook runs not yet due: `{accountId, due}`."""
        with self._lock:
            return self._vitally.pending_playbooks()

    def set_segment(self, account: str, segment: str, *, present: bool = True) -> dict[str, Any]:
        """A person adds (or removes) `segment` on `account` in the Vitally app; returns the account."""
        with self._lock:
            try:
                return copy.deepcopy(self._vitally.set_segment(account, segment, present=present))
            except KeyError:
                raise ControlError(f"account: no account {account!r}") from None

    def empty_recycle_bin(self, sobject: str) -> list[str]:
        """A person empties Salesforce's Recycle Bin of `sobject` records: those deleted are purged
        (no longer returned by QueryAll); returns their Ids."""
        with self._lock:
            return self._salesforce.empty_recycle_bin(sobject)

    def undelete(self, sobject: str, ids: list[str]) -> list[str]:
        """A person restores `sobject` records from Salesforce's Recycle Bin (`undelete()`); a
        record a merge deleted comes back without its children (they stay on the master)."""
        with self._lock:
            try:
                return self._salesforce.undelete(sobject, ids)
            except KeyError:
                raise ControlError(f"object: no sObject {sobject!r}") from None
            except ValueError as exc:
                raise ControlError(str(exc)) from None

    def merge(self, sobject: str, master: str, merged: list[str], fields: Mapping[str, Any] | None = None) -> str:
        """A person merges up to two `sobject` records into `master` in Salesforce (`merge()`):
        the merged ones deleted, `MasterRecordId` naming the master; returns the master's Id."""
        with self._lock:
            try:
                return self._salesforce.merge(sobject, master, merged, fields)
            except ValueError as exc:
                raise ControlError(str(exc)) from None

    def convert(
        self,
        lead: str,
        *,
        account: str | None = None,
        opportunity: bool = True,
        mapped: Mapping[str, str] | None = None,
    ) -> dict[str, str | None]:
        """A person converts a lead in Salesforce (`convertLead()`): see `SalesforceService.convert`."""
        with self._lock:
            try:
                return self._salesforce.convert(lead, account_id=account, opportunity=opportunity, mapped=mapped)
            except ValueError as exc:
                raise ControlError(str(exc)) from None

    def set_clock(
        self, now: datetime | None = None, *, advance_seconds: float | None = None, real: bool = False
    ) -> datetime:
        """Freeze the clock at `now`, move it by `advance_seconds`, or go back to `real` time."""
        if real:
            self._clock.use_real()
        if now is not None:
            self._clock.set(now)
        if advance_seconds is not None:
            self._clock.advance(advance_seconds)
        return self._clock.now()

    def state(self) -> dict[str, Any]:
        """The whole state in the seed format, plus `clock` and `api_usage`."""
        with self._lock:
            return {
                "vitally": self._vitally.snapshot(),
                "salesforce": self._salesforce.snapshot(),
                "slack": self._slack.snapshot(),
                "zendesk": self._zendesk.snapshot(),
                "clock": vitally_timestamp(self._clock.now()),
                "api_usage": {"used": self._salesforce.api_used, "max": self._config.sf_daily_quota},
            }

    def simulate(self, steps: int = 1, random_seed: int = 0) -> dict[str, int]:
        """Advance the business by `steps`: MRR moves, new signups and new inbound Leads.

        Per step: about 2 % of active accounts (at least one) get a new MRR and a fresh
        `updatedAt`; 1-3 accounts sign up (with their users); 1-3 inbound Leads arrive
        (owned per the assignment rule when it is on, else by an active user).
        Deterministic for a given `random_seed` and state.
        """
        if steps < 1:
            raise ControlError("steps: expected an integer >= 1")
        rng = random.Random(random_seed)
        totals = {"mrr_changes": 0, "new_accounts": 0, "new_users": 0, "new_leads": 0}
        with self._lock:
            for _ in range(steps):
                active = sorted(a for a, r in self._vitally.accounts.by_id.items() if r.get("churnedAt") is None)
                for account_id in rng.sample(active, min(len(active), max(1, len(active) // 50))):
                    old = self._vitally.accounts.by_id[account_id].get("mrr")
                    base = float(old) if isinstance(old, int | float) and not isinstance(old, bool) else 0.0
                    new = round(max(0.0, base * rng.uniform(0.8, 1.3) + rng.choice((0.0, 0.0, 50.0, 250.0))), 2)
                    self._vitally.change_mrr(account_id, new)
                    totals["mrr_changes"] += 1
                book = generator.generate_book(
                    rng.randint(1, 3),
                    seed=rng.randrange(2**31),
                    now=self._clock.now(),
                    malformed_share=0.0,
                    id_offset=len(self._vitally.accounts.by_id),
                    real_org=self._config.real_org,
                )
                added_accounts, added_users = self._vitally.add_generated(book.get("vitally") or {})
                totals["new_accounts"] += added_accounts
                totals["new_users"] += added_users
                totals["new_leads"] += self._simulate_leads(rng)
        return totals

    def _simulate_leads(self, rng: random.Random) -> int:
        """1-3 inbound Leads taken from a generated book (small books hold about one lead per
        five accounts, hence the larger book); leads pointing at accounts we lack lose the link."""
        wanted = rng.randint(1, 3)
        book = generator.generate_book(
            10 * wanted,
            seed=rng.randrange(2**31),
            now=self._clock.now(),
            malformed_share=0.0,
            real_org=self._config.real_org,
        )
        leads = []
        for lead in list((book.get("salesforce") or {}).get("Lead") or [])[:wanted]:
            account = lead.get("Vitally_Account_Id__c")
            if account is not None and self._vitally.accounts.find(str(account)) is None:
                lead = {**lead, "Vitally_Account_Id__c": None}
            leads.append(lead)
        users = self._salesforce.table_rows("User")
        owners = sorted(u["Id"] for u in users if u.get("IsActive") is not False)
        return len(self._salesforce.add_leads(leads, owner_ids=owners))

    # --------------------------------------------------------- request path

    def _handle_api(self, system: _System, request: Request) -> tuple[_Action, Reply | None]:
        """Run one API call through faults, latency and the service; log and count it."""
        service = self._service(system)
        template = service.template(request.path)
        with self._lock:
            fault = self._pick_fault(request.method, request.path, request.body)
            latency = self._config.latency_ms
        if latency:
            time.sleep(latency / 1000)
        if fault is not None and fault.kind != "drop_response":
            reply = self._fault_reply(system, fault) if fault.kind in _REPLYING_KINDS else None
            with self._lock:
                self._record(system, request, template, reply.status if reply else 0, fault.kind)
            action: _Action = "reply" if reply is not None else ("timeout" if fault.kind == "timeout" else "reset")
            return action, reply
        with self._lock:
            reply = service.handle(request)
            reply.encode()  # the body may share objects with live state: serialise under the lock
            self._record(system, request, template, reply.status, fault.kind if fault else None)
        return ("drop" if fault is not None else "reply"), reply

    def _service(self, system: _System) -> VitallyService | SalesforceService | SlackService | ZendeskService:
        if system == "vitally":
            return self._vitally
        if system == "salesforce":
            return self._salesforce
        return self._slack if system == "slack" else self._zendesk

    def _pick_fault(self, method: str, path: str, body: bytes) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path, body) and fault.fires():
                if fault.spent():
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_reply(self, system: _System, fault: _Fault) -> Reply:
        try:
            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Injected fault"
        headers: dict[str, str] = {}
        if fault.status == 429:
            headers["RateLimit-Reset"] = str(fault.reset_seconds)
        if system == "vitally":
            if fault.status == 429:
                headers["RateLimit-Limit"] = rate_limit_value(
                    self._config.vitally_rate_limit, self._config.vitally_rate_window_s
                )
                headers["RateLimit-Remaining"] = "0"
        else:
            with self._lock:
                headers["Sforce-Limit-Info"] = self._salesforce.limit_header()
        if fault.kind == "empty":
            return Reply.raw(fault.status, b"", "", headers)
        if fault.kind == "html":
            page = _EDGE_PAGE if fault.status == 420 else _MAINTENANCE_PAGE
            return Reply.raw(fault.status, page.encode(), "text/html;charset=UTF-8", headers)
        if system == "vitally":
            return Reply(fault.status, {"statusCode": fault.status, "message": phrase}, headers)
        if system in ("slack", "zendesk"):
            if fault.status == 429:
                headers = {"Retry-After": str(fault.reset_seconds)}
            error = {"ok": False, "error": "ratelimited" if fault.status == 429 else "fatal_error"}
            return Reply(fault.status, error if system == "slack" else {"error": phrase}, headers)
        code = _SF_STATUS_CODES.get(fault.status, "UNKNOWN_EXCEPTION")
        return Reply(fault.status, [{"message": phrase, "errorCode": code}], headers)

    def _record(self, system: _System, request: Request, template: str, status: int, fault: str | None) -> None:
        entry: dict[str, Any] = {
            "seq": self._calls_base + len(self._calls),
            "system": system,
            "method": request.method,
            "path": request.path,
            "template": template,
            "status": status,
            "at": vitally_timestamp(self._clock.now()),
        }
        if fault is not None:
            entry["fault"] = fault
        soql = request.param("q") if system == "salesforce" else None
        if soql:
            entry["soql"] = soql  # a query's text: which reads a cycle made
        elif system == "salesforce" and request.method in ("PATCH", "POST") and "/composite/sobjects" in request.path:
            entry["records"] = _collection_keys(request)  # which records a collection write carried
        self._calls.append(entry)
        if len(self._calls) > _CALL_LOG_MAX:
            # A long demo must not grow without bound; `seq` stays absolute so `since` keeps working.
            drop = _CALL_LOG_MAX // 2
            del self._calls[:drop]
            self._calls_base += drop
        key = f"{request.method} {template}"
        counts = self._counters[system]
        counts[key] = counts.get(key, 0) + 1

    # --------------------------------------------------------- control path

    def _handle_control(self, method: str, name: str, query: Mapping[str, list[str]], body: bytes) -> Reply:
        """Answer `/_sandbox/<name>`; bad input is a 400 with `{"error": ...}`."""
        try:
            payload = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return Reply(400, {"error": "body is not valid JSON"})
        if not isinstance(payload, dict):
            return Reply(400, {"error": "body must be a JSON object"})
        try:
            return self._control(method, name, query, payload)
        except ControlError as exc:
            return Reply(400, {"error": exc.message})

    def _control(self, method: str, name: str, query: Mapping[str, list[str]], payload: dict[str, Any]) -> Reply:
        handler = self._controls().get((method, name))
        if handler is None:
            return Reply(404, {"error": f"no control {method} /_sandbox/{name}"})
        return handler(query, payload)

    def _controls(self) -> dict[tuple[str, str], _Control]:
        """Every control endpoint, `(method, name)` → what it does with the query and the payload."""
        return {
            ("GET", "calls"): lambda query, _: self._calls_json(_int_param(query, "since", 0)),
            ("GET", "counters"): lambda *_: Reply(200, self.counters()),
            ("POST", "reset"): lambda *_: _done(self.reset),
            ("GET", "config"): lambda *_: Reply(200, self._config.to_json()),
            ("POST", "config"): lambda _, payload: Reply(200, self.configure(payload).to_json()),
            ("GET", "faults"): lambda *_: Reply(200, self.faults()),
            ("POST", "faults"): lambda _, payload: Reply(200, self._add_fault_json(payload)),
            ("DELETE", "faults"): lambda *_: _done(self.clear_faults),
            ("GET", "record_errors"): lambda *_: Reply(200, self.record_errors()),
            ("POST", "record_errors"): lambda _, payload: Reply(200, self._add_record_errors_json(payload)),
            ("DELETE", "record_errors"): lambda *_: _done(self.clear_record_errors),
            ("POST", "expire_sessions"): lambda *_: _done(self.expire_sessions),
            # set_api_usage validates the value itself.
            ("POST", "api_usage"): lambda _, payload: _done(lambda: self.set_api_usage(payload.get("used"))),
            ("GET", "clock"): lambda *_: self._clock_json(),
            ("POST", "clock"): lambda _, payload: self._clock_json(payload),
            ("GET", "state"): lambda *_: Reply(200, self.state()),
            ("POST", "load"): lambda _, payload: Reply(200, self._load_json(payload)),
            ("GET", "playbooks"): lambda *_: Reply(200, {"pending": self.pending_playbooks()}),
            ("POST", "playbooks"): lambda _, payload: Reply(200, self._playbooks_json(payload)),
            ("POST", "segments"): lambda _, payload: Reply(200, self._segments_json(payload)),
            ("POST", "recycle_bin"): lambda _, payload: Reply(200, self._recycle_bin_json(payload)),
            ("POST", "merge"): lambda _, payload: Reply(200, self._merge_json(payload)),
            ("POST", "undelete"): lambda _, payload: Reply(200, self._undelete_json(payload)),
            ("POST", "convert"): lambda _, payload: Reply(200, self._convert_json(payload)),
            ("POST", "simulate"): lambda _, payload: Reply(200, self._simulate_json(payload)),
            ("GET", "events"): lambda *_: Reply(200, self._events_json()),
            ("POST", "events"): lambda _, payload: Reply(200, self._events_json(payload)),
        }

    def _calls_json(self, since: int) -> Reply:
        with self._lock:
            return Reply(200, {"calls": self.calls(since), "next": self.calls_total()})

    def _add_record_errors_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._salesforce.add_record_errors(payload).to_json()

    def _clock_json(self, payload: dict[str, Any] | None = None) -> Reply:
        """The clock, after setting it from `payload` when there is one (POST)."""
        if payload is not None:
            self._set_clock_json(payload)
        return Reply(200, {"now": vitally_timestamp(self._clock.now()), "fixed": self._clock.is_fixed()})

    def _playbooks_json(self, payload: dict[str, Any]) -> dict[str, int]:
        """Run the delayed Playbook runs that are due (`{"run": "due"}`, the default) or all of them."""
        which = payload.get("run", "due")
        if which not in ("due", "all"):
            raise ControlError('run: expected "due" or "all"')
        return {"ran": self.run_playbooks(everything=which == "all")}

    def _recycle_bin_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A person empties the Recycle Bin of one object's records: `{"object": "Lead"}`."""
        sobject = payload.get("object")
        if not isinstance(sobject, str) or not sobject:
            raise ControlError("object: expected an sObject name")
        try:
            return {"purged": self.empty_recycle_bin(sobject)}
        except KeyError:
            raise ControlError(f"object: no sObject {sobject!r}") from None

    def _undelete_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A person restores records from the Recycle Bin: `{"object": "Account", "ids": [id, ...]}`."""
        sobject, ids = payload.get("object"), payload.get("ids")
        if not isinstance(sobject, str) or not sobject:
            raise ControlError("object: expected an sObject name")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ControlError("ids: expected a list of Ids")
        return {"undeleted": self.undelete(sobject, ids)}

    def _merge_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A person merges records: `{"object": "Lead", "master": id, "merged": [id, ...], "fields"?: {...}}`."""
        sobject, master, merged = payload.get("object", "Lead"), payload.get("master"), payload.get("merged")
        fields = payload.get("fields", {})
        if not isinstance(sobject, str) or not isinstance(master, str):
            raise ControlError("object and master: expected strings")
        if not isinstance(merged, list) or not all(isinstance(i, str) for i in merged):
            raise ControlError("merged: expected a list of Ids")
        if not isinstance(fields, dict):
            raise ControlError("fields: expected an object")
        return {"master": self.merge(sobject, master, merged, fields), "merged": merged}

    def _convert_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A person converts a lead: `{"lead": id, "account"?: id, "opportunity"?: true, "mapped"?: {...}}`."""
        lead, account, opportunity = payload.get("lead"), payload.get("account"), payload.get("opportunity", True)
        mapped = payload.get("mapped", {})
        if not isinstance(lead, str) or not (account is None or isinstance(account, str)):
            raise ControlError("lead and account: expected Ids")
        if not isinstance(opportunity, bool):
            raise ControlError("opportunity: expected true or false")
        if not isinstance(mapped, dict) or not all(isinstance(v, str) for v in mapped.values()):
            raise ControlError("mapped: expected an object of lead field → Account field")
        return self.convert(lead, account=account, opportunity=opportunity, mapped=mapped)

    def _segments_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A person adds or removes a segment: `{"account", "segment", "present": true | false}`."""
        account, segment, present = payload.get("account"), payload.get("segment"), payload.get("present", True)
        if not isinstance(account, str) or not isinstance(segment, str) or not segment:
            raise ControlError("account and segment: expected strings")
        if not isinstance(present, bool):
            raise ControlError("present: expected true or false")
        return self.set_segment(account, segment, present=present)

    def _events_json(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """The webhook settings (after applying `payload`), the deliveries so far, how many wait."""
        settings = self.configure_events(payload) if payload else self._events.settings
        shown = dataclasses.asdict(settings)
        if shown["vitally_bearer"] is not None:
            shown["vitally_bearer"] = "***"
        return {"settings": shown, "deliveries": self.event_deliveries(), "pending": self.events_pending()}

    def _simulate_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        steps, seed = payload.get("steps", 1), payload.get("random_seed", 0)
        if not _is_int(steps) or not _is_int(seed):
            raise ControlError("steps and random_seed: expected integers")
        return self.simulate(steps, seed)

    def _add_fault_json(self, spec: dict[str, Any]) -> dict[str, Any]:
        known = {
            "kind",
            "method",
            "path_prefix",
            "status",
            "count",
            "share",
            "random_seed",
            "reset_seconds",
            "body_contains",
        }
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ControlError(f"unknown fault keys: {', '.join(unknown)}")
        kind = spec.get("kind", "status")
        method, prefix = spec.get("method"), spec.get("path_prefix", "/")
        if method is not None and not isinstance(method, str):
            raise ControlError("method: expected a string")
        if not isinstance(prefix, str):
            raise ControlError("path_prefix: expected a string")
        body_contains = spec.get("body_contains")
        if body_contains is not None and not isinstance(body_contains, str):
            raise ControlError("body_contains: expected a string")
        share = spec.get("share")
        if share is not None and (isinstance(share, bool) or not isinstance(share, int | float)):
            raise ControlError("share: expected a number")
        ints = {k: spec.get(k, d) for k, d in (("status", 503), ("random_seed", 0), ("reset_seconds", 1))}
        count = spec.get("count")
        if not all(_is_int(v) for v in ints.values()) or (count is not None and not _is_int(count)):
            raise ControlError("status, count, random_seed and reset_seconds: expected integers")
        return self.add_fault(
            kind,
            method=method,
            path_prefix=prefix,
            status=ints["status"],
            count=count,
            share=None if share is None else float(share),
            random_seed=ints["random_seed"],
            reset_seconds=ints["reset_seconds"],
            body_contains=body_contains,
        )

    def _load_json(self, seed: dict[str, Any]) -> dict[str, dict[str, int]]:
        """`load()` over HTTP, after checking the seed's shape; answers how many records each list held."""
        unknown = sorted(set(seed) - {"vitally", "salesforce", "config"})
        if unknown:
            raise ControlError(f"unknown seed keys: {', '.join(unknown)}")
        config = seed.get("config")
        if config is not None:
            if not isinstance(config, dict):
                raise ControlError("config: expected an object of SandboxConfig settings")
            self._config.updated(config)  # every bad setting is refused before any record lands
        counts: dict[str, dict[str, int]] = {}
        for system, section in seed.items():
            if system == "config":
                continue
            if not isinstance(section, dict) or not all(
                isinstance(rows, list) and all(isinstance(row, dict) for row in rows) for rows in section.values()
            ):
                raise ControlError(f"{system}: expected an object of lists of records")
            counts[system] = {name: len(rows) for name, rows in section.items()}
        self.load(seed)
        return counts

    def _set_clock_json(self, payload: dict[str, Any]) -> None:
        now_text, advance, real = (
            payload.get("now"),
            payload.get("advance_seconds"),
            payload.get("real", False),
        )
        now = None
        if now_text is not None:
            now = parse_timestamp(now_text)
            if now is None:
                raise ControlError("now: expected an ISO 8601 timestamp")
        if advance is not None and (isinstance(advance, bool) or not isinstance(advance, int | float)):
            raise ControlError("advance_seconds: expected a number")
        if not isinstance(real, bool):
            raise ControlError("real: expected true or false")
        if now is None and advance is None and not real:
            raise ControlError('expected "now", "advance_seconds" or "real"')
        self.set_clock(now, advance_seconds=advance, real=real)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_Control = Callable[[Mapping[str, list[str]], dict[str, Any]], Reply]


def _done(action: Callable[[], object]) -> Reply:
    """Do `action`; the control's answer is `{"ok": true}`."""
    action()
    return Reply(200, {"ok": True})


def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise ControlError(f"{name}: expected an integer") from None


# ------------------------------------------------------------------ HTTP layer


class _Server(ThreadingHTTPServer):
    """Thread per connection; tracks open sockets so that `stop()` can drop keep-alive ones."""

    daemon_threads = True
    # Joining handler threads on close would wait for idle keep-alive clients forever.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already closed by its handler: nothing left to drop


class _Handler(BaseHTTPRequestHandler):
    """Parses HTTP/1.1 with keep-alive and hands requests to the Sandbox."""

    protocol_version = "HTTP/1.1"
    server_version = "crm-sync-sandbox/1.0"
    sys_version = ""
    # Nagle's algorithm plus the client's delayed ACK costs ~40 ms per keep-alive response.
    disable_nagle_algorithm = True
    # An idle keep-alive connection is closed after this many seconds.
    timeout = 120
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Per-request stderr lines would drown test and demo output; the call log replaces them."""

    def _serve(self) -> None:
        try:
            self._serve_unsafe()
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away mid-request: nothing to answer
        except Exception:
            _log.exception("sandbox: internal error on %s %s", self.command, self.path)
            self.close_connection = True
            self._send(Reply(500, {"message": "sandbox internal error (see the server log)"}))

    def _serve_unsafe(self) -> None:
        sandbox = self.server.sandbox
        split = urlsplit(self.path)
        path = split.path
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(Reply(400, {"message": "bad Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        query = parse_qs(split.query, keep_blank_values=True)
        if path.startswith("/_sandbox/"):
            self._send(sandbox._handle_control(self.command, path[len("/_sandbox/") :].strip("/"), query, body))
            return
        system = _system_of(path)
        if system is None:
            self._send(Reply(404, {"message": "Not Found"}))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        action, reply = sandbox._handle_api(system, Request(self.command, path, query, headers, body))
        if action == "reply" and reply is not None:
            self._send(reply)
        elif action == "timeout":
            time.sleep(sandbox.config.fault_timeout_s)
            self._abort(reset=False)
        else:
            self._abort(reset=action == "reset")

    def _send(self, reply: Reply) -> None:
        payload = reply.encode()
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"HTTP/1.1 {reply.status} {phrase}",
            # The sandbox's clock, like the SystemModstamps it writes: a client may rely on both.
            f"Date: {format_datetime(self.server.sandbox.now(), usegmt=True)}",
            f"Server: {self.server_version}",
        ]
        if reply.status not in (204, 304):
            if payload:
                lines.append(f"Content-Type: {reply.content_type}")
            lines.append(f"Content-Length: {len(payload)}")
        lines.extend(f"{k}: {v}" for k, v in reply.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        # One write per response: headers and body in a single segment.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)

    def _abort(self, *, reset: bool) -> None:
        """Close without answering; with `reset`, abortively (RST) like a crashed proxy."""
        self.close_connection = True
        if reset:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()


def _system_of(path: str) -> _System | None:
    """Which imitated service a path belongs to (each real one has a host of its own)."""
    if path.startswith("/resources/"):
        return "vitally"
    if path.startswith("/api/v2/"):
        return "zendesk"
    if path.startswith(("/api/", "/services/T")):
        return "slack"  # the Web API, and an incoming webhook (/services/T…/B…/token)
    if path.startswith("/services/"):
        return "salesforce"
    return None


# -------------------------------------------------------------------- CLI entry


# The signals that stop `serve`: Ctrl-C and a service manager's stop.
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def serve(seed: Mapping[str, Any] | None, port: int, config: SandboxConfig | None = None) -> None:
    """Serve the sandbox on 127.0.0.1:`port` until SIGINT or SIGTERM, then return (POSIX).

    Prints one line, `sandbox listening on http://127.0.0.1:PORT (N accounts, M leads)`.

    The server runs in its own thread; this thread only waits for a stop signal, which every
    thread blocks and this one takes with `signal.sigwait`. No Python signal handler runs, so a
    stop never lands at an arbitrary point of the serving code: a handler that raised
    KeyboardInterrupt there could interrupt lock code ("release unlocked lock") and be lost.
    """
    sandbox = Sandbox(seed, port=port, config=config)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # threads started now inherit it
    try:
        sandbox.start()
        with sandbox._lock:
            accounts = len(sandbox._vitally.accounts.by_id)
            leads = sum(1 for _ in sandbox._salesforce.table_rows("Lead"))
        print(f"sandbox listening on {sandbox.url} ({accounts} accounts, {leads} leads)", flush=True)
        signal.sigwait(_STOP_SIGNALS)
    finally:
        sandbox.stop()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
