"""The writes a cycle plans, one named factory per kind: what each sends (`payload`) and what the
plan shows (`fields`, `previous`, `owner`), with the rule and reason behind it.

The wire shapes crm-sync makes up itself live here: a routed account's new Salesforce lead and an
onboarding specialist's Vitally task. The shapes the rules ask for (a lead's fields, a task) are
read in `sync.plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.model import Account
from rules import Decision
from rules.routing import lead_source_for
from state import Owner, OwnerChoice, PlannedWrite
from sync.wire import Truncation, fit_lead_fields, lead_fields

__all__ = [
    "OnboardingAccount",
    "RoutedAccount",
    "create_task",
    "lead_update",
    "new_lead",
    "segment_change",
    "set_traits",
    "specialist",
    "specialist_task",
    "specialist_task_key",
]


@dataclass(frozen=True)
class RoutedAccount:
    """What a routed account's new lead is made of, kept from the account's one parse until owners
    are drawn (after every account was judged, in account-id order)."""

    account_id: str
    name: str
    team: str
    region: str
    rule: str
    reason: str
    employees: int | None
    revenue: float | None
    country: str | None
    industry: str | None
    # The winner's lead intent in Salesforce names (LeadSource, Routing_Rule__c, Qualification__c, ...).
    lead: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, account: Account, winner: Decision, region: str) -> RoutedAccount:
        return cls(
            account_id=account.id,
            name=account.name,
            team=winner.team or "TAE",
            region=region,
            rule=winner.rule,
            reason=winner.reason,
            employees=account.employee_count,
            revenue=account.estimated_revenue,
            country=account.country,
            industry=account.industry,
            lead=lead_fields(winner.lead),
        )


@dataclass(frozen=True)
class OnboardingAccount:
    """An account whose onboarding lead needs a specialist, kept from its one parse until owners
    are drawn."""

    account_id: str
    name: str
    region: str
    rule: str
    reason: str

    @classmethod
    def of(cls, account: Account, decision: Decision, region: str) -> OnboardingAccount:
        return cls(account.id, account.name, region, decision.rule, decision.reason)


def set_traits(
    account_id: str,
    fields: Mapping[str, Any],
    previous: Mapping[str, Any],
    rule: str,
    reason: str,
    *,
    owner: Owner | None = None,
) -> PlannedWrite:
    """Vitally traits to set on an account (one PUT carries all of an account's changes), replacing
    the `previous` values this cycle read."""
    return PlannedWrite(
        system="vitally",
        op="set_traits",
        record=account_id,
        account=account_id,
        fields=fields,
        previous=previous,
        rule=rule,
        reason=reason,
        payload=fields,
        owner=owner,
        expects=previous,
    )


def segment_change(
    account_id: str, segment: str, trait: str, *, join: bool, was_in: bool, held: object, decision: Decision
) -> PlannedWrite:
    """Put an account in a managed segment or take it out: Vitally's API has no segment writes, so
    its boolean `trait` is set (true) or cleared (null) and a Playbook follows it. `held` is the
    trait's value this cycle read."""
    return PlannedWrite(
        system="vitally",
        op="add_segment" if join else "remove_segment",
        record=account_id,
        account=account_id,
        fields={"segment": segment},
        previous={"segment": segment if was_in else None},
        rule=decision.rule,
        reason=decision.reason if join else f"no longer holds: {decision.reason}",
        payload={trait: True if join else None},
        expects={trait: held},
    )


def create_task(account_id: str, task: Mapping[str, Any], rule: str, reason: str) -> PlannedWrite:
    """A Vitally task, upserted on its `externalId` (the write's record), so it is created once."""
    return PlannedWrite(
        system="vitally",
        op="create_task",
        record=str(task.get("externalId") or ""),
        account=account_id,
        fields=dict(task),
        rule=rule,
        reason=reason,
        payload=dict(task),
    )


def new_lead(
    routed: RoutedAccount, key: str, score: object, owner: OwnerChoice | None, *, country_field: str = "CountryCode"
) -> tuple[PlannedWrite, list[Truncation]]:
    """A routed account's Salesforce lead, upserted on `Sync_Key__c` = `key` (a retry can never
    create a second one), with the company facts its score rests on (so Salesforce scores it the
    same) and the round robin's owner (a member, else the pool's fallback owner); without a pool,
    the org's assignment rule or default lead owner (it is sent without `Sforce-Auto-Assign:
    FALSE`, `sync.apply`). The country is an ISO code, written to `country_field`: `CountryCode`
    in an org with State and Country/Territory picklists (its `Country` takes only the picklist's
    names), else `Country`. Text too long for its field is cut to fit; the cuts are returned to be
    reported."""
    fields: dict[str, Any] = {
        "LastName": routed.name,
        "Company": routed.name,
        "LeadSource": lead_source_for(routed.rule),
        "Routing_Rule__c": routed.rule,
        "Routing_Reason__c": f"{routed.rule}: {routed.reason}",
        **routed.lead,
        "Lead_Score__c": score,
        "Vitally_Account_Id__c": routed.account_id,
        "Sync_Key__c": key,
    }
    for name, value in (
        ("NumberOfEmployees", routed.employees),
        ("AnnualRevenue", routed.revenue),
        (country_field, routed.country),
        ("Industry", routed.industry),
    ):
        if value is not None:
            fields[name] = value
    if owner is None:
        reason = (
            f"{routed.reason}; no pool for {routed.team}/{routed.region}: "
            "the org's assignment rule or default lead owner applies"
        )
    else:
        if owner.user_id is not None:
            fields["OwnerId"] = owner.user_id
        reason = f"{routed.reason}; owner: {owner.reason}"
    fitted, cut = fit_lead_fields(key, fields)
    write = PlannedWrite(
        system="salesforce",
        op="upsert_lead",
        record=key,
        account=routed.account_id,
        fields=fitted,
        rule=routed.rule,
        reason=reason,
        payload=fitted,
        owner=None if owner is None else owner.owner,
    )
    return write, cut


def lead_update(
    lead_id: str,
    account_id: str | None,
    fields: Mapping[str, Any],
    previous: Mapping[str, Any],
    decision: Decision,
    owner: Owner | None,
) -> PlannedWrite:
    """Fields to update on an existing Salesforce lead (all of a lead's changes go in one record of
    a collection), replacing the `previous` values this cycle read; `owner` when the write sets
    `OwnerId`."""
    return PlannedWrite(
        system="salesforce",
        op="update_lead",
        record=lead_id,
        account=account_id,
        fields=fields,
        previous=previous,
        rule=decision.rule,
        reason=decision.reason,
        payload=fields,
        owner=owner,
        expects=previous,
    )


def specialist(onboarding: OnboardingAccount, trait: str, owner: OwnerChoice) -> PlannedWrite:
    """The onboarding specialist the round robin chose, named in the account's `trait`."""
    return set_traits(
        onboarding.account_id,
        {trait: owner.name},
        {trait: None},
        onboarding.rule,
        f"{onboarding.reason}; specialist: {owner.reason}",
        owner=owner.owner,
    )


def specialist_task_key(account_id: str) -> str:
    """The externalId of an account's specialist task: one per account, ever."""
    return f"crm-sync:onboarding.lead:{account_id}"


def specialist_task(onboarding: OnboardingAccount, owner: OwnerChoice, now: datetime) -> dict[str, Any]:
    """The specialist's Vitally task, due in a week; its externalId names the account, so it is
    created once."""
    return {
        "externalId": specialist_task_key(onboarding.account_id),
        "accountId": onboarding.account_id,
        "name": f"Onboard {onboarding.name} ({owner.name})",
        "description": onboarding.reason,
        "dueDate": (now + timedelta(days=7)).date().isoformat(),
        "tags": ["crm-sync", "onboarding"],
    }
