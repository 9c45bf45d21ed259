"""The sandbox's Slack: the Web API methods crm-sync's announcements use and an incoming webhook, for
one workspace with one channel, `#sales-leads`.

Wire format as Slack documents it (tests/fixtures/real/SOURCES.md, Slack rows):

- `POST /api/chat.postMessage` (JSON body, `Authorization: Bearer xoxb-…`): HTTP 200 with `{"ok":
  true, "channel", "ts", "message"}`, or `{"ok": false, "error": code}` (`not_authed`,
  `invalid_auth`, `channel_not_found`, `no_text`, `msg_too_long` past 40,000 characters); message
  `metadata` (`event_type`, `event_payload`) is kept with the message. Slack allows about one message
  a second per channel, with short bursts: past a burst (`SandboxConfig.slack_burst`, 50) the answer is HTTP 429 with
  `Retry-After` and `{"ok": false, "error": "ratelimited"}`.
- `GET /api/conversations.history?channel=&oldest=&limit=&cursor=&include_all_metadata=`: the
  channel's messages newest first, strictly after `oldest`, `limit` a page (at most 999), with
  `has_more` and `response_metadata.next_cursor`; a message's `metadata` only with
  `include_all_metadata=true`.
- `POST /services/<team>/<channel>/<token>`: an incoming webhook. `200 ok`; `400 invalid_payload`
  for a body that is not a JSON object, `400 no_text` without `text` or `blocks`; `404 no_service`
  for an unknown URL.

Imports nothing of crm-sync; `server.py` serves it with the others (faults, call log, counters).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final

from sandbox.store import Clock, Reply, Request, SandboxConfig

__all__ = ["CHANNEL_ID", "TEAM_ID", "WEBHOOK_PATH", "SlackService"]

TEAM_ID: Final = "T0SANDBOX"
CHANNEL_ID: Final = "C0SALESLEADS"
CHANNEL_NAME: Final = "sales-leads"
WEBHOOK_PATH: Final = f"/services/{TEAM_ID}/B0SALESLEADS/"
BOT_ID: Final = "B0CRMSYNC"
_MAX_TEXT = 40_000
_WEBHOOK = re.compile(rf"{re.escape(WEBHOOK_PATH)}[A-Za-z0-9]{{8,}}\Z")


class SlackService:
    """One channel's messages, posted by the Web API or the webhook."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.messages: list[dict[str, Any]] = []  # oldest first
        self._tokens = float(config.slack_burst)
        self._refilled = time.monotonic()
        self._last_ts = 0.0

    @staticmethod
    def template(path: str) -> str:
        """The path for the call counters (a webhook's secret token replaced)."""
        return WEBHOOK_PATH + ":token" if path.startswith(WEBHOOK_PATH) else path

    def handle(self, request: Request) -> Reply:
        if request.path.startswith("/services/"):
            return self._webhook(request)
        method = request.path.rsplit("/", 1)[-1]
        auth = request.headers.get("authorization") or ""
        if not auth.startswith("Bearer "):
            return _error("not_authed")
        token = auth[len("Bearer ") :]
        if not token.startswith(("xoxb-", "xoxp-")) or self.config.slack_token not in (None, token):
            return _error("invalid_auth")
        if method == "chat.postMessage" and request.method == "POST":
            return self._post(request)
        if method == "conversations.history" and request.method in ("GET", "POST"):
            return self._history(request)
        return _error("unknown_method", 404)

    # -- chat.postMessage ---------------------------------------------------------------------------

    def _post(self, request: Request) -> Reply:
        try:
            body = json.loads(request.body)
        except ValueError:
            return _error("invalid_json")
        if not isinstance(body, dict):
            return _error("invalid_json")
        if body.get("channel") not in (CHANNEL_ID, f"#{CHANNEL_NAME}", CHANNEL_NAME):
            return _error("channel_not_found")
        text = body.get("text")
        if not text and not body.get("blocks"):
            return _error("no_text")
        if isinstance(text, str) and len(text) > _MAX_TEXT:
            return _error("msg_too_long")
        if not self._admit():
            return Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
        message = self._append(str(text or ""), body.get("metadata"))
        shown = {k: v for k, v in message.items() if k != "metadata"}
        return Reply(200, {"ok": True, "channel": CHANNEL_ID, "ts": message["ts"], "message": shown})

    def _admit(self) -> bool:
        """A token bucket in real time: `slack_burst` at once, then one a second."""
        now = time.monotonic()
        self._tokens = min(float(self.config.slack_burst), self._tokens + (now - self._refilled))
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _append(self, text: str, metadata: Any, *, bot: bool = True) -> dict[str, Any]:
        # Slack's own clock stamps a message (the sandbox clock moves business dates, not Slack's).
        ts = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = ts
        message: dict[str, Any] = {"type": "message", "subtype": "bot_message", "text": text, "ts": f"{ts:.6f}"}
        if bot:
            message["bot_id"] = BOT_ID
        if isinstance(metadata, dict) and isinstance(metadata.get("event_type"), str):
            message["metadata"] = {"event_type": metadata["event_type"], "event_payload": metadata.get("event_payload")}
        self.messages.append(message)
        return message

    # -- conversations.history ----------------------------------------------------------------------

    def _history(self, request: Request) -> Reply:
        params = {k: v[0] for k, v in request.query.items() if v}
        if request.method == "POST" and request.body:
            try:
                params.update({k: str(v) for k, v in json.loads(request.body).items()})
            except (ValueError, AttributeError):
                return _error("invalid_json")
        if params.get("channel") != CHANNEL_ID:
            return _error("channel_not_found")
        try:
            oldest = float(params.get("oldest") or 0)
        except ValueError:
            return _error("invalid_ts_oldest")
        try:
            limit = max(1, min(999, int(params.get("limit") or 100)))
            start = int(params.get("cursor") or 0)
        except ValueError:
            return _error("invalid_cursor")
        with_metadata = params.get("include_all_metadata") in ("true", "1")
        found = [m for m in reversed(self.messages) if float(m["ts"]) > oldest]
        page = found[start : start + limit]
        more = start + limit < len(found)
        shown = [m if with_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in page]
        return Reply(
            200,
            {
                "ok": True,
                "messages": shown,
                "has_more": more,
                "pin_count": 0,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            },
        )

    # -- the incoming webhook -----------------------------------------------------------------------

    def _webhook(self, request: Request) -> Reply:
        if request.method != "POST" or not _WEBHOOK.match(request.path):
            return _text(404, "no_service")
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _text(400, "invalid_payload")
        if not body.get("text") and not body.get("blocks"):
            return _text(400, "no_text")
        if not self._admit():
            return Reply.raw(429, b"rate_limited", "text/plain", {"Retry-After": "1"})
        self._append(str(body.get("text") or ""), None)
        return _text(200, "ok")

    def snapshot(self) -> dict[str, Any]:
        return {"channel": CHANNEL_ID, "messages": [dict(m) for m in self.messages]}


def _error(code: str, status: int = 200) -> Reply:
    return Reply(status, {"ok": False, "error": code})


def _text(status: int, text: str) -> Reply:
    return Reply.raw(status, text.encode(), "text/html")
