"""The webhooks the two services send when their state changes, imitated: Vitally Playbook
webhooks and Salesforce Outbound Messages, posted by the sandbox to a receiver (crm-sync's
`/events/…`), with the faults real deliveries have.

- **Vitally**: a Playbook "Webhook" action posts the account when it enters a segment (a
  Playbook adds it, or a person does in the app). The body is JSON with the account under
  `match.account`, its traits flattened onto it (the shape of
  `tests/fixtures/real/vitally_playbook_webhook.json`; only `match.account` is documented, by a
  third party). No signature is documented: the secret is in the URL the admin gives Vitally, or
  (`vitally_bearer`) an `Authorization: Bearer` header. Vitally documents no retry: a delivery
  that fails is gone.
- **Salesforce**: an Outbound Message from a Flow on Lead create, for leads created without a
  `Sync_Key__c` (the entry condition the README recommends: crm-sync's own leads need no event),
  and (`opportunity_messages`, on by default) one from a Flow on Opportunity, created or updated
  (an API write, or the opportunity a lead's conversion creates; not a merge's reparenting, which
  the scheduled cycle reads).
  The body is SOAP `notifications` (namespace `http://soap.sforce.com/2005/09/outbound`) with the
  org's `OrganizationId` (`ORG_ID`), an `ActionId`, a nil `SessionId`, the endpoint URLs and one
  `Notification` per Lead, with its own `Id` and the Lead's fields as they are when it is sent
  (the shape of `tests/fixtures/real/salesforce_outbound_message_lead.xml`). "A single SOAP
  message can include up to 100 notifications" and "multiple discrete calls [...] are sometimes
  batched together into one or more SOAP messages" (SOAP API Developer Guide, "Understanding
  Notifications"): the notifications due within `salesforce_batch_window_s` of each other go in one
  message, up to `salesforce_batch_max` (100). Salesforce sends a message again until the answer
  carries `<Ack>true</Ack>`, with growing gaps (here `salesforce_retry_s`, doubling,
  `salesforce_max_attempts` tries: the real service tries for 24 hours); "messages are retried
  independent of their order in the queue", so each notification of a refused message is retried
  on its own clock (those due together are batched again).

Faults, each drawn from `random_seed`: `duplicate_share` of deliveries are sent twice (the copy
`duplicate_after_s` later, the same body: the same Notification Id), `loss_share` are never sent,
`delay_s` holds every delivery back, `jitter_s` adds up to that much more to each one, so they
arrive out of order. Everything sent is kept in `deliveries()` (source, record, attempt, status,
acknowledged) for tests and benches. Off (no URL) by default. Imports nothing of crm-sync.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal
from xml.sax.saxutils import escape

from sandbox.salesforce import case_safe_id

__all__ = ["LEAD_FIELDS", "OPPORTUNITY_FIELDS", "ORG_ID", "EventFeed", "FeedSettings"]

# The sandbox org's id: the 15-character id of its OAuth token, with its case-safe suffix.
ORG_ID = case_safe_id("00D8d0000000001")
_ACTION_ID = "04k8d0000000001AAA"
_ACK = "<Ack>true</Ack>"
_Source = Literal["vitally", "salesforce"]
# Lead fields an Outbound Message carries (the ones the admin selected; nulls are left out).
LEAD_FIELDS = (
    "Id",
    "Company",
    "Country",
    "CountryCode",
    "Email",
    "LastName",
    "LeadSource",
    "OwnerId",
    "Status",
    "SystemModstamp",
    "Vitally_Account_Id__c",
)
# Opportunity fields its Outbound Message carries (crm-sync reads the record fresh by Id).
OPPORTUNITY_FIELDS = ("Id", "AccountId", "Amount", "CloseDate", "IsClosed", "Name", "StageName", "SystemModstamp")


@dataclass(frozen=True)
class FeedSettings:
    """Where the webhooks go and what goes wrong with them (`Sandbox.configure_events`)."""

    vitally_url: str | None = None
    """The Playbook webhook's URL (the secret in its path), or None: no Vitally webhooks."""
    vitally_bearer: str | None = None
    """Sent as `Authorization: Bearer <it>` when set (a receiver taking the secret from a header)."""
    salesforce_url: str | None = None
    """The Outbound Message's endpoint URL, or None: no Outbound Messages."""
    opportunity_messages: bool = True
    """Opportunities created or updated send theirs too (a second Flow, on Opportunity)."""
    organization_id: str = ORG_ID
    duplicate_share: float = 0.0
    duplicate_after_s: float = 0.05
    loss_share: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    salesforce_retry_s: float = 0.5
    salesforce_max_attempts: int = 8
    salesforce_batch_window_s: float = 0.05
    """Notifications due within this many seconds of the first go in its message."""
    salesforce_batch_max: int = 100
    """Notifications per Outbound Message at most (Salesforce: 100; 1 sends each alone)."""
    timeout_s: float = 60.0
    """How long an answer is waited for (Salesforce waits 60 s)."""
    random_seed: int = 0

    def updated(self, changes: Mapping[str, Any]) -> FeedSettings:
        """A copy with `changes` applied; ValueError naming every unknown key or bad value."""
        known = {f.name: f for f in fields(self)}
        problems = [f"{key}: unknown setting" for key in changes if key not in known]
        for key, value in changes.items():
            if key in known and not _fits(getattr(self, key), key, value):
                problems.append(f"{key}: bad value")
        if problems:
            raise ValueError("; ".join(problems))
        return replace(self, **dict(changes))


def _fits(current: Any, key: str, value: Any) -> bool:
    if key in ("vitally_url", "vitally_bearer", "salesforce_url"):
        return value is None or isinstance(value, str)
    if isinstance(current, bool):
        return isinstance(value, bool)
    if key == "salesforce_batch_max":
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100
    if key.endswith("_share"):
        return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
    if isinstance(current, str):
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    source: _Source = "vitally"
    record: str = ""
    key: str = ""  # the Notification Id (Salesforce) or the Playbook run (Vitally)
    attempt: int = 1
    emitted: float = 0.0
    # Fixed once first built, so a duplicate or a retry sends the same: the Vitally body, or the
    # Salesforce `Notification` element (`b""` once built for a record that is gone: not sent).
    body: bytes | None = None


class EventFeed:
    """Sends the webhooks of one sandbox from a thread of its own. `snapshot(source, record)` is
    called (without the feed's lock) to read a record as it is when its webhook is built: the
    Vitally account, or the Lead; None when there is no such record (nothing is sent), `{}` for a
    Lead deleted since (its Outbound Message's notification carries no data, as Salesforce sends it)."""

    def __init__(self, snapshot: Callable[[_Source, str], dict[str, Any] | None]) -> None:
        self._snapshot = snapshot
        self._settings = FeedSettings()
        self._rng = random.Random(0)
        self._lock = threading.Condition()
        self._queue: list[_Delivery] = []
        self._seq = itertools.count(1)
        self._notifications = itertools.count(1)
        self._messages = itertools.count(1)  # POSTs sent, numbered
        self._log: list[dict[str, Any]] = []
        self._stopped = False
        self._sending = 0  # deliveries taken from the queue and not yet logged
        self._thread: threading.Thread | None = None

    # -- controls ----------------------------------------------------------------------------------

    @property
    def settings(self) -> FeedSettings:
        return self._settings

    def configure(self, changes: Mapping[str, Any]) -> FeedSettings:
        with self._lock:
            self._settings = self._settings.updated(changes)
            if "random_seed" in changes:
                self._rng = random.Random(self._settings.random_seed)
            return self._settings

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery attempt so far: `{source, record, key, attempt, emitted, sent, status,
        acknowledged, message, batch, duplicate?}` (times are `time.time()`; `message` numbers the
        POST that carried it, `batch` counts the notifications in that POST), plus
        `{…, "lost": true}` for those a fault dropped."""
        with self._lock:
            return [dict(d) for d in self._log]

    def pending(self) -> int:
        """Deliveries still to send or being sent (retries included)."""
        with self._lock:
            return len(self._queue) + self._sending

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- what the services call when their state changes ------------------------------------------

    def segment_added(self, account_id: str, segment: str) -> None:
        """A Playbook or a person put the account in `segment`."""
        self._emit("vitally", account_id, f"{account_id}:{segment}:{next(self._notifications)}")

    def lead_created(self, lead: Mapping[str, Any]) -> None:
        """A Lead was created; a Flow whose entry condition is "Sync_Key__c is null" sends it."""
        if lead.get("Sync_Key__c"):
            return
        self._emit("salesforce", str(lead["Id"]), f"04l8d{next(self._notifications):010d}AAA")

    def opportunity_changed(self, opportunity: Mapping[str, Any]) -> None:
        """An Opportunity was created or updated; a Flow on Opportunity sends it (when on)."""
        if self._settings.opportunity_messages:
            self._emit("salesforce", str(opportunity["Id"]), f"04l8d{next(self._notifications):010d}AAA")

    def _emit(self, source: _Source, record: str, key: str) -> None:
        with self._lock:
            settings = self._settings
            if (settings.vitally_url if source == "vitally" else settings.salesforce_url) is None:
                return
            now = time.monotonic()
            emitted = time.time()
            if self._rng.random() < settings.loss_share:
                self._log.append({"source": source, "record": record, "key": key, "emitted": emitted, "lost": True})
                return
            due = now + settings.delay_s + self._rng.uniform(0, settings.jitter_s)
            heapq.heappush(self._queue, _Delivery(due, next(self._seq), source, record, key, 1, emitted))
            if self._rng.random() < settings.duplicate_share:
                again = due + settings.duplicate_after_s
                heapq.heappush(self._queue, _Delivery(again, next(self._seq), source, record, key, 0, emitted))
            self._start()
            self._lock.notify_all()

    # -- sending -----------------------------------------------------------------------------------

    def _start(self) -> None:
        """Called with the lock held."""
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="sandbox-events", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and (not self._queue or self._queue[0].due > time.monotonic()):
                    wait = self._queue[0].due - time.monotonic() if self._queue else None
                    self._lock.wait(wait)
                if self._stopped:
                    return
                first = heapq.heappop(self._queue)
                settings = self._settings
                self._sending += 1
            batch = [first]
            try:
                if first.source == "salesforce":
                    # Its Lead read first: that waits for the request creating it to end, so the
                    # Leads it creates with it are queued by then, and go in the same message.
                    if first.body is None:
                        first.body = self._body(first, settings) or b""
                    with self._lock:
                        more = self._batched(first, settings)
                        self._sending += len(more)
                    batch += more
                self._send(batch, settings)
            finally:
                with self._lock:
                    self._sending -= len(batch)

    def _batched(self, first: _Delivery, settings: FeedSettings) -> list[_Delivery]:
        """Called with the lock held: the other Outbound Message notifications to send with `first`
        (due within the batch window, one copy of each notification), taken from the queue."""
        until = first.due + settings.salesforce_batch_window_s
        keys = {first.key}
        taken: list[_Delivery] = []
        for delivery in sorted(self._queue):
            if len(taken) + 1 >= settings.salesforce_batch_max or delivery.due > until:
                break
            if delivery.source == "salesforce" and delivery.key not in keys:
                keys.add(delivery.key)
                taken.append(delivery)
        if taken:
            chosen = {id(d) for d in taken}
            self._queue = [d for d in self._queue if id(d) not in chosen]
            heapq.heapify(self._queue)
        return taken

    def _send(self, batch: list[_Delivery], settings: FeedSettings) -> None:
        """One POST: a Vitally delivery's body, or an Outbound Message with a Notification for each
        of `batch`'s Leads that still exist (none left: nothing is sent)."""
        for delivery in batch:
            if delivery.body is None:
                delivery.body = self._body(delivery, settings) or b""
        batch = [delivery for delivery in batch if delivery.body]
        if not batch:
            return  # no such record any more: nothing is sent
        source = batch[0].source
        url = settings.vitally_url if source == "vitally" else settings.salesforce_url
        if url is None:
            return
        headers = {"Content-Type": "application/json"}
        if source == "salesforce":
            headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
            body = _outbound_message([d.body or b"" for d in batch], settings)
        else:
            if settings.vitally_bearer:
                headers["Authorization"] = f"Bearer {settings.vitally_bearer}"
            body = batch[0].body or b""
        status, answer = _post(url, body, headers, settings.timeout_s)
        acknowledged = status == 200 and (source == "vitally" or _ACK in answer)
        sent, refused_at = time.time(), time.monotonic()  # one clock for the whole message's retries
        with self._lock:
            message = next(self._messages)
            for delivery in batch:
                entry = {
                    "source": source,
                    "record": delivery.record,
                    "key": delivery.key,
                    "attempt": max(delivery.attempt, 1),
                    "emitted": delivery.emitted,
                    "sent": sent,
                    "status": status,
                    "acknowledged": acknowledged,
                    "message": message,
                    "batch": len(batch),
                }
                if delivery.attempt == 0:
                    entry["duplicate"] = True
                self._log.append(entry)
                retry = source == "salesforce" and not acknowledged and delivery.attempt > 0
                if retry and delivery.attempt < settings.salesforce_max_attempts:
                    gap = settings.salesforce_retry_s * 2 ** (delivery.attempt - 1)
                    delivery.due, delivery.seq = refused_at + gap, next(self._seq)
                    delivery.attempt += 1
                    heapq.heappush(self._queue, delivery)
            self._lock.notify_all()

    def _body(self, delivery: _Delivery, settings: FeedSettings) -> bytes | None:
        record = self._snapshot(delivery.source, delivery.record)
        if record is None:
            return None  # no such record (a create rolled back, an account gone): nothing is sent
        if delivery.source == "salesforce":
            # `{}`: a Lead deleted before delivery: "the notification contains no data" (Salesforce
            # Help, "Considerations for Outbound Messages"), and it is still sent.
            return _notification(record or None, delivery.key, _sobject(delivery.record))
        return _playbook_body(record)


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """(status, body) of one POST; status 0 when no answer came."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status), answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return 0, ""


def _playbook_body(account: Mapping[str, Any]) -> bytes:
    """A Playbook webhook's body: the account under `match.account`, traits flattened onto it."""
    flat: dict[str, Any] = {}
    traits = account.get("traits")
    if isinstance(traits, dict):
        flat.update(traits)
    for key in ("id", "externalId", "name"):
        flat[key] = account.get(key)
    return json.dumps({"match": {"account": flat}}, default=str).encode()


def _outbound_body(lead: Mapping[str, Any] | None, notification_id: str, settings: FeedSettings) -> bytes:
    """An Outbound Message with one Notification on this Lead (None: a Lead deleted before
    delivery, whose sObject carries no data)."""
    return _outbound_message([_notification(lead, notification_id, "Lead")], settings)


def _sobject(record_id: str) -> str:
    """The object of a record by its Id's key prefix (006: Opportunity, as in every org)."""
    return "Opportunity" if record_id.startswith("006") else "Lead"


def _notification(record: Mapping[str, Any] | None, notification_id: str, sobject: str) -> bytes:
    """One `Notification` element: its Id and the record's fields (none for one deleted since)."""
    names = OPPORTUNITY_FIELDS if sobject == "Opportunity" else LEAD_FIELDS
    values = "".join(
        f"     <sf:{name}>{escape(_text(record[name]))}</sf:{name}>\n"
        for name in names
        if record is not None and record.get(name) is not None
    )
    return (
        "   <Notification>\n"
        f"    <Id>{escape(notification_id)}</Id>\n"
        f'    <sObject xsi:type="sf:{sobject}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">\n'
        f"{values}"
        "    </sObject>\n"
        "   </Notification>\n"
    ).encode()


def _outbound_message(notifications: list[bytes], settings: FeedSettings) -> bytes:
    """The SOAP `notifications` message carrying these `Notification` elements (1 to 100)."""
    org15 = settings.organization_id[:15]
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        " <soapenv:Body>\n"
        '  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">\n'
        f"   <OrganizationId>{escape(settings.organization_id)}</OrganizationId>\n"
        f"   <ActionId>{_ACTION_ID}</ActionId>\n"
        '   <SessionId xsi:nil="true"/>\n'
        f"   <EnterpriseUrl>https://sandbox.my.salesforce.com/services/Soap/c/59.0/{org15}</EnterpriseUrl>\n"
        f"   <PartnerUrl>https://sandbox.my.salesforce.com/services/Soap/u/59.0/{org15}</PartnerUrl>\n"
    ).encode()
    tail = b"  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n"
    return head + b"".join(notifications) + tail


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
