"""The baseline many teams run today: read everything, decide, rewrite everything, every run.

A run reads every Vitally account page and every polled Salesforce object in full (no cursors,
no memory of earlier runs), evaluates the same rules as crm-sync with the config's policy
(`rules.evaluate_account` / `rules.evaluate_lead`, as sync/decider.py calls them), then writes
back every managed field of every record, whether or not it changed:

- one Vitally `PUT` per account with all its managed traits: each segment trait (`true`, or
  `null` to leave the segment) and every written trait a rule sets;
- every task a rule wants (`POST /resources/tasks`, an upsert on its externalId);
- a lead upsert on `Sync_Key__c` for every routed account without an open lead;
- every open lead's computed fields (score, classification, routing) in collections of 200.

It assigns no owners (no round robin) and never reads back what it wrote. With `--dry-run` it
reads and decides but sends nothing. The real connectors do the talking (sync/app.py).

Usage: .venv/bin/python bench/naive.py --config CONFIG [--dry-run] [--now TIMESTAMP]
Prints one JSON object: what it read, what it sent, and how many writes were refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from well_formed import well_formed

from core.errors import RecordError, WriteRejectedError
from core.model import Account, Lead, Opportunity
from core.records import parse_account, parse_lead, parse_opportunity, parse_sf_account
from rules import AccountContext, Decision, LeadContext, Policy, evaluate_account, evaluate_lead
from rules import managed_segments as managed_segments_of
from rules.context import dropped_as_spam, folded_statuses
from rules.routing import lead_source_for
from sync.app import make_salesforce, make_vitally
from sync.config import Config, load_config
from sync.ingest import SF_OBJECTS
from sync.wire import lead_fields, vitally_task

_ROUTED_TEAMS = ("TAM", "TAE", "BDR")  # the teams a routed account's lead goes to (sync/plan.py)
_REASON_MAX = 255  # a Salesforce text field


@dataclass
class _Facts:
    """Salesforce records joined to Vitally accounts, rebuilt from scratch on every run."""

    leads: list[Lead] = field(default_factory=list)
    leads_by_account: dict[str, list[Lead]] = field(default_factory=lambda: defaultdict(list))
    opportunities_by_account: dict[str, list[Opportunity]] = field(default_factory=lambda: defaultdict(list))
    disqualified_by_company: dict[str, date] = field(default_factory=dict)

    @classmethod
    def build(cls, records: Mapping[str, Sequence[Mapping[str, Any]]], policy: Policy) -> _Facts:
        """Leads join on `Vitally_Account_Id__c`, opportunities through their Salesforce Account's;
        a company's disqualified leads are those in one of `[rules.episodes] disqualified_statuses`,
        compared as crm-sync compares statuses (sync/facts.py)."""
        facts = cls()
        disqualified = folded_statuses(policy.episodes.disqualified_statuses)
        vitally_of = {
            account.id: account.vitally_account_id
            for account in well_formed(records["Account"], parse_sf_account)
            if account.vitally_account_id
        }
        for opportunity in well_formed(records["Opportunity"], parse_opportunity):
            vitally_id = vitally_of.get(opportunity.account_id or "")
            if vitally_id:
                facts.opportunities_by_account[vitally_id].append(opportunity)
        for lead in well_formed(records["Lead"], parse_lead):
            facts.leads.append(lead)
            if lead.vitally_account_id:
                facts.leads_by_account[lead.vitally_account_id].append(lead)
            if lead.company and (lead.status or "").strip().casefold() in disqualified and not dropped_as_spam(lead):
                key, day = lead.company.casefold(), lead.system_modstamp.date()
                facts.disqualified_by_company[key] = max(day, facts.disqualified_by_company.get(key, day))
        return facts

    def context_for(self, account_id: str) -> AccountContext:
        return AccountContext(
            leads=tuple(self.leads_by_account.get(account_id, ())),
            opportunities=tuple(self.opportunities_by_account.get(account_id, ())),
        )


@dataclass
class Plan:
    """Everything one run sends: it is the whole book every time."""

    puts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    new_leads: list[dict[str, Any]] = field(default_factory=list)
    lead_updates: list[dict[str, Any]] = field(default_factory=list)


def _managed_traits(decisions: Sequence[Decision], config: Config, managed: frozenset[str]) -> dict[str, Any]:
    """Every managed trait of one account as the rules want it: each segment trait `true` or `null`,
    and every written trait a fired rule sets (the first rule in the configured order wins)."""
    vitally = config.vitally
    fired = [d for d in decisions if d.fired]
    wanted = frozenset().union(*(d.segments for d in fired))
    traits: dict[str, Any] = {
        trait: (True if segment in wanted else None)
        for segment, trait in vitally.segment_traits.items()
        if segment in managed
    }
    for decision in fired:
        for name, value in decision.traits.items():
            traits.setdefault(vitally.written_traits.get(name, name), value)
    return traits


def _new_lead(account: Account, winner: Decision) -> dict[str, Any]:
    return {
        "Sync_Key__c": f"naive-{account.id}",
        "LastName": account.name,
        "Company": account.name,
        "LeadSource": lead_source_for(winner.rule),
        "Routing_Rule__c": winner.rule,
        "Routing_Reason__c": f"{winner.rule}: {winner.reason}"[:_REASON_MAX],
        "Vitally_Account_Id__c": account.id,
    }


def plan(
    config: Config,
    raw_accounts: Sequence[Mapping[str, Any]],
    sf_records: Mapping[str, Sequence[Mapping[str, Any]]],
    now: datetime,
) -> Plan:
    """What one run writes for this book: everything the rules manage, on every record."""
    policy = config.policy
    managed = managed_segments_of(policy)
    written_keys = tuple(config.vitally.written_traits.values()) + tuple(config.vitally.segment_traits.values())
    facts = _Facts.build(sf_records, policy)
    out = Plan()
    for raw in raw_accounts:
        try:
            account = parse_account(raw, config.vitally.trait_keys, written_keys)
        except RecordError:
            continue
        context = facts.context_for(account.id)
        decisions = evaluate_account(account, context, policy, now, config.custom_triggers, full=False)
        out.puts.append((account.id, _managed_traits(decisions, config, managed)))
        out.tasks.extend(vitally_task(d.task) for d in decisions if d.fired and d.task is not None)
        winner = next(
            (d for d in decisions if d.fired and d.team in _ROUTED_TEAMS and "routing_reason" in d.traits), None
        )
        if winner is not None and not context.open_leads:
            out.new_leads.append(_new_lead(account, winner))
    for lead in facts.leads:
        if lead.is_converted:
            continue  # Salesforce refuses any update to a converted lead
        fields: dict[str, Any] = {}
        disqualified = facts.disqualified_by_company.get((lead.company or "").casefold())
        for decision in evaluate_lead(lead, LeadContext(disqualified), policy, now):
            if decision.fired:
                for name, value in lead_fields(decision.lead).items():
                    fields.setdefault(name, value)
        if fields:
            out.lead_updates.append({"Id": lead.id, **fields})
    return out


def run(config: Config, now: datetime, *, dry_run: bool) -> dict[str, int]:
    """One naive run against the services in `config`; returns what it read and sent."""
    vitally = make_vitally(config)
    salesforce = make_salesforce(config)
    # A naive job reads what decodes and skips the rest (crm-sync reports it: core/decoding.py).
    raw_accounts = [a for a in vitally.iter_accounts() if isinstance(a, dict)]
    sf_records = {
        sobject: [r for r in salesforce.iter_changed(sobject, fields, None) if isinstance(r, dict)]
        for sobject, fields in SF_OBJECTS.items()
    }
    work = plan(config, raw_accounts, sf_records, now)
    refused = 0
    if not dry_run:
        for account_id, traits in work.puts:
            try:
                vitally.put_traits(account_id, traits)
            except WriteRejectedError:
                refused += 1
        for task in work.tasks:
            try:
                vitally.upsert_task(task)
            except WriteRejectedError:
                refused += 1
        results = [
            *(salesforce.upsert("Lead", "Sync_Key__c", work.new_leads, set_owner=False) if work.new_leads else []),
            *(salesforce.update("Lead", work.lead_updates, set_owner=False) if work.lead_updates else []),
        ]
        refused += sum(1 for result in results if not result.ok)
    return {
        "accounts_read": len(raw_accounts),
        **{f"sf_{sobject.lower()}_read": len(rows) for sobject, rows in sf_records.items()},
        "puts": 0 if dry_run else len(work.puts),
        "tasks": 0 if dry_run else len(work.tasks),
        "lead_upserts": 0 if dry_run else len(work.new_leads),
        "lead_updates": 0 if dry_run else len(work.lead_updates),
        "refused": refused,
    }


def _timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="crm-sync config file (services and rules)")
    parser.add_argument("--dry-run", action="store_true", help="read and decide, send nothing")
    parser.add_argument("--now", type=_timestamp, help="the rules' clock (ISO 8601; default: now)")
    args = parser.parse_args()
    summary = run(load_config(args.config), args.now or datetime.now(UTC), dry_run=args.dry_run)
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
