"""The Salesforce half of the sandbox: SOQL queries, sObject rows and collections, OAuth.

Imitates what the connectors and simple-salesforce rely on, as Salesforce's REST API documents it
(README, "The sandbox"): bearer sessions that a control can expire, the daily
request quota reported in `Sforce-Limit-Info`, SOQL paged through
`nextRecordsUrl` over a snapshot taken at query time, create / update / upsert by
external id (single and sObject Collections with `allOrNone`), the validation
errors a real org returns, injected per-record errors, and an assignment rule
that overwrites `OwnerId` unless the request says `Sforce-Auto-Assign: FALSE`.

Not thread-safe: the server calls `handle` and the other methods under its lock.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from sandbox import soql
from sandbox.store import (
    Clock,
    ControlError,
    Reply,
    Request,
    SandboxConfig,
    parse_timestamp,
    raw_json_tokens,
    sf_timestamp,
)

__all__ = ["RecordErrorRule", "SalesforceService", "case_safe_id"]

_MAX_COLLECTION = 200
_OPEN_CURSORS = 32
_VERSION_RE = re.compile(r"^/services/data/(v\d+\.\d+)(?:/(.*))?$")

_PREFIXES = {
    "Lead": "00Q",
    "User": "005",
    "Opportunity": "006",
    "Account": "001",
    "Contact": "003",
    "Group": "00G",
    "Task": "00T",
}
_SYSTEM_FIELDS = (
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
)
_STANDARD_FIELDS: dict[str, tuple[str, ...]] = {
    "Lead": (
        "FirstName",
        "LastName",
        "Name",
        "Email",
        "Phone",
        "Company",
        "Title",
        "Website",
        "Country",
        "State",
        "City",
        "NumberOfEmployees",
        "AnnualRevenue",
        "Industry",
        "LeadSource",
        "Status",
        "Rating",
        "Description",
        "OwnerId",
        "IsConverted",
        "ConvertedDate",
        "ConvertedAccountId",
        "ConvertedContactId",
        "ConvertedOpportunityId",
        "Role__c",
        "Sub_Role__c",
        "Form_Text__c",
        "Vitally_Account_Id__c",
        "Lead_Score__c",
        "Routing_Rule__c",
        "Routing_Reason__c",
        "Classification__c",
        "Qualification__c",
        "Qualification_Reason__c",
        "Sync_Key__c",
    ),
    "User": (
        "FirstName",
        "LastName",
        "Name",
        "Email",
        "Username",
        "Alias",
        "IsActive",
        "Title",
        "Department",
        "UserRoleId",
        "ProfileId",
        "TimeZoneSidKey",
        "Country",
        "ManagerId",
    ),
    "Opportunity": (
        "Name",
        "AccountId",
        "StageName",
        "CloseDate",
        "Amount",
        "Probability",
        "Type",
        "LeadSource",
        "IsClosed",
        "IsWon",
        "Description",
        "OwnerId",
        "Loss_Reason__c",
    ),
    "Account": (
        "Name",
        "Website",
        "Industry",
        "Type",
        "BillingCountry",
        "NumberOfEmployees",
        "AnnualRevenue",
        "Description",
        "OwnerId",
        "Vitally_Account_Id__c",
    ),
    "Contact": ("FirstName", "LastName", "Name", "Email", "Title", "AccountId", "OwnerId"),
}
_READ_ONLY = {
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "IsConverted",
    "ConvertedDate",
    "ConvertedAccountId",
    "ConvertedContactId",
    "ConvertedOpportunityId",
    "IsClosed",
    "IsWon",
}
_COMPOUND_NAME = {"Lead", "Contact", "User"}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "Lead": ("LastName", "Company"),
    "Contact": ("LastName",),
    "Opportunity": ("Name", "StageName", "CloseDate"),
    "Account": ("Name",),
}
_REFERENCES: dict[str, str] = {"OwnerId": "User", "AccountId": "Account", "ManagerId": "User"}
_INJECTED_MESSAGES = {
    "UNABLE_TO_LOCK_ROW": "unable to obtain exclusive access to this record or 1 records",
    "DUPLICATES_DETECTED": "Use one of these records?",
    "CANNOT_UPDATE_CONVERTED_LEAD": "cannot reference converted lead",
}
_ROLLED_BACK = "Record rolled back because not all records were valid and the request was using AllOrNone header"
_CHECKSUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_Mode = Literal["create", "update", "upsert"]


def case_safe_id(id15: str) -> str:
    """Salesforce's 15 → 18 character id: append the three-letter case checksum."""
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]) if "A" <= ch <= "Z")
        suffix += _CHECKSUM_CHARS[bits]
    return id15 + suffix


class _SfError(Exception):
    """Ends a request with Salesforce's error array `[{"message", "errorCode", "fields"}]`."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []
        super().__init__(message)

    def body(self) -> Any:
        """The JSON body of the error response."""
        return [{"message": self.message, "errorCode": self.code, "fields": self.fields}]


@dataclass
class _Failure:
    """Why one record's write failed (the per-record error of a collection item)."""

    code: str
    message: str
    fields: list[str] = field(default_factory=list)
    matches: list[str] = field(default_factory=list)
    """For several external-id matches: the matching ids (single upsert answers 300)."""

    def to_json(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


@dataclass
class _Outcome:
    record_id: str | None
    created: bool = False
    failure: _Failure | None = None


@dataclass
class RecordErrorRule:
    """An injected per-record error: the next `count` writes of `sobject` matching `match` fail."""

    sobject: str
    code: str
    count: int
    match: dict[str, Any]
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "object": self.sobject,
            "code": self.code,
            "count": self.count,
            "match": self.match,
            "message": self.message,
        }


class _Table:
    """The rows of one sObject type, with its field schema and lazy value indexes."""

    def __init__(self, name: str, prefix: str) -> None:
        self.name = name
        self.prefix = prefix
        self.fields: dict[str, str] = {}
        for f in (*_SYSTEM_FIELDS, *_STANDARD_FIELDS.get(name, ())):
            self.fields[f.lower()] = f
        self.rows: dict[str, dict[str, Any]] = {}
        self._indexes: dict[str, dict[Any, set[str]]] = {}
        self._counter = 0

    def canonical(self, name: str) -> str | None:
        return self.fields.get(name.lower())

    def learn(self, name: str) -> str:
        """Add a field to the schema (seed records and non-strict writes define their fields)."""
        return self.fields.setdefault(name.lower(), name)

    def new_id(self) -> str:
        while True:
            self._counter += 1
            n, digits = self._counter, ""
            for _ in range(10):
                n, r = divmod(n, 62)
                digits = _BASE62[r] + digits
            candidate = case_safe_id(f"{self.prefix}8d{digits}")
            if candidate not in self.rows:
                return candidate

    def get(self, record_id: str) -> dict[str, Any] | None:
        if len(record_id) == 15:
            record_id = case_safe_id(record_id)
        return self.rows.get(record_id)

    def lookup(self, fname: str, value: Any) -> list[str]:
        """Ids whose `fname` equals `value` (index built on first use, kept up to date by put/remove)."""
        index = self._indexes.get(fname)
        if index is None:
            index = {}
            for rid, row in self.rows.items():
                _index_add(index, row.get(fname), rid)
            self._indexes[fname] = index
        try:
            return sorted(index.get(value, ()))
        except TypeError:  # an unhashable value (list, dict) never matches a scalar field
            return []

    def put(self, row: dict[str, Any]) -> None:
        old = self.rows.get(row["Id"])
        for fname, index in self._indexes.items():
            if old is not None:
                _index_discard(index, old.get(fname), row["Id"])
            _index_add(index, row.get(fname), row["Id"])
        self.rows[row["Id"]] = row

    def remove(self, record_id: str) -> None:
        old = self.rows.pop(record_id, None)
        if old is not None:
            for fname, index in self._indexes.items():
                _index_discard(index, old.get(fname), record_id)


def _index_add(index: dict[Any, set[str]], value: Any, record_id: str) -> None:
    if value is None:
        return
    try:
        index.setdefault(value, set()).add(record_id)
    except TypeError:  # unhashable values are not indexable (and match no lookup)
        return


def _index_discard(index: dict[Any, set[str]], value: Any, record_id: str) -> None:
    try:
        ids = index.get(value)
    except TypeError:
        return
    if ids is not None:
        ids.discard(record_id)
        if not ids:
            del index[value]


_Undo = list[tuple[_Table, str, dict[str, Any] | None]]


class SalesforceService:
    """State and wire behaviour of the imitated Salesforce REST API."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.tables: dict[str, _Table] = {}
        for name, prefix in _PREFIXES.items():
            if name in _STANDARD_FIELDS:
                self.tables[name.lower()] = _Table(name, prefix)
        self.api_used = 0
        self._quota_day: date = clock.now().date()
        self._issued: set[str] = set()
        self._seen: set[str] = set()
        self._expired: set[str] = set()
        self._cursors: OrderedDict[str, tuple[str, list[dict[str, Any]]]] = OrderedDict()
        self.record_errors: list[RecordErrorRule] = []

    # ----------------------------------------------------------------- seeding

    def load(self, seed: Mapping[str, Any]) -> None:
        """Add a seed's `salesforce` section: `{sObject name: [field dicts]}`.

        Assigns an 18-character Id where missing and fills CreatedDate, LastModifiedDate
        and SystemModstamp from the clock where missing; every field seen joins the schema.
        Seeds are not validated, so they can hold states a write could not reach
        (converted leads, duplicate external ids).
        """
        now = sf_timestamp(self.clock.now())
        for name, rows in seed.items():
            table = self._table_for_seed(str(name))
            for raw in rows or []:
                row: dict[str, Any] = {}
                for key, value in dict(raw).items():
                    if key == "attributes":
                        continue
                    row[table.learn(key)] = raw_json_tokens(copy.deepcopy(value))
                if not row.get("Id"):
                    row["Id"] = table.new_id()
                for key in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
                    parsed = parse_timestamp(row.get(key))
                    if parsed is not None:
                        row[key] = sf_timestamp(parsed)
                    elif row.get(key) is None:
                        row[key] = row.get("CreatedDate") or now
                if table.name in _COMPOUND_NAME and "Name" not in row:
                    row["Name"] = _full_name(row)
                table.put(row)

    def _table_for_seed(self, name: str) -> _Table:
        table = self.tables.get(name.lower())
        if table is None:
            prefix = _PREFIXES.get(name, f"a{len(self.tables):02d}")
            table = self.tables[name.lower()] = _Table(name, prefix)
        return table

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every sObject, in the seed format (deep copies, no `attributes`)."""
        return {t.name: copy.deepcopy(list(t.rows.values())) for t in self.tables.values()}

    def add_leads(self, rows: list[dict[str, Any]], *, owner_ids: list[str]) -> list[str]:
        """Insert inbound Leads as web-to-lead would (fresh Ids, now as CreatedDate, no validation).

        A lead whose OwnerId is not a known user gets one of `owner_ids`; the assignment
        rule, when on, decides the owner as it would for any inbound lead.
        """
        table = self.tables["lead"]
        users = self.tables["user"]
        added: list[str] = []
        for i, raw in enumerate(rows):
            row = {table.learn(k): copy.deepcopy(v) for k, v in raw.items() if k not in ("attributes", "Id")}
            stamp = sf_timestamp(self.clock.stamp())
            row.update(Id=table.new_id(), CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
            row.setdefault("IsConverted", False)
            if self.config.assignment_rule_owner_id is not None:
                row["OwnerId"] = self.config.assignment_rule_owner_id
            elif users.get(str(row.get("OwnerId") or "")) is None and owner_ids:
                row["OwnerId"] = owner_ids[i % len(owner_ids)]
            row["Name"] = _full_name(row)
            table.put(row)
            added.append(row["Id"])
        return added

    # ------------------------------------------------------------- controls

    def expire_sessions(self) -> None:
        """Every token seen or issued so far (and the configured one) now gets 401."""
        self._expired |= self._seen | self._issued
        if self.config.sf_token is not None:
            self._expired.add(self.config.sf_token)
        self._seen.clear()
        self._issued.clear()

    def add_record_errors(self, spec: Mapping[str, Any]) -> RecordErrorRule:
        """Register an injected per-record error from its JSON spec (see `RecordErrorRule`)."""
        sobject = spec.get("object")
        code = spec.get("code")
        count = spec.get("count", 1)
        match = spec.get("match") or {}
        if not isinstance(sobject, str) or sobject.lower() not in self.tables:
            raise ControlError("object: expected a known sObject name")
        if not isinstance(code, str) or not code:
            raise ControlError("code: expected an error code such as UNABLE_TO_LOCK_ROW")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ControlError("count: expected an integer >= 1")
        if not isinstance(match, dict):
            raise ControlError("match: expected an object of field: value")
        message = spec.get("message") or _INJECTED_MESSAGES.get(code, f"injected {code}")
        rule = RecordErrorRule(self.tables[sobject.lower()].name, code, count, dict(match), str(message))
        self.record_errors.append(rule)
        return rule

    def limit_header(self) -> str:
        """The `Sforce-Limit-Info` value for the current usage."""
        self._roll_quota_day()
        return f"api-usage={self.api_used}/{self.config.sf_daily_quota}"

    def _roll_quota_day(self) -> None:
        # The allocation is daily: a new day on the sandbox clock starts from zero.
        today = self.clock.now().date()
        if today != self._quota_day:
            self._quota_day = today
            self.api_used = 0

    # ------------------------------------------------------------- dispatch

    @staticmethod
    def template(path: str) -> str:
        """The path with ids, external-id values and query locators replaced, for the counters."""
        match = _VERSION_RE.match(path)
        if match is None:
            return path.rstrip("/")
        rest = [p for p in (match.group(2) or "").split("/") if p]
        if rest and rest[0] == "sobjects":
            if len(rest) == 3 and rest[2] != "describe":
                rest[2] = ":id"
            elif len(rest) == 4:
                rest[3] = ":value"
        elif rest and rest[0] in ("query", "queryAll") and len(rest) == 2:
            rest[1] = ":locator"
        return "/".join(["/services/data", match.group(1), *rest]).rstrip("/")

    def handle(self, request: Request) -> Reply:
        """Answer one `/services/...` request (auth, quota, routing)."""
        headers: dict[str, str] = {}
        try:
            if request.path.rstrip("/") == "/services/oauth2/token":
                return self._oauth_token(request)
            match = _VERSION_RE.match(request.path)
            if match is None:
                raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
            if not self._authorized(request.headers.get("authorization")):
                raise _SfError(401, "INVALID_SESSION_ID", "Session expired or invalid")
            self._roll_quota_day()
            if self.api_used >= self.config.sf_daily_quota:
                raise _SfError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_used += 1
            reply = self._route(request, match.group(1), [unquote(p) for p in (match.group(2) or "").split("/") if p])
        except _SfError as exc:
            reply = Reply(exc.status, exc.body(), headers)
        reply.headers["Sforce-Limit-Info"] = self.limit_header()
        return reply

    def _authorized(self, header: str | None) -> bool:
        if not header or header[:7].lower() != "bearer ":
            return False
        token = header[7:].strip()
        if not token or token in self._expired:
            return False
        if token in self._issued:
            return True
        if self.config.sf_token is not None:
            return token == self.config.sf_token
        self._seen.add(token)
        return True

    def _oauth_token(self, request: Request) -> Reply:
        """OAuth 2.0 client-credentials flow; errors are OAuth objects, not Salesforce arrays."""
        if request.method != "POST":
            return Reply(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        form.update({k: v[0] for k, v in request.query.items() if k not in form})
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        wanted_id, wanted_secret = self.config.sf_client_id, self.config.sf_client_secret
        if (
            not client_id
            or not secret
            or (wanted_id is not None and client_id != wanted_id)
            or (wanted_secret is not None and secret != wanted_secret)
        ):
            return Reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        token = "00D8d0000000001!" + secrets.token_urlsafe(48)
        self._issued.add(token)
        host = request.headers.get("host", "127.0.0.1")
        issued_at = str(int(self.clock.now().timestamp() * 1000))
        return Reply(
            200,
            {
                "access_token": token,
                "instance_url": f"http://{host}",
                "id": f"http://{host}/id/00D8d0000000001/0058d0000000001",
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": secrets.token_urlsafe(32),
            },
        )

    def _route(self, request: Request, version: str, rest: list[str]) -> Reply:
        method = request.method
        head = rest[0] if rest else ""
        if head == "" and method == "GET":
            base = f"/services/data/{version}"
            return Reply(200, {k: f"{base}/{k}" for k in ("sobjects", "query", "queryAll", "limits", "composite")})
        if head == "limits" and len(rest) == 1 and method == "GET":
            quota = self.config.sf_daily_quota
            return Reply(200, {"DailyApiRequests": {"Max": quota, "Remaining": max(0, quota - self.api_used)}})
        if head in ("query", "queryAll") and method == "GET":
            if len(rest) == 1:
                return self._query(request, version)
            if len(rest) == 2:
                return self._query_more(rest[1])
        if head == "sobjects":
            return self._sobjects(request, version, rest[1:])
        if head == "composite" and len(rest) >= 2 and rest[1] == "sobjects":
            return self._composite(request, rest[2:])
        if head in ("limits", "query", "queryAll", "sobjects", "composite", ""):
            raise _SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed for this resource")
        raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")

    # ---------------------------------------------------------------- query

    def _query(self, request: Request, version: str) -> Reply:
        text = request.param("q")
        if not text:
            raise _SfError(400, "MALFORMED_QUERY", "A query string (q) is required")
        try:
            query = soql.parse(text)
        except soql.SoqlError as exc:
            raise _SfError(400, exc.code, exc.message) from None
        table = self._table(query.sobject, status=400)
        for name in sorted(soql.field_names(query)):
            if "." not in name and table.canonical(name) is None:
                raise _SfError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on entity '{table.name}'. If you are attempting to "
                    "use a custom field, be sure to append the '__c' after the custom field name.",
                )
        now = self.clock.now()
        try:
            if query.is_count:
                records: list[dict[str, Any]] = []
                total = soql.count(query, table.rows.values(), now=now)
            else:
                records = [
                    self._decorate(table, version, row) for row in soql.execute(query, table.rows.values(), now=now)
                ]
                total = len(records)
        except soql.SoqlError as exc:
            raise _SfError(400, exc.code, exc.message) from None
        locator = "01g8d" + secrets.token_hex(6).upper() + "-"
        self._cursors[locator] = (version, records)
        while len(self._cursors) > _OPEN_CURSORS:
            self._cursors.popitem(last=False)
        return self._page(locator, 0, total)

    def _query_more(self, ident: str) -> Reply:
        locator, _, offset_text = ident.rpartition("-")
        cursor = self._cursors.get(locator + "-")
        if cursor is None or not offset_text.isdigit():
            raise _SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self._cursors.move_to_end(locator + "-")
        return self._page(locator + "-", int(offset_text), len(cursor[1]))

    def _page(self, locator: str, offset: int, total: int) -> Reply:
        version, records = self._cursors[locator]
        size = self.config.sf_page_size
        page = records[offset : offset + size]
        body: dict[str, Any] = {"totalSize": total, "done": offset + size >= len(records), "records": page}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}{offset + size}"
        return Reply(200, body)

    @staticmethod
    def _decorate(table: _Table, version: str, row: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": table.name,
                "url": f"/services/data/{version}/sobjects/{table.name}/{row['Id']}",
            }
        }
        out.update(row)
        return out

    # ------------------------------------------------------------- sobjects

    def _table(self, name: str, *, status: int = 404) -> _Table:
        table = self.tables.get(name.lower())
        if table is None:
            if status == 400:
                raise _SfError(400, "INVALID_TYPE", f"sObject type '{name}' is not supported.")
            raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return table

    def _sobjects(self, request: Request, version: str, rest: list[str]) -> Reply:
        method = request.method
        if not rest:
            if method != "GET":
                raise _SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
            return Reply(200, {"sobjects": [{"name": t.name, "keyPrefix": t.prefix} for t in self.tables.values()]})
        table = self._table(rest[0])
        if len(rest) > 3:
            raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
        if len(rest) == 1:
            reply = self._sobject_type(request, table)
        elif len(rest) == 2:
            reply = self._sobject_record(request, version, table, rest[1])
        else:
            reply = self._sobject_by_external_id(request, version, table, rest[1], rest[2])
        if reply is None:
            raise _SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed for this resource")
        return reply

    def _sobject_type(self, request: Request, table: _Table) -> Reply | None:
        """`sobjects/Type`: create a record (POST) or describe the type in short (GET)."""
        if request.method == "POST":
            outcome = self._apply_one(table, "create", _json_object(request.body), auto_assign=_auto_assign(request))
            return Reply(201, {"id": outcome.record_id, "success": True, "errors": []})
        if request.method == "GET":
            return Reply(200, {"objectDescribe": self._describe(table), "recentItems": []})
        return None

    def _sobject_record(self, request: Request, version: str, table: _Table, record_id: str) -> Reply | None:
        """`sobjects/Type/describe` (GET), or `sobjects/Type/Id`: get, update or delete a record."""
        method = request.method
        if record_id == "describe" and method == "GET":
            return Reply(200, self._describe(table))
        if method == "GET":
            row = table.get(record_id)
            if row is None:
                raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
            return Reply(200, self._decorate(table, version, _project(row, request.param("fields"))))
        if method == "PATCH":
            self._apply_one(
                table, "update", _json_object(request.body), record_id=record_id, auto_assign=_auto_assign(request)
            )
            return Reply(204)
        if method == "DELETE":
            row = table.get(record_id)
            if row is None:
                raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
            table.remove(row["Id"])
            return Reply(204)
        return None

    def _sobject_by_external_id(
        self, request: Request, version: str, table: _Table, field_name: str, value: str
    ) -> Reply | None:
        """`sobjects/Type/Field/value`: get by external id (300 for several matches) or upsert."""
        ext_field = table.canonical(field_name)
        if ext_field is None:
            raise _SfError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        if request.method == "GET":
            ids = table.lookup(ext_field, value)
            if not ids:
                raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
            if len(ids) > 1:
                return Reply(300, [f"/services/data/{version}/sobjects/{table.name}/{i}" for i in ids])
            return Reply(200, self._decorate(table, version, _project(table.rows[ids[0]], request.param("fields"))))
        if request.method == "PATCH":
            outcome = self._apply_one(
                table,
                "upsert",
                _json_object(request.body),
                ext=(ext_field, value),
                auto_assign=_auto_assign(request),
                version=version,
            )
            return Reply(
                201 if outcome.created else 200,
                {"id": outcome.record_id, "success": True, "errors": [], "created": outcome.created},
            )
        return None

    def _apply_one(
        self,
        table: _Table,
        mode: _Mode,
        body: dict[str, Any],
        *,
        record_id: str | None = None,
        ext: tuple[str, Any] | None = None,
        auto_assign: bool,
        version: str = "v59.0",
    ) -> _Outcome:
        """One single-record write; a failure becomes the HTTP error a real org answers with."""
        undo: _Undo = []
        outcome = self._write(table, mode, body, record_id=record_id, ext=ext, auto_assign=auto_assign, undo=undo)
        failure = outcome.failure
        if failure is None:
            return outcome
        if failure.code == "NOT_FOUND":
            raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
        if failure.matches:
            urls = [f"/services/data/{version}/sobjects/{table.name}/{i}" for i in failure.matches]
            raise _MultipleChoices(urls)
        raise _SfError(400, failure.code, failure.message, failure.fields)

    def _describe(self, table: _Table) -> dict[str, Any]:
        unique = {f for o, f in self.config.sf_unique_fields if o == table.name}
        return {
            "name": table.name,
            "label": table.name,
            "keyPrefix": table.prefix,
            "fields": [
                {
                    "name": f,
                    "type": _field_type(f),
                    "externalId": f in unique,
                    "unique": f in unique,
                    "createable": _writable(table, f),
                    "updateable": _writable(table, f),
                    "nillable": f not in _REQUIRED.get(table.name, ()) and f not in _SYSTEM_FIELDS,
                }
                for f in table.fields.values()
            ],
        }

    # ----------------------------------------------------------- collections

    def _composite(self, request: Request, rest: list[str]) -> Reply:
        method = request.method
        if rest and (len(rest) != 2 or method != "PATCH"):
            raise _SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed for this resource")
        if not rest and method == "DELETE":
            return self._composite_delete(request)
        if not rest and method not in ("POST", "PATCH"):
            raise _SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed for this resource")
        mode: _Mode = "upsert" if rest else ("create" if method == "POST" else "update")
        body = _json_object(request.body)
        records = _collection_records(body)
        all_or_none = bool(body.get("allOrNone", False))
        auto_assign = _auto_assign(request)
        url_table, ext_field = self._upsert_target(rest) if rest else (None, None)
        duplicated = _duplicate_values(records, ext_field) if ext_field is not None else set()
        undo: _Undo = []
        outcomes: list[_Outcome] = []
        for record in records:
            outcomes.append(
                self._collection_item(
                    record, mode, url_table, ext_field, duplicated, auto_assign=auto_assign, undo=undo
                )
            )
        rolled_back = all_or_none and any(o.failure is not None for o in outcomes)
        if rolled_back:
            for table, record_id, previous in reversed(undo):
                if previous is None:
                    table.remove(record_id)
                else:
                    table.put(previous)
        return Reply(200, [_collection_result(outcome, mode, rolled_back=rolled_back) for outcome in outcomes])

    def _upsert_target(self, rest: list[str]) -> tuple[_Table, str]:
        """The sObject type and external-id field a collection upsert names in its URL."""
        url_table = self._table(rest[0], status=400)
        ext_field = url_table.canonical(rest[1])
        if ext_field is None:
            raise _SfError(
                400,
                "INVALID_FIELD",
                f"Field name provided, {rest[1]} is not an External ID or indexed field for {url_table.name}",
            )
        return url_table, ext_field

    def _collection_item(
        self,
        record: dict[str, Any],
        mode: _Mode,
        url_table: _Table | None,
        ext_field: str | None,
        duplicated: set[Any],
        *,
        auto_assign: bool,
        undo: _Undo,
    ) -> _Outcome:
        fields = {k: v for k, v in record.items() if k != "attributes"}
        attributes = record.get("attributes")
        type_name = attributes.get("type") if isinstance(attributes, dict) else None
        if not isinstance(type_name, str) or not type_name:
            return _Outcome(None, failure=_Failure("INVALID_TYPE", "Must send a concrete entity type."))
        table = self.tables.get(type_name.lower())
        if table is None or (url_table is not None and table is not url_table):
            return _Outcome(None, failure=_Failure("INVALID_TYPE", f"sObject type '{type_name}' is not supported."))
        if mode == "create":
            return self._write(table, "create", fields, auto_assign=auto_assign, undo=undo)
        if mode == "update":
            id_key = next((k for k in fields if k.lower() == "id"), None)
            record_id = fields.pop(id_key) if id_key is not None else None
            if not isinstance(record_id, str) or not record_id:
                return _Outcome(
                    None, failure=_Failure("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
                )
            outcome = self._write(table, "update", fields, record_id=record_id, auto_assign=auto_assign, undo=undo)
            if outcome.failure is not None and outcome.failure.code == "NOT_FOUND":
                # The single-record endpoint answers 404; a collection item reports a bad reference.
                outcome.failure.code = "INVALID_CROSS_REFERENCE_KEY"
            return outcome
        assert ext_field is not None  # upsert mode always comes with the URL's external-id field
        ext_key = next((k for k in fields if k.lower() == ext_field.lower()), None)
        value = fields.pop(ext_key) if ext_key is not None else None
        if value is None or value == "":
            return _Outcome(None, failure=_Failure("MISSING_ARGUMENT", f"{ext_field} not specified", [ext_field]))
        if _hashable(value) in duplicated:
            return _Outcome(
                None,
                failure=_Failure("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [ext_field]),
            )
        return self._write(table, "upsert", fields, ext=(ext_field, value), auto_assign=auto_assign, undo=undo)

    def _composite_delete(self, request: Request) -> Reply:
        ids = [i for i in (request.param("ids") or "").split(",") if i]
        if not ids:
            raise _SfError(400, "MISSING_ARGUMENT", "ids parameter is required")
        _check_collection_size(len(ids))
        items = []
        for record_id in ids:
            table = next((t for t in self.tables.values() if t.get(record_id) is not None), None)
            if table is None:
                items.append(
                    {
                        "id": record_id,
                        "success": False,
                        "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}],
                    }
                )
                continue
            table.remove(case_safe_id(record_id) if len(record_id) == 15 else record_id)
            items.append({"id": record_id, "success": True, "errors": []})
        return Reply(200, items)

    # ---------------------------------------------------------------- writes

    def _write(
        self,
        table: _Table,
        mode: _Mode,
        body: Mapping[str, Any],
        *,
        record_id: str | None = None,
        ext: tuple[str, Any] | None = None,
        auto_assign: bool,
        undo: _Undo,
    ) -> _Outcome:
        """Validate and apply one record's create, update or upsert; never raises for a bad record.

        Checks run in the order a real org reports them: schema, target, converted lead,
        required fields, references, uniqueness, then injected errors; the assignment
        rule runs last, as the org's does after validation.
        """
        clean, refused = self._clean_fields(table, body)
        if refused is not None:
            return _Outcome(record_id, failure=refused)
        existing, missed = self._target(table, mode, clean, record_id=record_id, ext=ext)
        if missed is not None:
            return missed
        if existing is not None and table.name == "Lead" and existing.get("IsConverted") is True:
            return _Outcome(
                existing["Id"],
                failure=_Failure("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", []),
            )

        merged: dict[str, Any] = dict(existing) if existing is not None else {}
        merged.update(clean)
        target_id = existing["Id"] if existing is not None else None
        failure = self._validate(table, merged, clean, target_id)
        if failure is not None:
            return _Outcome(target_id, failure=failure)
        return self._store(table, merged, existing, auto_assign=auto_assign, undo=undo)

    def _clean_fields(self, table: _Table, body: Mapping[str, Any]) -> tuple[dict[str, Any], _Failure | None]:
        """(the body's fields by their canonical names, or the first field the org refuses): an
        unknown field is learnt unless `sf_strict_fields`; a system or formula field is refused."""
        clean: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes":
                continue
            name = table.canonical(key)
            if name is None:
                if self.config.sf_strict_fields:
                    return clean, _Failure(
                        "INVALID_FIELD", f"No such column '{key}' on sobject of type {table.name}", [key]
                    )
                name = table.learn(key)
            if not _writable(table, name):
                return clean, _Failure(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {name}. Please check the security settings of "
                    "this field and verify that it is read/write for your profile or permission set.",
                    [name],
                )
            clean[name] = copy.deepcopy(value)
        return clean, None

    def _target(
        self,
        table: _Table,
        mode: _Mode,
        clean: dict[str, Any],
        *,
        record_id: str | None,
        ext: tuple[str, Any] | None,
    ) -> tuple[dict[str, Any] | None, _Outcome | None]:
        """(the record the write changes, None for a new one; or the outcome of a write with no
        valid target). An upsert that creates gets its external id into `clean`."""
        if mode == "update":
            existing = table.get(record_id or "")
            if existing is not None:
                return existing, None
            if record_id is not None and len(record_id) in (15, 18) and record_id[:3] != table.prefix:
                return None, _Outcome(record_id, failure=_Failure("MALFORMED_ID", f"malformed id {record_id}", ["Id"]))
            return None, _Outcome(record_id, failure=_Failure("NOT_FOUND", "invalid cross reference id", ["Id"]))
        if mode != "upsert":
            return None, None
        assert ext is not None
        ext_field, ext_value = ext
        if ext_field in clean and clean[ext_field] != ext_value:
            return None, _Outcome(
                None,
                failure=_Failure(
                    "INVALID_FIELD",
                    f"{ext_field} in the body differs from the external id in the URL",
                    [ext_field],
                ),
            )
        matches = table.lookup(ext_field, ext_value)
        if len(matches) > 1:
            return None, _Outcome(
                None,
                failure=_Failure(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{ext_field}: more than one record found for external id field: {matches}",
                    [ext_field],
                    matches,
                ),
            )
        if matches:
            return table.rows[matches[0]], None
        clean[ext_field] = ext_value
        return None, None

    def _validate(
        self, table: _Table, merged: Mapping[str, Any], clean: Mapping[str, Any], target_id: str | None
    ) -> _Failure | None:
        """The first failure of the record as it would be (`merged`): required fields, references,
        uniqueness, then injected errors."""
        missing = [f for f in _REQUIRED.get(table.name, ()) if merged.get(f) is None or merged.get(f) == ""]
        if missing:
            return _Failure("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        for fname, value in clean.items():
            failure = self._check_reference(table, fname, value)
            if failure is not None:
                return failure
        for obj, fname in self.config.sf_unique_fields:
            value = merged.get(fname)
            if obj != table.name or value is None or fname not in clean:
                continue
            others = [i for i in table.lookup(fname, value) if i != target_id]
            if others:
                return _Failure(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {fname} duplicates value on record with id: {others[0]}",
                    [fname],
                )
        return self._take_injected(table, merged)

    def _store(
        self,
        table: _Table,
        merged: dict[str, Any],
        existing: dict[str, Any] | None,
        *,
        auto_assign: bool,
        undo: _Undo,
    ) -> _Outcome:
        """Write the valid record: the assignment rule, the system fields, the undo entry."""
        if table.name == "Lead" and auto_assign and self.config.assignment_rule_owner_id is not None:
            # The org's assignment rule fires on every lead write unless the caller opts out.
            merged["OwnerId"] = self.config.assignment_rule_owner_id
        stamp = sf_timestamp(self.clock.stamp())
        created = existing is None
        if created:
            merged["Id"] = table.new_id()
            merged["CreatedDate"] = stamp
            if table.name == "Lead":
                merged.setdefault("IsConverted", False)
        merged["LastModifiedDate"] = stamp
        merged["SystemModstamp"] = stamp
        if table.name in _COMPOUND_NAME:
            merged["Name"] = _full_name(merged)
        undo.append((table, merged["Id"], existing))
        table.put(merged)
        return _Outcome(merged["Id"], created=created)

    def _check_reference(self, table: _Table, fname: str, value: Any) -> _Failure | None:
        target = _REFERENCES.get(fname)
        if target is None or value is None:
            return None
        if not isinstance(value, str):
            return _Failure("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {fname}", [fname])
        if fname == "OwnerId" and value.startswith("00G") and "group" not in self.tables:
            return None  # a queue: the sandbox keeps no Group rows, so any queue id is accepted
        owner_table = self.tables.get(target.lower())
        row = owner_table.get(value) if owner_table is not None else None
        if row is None:
            return _Failure("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {fname}", [fname])
        if target == "User" and row.get("IsActive") is False:
            return _Failure(
                "INACTIVE_OWNER_OR_USER",
                f"operation performed with inactive user [{value}] as owner of {table.name.lower()}",
                [fname],
            )
        return None

    def _take_injected(self, table: _Table, merged: Mapping[str, Any]) -> _Failure | None:
        for rule in self.record_errors:
            if rule.sobject != table.name or not all(merged.get(k) == v for k, v in rule.match.items()):
                continue
            rule.count -= 1
            if rule.count <= 0:
                self.record_errors.remove(rule)
            return _Failure(rule.code, rule.message, [])
        return None

    def table_rows(self, name: str) -> Iterator[dict[str, Any]]:
        """Live rows of one sObject (callers hold the server lock); empty for an unknown one."""
        table = self.tables.get(name.lower())
        return iter(table.rows.values()) if table is not None else iter(())


class _MultipleChoices(_SfError):
    """A single upsert or lookup matched several records: 300 with their URLs."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(300, "MULTIPLE_CHOICES", "more than one record matches")
        self.urls = urls

    def body(self) -> Any:
        """A 300 answers with the matching records' URLs, not with an error array."""
        return self.urls


def _writable(table: _Table, name: str) -> bool:
    return name not in _READ_ONLY and not (name == "Name" and table.name in _COMPOUND_NAME)


def _project(row: Mapping[str, Any], fields: str | None) -> dict[str, Any]:
    if not fields:
        return dict(row)
    wanted = {f.strip().lower() for f in fields.split(",") if f.strip()} | {"id"}
    return {k: v for k, v in row.items() if k.lower() in wanted}


def _full_name(row: Mapping[str, Any]) -> str:
    return " ".join(str(row[k]) for k in ("FirstName", "LastName") if row.get(k))


def _field_type(name: str) -> str:
    if name == "Id" or name.endswith("Id"):
        return "id" if name == "Id" else "reference"
    if name.endswith("Date") and name not in ("CloseDate", "ConvertedDate"):
        return "datetime"
    if name in ("CloseDate", "ConvertedDate"):
        return "date"
    if name.startswith("Is"):
        return "boolean"
    if name in ("NumberOfEmployees",):
        return "int"
    if name in ("AnnualRevenue", "Amount"):
        return "currency"
    return "string"


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True)
    return value


def _duplicate_values(records: list[dict[str, Any]], ext_field: str) -> set[Any]:
    """External-id values that appear more than once in one upsert request (real orgs refuse them all)."""
    seen: set[Any] = set()
    dups: set[Any] = set()
    for record in records:
        value = next((v for k, v in record.items() if k.lower() == ext_field.lower()), None)
        if value is None:
            continue
        key = _hashable(value)
        (dups if key in seen else seen).add(key)
    return dups


def _collection_result(outcome: _Outcome, mode: _Mode, *, rolled_back: bool) -> dict[str, Any]:
    """One record's result in a collection's answer; with `allOrNone`, a record written before
    another failed is reported rolled back."""
    item: dict[str, Any] = {"id": outcome.record_id, "success": outcome.failure is None, "errors": []}
    if outcome.failure is not None:
        item["errors"] = [outcome.failure.to_json()]
    elif rolled_back:
        item["success"] = False
        item["id"] = None if outcome.created or mode == "create" else outcome.record_id
        item["errors"] = [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": _ROLLED_BACK, "fields": []}]
    if mode == "upsert":
        item["created"] = bool(item["success"] and outcome.created)
    return item


def _auto_assign(request: Request) -> bool:
    """Whether the org's assignment rule may run: unless the caller sends `Sforce-Auto-Assign: FALSE`."""
    return request.headers.get("sforce-auto-assign", "TRUE").strip().lower() != "false"


def _collection_records(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `records` of a collection request: a list of objects, at most 200."""
    records = body.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _SfError(400, "JSON_PARSER_ERROR", "records: expected a list of objects")
    _check_collection_size(len(records))
    return records


def _check_collection_size(count: int) -> None:
    """A collection request carries at most 200 records (or ids)."""
    if count > _MAX_COLLECTION:
        raise _SfError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {_MAX_COLLECTION} records into this call",
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise _SfError(400, "JSON_PARSER_ERROR", "Unexpected character in the request body") from None
    if not isinstance(value, dict):
        raise _SfError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of the sObject from a non-object")
    return value
