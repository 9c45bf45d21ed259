"""Salesforce REST adapter on simple-salesforce: SOQL reads and sObject-collection writes.

Every request goes through `SalesforceClient._call`, which counts it, checks the API budget
before a write, maps any failure through the one `_classify`, logs in again once on a 401 when
the client holds OAuth client credentials, and repeats it under the one retry policy
(`connectors.http.call_with_retry`). Writes are only upserts by external id and updates by Id,
both safe to repeat; this adapter never POST-creates. A write is repeated only when it surely did
not take effect (an answer refusing it for now: 429, 5xx; a connection that never opened); one
whose answer was lost raises `UnansweredError`, since a person or an org's Flow may have changed
the records since it landed, and the apply step looks before it sends them again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql

from connectors.base import RequestCounter, WriteResult, parse_iso_utc
from connectors.http import (
    MAYBE_APPLIED_STATUSES,
    TRANSIENT_STATUSES,
    backoff_wait,
    call_with_retry,
    make_session,
    never_sent,
    not_json,
)
from connectors.paging import CursorPaginator
from core.decoding import JsonError, Unreadable, decode_json, decode_page
from core.errors import (
    AuthError,
    ConfigError,
    ContractError,
    QuotaExhaustedError,
    RateLimitedError,
    RetriableError,
    SyncError,
    UnansweredError,
)
from core.settings import HTTP_URL, secret, setting

__all__ = ["COLLECTION_LIMIT", "DEFAULT_FIELDS", "FIELD_OBJECTS", "SalesforceClient", "SalesforceSettings"]

log = logging.getLogger(__name__)

T = TypeVar("T")

SYSTEM = "salesforce"
COLLECTION_LIMIT = 200  # records per sObject Collections request (Salesforce's maximum)

_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_FIELD_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*\Z")
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}\Z")
# Per-record codes worth sending again: another transaction held the row.
_TRANSIENT_RECORD_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})
_Pending = tuple[int, str, dict[str, Any]]  # a record to send: (its index in the call, its key, its body)

# The custom fields crm-sync reads and writes: canonical name -> (sObject, API name as the
# operator's guide creates it). crm-sync speaks these API names everywhere; an org that names a
# field differently says so in `[salesforce.fields]` (canonical name -> its API name), and this
# adapter renames on the wire, both ways, so nothing else changes.
FIELD_OBJECTS: Mapping[str, tuple[str, str]] = {
    "sync_key": ("Lead", "Sync_Key__c"),
    "routing_rule": ("Lead", "Routing_Rule__c"),
    "routing_reason": ("Lead", "Routing_Reason__c"),
    "lead_score": ("Lead", "Lead_Score__c"),
    "qualification": ("Lead", "Qualification__c"),
    "qualification_reason": ("Lead", "Qualification_Reason__c"),
    "classification": ("Lead", "Classification__c"),
    "role": ("Lead", "Role__c"),
    "sub_role": ("Lead", "Sub_Role__c"),
    "form_text": ("Lead", "Form_Text__c"),
    "lead_vitally_account_id": ("Lead", "Vitally_Account_Id__c"),
    "account_vitally_account_id": ("Account", "Vitally_Account_Id__c"),
    "loss_reason": ("Opportunity", "Loss_Reason__c"),
}
DEFAULT_FIELDS: Mapping[str, str] = {canonical: name for canonical, (_, name) in FIELD_OBJECTS.items()}


@dataclass(frozen=True)
class SalesforceSettings:
    """Which org, with which credentials, how patiently, and how much of its daily API budget."""

    instance_url: str = setting(
        "http://127.0.0.1:8765",
        "The org's instance URL (https://<my-domain>.my.salesforce.com); http:// only for the local sandbox.",
        pattern=HTTP_URL,
        hint="an http(s) URL",
    )
    api_version: str = setting("59.0", "The REST API version.", pattern=r"\d{2,3}\.\d", hint="a version like 59.0")
    token: str | None = secret(
        "An access token (any non-empty value for the sandbox; it expires): or the client credentials below.",
        env="SALESFORCE_TOKEN",
        required=True,
        unless="client_id",
    )
    client_id: str | None = secret(
        "OAuth client credentials of a dedicated integration user (re-login on expiry): the consumer key ...",
        env="SALESFORCE_CLIENT_ID",
    )
    client_secret: str | None = secret("... and the consumer secret.", env="SALESFORCE_CLIENT_SECRET")
    timeout_seconds: float = setting(30, "Seconds before one HTTP request gives up.", minimum=0.1, maximum=600)
    max_attempts: int = setting(
        5,
        "Attempts for a request that failed transiently (429, 5xx, timeouts) before the cycle reports it.",
        minimum=1,
        maximum=100,
    )
    max_wait_seconds: float = setting(
        60,
        "Longest single wait between two attempts (or record lock re-sends, or looks after a lost answer), in seconds.",
        minimum=0,
        maximum=3600,
    )
    lock_retries: int = setting(
        3,
        "Re-sends of records Salesforce refused with UNABLE_TO_LOCK_ROW (another transaction held them).",
        minimum=0,
        maximum=20,
    )
    budget_share: float = setting(
        0.8,
        "Stop writing once this share of the org's daily API allocation is used (other integrations share it).",
        minimum=0.01,
        maximum=1,
    )
    lookback_seconds: int = setting(
        300,
        "Incremental reads look this many seconds behind the cursor, then drop what they already have.",
        minimum=0,
        maximum=86_400,
    )
    reconcile_hours: float = setting(
        24,
        "Every this many hours, the Ids of every Lead, Opportunity and Account are read (one request per 2,000) "
        "and a mirrored record no longer among them leaves the mirror: one deleted and purged from the recycle "
        "bin before a read saw its deletion. 0: never.",
        minimum=0,
        maximum=720,
    )
    reconcile_max_share: float = setting(
        0.2,
        "A comparison of Ids that would remove more than this share of an object's mirrored records (and more than "
        "10) is not applied but reported: the integration user losing sight of records (sharing, permissions) is "
        "likelier than such a purge, and removing them would let crm-sync create leads beside ones it no longer sees.",
        minimum=0.01,
        maximum=1,
    )
    state_country_picklists: bool = setting(
        True,
        "The org has State and Country/Territory picklists (on in new orgs; `python -m sync check` says): crm-sync "
        "reads CountryCode first and writes a lead's country as its ISO code to CountryCode (Country takes only "
        "the picklist's names). Off: the ISO code goes to Country, and CountryCode is never selected.",
    )
    fields: Mapping[str, str] = setting(
        DEFAULT_FIELDS,
        "crm-sync's custom field -> its API name in this org, where the org names it differently.",
        merge=True,
        pattern=r"[A-Za-z][A-Za-z0-9_]*",
        hint="a field's API name",
        toml="salesforce.fields",
    )


class SalesforceClient:
    """A Salesforce REST client for one org, configured by `SalesforceSettings` (used as given:
    `sync.config` has checked them; the client needs `token` or `client_id` + `client_secret`).

    Authentication: a bare `token` (a 401 is then `AuthError`), or OAuth client credentials
    (`client_id` + `client_secret`), with which the client logs in at
    `{instance_url}/services/oauth2/token` on first use and once more after a 401; a token given
    with credentials is used until it expires. `instance_url` stays the base of every call. An
    `http://` instance URL (the local sandbox) is served over plain HTTP although simple-salesforce
    writes `https://`. Secrets never appear in a message or a log.

    `requests` counts every attempt by `(method, path template)`. Before each write request the
    API usage seen in `Sforce-Limit-Info` is checked against `budget_share` of the daily allocation.
    `max_wait_seconds` caps any single wait between two attempts, per-record lock re-sends included.
    """

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.instance_url = settings.instance_url.rstrip("/")
        self.api_version = settings.api_version
        self.budget_share = settings.budget_share
        self._session = session if session is not None else make_session(self.instance_url, settings.timeout_seconds)
        self._session.hooks["response"].append(self._observe_date)
        self._last_date: datetime | None = None
        self.last_query_time: datetime | None = None
        """Salesforce's own clock (the `Date` header, whole seconds, so never late) when the latest
        query's first page was answered: a query's pages are a snapshot of that moment."""
        self._token = settings.token or None
        self._client_id = settings.client_id or None
        self._client_secret = settings.client_secret or None
        self._timeout = settings.timeout_seconds
        self._sleep = sleep
        self._max_attempts = settings.max_attempts
        self._max_wait = settings.max_wait_seconds
        self._lock_retries = settings.lock_retries
        self._sf: Salesforce | None = None
        self._data_path = f"/services/data/v{settings.api_version}"
        self.requests = RequestCounter()
        self._names = _FieldNames(settings.fields)

    def __repr__(self) -> str:
        return f"SalesforceClient({self.instance_url!r})"

    # -- reading ---------------------------------------------------------------------------------

    def query(self, soql_template: str, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any] | Unreadable]:
        """Run a SOQL query built by `format_soql(soql_template, *args, **kwargs)`; yield its records.

        Values are quoted by `format_soql`; never put outside data through `{:literal}`. Pages
        (`nextRecordsUrl`) are fetched lazily, each under the retry policy, and `attributes` is
        removed from every record, nested ones included. Each page is decoded record by record
        (`core.decoding.decode_page`): a record that cannot be decoded within the limits comes as
        an `Unreadable` in its place, and the others as usual.
        """
        return self._records(_soql(soql_template, *args, **kwargs))

    def iter_changed(
        self, sobject: str, fields: Iterable[str], since: str | None, *, lookback_seconds: int | None = None
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """Yield the `sobject` records with `SystemModstamp >= since - lookback_seconds` (None: the
        `lookback_seconds` setting), ordered by `(SystemModstamp, Id)`; `since=None` yields every record.

        `Id` and `SystemModstamp` are always selected. The look-back re-reads records whose
        transaction committed after a later one was already visible; callers drop the repeats by
        key. `sobject` and `fields` come from our configuration and are checked to be names
        (`Owner.Name` paths allowed) before they reach the query.

        Read through the QueryAll resource: "Use QueryAll rather than Query, because the Query
        resource will automatically filter out items that have been deleted" (REST API guide,
        "Get Records that Have Been Deleted or Merged"). A record deleted, or merged into another,
        since `since` comes with `IsDeleted` true (when selected) and its deletion's
        SystemModstamp, so the mirror learns of it; one purged from the recycle bin is gone.
        """
        _check_name(sobject, "sobject")
        fields = tuple(fields)
        for field in fields:
            _check_field(field)
        if lookback_seconds is None:
            lookback_seconds = self.settings.lookback_seconds
        # SOQL refuses a field selected twice (case-insensitively); the cursor fields keep their
        # canonical spelling so that callers find them under that key.
        selected = self._names.to_org(sobject, fields)
        columns = ", ".join(["Id", *_unique(selected, skip={"id", "systemmodstamp"}), "SystemModstamp"])
        # Names checked above are our configuration, not outside data: safe as literals.
        # Every page is read (the caller mirrors them all): each is requested while the one before
        # is handled (`CursorPaginator.pages`, `ahead`).
        if since is None:
            soql = _soql("SELECT {:literal} FROM {:literal} ORDER BY SystemModstamp, Id", columns, sobject)
            return self._names.from_org(sobject, self._records(soql, ahead=True, deleted=True))
        start = _since(since) - timedelta(seconds=lookback_seconds)
        soql = _soql(
            "SELECT {:literal} FROM {:literal} WHERE SystemModstamp >= {} ORDER BY SystemModstamp, Id",
            columns,
            sobject,
            start,
        )
        return self._names.from_org(sobject, self._records(soql, ahead=True, deleted=True))

    def iter_ids(self, sobject: str) -> Iterator[str | None]:
        """The Id of every live `sobject` record, through the Query resource (which "will
        automatically filter out items that have been deleted"), one page of 2,000 per request;
        None in place of a record that could not be decoded. What `sync.ingest` compares the mirror
        with, now and then: a record deleted and then purged from the recycle bin (by a person, or
        after its 15 days) before a QueryAll read saw it is in no change list ("Results are
        returned for no more than 15 days ... or earlier if an administrator has purged the
        Recycle Bin", sObject Get Deleted, REST API guide)."""
        _check_name(sobject, "sobject")
        soql = _soql("SELECT Id FROM {:literal}", sobject)
        for raw in self._records(soql, ahead=True):
            record_id = None if isinstance(raw, Unreadable) else raw.get("Id")
            yield record_id if isinstance(record_id, str) and record_id else None

    def read_by_ids(
        self, sobject: str, fields: Iterable[str], ids: Sequence[str]
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """Yield the records of `sobject` with these Ids (`Id` and `fields` selected), one query per
        200 ids (`WHERE Id IN (...)`, well within SOQL's length limits); the ids are quoted by
        `format_soql`, the names checked like `iter_changed`'s."""
        return self.read_where(sobject, fields, "Id", ids)

    def read_where(
        self, sobject: str, fields: Iterable[str], field: str, values: Sequence[str]
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """Yield the records of `sobject` whose `field` holds one of `values` (`Id` and `fields`
        selected), one query per 200 values; every name under the org's own (`[salesforce.fields]`)
        in the query and back under crm-sync's in the records, as `iter_changed` reads them."""
        _check_name(sobject, "sobject")
        _check_field(field)
        fields = tuple(fields)
        for name in fields:
            _check_field(name)
        columns = ", ".join(["Id", *_unique(self._names.to_org(sobject, fields), skip={"id"})])
        [where] = self._names.to_org(sobject, (field,))
        wanted = list(values)
        for start in range(0, len(wanted), COLLECTION_LIMIT):
            chunk = wanted[start : start + COLLECTION_LIMIT]
            records = self.query(
                "SELECT {:literal} FROM {:literal} WHERE {:literal} IN {}", columns, sobject, where, chunk
            )
            yield from self._names.from_org(sobject, records)

    def describe(self, sobject: str) -> dict[str, Any]:
        """`GET sobjects/<sobject>/describe`: the object's fields as this org and this user see them
        (name, type, createable, updateable, externalId, unique, picklistValues, ...), under the
        org's own names (`[salesforce.fields]` is not applied: the preflight compares them)."""
        _check_name(sobject, "sobject")
        path = f"sobjects/{sobject}/describe"
        answer = self._call("GET", f"{self._data_path}/{path}", lambda sf: sf.restful(path, method="GET"))
        if not isinstance(answer, dict) or not isinstance(answer.get("fields"), list):
            raise ContractError(f"salesforce GET {path}: expected an object with a list of fields", system=SYSTEM)
        return answer

    # -- writing ---------------------------------------------------------------------------------

    def upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]], *, set_owner: bool
    ) -> list[WriteResult]:
        """Upsert `records` by `external_id_field`; one result per record, in order, keyed by
        the external id value.

        Sent as `PATCH composite/sobjects/<sobject>/<external_id_field>` with `allOrNone: false`
        in chunks of 200. See `_write` for per-record errors, locks and the budget. Field names are
        crm-sync's; the org's own (`[salesforce.fields]`) go on the wire.
        """
        _check_name(sobject, "sobject")
        _check_name(external_id_field, "external_id_field")
        (key_field,) = self._names.to_org(sobject, (external_id_field,))
        path = f"composite/sobjects/{sobject}/{key_field}"
        return self._write(path, sobject, key_field, records, set_owner=set_owner)

    def update(self, sobject: str, records: Sequence[Mapping[str, Any]], *, set_owner: bool) -> list[WriteResult]:
        """Update `records` (each carries its `Id`); one result per record, in order, keyed by Id.

        Sent as `PATCH composite/sobjects` with `allOrNone: false` in chunks of 200.
        """
        _check_name(sobject, "sobject")
        return self._write("composite/sobjects", sobject, "Id", records, set_owner=set_owner)

    # -- budget ----------------------------------------------------------------------------------

    def api_usage(self) -> tuple[int, int] | None:
        """`(used, max)` of the daily API allocation from the last `Sforce-Limit-Info` seen."""
        if self._sf is None:
            return None
        usage = self._sf.api_usage.get("api-usage")
        if usage is None:
            return None
        return int(usage.used), int(usage.total)

    def check_budget(self) -> None:
        """Raise `QuotaExhaustedError` once `used / max >= budget_share`; unknown usage passes."""
        usage = self.api_usage()
        if usage is None:
            return
        used, total = usage
        if total > 0 and used / total >= self.budget_share:
            share = f"{self.budget_share:.0%}"
            raise QuotaExhaustedError(f"salesforce API budget spent: {used}/{total} calls used, our share is {share}")

    # -- the one classification --------------------------------------------------------------------

    def classify(self, error: BaseException) -> SyncError:
        """Map a failure talking to Salesforce onto the error tree; see `_classify`."""
        return _classify(error)

    # -- the one request loop ----------------------------------------------------------------------

    def _call(self, method: str, template: str, fn: Callable[[Salesforce], T], *, write: bool = False) -> T:
        """Run `fn(sf)` (one HTTP request) under the retry policy, with one re-login on a 401. A
        `write` whose answer was lost is not repeated: `UnansweredError`."""
        sf = self._client()
        relogged = False

        def attempt() -> T:
            if write:
                self.check_budget()
            self.requests.add(method, template)
            try:
                return fn(sf)
            except (
                SalesforceError,
                JsonError,
                requests.exceptions.JSONDecodeError,
                RetriableError,
                *_NETWORK_ERRORS,
            ) as error:
                failure = _failure(error, write=write, where=f"salesforce {method} {template}")
                if failure is error:
                    raise
                raise failure from error

        def attempt_with_relogin() -> T:
            nonlocal relogged
            try:
                return attempt()
            except AuthError as error:
                if relogged or error.status != 401 or not self._can_login:
                    raise
                relogged = True
                log.info("salesforce session refused; logging in again")
                self._login()
                return attempt()

        return call_with_retry(
            attempt_with_relogin, sleep=self._sleep, max_attempts=self._max_attempts, max_wait=self._max_wait
        )

    @property
    def _can_login(self) -> bool:
        return self._client_id is not None and self._client_secret is not None

    def _client(self) -> Salesforce:
        if self._sf is None:
            if self._token is None:
                self._login()
            self._sf = _Salesforce(
                instance_url=self.instance_url,
                session_id=self._token,
                version=self.api_version,
                session=self._session,
            )
        return self._sf

    def _login(self) -> None:
        """OAuth 2.0 client-credentials flow; keeps the new access token for every later call."""
        url = f"{self.instance_url}/services/oauth2/token"
        template = "/services/oauth2/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id or "",
            "client_secret": self._client_secret or "",
        }

        def attempt() -> str:
            self.requests.add("POST", template)
            try:
                response = self._session.post(url, data=form, timeout=self._timeout)
            except _NETWORK_ERRORS as error:
                raise _classify(error) from error
            status = response.status_code
            if status in (400, 401, 403):
                # OAuth errors are {"error": "invalid_client", ...}: the code alone is safe to show.
                code = _oauth_error(response)
                raise AuthError(f"salesforce login refused: HTTP {status}{code}", system=SYSTEM, status=status)
            if status == 429:
                raise RateLimitedError("salesforce login: HTTP 429", system=SYSTEM)
            if status == 408 or status >= 500 or status in TRANSIENT_STATUSES:
                raise RetriableError(f"salesforce login: HTTP {status}", system=SYSTEM, status=status)
            if not 200 <= status < 300:
                raise ContractError(f"salesforce login: unexpected HTTP {status}", system=SYSTEM, status=status)
            return _access_token(response)

        self._token = call_with_retry(
            attempt, sleep=self._sleep, max_attempts=self._max_attempts, max_wait=self._max_wait
        )
        if self._sf is not None:
            self._sf.session_id = self._token
            self._sf.headers["Authorization"] = f"Bearer {self._token}"

    def _observe_date(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        try:
            self._last_date = parsedate_to_datetime(response.headers["Date"])
        except (KeyError, TypeError, ValueError):
            self._last_date = None
        if self._last_date is not None and self._last_date.tzinfo is None:
            self._last_date = None  # a Date without a zone cannot be compared with SystemModstamps

    def _records(
        self, soql: str, *, ahead: bool = False, deleted: bool = False
    ) -> Iterator[dict[str, Any] | Unreadable]:
        """The records of a SOQL query, page by page; `deleted`: through QueryAll (deleted and
        merged records too; its nextRecordsUrl, a `query/<locator>` path, is followed as given)."""
        paginator = CursorPaginator(system=SYSTEM)
        resource = "queryAll" if deleted else "query"

        def fetch(locator: str | None) -> tuple[list[Any], str | None]:
            if locator is None:
                self._last_date = None
                body = self._call(
                    "GET", f"{self._data_path}/{resource}", lambda sf: sf.query(soql, include_deleted=deleted)
                )
                self.last_query_time = self._last_date
            else:
                # nextRecordsUrl is a path on the instance: simple-salesforce prefixes https://host.
                # A QueryAll's says `query` too ("QueryAll More Results"): counted as what it asks.
                more = "queryAll" if "/queryAll/" in locator else "query"
                body = self._call(
                    "GET",
                    f"{self._data_path}/{more}/:locator",
                    lambda sf: sf.query_more(locator, identifier_is_url=True),
                )
            return _query_page(body)

        # Written out rather than `query_all_iter`: a generator that raised cannot resume, so each
        # page must be its own retried call for a failure on page 7 not to restart at page 1.
        for page in paginator.pages(fetch, ahead=ahead):
            for record in page:
                yield _strip_attributes(record)

    def _write(
        self,
        path: str,
        sobject: str,
        key_field: str,
        records: Sequence[Mapping[str, Any]],
        *,
        set_owner: bool,
    ) -> list[WriteResult]:
        """Send `records` in collections of 200 and return one result per record, in order.

        - A record without `key_field` is not sent: `MISSING_KEY`.
        - Per-record `UNABLE_TO_LOCK_ROW` → only those records are sent again, up to
          `lock_retries` more rounds with backoff; then a transient result.
        - Other per-record errors (`DUPLICATES_DETECTED`, `REQUIRED_FIELD_MISSING`, …) → a
          permanent result; nothing is ever re-sent as a create.
        - Budget spent (our share, or 403 `REQUEST_LIMIT_EXCEEDED`) before the first request →
          `QuotaExhaustedError`; after some requests went out → the unsent records come back as
          transient `QUOTA_EXHAUSTED` results (the next write call raises).
        - Any other whole-request failure raises after the retry policy gave up.
        """
        headers = {"Sforce-Auto-Assign": "FALSE"} if set_owner else {}
        results: list[WriteResult | None] = [None] * len(records)
        pending = _keyed(sobject, key_field, self._names.records_to_org(sobject, records), results)
        sent_any = False
        for round_number in range(self._lock_retries + 1):
            if not pending:
                break
            if round_number > 0:
                self._sleep(backoff_wait(round_number, max_wait=self._max_wait))
            locked: list[_Pending] = []
            for start in range(0, len(pending), COLLECTION_LIMIT):
                try:
                    locked += self._send_collection(path, headers, pending[start : start + COLLECTION_LIMIT], results)
                except QuotaExhaustedError as error:
                    if not sent_any:
                        raise
                    for index, key, _ in pending[start:]:
                        results[index] = WriteResult(
                            key=key, ok=False, code="QUOTA_EXHAUSTED", message=str(error), transient=True
                        )
                    return self._names.results_from_org(sobject, _complete(results))
                sent_any = True
            pending = locked
        return self._names.results_from_org(sobject, _complete(results))

    def _send_collection(
        self, path: str, headers: dict[str, str], chunk: Sequence[_Pending], results: list[WriteResult | None]
    ) -> list[_Pending]:
        """One collection request: each record's result goes into `results`; returns the records
        refused with a transient per-record error (`UNABLE_TO_LOCK_ROW`), to be sent again."""
        payload = {"allOrNone": False, "records": [item for _, _, item in chunk]}

        def send(sf: Salesforce) -> Any:
            return sf.restful(path, method="PATCH", json=payload, headers=headers)

        answer = self._call("PATCH", f"{self._data_path}/{path}", send, write=True)
        if not isinstance(answer, list) or len(answer) != len(chunk):
            raise ContractError(f"salesforce PATCH {path}: expected one result per record", system=SYSTEM)
        locked: list[_Pending] = []
        for (index, key, item), outcome in zip(chunk, answer, strict=True):
            result = _record_result(key, outcome)
            results[index] = result
            if result.code in _TRANSIENT_RECORD_CODES:
                locked.append((index, key, item))
        return locked


class _FieldNames:
    """crm-sync's field names and the org's (`[salesforce.fields]`), per sObject, both ways. Only
    the fields an org renames cost anything: an object with none passes its records through."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self._to: dict[str, dict[str, str]] = {}
        self._back: dict[str, dict[str, str]] = {}
        for canonical, name in fields.items():
            entry = FIELD_OBJECTS.get(canonical)
            if entry is None or name == entry[1]:
                continue
            sobject, ours = entry
            self._to.setdefault(sobject, {})[ours] = name
            self._back.setdefault(sobject, {})[name.lower()] = ours  # Salesforce names are case-insensitive

    def to_org(self, sobject: str, names: Iterable[str]) -> list[str]:
        renamed = self._to.get(sobject, {})
        return [renamed.get(name, name) for name in names]

    def from_org(self, sobject: str, records: Iterator[Any]) -> Iterator[Any]:
        back = self._back.get(sobject)
        if not back:
            return records
        return (
            record if isinstance(record, Unreadable) else {back.get(k.lower(), k): v for k, v in record.items()}
            for record in records
        )

    def records_to_org(self, sobject: str, records: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        renamed = self._to.get(sobject)
        if not renamed:
            return records
        return [{renamed.get(k, k): v for k, v in record.items()} for record in records]

    def results_from_org(self, sobject: str, results: list[WriteResult]) -> list[WriteResult]:
        back = self._back.get(sobject)
        if not back:
            return results
        return [replace(r, fields=tuple(back.get(f.lower(), f) for f in r.fields)) if r.fields else r for r in results]


class _Salesforce(Salesforce):
    """simple-salesforce, with every answer decoded under the limits of `core.decoding`: a query
    page record by record (a poison record becomes an `Unreadable`), anything else as one document
    (`JsonError` beyond the limits). Its default decoding (an `OrderedDict` per object, through a
    Python hook) is also slower."""

    def parse_result_to_json(self, result: requests.Response) -> Any:
        try:
            return decode_page(result.content, records_key="records", id_key="Id", stamp_key="SystemModstamp")
        except JsonError:
            if not_json(result.content):
                # An HTML page or nothing where JSON belongs: a proxy's or the edge's, while the
                # org recovers. The same request is answered properly later (AB-sf-retry).
                status = result.status_code
                message = f"salesforce: HTTP {status} answer is not JSON"
                raise RetriableError(message, system=SYSTEM, status=status) from None
            raise


def _failure(error: BaseException, *, write: bool, where: str) -> SyncError:
    """`_classify`, and for a write the failures after which it may have taken effect: no answer
    once the request was on its way, or a gateway's 502/504/520/524 → `UnansweredError`."""
    if write and isinstance(error, _NETWORK_ERRORS) and not never_sent(error):
        detail = f"no answer ({type(error).__name__})"
        return UnansweredError(f"{where}: {detail}; the write may have taken effect", system=SYSTEM)
    classified = _classify(error)
    if write and isinstance(classified, RetriableError) and classified.status in MAYBE_APPLIED_STATUSES:
        detail = f"HTTP {classified.status} from a gateway"
        return UnansweredError(
            f"{where}: {detail}; the write may have taken effect", system=SYSTEM, status=classified.status
        )
    return classified


def _classify(error: BaseException) -> SyncError:
    """The one mapping of Salesforce failures onto the error tree.

    401 → AuthError; 403 `REQUEST_LIMIT_EXCEEDED` → QuotaExhaustedError (the daily allocation), or
    RateLimitedError when its message names the concurrent-requests limit, other 403 → AuthError;
    429 → RateLimitedError; 408/5xx, 406 and 420 (answered by Salesforce's edge while the org
    recovers, usually without JSON) and network failures (resets, timeouts) → RetriableError;
    300/400/404 and anything unexpected → ContractError (our request or the org's schema is wrong).
    An answer that is not JSON at all (an HTML page) is retried too (`_Salesforce`).
    Messages carry the status and the error codes only, never the response text or URL.
    """
    if isinstance(error, SyncError):
        return error
    if isinstance(error, SalesforceError):
        status = int(error.status)
        codes = _error_codes(error.content)
        where = f"salesforce {error.resource_name or 'request'}: HTTP {status}"
        detail = f"{where} {','.join(codes)}".rstrip()
        if status == 401:
            return AuthError(detail, system=SYSTEM, status=status)
        if status == 403:
            return _forbidden(detail, codes, error.content)
        if status == 429:
            return RateLimitedError(detail, system=SYSTEM)
        if status == 408 or status >= 500 or status in TRANSIENT_STATUSES:
            return RetriableError(detail, system=SYSTEM, status=status)
        return ContractError(detail, system=SYSTEM, status=status)
    if isinstance(error, _NETWORK_ERRORS):
        # str(error) would carry the URL; the kind of failure is enough to act on.
        return RetriableError(f"salesforce: network error ({type(error).__name__})", system=SYSTEM)
    if isinstance(error, ValueError):
        return ContractError(_unreadable_answer(error), system=SYSTEM)
    return ContractError(f"salesforce: unexpected {type(error).__name__}", system=SYSTEM)


def _unreadable_answer(error: ValueError) -> str:
    if isinstance(error, JsonError):  # says what is wrong and where, never quotes the body
        return f"salesforce: response {error}"
    return "salesforce: response is not valid JSON"


def _forbidden(detail: str, codes: list[str], content: Any) -> SyncError:
    """A 403: the daily allocation spent, the concurrent-requests limit ("ConcurrentRequests
    (Concurrent API Requests) Limit exceeded": the org's long-running requests at once, which
    clears in seconds, retried like a 429), or a refusal of the integration user."""
    if "REQUEST_LIMIT_EXCEEDED" in codes and _concurrent_limit(content):
        return RateLimitedError(f"{detail} (concurrent requests)", system=SYSTEM)
    if "REQUEST_LIMIT_EXCEEDED" in codes:
        return QuotaExhaustedError(detail, system=SYSTEM)
    return AuthError(detail, system=SYSTEM, status=403)


def _concurrent_limit(content: Any) -> bool:
    """Whether a `REQUEST_LIMIT_EXCEEDED` answer is the concurrent long-running requests limit
    ("ConcurrentRequests (Concurrent API Requests) Limit exceeded.") rather than the daily
    allocation ("TotalRequests Limit exceeded."): the same code for both."""
    items = content if isinstance(content, list) else [content]
    return any(isinstance(item, dict) and "concurrent" in str(item.get("message") or "").casefold() for item in items)


def _error_codes(content: Any) -> list[str]:
    """The `errorCode`s of Salesforce's error array, whatever shape the body really has."""
    items = content if isinstance(content, list) else [content]
    codes = []
    for item in items:
        if isinstance(item, Mapping):
            code = item.get("errorCode") or item.get("statusCode")
            if isinstance(code, str) and _ERROR_CODE.match(code):
                codes.append(code)
    return codes


def _access_token(response: requests.Response) -> str:
    """The access token of a successful login's answer; an answer that is not JSON at all (an
    edge server's page) is retried, one without a token is a contract error."""
    status = response.status_code
    if not_json(response.content):
        raise RetriableError(f"salesforce login: HTTP {status} answer is not JSON", system=SYSTEM, status=status)
    try:
        body = decode_json(response.content)
    except JsonError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ContractError("salesforce login: no access_token in the answer", system=SYSTEM)
    return token


def _oauth_error(response: requests.Response) -> str:
    try:
        body = decode_json(response.content)
    except JsonError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return f" {code}" if isinstance(code, str) and _ERROR_CODE.match(code) else ""


def _keyed(
    sobject: str, key_field: str, records: Sequence[Mapping[str, Any]], results: list[WriteResult | None]
) -> list[_Pending]:
    """The records to send, as `(index, key, body)`; one without `key_field` is not sent: its
    result is `MISSING_KEY`."""
    pending: list[_Pending] = []
    for index, record in enumerate(records):
        value = record.get(key_field)
        if value is None or value == "":
            results[index] = WriteResult(key="", ok=False, code="MISSING_KEY", message=f"no {key_field}")
            continue
        body = {name: field for name, field in record.items() if name != "attributes"}
        pending.append((index, str(value), {"attributes": {"type": sobject}, **body}))
    return pending


def _record_result(key: str, outcome: Any) -> WriteResult:
    """One item of an sObject Collections answer: `{id, success, created?, errors: [...]}`."""
    if not isinstance(outcome, Mapping):
        raise ContractError("salesforce composite/sobjects: a result is not an object", system=SYSTEM)
    record_id = outcome.get("id") if isinstance(outcome.get("id"), str) else None
    if outcome.get("success") is True:
        created = outcome.get("created")
        return WriteResult(key=key, ok=True, id=record_id, created=created if isinstance(created, bool) else None)
    errors = [item for item in outcome.get("errors") or [] if isinstance(item, Mapping)]
    codes = [str(item.get("statusCode") or item.get("errorCode") or "UNKNOWN_ERROR") for item in errors]
    permanent = [code for code in codes if code not in _TRANSIENT_RECORD_CODES]
    code = (permanent or codes or ["UNKNOWN_ERROR"])[0]
    messages = [str(item["message"]) for item in errors if item.get("message")]
    fields: list[str] = []
    for item in errors:
        for field in item.get("fields") or []:
            if str(field) not in fields:
                fields.append(str(field))
    return WriteResult(
        key=key,
        ok=False,
        id=record_id,
        code=code,
        message="; ".join(messages) or None,
        fields=tuple(fields),
        transient=not permanent and bool(codes),
    )


def _complete(results: list[WriteResult | None]) -> list[WriteResult]:
    done = [result for result in results if result is not None]
    if len(done) != len(results):  # every path above fills every slot; this guards refactors
        raise ContractError("salesforce: a record got no result", system=SYSTEM)
    return done


def _query_page(body: Any) -> tuple[list[Any], str | None]:
    """`{records, done, nextRecordsUrl}` → the records and the next locator (None when done)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("records"), list):
        raise ContractError("salesforce query: expected {records, done}", system=SYSTEM)
    if not all(isinstance(record, Mapping | Unreadable) for record in body["records"]):
        raise ContractError("salesforce query: records must be objects", system=SYSTEM)
    if body.get("done") is True:
        return body["records"], None
    next_url = body.get("nextRecordsUrl")
    if not isinstance(next_url, str) or not next_url:
        raise ContractError("salesforce query: not done but no nextRecordsUrl", system=SYSTEM)
    return body["records"], next_url


def _soql(soql_template: str, *args: Any, **kwargs: Any) -> str:
    """`format_soql(soql_template, *args, **kwargs)`; a template that cannot be filled is a
    `ConfigError`."""
    try:
        return str(format_soql(soql_template, *args, **kwargs))
    except (ValueError, KeyError, IndexError) as error:
        raise ConfigError([f"soql: cannot format the query ({type(error).__name__})"]) from error


# The JSON scalars: a record's fields are nearly all of them, and are kept as they are.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _strip_attributes(value: Any) -> Any:
    """Drop the `attributes` Salesforce adds to every record (nested ones too); plain dicts out. A
    scalar field is kept without a call of its own (2.1 against 6.5 µs a lead, 38,000 records in a
    cold read of 100,000 accounts)."""
    if isinstance(value, Mapping):
        return {
            key: item if type(item) in _SCALARS else _strip_attributes(item)
            for key, item in value.items()
            if key != "attributes"
        }
    if isinstance(value, list):
        return [item if type(item) in _SCALARS else _strip_attributes(item) for item in value]
    return value


def _since(value: str) -> datetime:
    try:
        return parse_iso_utc(value)
    except ValueError:
        raise ContractError(f"salesforce: cursor {value[:40]!r} is not an ISO-8601 timestamp", system=SYSTEM) from None


def _unique(names: Iterable[str], *, skip: set[str]) -> list[str]:
    """`names` without case-insensitive repeats or anything in `skip` (lower-case)."""
    seen = set(skip)
    unique = []
    for name in names:
        if name.lower() not in seen:
            seen.add(name.lower())
            unique.append(name)
    return unique


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError([f"salesforce.{what}: {value!r} is not an API name"])


def _check_field(value: str) -> None:
    if not isinstance(value, str) or not _FIELD_PATH.match(value):
        raise ConfigError([f"salesforce.fields: {value!r} is not a field name"])
