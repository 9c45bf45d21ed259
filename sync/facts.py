"""What the Salesforce mirror says, indexed for the rules: leads and opportunities per account."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from core.errors import RecordError
from core.model import Lead, Opportunity, SfUser
from core.records import parse_lead, parse_opportunity, parse_sf_account, parse_user
from core.triage import Remembered
from rules.context import EMPTY, AccountContext
from state import StateDB

__all__ = ["SalesforceFacts"]

T = TypeVar("T")
_DISQUALIFIED = ("Disqualified", "Unqualified")


def _parsed(state: StateDB, sobject: str, parse: Callable[[dict[str, Any]], T]) -> Iterator[tuple[T, dict[str, Any]]]:
    """The mirror's well-formed records of one object, parsed (malformed ones were reported when read)."""
    return _rows(state.iter_sf(sobject), parse)


def _rows(
    rows: Iterable[tuple[str, str, str | None]], parse: Callable[[dict[str, Any]], T]
) -> Iterator[tuple[T, dict[str, Any]]]:
    """Mirrored `(id, raw, error)` rows, the well-formed ones parsed."""
    for _id, raw, error in rows:
        if error:
            continue
        record = json.loads(raw)
        try:
            yield parse(record), record
        except RecordError:
            continue


@dataclass
class SalesforceFacts:
    """The Salesforce mirror joined to Vitally account ids, as the rules need it.

    Leads join on `Vitally_Account_Id__c`; opportunities through the Salesforce Account whose
    `Vitally_Account_Id__c` names the Vitally account. Only what joins is held in memory; every
    lead is streamed from the state by `iter_leads`.
    """

    state: StateDB
    users: dict[str, SfUser] = field(default_factory=dict)
    _leads_by_account: dict[str, list[Lead]] = field(default_factory=lambda: defaultdict(list))
    _opps_by_account: dict[str, list[Opportunity]] = field(default_factory=lambda: defaultdict(list))
    _disqualified_by_company: dict[str, date] = field(default_factory=dict)
    # Vitally account id -> {Id of a lead crm-sync created: the OwnerId crm-sync gave it}.
    _assigned_by_account: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    # `load_for`'s leads (linked to its accounts, or named), with their fields; None after `load`.
    _scoped: list[tuple[Lead, dict[str, Any]]] | None = None
    # Lead id -> the triage verdict remembered for its submission (the LLM's, `sync.triage`).
    _triage: dict[str, Remembered] = field(default_factory=dict)
    # Lead id -> the lead as `load` parsed it from the mirror (linked or disqualified leads), so
    # that `iter_leads` does not parse it again.
    _read: dict[str, Lead] = field(default_factory=dict)

    @classmethod
    def load(cls, state: StateDB) -> SalesforceFacts:
        facts = cls(state)
        for user, _ in _parsed(state, "User", parse_user):
            facts.users[user.id] = user
        vitally_of_sf_account = {
            account.id: account.vitally_account_id
            for account, _ in _parsed(state, "Account", parse_sf_account)
            if account.vitally_account_id
        }
        for opportunity, _ in _parsed(state, "Opportunity", parse_opportunity):
            vitally_id = vitally_of_sf_account.get(opportunity.account_id or "")
            if vitally_id:
                facts._opps_by_account[vitally_id].append(opportunity)
        facts._triage = {lead: verdict for lead, (_, verdict) in state.remembered_triage().items() if verdict}
        written = state.written_field("salesforce", "OwnerId").get  # one query, not one per lead
        for _id, raw, error in state.iter_sf("Lead"):
            if error:
                continue
            record = json.loads(raw)
            # Only a linked or a disqualified lead is a fact; the leads pass parses the others (once).
            if not record.get("Vitally_Account_Id__c") and record.get("Status") not in _DISQUALIFIED:
                continue
            try:
                lead = parse_lead(record)
            except RecordError:
                continue
            facts._read[lead.id] = lead
            if lead.vitally_account_id:
                facts._leads_by_account[lead.vitally_account_id].append(lead)
                facts._remember_assignment(lead, written)
            facts._disqualified(lead)
        return facts

    @classmethod
    def load_for(cls, state: StateDB, account_ids: Collection[str], lead_ids: Collection[str] = ()) -> SalesforceFacts:
        """The facts `load` would give about these accounts and leads, read from the mirror for
        them alone (an event's mini-cycle): `context_for` each of the accounts and
        `company_disqualified_at` each lead's company answer as after `load`, and `iter_leads`
        yields the accounts' linked leads and the leads named, in id order."""
        scoped: list[tuple[Lead, dict[str, Any]]] = []
        facts = cls(state, _scoped=scoped)
        for user, _ in _parsed(state, "User", parse_user):
            facts.users[user.id] = user
        vitally_of_sf_account = {
            account.id: account.vitally_account_id
            for account, _ in _rows(state.sf_where("Account", "Vitally_Account_Id__c", account_ids), parse_sf_account)
            if account.vitally_account_id
        }
        opportunities = state.sf_where("Opportunity", "AccountId", vitally_of_sf_account)
        for opportunity, _ in _rows(opportunities, parse_opportunity):
            vitally_id = vitally_of_sf_account.get(opportunity.account_id or "")
            if vitally_id:
                facts._opps_by_account[vitally_id].append(opportunity)
        linked = state.sf_where("Lead", "Vitally_Account_Id__c", account_ids)
        named = state.sf_where("Lead", "Id", lead_ids)
        last = state.last_written("salesforce")

        def written(key: str) -> Any:
            return last.get((key, "OwnerId"))

        for lead, raw in _rows(sorted({row[0]: row for row in [*linked, *named]}.values()), parse_lead):
            scoped.append((lead, raw))
            if lead.vitally_account_id:
                facts._leads_by_account[lead.vitally_account_id].append(lead)
                facts._remember_assignment(lead, written)
        companies = {lead.company.casefold() for lead, _ in scoped if lead.company}
        for lead, _ in _rows(state.sf_where("Lead", "Status", _DISQUALIFIED), parse_lead):
            if lead.company and lead.company.casefold() in companies:
                facts._disqualified(lead)
        return facts

    def _disqualified(self, lead: Lead) -> None:
        """Remember a disqualified lead's company (`company_disqualified_at`)."""
        if not lead.company or (lead.status or "") not in _DISQUALIFIED:
            return
        # Salesforce keeps no disqualification date on a Lead; its last change is the best proxy.
        key = lead.company.casefold()
        day = lead.system_modstamp.date()
        self._disqualified_by_company[key] = max(day, self._disqualified_by_company.get(key, day))

    def _remember_assignment(self, lead: Lead, written: Callable[[str], Any]) -> None:
        """The owner crm-sync gave a lead it created (upserted on its Sync_Key__c; `written` gives
        the OwnerId crm-sync last wrote under a key), so a rule can tell a person's reassignment
        from our own choice."""
        if not lead.sync_key or not lead.vitally_account_id:
            return
        owner = written(lead.sync_key)
        if isinstance(owner, str) and owner:
            self._assigned_by_account[lead.vitally_account_id][lead.id] = owner

    def linked_leads(self) -> Iterator[Lead]:
        """The leads joined to a Vitally account (they are part of that account's context)."""
        for leads in list(self._leads_by_account.values()):
            yield from list(leads)

    def plan_lead_fields(self, lead: Lead, fields: dict[str, Any]) -> None:
        """Show the accounts' rules a linked lead as this cycle's own writes will leave it (a lead
        disqualified now is not an open lead for the lifecycle stage), so the next cycle does not
        correct what this one decided."""
        raw = self.state.sf_raw("Lead", lead.id)
        if raw is None or not lead.vitally_account_id:
            return
        try:
            planned = parse_lead({**raw, **fields})
        except RecordError:
            return
        leads = self._leads_by_account[lead.vitally_account_id]
        leads[:] = [planned if known.id == lead.id else known for known in leads]

    def iter_leads(self, skip: Collection[str] = ()) -> Iterator[tuple[Lead, dict[str, Any]]]:
        """Every well-formed lead of the mirror with its fields as Salesforce last showed them
        (for diffs), streamed, but those whose ids are in `skip` (not even read); a lead `load`
        parsed is not parsed again. For facts of `load_for`, the leads it read."""
        if self._scoped is not None:
            return iter([(lead, raw) for lead, raw in self._scoped if lead.id not in skip])
        return self._iter_mirrored_leads(skip)

    def _iter_mirrored_leads(self, skip: Collection[str]) -> Iterator[tuple[Lead, dict[str, Any]]]:
        read = self._read
        for lead_id, raw, error in self.state.iter_sf("Lead"):
            if error or lead_id in skip:
                continue
            record = json.loads(raw)
            known = read.get(lead_id)
            if known is not None:
                yield known, record
                continue
            try:
                yield parse_lead(record), record
            except RecordError:
                continue

    def context_for(self, account_id: str) -> AccountContext:
        leads = self._leads_by_account.get(account_id)
        opportunities = self._opps_by_account.get(account_id)
        if not leads and not opportunities:
            return EMPTY
        return AccountContext(
            leads=tuple(leads or ()),
            opportunities=tuple(opportunities or ()),
            assigned_owners=self._assigned_by_account.get(account_id) or {},
        )

    def triage_of(self, lead_id: str) -> Remembered | None:
        """The triage verdict remembered for the lead's submission, if any (the rule checks that it
        is for the submission the lead carries now)."""
        return self._triage.get(lead_id)

    def company_disqualified_at(self, company: str | None) -> date | None:
        """The latest day a lead of this company was disqualified, when known."""
        return None if not company else self._disqualified_by_company.get(company.casefold())
