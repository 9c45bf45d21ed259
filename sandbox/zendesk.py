"""The sandbox's Zendesk Support: the two ticket endpoints crm-sync uses, for one account.

Wire format as Zendesk documents it (tests/fixtures/real/SOURCES.md, Zendesk rows):

- Authentication by API token: HTTP Basic with `{email}/token` and the token; anything else is
  `401 {"error": "Couldn't authenticate you"}`.
- `POST /api/v2/tickets` with `{"ticket": {...}}`: `201 {"ticket": {...}, "audit": {...}}`. A
  ticket needs a first comment (`comment.body`); a requester (`requester: {name, email}`) is found
  or created by email, and an invalid email is `422 {"error": "RecordInvalid", "description":
  "Record validation errors", "details": {...}}`. An `Idempotency-Key` header is remembered for
  two hours (the sandbox clock): the same key with the same body answers the first ticket again
  with `x-idempotency-lookup: hit` (a first use: `miss`), with another body `400 {"error":
  "IdempotentRequestError", "description": "Request parameters don't match the given idempotency
  key"}`. `external_id` is not unique: two creates without a key make two tickets.
- `GET /api/v2/tickets?external_id=…`: `{"tickets": [...], "next_page": null, "previous_page": null,
  "count": n}`, the tickets carrying that external id.

Imports nothing of crm-sync; `server.py` serves it with the others (faults, call log, counters).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any, Final

from sandbox.store import Clock, Reply, Request, SandboxConfig

__all__ = ["IDEMPOTENCY_HOURS", "ZendeskService"]

IDEMPOTENCY_HOURS: Final = 2
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_AGENT_ID = 900000000001


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ZendeskService:
    """Tickets and their requesters, by id."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.tickets: dict[int, dict[str, Any]] = {}
        self.users: dict[str, int] = {}  # requester email -> user id
        self._keys: dict[str, tuple[str, int, datetime]] = {}  # idempotency key -> (body digest, ticket, when)
        self._next_ticket = 1
        self._next_user = 910000000001

    @staticmethod
    def template(path: str) -> str:
        return re.sub(r"/tickets/\d+", "/tickets/:id", path.removesuffix(".json"))

    def handle(self, request: Request) -> Reply:
        if not _authenticated(request.headers.get("authorization"), self.config.zendesk_token):
            return Reply(401, {"error": "Couldn't authenticate you"})
        path = request.path.removesuffix(".json")
        if path == "/api/v2/tickets" and request.method == "POST":
            return self._create(request)
        if path == "/api/v2/tickets" and request.method == "GET":
            return self._list(request)
        return Reply(404, {"error": "InvalidEndpoint", "description": "Not found"})

    # -- create ---------------------------------------------------------------------------------------

    def _create(self, request: Request) -> Reply:
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(request.body).hexdigest()
        now = self.clock.now()
        if key:
            known = self._keys.get(key)
            if known is not None and now - known[2] < timedelta(hours=IDEMPOTENCY_HOURS):
                if known[0] != digest:
                    return Reply(
                        400,
                        {
                            "error": "IdempotentRequestError",
                            "description": "Request parameters don't match the given idempotency key",
                        },
                    )
                ticket = self.tickets[known[1]]
                return Reply(201, {"ticket": ticket, "audit": _audit(ticket)}, {"x-idempotency-lookup": "hit"})
        try:
            wanted = json.loads(request.body)["ticket"]
            if not isinstance(wanted, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return Reply(400, {"error": "InvalidJSON", "description": "The request body is not a ticket"})
        problem = _invalid(wanted)
        if problem is not None:
            return Reply(422, {"error": "RecordInvalid", "description": "Record validation errors", "details": problem})
        ticket = self._ticket(wanted, now)
        headers = {"Location": ticket["url"]}
        if key:
            self._keys[key] = (digest, ticket["id"], now)
            headers["x-idempotency-lookup"] = "miss"
        return Reply(201, {"ticket": ticket, "audit": _audit(ticket)}, headers)

    def _ticket(self, wanted: dict[str, Any], now: datetime) -> dict[str, Any]:
        requester = wanted.get("requester") or {}
        email = str(requester.get("email") or "").casefold()
        if email not in self.users:
            self.users[email] = self._next_user
            self._next_user += 1
        ticket_id = self._next_ticket
        self._next_ticket += 1
        body = str((wanted.get("comment") or {}).get("body") or wanted.get("description") or "")
        subject = str(wanted.get("subject") or body[:80])
        ticket = {
            "url": f"https://sandbox.zendesk.com/api/v2/tickets/{ticket_id}.json",
            "id": ticket_id,
            "external_id": wanted.get("external_id"),
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": _stamp(now),
            "updated_at": _stamp(now),
            "type": wanted.get("type"),
            "subject": subject,
            "raw_subject": subject,
            "description": body,
            "priority": wanted.get("priority"),
            "status": wanted.get("status") or "new",
            "recipient": None,
            "requester_id": self.users[email],
            "submitter_id": _AGENT_ID,
            "assignee_id": None,
            "organization_id": None,
            "group_id": wanted.get("group_id"),
            "collaborator_ids": [],
            "follower_ids": [],
            "email_cc_ids": [],
            "has_incidents": False,
            "is_public": bool((wanted.get("comment") or {}).get("public", True)),
            "due_at": None,
            "tags": sorted({str(t) for t in wanted.get("tags") or []}),
            "custom_fields": [],
            "satisfaction_rating": None,
            "sharing_agreement_ids": [],
            "followup_ids": [],
            "brand_id": 360002256672,
            "allow_channelback": False,
            "allow_attachments": True,
        }
        self.tickets[ticket_id] = ticket
        return ticket

    # -- list -----------------------------------------------------------------------------------------

    def _list(self, request: Request) -> Reply:
        external_id = request.param("external_id")
        found = [t for t in self.tickets.values() if external_id is None or t["external_id"] == external_id]
        return Reply(200, {"tickets": found, "next_page": None, "previous_page": None, "count": len(found)})

    def snapshot(self) -> dict[str, Any]:
        return {"tickets": [dict(t) for t in self.tickets.values()], "users": dict(self.users)}


def _authenticated(header: str | None, wanted: str | None) -> bool:
    """HTTP Basic with `{email}/token` and a token (`wanted`, when the sandbox insists on one)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, token = base64.b64decode(header[len("Basic ") :]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return user.endswith("/token") and "@" in user and bool(token) and wanted in (None, token)


def _invalid(wanted: dict[str, Any]) -> dict[str, Any] | None:
    """Zendesk's `details` for a ticket it refuses, or None."""
    comment = wanted.get("comment") or {}
    if not str(comment.get("body") or wanted.get("description") or "").strip():
        return {"base": [{"description": "Description: cannot be blank", "error": "BlankValue"}]}
    requester = wanted.get("requester")
    if requester is not None:
        email = requester.get("email") if isinstance(requester, dict) else None
        if not isinstance(email, str) or not _EMAIL.fullmatch(email):
            return {"requester": [{"description": "Requester: Email is invalid", "error": "InvalidValue"}]}
    return None


def _audit(ticket: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": 650000000000 + int(ticket["id"]),
        "ticket_id": ticket["id"],
        "created_at": ticket["created_at"],
        "author_id": _AGENT_ID,
        "metadata": {"system": {"client": "crm-sync"}, "custom": {}},
        "events": [{"type": "Comment", "body": ticket["description"], "public": ticket["is_public"]}],
        "via": ticket["via"],
    }
