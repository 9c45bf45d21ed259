"""Plumbing the two imitated services share: configuration, clock, request and reply.

Nothing here knows about Vitally or Salesforce wire formats; `vitally.py` and
`salesforce.py` do, and `server.py` owns the HTTP side, the lock and the controls.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "DEFAULT_PLAYBOOKS",
    "Clock",
    "ControlError",
    "Reply",
    "Request",
    "SandboxConfig",
    "parse_timestamp",
    "raw_json_tokens",
    "sf_timestamp",
    "vitally_timestamp",
]

DEFAULT_PLAYBOOKS: tuple[tuple[str, str], ...] = (
    ("TAM/CSM Candidate", "segment_tam_csm_candidate"),
    ("Product-led lead", "segment_product_led_lead"),
    ("Account review", "segment_account_review"),
    ("Onboarding", "segment_onboarding"),
    ("Nurture", "segment_nurture"),
)


RAW_JSON_KEY = "$raw_json"


class _RawFragments:
    """JSON text that a real service could send but Python's encoder cannot write (a value nested
    1,500 levels deep, `1e400`, a number of 5,000 digits): a seed holds it as
    `{"$raw_json": "<text>"}`, the store holds a placeholder string, and `Reply.encode` splices the
    text in its place, verbatim. Shared by every sandbox of the process; placeholders are unique."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts: dict[bytes, bytes] = {}  # the placeholder as JSON -> the text sent instead

    def placeholder(self, text: str) -> str:
        with self._lock:
            token = f"\x00raw-json-{len(self._texts)}\x00"
            self._texts[json.dumps(token).encode()] = text.encode()
        return token

    def splice(self, payload: bytes) -> bytes:
        if not self._texts or b"\\u0000raw-json-" not in payload:
            return payload
        with self._lock:
            texts = list(self._texts.items())
        for token, text in texts:
            payload = payload.replace(token, text)
        return payload


_RAW = _RawFragments()


def raw_json_tokens(value: Any) -> Any:
    """`value` (a seed record) with every `{"$raw_json": text}` replaced by a placeholder that
    encodes as `text`, verbatim; everything else as it is."""
    if isinstance(value, dict):
        if set(value) == {RAW_JSON_KEY} and isinstance(value[RAW_JSON_KEY], str):
            return _RAW.placeholder(value[RAW_JSON_KEY])
        return {key: raw_json_tokens(item) for key, item in value.items()}
    if isinstance(value, list):
        return [raw_json_tokens(item) for item in value]
    return value


class ControlError(Exception):
    """A control call (Python method or `/_sandbox/` endpoint) was given bad input.

    The HTTP layer answers it with 400 and `{"error": message}`.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class SandboxConfig:
    """Every knob of the sandbox; the defaults imitate the real services.

    `None` for a credential means "accept any non-empty value".
    """

    latency_ms: float = 0.0
    """Added before every API call (not control calls)."""
    fault_timeout_s: float = 30.0
    """How long a `timeout` fault keeps the client waiting before closing the connection."""
    vitally_api_key: str | None = None
    vitally_rate_limit: int = 1000
    vitally_rate_window_s: float = 60.0
    playbooks: tuple[tuple[str, str], ...] = DEFAULT_PLAYBOOKS
    """Emulated Vitally Playbooks: (segment name, boolean trait key)."""
    sf_token: str | None = None
    sf_client_id: str | None = None
    sf_client_secret: str | None = None
    sf_daily_quota: int = 1_000_000
    sf_page_size: int = 2000
    assignment_rule_owner_id: str | None = None
    """When set, Lead writes without `Sforce-Auto-Assign: FALSE` get this OwnerId."""
    sf_strict_fields: bool = True
    """Reject fields the object's schema does not know (`INVALID_FIELD`), as a real org does."""
    sf_unique_fields: tuple[tuple[str, str], ...] = (("Lead", "Sync_Key__c"),)
    """(object, field) pairs declared unique external ids: writes that would duplicate fail."""

    def updated(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """Return a copy with `changes` (JSON-ish values) applied.

        Raises ControlError naming every unknown key or badly typed value at once.
        """
        known = {f.name: f for f in dataclasses.fields(self)}
        problems: list[str] = []
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                problems.append(f"{key}: unknown setting")
                continue
            try:
                clean[key] = _coerce(key, value)
            except (TypeError, ValueError) as exc:
                problems.append(f"{key}: {exc}")
        if problems:
            raise ControlError("; ".join(problems))
        return dataclasses.replace(self, **clean)

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object (tuples become lists, credentials masked)."""
        out = dataclasses.asdict(self)
        for key in _SECRETS:
            if out[key] is not None:
                out[key] = "***"  # the control API shows that a credential is set, never its value
        out["playbooks"] = [list(p) for p in self.playbooks]
        out["sf_unique_fields"] = [list(p) for p in self.sf_unique_fields]
        return out


_OPTIONAL_STR = {
    "vitally_api_key",
    "sf_token",
    "sf_client_id",
    "sf_client_secret",
    "assignment_rule_owner_id",
}
_SECRETS = ("vitally_api_key", "sf_token", "sf_client_secret")
_NUMBERS = {"latency_ms", "fault_timeout_s", "vitally_rate_window_s"}
_INTS = {"vitally_rate_limit", "sf_daily_quota", "sf_page_size"}
_PAIRS = {"playbooks", "sf_unique_fields"}


def _coerce(key: str, value: Any) -> Any:
    """Check one setting's JSON value and convert it to the dataclass field's type."""
    if key in _OPTIONAL_STR:
        if value is None or (isinstance(value, str) and value):
            return value
        raise TypeError("expected a non-empty string or null")
    if key in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise TypeError("expected a number >= 0")
        return float(value)
    if key in _INTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TypeError("expected an integer >= 1")
        return value
    if key == "sf_strict_fields":
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if key in _PAIRS:
        return _pairs(value)
    raise ValueError("not settable")  # pragma: no cover - every field is listed above


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """A list of [string, string] pairs (`playbooks`, `sf_unique_fields`)."""
    if not isinstance(value, list | tuple) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(s, str) and s for s in p) for p in value
    ):
        raise TypeError("expected a list of [string, string] pairs")
    return tuple((str(a), str(b)) for a, b in value)


@dataclass(frozen=True)
class Request:
    """One API request as the services see it (header names lower-cased)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        """The first value of query parameter `name`, or None."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Reply:
    """What a service answers: status, a JSON-able body (None = no body) and extra headers.

    A service's body may share objects with its live state (copying every record read
    would halve throughput); `encode()` must therefore run under the server lock.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    _payload: bytes | None = None

    def encode(self) -> bytes:
        """The body as compact JSON bytes (empty for no body); computed once."""
        if self._payload is None:
            body = self.body
            self._payload = b"" if body is None else _RAW.splice(json.dumps(body, separators=(",", ":")).encode())
        return self._payload


class Clock:
    """The sandbox's notion of now: real UTC time, shifted or frozen by the clock control.

    `stamp()` hands out modification timestamps that strictly increase (by at least
    1 ms) so that two writes in the same millisecond never share an `updatedAt`.
    Thread-safe on its own because the rate limiter and the call log read it too.
    """

    def __init__(self, now: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._fixed: datetime | None = _aware(now) if now is not None else None
        self._offset = timedelta(0)
        self._last: datetime | None = None

    def now(self) -> datetime:
        """Current sandbox time (aware, UTC)."""
        with self._lock:
            return self._now()

    def _now(self) -> datetime:
        if self._fixed is not None:
            return self._fixed
        return datetime.now(UTC) + self._offset

    def is_fixed(self) -> bool:
        """True while the clock is frozen by `set`."""
        with self._lock:
            return self._fixed is not None

    def set(self, now: datetime) -> None:
        """Freeze the clock at `now`; later stamps restart from it."""
        with self._lock:
            self._fixed = _aware(now)
            self._last = None

    def advance(self, seconds: float) -> None:
        """Move the clock forward (frozen or real) by `seconds`."""
        with self._lock:
            if self._fixed is not None:
                self._fixed += timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)

    def use_real(self) -> None:
        """Back to real time with no offset; later stamps restart from it."""
        with self._lock:
            self._fixed = None
            self._offset = timedelta(0)
            self._last = None

    def stamp(self) -> datetime:
        """A modification time: now at millisecond precision, strictly after the previous stamp."""
        with self._lock:
            now = self._now()
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            if self._last is not None and now <= self._last:
                now = self._last + timedelta(milliseconds=1)
            self._last = now
            return now


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def vitally_timestamp(value: datetime) -> str:
    """Vitally's timestamp spelling: `2026-11-22T10:00:00.000Z`."""
    value = _aware(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def sf_timestamp(value: datetime) -> str:
    """Salesforce's datetime spelling: `2026-11-22T10:00:00.000+0000`."""
    value = _aware(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_timestamp(value: Any) -> datetime | None:
    """Parse an ISO 8601 timestamp (`Z`, `+0000` or `+00:00` offsets); None if it is not one."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    text = value
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"  # +0000 → +00:00, which fromisoformat takes
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _aware(parsed)
