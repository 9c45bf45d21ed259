"""Vitally REST adapter: raw account, user and task JSON in and out.

Every request goes through `VitallyClient._request`, which waits for the client's `RateLimiter`,
counts it, classifies the response once (`classify`) and repeats it under the one retry policy
(`connectors.http.call_with_retry`).
Every operation offered here is safe to repeat: reads, `PUT` of traits (a merge), and task
upserts keyed by `externalId`. A write is repeated only when it surely did not take effect (an
answer refusing it for now: 429, 5xx; a connection that never opened); one whose answer was lost
raises `UnansweredError`, since a person may have changed the account since it landed, and the
apply step looks before it sends it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import requests

from connectors.base import RequestCounter, parse_iso_utc
from connectors.http import (
    MAYBE_APPLIED_STATUSES,
    TRANSIENT_STATUSES,
    call_with_retry,
    make_session,
    never_sent,
    not_json,
)
from connectors.paging import CursorPaginator
from connectors.ratelimit import RateLimiter
from core.decoding import JsonError, PendingRecords, Unreadable, decode_json, decode_page, decode_page_deferred
from core.errors import (
    AuthError,
    ConfigError,
    ContractError,
    QuotaExhaustedError,
    RateLimitedError,
    RecordError,
    RetriableError,
    StopRequested,
    SyncError,
    UnansweredError,
    UnreachableError,
    WriteRejectedError,
)
from core.records import DEFAULT_KEY_ROLE_LABELS, DEFAULT_OWNER_FIELDS, DEFAULT_TRAIT_KEYS
from core.settings import HTTP_URL, secret, setting

__all__ = ["VitallyClient", "VitallySettings"]

log = logging.getLogger(__name__)

SYSTEM = "vitally"
MAX_PAGE_SIZE = 100  # Vitally's documented maximum (and default) for `limit`

SortBy = Literal["updatedAt", "createdAt"]
AccountStatus = Literal["active", "churned", "activeOrChurned"]

_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Statuses that refuse one write for good: the record is parked, the cycle goes on.
_REJECTING_STATUSES = {400: "HTTP_400", 404: "NOT_FOUND", 409: "HTTP_409", 422: "HTTP_422"}
# Errors after which no other request can succeed: a parallel writer stops starting new ones. A
# ContractError is about one answer (an odd body) and parks one write; the others go on.
_STOPPING_ERRORS = (AuthError, UnreachableError, QuotaExhaustedError, StopRequested)


@dataclass(frozen=True)
class VitallySettings:
    """Where Vitally's REST API is, how patiently to talk to it, and the traits crm-sync reads and writes."""

    base_url: str = setting(
        "http://127.0.0.1:8765",
        "The Vitally REST API: https://<subdomain>.rest.vitally.io (US) or https://rest.vitally-eu.io (EU).",
        pattern=HTTP_URL,
        hint="an http(s) URL",
    )
    api_key: str | None = secret(
        "The Vitally secret key (Settings > Integrations > REST API), sent as the Basic-auth user name.",
        env="VITALLY_API_KEY",
        file="/etc/crm-sync/vitally.key",
        required=True,
    )
    timeout_seconds: float = setting(10, "Seconds before one HTTP request gives up.", minimum=0.1, maximum=600)
    max_attempts: int = setting(
        5,
        "Attempts for a request that failed transiently (429, 5xx, timeouts) before the cycle reports it.",
        minimum=1,
        maximum=100,
    )
    max_wait_seconds: float = setting(
        60,
        "Longest single wait between two attempts, in seconds (caps the backoff, RateLimit-Reset and the looks "
        "after a lost answer too).",
        minimum=0,
        maximum=3600,
    )
    write_workers: int = setting(
        4,
        "Account PUTs in flight at once (always within Vitally's rate limit: more only help slow requests).",
        minimum=1,
        maximum=64,
    )
    reconcile_hours: float = setting(
        24,
        "Every this many hours, the ids of every account are listed (one request per 100) and a mirrored account "
        "no longer among them, deleted in Vitally (the accounts list keeps no trace of a deletion), leaves the "
        "mirror and its pending writes are dropped. 0: never.",
        minimum=0,
        maximum=720,
    )
    reconcile_max_share: float = setting(
        0.2,
        "A comparison that would remove more than this share of the mirrored accounts (and more than 10) is not "
        "applied but reported: a narrowed API key or a workspace mix-up is likelier than such a deletion.",
        minimum=0.01,
        maximum=1,
    )
    segment_traits: Mapping[str, str] = setting(
        {
            "TAM/CSM Candidate": "segment_tam_csm_candidate",
            "Product-led lead": "segment_product_led_lead",
            "Account review": "segment_account_review",
            "Onboarding": "segment_onboarding",
            "Nurture": "segment_nurture",
        },
        "Managed segment -> the boolean trait a Vitally Playbook tests to put accounts in that segment.",
        merge=True,
    )
    written_traits: Mapping[str, str] = setting(
        {
            "new_owner": "new_owner",
            "routing_reason": "routing_reason",
            "lifecycle_stage": "lifecycle_stage",
            "onboarding_specialist": "onboarding_specialist",
            "qualification": "qualification",
        },
        "Canonical name -> the trait key crm-sync writes.",
        merge=True,
    )
    trait_keys: Mapping[str, str] = setting(
        DEFAULT_TRAIT_KEYS,
        "Canonical field of the data model -> the trait key it is read from, where a deployment names it differently.",
        merge=True,
        toml="vitally.traits",
    )
    key_roles: Mapping[str, str] = setting(
        DEFAULT_KEY_ROLE_LABELS,
        "A Vitally key-role label -> the role the rules know it as (csm_role, tam_role, ae_role, owner_roles); "
        "a label not listed keeps its own name.",
        merge=True,
        toml="vitally.key_roles",
    )
    owner_fields: Mapping[str, str] = setting(
        DEFAULT_OWNER_FIELDS,
        "Vitally's owner attributes of an account -> the role each counts as when no key role gives it "
        "(an account owned through one of them alone is owned).",
        merge=True,
        toml="vitally.owner_fields",
    )


class VitallyClient:
    """A Vitally REST client for one API key, configured by `VitallySettings`.

    `settings.base_url` is the API root (`https://<subdomain>.rest.vitally.io`, or the sandbox's
    `http://127.0.0.1:<port>`); paths under `/resources/` are appended to it. The key is sent as
    the Basic-auth user name with an empty password and never appears in a message or a log.

    `requests` counts every attempt by `(method, path template)`. After each response the latest
    `RateLimit-Limit`/`-Remaining`/`-Reset` are kept in `rate_limit_limit`,
    `rate_limit_remaining` and `rate_limit_reset` (seconds), None until first seen; they feed
    `rate_limiter` (a `RateLimiter`, shared by every thread using this client), which holds each
    request back while the announced budget is spent.

    `settings.max_wait_seconds` caps any single wait between two attempts (a long `RateLimit-Reset`
    included), so a cycle never stalls longer than that on one request; the rate limiter's waits
    share the cap. The settings are used as given: `sync.config` has checked them.

    Thread-safe for `put_traits_many`: when the client builds its own session, each worker thread
    gets a session of its own; an injected `session` is shared by every thread.
    """

    def __init__(
        self,
        settings: VitallySettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = MAX_PAGE_SIZE,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        # `page_size` is not a setting (the service's maximum is the fastest); tests page by 2.
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError([f"vitally.page_size: must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"])
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self._api_key = settings.api_key or ""
        self._timeout = settings.timeout_seconds
        self._session = session if session is not None else make_session(self.base_url, self._timeout)
        self._own_sessions = session is None
        self._thread = threading.local()  # `session`: the session of a put_traits_many worker
        self._sleep = sleep
        self._page_size = page_size
        self.requests = RequestCounter()
        self.rate_limiter = (
            rate_limiter if rate_limiter is not None else RateLimiter(sleep=sleep, max_wait=settings.max_wait_seconds)
        )

    def __repr__(self) -> str:
        return f"VitallyClient({self.base_url!r})"

    @property
    def rate_limit_limit(self) -> int | None:
        """The latest `RateLimit-Limit`; None until seen."""
        return self.rate_limiter.limit

    @property
    def rate_limit_remaining(self) -> int | None:
        """The latest `RateLimit-Remaining`; None until seen."""
        return self.rate_limiter.remaining

    @property
    def rate_limit_reset(self) -> float | None:
        """The latest `RateLimit-Reset` (seconds); None until seen."""
        return self.rate_limiter.reset

    # -- reading ---------------------------------------------------------------------------------

    def iter_accounts(
        self, *, sort_by: SortBy = "updatedAt", status: AccountStatus | None = None
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """Yield every account, page by page (`limit`/`from`/`next`), fetching a page only when needed.

        With `sort_by="updatedAt"` (Vitally's default) the newest change comes first. Each page is
        decoded record by record (`core.decoding.decode_page`): an account that cannot be decoded
        within the limits comes as an `Unreadable` in its place, and the others as usual.
        """
        if sort_by not in ("updatedAt", "createdAt"):
            raise ConfigError([f"vitally.sort_by: unknown value {sort_by!r}"])
        if status not in (None, "active", "churned", "activeOrChurned"):
            raise ConfigError([f"vitally.status: unknown value {status!r}"])
        yield from self._accounts(sort_by, status, ahead=False)

    def _accounts(
        self, sort_by: SortBy, status: AccountStatus | None, *, ahead: bool
    ) -> Iterator[dict[str, Any] | Unreadable]:
        params: dict[str, str] = {"sortBy": sort_by}
        if status is not None:
            params["status"] = status
        yield from self._paged("/resources/accounts", "/resources/accounts", params, ahead=ahead)

    def iter_accounts_since(
        self, watermark: str | None, *, status: AccountStatus | None = "activeOrChurned"
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """Yield the accounts with `updatedAt >= watermark`, newest first; None = every account.

        Churned accounts included (`status=activeOrChurned`): Vitally's default is `active`, and
        an account that churns would otherwise drop out of the reads and stay in the mirror as it
        last was (the rules leave churned accounts alone: `rules.guards`).

        The bound is closed: accounts updated exactly at the watermark are yielded again, and the
        caller drops those boundary duplicates by key. Vitally has no "updated since" filter, so
        this pages newest-first and stops requesting pages at the first account older than the
        watermark. Timestamps are compared as instants, not strings. An account whose `updatedAt`
        cannot be read is yielded (the record parser reports it) but never stops the read.
        """
        if status not in (None, "active", "churned", "activeOrChurned"):
            raise ConfigError([f"vitally.status: unknown value {status!r}"])
        if watermark is None:
            # Every page will be read: each is requested while the one before is handled.
            yield from self._accounts("updatedAt", status, ahead=True)
            return
        bound = _watermark(watermark)
        for account in self.iter_accounts(sort_by="updatedAt", status=status):
            updated = _updated_at(account)
            if updated is not None and updated < bound:
                return
            yield account

    def iter_account_ids(self) -> Iterator[str | None]:
        """The id of every account, active or churned, paged by `createdAt` (docs.vitally.io, REST
        API overview: "setting sortBy to createdAt will ensure you return a full list every time",
        where `updatedAt` paging can skip a record updated mid-walk); None for an account that
        cannot be read. Vitally lists no deleted account and keeps no tombstone: a mirrored account
        missing here was deleted."""
        for raw in self._accounts("createdAt", "activeOrChurned", ahead=True):
            if isinstance(raw, Unreadable):
                yield raw.record_id or None
                continue
            record_id = raw.get("id")
            yield record_id if isinstance(record_id, str) and record_id else None

    def get_account(self, id_or_external_id: str) -> dict[str, Any] | None:
        """The account with this Vitally id or externalId; None only when Vitally answers 404."""
        path = f"/resources/accounts/{_segment(id_or_external_id)}"
        body = self._request("GET", "/resources/accounts/:id", path, allow_not_found=True)
        if body is None:
            return None
        return _object(body, "/resources/accounts/:id")

    def iter_account_tasks(self, account_id: str) -> Iterator[dict[str, Any] | Unreadable]:
        """Yield the tasks of one account, page by page (`GET /resources/accounts/:id/tasks`)."""
        path = f"/resources/accounts/{_segment(account_id)}/tasks"
        yield from self._paged("/resources/accounts/:id/tasks", path, {})

    # -- writing ---------------------------------------------------------------------------------

    def put_traits(self, account_id: str, traits: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `traits` into the account (a trait sent as None is deleted); return the account.

        Idempotent, hence retried. A refusal of this one write (400, 404, 409, 422) raises
        `WriteRejectedError` keyed by `account_id`.
        """
        template = "/resources/accounts/:id"
        path = f"/resources/accounts/{_segment(account_id)}"
        body = self._request("PUT", template, path, json={"traits": dict(traits)}, record_key=account_id)
        return _object(body, template)

    def put_traits_many(
        self, items: Iterable[tuple[str, Mapping[str, Any]]], *, workers: int | None = None
    ) -> Generator[tuple[str, dict[str, Any] | SyncError], None, None]:
        """`put_traits` for each `(account_id, traits)`, at most `workers` at a time (None: the
        `write_workers` setting); yield `(account_id, account)` or `(account_id, error)` as each
        one completes.

        `items` is read lazily, one item per free worker. A failed write is yielded as its
        `SyncError`, never raised. After an error that stops the whole service (`FatalError`:
        auth, unreachable, contract; `QuotaExhaustedError`; `StopRequested`) no new request starts: the writes
        already in flight finish and are yielded, then that error for its item, and the iterator
        ends; items never started are not yielded. Closing the iterator early (a `break`) also
        starts nothing new and returns once the writes in flight have finished.
        """
        workers = self._workers(workers)
        source = iter(items)
        sessions: list[requests.Session] = []
        pending: dict[Future[dict[str, Any] | SyncError], str] = {}
        stopped_by: tuple[str, SyncError] | None = None

        def start_worker() -> None:
            # A requests.Session is not documented as thread-safe: one per worker thread.
            session = make_session(self.base_url, self._timeout)
            self._thread.session = session
            sessions.append(session)

        pool = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="vitally-put",
            initializer=start_worker if self._own_sessions else None,
        )
        try:
            while True:
                while stopped_by is None and len(pending) < workers:
                    item = next(source, None)
                    if item is None:
                        break
                    account_id, traits = item
                    pending[pool.submit(self._put_outcome, account_id, traits)] = account_id
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    account_id = pending.pop(future)
                    outcome = future.result()
                    if stopped_by is None and isinstance(outcome, _STOPPING_ERRORS):
                        stopped_by = (account_id, outcome)
                        continue
                    yield account_id, outcome
            if stopped_by is not None:
                yield stopped_by
        finally:
            # On an early close: nothing new starts, the writes in flight finish before we return.
            pool.shutdown(wait=True, cancel_futures=True)
            for session in sessions:
                session.close()

    def _workers(self, workers: int | None) -> int:
        if workers is None:
            return self.settings.write_workers
        if workers < 1:  # an explicit argument; the setting itself is checked by sync.config
            raise ConfigError([f"vitally.workers: must be at least 1, got {workers}"])
        return workers

    def _put_outcome(self, account_id: str, traits: Mapping[str, Any]) -> dict[str, Any] | SyncError:
        try:
            return self.put_traits(account_id, traits)
        except SyncError as error:
            return error

    def upsert_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update the task named by its `externalId` (required); return the task.

        Vitally keeps tasks unique on `externalId`, so a repeated POST updates instead of
        duplicating: that is what makes this safe to retry.
        """
        external_id = task.get("externalId")
        if not isinstance(external_id, str) or not external_id:
            raise RecordError(
                SYSTEM, str(task.get("name", "task")), "externalId", "required: it is the idempotency key"
            )
        body = self._request("POST", "/resources/tasks", "/resources/tasks", json=dict(task), record_key=external_id)
        return _object(body, "/resources/tasks")

    # -- the one request loop and the one classification ----------------------------------------------

    def classify(self, error: BaseException) -> SyncError:
        """Map a failure talking to Vitally onto the error tree (reads; see `_classify_response`)."""
        if isinstance(error, SyncError):
            return error
        if isinstance(error, requests.HTTPError) and error.response is not None:
            request = error.response.request
            return self._classify_response(error.response, method=request.method or "", template="")
        if isinstance(error, _NETWORK_ERRORS):
            # str(error) would carry the URL; the kind of failure is enough to act on.
            return RetriableError(f"vitally: network error ({type(error).__name__})", system=SYSTEM)
        if isinstance(error, ValueError):
            return ContractError("vitally: response is not valid JSON", system=SYSTEM)
        return ContractError(f"vitally: unexpected {type(error).__name__}", system=SYSTEM)

    def _classify_response(
        self, response: requests.Response, *, method: str, template: str, record_key: str | None = None
    ) -> SyncError:
        """401/403 → AuthError; 429 → RateLimitedError(wait = RateLimit-Reset); for a write
        (`record_key` given) a gateway's 502/504/520/524 → UnansweredError (it may have taken
        effect); 408/5xx, 406 and 420 (what proxies answer while a service recovers) →
        RetriableError; for a write 400/404/409/422 → WriteRejectedError; anything else → ContractError.
        The body is only quoted, never relied upon."""
        status = response.status_code
        where = f"vitally {method} {template}".rstrip()
        if status in (401, 403):
            return AuthError(f"{where}: HTTP {status}: API key refused", system=SYSTEM, status=status)
        if status == 429:
            wait = _seconds(response.headers.get("RateLimit-Reset"))
            if wait is None:
                wait = _seconds(response.headers.get("Retry-After"))
            return RateLimitedError(f"{where}: HTTP 429: rate limited", system=SYSTEM, wait_seconds=wait)
        if record_key is not None and status in MAYBE_APPLIED_STATUSES:
            return UnansweredError(
                f"{where}: HTTP {status} from a gateway; the write may have taken effect", system=SYSTEM, status=status
            )
        if status == 408 or status >= 500 or status in TRANSIENT_STATUSES:
            return RetriableError(f"{where}: HTTP {status}", system=SYSTEM, status=status)
        if record_key is not None and status in _REJECTING_STATUSES:
            return WriteRejectedError(record_key, _REJECTING_STATUSES[status], self._quote_body(response))
        return ContractError(f"{where}: unexpected HTTP {status}", system=SYSTEM, status=status)

    def _request(
        self,
        method: str,
        template: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        record_key: str | None = None,
        allow_not_found: bool = False,
        decode: Callable[[bytes], Any] = decode_json,
    ) -> Any:
        url = self.base_url + path
        session: requests.Session = getattr(self._thread, "session", self._session)

        def attempt() -> Any:
            with self.rate_limiter.slot():
                self.requests.add(method, template)
                try:
                    response = session.request(
                        method,
                        url,
                        params=params,
                        json=json,
                        auth=(self._api_key, ""),
                        timeout=self._timeout,
                    )
                except _NETWORK_ERRORS as error:
                    if record_key is not None and not never_sent(error):
                        raise UnansweredError(
                            f"vitally {method} {template}: no answer ({type(error).__name__}); "
                            "the write may have taken effect",
                            system=SYSTEM,
                        ) from error
                    raise self.classify(error) from error
                self._observe_rate_limit(response)
            if response.status_code == 404 and allow_not_found:
                return None
            if not 200 <= response.status_code < 300:
                raise self._classify_response(response, method=method, template=template, record_key=record_key)
            try:
                return decode(response.content)
            except JsonError as error:  # says what is wrong and where, never quotes the body
                if not_json(response.content):
                    # An HTML page where JSON belongs (a proxy's, while the service recovers).
                    status = response.status_code
                    raise RetriableError(
                        f"vitally {method} {template}: HTTP {status} answer is not JSON", system=SYSTEM, status=status
                    ) from error
                raise ContractError(f"vitally {method} {template}: response {error}", system=SYSTEM) from error

        return call_with_retry(
            attempt,
            sleep=self._sleep,
            max_attempts=self.settings.max_attempts,
            max_wait=self.settings.max_wait_seconds,
        )

    def _paged(
        self, template: str, path: str, params: Mapping[str, str], *, ahead: bool = False
    ) -> Iterator[dict[str, Any] | Unreadable]:
        paginator = CursorPaginator(system=SYSTEM)

        def fetch(token: str | None) -> tuple[Sequence[dict[str, Any] | Unreadable], str | None]:
            query: dict[str, str | int] = {**params, "limit": self._page_size}
            if token is not None:
                query["from"] = token
            # A full read wants the next cursor first: the records are decoded as they are read.
            decode = _decode_page_deferred if ahead else _decode_page
            return _page(self._request("GET", template, path, params=query, decode=decode), template)

        for page in paginator.pages(fetch, ahead=ahead):
            yield from page

    def _observe_rate_limit(self, response: requests.Response) -> None:
        limit = _seconds((response.headers.get("RateLimit-Limit") or "").split(",")[0])  # "1000, 1000;window=60"
        remaining = _seconds(response.headers.get("RateLimit-Remaining"))
        self.rate_limiter.observe(
            limit=None if limit is None else int(limit),
            remaining=None if remaining is None else int(remaining),
            reset=_seconds(response.headers.get("RateLimit-Reset")),
        )

    def _quote_body(self, response: requests.Response) -> str:
        """Vitally's own words for a refusal, if it gave any, without our key: its `message`, else
        its `error` text (`{"error": "Authorization header not present."}`, as a live request
        answers, recorded by the api-evangelist transcription of Vitally's REST API; Vitally's own
        overview lists the codes, not the body). A body with both (`{"statusCode": 400, "message":
        <the detail>, "error": "Bad Request"}`) gives its detail."""
        try:
            body = decode_json(response.content)
        except JsonError:
            body = None
        said = [body.get(key) for key in ("message", "error")] if isinstance(body, dict) else []
        message = next((text for text in said if isinstance(text, str) and text.strip()), None)
        text = message if message is not None else f"HTTP {response.status_code}"
        return text.replace(self._api_key, "***")[:300]


def _segment(value: str) -> str:
    """One URL path segment: ids and externalIds are outside data."""
    return quote(value, safe="")


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds else None


def _watermark(value: str) -> datetime:
    try:
        return parse_iso_utc(value)
    except ValueError:
        raise ContractError(f"vitally: watermark {value[:40]!r} is not an ISO-8601 timestamp", system=SYSTEM) from None


def _decode_page(content: bytes) -> Any:
    return decode_page(content, records_key="results", id_key="id", stamp_key="updatedAt")


def _decode_page_deferred(content: bytes) -> Any:
    return decode_page_deferred(content, records_key="results", id_key="id", stamp_key="updatedAt")


def _updated_at(account: Mapping[str, Any] | Unreadable) -> datetime | None:
    if isinstance(account, Unreadable):
        if account.stamp is None:
            return None
        account = {"id": account.record_id, "updatedAt": account.stamp}
    value = account.get("updatedAt")
    if isinstance(value, str):
        try:
            return parse_iso_utc(value)
        except ValueError:
            pass
    log.warning("vitally account %s has no readable updatedAt", account.get("id"))
    return None


def _object(body: Any, template: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ContractError(f"vitally {template}: expected a JSON object", system=SYSTEM)
    return body


def _page(body: Any, template: str) -> tuple[Sequence[dict[str, Any] | Unreadable], str | None]:
    """`{"results": [...], "next": "<cursor>" | null}`, or ContractError."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list | PendingRecords):
        raise ContractError(f"vitally GET {template}: expected {{results, next}}", system=SYSTEM)
    results = body["results"]
    # Pending records are JSON objects, each a `Record` or an `Unreadable` once read.
    if not isinstance(results, PendingRecords) and not all(isinstance(item, dict | Unreadable) for item in results):
        raise ContractError(f"vitally GET {template}: results must be objects", system=SYSTEM)
    next_token = body.get("next")
    if next_token is not None and not isinstance(next_token, str):
        raise ContractError(f"vitally GET {template}: next must be a string or null", system=SYSTEM)
    return results, next_token
