"""The generated book's cases for issue #15: the triggers added for it, a lead's life after it was
created (its episode), and signals that once reached the wrong team or came at the wrong moment.

Each case is an account built like the generator's other constructed accounts (a base spec and its
changes), plus the Salesforce leads linked to it (`LinkedLead`): a product-led lead a TAM owns, in
the state a person left it, converted with or without an opportunity. They carry no `Sync_Key__c`
(a generated book holds no lead crm-sync created, so a run's own leads are exactly those with one);
the episode of crm-sync's own lead is shown end to end in tests/test_e2e_episodes.py.
`sandbox.generator` places the cases in the book with the others and calls `attach` to create their
leads; case names follow the generator's convention (`near_miss.<rule>.<detail>` just across a
threshold, `boundary.<rule>.<detail>` exactly on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CASES", "LifecycleCase", "LinkedLead", "attach"]

_PA, _SR = "product_analytics", "session_replay"
# A company using PostHog without paying: no invoices, no paid product, a few users.
_FREE: Mapping[str, Any] = {"mrr": 0.0, "months": None, "products": (), "employees": 40, "users": 3}
_TAM = "Avery Collins"  # a TAM of the generator's team, qualifying a lead as its Account Executive


@dataclass(frozen=True)
class LinkedLead:
    """A Salesforce lead linked to the case's account (`Vitally_Account_Id__c`), owned by a TAM.

    `age_days` since it was created, `modified_days` since its last change (a disqualification is
    dated by it); `converted_days`: converted that many days ago; `opportunity`: converted into an
    opportunity (stage, closed days ago (negative: closes later), loss reason).
    """

    status: str
    age_days: int = 60
    modified_days: int = 10
    source: str = "Product-led"
    converted_days: int | None = None
    opportunity: tuple[str, int, str | None] | None = None


@dataclass(frozen=True)
class LifecycleCase:
    """An account case: its names, the generator's base spec (`quiet`, `band`: in the product-led MRR
    band, `big`: $20k+ ARR), the spec's changes, and its linked leads."""

    cases: tuple[str, ...]
    base: Literal["quiet", "band", "big"]
    changes: Mapping[str, Any] = field(default_factory=dict)
    leads: tuple[LinkedLead, ...] = ()


def _free(*cases: str, **changes: Any) -> LifecycleCase:
    return LifecycleCase(cases, "quiet", {**_FREE, **changes})


def _growth(head: int, before: int) -> dict[str, Any]:
    return {"employees": head, "traits": {"harmonic_headcount": head, "harmonic_headcount_180d": before}}


_LOW_USAGE: Mapping[str, Any] = {"employees": 120, "users": 1, "created_days": 200.0}

CASES: tuple[LifecycleCase, ...] = (
    # "Using PostHog, $0 spend, trigger for hiring increase, web/social increase, fundraise" (TAE).
    _free("new_business.hiring_increase", **_growth(60, 40)),
    _free("boundary.new_business.hiring_increase.growth_20pct", **_growth(120, 100)),
    _free("near_miss.new_business.hiring_increase.growth_19pct", **_growth(119, 100)),
    _free("near_miss.new_business.hiring_increase.paying", **{**_growth(60, 40), "mrr": 40.0, "months": 4,
                                                               "products": (_PA,)}),
    _free("new_business.web_social_increase", traits={"harmonic_web_traffic": 9000, "harmonic_web_traffic_180d": 5000}),
    _free("new_business.web_social_increase", "signal.social_followers",
          traits={"harmonic_social_followers": 1300, "harmonic_social_followers_180d": 1000}),
    _free("near_miss.new_business.web_social_increase.web_48pct",
          traits={"harmonic_web_traffic": 7400, "harmonic_web_traffic_180d": 5000}),
    _free("new_business.fundraise", funding_days=30),
    _free("boundary.new_business.fundraise.funded_90_days", funding_days=90),
    _free("near_miss.new_business.fundraise.funded_91_days", funding_days=91),
    # "'Cool company' in ocean.io" (TAE).
    LifecycleCase(("new_business.cool_company",), "quiet", {"traits": {"ocean_cool_company": True}}),
    LifecycleCase(("near_miss.new_business.cool_company.not_flagged",), "quiet",
                  {"traits": {"ocean_cool_company": False}}),
    # BDR "low usage orgs".
    _free("bdr.low_usage", **_LOW_USAGE),
    _free("near_miss.bdr.low_usage.users_3", **{**_LOW_USAGE, "users": 3}),
    _free("near_miss.bdr.low_usage.employees_50", **{**_LOW_USAGE, "employees": 50}),
    # Episodes: each account is in the product-led MRR band, so only its episode decides.
    LifecycleCase(("episode.disqualified_by_person", "guard.cool_off_salesforce"), "band", {},
                  (LinkedLead("Disqualified", age_days=60, modified_days=20),)),
    LifecycleCase(("near_miss.guard.cool_off_salesforce.91_days",), "band", {},
                  (LinkedLead("Disqualified", age_days=150, modified_days=91),)),
    LifecycleCase(("episode.converted_without_opportunity",), "band", {},
                  (LinkedLead("Qualified", age_days=90, modified_days=30, converted_days=30),)),
    LifecycleCase(("episode.converted_with_opportunity", "guard.open_opportunity"), "band", {},
                  (LinkedLead("Qualified", age_days=90, modified_days=30, converted_days=30,
                              opportunity=("Proposal/Price Quote", -25, None)),)),
    LifecycleCase(("episode.nurturing",), "band", {}, (LinkedLead("Nurturing", age_days=40, modified_days=5),)),
    LifecycleCase(("episode.qualified",), "band", {}, (LinkedLead("In progress", age_days=40, modified_days=3),)),
    # Qualified four months ago: the three months to decide are over, the task is due now.
    LifecycleCase(("episode.qualified_window_over",), "band", {},
                  (LinkedLead("In progress", age_days=120, modified_days=100),)),  # qualified 100 days ago: over
    LifecycleCase(("episode.working",), "band", {}, (LinkedLead("Working", age_days=12, modified_days=2),)),
    # A TAM qualified it: themselves as Account Executive, the account in `Leads`; $20k+ ARR, so
    # allocation would take it for unowned if it did not read the episode.
    LifecycleCase(("episode.qualified_by_tam", "allocation.being_qualified"), "big",
                  {"roles": ("Account Executive",), "owner": _TAM, "segments": ("Leads",)},
                  (LinkedLead("Working", age_days=70, modified_days=20),)),
    # "TAE -> TAM/CSM after the initial contract is signed", and "close then nurture for 12 months".
    LifecycleCase(("allocation.tae_opportunity_open",), "big",
                  {"mrr": 2500.0, "roles": ("Account Executive",), "opp": ("Negotiation/Review", -20, None)}),
    LifecycleCase(("allocation.tae_nurture_12_months",), "big",
                  {"mrr": 2500.0, "roles": ("Account Executive",), "opp": ("Closed Won", 180, None)}),
    LifecycleCase(("allocation.tae_after_12_months",), "big",
                  {"mrr": 2500.0, "roles": ("Account Executive",), "opp": ("Closed Won", 400, None)}),
    # A growing account with a specialist that a routing trigger sends to Sales in the same cycle:
    # no circle-back task.
    LifecycleCase(("onboarding.circle_back_routed",), "band",
                  {"mrr": 700.0, "invoices": (400.0, 480.0, 560.0, 640.0, 700.0),
                   "roles": ("Onboarding Specialist",)}),
)  # fmt: skip


def _lead_fields(account: Mapping[str, Any], lead: LinkedLead, builder: Any, i: int) -> dict[str, Any]:
    clock = builder.clock
    fields: dict[str, Any] = {
        "LeadSource": lead.source,
        "Status": lead.status,
        "_owner": "TAM",
        "_age": lead.age_days,
        "_modified": lead.modified_days,
        "IsConverted": lead.converted_days is not None,
    }
    if lead.converted_days is not None:
        fields["ConvertedDate"] = clock.date(lead.converted_days)
    if lead.opportunity is not None:
        stage, closed_ago, reason = lead.opportunity
        builder._opportunity(i, account, stage, closed_ago, reason, builder._member("TAE", "US"))
        fields["ConvertedOpportunityId"] = builder.opps[-1]["Id"]
    return fields


def attach(builder: Any, i: int, account: Mapping[str, Any], case: LifecycleCase) -> None:
    """Create the case's linked leads (and the opportunities they were converted into) with the
    generator's builder, for the account it just built at index `i`."""
    for lead in case.leads:
        builder._lead(_lead_fields(account, lead, builder, i), account=account)
