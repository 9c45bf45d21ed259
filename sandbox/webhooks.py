"""A local webhook receiver: the two places crm-sync's alerts go, imitated on 127.0.0.1.

- A **Slack incoming webhook** at `/services/<team>/<channel>/<token>`, answering as Slack
  documents ("Sending messages using incoming webhooks", its "Handling errors" section): `200`
  with the plain-text body `ok`; `400 invalid_payload` when the body is not a JSON object, `400
  no_text` when it has neither `text` nor `blocks`, `404 no_service` when the URL names no
  webhook (a revoked one, or a wrong token), `410 channel_is_archived` when told the channel was
  archived; and, like Slack, it refuses more than one message a second per webhook with `429`
  and `Retry-After: 1` unless `slack_rate_limit` is off.
- A **generic JSON webhook** at `/hooks/<name>`: `200 {"ok": true}` for a JSON object, `400`
  otherwise.

Every request is kept (path, parsed body, `Content-Type`) for tests to read; `fail_next(status,
body, count)` makes the next requests fail, `set_down(True)` closes each connection without an
answer (an unreachable webhook). Imports nothing of crm-sync.

    with WebhookReceiver() as hooks:
        hooks.slack_url   # http://127.0.0.1:<port>/services/T0SANDBOX/B0SANDBOX/<token>
        hooks.json_url    # http://127.0.0.1:<port>/hooks/crm-sync
        hooks.received    # [{"path": ..., "body": {...}, "content_type": ..., "status": 200}, ...]
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["WebhookReceiver"]

_TEAM, _CHANNEL = "T0SANDBOX", "B0SANDBOX"
_MAX_BODY = 1 << 20


@dataclass
class _Failure:
    status: int
    body: str
    count: int


class WebhookReceiver:
    """A Slack incoming webhook and a generic JSON webhook on an ephemeral loopback port."""

    def __init__(self, *, port: int = 0, slack_rate_limit: bool = True) -> None:
        self.token = secrets.token_hex(12)  # the part of a Slack webhook URL that is its secret
        self.slack_rate_limit = slack_rate_limit
        self.archived = False
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._down = False
        self._last_slack: float | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhooks", daemon=True)

    # -- life ------------------------------------------------------------------------------------

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def slack_url(self) -> str:
        return f"{self.url}/services/{_TEAM}/{_CHANNEL}/{self.token}"

    @property
    def json_url(self) -> str:
        return f"{self.url}/hooks/crm-sync"

    # -- controls ----------------------------------------------------------------------------------

    def fail_next(self, status: int, body: str = "", count: int = 1) -> None:
        """The next `count` requests (either webhook) answer `status` with `body`."""
        with self._lock:
            self._failures.append(_Failure(status, body, count))

    def set_down(self, down: bool) -> None:
        """While down, every connection is closed without an answer."""
        with self._lock:
            self._down = down

    def messages(self, kind: str = "slack") -> list[dict[str, Any]]:
        """The bodies accepted (status 200) by the Slack webhook (`slack`) or the JSON one (`json`)."""
        prefix = "/services/" if kind == "slack" else "/hooks/"
        with self._lock:
            return [r["body"] for r in self.received if r["path"].startswith(prefix) and r["status"] == 200]

    # -- answering ---------------------------------------------------------------------------------

    def _answer(self, path: str, content_type: str, raw: bytes) -> tuple[int, str, str]:
        """(status, content type, body) for one POST; records it."""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            status, kind, text = self._decide(path, content_type, body)
            self.received.append({"path": path, "body": body, "content_type": content_type, "status": status})
        return status, kind, text

    def _decide(self, path: str, content_type: str, body: Any) -> tuple[int, str, str]:
        """Called with the lock held."""
        if self._failures:
            failure = self._failures[0]
            failure.count -= 1
            if failure.count <= 0:
                self._failures.pop(0)
            return failure.status, "text/plain", failure.body
        if path.startswith("/services/"):
            return self._slack(path, content_type, body)
        if path.startswith("/hooks/") and len(path) > len("/hooks/"):
            if not isinstance(body, dict):
                return 400, "application/json", json.dumps({"ok": False, "error": "expected a JSON object"})
            return 200, "application/json", json.dumps({"ok": True})
        return 404, "text/plain", "not found"

    def _slack(self, path: str, content_type: str, body: Any) -> tuple[int, str, str]:
        if path != f"/services/{_TEAM}/{_CHANNEL}/{self.token}":
            return 404, "text/plain", "no_service"
        if not content_type.startswith("application/json") or not isinstance(body, dict):
            return 400, "text/plain", "invalid_payload"
        if not body.get("text") and not body.get("blocks"):
            return 400, "text/plain", "no_text"
        if self.archived:
            return 410, "text/plain", "channel_is_archived"
        now = time.monotonic()
        if self.slack_rate_limit and self._last_slack is not None and now - self._last_slack < 1:
            return 429, "text/plain", "rate_limited"
        self._last_slack = now
        return 200, "text/plain", "ok"


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def do_POST(self) -> None:
            with receiver._lock:
                down = receiver._down
            if down:
                self.close_connection = True
                self.connection.close()
                return
            length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
            raw = self.rfile.read(length)
            status, kind, text = receiver._answer(self.path, self.headers.get("Content-Type", ""), raw)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """No access log."""

    return Handler
