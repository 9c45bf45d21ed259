"""What a rule may read besides its record: for an account, what Salesforce knows about it; for a
lead, what Salesforce knows about its company. `sync.facts` gathers both from the mirror."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, TypeVar, overload

from core.model import Lead, Opportunity
from core.triage import Remembered

__all__ = ["CLOSED_LEAD_STATUSES", "EMPTY", "AccountContext", "LeadContext"]

T = TypeVar("T")

OPEN_OPPORTUNITY_EXCLUDED = ("Closed Won", "Closed Lost")
CLOSED_LEAD_STATUSES = (
    "Unqualified", "Disqualified", "Converted", "Closed - Converted", "Closed - Not Converted", "Closed - Support",
)  # fmt: skip


class _computed_once(Generic[T]):
    """`functools.cached_property` without its lock: Python 3.11's takes one on every first read
    (0.7 µs, twice per account with a Salesforce record in a cycle; 3.12 dropped it). Computed on
    first read and kept in the instance's dictionary, which then answers every later read."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _computed_once[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | _computed_once[T]:
        if instance is None:
            return self
        value = self.compute(instance)
        instance.__dict__[self.name] = value
        return value


@dataclass(frozen=True)
class AccountContext:
    """Salesforce records linked to one Vitally account.

    `leads` are the Leads whose `Vitally_Account_Id__c` names the account; `opportunities` those
    of the Salesforce Account whose `Vitally_Account_Id__c` names it. Empty tuples mean "none
    known", which is what a cycle passes when Salesforce has nothing for the account.

    `otherwise_lead` is what `evaluate_account` tells the rules after routing and allocation: a
    routing trigger or the direct handover won, or allocation chose a New Owner, in this
    evaluation, so the account is already a lead for someone.

    `assigned_owners` maps the Id of a lead crm-sync created to the `OwnerId` crm-sync gave it: a
    different owner on the lead now means a person reassigned it (the lead is being worked).
    """

    leads: tuple[Lead, ...] = ()
    opportunities: tuple[Opportunity, ...] = ()
    otherwise_lead: bool = False
    assigned_owners: Mapping[str, str] = field(default_factory=dict)

    # Cached on the (frozen) context: the guards, the onboarding rules and the lifecycle stage all
    # ask for them while judging one account.
    @_computed_once
    def open_leads(self) -> tuple[Lead, ...]:
        """Leads not converted, not deleted and not in a closed status."""
        return tuple(
            lead
            for lead in self.leads
            if not lead.is_converted and not lead.is_deleted and (lead.status or "") not in CLOSED_LEAD_STATUSES
        )

    @_computed_once
    def open_opportunities(self) -> tuple[Opportunity, ...]:
        return tuple(o for o in self.opportunities if (o.stage_name or "") not in OPEN_OPPORTUNITY_EXCLUDED)


EMPTY = AccountContext()


@dataclass(frozen=True)
class LeadContext:
    """What the lead rules read besides the lead: the latest day a lead of the same company was
    disqualified (None when none was, or it is unknown), and the triage verdict the state
    remembers for the lead's submission (the LLM's, asked by `sync` before any rule reads it; with
    another classifier, that classifier's own verdict, kept by `sync` between cycles)."""

    company_disqualified_at: date | None = None
    triage: Remembered | None = None
