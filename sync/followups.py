"""Follow-ups of a lead write: the announcement of a new lead in Slack (`#sales-leads`, "tagged as
'Onboarding referral'") and the Zendesk ticket of a support request from the demo form.

Both are outbox writes of their own kinds (`slack`/`post_lead`, `zendesk`/`create_ticket`), queued
once per lead, ever, in the transaction that records the lead write they follow (a new lead's upsert
or an inbound lead's round-robin owner; a support classification): the announcement needs the lead's
Salesforce Id for its link, and neither may exist for a lead write that did not happen. They are sent
after every CRM write of the cycle (`sync.apply`), so a slow or failing Slack or Zendesk never delays
or fails a CRM write; what fails stays pending (or is parked when refused for good) and is sent again
by the next cycle.

Exactly once:

- an attempt is counted and committed before its request goes out (`StateDB.begin_attempt`); after a
  crash or a lost answer the row is pending with an attempt counted: it *may* have taken effect;
- such a ticket is looked up by its external id before it is created again (and its create carries
  the same value as `Idempotency-Key`, which Zendesk honours for two hours);
- such an announcement posted with a bot token is looked up in the channel's history (crm-sync's
  message metadata names the lead) before it is posted again. Through an incoming webhook it cannot
  be looked up: it is posted again, so a crash between the post and its commit (or a lost answer)
  can repeat that one post. README "Announcements and tickets" says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.base import AnnouncePort, TicketPort
from connectors.slack import AnnounceSettings
from connectors.zendesk import ZendeskSettings
from core.errors import RateLimitedError, StopRequested, SyncError, WriteRejectedError
from core.triage import TriageClassifier
from state import OutboxRow, PlannedWrite, StateDB
from sync.vocabulary import CycleReport, Hooks, iso

__all__ = ["FollowUpSender", "FollowUps", "Outlets", "lead_link", "ticket_id_for"]

_MAX_RATE_WAIT = 30.0  # seconds one Slack rate limit may hold the follow-ups (never a CRM write)
_RATE_WAIT_BUDGET = 120.0  # seconds of rate-limit waits per cycle; then the rest waits for the next cycle
_HISTORY_MARGIN = 120.0  # seconds before an uncertain attempt from which the channel is read back
_STOP_CHECK_SECONDS = 0.25  # a rate-limit wait asks this often whether to stop


@dataclass(frozen=True)
class Outlets:
    """The services a cycle writes to besides the CRM: where new leads are announced, where support
    requests become tickets, and the LLM asked about demo-form submissions. None: not configured."""

    announce: AnnouncePort | None = None
    tickets: TicketPort | None = None
    llm: TriageClassifier | None = None


def lead_link(instance_url: str, lead_id: str) -> str:
    """The lead's record page in Salesforce Lightning."""
    return f"{instance_url.rstrip('/')}/lightning/r/Lead/{lead_id}/view"


def ticket_id_for(lead_id: str) -> str:
    """The external id (and idempotency key) of the ticket a support lead gets."""
    return f"crm-sync-lead-{lead_id}"


def _escape(text: str) -> str:
    """Text as Slack's mrkdwn shows it literally (its three control characters escaped)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class FollowUps:
    """Decides, for a lead write that succeeded, which follow-ups it gets, and queues them."""

    def __init__(
        self, state: StateDB, announcements: AnnounceSettings, zendesk: ZendeskSettings, instance_url: str
    ) -> None:
        self.state = state
        self.announcements = announcements
        self.zendesk = zendesk
        self.instance_url = instance_url

    def lead_written(self, write: PlannedWrite, lead_id: str, run_id: int, at: str) -> int:
        """Queue what the lead write `write` (done: the lead is `lead_id`) calls for, in the caller's
        transaction; returns how many follow-ups were queued."""
        queued = [f for f in (self._announcement(write, lead_id), self._ticket(write, lead_id)) if f is not None]
        return self.state.enqueue(queued, run_id, at) if queued else 0

    def _announcement(self, write: PlannedWrite, lead_id: str) -> PlannedWrite | None:
        """A new lead (crm-sync's upsert) or an inbound lead the round robin gave an owner."""
        if not self.announcements.enabled:
            return None
        new = write.op == "upsert_lead"
        routed = write.op == "update_lead" and "OwnerId" in write.payload and write.owner is not None
        if not (new or routed) or self.state.queued_for("slack", lead_id):
            return None
        raw = {} if new else (self.state.sf_raw("Lead", lead_id) or {})
        company = str(write.payload.get("Company") or raw.get("Company") or "(no company)")
        label = self.announcements.label(write.rule)
        owner = write.owner.name if write.owner is not None else "Salesforce's default owner"
        link = lead_link(self.instance_url, lead_id)
        text = f":new: *{_escape(label)}*: <{link}|{_escape(company)}>, owner *{_escape(owner)}*"
        return PlannedWrite(
            system="slack",
            op="post_lead",
            record=lead_id,
            account=write.account,
            fields={"label": label, "company": company, "owner": owner, "link": link},
            rule=write.rule,
            reason=f"announce the new lead ({label})",
            payload={"text": text, "lead_id": lead_id},
        )

    def _ticket(self, write: PlannedWrite, lead_id: str) -> PlannedWrite | None:
        """A support request: the lead classified support by crm-sync's write."""
        if not self.zendesk.enabled or write.op != "update_lead" or write.payload.get("Classification__c") != "support":
            return None
        external_id = ticket_id_for(lead_id)
        raw = self.state.sf_raw("Lead", lead_id) or {}
        email = raw.get("Email")
        if not isinstance(email, str) or "@" not in email or self.state.queued_for("zendesk", external_id):
            return None  # no address to answer (the lead stays classified support, unowned)
        name = " ".join(str(raw.get(k) or "") for k in ("FirstName", "LastName")).strip() or email
        company = str(raw.get("Company") or "")
        text = str(raw.get("Form_Text__c") or "").strip() or "(the demo form's text was empty)"
        ticket: dict[str, Any] = {
            "external_id": external_id,
            "subject": f"Support request from the demo form{': ' + company if company else ''}"[:150],
            "comment": {"body": f'{text}\n\n(Sent through the "book a demo" form; forwarded to support by crm-sync.)'},
            "requester": {"name": name[:255], "email": email},
            "tags": list(self.zendesk.tags),
        }
        if self.zendesk.group_id is not None:
            ticket["group_id"] = self.zendesk.group_id
        return PlannedWrite(
            system="zendesk",
            op="create_ticket",
            record=external_id,
            account=lead_id,
            fields={"lead": lead_id, "requester": email, "subject": ticket["subject"]},
            rule=write.rule,
            reason=f"support request: a Zendesk ticket ({write.reason})"[:255],
            payload=ticket,
        )


def _epoch(at: str | None) -> float:
    if not at:
        return 0.0
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


class FollowUpSender:
    """Sends the pending follow-ups after the cycle's CRM writes (see the module docstring)."""

    def __init__(
        self,
        state: StateDB,
        outlets: Outlets,
        report: CycleReport,
        *,
        checks_history: bool,
        max_posts: int,
        clock: Callable[[], datetime],
        hooks: Hooks,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.state = state
        self.outlets = outlets
        self.report = report
        self.checks_history = checks_history
        self.max_posts = max_posts
        self.clock = clock
        self.hooks = hooks
        self.sleep = sleep
        self._rate_waited = 0.0

    def run(self) -> None:
        """Tickets first (a person is waiting for an answer), then announcements."""
        if self.outlets.tickets is not None:
            self._tickets(self.outlets.tickets)
        if self.outlets.announce is not None:
            self._announcements(self.outlets.announce)

    def _pending(self, system: str, limit: int) -> list[OutboxRow]:
        return [row for rows in self.state.pending_records(system, "", limit) for row in rows]

    # -- tickets ------------------------------------------------------------------------------------

    def _tickets(self, port: TicketPort) -> None:
        for row in self._pending("zendesk", 10_000):
            if self.hooks.should_stop():
                return
            self._begin(row)
            try:
                found = port.find(row.write.record) if row.attempts > 0 else None
                ticket = found if found is not None else port.create(row.write.payload)
            except SyncError as error:
                if self._failed(row, error):
                    return  # Zendesk cannot take any now: the rest waits for the next cycle
                continue
            self._done(row, {"ticket": ticket.get("id")}, "tickets", already=found is not None)

    # -- announcements -----------------------------------------------------------------------------

    def _announcements(self, port: AnnouncePort) -> None:
        rows = self._pending("slack", self.max_posts)
        uncertain = [row for row in rows if row.attempts > 0]
        if uncertain and self.checks_history:
            oldest = min(_epoch(self.state.outbox_updated_at(row.id)) for row in uncertain) - _HISTORY_MARGIN
            try:
                posted = port.posted_since(max(oldest, 0.0))
            except SyncError as error:
                self._unread(uncertain, error)
                return  # cannot tell what went out: post nothing rather than twice
            for row in uncertain:
                if row.write.record in posted:
                    self._done(row, {"posted": True}, "posts", already=True)
            rows = [row for row in rows if not (row.attempts > 0 and row.write.record in posted)]
        for row in rows:
            if self.hooks.should_stop() or not self._post(port, row):
                return

    def _post(self, port: AnnouncePort, row: OutboxRow) -> bool:
        """Post one announcement; False when the rest must wait for the next cycle."""
        while True:
            self._begin(row)
            try:
                ts = port.post(str(row.write.payload["text"]), row.write.record, row.key)
            except RateLimitedError as error:
                if not self._wait(error):
                    self._deferred("slack")
                    return False  # not a failure: Slack asked to wait; the rest goes next cycle
                continue
            except SyncError as error:
                return not self._failed(row, error)
            self._done(row, {"posted": ts or True}, "posts", already=False)
            return True

    def _wait(self, error: RateLimitedError) -> bool:
        """Wait what a rate limit asks (each wait capped, all of a cycle's too); False: give up for now."""
        wait = error.wait_seconds or 1.0
        if wait > _MAX_RATE_WAIT or self._rate_waited + wait > _RATE_WAIT_BUDGET:
            return False  # never sooner than Slack asked: the rest waits for the next cycle
        self._rate_waited += wait
        # In slices, asking between them whether to stop: a stop (SIGTERM) asked during Slack's
        # Retry-After ends the wait within a slice, not after up to 30 s.
        left = wait
        try:
            while left > 0:
                step = min(left, _STOP_CHECK_SECONDS)
                self.sleep(step)
                left -= step
                if self.hooks.should_stop():
                    return False
        except StopRequested:
            return False
        return True

    # -- the outbox ---------------------------------------------------------------------------------

    def _deferred(self, system: str) -> None:
        """The rest of `system`'s follow-ups wait, pending, for the next cycle."""
        left = self.state.outbox_counts_of(system)
        self.report.counts["deferred"] += left
        self.hooks.log("followups_deferred", {"run_id": self.report.run_id, "system": system, "pending": left})

    def _begin(self, row: OutboxRow) -> None:
        with self.state.atomic():
            self.state.begin_attempt([row.id], iso(self.clock()))

    def _done(self, row: OutboxRow, values: Mapping[str, Any], what: str, *, already: bool) -> None:
        at = iso(self.clock())
        with self.state.atomic():
            self.state.mark_done([row.id], at, counted=True)
            self.state.set_last_written(row.write.system, row.write.record, values, self.report.run_id, at)
        self.report.counts["already_there" if already else "applied"] += 1
        if not already:
            self.report.counts[what] += 1

    def _unread(self, uncertain: list[OutboxRow], error: SyncError) -> None:
        """The channel could not be read back: the uncertain posts stay pending with the reason,
        their attempts and times untouched, so the next read looks back from their own last
        attempt (moving the time would let a post that went out fall before the window)."""
        message = f"slack: reading the channel back failed, no post until it is read: {error}"
        with self.state.atomic():
            self.state.note_error([row.id for row in uncertain], message)
        self.report.counts["failed"] += 1
        self.report.failures.append(message)
        self.hooks.log(
            "write_failed",
            {"run_id": self.report.run_id, "rows": [row.id for row in uncertain], "error": message, "parked": False},
        )

    def _failed(self, row: OutboxRow, error: SyncError, *, counted: bool = True) -> bool:
        """Record a failed follow-up: parked when refused for good, else pending. True when the
        service takes nothing now (credentials, unreachable, a rate limit): stop for this cycle."""
        park = isinstance(error, WriteRejectedError)
        message = f"{row.write.system}: {row.write.op} {row.write.record}: {error}"
        with self.state.atomic():
            self.state.mark_failed([row.id], message, iso(self.clock()), park=park, counted=counted)
        self.report.counts["parked" if park else "failed"] += 1
        self.report.failures.append(message)
        self.hooks.log(
            "write_failed", {"run_id": self.report.run_id, "rows": [row.id], "error": message, "parked": park}
        )
        return not park
