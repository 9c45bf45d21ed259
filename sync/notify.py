"""Alerts: the daemon tells people when something breaks, through a Slack incoming webhook and a
generic JSON webhook ([alerts]).

What is sent, after a cycle:

- `cycle_failed` (critical): the cycle ended on an error; with the error's kind (auth,
  unreachable, …) and how many cycles failed in a row;
- `writes_parked` (warning): writes refused for good in this cycle (see `failed`, `retry`);
- `quota_stopped` (warning): the API quota stopped the writes; the rest stay pending;
- `conflicts` (warning): the cycle found more conflicts than `conflicts_above`;
- `recovered` (info): the first cycle that ran to its end after a `cycle_failed` alert went out.

An alert carries counts, kinds, the run id and the instance's name: never an error message, a
record, a person's name or email, a URL or a secret (the webhook URLs are secrets themselves:
from the environment or an owner-only file, never logged). The same alert (kind, and the error's
kind for a failed cycle) goes out at most once per `repeat_seconds` while it lasts, so a flapping
failure sends one alert and one recovery, not one per cycle; the next one that goes out says how
many were held back.

Sending never holds up or fails a cycle: alerts wait in a bounded queue for a thread of their own,
each request gives up after `timeout_seconds`, and a sink that cannot be reached is logged once
(`alert_undelivered`, with the HTTP status or the kind of network error) until it works again.
Requests go through the standard library's `urllib.request`, which logs nothing: requests and
urllib3 log the request path at DEBUG (`CRM_SYNC_LOG_LEVEL=DEBUG` shows every library's log), and
a Slack webhook's path is its secret.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from core.settings import secret, setting

__all__ = ["ALERT_KINDS", "Alert", "AlertSettings", "Notifier", "Sink"]

AlertKind = Literal["cycle_failed", "writes_parked", "quota_stopped", "conflicts", "recovered"]
ALERT_KINDS: tuple[AlertKind, ...] = ("cycle_failed", "writes_parked", "quota_stopped", "conflicts", "recovered")
Severity = Literal["critical", "warning", "info"]
SinkName = Literal["slack", "webhook"]

_QUEUE_SIZE = 100  # alerts waiting to be sent; past it an alert is dropped (and that is logged once)
_CLOSE_SECONDS = 2.0  # at stop, how long the daemon waits for alerts still queued
_SHOWN_ANSWER = 40  # characters of a webhook's refusal kept in the log (Slack's is a short code)

# Why a cycle failed, in words (the kinds of `sync.daemon`; no message text ever goes out).
_FAILURES = {
    "auth": "a service refused the credentials",
    "unreachable": "a service could not be reached",
    "contract": "a service answered something unexpected",
    "retriable": "a service kept failing after every retry",
    "quota": "the API quota is spent",
    "sync": "a sync error",
    "internal": "an internal error",
}


@dataclass(frozen=True)
class AlertSettings:
    """Who is told when something breaks ([alerts]): a Slack channel, a JSON webhook, both or none."""

    slack_webhook_url: str | None = secret(
        "A Slack incoming webhook's URL (a secret: whoever holds it can post to the channel).",
        env="CRM_SYNC_SLACK_WEBHOOK_URL",
        file="/etc/crm-sync/slack-webhook-url",
    )
    webhook_url: str | None = secret(
        "A URL that receives every alert as a JSON POST (a secret too: it may carry a token).",
        env="CRM_SYNC_ALERT_WEBHOOK_URL",
    )
    instance: str = setting(
        "crm-sync",
        "This instance's name in alerts, e.g. the org and environment (never a secret or a person).",
        pattern=r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
        hint="1 to 64 letters, digits, '.', '_' or '-'",
    )
    conflicts_above: int = setting(
        50, "Alert when one cycle finds more conflicts than this.", minimum=0, maximum=10_000_000
    )
    repeat_seconds: float = setting(
        3600,
        "The same alert goes out at most once in this many seconds while it lasts (a flapping failure sends one).",
        minimum=0,
        maximum=604_800,
    )
    timeout_seconds: float = setting(
        5, "Seconds before a webhook request gives up (alerts never hold up a cycle).", minimum=0.1, maximum=60
    )


@dataclass(frozen=True)
class Alert:
    """One alert: what, how bad, a one-line summary and the figures behind it (no secret, no record)."""

    kind: AlertKind
    severity: Severity
    summary: str
    run_id: int | None
    details: Mapping[str, int | str | None] = field(default_factory=dict)
    repeats: int = 0  # alerts of the same kind held back since the last one that went out
    at: str = ""


@dataclass(frozen=True)
class Sink:
    """Where alerts go: a name for the log and the metrics, the URL (a secret) and the body's shape."""

    name: SinkName
    url: str = field(repr=False)


def slack_body(alert: Alert, instance: str) -> dict[str, Any]:
    """Slack's incoming-webhook payload: `text` (mrkdwn), shown in the channel and in notifications."""
    icon = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":white_check_mark:"}[alert.severity]
    figures = ", ".join(f"{key} {value}" for key, value in alert.details.items() if value is not None)
    repeats = f" ({alert.repeats} more since the last alert)" if alert.repeats else ""
    text = f"{icon} *crm-sync {instance}*: {alert.summary}{repeats}"
    if figures:
        text += f"\n_{figures}_"
    return {"text": text}


def json_body(alert: Alert, instance: str) -> dict[str, Any]:
    """The generic webhook's payload: one JSON object per alert."""
    return {
        "source": "crm-sync",
        "instance": instance,
        "alert": alert.kind,
        "severity": alert.severity,
        "summary": alert.summary,
        "run_id": alert.run_id,
        "at": alert.at,
        "repeats": alert.repeats,
        "details": dict(alert.details),
    }


_BODIES: Mapping[SinkName, Callable[[Alert, str], dict[str, Any]]] = {"slack": slack_body, "webhook": json_body}


def _post(url: str, body: Mapping[str, Any], timeout: float) -> None:
    """POST `body` as JSON; raises `urllib.error.URLError` (HTTPError included) or OSError."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "crm-sync"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s): checked by sync.config
        response.read()


def _reason(error: Exception) -> str:
    """Why a delivery failed, without the URL: the HTTP status and the service's short answer, or
    the kind of network error."""
    if isinstance(error, urllib.error.HTTPError):
        try:
            answer = error.read(_SHOWN_ANSWER + 1).decode("utf-8", "replace").strip()
        except OSError:
            answer = ""
        words = answer if answer.replace("_", "").isalnum() and len(answer) <= _SHOWN_ANSWER else ""
        return f"HTTP {error.code}" + (f" {words}" if words else "")
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    return type(cause).__name__


Log = Callable[[str, Mapping[str, Any]], None]
Counted = Callable[[str, str], None]  # (what, label): "alert" kind, or "delivery" "<sink>:<ok|failed>"


class Notifier:
    """Decides which alerts a finished cycle deserves, holds back repeats, and sends the rest from
    a thread of its own (see the module docstring).

    `observe(event, data)` sees the cycle's log events (it notes `quota_exhausted`);
    `cycle_done(...)` decides; `close()` lets queued alerts go out for a moment, then stops.
    `clock` is monotonic seconds; `post` sends one request (tests may replace it)."""

    def __init__(
        self,
        settings: AlertSettings,
        log: Log,
        *,
        counted: Counted = lambda what, label: None,
        clock: Callable[[], float] = time.monotonic,
        post: Callable[[str, Mapping[str, Any], float], None] = _post,
    ) -> None:
        self.settings = settings
        self.log = log  # the decisions' log: the daemon gives each cycle's (its events carry the run id)
        self._delivery_log = log  # the sending thread's: events of no cycle
        self.counted = counted
        self.clock = clock
        self.post = post
        urls: tuple[tuple[SinkName, str | None], ...] = (
            ("slack", settings.slack_webhook_url),
            ("webhook", settings.webhook_url),
        )
        self.sinks = tuple(Sink(name, url) for name, url in urls if url)
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._failures_in_a_row = 0
        self._failure_alerted = False
        self._quota_seen = False
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._undelivered: set[str] = set()  # sinks whose failure was logged, until one succeeds
        self._dropped_logged = False
        self._thread: threading.Thread | None = None

    # -- deciding (the daemon's main thread) --------------------------------------------------------

    def observe(self, event: str, data: Mapping[str, Any]) -> None:
        """One event of the running cycle's log."""
        if event == "cycle_started":
            self._quota_seen = False  # a cycle whose end was never recorded says nothing about this one
        elif event == "quota_exhausted":
            self._quota_seen = True

    def cycle_done(
        self,
        run_id: int | None,
        outcome: str,
        counts: Mapping[str, int],
        *,
        error_kind: str | None,
        outbox: Mapping[str, int],
    ) -> list[Alert]:
        """The alerts this finished cycle raises (sent, or held back as repeats: both returned)."""
        quota, self._quota_seen = self._quota_seen, False
        alerts = [*self._failure(run_id, outcome, error_kind)]
        if quota:
            pending = outbox.get("pending", 0)
            alerts.append(self._alert("quota_stopped", "warning", run_id, {"pending_writes": pending}))
        parked = counts.get("parked", 0)
        if parked:
            details = {"parked_this_cycle": parked, "parked_in_all": outbox.get("parked", parked)}
            alerts.append(self._alert("writes_parked", "warning", run_id, details))
        conflicts = counts.get("conflicts", 0)
        if conflicts > self.settings.conflicts_above:
            details = {"conflicts": conflicts, "threshold": self.settings.conflicts_above}
            alerts.append(self._alert("conflicts", "warning", run_id, details))
        for alert in alerts:
            self._raise(alert)
        return alerts

    def _failure(self, run_id: int | None, outcome: str, error_kind: str | None) -> list[Alert]:
        if outcome == "failed":
            self._failures_in_a_row += 1
            details = {"error_kind": error_kind or "internal", "failed_in_a_row": self._failures_in_a_row}
            return [self._alert("cycle_failed", "critical", run_id, details)]
        failures, self._failures_in_a_row = self._failures_in_a_row, 0
        if outcome in ("ok", "partial") and self._failure_alerted:
            self._failure_alerted = False
            return [self._alert("recovered", "info", run_id, {"failed_cycles_before": failures})]
        return []

    def _alert(self, kind: AlertKind, severity: Severity, run_id: int | None, details: Mapping[str, Any]) -> Alert:
        at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return Alert(kind, severity, _summary(kind, run_id, details), run_id, dict(details), at=at)

    def _raise(self, alert: Alert) -> None:
        key = alert.kind if alert.kind != "cycle_failed" else f"cycle_failed:{alert.details.get('error_kind')}"
        now = self.clock()
        last = self._last_sent.get(key)
        if last is not None and now - last < self.settings.repeat_seconds:
            self._held[key] = self._held.get(key, 0) + 1
            self.log("alert", {"alert": alert.kind, "severity": alert.severity, "sent": False, "held_back": True})
            return
        self._last_sent[key] = now
        if alert.kind == "cycle_failed":
            self._failure_alerted = True
        alert = replace(alert, repeats=self._held.pop(key, 0))
        self.counted("alert", alert.kind)
        sent = {"sent": bool(self.sinks), "held_back": False, "repeats": alert.repeats}
        self.log("alert", {"alert": alert.kind, "severity": alert.severity, **sent})
        if self.sinks:
            self._enqueue(alert)

    def _enqueue(self, alert: Alert) -> None:
        self._start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            if not self._dropped_logged:
                self._dropped_logged = True
                self.log("alert_dropped", {"alert": alert.kind, "queued": _QUEUE_SIZE})

    # -- sending (a thread of its own) ----------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_all, name="alerts", daemon=True)
            self._thread.start()

    def _send_all(self) -> None:
        while (alert := self._queue.get()) is not None:
            for sink in self.sinks:
                self._deliver(sink, alert)

    def _deliver(self, sink: Sink, alert: Alert) -> None:
        body = _BODIES[sink.name](alert, self.settings.instance)
        try:
            self.post(sink.url, body, self.settings.timeout_seconds)
        except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
            self.counted("delivery", f"{sink.name}:failed")
            if sink.name not in self._undelivered:
                self._undelivered.add(sink.name)
                reason = _reason(error)
                self._delivery_log("alert_undelivered", {"sink": sink.name, "alert": alert.kind, "reason": reason})
            return
        self.counted("delivery", f"{sink.name}:ok")
        if sink.name in self._undelivered:
            self._undelivered.discard(sink.name)
            self._delivery_log("alert_delivered", {"sink": sink.name, "alert": alert.kind})

    def close(self, timeout: float = _CLOSE_SECONDS) -> None:
        """Stop the sending thread once the queued alerts went out, waiting `timeout` at most."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return  # the thread is a daemon thread: it ends with the process
        self._thread.join(timeout)


def _summary(kind: AlertKind, run_id: int | None, details: Mapping[str, Any]) -> str:
    """One line for people: what happened, what it means, what to do. Figures only, no records."""
    run = f"cycle {run_id}" if run_id is not None else "a cycle"
    if kind == "cycle_failed":
        why = _FAILURES.get(str(details.get("error_kind")), "an error")
        return f"{run} failed: {why}. Nothing planned is lost; see the daemon's log (cycle_failed, run {run_id})."
    if kind == "writes_parked":
        return (
            f"{details['parked_this_cycle']} writes were refused for good in {run} and are parked. "
            "List them with `crm-sync failed`, fix the cause, then `crm-sync retry`."
        )
    if kind == "quota_stopped":
        return (
            f"writes stopped in {run}: the API quota is spent; {details['pending_writes']} writes stay "
            "pending for the next cycle."
        )
    if kind == "conflicts":
        return (
            f"{run} found {details['conflicts']} conflicts (values people changed since crm-sync wrote them), "
            f"more than {details['threshold']}; they are left alone."
        )
    return f"{run} ran to its end again after {details['failed_cycles_before']} failed cycles."
