"""Plumbing the two imitated services share: configuration, clock, request and reply.

Nothing here knows about Vitally or Salesforce wire formats; `vitally.py` and
`salesforce.py` do, and `server.py` owns the HTTP side, the lock and the controls.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import msgspec

from sandbox.schema import check_overrides

__all__ = [
    "API_USER_ID",
    "DEFAULT_OWNER_USER_ID",
    "DEFAULT_PLAYBOOKS",
    "INBOUND_QUEUE_ID",
    "REAL_ORG",
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


# The org's own principals (case-safe 18-character ids): the integration user the API calls run
# as, the default lead owner of Lead Settings when it is a user, and the inbound queue.
API_USER_ID: Final = "0058d000000APIUAA4"
DEFAULT_OWNER_USER_ID: Final = "0058d000000OWNRAA4"
INBOUND_QUEUE_ID: Final = "00G8d000000QUEUEA4"

LeadOwnerMode = Literal["none", "user", "queue"]
PlaybookMode = Literal["in_put", "delayed"]

# What each switch that follows `real_org` resolves to: (legacy, real org). `real_org` is on by
# default (the real services are the spec); the legacy values are the sandbox's earlier, invented
# shape (leads without an owner, no State/Country picklists, Playbooks inside the PUT), kept only
# behind an explicit `real_org=False` for a test that says why it needs it.
REAL_ORG: Final[Mapping[str, tuple[Any, Any]]] = {
    "sf_enforce_schema": (True, True),
    "sf_default_lead_owner": ("none", "user"),
    "sf_state_country_picklists": (False, True),
    "vitally_playbooks": ("in_put", "delayed"),
    "vitally_segment_links": (True, True),
}


class ControlError(Exception):
    """A control call (Python method or `/_sandbox/` endpoint) was given bad input.

    The HTTP layer answers it with 400 and `{"error": message}`.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class SandboxConfig:
    """Every knob of the sandbox.

    `None` for a credential means "accept any non-empty value". The switches listed in `REAL_ORG`
    are `None` by default, which means "as `real_org` says": as a real org and workspace do
    (`real_org` is on by default), or the legacy value of `REAL_ORG` with `real_org=False`.
    Setting one explicitly overrides `real_org` for that switch alone; read the
    resolved value through the property of the same name without its prefix (`enforce_schema`,
    `default_lead_owner`, `state_country_picklists`, `playbooks_delayed`, `segment_links`).
    """

    latency_ms: float = 0.0
    """Added before every API call (not control calls)."""
    fault_timeout_s: float = 30.0
    """How long a `timeout` fault keeps the client waiting before closing the connection."""
    slack_burst: int = 50
    """Slack messages let through at once before the channel is held to one a second (sandbox/slack.py)."""
    vitally_api_key: str | None = None
    vitally_rate_limit: int = 1000
    vitally_rate_window_s: float = 60.0
    playbooks: tuple[tuple[str, str], ...] = DEFAULT_PLAYBOOKS
    """Emulated Vitally Playbooks: (segment name, boolean trait key)."""
    sf_token: str | None = None
    slack_token: str | None = None
    """The only Slack bot token accepted (None: any `xoxb-`/`xoxp-` token)."""
    zendesk_token: str | None = None
    """The only Zendesk API token accepted (None: any non-empty token)."""
    sf_client_id: str | None = None
    sf_client_secret: str | None = None
    sf_daily_quota: int = 1_000_000
    sf_page_size: int = 2000
    assignment_rule_owner_id: str | None = None
    """When set, Lead writes without `Sforce-Auto-Assign: FALSE` get this OwnerId."""
    sf_strict_fields: bool = True
    """Reject fields the object's schema does not know (`INVALID_FIELD`), as a real org does."""
    real_org: bool = True
    """Every switch below that is left `None` behaves as a real org and workspace do; `False`: the
    legacy shape of each (see `REAL_ORG`), for a test that pins it and says why."""
    sf_enforce_schema: bool | None = None
    """Hold writes to the field definitions: lengths (`STRING_TOO_LONG`), restricted picklists,
    JSON types (`JSON_PARSER_ERROR`), e-mail format, non-nillable fields, picklist defaults."""
    sf_default_lead_owner: LeadOwnerMode | None = None
    """Who owns a lead created without `OwnerId`: `none` leaves it empty (never so in a real
    org); `user` / `queue` is the org's default lead owner (`sf_default_owner_user_id` /
    `sf_default_queue_id`), with `Sforce-Auto-Assign: FALSE` the API user."""
    sf_api_user_id: str = API_USER_ID
    sf_default_owner_user_id: str = DEFAULT_OWNER_USER_ID
    sf_default_queue_id: str = INBOUND_QUEUE_ID
    sf_state_country_picklists: bool | None = None
    """State and Country/Territory picklists: `CountryCode`/`StateCode` exist and `Country`/`State`
    take only integration values (`FIELD_INTEGRITY_EXCEPTION` otherwise)."""
    sf_schema: Mapping[str, Any] = field(default_factory=dict)
    """The org's differences from the standard field tables (see `sandbox.schema`)."""
    vitally_playbooks: PlaybookMode | None = None
    """`in_put`: segments follow traits inside the PUT; `delayed`: Playbooks run
    `vitally_playbook_delay_s` (sandbox clock) after a trait write, as Vitally's hourly runs do."""
    vitally_playbook_delay_s: float = 3600.0
    vitally_segment_links: bool | None = None
    """Each segment membership remembers who added it; a Playbook removes only its own."""

    def _resolved(self, name: str) -> Any:
        value = getattr(self, name)
        if value is not None:
            return value
        legacy, real = REAL_ORG[name]
        return real if self.real_org else legacy

    @property
    def enforce_schema(self) -> bool:
        return bool(self._resolved("sf_enforce_schema"))

    @property
    def default_lead_owner(self) -> LeadOwnerMode:
        mode: LeadOwnerMode = self._resolved("sf_default_lead_owner")
        return mode

    @property
    def state_country_picklists(self) -> bool:
        return bool(self._resolved("sf_state_country_picklists"))

    @property
    def playbooks_delayed(self) -> bool:
        return bool(self._resolved("vitally_playbooks") == "delayed")

    @property
    def segment_links(self) -> bool:
        return bool(self._resolved("vitally_segment_links"))

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
        out["sf_schema"] = copy.deepcopy(dict(self.sf_schema))
        out["effective"] = {name: self._resolved(name) for name in REAL_ORG}
        return out


_OPTIONAL_STR = {
    "vitally_api_key",
    "sf_token",
    "slack_token",
    "zendesk_token",
    "sf_client_id",
    "sf_client_secret",
    "assignment_rule_owner_id",
}
_SECRETS = ("vitally_api_key", "sf_token", "sf_client_secret", "slack_token", "zendesk_token")
_NUMBERS = {"latency_ms", "fault_timeout_s", "vitally_rate_window_s", "vitally_playbook_delay_s"}
_INTS = {"vitally_rate_limit", "sf_daily_quota", "sf_page_size", "slack_burst"}
_PAIRS = {"playbooks"}
_BOOLS = {"sf_strict_fields", "real_org"}
_SWITCH_BOOLS = {"sf_enforce_schema", "sf_state_country_picklists", "vitally_segment_links"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "sf_default_lead_owner": ("none", "user", "queue"),
    "vitally_playbooks": ("in_put", "delayed"),
}
_IDS = {"sf_api_user_id": "005", "sf_default_owner_user_id": "005", "sf_default_queue_id": "00G"}


def _coerce(key: str, value: Any) -> Any:
    """Check one setting's JSON value and convert it to the dataclass field's type."""
    for keys, check in _CHECKS:
        if key in keys:
            return check(key, value)
    raise ValueError("not settable")  # pragma: no cover - every field is listed in _CHECKS


def _optional_str(key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise TypeError("expected a non-empty string or null")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TypeError("expected a number >= 0")
    return float(value)


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError("expected an integer >= 1")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _switch_bool(key: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError("expected true, false or null (null: as real_org says)")
    return value


def _choice(key: str, value: Any) -> str | None:
    if value is not None and value not in _CHOICES[key]:
        raise TypeError(f"expected one of {', '.join(_CHOICES[key])} or null (null: as real_org says)")
    return None if value is None else str(value)


def _org_id(key: str, value: Any) -> str:
    prefix = _IDS[key]
    if not isinstance(value, str) or len(value) not in (15, 18) or not value.startswith(prefix):
        raise TypeError(f"expected a 15- or 18-character id starting {prefix}")
    return value


def _schema(key: str, value: Any) -> dict[str, Any]:
    problems = check_overrides(value)
    if problems:
        raise ValueError("; ".join(problems))
    return copy.deepcopy(dict(value))


def _pairs(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    """A list of [string, string] pairs (`playbooks`)."""
    if not isinstance(value, list | tuple) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(s, str) and s for s in p) for p in value
    ):
        raise TypeError("expected a list of [string, string] pairs")
    return tuple((str(a), str(b)) for a, b in value)


# Which check each settable field goes through (a field in no set is not settable).
_CHECKS: tuple[tuple[Collection[str], Callable[[str, Any], Any]], ...] = (
    (_OPTIONAL_STR, _optional_str),
    (_NUMBERS, _number),
    (_INTS, _positive_int),
    (_BOOLS, _bool),
    (_SWITCH_BOOLS, _switch_bool),
    (_CHOICES, _choice),
    (_IDS, _org_id),
    ({"sf_schema"}, _schema),
    (_PAIRS, _pairs),
)


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
    would halve throughput); `encode()` must therefore run under the server lock. A reply
    built with `Reply.raw` carries bytes of its own content type (an HTML page) instead.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    _payload: bytes | None = None
    content_type: str = "application/json;charset=UTF-8"

    @classmethod
    def raw(cls, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> Reply:
        """A reply whose body is `payload` as is (empty: no body at all, not even JSON)."""
        return cls(status, None, dict(headers or {}), payload, content_type)

    def encode(self) -> bytes:
        """The body as compact JSON bytes (empty for no body); computed once.

        Written as the services' own JSON writers write it: text as UTF-8, not `\\u` escapes; a
        number JSON cannot hold (NaN, the infinities), which no service sends, as `null` (what
        JavaScript's `JSON.stringify` writes); a text holding a lone surrogate, which UTF-8
        cannot carry, with escapes (`"\\ud800"`, as `JSON.stringify` writes it), by the
        standard encoder. msgspec writes a page of 100 Vitally accounts in 0.12 ms against 0.97 ms: at
        100,000 accounts the cold read waited on the sandbox for most of its 951 pages."""
        if self._payload is None:
            body = self.body
            self._payload = b"" if body is None else _RAW.splice(_json_bytes(body))
        return self._payload


_ENCODER = msgspec.json.Encoder()


def _json_bytes(body: Any) -> bytes:
    """`Reply.encode`'s JSON text of `body`."""
    try:
        return _ENCODER.encode(body)
    except (UnicodeEncodeError, TypeError, OverflowError, msgspec.EncodeError):
        return json.dumps(body, separators=(",", ":")).encode()


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
