"""A deterministic generator of a realistic book: Vitally accounts and users, Salesforce leads,
users, opportunities and accounts, in the services' own wire shapes (apis.md).

`generate_book(n, seed=..., now=...)` returns the sandbox seed format plus `_cases`, an index of
which record exercises which situation of the handbook:

- `_cases["accounts"]`: Vitally account id → case names; `_cases["leads"]`: Lead Id → case names.
- A case named after a rule or guard id (`product_led.mrr_band`, `guard.open_lead`,
  `allocation.unowned_tam`, `signal.ai_no_llm`, ...) is a record built so that the situation holds,
  with the rule's other inputs comfortably inside their thresholds. The handbook's triggers
  overlap, so such a record may match other rules as well.
- `near_miss.<rule id>.<detail>` is the positive case of that rule with one input just across its
  threshold, so that rule must not fire (for that reason); `boundary.<rule id>.<detail>` sits
  exactly on an inclusive threshold, so the rule fires.
- `_cases["malformed"]`: record id → the field at fault (`mrr`, `traits.employee_count`,
  `createdAt`, `NumberOfEmployees`, ...). Malformed records keep a valid id and `updatedAt` /
  `SystemModstamp`, and the whole book is plain JSON (no NaN).

With `n >= MIN_FULL_COVERAGE` every case in `CASE_NAMES` is present, deliberately
constructed, at random positions in the book; smaller books (such as the few accounts a running
sandbox adds) are all random filler. Random filler is mostly small self-serve accounts that
trigger nothing; it is realistic, not neutral, so it may match any rule by chance.

`real_org=True` builds the book a real org and workspace hold (issue 14): owners in Vitally's own
fields (`accountOwnerId`, `csmId`, `accountExecutiveId`) beside key roles in their full shape, a
share of churned accounts, inbound leads owned by the inbound queue or the default lead owner (never
by nobody), leads' `Country` as integration values with their `CountryCode`, the org's API user,
default owner and queue as records, and the cases of `REAL_ORG_CASE_NAMES` (accounts owned only
through the owner fields, company names over 80 and 255 characters, a churned account that would
otherwise be routed, demo requests waiting in the queue or on the default owner). A book of at
least `MIN_FULL_COVERAGE_REAL_ORG` accounts holds every one of them. The default book is unchanged.

Determinism: everything comes from `random.Random(seed)` and `now`; the same arguments give the
same book. Ids derive from the record's index (per object, and no object has more than `n`
records) plus `id_offset`, so books generated with offsets at least `n` apart have disjoint ids.
The sales team (Salesforce `User`s and the Vitally admins in key roles) is the same in every book,
so such books can be merged.
"""

from __future__ import annotations

import copy
import gc
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar

from sandbox import cases_followups, cases_lifecycle
from sandbox.schema import country_by_code
from sandbox.store import API_USER_ID, DEFAULT_OWNER_USER_ID, INBOUND_QUEUE_ID

__all__ = ["CASE_NAMES", "MIN_FULL_COVERAGE", "MIN_FULL_COVERAGE_REAL_ORG", "REAL_ORG_CASE_NAMES", "generate_book"]

_T = TypeVar("_T")
_ABSENT: Final[Any] = object()  # a trait or field to leave out of the record altogether

_PRIMARY = (
    "product_analytics",
    "session_replay",
    "feature_flags",
    "surveys",
    "data_warehouse",
    "error_tracking",
)
_PA, _SR, _FF, _SV, _DW, _ET = _PRIMARY
_NON_PRIMARY = ("llm_analytics", "mobile_replay", "group_analytics", "experiments", "cdp")
_TWO = (_PA, _SR)
_FOUR = (_PA, _SR, _FF, _ET)
# Plausible adoption orders; a random account pays for a prefix of one of them.
_ADOPTION = (
    (_PA, _SR, _FF, _ET, _SV, _DW),
    (_PA, _FF, _SR, _SV, _ET, _DW),
    (_SR, _PA, _ET, _FF, _SV, _DW),
    (_PA, _SR, _DW, _FF, _SV, _ET),
    (_FF, _PA, _SR, _ET, _DW, _SV),
    (_ET, _SR, _PA, _FF, _SV, _DW),
)
_SPLITS = ((1.0,), (0.7, 0.3), (0.55, 0.3, 0.15), (0.45, 0.25, 0.18, 0.12), (0.4, 0.22, 0.16, 0.12, 0.1))

# (role, region, first name, last name, active). No Singapore CSM: allocation falls back (rules.md §4).
_TEAM = (
    ("TAM", "US", "Avery", "Collins", True),
    ("TAM", "US", "Jordan", "Reyes", True),
    ("TAM", "US", "Morgan", "Patel", False),
    ("TAM", "EU", "Lena", "Schmidt", True),
    ("TAM", "EU", "Tomas", "Garcia", True),
    ("TAM", "Singapore", "Wei", "Lim", True),
    ("CSM", "US", "Riley", "Nguyen", True),
    ("CSM", "US", "Casey", "Brooks", True),
    ("CSM", "EU", "Sofia", "Rossi", True),
    ("CSM", "EU", "Pieter", "de Vries", True),
    ("TAE", "US", "Sam", "Turner", True),
    ("TAE", "US", "Dana", "Whitfield", True),
    ("TAE", "EU", "Mina", "Okafor", True),
    ("TAE", "EU", "Lukas", "Berg", False),
    ("BDR", "US", "Chris", "Hale", True),
    ("BDR", "EU", "Ines", "Duarte", True),
    ("Onboarding", "US", "Kim", "Park", True),
    ("Onboarding", "EU", "Ola", "Nilsen", True),
    ("Onboarding", "Singapore", "Arjun", "Mehta", True),
)
_TITLES = {
    "TAM": "Technical Account Manager",
    "CSM": "Customer Success Manager",
    "TAE": "Technical Account Executive",
    "BDR": "Business Development Representative",
    "Onboarding": "Onboarding Specialist",
}
_KEY_ROLE_TEAM = {
    "TAM": "TAM",
    "CSM": "CSM",
    "Account Executive": "TAE",
    "Onboarding Specialist": "Onboarding",
}
_CAPPED_TAM = "Jordan Reyes"  # carries exactly 15 AM Managed accounts (round_robin.tam_at_cap)
_TAM_SOFT_CAP = 15

_NAME_A = (
    "Acme", "Blue", "Bright", "Cedar", "Cloud", "Copper", "Delta", "Ember", "Falcon", "Granite",
    "Harbor", "Helio", "Iron", "Juniper", "Kite", "Lumen", "Maple", "Nimbus", "Nova", "Oak", "Orbit",
    "Pine", "Pixel", "Quartz", "Rapid", "River", "Sage", "Signal", "Sol", "Summit", "Tidal", "Vector",
    "Willow", "Zephyr",
)  # fmt: skip
_NAME_B = (
    "Analytics", "Apps", "Bank", "Bio", "Cloud", "Commerce", "Data", "Dynamics", "Energy", "Foods",
    "Games", "Health", "Labs", "Learning", "Logistics", "Media", "Mobility", "Networks", "Pay",
    "Robotics", "Security", "Software", "Studio", "Systems", "Travel",
)  # fmt: skip
_TLDS = ("com", "com", "com", "io", "io", "co", "ai", "de", "co.uk", "dev")
_FIRST = (
    "Alex", "Ana", "Ben", "Chloe", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Isla", "Jack",
    "Julia", "Kai", "Laura", "Leo", "Maya", "Nina", "Omar", "Paula", "Rafael", "Sara", "Theo", "Uma",
    "Victor", "Yara", "Zoe",
)  # fmt: skip
_LAST = (
    "Adams", "Baker", "Costa", "Dubois", "Evans", "Fischer", "Gomez", "Hansen", "Ito", "Jensen",
    "Kowalski", "Lopez", "Martin", "Novak", "Olsen", "Perez", "Quinn", "Rossi", "Silva", "Tanaka",
    "Uddin", "Varga", "Weber", "Young", "Zhang",
)  # fmt: skip
_INDUSTRIES = (
    "Software", "Software", "Fintech", "E-commerce", "Healthcare", "Education", "Media", "Gaming",
    "Travel", "Logistics", "Marketing", "Other",
)  # fmt: skip
_PERSONAL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me")
# HQ countries, weighted by repetition; a share is written as a name, as people type them.
_HQ: tuple[str, ...] = ("US",) * 14 + ("GB",) * 4 + ("DE",) * 4 + ("FR", "FR", "CA", "CA", "NL", "IN", "IN", "BR", "BR")
_HQ += ("SG", "AU", "ES", "SE", "PL", "JP", "IT", "MX", "NG", "IL")
_COUNTRY_NAMES = {
    "US": ("United States", "USA"),
    "GB": ("UK", "United Kingdom"),
    "DE": ("Deutschland", "Germany"),
    "FR": ("France",),
    "NL": ("Netherlands",),
    "SG": ("Singapore",),
    "IN": ("India",),
    "BR": ("Brazil",),
}
_SECOND_COUNTRY = ("US", "GB", "DE", "IN", "FR", "CA", "SG", "BR", "ES", "NL")
_DESTINATIONS = ("Snowflake", "BigQuery", "Redshift", "Amplitude", "Mixpanel", "Google Ads", "Meta Ads", "S3")
# Lead titles with the Role__c and Sub_Role__c Clearbit would give them.
_LEAD_TITLES = (
    ("Software Engineer", "engineering", "software_engineer"),
    ("Staff Engineer", "engineering", "software_engineer"),
    ("Data Scientist", "engineering", "data_science_engineer"),
    ("Web Developer", "engineering", "web_engineer"),
    ("Project Engineer", "engineering", "project_engineer"),
    ("Product Manager", "product", "other"),
    ("Head of Product", "product", "other"),
    ("CTO", "leadership", "other"),
    ("VP of Engineering", "leadership", "other"),
    ("Co-founder", "founder", "founder"),
    ("Founder & CEO", "founder", "ceo"),
    ("Growth Marketer", "marketing", "other"),
    ("Operations Analyst", "other", "other"),
    ("Student", "other", "other"),
)
_LEAD_COUNTRIES = (
    "United States", "US", "USA", "Germany", "DE", "United Kingdom", "UK", "France", "Canada",
    "Netherlands", "Singapore", "India", "Brazil", "Australia", "Spain", "Japan", "Poland",
)  # fmt: skip
_LEAD_SOURCES = (
    ("Demo request",) * 6 + ("Campaign",) * 4 + ("Product-led",) * 3 + ("BDR",) * 2 + ("Sales email",) * 2
    + ("Onboarding referral", "AE referral", "AM referral", "Trust center")
)  # fmt: skip
_LEAD_STATUSES = ("Working",) * 3 + ("Open - Not Contacted",) * 2 + ("Qualified",) * 2 + ("Unqualified", "Disqualified")
_FORM_TEXTS = {
    "sales": (
        "We're evaluating product analytics for our 40-person engineering team and would like to "
        "discuss an annual contract.",
        "Looking for pricing on session replay and feature flags for about 2M MAU; we need SSO and a DPA.",
        "We are moving off Amplitude and want a demo for our product and data teams this month.",
    ),
    "support": (
        "My dashboard is broken, how do I get the insights that stopped loading back?",
        "How do I reset my password? I can't log in to my project anymore.",
        "Events are not showing up after we installed posthog-js, please help.",
    ),
    "spam": (
        "SEO services cheap backlinks!!! Rank #1 on Google in 7 days, reply for prices.",
        "We offer offshore developers at $15/hour, can I send you our catalogue?",
        "Buy Instagram followers and crypto signals, limited offer today only.",
    ),
}
_OPEN_STAGES = ("Qualification", "Discovery", "Proposal/Price Quote", "Negotiation/Review")
_LOSS_REASONS = ("Unresponsive", "Price", "Chose competitor", "No budget", "Timing", "Not a fit")

# Malformed values and the field they break. Each keeps the record valid JSON with its id and
# updatedAt / SystemModstamp intact, so the sandbox can store and page it.
_BAD_ACCOUNT: tuple[tuple[str, Any], ...] = (
    ("mrr", "lots"),
    ("traits.employee_count", "many"),
    ("traits.invoices", "3 invoices, see Stripe"),
    ("traits.users_by_country", {"US": "twelve"}),
    ("createdAt", "yesterday"),
    ("name", _ABSENT),
    ("mrr", "NaN"),
    ("traits.country", 49),  # not text (text that names no country is read as unknown)
    ("traits.first_paid_at", "31/02/2026"),
    ("traits.paidProducts", "product_analytics, session_replay"),
    ("traits.forecasted_mrr", "Infinity"),
    ("traits.user_count", -3),
)
_BAD_LEAD: tuple[tuple[str, Any], ...] = (
    ("NumberOfEmployees", "many"),
    ("AnnualRevenue", "NaN"),
    ("CreatedDate", "last week"),
    ("Country", 49),
)

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SF_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


@dataclass(frozen=True)
class _Spec:
    """A deliberately constructed account: the quiet defaults, overridden per case."""

    cases: tuple[str, ...] = ()
    mrr: float | None = 80.0
    months: int | None = 14  # months since first payment; None = never paid
    invoices: tuple[float, ...] | None = None  # None = flat at MRR over the last min(months, 6)
    products: tuple[str, ...] = (_PA,)  # paid, MRR split across them unless `spend` is given
    spend: tuple[tuple[str, float], ...] | None = None
    activated: tuple[str, ...] = ()  # turned on without paying, on top of the paid ones
    forecast: float | None = None  # None = 1.03 × MRR
    employees: int | None = 18
    users: int = 3
    country: str | None = "US"  # the HQ trait as written; users_by_country keys are ISO2
    ubc: tuple[tuple[str, int], ...] | None = None  # None = every user in the HQ country
    plan: str | None = None  # None = by MRR
    startup: tuple[int, float, float] | None = None  # (ends in days, credits total, credits used)
    created_days: float = 420.0
    business_email: bool = True
    segments: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()  # key role labels, filled from the team by the HQ region
    owner: str | None = None  # the team member for `roles`, when it matters who
    funding_days: int | None = None
    disqualified_days: int | None = None  # trait lead_disqualified_at and a Disqualified Lead
    slack: bool = False
    lead: str | None = None  # a linked Salesforce Lead: "Working" or "Converted"
    opp: tuple[str, int, str | None] | None = None  # (stage, closed days ago (< 0: future), loss reason)
    traits: Mapping[str, Any] = field(default_factory=dict)
    owner_fields: tuple[str, ...] = ()  # Vitally owner attributes set (accountOwnerId, csmId, ...), no key role
    name: str | None = None  # the company name as written (None = a random one)
    churned_days: int | None = None  # churned this many days ago
    lifecycle: cases_lifecycle.LifecycleCase | None = None  # its linked leads (sandbox/cases_lifecycle.py)


_QUIET = _Spec()
_BAND = replace(_QUIET, mrr=812.0, months=5, products=_TWO, employees=64, users=9, country="DE")
_GUARDED = replace(_BAND, mrr=900.0)  # would be a product_led.mrr_band lead but for the guard
_BIG = replace(_QUIET, mrr=1800.0, products=_TWO, employees=40, users=12)  # ARR 21,600, below review
_REF = replace(_QUIET, mrr=900.0, products=_TWO, employees=35, users=6, segments=("AM referral",))
_STARTUP = replace(_QUIET, plan="startup", employees=35, users=6, months=10)


def _s(base: _Spec, *cases: str, **changes: Any) -> _Spec:
    return replace(base, cases=cases, **changes)


_ACCOUNT_SPECS: tuple[_Spec, ...] = (
    # Lead routing, product-led team (rules.md §1) with a near miss per threshold.
    _s(_BAND, "product_led.mrr_band"),
    _s(_BAND, "product_led.mrr_band", "input.country_name", country="Deutschland"),
    _s(_BAND, "boundary.product_led.mrr_band.mrr_500", mrr=500.0),
    _s(_BAND, "boundary.product_led.mrr_band.mrr_1667", mrr=1667.0),
    _s(_BAND, "near_miss.product_led.mrr_band.mrr_499", mrr=499.0),
    _s(_BAND, "near_miss.product_led.mrr_band.mrr_1668", mrr=1668.0),
    _s(_BAND, "near_miss.product_led.mrr_band.employees_50", employees=50),
    _s(_BAND, "near_miss.product_led.mrr_band.users_7", users=7),
    _s(_BAND, "near_miss.product_led.mrr_band.paying_2_months", months=2),
    _s(_BAND, "near_miss.product_led.mrr_band.non_icp_country", country="BR"),
    _s(_QUIET, "product_led.scale_high_icp", mrr=350.0, plan="scale", traits={"icp_score": 14}),
    _s(_QUIET, "boundary.product_led.scale_high_icp.icp_10", mrr=350.0, plan="scale",
       traits={"icp_score": 10}),
    _s(_QUIET, "near_miss.product_led.scale_high_icp.icp_9", mrr=350.0, plan="scale",
       traits={"icp_score": 9}),
    _s(_QUIET, "near_miss.product_led.scale_high_icp.not_scale", mrr=350.0, traits={"icp_score": 14}),
    _s(_STARTUP, "product_led.startup_rolloff", mrr=1600.0, invoices=(1200.0, 1350.0, 1600.0),
       startup=(40, 60_000.0, 21_000.0)),
    # Two calendar months are 59 to 62 days: 63 is past them whatever the book's today.
    _s(_STARTUP, "near_miss.product_led.startup_rolloff.ends_in_63_days", mrr=1600.0,
       invoices=(1200.0, 1350.0, 1600.0), startup=(63, 60_000.0, 21_000.0)),
    _s(_STARTUP, "near_miss.product_led.startup_rolloff.last_invoice_1500", mrr=1500.0,
       invoices=(1200.0, 1350.0, 1500.0), startup=(40, 60_000.0, 21_000.0)),
    _s(_QUIET, "product_led.forecast_spike", mrr=1200.0, forecast=2100.0, products=_TWO, employees=30),
    _s(_QUIET, "near_miss.product_led.forecast_spike.mrr_1000", mrr=1000.0, forecast=2000.0, products=_TWO),
    _s(_QUIET, "near_miss.product_led.forecast_spike.forecast_1_5x", mrr=1200.0, forecast=1800.0,
       products=_TWO),
    _s(_QUIET, "product_led.am_referral", mrr=420.0, segments=("AM referral",)),
    # Lead routing, new-business and BDR teams.
    _s(_QUIET, "new_business.onboarding_referral", mrr=950.0, products=_TWO,
       segments=("Onboarding referral",), roles=("Onboarding Specialist",)),
    _s(_QUIET, "new_business.big_fish", mrr=0.0, months=None, products=(), employees=2500, users=2,
       created_days=5.0),
    _s(_QUIET, "near_miss.new_business.big_fish.employees_999", mrr=0.0, months=None, products=(),
       employees=999, users=2, created_days=5.0),
    _s(_QUIET, "near_miss.new_business.big_fish.created_15_days_ago", mrr=0.0, months=None, products=(),
       employees=2500, users=2, created_days=15.0),
    _s(_STARTUP, "new_business.startup_credits", mrr=6200.0, invoices=(4800.0, 5600.0, 6200.0),
       startup=(200, 100_000.0, 62_000.0)),
    _s(_STARTUP, "boundary.new_business.startup_credits.used_50pct", mrr=6200.0,
       invoices=(4800.0, 5600.0, 6200.0), startup=(200, 100_000.0, 50_000.0)),
    _s(_STARTUP, "near_miss.new_business.startup_credits.used_49pct", mrr=6200.0,
       invoices=(4800.0, 5600.0, 6200.0), startup=(200, 100_000.0, 49_000.0)),
    _s(_STARTUP, "near_miss.new_business.startup_credits.last_invoice_5000", mrr=5000.0,
       invoices=(4200.0, 4700.0, 5000.0), startup=(200, 100_000.0, 62_000.0)),
    _s(_QUIET, "new_business.ae_referral", mrr=0.0, months=None, products=(), employees=300,
       segments=("AE referral",)),
    _s(_QUIET, "bdr.closed_lost_unresponsive", mrr=200.0, opp=("Closed Lost", 150, "Unresponsive")),
    _s(_QUIET, "near_miss.bdr.closed_lost_unresponsive.closed_100_days", mrr=200.0,
       opp=("Closed Lost", 100, "Unresponsive")),
    _s(_QUIET, "near_miss.bdr.closed_lost_unresponsive.closed_200_days", mrr=200.0,
       opp=("Closed Lost", 200, "Unresponsive")),
    _s(_QUIET, "near_miss.bdr.closed_lost_unresponsive.other_loss_reason", mrr=200.0,
       opp=("Closed Lost", 150, "Price")),
    # Guards: each account would otherwise be a product_led.mrr_band lead.
    _s(_GUARDED, "guard.owned_key_role", roles=("TAM",)),
    _s(_GUARDED, "guard.owned_key_role", roles=("Account Executive",)),
    _s(_GUARDED, "near_miss.guard.owned_key_role.onboarding_specialist", roles=("Onboarding Specialist",)),
    _s(_GUARDED, "guard.am_managed", segments=("AM Managed",)),
    _s(_GUARDED, "guard.open_lead", lead="Working"),
    _s(_GUARDED, "near_miss.guard.open_lead.converted", lead="Converted"),
    _s(_GUARDED, "guard.open_opportunity", opp=("Negotiation/Review", -20, None)),
    _s(_GUARDED, "near_miss.guard.open_opportunity.closed_won", opp=("Closed Won", 300, None)),
    _s(_GUARDED, "guard.active_sales_segment", segments=("Active Trial",)),
    _s(_GUARDED, "guard.active_sales_segment", segments=("Annual Plan",), traits={"annual_plan": True}),
    _s(_GUARDED, "guard.active_sales_segment", segments=("Leads",)),
    _s(_GUARDED, "guard.cool_off", disqualified_days=30),
    _s(_GUARDED, "near_miss.guard.cool_off.91_days", disqualified_days=91),
    _s(_GUARDED, "guard.slack_channel", slack=True),
    # Allocation (rules.md §4).
    _s(_BIG, "allocation.unowned_tam", "allocation.region_us", ubc=(("US", 14), ("CA", 3), ("GB", 1))),
    _s(_BIG, "allocation.unowned_csm", "allocation.region_eu", mrr=1900.0, products=_FOUR, country="DE",
       ubc=(("DE", 9), ("FR", 4), ("US", 2))),
    _s(_BIG, "allocation.tae_handover", mrr=2500.0, roles=("Account Executive",),
       traits={"annual_plan": True}),
    _s(_BIG, "allocation.tae_handover", mrr=3000.0, products=_FOUR, country="GB",
       roles=("Account Executive",)),
    _s(_BIG, "allocation.tam_to_csm", mrr=4000.0, products=_FOUR, roles=("TAM",), segments=("AM Managed",)),
    _s(_BIG, "near_miss.allocation.tam_to_csm.two_products", mrr=4000.0, roles=("TAM",),
       segments=("AM Managed",)),
    _s(_BIG, "allocation.region_singapore", country="SG", ubc=(("SG", 8), ("IN", 3), ("US", 2))),
    _s(_BIG, "allocation.singapore_csm_fallback", products=_FOUR, country="SG", ubc=(("SG", 9), ("AU", 2))),
    _s(_BIG, "allocation.region_tie_hq", country="DE", ubc=(("US", 5), ("DE", 5))),
    _s(_BIG, "allocation.no_users_hq", country="GB", ubc=()),
    _s(_BIG, "allocation.non_primary_ignored",
       products=(_PA, _SR, "group_analytics", "llm_analytics", "cdp")),
    _s(_BIG, "near_miss.allocation.new_owner.arr_19999", mrr=19_999 / 12),
    _s(_BIG, "boundary.allocation.new_owner.arr_20000", mrr=20_000 / 12),
    # Onboarding and lifecycle (rules.md §5).
    _s(_QUIET, "onboarding.lead", mrr=150.0, months=1, invoices=(150.0,), created_days=40.0, employees=15),
    _s(_QUIET, "onboarding.not_business_email", mrr=150.0, months=1, invoices=(150.0,), created_days=40.0,
       employees=15, business_email=False),
    _s(_QUIET, "near_miss.onboarding.lead.first_invoice_99", mrr=99.0, months=1, invoices=(99.0,),
       created_days=40.0, employees=15),
    # The direct handover is the onboarding team's (sales-handover.md): an onboarding specialist's account.
    _s(_QUIET, "onboarding.direct_handover", mrr=1300.0, invoices=(1270.0, 1310.0, 1290.0, 1300.0),
       spend=((_PA, 600.0), (_SR, 450.0), (_FF, 250.0)), employees=30, users=5, roles=("Onboarding Specialist",)),
    _s(_QUIET, "near_miss.onboarding.direct_handover.self_serve", mrr=1300.0,
       invoices=(1270.0, 1310.0, 1290.0, 1300.0), spend=((_PA, 600.0), (_SR, 450.0), (_FF, 250.0)), employees=30,
       users=5),
    _s(_QUIET, "onboarding.spike", mrr=1400.0, invoices=(390.0, 410.0, 400.0, 1400.0), products=_TWO,
       employees=30, users=5, roles=("Onboarding Specialist",)),
    _s(_QUIET, "onboarding.misconfigured", mrr=1200.0, invoices=(1180.0, 1210.0, 1195.0, 1200.0),
       spend=((_FF, 1140.0), (_PA, 60.0)), employees=30, users=5, roles=("Onboarding Specialist",)),
    _s(_QUIET, "onboarding.circle_back", mrr=600.0, months=5, invoices=(250.0, 330.0, 420.0, 520.0, 600.0),
       products=_TWO, employees=20, roles=("Onboarding Specialist",)),
    _s(_BIG, "lifecycle.account_review", mrr=2400.0),
    _s(_BIG, "near_miss.lifecycle.account_review.mrr_1999", mrr=1999.0),
    _s(_QUIET, "lifecycle.csm_downgrade", mrr=1200.0, products=(_PA, _SR, _FF), users=10, roles=("CSM",)),
    _s(_QUIET, "near_miss.lifecycle.csm_downgrade.arr_20000", mrr=20_000 / 12, products=(_PA, _SR, _FF),
       users=10, roles=("CSM",)),
    # PLG lead qualification (rules.md §6): product-led leads by referral or by the MRR band.
    _s(_REF, "qualification.disqualify_low_mrr", mrr=300.0, invoices=(300.0, 302.0, 298.0, 300.0),
       employees=12),
    _s(_REF, "qualification.disqualify_single_product", mrr=150.0, products=(_SR,),
       invoices=(148.0, 151.0, 149.0, 150.0)),
    _s(_REF, "qualification.disqualify_credits", mrr=700.0, plan="startup", invoices=(650.0, 690.0, 700.0),
       startup=(400, 100_000.0, 4_000.0)),
    _s(_BAND, "qualification.nurture_growing", mrr=700.0, invoices=(430.0, 520.0, 610.0, 700.0)),
    _s(_BAND, "qualification.nurture_early_implementation", mrr=1200.0,
       traits={"autocapture_pct": 85.0, "custom_event_pct": 5.0, "actions_count": 2}),
    _s(_BAND, "qualification.qualify", mrr=1500.0, invoices=(760.0, 950.0, 1200.0, 1500.0), employees=180,
       activated=(_FF, _SV, "experiments"), funding_days=120, traits={"harmonic_headcount_180d": 140}),
    # Opening-message signals, each alone on an otherwise plain referred account.
    _s(_REF, "signal.autocapture_no_actions",
       traits={"autocapture_pct": 88.0, "custom_event_pct": 4.0, "actions_count": 0}),
    _s(_REF, "signal.b2b_no_group_analytics", traits={"is_b2b": True}),
    _s(_REF, "signal.mobile_no_replay", traits={"has_mobile_app": True}),
    _s(_REF, "signal.ai_no_llm", traits={"is_ai_product": True}),
    _s(_REF, "signal.flags_no_experiments", products=(_PA, _FF)),
    _s(_REF, "signal.billing_page_views", traits={"billing_page_views_30d": 7}),
    _s(_REF, "signal.billing_limits_close", spend=((_PA, 630.0), (_SR, 270.0)),
       traits={"billing_limits": {_PA: 660.0, _SR: 285.0}}),
    _s(_REF, "signal.competitor_destination", traits={"data_destinations": ["Amplitude"]}),
    _s(_REF, "signal.warehouse_destination", traits={"data_destinations": ["Snowflake", "BigQuery"]}),
    _s(_REF, "signal.multi_project", traits={"project_count": 5}),
    # Unknown inputs: the rule must not fire and must name what is missing.
    _s(_BAND, "unknown.missing_employee_count", employees=None),
    _s(_BAND, "unknown.null_mrr", mrr=None, invoices=(800.0, 805.0, 812.0),
       spend=((_PA, 560.0), (_SR, 252.0))),
    _s(_BAND, "unknown.missing_country", country=None),
    # The round robin skips a TAM at the soft cap of 15 AM Managed accounts (round-robin.md).
    *(
        _s(_BIG, "round_robin.tam_at_cap", mrr=2600.0, roles=("TAM",), segments=("AM Managed",),
           owner=_CAPPED_TAM)
        for _ in range(_TAM_SOFT_CAP)
    ),
)  # fmt: skip

# A company name real CRMs hold: legal suffixes, divisions, a translation in brackets.
_LONG_NAME = "Example Holdings International Analytics and Data Platform Services Group GmbH & Co. KG (EMEA Division)"
_VERY_LONG_NAME = (
    "Example Worldwide Consolidated Technology, Research, Analytics, Cloud Infrastructure, Security and "
    "Professional Services Holdings Corporation Limited, acting for and on behalf of its subsidiaries in "
    "Europe, the Middle East, Africa and Asia-Pacific (formerly Example Analytics Incorporated)"
)
# Cases only a real org and workspace hold (real_org=True); each would be a product_led.mrr_band lead.
_REAL_ORG_ACCOUNT_SPECS: tuple[_Spec, ...] = (
    _s(_GUARDED, "guard.owned_account_owner_id", owner_fields=("accountOwnerId",)),
    _s(_GUARDED, "guard.owned_csm_id", owner_fields=("csmId",)),
    _s(_GUARDED, "guard.owned_account_executive_id", owner_fields=("accountExecutiveId",)),
    _s(_BAND, "product_led.mrr_band", "input.company_name_over_80", name=_LONG_NAME),
    _s(_BAND, "product_led.mrr_band", "input.company_name_over_255", name=_VERY_LONG_NAME),
    _s(_BAND, "lifecycle.churned", churned_days=20),
)
assert 80 < len(_LONG_NAME) <= 255 < len(_VERY_LONG_NAME)
# Issue #15's cases: new triggers, lead episodes, wrong team or moment (sandbox/cases_lifecycle.py).
_BASES = {"quiet": _QUIET, "band": _BAND, "big": _BIG}
_ACCOUNT_SPECS += tuple(_s(_BASES[c.base], *c.cases, lifecycle=c, **c.changes) for c in cases_lifecycle.CASES)

_STRONG_FIT: dict[str, Any] = {
    "AnnualRevenue": 40_000_000,
    "Title": "VP of Engineering",
    "Industry": "Software",
}
_OPEN: dict[str, Any] = {"Status": "Open - Not Contacted", "OwnerId": None, "IsConverted": False}
_WORKED: dict[str, Any] = {"Status": "Working", "_owner": "TAE", "LeadSource": "Campaign"}

# Standalone leads: (cases, fields). `_form` picks a form text, `_owner` a team role, `_age` days.
_LEAD_SPECS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("new_business.demo_request", "demo.classify_sales", "demo.scheduler_eligible"),
     {**_OPEN, **_STRONG_FIT, "LeadSource": "Demo request", "_form": "sales"}),
    (("new_business.demo_request", "demo.classify_support"),
     {**_OPEN, "LeadSource": "Demo request", "_form": "support", "Title": "Developer"}),
    (("new_business.demo_request", "demo.classify_spam"),
     {**_OPEN, "LeadSource": "Demo request", "_form": "spam", "Company": "Rank Fast Media",
      "Email": "seo.expert4u@gmail.com", "Title": None, "Role__c": None, "Sub_Role__c": None,
      "NumberOfEmployees": None, "AnnualRevenue": None, "Industry": None}),
    (("new_business.demo_request", "demo.scheduler_weak_fit"),
     {**_OPEN, "LeadSource": "Demo request", "_form": "sales", "AnnualRevenue": 300_000, "Title": "Student",
      "Role__c": "other", "Sub_Role__c": "other", "Industry": "Education", "NumberOfEmployees": 4}),
    (("new_business.demo_request", "demo.scheduler_recent_disqualification"),
     {**_OPEN, **_STRONG_FIT, "LeadSource": "Demo request", "_form": "sales", "Company": "Quasar Freight"}),
    ((), {**_STRONG_FIT, "LeadSource": "Demo request", "Status": "Disqualified", "_owner": "TAE",
          "Company": "Quasar Freight", "_age": 40, "_modified": 12}),
    (("new_business.sales_email",), {**_OPEN, "LeadSource": "Sales email"}),
    (("new_business.trust_center",), {**_OPEN, "LeadSource": "Trust center", "Form_Text__c":
                                      "Requesting SOC 2 report and pen test summary; happy to sign an NDA."}),
    (("new_business.campaign",), {**_OPEN, "LeadSource": "Campaign"}),
    (("new_business.bdr_qualified",), {**_OPEN, "LeadSource": "BDR"}),
    (("new_business.onboarding_referral",), {**_OPEN, "LeadSource": "Onboarding referral"}),
    (("lead.owned",), {"LeadSource": "AE referral", "Status": "Working", "_owner": "TAE"}),
    (("lead.owned",), {"LeadSource": "AM referral", "Status": "Working", "_owner": "TAM"}),
    (("lead.owned",), {"LeadSource": "Product-led", "Status": "Working", "_owner": "TAM"}),
    (("lead.owner_inactive",), {"LeadSource": "Demo request", "Status": "Working", "_owner": "inactive",
                                "_form": "sales"}),
    (("lead.converted",), {"LeadSource": "Demo request", "Status": "Qualified", "IsConverted": True,
                           "_owner": "TAE", "_form": "sales", "_age": 120, "_modified": 60}),
    # Lead scoring (rules.md §2): the handbook's table at its edges.
    (("scoring.max_70",), {**_WORKED, "NumberOfEmployees": 5000, "AnnualRevenue": 250_000_000,
                           "Role__c": "engineering", "Sub_Role__c": "software_engineer",
                           "Country": "United States"}),
    (("scoring.zero",), {**_WORKED, "NumberOfEmployees": 5, "AnnualRevenue": 200_000, "Title": "Student",
                         "Role__c": "other", "Sub_Role__c": "other", "Country": "Brazil"}),
    (("scoring.incomplete",), {**_WORKED, "NumberOfEmployees": None, "AnnualRevenue": None, "Country": None,
                               "Role__c": None, "Sub_Role__c": None, "Title": None}),
    (("scoring.employees_10", "scoring.revenue_999999"), {**_WORKED, "NumberOfEmployees": 10,
                                                          "AnnualRevenue": 999_999}),
    (("scoring.employees_11", "scoring.revenue_1m"), {**_WORKED, "NumberOfEmployees": 11,
                                                      "AnnualRevenue": 1_000_000}),
    (("scoring.employees_1000", "scoring.revenue_10m"), {**_WORKED, "NumberOfEmployees": 1000,
                                                         "AnnualRevenue": 10_000_000}),
    (("scoring.employees_1001", "scoring.revenue_100m"), {**_WORKED, "NumberOfEmployees": 1001,
                                                          "AnnualRevenue": 100_000_000}),
    (("scoring.role_marketing", "scoring.tier2_country"), {**_WORKED, "Title": "Growth Marketer",
                                                           "Role__c": "marketing", "Sub_Role__c": "other",
                                                           "Country": "Singapore"}),
    (("scoring.country_name",), {**_WORKED, "Title": "Founder & CEO", "Role__c": "founder",
                                 "Sub_Role__c": "ceo", "Country": "Deutschland"}),
)  # fmt: skip

# Issue #15's follow-ups: support requests that get a ticket, spam, sales announced (sandbox/cases_followups.py).
_LEAD_SPECS += cases_followups.LEAD_SPECS

# Inbound leads of a real org: waiting in the queue or on the default lead owner, never on nobody.
_REAL_ORG_LEAD_SPECS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("new_business.demo_request", "inbound.queue_owned"),
     {**_OPEN, **_STRONG_FIT, "LeadSource": "Demo request", "_form": "sales", "_inbound": "queue"}),
    (("new_business.demo_request", "inbound.default_owner_user"),
     {**_OPEN, **_STRONG_FIT, "LeadSource": "Demo request", "_form": "sales", "_inbound": "user"}),
    (("new_business.sales_email", "inbound.default_owner_user"),
     {**_OPEN, "LeadSource": "Sales email", "_inbound": "user"}),
)  # fmt: skip

# Room for every constructed account plus the one malformed account a book of 50+ always has.
MIN_FULL_COVERAGE: Final = len(_ACCOUNT_SPECS) + 1
MIN_FULL_COVERAGE_REAL_ORG: Final = len(_ACCOUNT_SPECS) + len(_REAL_ORG_ACCOUNT_SPECS) + 1
CASE_NAMES: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(
        [case for spec in _ACCOUNT_SPECS for case in spec.cases] + [case for cases, _ in _LEAD_SPECS for case in cases]
    )
)
REAL_ORG_CASE_NAMES: Final[tuple[str, ...]] = tuple(
    case
    for case in dict.fromkeys(
        [case for spec in _REAL_ORG_ACCOUNT_SPECS for case in spec.cases]
        + [case for cases, _ in _REAL_ORG_LEAD_SPECS for case in cases]
    )
    if case not in CASE_NAMES
)
# Lead countries as people type them → ISO code (the real-org book stores integration values).
_LEAD_COUNTRY_CODES = {"USA": "US", "UK": "GB", "United Kingdom": "GB", "United States": "US", "Germany": "DE",
                       "France": "FR", "Canada": "CA", "Netherlands": "NL", "Singapore": "SG", "India": "IN",
                       "Brazil": "BR", "Australia": "AU", "Spain": "ES", "Japan": "JP", "Poland": "PL",
                       "Deutschland": "DE"}  # fmt: skip
_CHURN_SHARE = 0.05
# The team of the person each Vitally owner attribute names when a case sets it alone.
_OWNER_FIELD_TEAM: Final[Mapping[str, str]] = {"accountOwnerId": "TAM", "csmId": "CSM", "accountExecutiveId": "TAE"}


def generate_book(
    n: int,
    *,
    seed: int = 0,
    now: datetime,
    malformed_share: float = 0.02,
    id_offset: int = 0,
    real_org: bool = False,
) -> dict[str, Any]:
    """A book of `n` Vitally accounts with their users and Salesforce records, as sandbox seed data.

    Returns `{"vitally": {"accounts", "users"}, "salesforce": {"Lead", "User", "Opportunity",
    "Account"}, "_cases": {"accounts", "leads", "malformed"}}` (with `real_org`, also
    `salesforce.Group` and `_cases.churned`; see the module docstring). Dates are relative to `now` (a naive
    `now` is taken as UTC). round(malformed_share × n) accounts and that share of the leads are
    malformed, always random filler (at least one of each when the share is positive and
    `n >= 50`). Salesforce leads number about n / 5, opportunities about n / 11. Same arguments,
    same book.
    """
    if n < 0:
        raise ValueError(f"n must be ≥ 0, got {n}")
    if not 0 <= malformed_share <= 1:
        raise ValueError(f"malformed_share must be in [0, 1], got {malformed_share}")
    if id_offset < 0 or id_offset + n >= 10**12:
        raise ValueError(f"id_offset must be in [0, 10**12 - n), got {id_offset}")
    # A book is millions of small acyclic containers: the cycle collector would rescan the growing
    # heap again and again (7 s instead of under 3 s for 100,000 accounts) without freeing anything.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Builder(n, seed, now, malformed_share, id_offset, real_org).build()
    finally:
        if collecting:
            gc.enable()


def _sf_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce id: 3-character key prefix, 12 digits, case-checksum suffix."""
    base = f"{prefix}{number:012d}"
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << k for k, char in enumerate(base[start : start + 5]) if char.isupper())
        suffix += _SF_ID_SUFFIX[bits]
    return base + suffix


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def _months_back(day: date, months: int) -> date:
    """The same day of the month `months` earlier, clamped to the month's last day."""
    total = day.year * 12 + day.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _region(iso: str | None) -> str:
    if iso in ("US", "CA", "BR", "MX"):
        return "US"
    if iso in ("SG", "IN", "AU", "JP"):
        return "Singapore"
    return "EU"


def _spec_invoices(spec: _Spec) -> list[float]:
    """The case's monthly invoice amounts, oldest first: as given, else its MRR for each month
    paid (at most six)."""
    if spec.invoices is not None:
        return list(spec.invoices)
    if spec.months and spec.mrr:
        return [spec.mrr] * min(spec.months, 6)
    return []


def _spec_spend(spec: _Spec, basis: float) -> dict[str, float]:
    """The case's spend per product: as given, else `basis` split over its products."""
    if spec.spend is not None:
        return dict(spec.spend)
    if spec.products and basis:
        weights = _SPLITS[min(len(spec.products), len(_SPLITS)) - 1]
        return {p: round(basis * w, 2) for p, w in zip(spec.products, weights, strict=False)}
    return {}


@dataclass(frozen=True)
class _Size:
    """How big a random account is: the draw `r` that chose its tier, its MRR, months paying,
    primary products, employees, users and startup plan (days left, credits total, credits used)."""

    r: float
    mrr: float
    months: int
    products: int
    employees: int
    users: int
    startup: tuple[int, float, float] | None

    @property
    def big(self) -> bool:
        return 0.955 <= self.r < 0.985

    @property
    def mid_or_big(self) -> bool:
        return 0.82 <= self.r < 0.985


class _Clock:
    """Fast timestamp and date strings relative to `now` (UTC, whole seconds)."""

    def __init__(self, now: datetime) -> None:
        aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        utc = aware.astimezone(UTC)
        self.today = utc.date()
        self._epoch = int(utc.timestamp())
        self._days: dict[int, str] = {}
        # Invoice months: index k is the month k months before the current one.
        first = date(self.today.year, self.today.month, 1)
        self.months = [_months_back(first, k).isoformat()[:7] for k in range(13)]

    def _stamp(self, seconds_ago: int) -> str:
        """`YYYY-MM-DDTHH:MM:SS` for `seconds_ago` before now; day strings are cached (hot path)."""
        day, s = divmod(self._epoch - seconds_ago, 86400)
        text = self._days.get(day)
        if text is None:
            text = self._days[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
        return f"{text}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"

    def vitally(self, seconds_ago: int) -> str:
        """e.g. 2026-11-20T09:30:00.000Z"""
        return self._stamp(seconds_ago) + ".000Z"

    def salesforce(self, seconds_ago: int) -> str:
        """e.g. 2026-11-20T09:30:00.000+0000"""
        return self._stamp(seconds_ago) + ".000+0000"

    def date(self, days_ago: int) -> str:
        return (self.today - timedelta(days=days_ago)).isoformat()


class _Builder:
    """Builds one book; the order of random draws is part of the determinism contract."""

    def __init__(self, n: int, seed: int, now: datetime, share: float, offset: int, real_org: bool = False) -> None:
        self.n = n
        self.real_org = real_org
        self.churned: list[str] = []
        self.rng = random.Random(seed)
        self._rand = self.rng.random
        self.clock = _Clock(now)
        self.share = share
        self.offset = offset
        self.accounts: list[dict[str, Any]] = []
        self.users: list[dict[str, Any]] = []
        self.leads: list[dict[str, Any]] = []
        self.opps: list[dict[str, Any]] = []
        self.sf_accounts: list[dict[str, Any]] = []
        self.account_cases: dict[str, list[str]] = {}
        self.lead_cases: dict[str, list[str]] = {}
        self.malformed: dict[str, str] = {}
        self.team = [self._team_member(k, *member) for k, member in enumerate(_TEAM)]
        self.by_name = {m["Name"]: m for m in self.team}
        self._managed = {m["Name"]: 0 for m in self.team if m["_role"] == "TAM" and m["IsActive"]}
        self._managed.pop(_CAPPED_TAM)

    def _pick(self, items: Sequence[_T]) -> _T:
        """A uniform choice; `random()` indexing is several times faster than `choice` (hot path)."""
        return items[int(self._rand() * len(items))]

    # -- the team -------------------------------------------------------------------------

    def _team_member(self, k: int, role: str, region: str, first: str, last: str, active: bool) -> dict[str, Any]:
        email = f"{first}.{last}".lower().replace(" ", "") + "@posthog.example"
        return {
            "Id": _sf_id("005", k),
            "FirstName": first,
            "LastName": last,
            "Name": f"{first} {last}",
            "Email": email,
            "IsActive": active,
            "Title": f"{_TITLES[role]} ({region})",
            "Department": f"{role} {region}",
            "CreatedDate": self.clock.salesforce(86400 * (900 - 37 * k)),
            "SystemModstamp": self.clock.salesforce(86400 * (60 - 3 * k)),
            "_role": role,
            "_region": region,
            "_vitally_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, email)),
        }

    def _member(self, role: str, region: str, name: str | None = None) -> dict[str, Any]:
        if name is not None:
            return self.by_name[name]
        for wanted in (region, "US"):
            for m in self.team:
                if m["_role"] == role and m["_region"] == wanted and m["IsActive"] and m["Name"] != _CAPPED_TAM:
                    return m
        raise AssertionError(f"no active {role} in the team table")

    def _key_role(self, label: str, member: Mapping[str, Any]) -> dict[str, Any]:
        user = {"id": member["_vitally_id"], "name": member["Name"], "email": member["Email"]}
        if not self.real_org:
            return {"keyRole": {"label": label}, "vitallyUser": user}
        # The full shape of a key role (AB-vitally's accounts schema; fixture vitally_accounts_page.json).
        stamp = self.clock.vitally(400 * 86400)
        role_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"keyrole:{label}"))
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{label}:{member['_vitally_id']}:{len(self.accounts)}")),
            "createdAt": stamp,
            "assignedAt": stamp,
            "keyRole": {"id": role_id, "createdAt": self.clock.vitally(900 * 86400), "label": label},
            "vitallyUser": {**user, "licenseStatus": "active" if member["IsActive"] else "inactive"},
        }

    # -- the book -------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        rng, n = self.rng, self.n
        specs: tuple[_Spec, ...] = _ACCOUNT_SPECS if n >= MIN_FULL_COVERAGE else ()
        if self.real_org and n >= MIN_FULL_COVERAGE_REAL_ORG:
            specs = (*_ACCOUNT_SPECS, *_REAL_ORG_ACCOUNT_SPECS)
        slots = dict(zip(sorted(rng.sample(range(n), len(specs))), specs, strict=True))
        filler: list[int] = []
        for i in range(n):
            spec = slots.get(i)
            if spec is None:
                filler.append(i)
                self.accounts.append(self._filler(i))
            else:
                account = self._from_spec(i, spec)
                self.accounts.append(account)
                self.account_cases[account["id"]] = list(spec.cases)
        if n >= MIN_FULL_COVERAGE:
            lead_specs = _LEAD_SPECS
            if self.real_org and n >= MIN_FULL_COVERAGE_REAL_ORG:
                lead_specs = (*_LEAD_SPECS, *_REAL_ORG_LEAD_SPECS)
            for cases, fields in lead_specs:
                lead = self._lead(fields)
                if cases:
                    self.lead_cases[lead["Id"]] = list(cases)
        first_filler_lead = len(self.leads)
        for _ in range(max(0, min(n // 5, n - len(self.leads)))):
            self._lead({}, account=self._maybe_account(filler))
        self._break_some(filler, first_filler_lead)
        users = [{k: v for k, v in m.items() if not k.startswith("_")} for m in self.team]
        book: dict[str, Any] = {
            "vitally": {"accounts": self.accounts, "users": self.users},
            "salesforce": {
                "Lead": self.leads,
                "User": users,
                "Opportunity": self.opps,
                "Account": self.sf_accounts,
            },
            "_cases": {"accounts": self.account_cases, "leads": self.lead_cases, "malformed": self.malformed},
        }
        if self.real_org:
            users.extend(self._org_users())
            book["salesforce"]["Group"] = [
                {
                    "Id": INBOUND_QUEUE_ID,
                    "Name": "Inbound Leads",
                    "DeveloperName": "Inbound_Leads",
                    "Type": "Queue",
                    "CreatedDate": self.clock.salesforce(900 * 86400),
                    "SystemModstamp": self.clock.salesforce(900 * 86400),
                }
            ]
            book["_cases"]["churned"] = self.churned
        return book

    def _org_users(self) -> list[dict[str, Any]]:
        """The org's integration user and default lead owner (the sandbox's defaults for both)."""
        out = []
        for record_id, first, last, alias, title in (
            (API_USER_ID, "Integration", "User", "integ", "API integration user"),
            (DEFAULT_OWNER_USER_ID, "Sales", "Operations", "salesops", "Default lead owner"),
        ):
            out.append(
                {
                    "Id": record_id,
                    "FirstName": first,
                    "LastName": last,
                    "Name": f"{first} {last}",
                    "Email": f"{alias}@org.example",
                    "Username": f"{alias}@org.example",
                    "Alias": alias,
                    "IsActive": True,
                    "Title": title,
                    "Department": "Operations",
                    "CreatedDate": self.clock.salesforce(900 * 86400),
                    "SystemModstamp": self.clock.salesforce(900 * 86400),
                }
            )
        return out

    def _maybe_account(self, filler: list[int]) -> dict[str, Any] | None:
        if not filler or self.rng.random() >= 0.4:
            return None
        return self.accounts[self._pick(filler)]

    def _break_some(self, filler: list[int], first_filler_lead: int) -> None:
        """Break `share` × n accounts (chosen among the random ones, never a constructed case) and
        `share` of the leads (among the random ones); at least one of each when share > 0 and n ≥ 50."""
        rng = self.rng

        def count(total: int, candidates: int) -> int:
            k = round(total * self.share)
            if self.share > 0 and self.n >= 50:
                k = max(k, 1)
            return min(k, candidates)

        for m, i in enumerate(sorted(rng.sample(filler, count(self.n, len(filler))))):
            account = self.accounts[i]
            path, value = _BAD_ACCOUNT[m % len(_BAD_ACCOUNT)]
            target, key = (account["traits"], path[7:]) if path.startswith("traits.") else (account, path)
            if value is _ABSENT:
                target.pop(key, None)
            else:
                target[key] = copy.deepcopy(value)
            self.malformed[account["id"]] = path
        leads = range(first_filler_lead, len(self.leads))
        for m, j in enumerate(sorted(rng.sample(leads, count(len(self.leads), len(leads))))):
            lead = self.leads[j]
            name, value = _BAD_LEAD[m % len(_BAD_LEAD)]
            lead[name] = value
            self.malformed[lead["Id"]] = name

    # -- accounts -------------------------------------------------------------------------

    def _company(self) -> tuple[str, str]:
        a, b = self._pick(_NAME_A), self._pick(_NAME_B)
        return f"{a} {b}", f"{a}{b}".lower()

    def _account(
        self,
        i: int,
        name: str,
        created_ago: int,
        mrr: float | None,
        traits: dict[str, Any],
        key_roles: list[dict[str, Any]],
        segments: tuple[str, ...],
        owners: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        g = i + self.offset
        updated_ago = int(self.rng.random() * min(created_ago, 30 * 86400))
        account: dict[str, Any] = {
            "id": f"acc_{g}",
            "externalId": f"org_{g}",
            "name": name,
            "createdAt": self.clock.vitally(created_ago),
            "updatedAt": self.clock.vitally(updated_ago),
            "mrr": mrr,
            "traits": traits,
            "accountOwnerId": None,
            "usersCount": traits.get("user_count", 0),
            "churnedAt": None,
            "keyRoles": key_roles,
            "segments": [{"id": f"seg_{_slug(s)}", "name": s} for s in segments],
        }
        if self.real_org:
            # Vitally's own owner attributes (V-accounts): the key roles' people, plus any given.
            by_label = {r["keyRole"]["label"]: r["vitallyUser"]["id"] for r in key_roles}
            account["csmId"] = by_label.get("CSM")
            account["accountExecutiveId"] = by_label.get("Account Executive")
            account["accountOwnerId"] = by_label.get("TAM") or by_label.get("CSM")
            account.update(owners or {})
        self._add_users(g, account["id"], traits, created_ago)
        return account

    def _add_users(self, g: int, account_id: str, traits: Mapping[str, Any], created_ago: int) -> None:
        """A few end users per account (not all of usersCount), spread over users_by_country."""
        counts: Mapping[str, int] = traits.get("users_by_country") or {}
        countries = list(counts)  # the main country comes first in every generated map
        if not countries:
            return
        rng, domain = self.rng, traits.get("domain") or "example.com"
        for k in range(min(3, sum(counts.values()))):
            first, last = self._pick(_FIRST), self._pick(_LAST)
            ago = int(created_ago * rng.random())
            self.users.append(
                {
                    "id": f"usr_{g}_{k}",
                    "externalId": f"person_{g}_{k}",
                    "name": f"{first} {last}",
                    "email": f"{first}.{last}{k}@{domain}".lower(),
                    "accountIds": [account_id],
                    "createdAt": self.clock.vitally(ago),
                    "updatedAt": self.clock.vitally(int(ago * rng.random())),
                    "traits": {"country": countries[k % len(countries)]},
                }
            )

    def _from_spec(self, i: int, spec: _Spec) -> dict[str, Any]:
        clock = self.clock
        name, slug = self._company()
        name = spec.name or name
        domain = f"{slug}.com" if spec.business_email else "gmail.com"
        mrr = spec.mrr
        amounts = _spec_invoices(spec)
        basis = mrr if mrr is not None else (amounts[-1] if amounts else 0.0)
        spend = _spec_spend(spec, basis)
        iso = _normalise(spec.country)
        ubc = dict(spec.ubc) if spec.ubc is not None else ({iso or "US": spec.users} if spec.users else {})
        traits: dict[str, Any] = {
            "domain": domain,
            "forecasted_mrr": spec.forecast if spec.forecast is not None else round(basis * 1.03, 2),
            "invoices": [{"month": clock.months[len(amounts) - k], "amount": a} for k, a in enumerate(amounts)],
            "product_spend": spend,
            "paidProducts": list(spend),
            "activated_products": list(dict.fromkeys([*spend, *spec.activated])) or [_PA],
            "plan": spec.plan or ("pay_as_you_go" if basis else "free"),
            "annual_plan": False,
            "billing_limits": {},
            "estimated_revenue": 4_000_000,
            "industry": "Software",
            "country": spec.country,
            "icp_score": 2,
            "user_count": sum(ubc.values()),
            "users_by_country": ubc,
            "business_email": spec.business_email,
            "autocapture_pct": 30.0,
            "custom_event_pct": 55.0,
            "actions_count": 14,
            "project_count": 1,
            "data_destinations": [],
            "billing_page_views_30d": 0,
            "is_b2b": False,
            "has_mobile_app": False,
            "is_ai_product": False,
        }
        self._spec_traits(spec, slug, traits)
        region = _region(iso)
        roles = [self._key_role(label, self._member(_KEY_ROLE_TEAM[label], region, spec.owner)) for label in spec.roles]
        created_ago = (
            int(spec.created_days * 86400)
            if spec.months is None
            else max(int(spec.created_days * 86400), (spec.months * 31 + 20) * 86400)
        )
        account = self._account(
            i, name, created_ago, mrr, traits, roles, spec.segments, self._spec_owners(spec, region)
        )
        if spec.churned_days is not None:
            self._churn(account, spec.churned_days)
        self._spec_salesforce(i, spec, account, region)
        return account

    def _spec_owners(self, spec: _Spec, region: str) -> dict[str, str]:
        """The Vitally owner attributes the case sets without a key role (real-org cases only)."""
        return {attr: self._member(_OWNER_FIELD_TEAM[attr], region)["_vitally_id"] for attr in spec.owner_fields}

    def _spec_traits(self, spec: _Spec, slug: str, traits: dict[str, Any]) -> None:
        """What the case adds to (or takes from) the common traits: first payment, headcount,
        startup plan, funding, disqualification, Slack channel, its own traits."""
        clock = self.clock
        if spec.months is not None:
            traits["first_paid_at"] = _months_back(clock.today, spec.months).isoformat()
        if spec.employees is not None:
            employees = spec.employees
            traits.update(employee_count=employees, harmonic_headcount=employees, harmonic_headcount_180d=employees)
        if spec.startup is not None:
            ends_in, total, used = spec.startup
            traits.update(
                plan="startup",
                startup_plan_ends_at=clock.date(-ends_in),
                startup_credits_total=total,
                startup_credits_used=used,
            )
        if spec.funding_days is not None:
            traits["harmonic_last_funding_date"] = clock.date(spec.funding_days)
        if spec.disqualified_days is not None:
            traits["lead_disqualified_at"] = clock.date(spec.disqualified_days)
        if spec.slack:
            traits["slack_channel"] = f"#posthog-{slug}"
        for key, value in spec.traits.items():
            if value is _ABSENT:
                traits.pop(key, None)
            else:
                traits[key] = copy.deepcopy(value)  # the spec table must never be shared with the book
        if spec.country is None:
            del traits["country"]

    def _spec_salesforce(self, i: int, spec: _Spec, account: dict[str, Any], region: str) -> None:
        """The case's Salesforce records: a product-led lead, a disqualified one, an opportunity,
        and an issue #15 lifecycle case's linked leads (sandbox/cases_lifecycle.py)."""
        if spec.lead is not None:
            self._lead(
                {"LeadSource": "Product-led", "_owner": "TAM", "Status": "Working"}
                if spec.lead == "Working"
                else {
                    "LeadSource": "Product-led",
                    "_owner": "TAM",
                    "Status": "Qualified",
                    "IsConverted": True,
                },
                account=account,
            )
        if spec.disqualified_days is not None:
            self._lead(
                {"LeadSource": "Product-led", "_owner": "TAM", "Status": "Disqualified", "_age": 120,
                 "_modified": spec.disqualified_days},
                account=account,
            )  # fmt: skip
        if spec.opp is not None:
            stage, closed_ago, reason = spec.opp
            self._opportunity(i, account, stage, closed_ago, reason, self._member("TAE", region))
        if spec.lifecycle is not None:
            cases_lifecycle.attach(self, i, account, spec.lifecycle)

    def _filler(self, i: int) -> dict[str, Any]:
        """A random account: most are small self-serve, a few are big, owned, or on the startup plan."""
        rand = self.rng.random
        name, slug = self._company()
        size = self._filler_size()
        hq = self._pick(_HQ)
        names = _COUNTRY_NAMES.get(hq)
        country = self._pick(names) if names and rand() < 0.15 else hq
        ubc = self._filler_users_by_country(hq, size.users)
        spend = self._filler_spend(size)
        traits = self._filler_traits(slug, size, country, ubc, spend)
        region = _region(hq)
        roles, segments = self._filler_ownership(size, region, slug, traits)
        if rand() < 0.02:
            traits["lead_disqualified_at"] = self.clock.date(int(365 * rand()))
        created_ago = (size.months * 31 + 20 + int(400 * rand())) * 86400 + int(86400 * rand())
        account = self._account(i, name, created_ago, size.mrr, traits, roles, segments)
        if self.real_org and rand() < _CHURN_SHARE:
            self._churn(account, 1 + int(min(created_ago // 86400, 400) * rand()))
        if size.mid_or_big and rand() < 0.55:
            stage = self._pick(("Closed Won", "Closed Lost", self._pick(_OPEN_STAGES)))
            closed_ago = -int(5 + 90 * rand()) if stage in _OPEN_STAGES else int(10 + 700 * rand())
            reason = self._pick(_LOSS_REASONS) if stage == "Closed Lost" else None
            self._opportunity(i, account, stage, closed_ago, reason, self._member("TAE", region))
        return account

    def _filler_size(self) -> _Size:
        """A random account's size: free 40 %, small pay-as-you-go 42 %, mid 13.5 %, big 3 %,
        startup plan 1.5 %."""
        rand = self.rng.random
        r = rand()
        startup = None
        if r < 0.40:  # free
            mrr, months, k = 0.0, 0, 0
            employees, users = 1 + int(40 * rand() ** 3), 1 + int(3 * rand())
        elif r < 0.82:  # small pay-as-you-go
            mrr, months, k = round(1 + 449 * rand() ** 2.5, 2), 1 + int(30 * rand()), 1 + (rand() < 0.3)
            employees, users = 1 + int(80 * rand() ** 2), 1 + int(7 * rand() ** 2)
        elif r < 0.955:  # mid
            mrr, months, k = round(450 + 1300 * rand(), 2), 2 + int(40 * rand()), 1 + int(3 * rand())
            employees, users = 5 + int(400 * rand() ** 2), 2 + int(25 * rand())
        elif r < 0.985:  # big
            mrr, months, k = round(1700 + 12000 * rand() ** 2, 2), 6 + int(40 * rand()), 2 + int(4 * rand())
            employees, users = 40 + int(3000 * rand() ** 2), 8 + int(100 * rand())
        else:  # startup plan
            mrr, months, k = round(2500 * rand(), 2), 1 + int(20 * rand()), 1 + int(3 * rand())
            employees, users = 3 + int(60 * rand()), 2 + int(10 * rand())
            total = (50_000.0, 100_000.0)[rand() < 0.5]
            startup = (10 + int(355 * rand()), total, round(total * rand(), 2))
        return _Size(r, mrr, months, k, employees, users, startup)

    def _filler_users_by_country(self, hq: str, users: int) -> dict[str, int]:
        """Most accounts' users are all in the HQ country; some have a third of them elsewhere."""
        if users <= 2 or self.rng.random() < 0.6:
            return {hq: users}
        other = self._pick(_SECOND_COUNTRY)
        ubc = {hq: users - users // 3}
        ubc[other] = ubc.get(other, 0) + users // 3
        return ubc

    def _filler_spend(self, size: _Size) -> dict[str, float]:
        """The MRR split over the account's primary products, sometimes with a non-primary one."""
        mrr, k = size.mrr, size.products
        products = self._pick(_ADOPTION)[:k]
        spend = {p: round(mrr * w, 2) for p, w in zip(products, _SPLITS[k - 1], strict=False)} if k else {}
        if k >= 2 and self.rng.random() < 0.2:
            extra = self._pick(_NON_PRIMARY)
            spend[extra] = round(mrr * 0.05, 2)
        return spend

    def _filler_traits(
        self, slug: str, size: _Size, country: str, ubc: dict[str, int], spend: dict[str, float]
    ) -> dict[str, Any]:
        """A random account's traits: invoices, email domain, company facts, product usage."""
        rand, clock = self.rng.random, self.clock
        mrr, months, employees, startup = size.mrr, size.months, size.employees, size.startup
        n_inv = min(months, 6)
        growth = 0.92 + 0.2 * rand()
        invoices = [
            {"month": clock.months[n_inv - j], "amount": round(mrr * growth ** (j + 1 - n_inv), 2)}
            for j in range(n_inv)
        ]
        personal = rand() < (0.5 if mrr == 0 else 0.25 if mrr < 450 else 0.04)
        domain = self._pick(_PERSONAL_DOMAINS) if personal else f"{slug}.{self._pick(_TLDS)}"
        auto = round(100 * rand(), 1)
        traits: dict[str, Any] = {
            "domain": domain,
            "forecasted_mrr": round(mrr * (0.9 + 0.3 * rand()), 2),
            "invoices": invoices,
            "product_spend": spend,
            "paidProducts": list(spend),
            "activated_products": list(spend) or [_PA],
            "plan": "startup" if startup else ("pay_as_you_go" if mrr else "free"),
            "annual_plan": False,
            "billing_limits": {},
            "employee_count": employees,
            "harmonic_headcount": employees,
            "harmonic_headcount_180d": max(1, int(employees * (0.8 + 0.3 * rand()))),
            "estimated_revenue": employees * (50_000 + 1000 * int(200 * rand())),
            "industry": self._pick(_INDUSTRIES),
            "country": country,
            "icp_score": int(31 * rand()) - 10,
            "user_count": size.users,
            "users_by_country": ubc,
            "business_email": not personal,
            "autocapture_pct": auto,
            "custom_event_pct": round((100 - auto) * rand(), 1),
            "actions_count": int(40 * rand() ** 2),
            "project_count": 1 + int(4 * rand() ** 4),
            "data_destinations": [self._pick(_DESTINATIONS)] if rand() < 0.15 else [],
            "billing_page_views_30d": int(6 * rand() ** 6),
            "is_b2b": rand() < 0.5,
            "has_mobile_app": rand() < 0.2,
            "is_ai_product": rand() < 0.15,
        }
        if months:
            traits["first_paid_at"] = clock.date(months * 31 - 15)
        if startup is not None:
            traits.update(
                startup_plan_ends_at=clock.date(-startup[0]),
                startup_credits_total=startup[1],
                startup_credits_used=startup[2],
            )
        if rand() < 0.25:
            traits["harmonic_last_funding_date"] = clock.date(int(1500 * rand()))
        return traits

    def _filler_ownership(
        self, size: _Size, region: str, slug: str, traits: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """(key roles, segments): most big accounts have an owner, some an annual plan and a Slack
        channel (set in `traits`); a few others an onboarding specialist or a hand-set segment."""
        rand = self.rng.random
        segments: tuple[str, ...] = ()
        roles: list[dict[str, Any]] = []
        if size.big:  # big accounts: most have an owner, some an annual plan
            if rand() < 0.65:
                roles.append(self._filler_owner(size.products, region))
                if roles[0]["keyRole"]["label"] == "TAM":
                    segments = ("AM Managed",)
            if rand() < 0.4:
                segments += ("Annual Plan",)
                traits["annual_plan"] = True
            if rand() < 0.5:
                traits["slack_channel"] = f"#posthog-{slug}"
        elif rand() < 0.04:
            roles.append(self._key_role("Onboarding Specialist", self._member("Onboarding", region)))
        elif rand() < 0.01:
            segments = (self._pick(("Active Trial", "AM referral", "AE referral", "Leads")),)
        return roles, segments

    def _churn(self, account: dict[str, Any], days_ago: int) -> None:
        """The account churned `days_ago` days ago: `churnedAt` set, no revenue since."""
        account["churnedAt"] = self.clock.vitally(days_ago * 86400)
        account["mrr"] = 0.0
        account["updatedAt"] = max(account["updatedAt"], account["churnedAt"])
        self.churned.append(account["id"])

    def _filler_owner(self, products: int, region: str) -> dict[str, Any]:
        """TAM for 1–2 primary products while a TAM has room under the soft cap, else CSM."""
        if products <= 2:
            for name, managed in self._managed.items():
                if managed < _TAM_SOFT_CAP - 3:
                    self._managed[name] = managed + 1
                    return self._key_role("TAM", self.by_name[name])
        return self._key_role("CSM", self._member("CSM", region))

    # -- Salesforce -----------------------------------------------------------------------

    def _opportunity(
        self,
        i: int,
        account: Mapping[str, Any],
        stage: str,
        closed_ago: int,
        reason: str | None,
        owner: Mapping[str, Any],
    ) -> None:
        clock = self.clock
        sf_account_id = _sf_id("001", i + self.offset)
        self.sf_accounts.append(
            {
                "Id": sf_account_id,
                "Name": account["name"],
                "Website": "https://" + account["traits"]["domain"],
                "Vitally_Account_Id__c": account["id"],
                "OwnerId": owner["Id"],
                "CreatedDate": clock.salesforce((max(closed_ago, 0) + 90) * 86400),
                "SystemModstamp": clock.salesforce((max(closed_ago, 0) + 1) * 86400),
            }
        )
        self.opps.append(
            {
                "Id": _sf_id("006", len(self.opps) + self.offset),
                "Name": f"{account['name']} - annual plan",
                "AccountId": sf_account_id,
                "StageName": stage,
                "CloseDate": clock.date(closed_ago),
                "Amount": round(12 * (account["mrr"] or 1000)),
                "Loss_Reason__c": reason,
                "OwnerId": owner["Id"],
                "CreatedDate": clock.salesforce((max(closed_ago, 0) + 60) * 86400),
                "SystemModstamp": clock.salesforce(max(closed_ago, 1) * 86400),
            }
        )

    def _lead(self, fields: Mapping[str, Any], account: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A Lead: random person and company, then `fields` (`_form`, `_owner`, `_age`, `_modified`
        are instructions, the rest are Lead fields)."""
        rng, clock = self.rng, self.clock
        first, last = self._pick(_FIRST), self._pick(_LAST)
        if account is not None:
            company, domain = account["name"], account["traits"]["domain"]
        else:
            company, slug = self._company()
            domain = f"{slug}.com"
        title, role, sub_role = self._pick(_LEAD_TITLES)
        source = fields.get("LeadSource") or self._pick(_LEAD_SOURCES)
        status = fields.get("Status") or self._pick(_LEAD_STATUSES)
        converted = status == "Qualified" and rng.random() < 0.7
        form = fields.get("_form")
        if form is None and source == "Demo request" and "Form_Text__c" not in fields:
            form = ("sales",) * 8 + ("support", "support", "spam")
            form = self._pick(form)
        owner_role = fields.get("_owner")
        if owner_role is None and "OwnerId" not in fields:
            owner_role = None if status == "Open - Not Contacted" and rng.random() < 0.7 else "TAE"
        if owner_role == "inactive":
            owner = next(m for m in self.team if not m["IsActive"])
        elif owner_role is not None:
            pool = [m for m in self.team if m["_role"] == owner_role and m["IsActive"]]
            owner = self._pick(pool)
        else:
            owner = None
        owner_id = None if owner is None else owner["Id"]
        if self.real_org and owner_id is None and fields.get("OwnerId") is None:
            # Web-to-lead: demo and contact forms wait in the queue, the rest on the default owner.
            inbound = fields.get("_inbound") or ("queue" if source in ("Demo request", "Trust center") else "user")
            owner_id = INBOUND_QUEUE_ID if inbound == "queue" else DEFAULT_OWNER_USER_ID
        age = fields.get("_age", int(1 + 400 * rng.random() ** 2))
        modified = min(age, fields.get("_modified", int(age * rng.random())))
        lead: dict[str, Any] = {
            "Id": _sf_id("00Q", len(self.leads) + self.offset),
            "FirstName": first,
            "LastName": last,
            "Email": f"{first}.{last}@{domain}".lower(),
            "Company": company,
            "Title": title,
            "Role__c": role,
            "Sub_Role__c": sub_role,
            "Country": self._pick(_LEAD_COUNTRIES),
            "NumberOfEmployees": 1 + int(3000 * rng.random() ** 3),
            "AnnualRevenue": 100_000 * int(1 + 2000 * rng.random() ** 4),
            "Industry": self._pick(_INDUSTRIES),
            "LeadSource": source,
            "Status": status,
            "OwnerId": owner_id,
            "IsConverted": converted,
            "Form_Text__c": None if form is None else self._pick(_FORM_TEXTS[form]),
            "Vitally_Account_Id__c": None if account is None else account["id"],
            "CreatedDate": clock.salesforce(age * 86400 + int(86400 * rng.random())),
            "SystemModstamp": clock.salesforce(modified * 86400),
            "Lead_Score__c": None,
            "Sync_Key__c": None,
            "Routing_Rule__c": None,
            "Routing_Reason__c": None,
            "Classification__c": None,
        }
        lead.update({key: value for key, value in fields.items() if not key.startswith("_")})
        if self.real_org:
            if lead["OwnerId"] is None:
                lead["OwnerId"] = owner_id
            self._integration_country(lead)
        self.leads.append(lead)
        return lead

    @staticmethod
    def _integration_country(lead: dict[str, Any]) -> None:
        """With State and Country picklists on, `Country` holds the integration value and
        `CountryCode` the ISO code (SF-picklists); a value the picklist cannot hold stays as typed."""
        typed = lead.get("Country")
        if not isinstance(typed, str):
            lead["CountryCode"] = None
            return
        found = country_by_code(_LEAD_COUNTRY_CODES.get(typed, typed))
        if found is None:
            lead["CountryCode"] = None
            return
        lead["CountryCode"], lead["Country"] = found


def _normalise(country: str | None) -> str | None:
    """ISO2 of the few country names the generator itself writes (not a general normaliser)."""
    if country is None or len(country) == 2:
        return country
    for iso, names in _COUNTRY_NAMES.items():
        if country in names:
            return iso
    raise AssertionError(f"generator table lacks {country!r}")
