"""Announcements in Slack: each new lead posted once to the team's channel (`#sales-leads`), through
an incoming webhook or the Web API's `chat.postMessage`.

Two ways to post, chosen by the secret given ([announcements]):

- `bot_token` (with `channel`): `POST {api_url}/chat.postMessage` with the message and, as its
  metadata (`event_type` `crm_sync_lead`, `event_payload` `{"lead_id", "key"}`), what identifies the
  announcement. Before re-posting an announcement whose earlier attempt got no answer, crm-sync reads
  the channel back (`conversations.history` with `include_all_metadata`, from that attempt on) and
  looks for it: a post that went out but whose answer was lost is found, not repeated.
- `webhook_url`: `POST` the message to the incoming webhook. A webhook cannot read the channel, so a
  post whose answer was lost is sent again (at most one repeat per lost answer or crash).

The wire format follows Slack's documentation (tests/fixtures/real/SOURCES.md, Slack rows): the Web
API answers HTTP 200 with `{"ok": true, "channel", "ts", "message"}` or `{"ok": false, "error":
"<code>"}`, and 429 with `Retry-After` when rate limited; an incoming webhook answers `200 ok` or a
status with a short code (`400 invalid_payload`, `404 no_service`, `410 channel_is_archived`, ...).

Requests go through the standard library's `urllib.request`, which logs nothing: requests and urllib3
log a request's path at DEBUG, and slack_sdk's `WebhookClient` logs the whole URL, and a webhook's
path is its secret. The token travels only in the `Authorization` header; neither secret appears in
an error, a log line or the state.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import AuthError, ContractError, RateLimitedError, RetriableError, SyncError, WriteRejectedError
from core.settings import HTTP_URL, secret, setting

__all__ = ["DEFAULT_LABELS", "EVENT_TYPE", "AnnounceSettings", "SlackClient"]

EVENT_TYPE = "crm_sync_lead"
_SYSTEM = "slack"
_SHOWN = 40  # characters of a refusal's code kept in an error

# A person-readable label per routing rule (the handbook's words where it has them: "tagged as
# 'Onboarding referral'"); a rule without one is shown by its id.
DEFAULT_LABELS: Mapping[str, str] = {
    "product_led.mrr_band": "Product-led: MRR band",
    "product_led.scale_high_icp": "Product-led: scale, high ICP",
    "product_led.startup_rolloff": "Product-led: startup roll-off",
    "product_led.forecast_spike": "Product-led: forecast spike",
    "product_led.am_referral": "AM referral",
    "new_business.onboarding_referral": "Onboarding referral",
    "new_business.big_fish": "New business: big fish",
    "new_business.startup_credits": "New business: startup credits",
    "new_business.ae_referral": "AE referral",
    "new_business.cool_company": "New business: cool company",
    "new_business.hiring_increase": "New business: hiring increase",
    "new_business.web_social_increase": "New business: web/social increase",
    "new_business.fundraise": "New business: fundraise",
    "new_business.demo_request": "Demo request",
    "new_business.sales_email": "Sales email",
    "new_business.trust_center": "Trust center",
    "new_business.campaign": "Campaign",
    "new_business.bdr_qualified": "BDR qualified",
    "bdr.closed_lost_unresponsive": "BDR: closed lost, unresponsive",
    "bdr.low_usage": "BDR: low usage",
    "onboarding.direct_handover": "Onboarding referral",
}

# Web API error codes that refuse this message for good (its row is parked, `retry` sends it again).
_REFUSED = frozenset({"msg_too_long", "no_text", "invalid_blocks", "too_many_attachments", "invalid_arguments"})
# Error codes that mean the credentials or the app's access are wrong: nothing will post until fixed.
_AUTH = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "ekm_access_denied",
    }
)
_WEBHOOK_AUTH = frozenset({"no_service", "channel_not_found", "channel_is_archived", "action_prohibited"})


@dataclass(frozen=True)
class AnnounceSettings:
    """The Slack channel each new lead is announced in, by bot token or webhook (neither: none).

    Neither secret set: no announcement."""

    bot_token: str | None = secret(
        "A Slack bot token (xoxb-…, scopes chat:write and channels:history): posts with chat.postMessage "
        "and reads the channel back before re-posting, so each lead is announced exactly once.",
        env="CRM_SYNC_SLACK_BOT_TOKEN",
        file="/etc/crm-sync/slack-bot-token",
    )
    channel: str | None = setting(
        None,
        "The channel the bot token posts to, by id (e.g. the id of #sales-leads).",
        pattern=r"[CG][A-Z0-9]{6,20}",
        hint="a Slack channel id (C… or G…)",
        example="C0123456789",
    )
    webhook_url: str | None = secret(
        "Or a Slack incoming webhook's URL for the channel (a secret); a lost answer may repeat one post.",
        env="CRM_SYNC_LEADS_WEBHOOK_URL",
        file="/etc/crm-sync/leads-webhook-url",
    )
    api_url: str = setting(
        "https://slack.com/api", "Slack's Web API (the sandbox's `/api` to try it locally).", pattern=HTTP_URL
    )
    labels: Mapping[str, str] = setting(
        DEFAULT_LABELS,
        "A person-readable label per routing rule id, shown in the post; entries add to or replace the defaults.",
        merge=True,
    )
    timeout_seconds: float = setting(
        10, "Seconds before one Slack request gives up (a post never holds up a CRM write).", minimum=0.1, maximum=60
    )
    max_per_cycle: int = setting(
        500, "Announcements sent per cycle at most; the rest wait, pending, for the next.", minimum=1, maximum=100_000
    )

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token or self.webhook_url)

    @property
    def checks_history(self) -> bool:
        """Posting with the Web API: an uncertain post is looked up before it is sent again."""
        return bool(self.bot_token)

    def label(self, rule: str) -> str:
        return self.labels.get(rule) or rule


Post = Callable[[urllib.request.Request, float], tuple[int, Mapping[str, str], bytes]]


def _urlopen(request: urllib.request.Request, timeout: float) -> tuple[int, Mapping[str, str], bytes]:
    """Send one request: (status, headers, body), an HTTP error status included; raises OSError
    (URLError) only when no answer came."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s): checked by sync.config
            return int(response.status), dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), dict(error.headers.items()), error.read()


class SlackClient:
    """Posts announcements and reads them back (see the module docstring). Every failure is a
    `core.errors` error whose message is secret-free; nothing is retried here: a post that failed
    stays in the outbox, and the outbox decides when it is sent again."""

    def __init__(self, settings: AnnounceSettings, *, send: Post = _urlopen) -> None:
        self.settings = settings
        self._send = send

    def post(self, text: str, lead_id: str, key: str) -> str:
        """Post one announcement; returns its `ts` (the webhook gives none: "")."""
        if self.settings.bot_token:
            body = {
                "channel": self.settings.channel,
                "text": text,
                "unfurl_links": False,
                "metadata": {"event_type": EVENT_TYPE, "event_payload": {"lead_id": lead_id, "key": key}},
            }
            answer = self._web("POST", "chat.postMessage", body)
            return str(answer.get("ts") or "")
        self._webhook({"text": text})
        return ""

    def posted_since(self, oldest: float) -> set[str]:
        """The leads crm-sync announced in the channel since `oldest` (Unix seconds), by id, read with
        `conversations.history` a page at a time. Needs the bot token."""
        found: set[str] = set()
        cursor = ""
        for _ in range(100):  # 100 pages of 200 messages: far more than a channel receives between two cycles
            query = {
                "channel": str(self.settings.channel),
                "oldest": f"{oldest:.6f}",
                "limit": "200",
                "include_all_metadata": "true",
            }
            if cursor:
                query["cursor"] = cursor
            answer = self._web("GET", "conversations.history?" + urllib.parse.urlencode(query), None)
            found |= _keys_in(answer.get("messages"))
            cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
            if not answer.get("has_more") or not cursor:
                return found
        raise ContractError("slack: conversations.history did not end after 100 pages", system=_SYSTEM)

    # -- the wire ---------------------------------------------------------------------------------

    def _web(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        url = self.settings.api_url.rstrip("/") + "/" + path
        headers = {"Authorization": f"Bearer {self.settings.bot_token}", "User-Agent": "crm-sync"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(body).encode()
        status, answer_headers, raw = self._request(urllib.request.Request(url, data, headers, method=method))
        name = path.split("?", 1)[0]
        if status == 429:
            raise RateLimitedError(
                f"slack: {name} rate limited", system=_SYSTEM, wait_seconds=_retry_after(answer_headers)
            )
        if status >= 500:
            raise RetriableError(f"slack: {name} answered HTTP {status}", system=_SYSTEM, status=status)
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ContractError(f"slack: {name} answered HTTP {status} without JSON", system=_SYSTEM) from None
        if not isinstance(answer, dict):
            raise ContractError(f"slack: {name} answered a JSON {type(answer).__name__}", system=_SYSTEM)
        if answer.get("ok") is not True:
            raise _refusal(name, str(answer.get("error") or f"HTTP {status}")[:_SHOWN])
        return answer

    def _webhook(self, body: Mapping[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "crm-sync"}
        request = urllib.request.Request(
            str(self.settings.webhook_url), json.dumps(body).encode(), headers, method="POST"
        )
        status, answer_headers, raw = self._request(request)
        if status == 200:
            return
        code = raw.decode("utf-8", "replace").strip()[:_SHOWN]
        code = code if code.replace("_", "").isalnum() else ""
        if status == 429:
            raise RateLimitedError(
                "slack: webhook rate limited", system=_SYSTEM, wait_seconds=_retry_after(answer_headers)
            )
        if status >= 500:
            raise RetriableError(f"slack: webhook answered HTTP {status}", system=_SYSTEM, status=status)
        if code in _WEBHOOK_AUTH or status in (401, 403, 404, 410):
            raise AuthError(f"slack: the webhook refused the post (HTTP {status} {code})".rstrip(), system=_SYSTEM)
        raise WriteRejectedError("slack", code or f"HTTP_{status}", f"the webhook refused the post (HTTP {status})")

    def _request(self, request: urllib.request.Request) -> tuple[int, Mapping[str, str], bytes]:
        try:
            return self._send(request, self.settings.timeout_seconds)
        except TimeoutError:
            raise RetriableError("slack: no answer in time (the post may have gone out)", system=_SYSTEM) from None
        except OSError as error:
            cause = error.reason if isinstance(error, urllib.error.URLError) else error
            raise RetriableError(f"slack: network error ({type(cause).__name__})", system=_SYSTEM) from None
        except ValueError:
            # http.client refuses a header holding a line break or control character, quoting it
            # (the token, in the Authorization header): never shown, never the cycle's end.
            raise AuthError(
                "slack: the request could not be sent (a control character in the token or URL)", system=_SYSTEM
            ) from None


def _keys_in(messages: object) -> set[str]:
    """The lead ids in crm-sync's metadata among `conversations.history` messages."""
    keys: set[str] = set()
    for message in messages if isinstance(messages, list) else []:
        metadata = message.get("metadata") if isinstance(message, dict) else None
        if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
            continue
        payload = metadata.get("event_payload")
        if isinstance(payload, dict) and isinstance(payload.get("lead_id"), str):
            keys.add(payload["lead_id"])
    return keys


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _refusal(method: str, code: str) -> SyncError:
    if code in _AUTH:
        return AuthError(f"slack: {method} refused: {code}", system=_SYSTEM)
    if code in _REFUSED:
        return WriteRejectedError("slack", code, f"{method} refused the message")
    if code in ("ratelimited", "rate_limited"):
        return RateLimitedError(f"slack: {method} rate limited", system=_SYSTEM)
    return RetriableError(f"slack: {method} failed: {code}", system=_SYSTEM, status=200)
