"""Zendesk tickets for the support requests that arrive through the demo form ("'support' will auto
create Zendesk tickets", the handbook's Demo booking).

One ticket per support submission, created exactly once by two means (tests/fixtures/real/SOURCES.md,
Zendesk rows):

- `POST /api/v2/tickets` carries the ticket's `external_id` (crm-sync's key for the lead) and the
  same value as its `Idempotency-Key` header: Zendesk answers a repeat within two hours with the
  ticket it created (`x-idempotency-lookup: hit`) instead of a second one, so a retry after a
  timeout or a lost answer is safe (the retry policy repeats it like an upsert);
- after an attempt whose outcome is unknown (the outbox says it was tried), the ticket is first
  looked up by `GET /api/v2/tickets?external_id=…`, which also covers a repeat hours later, when
  Zendesk has forgotten the idempotency key.

Authentication is an API token: HTTP Basic with `{email}/token` and the token (Zendesk's "API token"
authentication). Requests go through `requests` (urllib3 logs a request's path and query at DEBUG:
here `/api/v2/tickets?external_id=crm-sync-lead-…`, no secret; the token travels in the
`Authorization` header only). Failures map onto `core.errors`: 401/403 `AuthError`, 422 (a record
Zendesk refuses: an invalid requester email) `WriteRejectedError`, 429 with `Retry-After`
`RateLimitedError`, 5xx and network errors `RetriableError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from connectors.base import RequestCounter
from connectors.http import call_with_retry, make_session
from core.errors import (
    AuthError,
    ContractError,
    RateLimitedError,
    RetriableError,
    WriteRejectedError,
)
from core.settings import HTTP_URL, secret, setting

__all__ = ["ZendeskClient", "ZendeskSettings"]

_SYSTEM = "zendesk"


@dataclass(frozen=True)
class ZendeskSettings:
    """Where support requests become tickets; without a subdomain (or base_url), none."""

    subdomain: str | None = setting(
        None,
        "Your Zendesk subdomain (acme for acme.zendesk.com); unset: no tickets.",
        pattern=r"[a-z0-9][a-z0-9-]{0,62}",
        hint="a Zendesk subdomain (letters, digits, '-')",
        example="acme",
    )
    base_url: str | None = setting(
        None,
        "Instead of https://<subdomain>.zendesk.com (e.g. the sandbox's URL).",
        pattern=HTTP_URL,
        example="http://127.0.0.1:8765",
    )
    email: str | None = setting(
        None, "The Zendesk agent whose API token crm-sync uses.", pattern=r"[^@\s]+@[^@\s]+", example="ops@acme.com"
    )
    api_token: str | None = secret(
        "That agent's Zendesk API token.", env="CRM_SYNC_ZENDESK_API_TOKEN", file="/etc/crm-sync/zendesk-api-token"
    )
    tags: tuple[str, ...] = setting(("crm-sync", "demo-form"), "Tags every ticket crm-sync creates carries.")
    group_id: int | None = setting(
        None,
        "The Zendesk group the tickets go to; unset: Zendesk's default.",
        minimum=1,
        maximum=2**63 - 1,
        example=360004077472,
    )
    timeout_seconds: float = setting(10, "Seconds before one Zendesk request gives up.", minimum=0.1, maximum=600)
    max_attempts: int = setting(
        3, "Attempts per Zendesk request (creates repeat safely: idempotency key).", minimum=1, maximum=100
    )
    max_wait_seconds: float = setting(60, "The longest wait between two attempts.", minimum=0, maximum=3600)

    @property
    def url(self) -> str | None:
        """The account's base URL; None when tickets are off."""
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://{self.subdomain}.zendesk.com" if self.subdomain else None

    @property
    def enabled(self) -> bool:
        return self.url is not None


class ZendeskClient:
    """Creates tickets once and finds them by external id (see the module docstring)."""

    def __init__(
        self,
        settings: ZendeskSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        url = settings.url
        if url is None:
            raise ValueError("ZendeskClient needs [zendesk] subdomain or base_url")
        self.settings = settings
        self.url = url
        self.sleep = sleep
        self.session = session or make_session(url, settings.timeout_seconds)
        if settings.email and settings.api_token:
            self.session.auth = (f"{settings.email}/token", settings.api_token)
        self.requests = RequestCounter()

    def find(self, external_id: str) -> dict[str, Any] | None:
        """The ticket carrying `external_id`, if Zendesk holds one (the oldest, should there be several)."""

        def call() -> Any:
            return self._call("GET", "/api/v2/tickets", params={"external_id": external_id})

        answer = call_with_retry(
            call, sleep=self.sleep, max_attempts=self.settings.max_attempts, max_wait=self.settings.max_wait_seconds
        )
        tickets = answer.get("tickets") if isinstance(answer, dict) else None
        if not isinstance(tickets, list):
            raise ContractError("zendesk: the ticket list has no `tickets`", system=_SYSTEM)
        found = [t for t in tickets if isinstance(t, dict) and t.get("external_id") == external_id]
        return min(found, key=lambda t: int(t.get("id") or 0)) if found else None

    def create(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        """Create the ticket (its `external_id` is also the Idempotency-Key); returns Zendesk's ticket."""
        key = str(ticket.get("external_id") or "")
        if not key:
            raise ValueError("a ticket needs its external_id")

        def call() -> Any:
            return self._call(
                "POST", "/api/v2/tickets", json={"ticket": dict(ticket)}, headers={"Idempotency-Key": key}
            )

        answer = call_with_retry(
            call, sleep=self.sleep, max_attempts=self.settings.max_attempts, max_wait=self.settings.max_wait_seconds
        )
        created = answer.get("ticket") if isinstance(answer, dict) else None
        if not isinstance(created, dict) or "id" not in created:
            raise ContractError("zendesk: the create answer has no ticket", system=_SYSTEM)
        return created

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        self.requests.add(method, path)
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except requests.Timeout:
            raise RetriableError(f"zendesk: {method} {path}: no answer in time", system=_SYSTEM) from None
        except requests.RequestException as error:
            raise RetriableError(
                f"zendesk: {method} {path}: network error ({type(error).__name__})", system=_SYSTEM
            ) from None
        status = response.status_code
        if status in (200, 201):
            try:
                return response.json()
            except ValueError:
                raise ContractError(
                    f"zendesk: {method} {path} answered {status} without JSON", system=_SYSTEM
                ) from None
        raise _error(method, path, response)


def _error(method: str, path: str, response: requests.Response) -> Exception:
    status = response.status_code
    what = f"zendesk: {method} {path}: HTTP {status}"
    if status == 429:
        try:
            wait: float | None = float(response.headers.get("Retry-After", ""))
        except ValueError:
            wait = None
        return RateLimitedError(what, system=_SYSTEM, wait_seconds=wait)
    if status >= 500:
        return RetriableError(what, system=_SYSTEM, status=status)
    if status in (401, 403):
        return AuthError(f"{what} (the email and API token were refused)", system=_SYSTEM, status=status)
    code = _code(response)
    if status in (400, 422):
        return WriteRejectedError(_SYSTEM, code or f"HTTP_{status}", f"{method} {path} refused")
    return ContractError(f"{what} {code}".rstrip(), system=_SYSTEM, status=status)


def _code(response: requests.Response) -> str:
    """Zendesk's error name (`RecordInvalid`, `IdempotentRequestError`, …), never the body's details
    (they quote the requester's email)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    name = body.get("error") if isinstance(body, dict) else None
    return name[:40] if isinstance(name, str) and name.replace("_", "").isalnum() else ""
