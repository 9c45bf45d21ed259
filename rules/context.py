"""What Salesforce knows about one account, gathered by the engine for the rules that need it."""

from __future__ import annotations

from dataclasses import dataclass

from core.model import Lead, Opportunity

__all__ = ["CLOSED_LEAD_STATUSES", "EMPTY", "AccountContext"]

OPEN_OPPORTUNITY_EXCLUDED = ("Closed Won", "Closed Lost")
CLOSED_LEAD_STATUSES = ("Unqualified", "Disqualified", "Converted", "Closed - Converted", "Closed - Not Converted")


@dataclass(frozen=True)
class AccountContext:
    """Salesforce records linked to one Vitally account.

    `leads` are the Leads whose `Vitally_Account_Id__c` names the account; `opportunities` those
    of the Salesforce Account whose `Vitally_Account_Id__c` names it. Empty tuples mean "none
    known", which is what the engine passes when Salesforce has nothing for the account.
    """

    leads: tuple[Lead, ...] = ()
    opportunities: tuple[Opportunity, ...] = ()

    @property
    def open_leads(self) -> tuple[Lead, ...]:
        """Leads not converted and not in a closed status."""
        return tuple(
            lead for lead in self.leads if not lead.is_converted and (lead.status or "") not in CLOSED_LEAD_STATUSES
        )

    @property
    def open_opportunities(self) -> tuple[Opportunity, ...]:
        return tuple(o for o in self.opportunities if (o.stage_name or "") not in OPEN_OPPORTUNITY_EXCLUDED)


EMPTY = AccountContext()
