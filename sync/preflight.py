"""`python -m sync check`: is this org and workspace ready for this config, before a cycle writes.

A cycle against an org that lacks a field fails every query (`INVALID_FIELD`); one whose picklist
lacks a value we write, or whose `Sync_Key__c` is no unique external id, parks or duplicates
writes. The preflight reads what the daemon will depend on and says, one line per problem, what
is wrong and what to do:

- both services answer with these credentials (else exit 3);
- every Salesforce field crm-sync reads exists (under its `[salesforce.fields]` name), every
  Lead field it writes is createable and updateable by this user (`describe`);
- the upsert key (`Sync_Key__c`) is a unique external id;
- every LeadSource value crm-sync writes (`[rules.routing]` *_source) is in the LeadSource
  picklist, and a restricted `Routing_Rule__c` picklist holds every routing rule id;
- `salesforce.state_country_picklists` matches the org (it has `Lead.CountryCode` or not);
- every pool member is an active user, and every fallback and unrouted owner an active user or
  a queue; a member with a capacity has an email to count their managed accounts by.

Config problems are found before any of this (`load_config`: `path: message`, exit 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.base import VitallyPort
from connectors.salesforce import FIELD_OBJECTS, SalesforceClient
from core.decoding import Unreadable
from core.errors import SyncError
from sync.config import Config
from sync.ingest import sf_objects

__all__ = ["Preflight", "capacity_problems", "preflight", "schema_problems"]

# Lead fields crm-sync writes (sync/planned_writes.py `new_lead`, `lead_update`, sync/wire.py),
# under crm-sync's names; the country field is added by the picklist setting.
WRITTEN_LEAD_FIELDS: tuple[str, ...] = (
    "LastName", "Company", "LeadSource", "OwnerId", "NumberOfEmployees", "AnnualRevenue", "Industry",
    "Sync_Key__c", "Routing_Rule__c", "Routing_Reason__c", "Lead_Score__c", "Vitally_Account_Id__c",
    "Qualification__c", "Qualification_Reason__c", "Classification__c",
)  # fmt: skip
SYNC_KEY = "Sync_Key__c"
LEAD_SOURCE_SETTINGS = ("product_led_source", "new_business_source", "bdr_source", "am_referral_source",
                        "ae_referral_source")  # fmt: skip
GUIDE = "docs/salesforce-setup.md"


@dataclass(frozen=True)
class Preflight:
    """What `check` found: `unreachable` (a service did not answer or refused the credentials),
    `problems` (the org or the config must change), and what was checked, for the summary."""

    unreachable: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """3 when a service is unreachable, 2 on any other problem, 0 when ready."""
        return 3 if self.unreachable else 2 if self.problems else 0


def preflight(config: Config, vitally: VitallyPort, salesforce: SalesforceClient) -> Preflight:
    """Every check of the module docstring, against the services of `config`."""
    result = Preflight()
    try:
        next(iter(vitally.iter_accounts_since(None)), None)  # one page: the key works and the API answers
        result.checked.append("Vitally answers")
    except SyncError as error:
        result.unreachable.append(f"vitally: {error}: check [vitally] base_url and the API key")
    try:
        described = {sobject: salesforce.describe(sobject) for sobject in _described(config)}
    except SyncError as error:
        result.unreachable.append(f"salesforce: {error}: check [salesforce] instance_url and the credentials")
        return result
    result.checked.append(f"Salesforce answers; {', '.join(described)} described")
    result.problems.extend(schema_problems(config, described))
    result.checked.append("fields, external id, picklists")
    _owners(config, salesforce, result.problems)
    result.problems.extend(capacity_problems(config))
    result.checked.append("pool members, fallback and unrouted owners")
    return result


def capacity_problems(config: Config) -> list[str]:
    """Pool members with a capacity but no email: their managed accounts are counted by the email
    in the TAM key role, so without one the cap is never reached and they keep being drawn."""
    return [
        f"pools[{pool.key}].members: {member.name} ({member.user_id}) has a capacity of {member.capacity} "
        "but no email: their managed accounts cannot be counted, so the cap never applies: add the email "
        "their TAM key role has in Vitally"
        for pool in config.pools.values()
        for member in pool.members
        if member.capacity is not None and not member.email
    ]


def schema_problems(config: Config, described: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The problems of the org's schema for `config`, from `describe` answers (sObject -> answer;
    an sObject not given is not checked): one line each, as `check` prints them."""
    org = {sobject: {f["name"].lower(): f for f in answer.get("fields") or [] if isinstance(f, dict) and "name" in f}
           for sobject, answer in described.items()}  # fmt: skip
    problems: list[str] = []
    if "Lead" in org:
        _Schema(config, org, problems).check()
    return problems


def _described(config: Config) -> list[str]:
    return [sobject for sobject in sf_objects(config.salesforce) if sobject != "User"]  # User: standard fields


class _Schema:
    def __init__(self, config: Config, org: Mapping[str, Mapping[str, Mapping[str, Any]]], problems: list[str]):
        self.config = config
        self.org = org
        self.problems = problems
        # (sObject, crm-sync's API name) -> the org's name, and the `[salesforce.fields]` key naming it.
        self.names = {FIELD_OBJECTS[c]: name for c, name in config.salesforce.fields.items() if c in FIELD_OBJECTS}
        self.setting = {entry: canonical for canonical, entry in FIELD_OBJECTS.items()}

    def check(self) -> None:
        picklists = self.config.salesforce.state_country_picklists
        has_code = "countrycode" in self.org.get("Lead", {})
        if has_code != picklists:
            self.problems.append(
                "salesforce.state_country_picklists: the org "
                + ("has State and Country/Territory picklists (Lead.CountryCode exists): set it to true, "
                   "or every new lead's country is refused" if has_code else
                   "has no State and Country/Territory picklists (no Lead.CountryCode): set it to false")
            )  # fmt: skip
        reported: set[tuple[str, str]] = set()
        for sobject, fields in sf_objects(self.config.salesforce).items():
            if sobject not in self.org:
                continue
            for name in fields:
                if name != "CountryCode":  # its absence is the picklist setting's problem, said above
                    self._field(sobject, name, reported)
        country = "CountryCode" if picklists else "Country"
        written = (*WRITTEN_LEAD_FIELDS, country) if has_code == picklists else WRITTEN_LEAD_FIELDS
        for name in written:
            definition = self._field("Lead", name, reported)
            if definition is not None and not (definition.get("createable") and definition.get("updateable")):
                self.problems.append(
                    f"Lead.{self._org_name(name)}: not createable and updateable by this user: give the integration "
                    "user Edit access in the field's field-level security"
                )
        key = self._field("Lead", SYNC_KEY, reported)
        if key is not None and not (key.get("externalId") and key.get("unique")):
            self.problems.append(
                f"Lead.{self._org_name(SYNC_KEY)}: not a unique external id: tick 'Unique' and 'External ID' on "
                "the field (crm-sync upserts on it; without them a retried create can make a second lead)"
            )
        self._lead_sources(reported)
        self._routing_rules()

    def _org_name(self, name: str, sobject: str = "Lead") -> str:
        return self.names.get((sobject, name), name)

    def _field(self, sobject: str, name: str, reported: set[tuple[str, str]]) -> Mapping[str, Any] | None:
        """The org's definition of crm-sync's field `name`, or None after saying once that it is missing."""
        org_name = self._org_name(name, sobject)
        definition = self.org[sobject].get(org_name.lower())
        if definition is None and (sobject, org_name) not in reported:
            reported.add((sobject, org_name))
            setting = self.setting.get((sobject, name))
            if setting is None and not name.endswith("__c"):  # a standard field exists: this user cannot see it
                self.problems.append(
                    f"{sobject}.{org_name}: not visible to this user: give the integration user Read access to it "
                    "(field-level security)"
                )
                return None
            rename = f", or name the org's field in [salesforce.fields] {setting}" if setting else ""
            self.problems.append(f"{sobject}.{org_name}: missing: create it as {GUIDE} says{rename}")
        return definition

    def _lead_sources(self, reported: set[tuple[str, str]]) -> None:
        source = self._field("Lead", "LeadSource", reported)
        if source is None or source.get("type") != "picklist":
            return
        values = _active_values(source)
        routing = self.config.policy.routing
        written: dict[str, list[str]] = {}
        for setting in LEAD_SOURCE_SETTINGS:
            written.setdefault(str(getattr(routing, setting)), []).append(setting)
        for value, settings in written.items():
            if value not in values:
                named = " or ".join(f"rules.routing.{s}" for s in settings)
                self.problems.append(
                    f"Lead.LeadSource: value {value!r} is not in the picklist: add it to Lead Source's values, "
                    f"or set {named} to one of them"
                )

    def _routing_rules(self) -> None:
        rule = self.org["Lead"].get(self._org_name("Routing_Rule__c").lower())
        if rule is None or rule.get("type") != "picklist" or not rule.get("restrictedPicklist"):
            return
        values = _active_values(rule)
        missing = [r for r in self.config.policy.routing.order if r not in values]
        if missing:
            self.problems.append(
                f"Lead.{self._org_name('Routing_Rule__c')}: restricted picklist lacks {', '.join(missing)}: add "
                "these values, or make the picklist unrestricted"
            )


def _active_values(definition: Mapping[str, Any]) -> set[str]:
    values = definition.get("picklistValues") or []
    return {v["value"] for v in values if isinstance(v, dict) and v.get("active") and isinstance(v.get("value"), str)}


def _owners(config: Config, salesforce: SalesforceClient, problems: list[str]) -> None:
    """Pool members must be active users; fallback and unrouted owners active users or queues."""
    wanted: list[tuple[str, str, bool]] = []  # (config path, id, may be a queue)
    for pool in config.pools.values():
        path = f"pools[{pool.key}]"
        wanted += [(f"{path}.members", member.user_id, False) for member in pool.members]
        if pool.fallback_owner:
            wanted.append((f"{path}.fallback_owner", pool.fallback_owner, True))
    wanted += [("rules.routing.unrouted_owners", owner, True) for owner in config.policy.routing.unrouted_owners]
    if not wanted:
        return
    users = _by_id(salesforce, "User", ["IsActive"], [i for _, i, _ in wanted if i.startswith("005")])
    queues = _by_id(salesforce, "Group", ["Type"], [i for _, i, _ in wanted if i.startswith("00G")])
    for path, owner, queue_ok in wanted:
        if owner.startswith("00G"):
            group = queues.get(owner[:15])
            if not queue_ok:
                problems.append(f"{path}: {owner} is a queue: a pool member must be a user")
            elif group is None or group.get("Type") != "Queue":
                problems.append(f"{path}: queue {owner} not found: create it (supported object: Lead) or name another")
            continue
        user = users.get(owner[:15])
        if user is None:
            problems.append(f"{path}: user {owner} not found in Salesforce: correct the id or remove it")
        elif user.get("IsActive") is not True:
            problems.append(f"{path}: user {owner} is inactive in Salesforce: reactivate them or remove them")


def _by_id(salesforce: SalesforceClient, sobject: str, fields: list[str], ids: Iterable[str]) -> dict[str, Any]:
    """Records by the first 15 characters of their Id (config may give 15- or 18-character ids)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    found: dict[str, Any] = {}
    for record in salesforce.read_by_ids(sobject, fields, wanted):
        if not isinstance(record, Unreadable) and isinstance(record.get("Id"), str):
            found[record["Id"][:15]] = record
    return found
