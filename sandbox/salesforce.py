"""The Salesforce half of the sandbox: SOQL queries, sObject rows and collections, OAuth.

Imitates what the connectors and simple-salesforce rely on (Salesforce's REST docs and
the recorded payloads cited in tests/fixtures/real/SOURCES.md): bearer sessions that a
control can expire, the daily request quota reported in `Sforce-Limit-Info`, SOQL paged
through `nextRecordsUrl` over a snapshot taken at query time, describe and write
validation served from one field table per sObject (`sandbox.schema`, with the org's
overrides), create / update / upsert by external id (single and sObject Collections with
`allOrNone`), the error bodies a real org returns, injected per-record errors, lead
ownership (the assignment rule unless `Sforce-Auto-Assign: FALSE`, the default lead
owner, the API user, queues) and the State and Country/Territory picklists.

Not thread-safe: the server calls `handle` and the other methods under its lock.
"""

from __future__ import annotations

import calendar
import copy
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from sandbox import soql
from sandbox.schema import (
    STANDARD_OBJECTS,
    FieldDef,
    ObjectDef,
    apply_overrides,
    controlling_indexes,
    country_by_code,
    country_by_name,
    learned_field,
    picklist_fields,
    state_options,
)
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

_PREFIXES = {name: obj.key_prefix for name, obj in STANDARD_OBJECTS.items()}
# The objects `merge()` merges (SOAP API: "Lead, Contact, Account", Person Account and Individual aside).
_MERGEABLE = frozenset({"Lead", "Contact", "Account"})
_COMPOUND_NAME = {"Lead", "Contact", "User"}
_INJECTED_MESSAGES = {
    "UNABLE_TO_LOCK_ROW": "unable to obtain exclusive access to this record or 1 records",
    "DUPLICATES_DETECTED": "Use one of these records?",
    "CANNOT_UPDATE_CONVERTED_LEAD": "cannot reference converted lead",
}
_ROLLED_BACK = "Record rolled back because not all records were valid and the request was using AllOrNone header"
_CHECKSUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_Mode = Literal["create", "update", "upsert"]


_ID15 = re.compile(r"[A-Za-z0-9]{15}")


def case_safe_id(id15: str) -> str:
    """Salesforce's 15 → 18 character id: append the three-letter case checksum."""
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]) if "A" <= ch <= "Z")
        suffix += _CHECKSUM_CHARS[bits]
    return id15 + suffix


class _SfError(Exception):
    """Ends a request with Salesforce's error array `[{"message", "errorCode"(, "fields")}]`.

    `fields` is None for errors about the whole request (session, quota, query, JSON), whose
    bodies carry no `fields` key (see the fixtures under tests/fixtures/real/)."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        super().__init__(message)

    def body(self) -> Any:
        """The JSON body of the error response."""
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


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
    """The rows of one sObject type, with its field definitions and lazy value indexes.

    `defs` (lower-cased name → definition) is the org's schema for this object, rebuilt by the
    service whenever the configuration changes; `learned` holds the fields first seen in seed
    records, which join the schema as they did before field tables existed.
    """

    def __init__(self, name: str, prefix: str, standard: ObjectDef | None) -> None:
        self.name = name
        self.prefix = prefix
        self.standard = standard
        self.defs: dict[str, FieldDef] = {}
        self.learned: dict[str, FieldDef] = {}
        # Derived from `defs` by `set_defs` (checked on every write, so computed once).
        self.required: tuple[str, ...] = ()
        self.picklist_defaults: tuple[tuple[str, str], ...] = ()
        self.rows: dict[str, dict[str, Any]] = {}
        # The recycle bin: records deleted (IsDeleted true, SystemModstamp of the deletion), which
        # only QueryAll returns ("the Query resource will automatically filter out items that
        # have been deleted"), until `empty_recycle_bin` purges it (as a person emptying the
        # Recycle Bin does, or Salesforce after 15 days): then no resource returns it.
        self.deleted: dict[str, dict[str, Any]] = {}
        self._indexes: dict[str, dict[Any, set[str]]] = {}
        self._counter = 0

    def set_defs(self, defs: Mapping[str, FieldDef]) -> None:
        """Install the object's field definitions (name → definition, in describe order)."""
        self.defs = {fdef.name.lower(): fdef for fdef in defs.values()}
        self.required = tuple(f.name for f in self.defs.values() if f.required)
        self.picklist_defaults = tuple(
            (f.name, default)
            for f in self.defs.values()
            if f.type == "picklist" and f.defaulted_on_create and (default := f.default_value()) is not None
        )

    def canonical(self, name: str) -> str | None:
        fdef = self.defs.get(name.lower())
        return None if fdef is None else fdef.name

    def field(self, name: str) -> FieldDef | None:
        return self.defs.get(name.lower())

    def learn(self, name: str, value: Any = None) -> str:
        """Add a field to the schema (seed records and non-strict writes define their fields)."""
        fdef = self.defs.get(name.lower())
        if fdef is None:
            fdef = self.learned[name.lower()] = self.defs[name.lower()] = learned_field(name, value)  # never required
        return fdef.name

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

    def delete(self, record_id: str, stamp: str) -> None:
        """Delete a record as an org does: into the recycle bin, `IsDeleted` true, its
        SystemModstamp the deletion's."""
        old = self.rows.get(record_id)
        if old is not None:
            self.remove(record_id)
            self.deleted[record_id] = {**old, "IsDeleted": True, "SystemModstamp": stamp}


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
        self.clock = clock
        self.tables: dict[str, _Table] = {
            name.lower(): _Table(name, obj.key_prefix, obj) for name, obj in STANDARD_OBJECTS.items()
        }
        self.api_used = 0
        self._quota_day: date = clock.now().date()
        self._issued: set[str] = set()
        self._seen: set[str] = set()
        self._expired: set[str] = set()
        # locator → (API version, the resource the query was asked of, its records)
        self._cursors: OrderedDict[str, tuple[str, str, list[dict[str, Any]]]] = OrderedDict()
        self.record_errors: list[RecordErrorRule] = []
        # Called with each Lead created (the Outbound Messages of `sandbox.events`); it only
        # queues, so it may run under the sandbox's lock.
        self.lead_created: Callable[[Mapping[str, Any]], None] | None = None
        # Called with each Opportunity created or updated (a Flow on Opportunity), the same way.
        self.opportunity_changed: Callable[[Mapping[str, Any]], None] | None = None
        self.config = config

    @property
    def config(self) -> SandboxConfig:
        return self._config

    @config.setter
    def config(self, config: SandboxConfig) -> None:
        """A new configuration reshapes the org: its schema, and the principals its mode needs."""
        self._config = config
        self._rebuild_schema()
        self._ensure_org_records()

    def _rebuild_schema(self) -> None:
        """Each table's field definitions: standard, then learned from seeds, then the State and
        Country picklist fields when they are on, then the org's overrides."""
        config = self._config
        for table in self.tables.values():
            defs: dict[str, FieldDef] = {}
            for fdef in table.standard.fields if table.standard is not None else ():
                defs[fdef.name] = fdef
                if table.name == "Lead" and config.state_country_picklists and fdef.name in ("State", "Country"):
                    country, state = picklist_fields()
                    extra = state if fdef.name == "State" else country
                    defs[extra.name] = extra
            for fdef in table.learned.values():
                defs.setdefault(fdef.name, fdef)
            table.set_defs(apply_overrides(table.name, defs, config.sf_schema))

    def _ensure_org_records(self) -> None:
        """An org that owns its leads has an API user, a default lead owner user and an inbound
        queue: add whichever of them the seed did not bring."""
        config = self._config
        if config.default_lead_owner == "none":
            return
        now = sf_timestamp(self.clock.now())
        principals = (
            ("user", config.sf_api_user_id,
             {"FirstName": "Integration", "LastName": "User", "Alias": "integ", "Title": "API integration user"}),
            ("user", config.sf_default_owner_user_id,
             {"FirstName": "Sales", "LastName": "Operations", "Alias": "salesops", "Title": "Default lead owner"}),
            ("group", config.sf_default_queue_id,
             {"Name": "Inbound Leads", "DeveloperName": "Inbound_Leads", "Type": "Queue"}),
        )  # fmt: skip
        for kind, record_id, fields in principals:
            table = self.tables[kind]
            if table.get(record_id) is not None:
                continue
            row: dict[str, Any] = {"Id": record_id, **fields, "CreatedDate": now, "LastModifiedDate": now,
                                   "SystemModstamp": now}  # fmt: skip
            if kind == "user":
                alias = fields["Alias"]
                row.update(Username=f"{alias}@org.example", Email=f"{alias}@org.example", IsActive=True)
                row["Name"] = _full_name(row)
            table.put(row)

    def _inbound_owner(self) -> str | None:
        """The owner web-to-lead gives a new lead: the assignment rule's, else the default lead owner."""
        config = self._config
        if config.assignment_rule_owner_id is not None:
            return config.assignment_rule_owner_id
        mode = config.default_lead_owner
        if mode == "user":
            return config.sf_default_owner_user_id
        if mode == "queue":
            return config.sf_default_queue_id
        return None

    # ----------------------------------------------------------------- seeding

    def load(self, seed: Mapping[str, Any]) -> None:
        """Add a seed's `salesforce` section: `{sObject name: [field dicts]}`.

        Assigns an 18-character Id where missing and fills CreatedDate, LastModifiedDate
        and SystemModstamp from the clock where missing; every field seen joins the schema.
        Seeds are not validated, so they can hold states a write could not reach
        (converted leads, duplicate external ids). What a real org never stores is filled in
        as it would be: a lead without an owner gets the inbound owner when the org owns its
        leads, and with the State and Country picklists on a recognised `Country`/`State`
        fills its code and the other way round.
        """
        now = sf_timestamp(self.clock.now())
        for name, rows in seed.items():
            table = self._table_for_seed(str(name))
            for raw in rows or []:
                table.put(self._seeded_row(table, raw, now))
        self._ensure_org_records()

    def _seeded_row(self, table: _Table, raw: Mapping[str, Any], now: str) -> dict[str, Any]:
        """One seed record as stored (see `load`); its fields join the table's schema."""
        row: dict[str, Any] = {}
        for key, value in dict(raw).items():
            if key == "attributes":
                continue
            row[table.learn(key, value)] = raw_json_tokens(copy.deepcopy(value))
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
        if table.name == "Lead":
            self._settle_seeded_lead(row)
        return row

    def _settle_seeded_lead(self, row: dict[str, Any]) -> None:
        if row.get("OwnerId") is None and self._config.default_lead_owner != "none":
            owner = self._inbound_owner()
            if owner is not None:
                row["OwnerId"] = owner
        if self._config.state_country_picklists:
            _fill_address(row)

    def _table_for_seed(self, name: str) -> _Table:
        table = self.tables.get(name.lower())
        if table is None:
            prefix = _PREFIXES.get(name, f"a{len(self.tables):02d}")
            table = self.tables[name.lower()] = _Table(name, prefix, None)
        return table

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every sObject, in the seed format (deep copies, no `attributes`); an
        empty `Group` table (no queues: the legacy org) is left out."""
        return {
            t.name: copy.deepcopy(list(t.rows.values())) for t in self.tables.values() if t.rows or t.name != "Group"
        }

    def empty_recycle_bin(self, sobject: str) -> list[str]:
        """Purge the deleted `sobject` records for good ("Empty your Recycle Bin", Salesforce
        Help): QueryAll no longer returns them, nor does anything else. Returns their Ids; KeyError
        for an object the org does not have."""
        table = self.tables[sobject.lower()]
        purged = sorted(table.deleted)
        table.deleted.clear()
        return purged

    def undelete(self, sobject: str, ids: list[str]) -> list[str]:
        """A person restores records from the Recycle Bin (the Recycle Bin page, the SOAP API's
        `undelete()`): each is live again, `IsDeleted` false, its SystemModstamp moved. A record
        deleted by a merge comes back without its children: "You can undelete records that were
        deleted as the result of a merge, but the child objects are reparented, which can't be
        undone" (`undelete()`). Its `MasterRecordId` stays as the merge left it (the documentation
        does not say otherwise). Returns the Ids restored; ValueError for one not in the Recycle
        Bin, KeyError for an object the org does not have."""
        table = self.tables[sobject.lower()]
        missing = [record_id for record_id in ids if record_id not in table.deleted]
        if missing or not ids:
            raise ValueError(f"ids: not in the Recycle Bin: {missing or ids!r}")
        stamp = sf_timestamp(self.clock.stamp())
        for record_id in ids:
            table.put({**table.deleted.pop(record_id), "IsDeleted": False, "SystemModstamp": stamp})
        return list(ids)

    def merge(self, sobject: str, master: str, merged: list[str], fields: Mapping[str, Any] | None = None) -> str:
        """A person merges duplicates, as the SOAP API's `merge()` and the Merge Leads page do:
        up to two records into the `master` record of the same object (Lead, Contact or
        Account), which keeps its own values but the `fields` taken from the merged ones
        (external ID fields cannot be: "External ID fields cannot be used with merge()"); each
        merged record is deleted, into the recycle bin, `MasterRecordId` naming the master (what
        QueryAll shows: "Use queryAll() to view records that have been deleted during a merge"),
        and the master's SystemModstamp moves. A converted lead cannot be merged. Returns the
        master's Id; ValueError says what cannot be merged."""
        table, main, victims = self._mergeable(sobject, master, merged)
        taken: dict[str, Any] = {}
        for name, value in (fields or {}).items():
            fdef = table.field(name)
            if fdef is None or not fdef.updateable or fdef.external_id:
                raise ValueError(f"fields: {name!r} cannot be taken into the master")
            taken[fdef.name] = copy.deepcopy(value)
        stamp = sf_timestamp(self.clock.stamp())
        table.put({**main, **taken, "LastModifiedDate": stamp, "SystemModstamp": stamp})
        for row in victims:
            table.delete(row["Id"], stamp)
            table.deleted[row["Id"]]["MasterRecordId"] = main["Id"]
        if table.name == "Account":  # "makes the master record the new parent of the related records"
            for child in (self.tables["opportunity"], self.tables["contact"]):
                for record_id in [i for victim in merged for i in child.lookup("AccountId", victim)]:
                    child.put({**child.rows[record_id], "AccountId": main["Id"], "SystemModstamp": stamp})
        return str(main["Id"])

    def _mergeable(
        self, sobject: str, master: str, merged: list[str]
    ) -> tuple[_Table, dict[str, Any], list[dict[str, Any]]]:
        """(the table, the master's row, the merged ones' rows) of a merge Salesforce would make;
        ValueError says why it would not."""
        table = self.tables.get(sobject.lower())
        if table is None or table.name not in _MERGEABLE:
            raise ValueError(f"object: {sobject!r} cannot be merged (Lead, Contact or Account)")
        main = table.get(master)
        if main is None:
            raise ValueError(f"master: no live {table.name} {master!r}")
        if not 1 <= len(merged) <= 2 or len(set(merged)) != len(merged) or main["Id"] in merged:
            raise ValueError("merged: one or two records other than the master")
        victims = [row for record_id in merged if (row := table.get(record_id)) is not None]
        if len(victims) != len(merged):
            raise ValueError(f"merged: no live {table.name} among {merged!r}")
        if table.name == "Lead" and any(row.get("IsConverted") for row in [main, *victims]):
            raise ValueError("a converted lead cannot be merged")
        return table, main, victims

    def convert(
        self,
        lead_id: str,
        *,
        account_id: str | None = None,
        opportunity: bool = True,
        mapped: Mapping[str, str] | None = None,
    ) -> dict[str, str | None]:
        """A person converts a lead, as the Convert page and the API's `convertLead()` do: into the
        Salesforce Account `account_id` (an existing one), else a new Account named after the
        lead's Company (an existing one keeps its values, its empty fields take the lead's); a
        Contact; and, unless `opportunity` is false, an Opportunity named
        "<Company>-" in the first stage, closing at the end of this quarter. The lead becomes
        converted (`IsConverted`, the converted status, `ConvertedDate`, `ConvertedAccountId`,
        `ConvertedContactId`, `ConvertedOpportunityId`). Standard lead fields go to the records'
        standard fields; a custom one only where the org maps it ("Map Lead Fields": `mapped`,
        lead field → Account field; nothing by default, as in a new org). Returns the Ids made or
        used; ValueError says why a lead cannot be converted."""
        leads, accounts = self.tables["lead"], self.tables["account"]
        lead = leads.get(lead_id)
        if lead is None:
            raise ValueError(f"lead: no live Lead {lead_id!r}")
        if lead.get("IsConverted"):
            raise ValueError("lead: already converted")
        stamp = sf_timestamp(self.clock.stamp())
        today = self.clock.now().date()
        owner = lead.get("OwnerId")
        company = str(lead.get("Company") or lead.get("LastName") or "")
        fields = {"Name": company, "Website": lead.get("Website"), "Industry": lead.get("Industry"),
                  "NumberOfEmployees": lead.get("NumberOfEmployees"), "AnnualRevenue": lead.get("AnnualRevenue"),
                  "BillingCountry": lead.get("Country")}  # fmt: skip
        fields.update({target: lead.get(source) for source, target in (mapped or {}).items()})
        if account_id is not None:
            existing = accounts.get(account_id)
            if existing is None:
                raise ValueError(f"account: no live Account {account_id!r}")
            # An existing Account keeps its values; only its empty fields take the lead's.
            empty = {
                name: value for name, value in fields.items() if value is not None and existing.get(name) in (None, "")
            }
            if empty:
                accounts.put({**existing, **empty, "LastModifiedDate": stamp, "SystemModstamp": stamp})
        else:
            account_id = self._insert(accounts, fields, owner, stamp)
        contact = self._insert(
            self.tables["contact"],
            {"LastName": lead.get("LastName"), "FirstName": lead.get("FirstName"), "Email": lead.get("Email"),
             "Title": lead.get("Title"), "AccountId": account_id},
            owner,
            stamp,
        )  # fmt: skip
        made: str | None = None
        if opportunity:
            last_month = ((today.month - 1) // 3 + 1) * 3  # of this quarter
            quarter_end = date(today.year, last_month, calendar.monthrange(today.year, last_month)[1])
            fields = {"Name": f"{company}-", "AccountId": account_id, "StageName": "Prospecting",
                      "CloseDate": quarter_end.isoformat(), "LeadSource": lead.get("LeadSource")}  # fmt: skip
            made = self._insert(self.tables["opportunity"], fields, owner, stamp)
            if self.opportunity_changed is not None:  # "A record is created": the conversion's too
                self.opportunity_changed(self.tables["opportunity"].rows[made])
        leads.put(
            {
                **lead,
                "IsConverted": True,
                "Status": "Closed - Converted",
                "ConvertedDate": today.isoformat(),
                "ConvertedAccountId": account_id,
                "ConvertedContactId": contact,
                "ConvertedOpportunityId": made,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
        )
        return {"account": account_id, "contact": contact, "opportunity": made}

    @staticmethod
    def _insert(table: _Table, fields: Mapping[str, Any], owner: Any, stamp: str) -> str:
        """A record a conversion creates: `fields` (those with a value), the lead's owner, now."""
        row = {table.learn(k, v): v for k, v in fields.items() if v is not None}
        record_id = table.new_id()
        row.update(Id=record_id, OwnerId=owner, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
        table.put(row)
        return record_id

    def add_leads(self, rows: list[dict[str, Any]], *, owner_ids: list[str]) -> list[str]:
        """Insert inbound Leads as web-to-lead would (fresh Ids, now as CreatedDate, no validation).

        The assignment rule, when on, decides the owner; otherwise an org that owns its leads
        gives them its default lead owner (a user or the queue), and the legacy org gives a lead
        whose OwnerId is not a known user one of `owner_ids`.
        """
        table = self.tables["lead"]
        users = self.tables["user"]
        inbound = self._inbound_owner()
        added: list[str] = []
        for i, raw in enumerate(rows):
            row = {table.learn(k, v): copy.deepcopy(v) for k, v in raw.items() if k not in ("attributes", "Id")}
            stamp = sf_timestamp(self.clock.stamp())
            row.update(Id=table.new_id(), CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
            row.setdefault("IsConverted", False)
            if inbound is not None:
                row["OwnerId"] = inbound
            elif users.get(str(row.get("OwnerId") or "")) is None and owner_ids:
                row["OwnerId"] = owner_ids[i % len(owner_ids)]
            if self._config.state_country_picklists:
                _fill_address(row)
            row["Name"] = _full_name(row)
            table.put(row)
            added.append(row["Id"])
            if self.lead_created is not None:
                self.lead_created(row)
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
                return self._query(request, version, deleted=head == "queryAll")
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

    def _query(self, request: Request, version: str, *, deleted: bool = False) -> Reply:
        text = request.param("q")
        if not text:
            raise _SfError(400, "MALFORMED_QUERY", "A query string (q) is required")
        try:
            query = soql.parse(text)
        except soql.SoqlError as exc:
            raise _SfError(400, exc.code, exc.message) from None
        table = self._table(query.sobject, status=400)
        unknown = [name for name in soql.field_names(query) if "." not in name and table.canonical(name) is None]
        if unknown:
            raise _SfError(400, "INVALID_FIELD", _no_such_column(text, unknown, table.name))
        now = self.clock.now()
        rows: Iterable[dict[str, Any]] = table.rows.values()
        if deleted and table.deleted:  # QueryAll: the recycle bin too
            rows = [*rows, *table.deleted.values()]
        if any(name.lower() == "isdeleted" for name in soql.field_names(query)):
            rows = [row if "IsDeleted" in row else {**row, "IsDeleted": False} for row in rows]
        try:
            if query.is_count:
                records: list[dict[str, Any]] = []
                total = soql.count(query, rows, now=now)
            else:
                records = [self._decorate(table, version, row) for row in soql.execute(query, rows, now=now)]
                total = len(records)
        except soql.SoqlError as exc:
            raise _SfError(400, exc.code, exc.message) from None
        locator = "01g8d" + secrets.token_hex(6).upper() + "-"
        self._cursors[locator] = (version, "queryAll" if deleted else "query", records)
        while len(self._cursors) > _OPEN_CURSORS:
            self._cursors.popitem(last=False)
        return self._page(locator, 0, total)

    def _query_more(self, ident: str) -> Reply:
        locator, _, offset_text = ident.rpartition("-")
        cursor = self._cursors.get(locator + "-")
        if cursor is None or not offset_text.isdigit():
            raise _SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self._cursors.move_to_end(locator + "-")
        return self._page(locator + "-", int(offset_text), len(cursor[2]))

    def _page(self, locator: str, offset: int, total: int) -> Reply:
        version, _, records = self._cursors[locator]
        size = self.config.sf_page_size
        page = records[offset : offset + size]
        body: dict[str, Any] = {"totalSize": total, "done": offset + size >= len(records), "records": page}
        if not body["done"]:
            # "The URI specified in the nextRecordsUrl field of a QueryAll response body contains
            # query instead of queryAll" (REST API Developer Guide, "QueryAll More Results"): the
            # locator alone carries the deleted records on.
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
            return Reply(200, self._global_describe())
        table = self._table(rest[0])
        if len(rest) > 3:
            raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
        if len(rest) == 1:
            reply = self._sobject_type(request, version, table)
        elif len(rest) == 2:
            reply = self._sobject_record(request, version, table, rest[1])
        else:
            reply = self._sobject_by_external_id(request, version, table, rest[1], rest[2])
        if reply is None:
            raise _SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed for this resource")
        return reply

    def _sobject_type(self, request: Request, version: str, table: _Table) -> Reply | None:
        """`sobjects/Type`: create a record (POST) or describe the type in short (GET)."""
        if request.method == "POST":
            outcome = self._apply_one(
                table, "create", _json_object(request.body), auto_assign=_auto_assign(request), raw=request.body
            )
            return Reply(201, {"id": outcome.record_id, "success": True, "errors": []})
        if request.method == "GET":
            whole = self._describe(table, version, _host(request))
            basic = {k: v for k, v in whole.items() if k not in ("fields", "childRelationships", "recordTypeInfos")}
            return Reply(200, {"objectDescribe": basic, "recentItems": []})
        return None

    def _sobject_record(self, request: Request, version: str, table: _Table, record_id: str) -> Reply | None:
        """`sobjects/Type/describe` (GET), or `sobjects/Type/Id`: get, update or delete a record."""
        method = request.method
        if record_id == "describe" and method == "GET":
            return Reply(200, self._describe(table, version, _host(request)))
        if method == "GET":
            row = table.get(record_id)
            if row is None:
                raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
            return Reply(200, self._decorate(table, version, _project(row, request.param("fields"))))
        if method == "PATCH":
            self._apply_one(
                table,
                "update",
                _json_object(request.body),
                record_id=record_id,
                auto_assign=_auto_assign(request),
                raw=request.body,
            )
            return Reply(204)
        if method == "DELETE":
            row = table.get(record_id)
            if row is None:
                raise _SfError(404, "NOT_FOUND", "The requested resource does not exist")
            table.delete(row["Id"], sf_timestamp(self.clock.stamp()))
            return Reply(204)
        return None

    def _sobject_by_external_id(
        self, request: Request, version: str, table: _Table, field_name: str, value: str
    ) -> Reply | None:
        """`sobjects/Type/Field/value`: get by external id (300 for several matches) or upsert."""
        ext_field = table.canonical(field_name)
        if ext_field is None or not _upsert_key(table, ext_field):
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
                raw=request.body,
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
        raw: bytes = b"",
    ) -> _Outcome:
        """One single-record write; a failure becomes the HTTP error a real org answers with."""
        if self._config.enforce_schema:
            _check_json_types(table, body, raw)
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

    def _describe(self, table: _Table, version: str, host: str) -> dict[str, Any]:
        """`GET /sobjects/{type}/describe`, from the same definitions writes are held to."""
        obj = table.standard or ObjectDef(table.name, table.name, table.name, table.prefix, (), custom=True)
        return obj.describe(version, table.defs.values(), host)

    def _global_describe(self) -> dict[str, Any]:
        """`GET /sobjects/`: every sObject with the identity keys of a describeGlobal answer."""
        sobjects = []
        for table in self.tables.values():
            obj = table.standard
            sobjects.append(
                {
                    "name": table.name,
                    "label": obj.label if obj else table.name,
                    "labelPlural": obj.label_plural if obj else table.name,
                    "keyPrefix": table.prefix,
                    "custom": obj.custom if obj else table.name.endswith("__c"),
                    "createable": True,
                    "updateable": True,
                    "deletable": True,
                    "queryable": True,
                    "urls": {"sobject": f"/services/data/v59.0/sobjects/{table.name}"},
                }
            )
        return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}

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
        if self._config.enforce_schema:
            self._check_collection_types(records, request.body)
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

    def _check_collection_types(self, records: list[dict[str, Any]], raw: bytes) -> None:
        """Every record's values readable into its fields, before any record is written (see
        `_check_json_types`); a record of no known type fails on its own later."""
        for record in records:
            attributes = record.get("attributes")
            kind = attributes.get("type") if isinstance(attributes, dict) else None
            table = self.tables.get(kind.lower()) if isinstance(kind, str) else None
            if table is not None:
                _check_json_types(table, record, raw)

    def _upsert_target(self, rest: list[str]) -> tuple[_Table, str]:
        """The sObject type and external-id field a collection upsert names in its URL."""
        url_table = self._table(rest[0], status=400)
        ext_field = url_table.canonical(rest[1])
        if ext_field is None or not _upsert_key(url_table, ext_field):
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
            table.delete(
                case_safe_id(record_id) if len(record_id) == 15 else record_id, sf_timestamp(self.clock.stamp())
            )
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
        field access, required fields, field values (when the schema is enforced), country and
        state integrity (with the picklists on), references, uniqueness, then injected errors;
        ownership (the assignment rule, the default lead owner) is settled last, as the org's
        assignment runs after validation.
        """
        clean = self._clean_fields(table, body)
        if isinstance(clean, _Failure):
            return _Outcome(record_id, failure=clean)
        existing, missed = self._target(table, mode, clean, record_id=record_id, ext=ext)
        if missed is not None:
            return missed
        if existing is not None and table.name == "Lead" and existing.get("IsConverted") is True:
            return _Outcome(
                existing["Id"],
                failure=_Failure("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", []),
            )

        created = existing is None
        target_id = existing["Id"] if existing is not None else None
        merged: dict[str, Any] = dict(existing) if existing is not None else {}
        merged.update(clean)
        failure = _check_access(table, clean, created=created) or self._validate(
            table, merged, clean, target_id, created=created
        )
        if failure is not None:
            return _Outcome(target_id, failure=failure)
        return self._store(table, merged, existing, auto_assign=auto_assign, undo=undo)

    def _clean_fields(self, table: _Table, body: Mapping[str, Any]) -> dict[str, Any] | _Failure:
        """The body's fields by their canonical names, or the failure for the first field the org
        does not know: an unknown field is learnt unless `sf_strict_fields`."""
        clean: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes":
                continue
            name = table.canonical(key)
            if name is None:
                if self._config.sf_strict_fields:
                    return _Failure("INVALID_FIELD", f"No such column '{key}' on sobject of type {table.name}", [key])
                name = table.learn(key, value)
            fdef = table.field(name)
            if fdef is not None and fdef.type == "reference" and isinstance(value, str) and _ID15.fullmatch(value):
                # Salesforce takes a reference by its 15- or 18-character id and keeps (and answers
                # with) the 18-character one, as for every Id.
                value = case_safe_id(value)
            if fdef is not None and fdef.is_text and isinstance(value, str) and not value.strip(_TRIMMED):
                # A text field "can never be empty (only null), and [...] never include leading and
                # trailing whitespace" (Apex Developer Guide, Primitive Data Types: "the same rules
                # as in the SOAP API"): a blank value is null (a required one is missing); the others
                # are stored trimmed (`_check_value`).
                value = None
            clean[name] = copy.deepcopy(value)
        return clean

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
            if record_id is not None and record_id in table.deleted:
                # A record in the recycle bin: "entity is deleted", as a real org answers an update
                # of it (the composite DELETE of one already answers the same).
                return None, _Outcome(record_id, failure=_Failure("ENTITY_IS_DELETED", "entity is deleted", []))
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
        self, table: _Table, merged: dict[str, Any], clean: Mapping[str, Any], target_id: str | None, *, created: bool
    ) -> _Failure | None:
        """The first failure of the record as it would be (`merged`, which the field rules may
        normalise): required fields, field values (when the schema is enforced), country and state
        integrity (with the picklists on), references, uniqueness, then injected errors."""
        config = self._config
        failure = self._check_required(table, clean, merged, created=created)
        if failure is None and config.enforce_schema:
            failure = _check_values(table, clean, merged, created=created)
        if failure is None and table.name == "Lead" and config.state_country_picklists:
            failure = _settle_address(table, clean, merged)
        if failure is None:
            failure = next(
                (f for f in (self._check_reference(table, n, v) for n, v in clean.items()) if f is not None), None
            )
        if failure is None:
            failure = self._check_unique(table, clean, merged, target_id)
        return failure if failure is not None else self._take_injected(table, merged)

    def _store(
        self,
        table: _Table,
        merged: dict[str, Any],
        existing: dict[str, Any] | None,
        *,
        auto_assign: bool,
        undo: _Undo,
    ) -> _Outcome:
        """Write the valid record: its owner (the assignment rule, the default lead owner), the
        system fields, the undo entry."""
        created = existing is None
        self._settle_owner(table, merged, created=created, auto_assign=auto_assign)
        stamp = sf_timestamp(self.clock.stamp())
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
        if created and table.name == "Lead" and self.lead_created is not None:
            self.lead_created(merged)  # sent later, as the Lead then is: a rolled-back create is never sent
        if table.name == "Opportunity" and self.opportunity_changed is not None:
            self.opportunity_changed(merged)
        return _Outcome(merged["Id"], created=created)

    def _check_required(
        self, table: _Table, clean: Mapping[str, Any], merged: Mapping[str, Any], *, created: bool
    ) -> _Failure | None:
        """Required fields (describe: not nillable, not defaulted) must hold a value; with the
        schema enforced, or for `OwnerId` in an org that owns its leads, a non-nillable field
        cannot be emptied either."""
        config = self._config
        missing = [name for name in table.required if merged.get(name) is None or merged.get(name) == ""]
        for name, value in clean.items():
            fdef = table.field(name)
            if fdef is None or fdef.nillable or fdef.required or name in missing or value not in (None, ""):
                continue
            if config.enforce_schema or (name == "OwnerId" and config.default_lead_owner != "none" and not created):
                missing.append(name)
        if not missing:
            return None
        return _Failure("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)

    def _check_unique(
        self, table: _Table, clean: Mapping[str, Any], merged: Mapping[str, Any], target_id: str | None
    ) -> _Failure | None:
        for name in clean:
            fdef = table.field(name)
            value = merged.get(name)
            if fdef is None or not fdef.unique or value is None or value == "":
                continue
            others = [i for i in table.lookup(fdef.name, value) if i != target_id]
            if others:
                # The recorded bodies give no field here (SOURCES.md: ERR-msgs, the create fixture).
                return _Failure(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {fdef.name} duplicates value on record with id: {others[0]}",
                    [],
                )
        return None

    def _settle_owner(self, table: _Table, merged: dict[str, Any], *, created: bool, auto_assign: bool) -> None:
        """Who owns the record after this write (SF-owner): the assignment rule's owner on any
        Lead write that does not opt out; a new Lead without an owner goes to the default lead
        owner (`Sforce-Auto-Assign` TRUE or absent) or to the API user (FALSE); any other new
        record without one to the API user, who created it."""
        config = self._config
        if table.name == "Lead" and auto_assign and config.assignment_rule_owner_id is not None:
            merged["OwnerId"] = config.assignment_rule_owner_id
            return
        mode = config.default_lead_owner
        owner_field = table.field("OwnerId")
        if mode == "none" or not created or owner_field is None or merged.get("OwnerId") not in (None, ""):
            return
        if table.name == "Lead" and auto_assign:
            merged["OwnerId"] = config.sf_default_owner_user_id if mode == "user" else config.sf_default_queue_id
        else:
            merged["OwnerId"] = config.sf_api_user_id

    def _check_reference(self, table: _Table, fname: str, value: Any) -> _Failure | None:
        fdef = table.field(fname)
        if fdef is None or fdef.type != "reference" or value is None or value == "":
            return None
        if not isinstance(value, str):
            return _Failure("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {fname}", [fname])
        targets = [self.tables[t.lower()] for t in fdef.reference_to if t.lower() in self.tables]
        if not targets:
            return None  # a reference to an object the sandbox does not keep (Profile, UserRole)
        groups = self.tables["group"]
        if value.startswith(groups.prefix) and "Group" in fdef.reference_to and not groups.rows:
            return None  # a queue, in an org whose queues the sandbox does not keep: any id passes
        row = next((r for r in (t.get(value) for t in targets) if r is not None), None)
        if row is None or (value.startswith(groups.prefix) and fname == "OwnerId" and row.get("Type") != "Queue"):
            return _Failure("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {fname}", [fname])
        if fname == "OwnerId" and value.startswith("005") and row.get("IsActive") is False:
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


def _check_access(table: _Table, clean: Mapping[str, Any], *, created: bool) -> _Failure | None:
    """The first field this write may not set: not createable on a create, not updateable on an
    update (system, formula and read-only fields)."""
    for name in clean:
        fdef = table.field(name)
        if fdef is not None and not (fdef.createable if created else fdef.updateable):
            return _Failure(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {name}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                [name],
            )
    return None


def _host(request: Request) -> str:
    """The host the client called (describe answers carry absolute URLs)."""
    return request.headers.get("host", "127.0.0.1")


def _project(row: Mapping[str, Any], fields: str | None) -> dict[str, Any]:
    if not fields:
        return dict(row)
    wanted = {f.strip().lower() for f in fields.split(",") if f.strip()} | {"id"}
    return {k: v for k, v in row.items() if k.lower() in wanted}


def _full_name(row: Mapping[str, Any]) -> str:
    return " ".join(str(row[k]) for k in ("FirstName", "LastName") if row.get(k))


def _upsert_key(table: _Table, name: str) -> bool:
    """Whether a field can key an upsert: `Id`, an external id, or a field a seed brought (the
    sandbox cannot know how a seed meant it)."""
    fdef = table.field(name)
    return fdef is not None and (fdef.name == "Id" or fdef.external_id or name.lower() in table.learned)


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


# ------------------------------------------------------------------ field rules

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
_COUNTRY_MESSAGE = (
    "There's a problem with this country, even though it may appear correct. "
    "Please select a country/territory from the list of valid countries.: {label}"
)
_STATE_MESSAGE = (
    "There's a problem with this state, even though it may appear correct. "
    "Please select a state from the list of valid states.: {label}"
)


def _no_such_column(text: str, unknown: list[str], entity: str) -> str:
    """The real INVALID_FIELD text of a query (ERR-msgs): the SOQL line, a caret under the first
    unknown field, its row and column, then the hint."""
    found: list[tuple[int, str]] = []
    for name in unknown:
        match = re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
        found.append((match.start() if match else len(text), name))
    position, name = min(found)
    row = text.count("\n", 0, position) + 1
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    column = position - line_start + 1
    return (
        f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n"
        f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, be sure "
        "to append the '__c' after the custom field name. Please reference your WSDL or the describe call for "
        "the appropriate names."
    )


def _json_token(value: Any) -> str:
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, dict):
        return "START_OBJECT"
    return "VALUE_STRING"


def _fits_type(fdef: FieldDef, value: Any) -> bool:
    """Whether Salesforce can read this JSON value into the field (it converts numeric text)."""
    kind = fdef.type
    if value is None:
        return True
    if isinstance(value, list | dict):
        return False
    if fdef.is_text:
        return True
    if kind in ("id", "reference"):
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false"))
    if kind in _NUMBER_TYPES:
        number = _as_number(value)
        return number is not None and (kind != "int" or float(number).is_integer())
    if kind == "date":
        return isinstance(value, str) and _is_date(value)
    if kind == "datetime":
        return isinstance(value, str) and parse_timestamp(value) is not None
    return True


# What Salesforce trims from the ends of a text: the characters up to and including the space (Java's
# `String.trim`), not every Unicode space.
_TRIMMED = "".join(chr(code) for code in range(0x21))


def _utf16_units(text: str) -> int:
    """A text's length as Salesforce counts it: UTF-16 code units, so a character outside the
    Basic Multilingual Plane (an emoji, a rare CJK ideograph) counts twice (Salesforce Help,
    "Surrogate Pair Characters Are Treated as Two Characters", 005166849)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _as_number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    return None


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _check_json_types(table: _Table, body: Mapping[str, Any], raw: bytes) -> None:
    """A value Salesforce cannot read into its field fails the whole request before any record is
    written: 400 `JSON_PARSER_ERROR` (no `fields`), the shape public threads record. The line and
    column point at the first occurrence of the field's key in the body (approximately where
    Salesforce's parser stops)."""
    for key, value in body.items():
        fdef = table.field(key) if key != "attributes" else None
        if fdef is None or _fits_type(fdef, value):
            continue
        kind = "double" if fdef.type in ("currency", "percent") else fdef.type
        token = _json_token(value)
        text = raw.decode("utf-8", "replace")
        index = max(0, text.find(f'"{key}"'))
        line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + len(key) + 3
        where = f"[line:{line}, column:{column}]"
        if token in ("START_ARRAY", "START_OBJECT"):
            message = f"Cannot deserialize instance of {kind} from {token} value {where}"
        else:
            shown = json.dumps(value) if not isinstance(value, str) else value
            message = (
                f"Cannot deserialize instance of {kind} from {token} value {shown} or request may be missing "
                f"a required field at {where}"
            )
        raise _SfError(400, "JSON_PARSER_ERROR", message)


def _check_values(table: _Table, clean: Mapping[str, Any], merged: dict[str, Any], *, created: bool) -> _Failure | None:
    """Field values held to their definitions (ERR-msgs): length, restricted picklist, e-mail;
    numeric and boolean text stored as the value it names; a new record's defaulted picklists
    (Lead Status) get their default."""
    if created:
        for name, default in table.picklist_defaults:
            if merged.get(name) in (None, ""):
                merged[name] = default
    for name, value in clean.items():
        fdef = table.field(name)
        if fdef is None or value is None or value == "":
            continue
        failure = _check_value(fdef, name, value, merged)
        if failure is not None:
            return failure
    return None


def _check_value(fdef: FieldDef, name: str, value: Any, merged: dict[str, Any]) -> _Failure | None:
    """One non-empty value against its definition; the value as stored goes into `merged`."""
    if fdef.type in _NUMBER_TYPES:
        number = _as_number(value)
        if number is None:
            return None  # `_fits_type` refused it already
        if isinstance(value, str):
            merged[name] = int(float(value)) if fdef.type == "int" else float(value)
        # A number's field holds `digits` (int) or `precision - scale` digits before the point: a
        # larger value fails the record (a real org: "Employees: value outside of valid range on
        # numeric field: 1431655766").
        whole = fdef.digits if fdef.type == "int" else fdef.precision - fdef.scale
        if whole > 0 and abs(float(number)) >= 10**whole:
            message = f"{fdef.label}: value outside of valid range on numeric field: {value}"
            return _Failure("NUMBER_OUTSIDE_VALID_RANGE", message, [name])
        return None
    if fdef.type == "boolean" and isinstance(value, str):
        merged[name] = value.lower() == "true"
        return None
    if not fdef.is_text:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    if fdef.length and _utf16_units(text) > fdef.length:
        # The value as sent, spaces included: a real org's answer quotes it so
        # (tests/fixtures/real/salesforce_composite_upsert_response.json).
        return _Failure(
            "STRING_TOO_LONG", f"{fdef.label}: data value too large: {text} (max length={fdef.length})", [name]
        )
    text = merged[name] = text.strip(_TRIMMED)  # stored trimmed, as `_clean_fields` says
    address_code = name in ("CountryCode", "StateCode")  # their own error: see _settle_address
    if fdef.type == "picklist" and fdef.restricted and not address_code and text not in fdef.active_values():
        return _Failure(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{fdef.label}: bad value for restricted picklist field: {text}",
            [name],
        )
    if fdef.type == "email" and not _EMAIL.match(text):
        return _Failure("INVALID_EMAIL_ADDRESS", f"{fdef.label}: invalid email address: {text}", [name])
    return None


def _codes(table: _Table) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The org's CountryCode picklist: code → name, lower-cased name → code, codes in order."""
    field = table.field("CountryCode")
    values = [p for p in field.picklist if p.active] if field is not None else []
    ordered = [p.value for p in field.picklist] if field is not None else []
    return {p.value: p.label for p in values}, {p.label.lower(): p.value for p in values}, ordered


def _states_of(table: _Table, country: Any, ordered: list[str]) -> dict[str, str]:
    """State code → name valid for `country`, read from StateCode's `validFor` bitmaps."""
    field = table.field("StateCode")
    if field is None or not isinstance(country, str) or country not in ordered:
        return {}
    index = ordered.index(country)
    return {p.value: p.label for p in field.picklist if p.active and index in controlling_indexes(p.valid_for)}


def _settle_address(table: _Table, clean: Mapping[str, Any], merged: dict[str, Any]) -> _Failure | None:
    """State and Country/Territory picklists (SF-picklists, FI-msgs): `Country`/`State` take
    integration values only, `CountryCode`/`StateCode` codes only; setting one fills the other;
    anything else is `FIELD_INTEGRITY_EXCEPTION`. The country is settled first: the states a
    lead may hold depend on it."""
    by_code, by_name, ordered = _codes(table)
    failure = _settle_country(table, clean, merged, by_code, by_name)
    if failure is not None:
        return failure
    return _settle_state(table, clean, merged, _states_of(table, merged.get("CountryCode"), ordered))


def _integrity_error(table: _Table, name: str, default_label: str, message: str) -> _Failure:
    """`FIELD_INTEGRITY_EXCEPTION` on `Country` or `State`, its text naming the field's label."""
    label = (table.field(name) or FieldDef(name, "string", default_label)).label
    return _Failure("FIELD_INTEGRITY_EXCEPTION", message.format(label=label), [name])


def _settle_country(
    table: _Table,
    clean: Mapping[str, Any],
    merged: dict[str, Any],
    by_code: Mapping[str, str],
    by_name: Mapping[str, str],
) -> _Failure | None:
    """`CountryCode` and `Country` of the write, checked against the picklist and filled in pairs."""
    code_value, name_value = clean.get("CountryCode"), clean.get("Country")
    if code_value not in (None, ""):
        code = str(code_value).upper()
        if code not in by_code:
            return _Failure(
                "FIELD_INTEGRITY_EXCEPTION",
                f"The CountryCode field contains {code_value}, which isn't an available country/territory. "
                "Your administrator can add it for you.",
                ["CountryCode"],
            )
        if name_value not in (None, "") and by_name.get(str(name_value).lower()) != code:
            return _integrity_error(table, "Country", "Country", _COUNTRY_MESSAGE)
        merged["CountryCode"], merged["Country"] = code, by_code[code]
    elif name_value not in (None, ""):
        named = by_name.get(str(name_value).strip().lower()) if isinstance(name_value, str) else None
        if named is None:
            return _integrity_error(table, "Country", "Country", _COUNTRY_MESSAGE)
        merged["CountryCode"], merged["Country"] = named, by_code[named]
    elif "Country" in clean or "CountryCode" in clean:
        merged["CountryCode"] = merged["Country"] = None
    return None


def _settle_state(
    table: _Table, clean: Mapping[str, Any], merged: dict[str, Any], options: Mapping[str, str]
) -> _Failure | None:
    """`StateCode` and `State` of the write among the `options` (code → name) of the lead's
    country; a state the new country does not have fails too."""
    state_code, state_name = clean.get("StateCode"), clean.get("State")
    if state_code not in (None, ""):
        code = str(state_code).upper()
        if code not in options:
            return _Failure(
                "FIELD_INTEGRITY_EXCEPTION",
                f"The StateCode field contains {state_code}, which isn't an available state/province. "
                "Your administrator can add it for you.",
                ["StateCode"],
            )
        merged["StateCode"], merged["State"] = code, options[code]
    elif state_name not in (None, "") and options:
        match = next((c for c, n in options.items() if isinstance(state_name, str) and n.lower() == state_name.lower()),
                     None)  # fmt: skip
        if match is None:
            return _integrity_error(table, "State", "State/Province", _STATE_MESSAGE)
        merged["StateCode"], merged["State"] = match, options[match]
    elif "State" in clean or "StateCode" in clean:
        if state_name in (None, ""):
            merged["StateCode"] = merged["State"] = None
    elif merged.get("StateCode") not in (None, "") and merged.get("StateCode") not in options:
        return _integrity_error(table, "State", "State/Province", _STATE_MESSAGE)  # the country moved away
    return None


def _fill_address(row: dict[str, Any]) -> None:
    """A seeded or web-to-lead Lead in an org with the picklists on: a recognised integration
    value fills its code and a code fills its integration value (nothing is refused: seeds are
    not validated)."""
    country = row.get("Country")
    code = row.get("CountryCode")
    if isinstance(code, str) and code and not country:
        found = country_by_code(code)
        if found is not None:
            row["Country"] = found[1]
    elif isinstance(country, str) and country and not code:
        found = country_by_name(country)
        if found is not None:
            row["CountryCode"] = found[0]
    options = state_options(row.get("CountryCode"))
    state, state_code = row.get("State"), row.get("StateCode")
    if isinstance(state_code, str) and state_code in options and not state:
        row["State"] = options[state_code]
    elif isinstance(state, str) and state and not state_code:
        row["StateCode"] = next((c for c, n in options.items() if n.lower() == state.lower()), None)
