"""Every tunable of the rules (rules.md), with its default, as frozen data: the one place a rule's
setting is declared, each field with `core.settings.setting` (default, one-line doc, limits). The
config file's `[rules.*]` tables override any of them; the example config is written from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from core.settings import section, setting

__all__ = [
    "DEFAULT_REGIONS",
    "DISQUALIFIED_STATUSES",
    "PRIMARY_PRODUCTS",
    "ROUTING_RULE_IDS",
    "RULE_DOCS",
    "TIER1_COUNTRIES",
    "TIER2_COUNTRIES",
    "AllocationPolicy",
    "Bands",
    "DemoPolicy",
    "EpisodePolicy",
    "GuardPolicy",
    "LifecyclePolicy",
    "LowUsagePolicy",
    "OnboardingPolicy",
    "Period",
    "Policy",
    "ProductLedPolicy",
    "QualificationPolicy",
    "RoutingPolicy",
    "ScoringPolicy",
    "Territories",
    "ZeroSpendPolicy",
]

# The two country tiers of the handbook's lead-scoring table; together they are the ICP countries.
TIER1_COUNTRIES = ("AT", "CA", "FR", "DE", "JP", "NO", "SE", "GB", "US")
TIER2_COUNTRIES = ("AU", "BE", "EE", "FI", "GE", "GG", "NL", "NZ", "PL", "PT", "SG")


# The routing rule ids in their default order (`[rules] order`): the first that matches wins.
ROUTING_RULE_IDS: tuple[str, ...] = (
    # A person's referral first: the segment they added names the team they ask for ("add a Segment
    # for `AM referral` (product-led sales) or `AE referral` (new business)"; the onboarding
    # specialist's lead "tagged as 'Onboarding referral'"). Behind a signal that also matches, the
    # lead went to the signal's team under the signal's source (found by two reviews).
    "product_led.am_referral",
    "new_business.onboarding_referral",
    "new_business.ae_referral",
    # Then the signals, in the handbook's listing: product-led, new business, BDR.
    "product_led.mrr_band",
    "product_led.scale_high_icp",
    "product_led.startup_rolloff",
    "product_led.forecast_spike",
    "new_business.demo_request",
    "new_business.sales_email",
    "new_business.big_fish",
    "new_business.startup_credits",
    "new_business.cool_company",
    "new_business.hiring_increase",
    "new_business.web_social_increase",
    "new_business.fundraise",
    "new_business.trust_center",
    "new_business.campaign",
    "new_business.bdr_qualified",
    "bdr.closed_lost_unresponsive",
    "bdr.low_usage",
)


# Lead statuses meaning a person disqualified the lead: the custom "Disqualified" and "Unqualified",
# and "Closed - Not Converted", what Salesforce's standard Lead Status picklist has for it.
DISQUALIFIED_STATUSES: tuple[str, ...] = ("Disqualified", "Unqualified", "Closed - Not Converted")


# The flowchart's nodes, as written to the `lifecycle_stage` trait.
SELF_SERVE = "Self serve"
ONBOARDING_SPECIALIST = "Onboarding specialist"
TAE = "Technical account executive"
TAM = "Technical account manager"
CSM = "Customer success manager"
REVIEW = "Account review"
NEW_BUSINESS_LEAD = "New business lead"
EXPANSION_LEAD = "Expansion lead"
BDR = "BDR"


Period = Literal["month", "quarter"]


# (lower bound inclusive, points), ascending. A value below the first bound falls in the first band.
Bands = tuple[tuple[float, int], ...]


PRIMARY_PRODUCTS = (
    "product_analytics",
    "session_replay",
    "feature_flags",
    "surveys",
    "data_warehouse",
    "error_tracking",
)

# Mail domains of people, not companies (new_business.big_fish: "first signup from a company").
PERSONAL_MAIL_DOMAINS = (
    *("gmail.com", "googlemail.com", "hotmail.com", "outlook.com", "live.com", "yahoo.com", "icloud.com"),
    *("me.com", "aol.com", "gmx.de", "gmx.net", "web.de", "mail.ru", "yandex.ru", "protonmail.com", "proton.me"),
    *("qq.com", "163.com", "126.com", "naver.com"),
)

# Territory defaults: the Americas to the US team, Asia-Pacific to Singapore, everything else
# (Europe, the Middle East, Africa) to the EU team.
_AMERICAS = (
    "US",
    "CA",
    "MX",
    "BR",
    "AR",
    "CL",
    "CO",
    "PE",
    "VE",
    "EC",
    "BO",
    "PY",
    "UY",
    "GT",
    "CR",
    "PA",
    "HN",
    "NI",
    "SV",
    "DO",
    "CU",
    "PR",
    "JM",
    "TT",
    "BS",
    "BB",
    "BZ",
    "GY",
    "SR",
    "HT",
    "AG",
    "DM",
    "GD",
    "KN",
    "LC",
    "VC",
    "AW",
    "CW",
    "BM",
    "KY",
    "VG",
    "VI",
)
_APAC = (
    "SG",
    "AU",
    "NZ",
    "JP",
    "KR",
    "CN",
    "HK",
    "TW",
    "IN",
    "ID",
    "MY",
    "TH",
    "VN",
    "PH",
    "PK",
    "BD",
    "LK",
    "NP",
    "MM",
    "KH",
    "LA",
    "BN",
    "MN",
    "MO",
    "FJ",
    "PG",
    "WS",
    "TO",
    "VU",
    "SB",
    "NC",
    "PF",
    "GU",
    "MV",
    "BT",
    "TL",
)
DEFAULT_REGIONS: Mapping[str, str] = {
    **{code: "US" for code in _AMERICAS},
    **{code: "Singapore" for code in _APAC},
}


# Limits shared by many tunables (README, "Configuration and secrets"). Every number a rule reads
# is bounded, so no setting can make a rule overflow (a growth projection over months_to_target
# months, a due date task_due_days ahead) or mean nothing (a share above 1, a negative count).
MONEY_MAX = 1_000_000_000_000
"""Dollars: a trillion, above any account's MRR or revenue."""
DAYS_MAX = 36_500
"""Days: a hundred years."""
MONTHS_MAX = 1_200
"""Months: a hundred years."""
COUNT_MAX = 10_000_000
"""People, users, products, projects, page views."""
POINTS_MAX = 1_000
"""Score points."""
RATIO_MAX = 1_000
"""Factors, ratios and percentages of growth (1,000 = a thousandfold, or 1,000 %)."""


def _dollars(default: float, doc: str) -> Any:
    return setting(default, doc, minimum=0, maximum=MONEY_MAX)


def _days(default: int, doc: str) -> Any:
    return setting(default, doc, minimum=0, maximum=DAYS_MAX)


def _months(default: int, doc: str, *, minimum: int = 0, maximum: int = MONTHS_MAX) -> Any:
    return setting(default, doc, minimum=minimum, maximum=maximum)


def _count(default: int, doc: str, *, minimum: int = 0, maximum: int = COUNT_MAX) -> Any:
    return setting(default, doc, minimum=minimum, maximum=maximum)


def _share(default: float, doc: str) -> Any:
    return setting(default, doc, minimum=0, maximum=1)


def _percent(default: float, doc: str, *, maximum: float = 100) -> Any:
    return setting(default, doc, minimum=0, maximum=maximum)


def _points(default: int, doc: str, *, minimum: int = 0) -> Any:
    return setting(default, doc, minimum=minimum, maximum=POINTS_MAX)


@dataclass(frozen=True)
class Territories:
    """Countries (ISO2) to sales regions; unlisted countries go to `default_region`."""

    regions: Mapping[str, str] = setting(
        DEFAULT_REGIONS,
        "Country (ISO code) -> sales region: the Americas in US and Asia-Pacific in Singapore; "
        "lists in [territories] add to these.",
    )
    default_region: str = setting("EU", "The region of every country not listed.")

    def region_of(self, country: str) -> str:
        return self.regions.get(country.upper(), self.default_region)


@dataclass(frozen=True)
class AllocationPolicy:
    """allocation.new_owner: who should own a $20k+ account (account-allocation.md)."""

    arr_threshold: float = _dollars(20_000, "Accounts at or above this ARR (12 x MRR), in dollars, need a TAM or CSM.")
    csm_min_primary_products: int = _count(
        3, "Paying for this many primary products or more makes the owner a CSM; fewer, a TAM.", maximum=100
    )
    primary_products: tuple[str, ...] = setting(PRIMARY_PRODUCTS, "The primary products counted for that choice.")
    owner_options: tuple[str, ...] = setting(
        ("US TAM", "US CSM", "EU TAM", "EU CSM", "Singapore TAM"), "The values the New Owner trait may take."
    )
    # A (region, team) pair nobody covers falls back to another option and is flagged for review.
    fallbacks: Mapping[str, str] = setting(
        {"Singapore CSM": "Singapore TAM"},
        "A region and team nobody covers -> the owner option used instead; such decisions are flagged for review.",
    )
    segment: str = setting("TAM/CSM Candidate", "The Vitally segment of accounts that need a TAM or CSM.")
    handover_after_close_months: int = _months(
        12,
        "An Account Executive's account is handed over this many months after its initial contract (its first "
        "Closed Won opportunity; the flowchart's 'close then nurture for 12 months'); no routing rule routes it "
        "within this many months of its last Closed Won (the routing guards).",
        maximum=120,
    )


@dataclass(frozen=True)
class ProductLedPolicy:
    """product_led.mrr_band: product-led routing (lead-routing-and-scoring.md, product-led sales team)."""

    mrr_min: float = _dollars(500, "The lowest MRR, in dollars (at most mrr_max).")
    mrr_max: float = _dollars(1667, "The highest MRR, in dollars.")
    employees_above: int = _count(50, "More than this many employees.")
    users_above: int = _count(7, "More than this many users.")
    min_paying_months: int = _months(
        3,
        "Paying for at least this many calendar months since first_paid_at, a month's last day counting for a "
        "later day (Aug 31 to Nov 30 is 3), else paid invoices (the account is also in an ICP country).",
    )


@dataclass(frozen=True)
class GuardPolicy:
    """The routing guards of every routing rule and custom trigger: already owned or being worked."""

    owned_segments: tuple[str, ...] = setting(
        ("AM Managed",),
        "Segments meaning an account is already owned: it is not routed, and allocation.new_owner counts it TAM-owned.",
    )
    active_sales_segments: tuple[str, ...] = setting(
        ("Active Trial", "Active Self-serve Trial", "Annual Plan", "Leads", "TAM/CSM Candidate", "$20k MRR"),
        "Segments meaning sales already works the account: it is not routed.",
    )
    cool_off_days: int = _days(
        90,
        "Days after a lead was disqualified (trait lead_disqualified_at, or a lead of the account disqualified "
        "in Salesforce) before its account can be routed again (a person's referral may, unless the lead "
        "disqualified is crm-sync's lead for the team the referral asks).",
    )
    converted_hold_days: int = _days(
        365,
        "Days after a lead of the account was converted without an opportunity before a signal may route the "
        "account again (a person's referral may, unless the lead converted is crm-sync's lead for the team the "
        "referral asks).",
    )


@dataclass(frozen=True)
class DemoPolicy:
    """demo.classification and demo.instant_scheduler: demo-request triage and the instant scheduler.

    The default classifier is the offline triage (`rules.triage.offline_triage`, docs/triage.md),
    which reads the whole submission (form text, email, company, title, employees). The keyword
    lists below are the `keywords` classifier's. Keywords match whole words or phrases,
    case-insensitively, with an optional plural "s" ("bug" matches "bugs", "seo" does not match
    "Seoul"). Sales keywords only break ties: a form with as many sales signals as support (or
    spam) signals stays with sales, because a lost deal costs more than a TAE reading a support
    question.

    `min_annual_revenue` is $10m: the handbook's scoring table starts valuing ability to pay at
    10 points there, so the scheduler's revenue bar and the score agree on a "real budget".
    Title keywords match at the start of a word ("engineer" matches "Engineering Manager").
    Industries are compared case-insensitively as whole values.
    """

    lead_source: str = setting(
        "Demo request",
        "The LeadSource of demo-request form leads (any case and spacing, as the routing triggers match LeadSource).",
    )
    classifier: str = setting(
        "offline",
        'How demo-form submissions are sorted into sales, support or spam: "offline" (rules plus a small '
        'model, docs/triage.md), "keywords" (the keyword lists below), or "llm" (an OpenAI-compatible '
        "endpoint, [triage.llm]; asked once per submission, the offline one on any failure).",
    )
    spam_keywords: tuple[str, ...] = setting(
        (
            "seo",
            "backlink",
            "guest post",
            "link building",
            "domain authority",
            "first page of google",
            "crypto",
            "bitcoin",
            "casino",
            "betting",
            "forex",
            "viagra",
        ),
        'Words or phrases signalling spam (whole words, any case, optional plural "s").',
    )
    support_keywords: tuple[str, ...] = setting(
        (
            "bug",
            "broken",
            "error",
            "not working",
            "doesn't work",
            "does not work",
            "stopped working",
            "how do i",
            "billing issue",
            "refund",
            "charged twice",
            "login",
            "log in",
            "password",
            "cancel my subscription",
        ),
        "Words or phrases signalling a support question.",
    )
    sales_keywords: tuple[str, ...] = setting(
        (
            "pricing",
            "quote",
            "enterprise",
            "contract",
            "procurement",
            "evaluating",
            "migrate",
            "migrating",
            "seat",
            "annual plan",
            "sso",
            "soc 2",
            "budget",
            "engineers",
            "product analytics",
            "session replay",
            "feature flag",
        ),
        "Words or phrases signalling sales; a tie with support or spam signals stays with sales.",
    )
    # Spam signals besides keywords: this many links or more, or shouting (mostly upper-case letters).
    spam_min_urls: int = _count(3, "A text with at least this many links is spam.", minimum=1)
    spam_caps_ratio: float = _share(
        0.8, "A text with at least this share of upper-case letters (0.8 = 80 %) is spam (shouting) ..."
    )
    spam_caps_min_letters: int = _count(20, "... when it has at least this many letters.")
    spam_status: str = setting("Disqualified", "The lead status given to spam (it gets no owner).")
    support_status: str | None = setting(
        None,
        "The lead status given to support (it gets no owner; with [zendesk], a ticket); unset: left as it is.",
        example="Closed - Support",
    )
    min_annual_revenue: float = _dollars(10_000_000, "Instant scheduler: estimated yearly revenue of at least this.")
    title_keywords: tuple[str, ...] = setting(
        ("cto", "vp", "head", "director", "founder", "ceo", "engineer", "product", "chief", "lead"),
        "Instant scheduler: a word of the title starts with one of these (any case).",
    )
    industries: tuple[str, ...] = setting(
        (
            "Software",
            "Computer Software",
            "Internet",
            "Internet Software & Services",
            "Information Technology and Services",
            "Technology",
            "SaaS",
            "Financial Technology",
        ),
        "Instant scheduler: the industry is one of these (any case).",
    )
    scheduler_min_met: int = _count(
        2, "Instant scheduler: at least this many of its 3 requirements met (revenue, title, industry).", maximum=3
    )
    scheduler_min_score: int = _points(
        20,
        "Instant scheduler: and a lead score (out of 70) of at least this; below, the TAE reviews and schedules "
        "by hand (lead-routing-and-scoring.md: 'Those <20 are for the TAE to manually review').",
    )
    disqualified_block_months: int = _months(
        1,
        "Instant scheduler: and no lead of the same company disqualified within this many calendar months "
        "(on or after the same day that many months ago; not one the triage dropped as spam).",
    )


@dataclass(frozen=True)
class LifecyclePolicy:
    """lifecycle.account_review, lifecycle.csm_downgrade and lifecycle.stage (rules.md §5).

    The stage names are the flowchart's nodes. `review_mrr`: a self-serve account at or above this
    MRR goes to Account review (2000, "organic growth to $2k+ MRR"). `segment`: the managed segment
    of both review rules. The role labels name the key roles (data-model.md). `tam_segments`:
    segments meaning a TAM/AM owns the account without a key role (`AM Managed`). The lead sources
    and segments decide the lead stages; sources not listed as expansion or BDR count as new business.
    """

    STAGES: ClassVar[tuple[str, ...]] = (
        NEW_BUSINESS_LEAD,
        EXPANSION_LEAD,
        BDR,
        ONBOARDING_SPECIALIST,
        TAE,
        SELF_SERVE,
        REVIEW,
        TAM,
        CSM,
    )

    review_mrr: float = _dollars(2000, "lifecycle.account_review: a self-serve account at or above this MRR.")
    segment: str = setting("Account review", "The Vitally segment both review rules manage.")
    csm_role: str = setting("CSM", "The key role naming an account's CSM, as labelled in Vitally.")
    tam_role: str = setting("TAM", "The key role naming an account's TAM.")
    ae_role: str = setting("Account Executive", "The key role naming an account's account executive.")
    specialist_role: str = setting("Onboarding Specialist", "The key role naming an account's onboarding specialist.")
    tam_segments: tuple[str, ...] = setting(
        ("AM Managed",), "lifecycle.stage: segments meaning a TAM/AM owns the account even without a key role."
    )
    onboarding_segment: str = setting("Onboarding", "lifecycle.stage: the onboarding segment.")
    expansion_segments: tuple[str, ...] = setting(
        ("Product-led lead", "AM referral"), "lifecycle.stage: segments meaning an expansion lead."
    )
    new_business_segments: tuple[str, ...] = setting(
        ("Onboarding referral", "AE referral"), "lifecycle.stage: segments meaning a new-business lead."
    )
    expansion_lead_sources: tuple[str, ...] = setting(
        ("Product-led", "AM referral"), "lifecycle.stage: lead sources meaning an expansion lead."
    )
    bdr_lead_sources: tuple[str, ...] = setting(
        ("BDR",), "lifecycle.stage: lead sources meaning a BDR lead (any other source is new business)."
    )


@dataclass(frozen=True)
class OnboardingPolicy:
    """onboarding.lead, onboarding.direct_handover and onboarding.circle_back (rules.md §5).

    Defaults from rules.md §5, the rest chosen where the handbook is silent.

    Onboarding lead ("first bill of $100 + business email, not otherwise a lead"):
      `first_bill_min`: the first bill must be at least this (100).
      `first_bill_skips_zero`: the "first bill" is the oldest invoice with a positive amount, so free
        months before the first payment do not hide a new payer (True).
      `first_bill_max_age_months`: the first bill must be at most this many whole months old (3), because
        the onboarding program is for new payers; without it every long-standing self-serve account
        would land in the Onboarding segment at once.
    Direct handover ("more than $1,000 monthly ... stable and legitimate, not a spike or misconfiguration"):
      `handover_mrr_above`: MRR strictly above this (1000).
      `recent_invoices`: how many latest invoices must be stable (3; also the growth window of circle_back).
      `stability_band`: the recent invoices' max / min must be at most this (1.25, i.e. within 25 %).
      `spike_factor`, `spike_lookback`: MRR and every recent invoice must be at most `spike_factor` × the
        median of the up to `spike_lookback` invoices before it (2.0 and 6), so a one-off event spike
        or a sudden step up is left to a person.
      `concentration_max`: no single product may carry more than this share of `product_spend` (0.8); one
        product making up nearly all of a high bill is the typical misconfiguration (flags called on every
        request, replay of every bot session), so such accounts are not passed without a person looking.
      `onboarding_only`: the direct handover and the circle back are the onboarding team's (the
        sales-handover page is theirs; the accounts-overview flowchart sends an onboarding
        specialist's account to a TAE when it has $20k+ potential, and a self-serve account to Sales
        only through Account review or an expansion trigger): they act only on an account in
        onboarding, i.e. in the Onboarding segment, with an Onboarding Specialist key role, or first
        billed at most `first_bill_max_age_months` ago (a new payer, whose high spend skips the
        program) (True). False: on any account.
    Circle back ("promising, positive growth trajectory, may achieve the $ threshold later"):
      `circle_back_mrr_max`: MRR at most this (1000: the direct handover threshold).
      `circle_back_min_last_invoice`: the latest invoice must be at least this (100, the onboarding lead
        minimum), so tiny accounts growing from $5 to $9 raise no tasks.
      `growth_min`, `growth_months`: growing means the recent invoices strictly increase, or the latest
        invoice is at least `growth_min` (0.2) above the one `growth_months` (2) months earlier.
      `task_due_days`: the task is due this many days after the run (30).
      `task_period`: one task per account per calendar "quarter" (default) or "month"; the period is part
        of the task's externalId, so re-runs within a period upsert the same task.
    """

    segment: str = setting("Onboarding", "The Vitally segment of onboarding leads.")
    specialist_role: str = setting("Onboarding Specialist", "The key role naming the account's onboarding specialist.")
    first_bill_min: float = _dollars(100, "onboarding.lead: a first bill of at least this many dollars ...")
    first_bill_skips_zero: bool = setting(
        True, "... where the first bill is the first one above $0 (true) or the very first invoice (false) ..."
    )
    first_bill_max_age_months: int = _months(
        3, "... and at most this many whole months old (the program is for new payers)."
    )
    onboarding_only: bool = setting(
        True,
        "onboarding.direct_handover and onboarding.circle_back act only on accounts in onboarding: in the "
        "segment, with an onboarding specialist, or first billed within first_bill_max_age_months "
        "(false: any account).",
    )
    handover_mrr_above: float = _dollars(1000, "onboarding.direct_handover: MRR above this many dollars ...")
    recent_invoices: int = _months(
        3, "... and the last this many invoices stable (also circle_back's growth window) ...", minimum=1, maximum=120
    )
    stability_band: float = setting(
        1.25, "... their largest / smallest at most this (1.25 = within 25 %) ...", minimum=1, maximum=RATIO_MAX
    )
    spike_factor: float = setting(
        2.0,
        "... no spike: MRR and each recent invoice at most this x the median of the invoices before ...",
        minimum=1,
        maximum=RATIO_MAX,
    )
    spike_lookback: int = _months(
        6, "... that median taken over up to this many earlier invoices ...", minimum=1, maximum=120
    )
    concentration_max: float = _share(0.8, "... and no single product carrying more than this share of the spend.")
    circle_back_mrr_max: float = _dollars(1000, "onboarding.circle_back: MRR at most this many dollars ...")
    circle_back_min_last_invoice: float = _dollars(100, "... a latest invoice of at least this many dollars ...")
    growth_min: float = setting(
        0.2,
        "... and growing: invoices strictly rising, or the latest at least this much (0.2 = 20 %) above ...",
        minimum=0,
        maximum=RATIO_MAX,
    )
    growth_months: int = _months(2, "... the one this many months earlier.", minimum=1, maximum=120)
    task_due_days: int = _days(30, "The specialist's circle-back task is due this many days after the run.")
    task_period: Period = setting(
        "quarter", "One circle-back task per account per quarter or month (re-runs within it update the same task)."
    )
    task_name: str = setting("Circle back: growing account", "The name of the circle-back task.")
    task_tags: tuple[str, ...] = setting(("crm-sync",), "The tags of the circle-back task.")


@dataclass(frozen=True)
class QualificationPolicy:
    """qualification.recommendation (plg-lead-qualification.md); money in dollars, percentages 0-100.

    Definitions the handbook leaves open:

    - *growth trend*: the compound monthly growth over the last `growth_invoices` invoices
      (oldest to newest) is at least `growth_trend_pct` %; with fewer than 2 invoices, or a
      first one of 0, growth is not measurable and counts as no growth.
    - *low burn*: startup credits used are under `low_burn_used_pct` % of the total.
    - *realistic path*: current MRR grown at that monthly rate for `months_to_target` months,
      times 12, reaches `target_arr` (negative growth is not projected: a shrinking account
      has a path only if it is already there; growth above `max_projected_growth_pct` %/month,
      e.g. from a first invoice of a few cents, is projected at that cap).
    - *multi-product*: at least `unpaid_activated_min` primary products activated but not
      paid for, or paying for at least `paid_products_min` primary products.
    - *can grow*: employees ≥ `employees_min`, or funded within `funding_within_days`, or
      headcount up ≥ `headcount_growth_pct` % (harmonic_headcount vs harmonic_headcount_180d).
    - *growth trajectory override* (step 2: recent funding or aggressive hiring "can qualify even
      if current spend is below threshold"): funded within `funding_within_days`, or headcount up
      ≥ `headcount_growth_pct` %, sets aside the two quick filters on current spend (`low_mrr`
      with no growth, `single_product_spend_under`); the reason says so, and the lead is judged
      on its path, products and profile like any other.
    - *too small to realistically hit $20k ARR* (step 5, pass): no realistic path, fewer than
      `employees_min` employees (an unknown count is no evidence) and no growth trajectory.
    - *expansion lever* (step 5: "flat or declining with no expansion lever" is passed): a
      multi-product opportunity or a growth trajectory; unknown products are no evidence.
    - *a plausible first message* (step 5, qualify): at least one opening-message signal.
    """

    low_mrr: float = _dollars(500, "Disqualify: MRR under this many dollars with no growth trend ...")
    single_product_spend_under: float = _dollars(200, "... all spend on one product and under this many dollars ...")
    credits_months_left: int = _months(12, "... startup credits with at least this many months left ...")
    low_burn_used_pct: float = _percent(25, "... and under this % of them used.")
    nurture_mrr_under: float = _dollars(1000, "Nurture: growing but MRR under this many dollars ...")
    early_autocapture_pct: float = _percent(70, "... or implementation early: at least this % autocapture ...")
    early_custom_event_pct: float = _percent(10, "... and at most this % custom events.")
    target_arr: float = _dollars(
        20_000, "Qualify needs a realistic path: MRR grown for months_to_target months, x 12, reaches this ARR ..."
    )
    months_to_target: int = _months(12, "... in this many months ...", maximum=120)
    growth_invoices: int = _months(
        3, "... growing at the compound monthly growth over the last this many invoices ...", minimum=2, maximum=120
    )
    growth_trend_pct: float = _percent(5, "A growth trend is at least this % a month ...", maximum=RATIO_MAX)
    max_projected_growth_pct: float = _percent(
        100, "... and projections are capped at this % a month.", maximum=RATIO_MAX
    )
    unpaid_activated_min: int = _count(
        1,
        "Qualify also needs a multi-product opportunity: this many primary products used, not paid for ...",
        maximum=100,
    )
    paid_products_min: int = _count(2, "... or paying for at least this many ...", maximum=100)
    employees_min: int = _count(50, "... and a company that can grow: at least this many employees ...")
    funding_within_days: int = _days(365, "... funded in the last this many days ...")
    headcount_growth_pct: float = _percent(20, "... or headcount up at least this % in 180 days.", maximum=RATIO_MAX)
    # Opening-message signals.
    high_autocapture_pct: float = _percent(
        70, "Opening-message signal: autocapture at least this % with no actions defined."
    )
    billing_limit_margin_pct: float = _percent(
        10, "Opening-message signal: a billing limit within this % of a product's spend."
    )
    billing_page_views_min: int = _count(1, "Opening-message signal: at least this many billing page views in 30 days.")
    several_projects: int = _count(3, "Opening-message signal: at least this many projects.")
    spend_jump_pct: float = _percent(
        50, "Opening-message signal: the last invoice up at least this % on the one before.", maximum=RATIO_MAX
    )
    competitor_destinations: tuple[str, ...] = setting(
        ("amplitude", "mixpanel", "heap", "fullstory", "pendo", "segment"),
        "Opening-message signal (a risk): data sent to one of these competitors.",
    )
    warehouse_destinations: tuple[str, ...] = setting(
        ("snowflake", "bigquery", "redshift", "databricks", "s3", "clickhouse"),
        "Opening-message signal (stickiness): data sent to one of these warehouses.",
    )
    # Products whose absence is an opening-message hook (compared with rules.base.product_key).
    group_analytics_product: str = setting("group_analytics", "A hook: a B2B account without this product.")
    mobile_replay_product: str = setting("mobile_replay", "A hook: a mobile app without this product.")
    llm_analytics_product: str = setting("llm_analytics", "A hook: an AI product without this product.")
    flags_product: str = setting(
        "feature_flags", "A hook: this product (feature flags) used without experiments_product."
    )
    experiments_product: str = setting("experiments", "The experiments product of that hook.")
    segment: str = setting("Nurture", "The Vitally segment of nurtured leads.")
    create_disqualified: bool = setting(
        True,
        'A product-led lead recommended "disqualify" is still created, carrying the recommendation, for a TAM '
        "to decide (true, the handbook); false: it is not created.",
    )
    # None: the primary products of `policy.allocation`.
    primary_products: tuple[str, ...] | None = setting(
        None,
        "The products counted as multi-product; unset: the primary_products of [rules.allocation].",
        example=("surveys",),
    )


@dataclass(frozen=True)
class RoutingPolicy:
    """The routing triggers product_led.* (but mrr_band), new_business.* and bdr.* (rules.md §1).

    Defaults from rules.md §1; `order` (in [rules] of the config) decides which trigger wins.
    """

    high_icp_threshold: int = _points(10, "product_led.scale_high_icp: an ICP score of at least this ...")
    scale_plan: str = setting("scale", "... on the plan of this name.")
    startup_plan: str = setting("startup", "product_led.startup_rolloff: on the plan of this name ...")
    rolloff_months: int = _months(
        2, "... the startup plan ends within this many calendar months (by the same day that many months ahead) ..."
    )
    rolloff_last_invoice_above: float = _dollars(1500, "... and the last invoice is above this many dollars.")
    forecast_mrr_above: float = _dollars(1000, "product_led.forecast_spike: MRR above this many dollars ...")
    forecast_ratio_above: float = setting(
        1.5,
        "... and forecasted MRR more than this x the current MRR (1.5 = 50 % higher).",
        minimum=0,
        maximum=RATIO_MAX,
    )
    big_fish_days: int = _days(14, "new_business.big_fish: an account created in the last this many days ...")
    big_fish_employees: int = _count(1000, "... with at least this many employees, the first signup of its company ...")
    big_fish_personal_domains: tuple[str, ...] = setting(
        PERSONAL_MAIL_DOMAINS,
        "... (the company is the account's `domain` trait; these personal mail domains name no "
        "company, so an account of one is always a first signup).",
    )
    credits_used_share: float = _share(
        0.5, "new_business.startup_credits: at least this share of the startup credits used (0.5 = 50 %) ..."
    )
    credits_last_invoice_above: float = _dollars(5000, "... and a last invoice above this many dollars.")
    bdr_closed_lost_reason: str = setting(
        "Unresponsive", "bdr.closed_lost_unresponsive: an Opportunity closed lost with this Loss_Reason__c ..."
    )
    bdr_min_months: int = _months(4, "... closed at least this many calendar months ago ...")
    bdr_max_months: int = _months(6, "... and at most this many calendar months ago (4-6 months old).")
    am_referral_segment: str = setting("AM referral", "product_led.am_referral: the Vitally segment of AM referrals.")
    ae_referral_segment: str = setting("AE referral", "new_business.ae_referral: the Vitally segment of AE referrals.")
    onboarding_referral_segment: str = setting(
        "Onboarding referral", "new_business.onboarding_referral: the Vitally segment of onboarding referrals."
    )
    demo_request_source: str = setting("Demo request", "new_business.demo_request: this LeadSource routes to a TAE.")
    sales_email_source: str = setting("Sales email", "new_business.sales_email: this LeadSource routes to a TAE.")
    onboarding_referral_source: str = setting(
        "Onboarding referral", "new_business.onboarding_referral: this LeadSource routes to a TAE."
    )
    trust_center_source: str = setting(
        "Trust center",
        "new_business.trust_center: this LeadSource routes to a TAE. The handbook routes only "
        "Trust Center requests that require an NDA: give this source to those alone (crm-sync "
        "reads no NDA field).",
    )
    campaign_source: str = setting("Campaign", "new_business.campaign: this LeadSource routes to a TAE.")
    bdr_qualified_source: str = setting("BDR", "new_business.bdr_qualified: this LeadSource routes to a TAE.")
    # Salesforce queue ids start with 00G: a lead in a queue is still unowned.
    queue_id_prefix: str = setting("00G", "A lead whose owner id starts with this is in a Salesforce queue: unowned.")
    unrouted_owners: tuple[str, ...] = setting(
        (),
        "Owners meaning an inbound lead still waits for routing: the org's default lead owner (a user, Setup > "
        "Lead Settings) and any other user or queue web-to-lead leaves leads with.",
        pattern=r"(00G|005)[A-Za-z0-9]*",
        hint="a Salesforce user (005…) or queue (00G…) id",
        example=("0058d000000OWNRAA4",),
    )
    product_led_segment: str = setting(
        "Product-led lead", "The Vitally segment of accounts a product-led (TAM) trigger or TAM custom trigger routes."
    )
    product_led_source: str = setting(
        "Product-led", "The LeadSource of a lead a product-led signal (or a TAM custom trigger) creates."
    )
    new_business_source: str = setting(
        "New business signal",
        "The LeadSource of a lead a new-business signal (big fish, startup credits, $0-spend triggers, "
        "cool company, a TAE custom trigger) creates.",
    )
    bdr_source: str = setting("BDR", "The LeadSource of a lead a BDR signal (or a BDR custom trigger) creates.")
    am_referral_source: str = setting("AM referral", "The LeadSource of a lead product_led.am_referral creates.")
    ae_referral_source: str = setting("AE referral", "The LeadSource of a lead new_business.ae_referral creates.")
    order: tuple[str, ...] = setting(
        ROUTING_RULE_IDS,
        'The order routing rules are tried in: the first that matches wins, later ones are "also matched".',
        toml="rules.order",
    )

    def waiting_for_routing(self, owner_id: str | None) -> str | None:
        """Why a lead with this owner still waits for the round robin ("unowned", "in queue 00G…",
        "with unrouted owner 005…"), or None when a person or a rule gave it an owner. Ids
        compare on their first 15 characters (Salesforce's case-sensitive id; the config may
        hold either form)."""
        if owner_id is None or not owner_id.strip():
            return "unowned"
        if owner_id.startswith(self.queue_id_prefix):
            return f"in queue {owner_id}"
        if any(owner_id[:15] == unrouted[:15] for unrouted in self.unrouted_owners):
            return f"with unrouted owner {owner_id}"
        return None


@dataclass(frozen=True)
class ZeroSpendPolicy:
    """The flowchart's "Using PostHog, $0 spend, trigger for hiring increase, web/social increase,
    fundraise" new-business triggers (accounts-overview.md), and "'Cool company' in ocean.io".

    *Using PostHog, $0 spend*: MRR known and at most `mrr_max` (0) with at least `min_users` users
    (1). Hiring compares `harmonic_headcount` with `harmonic_headcount_180d` (the pair the PLG
    qualification page names); web and social growth compare `harmonic_web_traffic` and
    `harmonic_social_followers` with their `_180d` values the same way. Each needs a floor, so a
    two-person company hiring a third is not a "hiring increase". The 20 % headcount growth is the
    qualification's growth-trajectory default; web and social traffic move faster, hence 50 % and 30 %.
    """

    mrr_max: float = _dollars(0, "$0 spend: MRR at most this many dollars ...")
    min_users: int = _count(1, "... and using PostHog: at least this many users.")
    hiring_growth_pct: float = _percent(
        20,
        "new_business.hiring_increase: headcount up at least this % on 180 days ago ...",
        maximum=RATIO_MAX,
    )
    hiring_min_headcount: int = _count(10, "... with at least this many people now.")
    web_traffic_growth_pct: float = _percent(
        50, "new_business.web_social_increase: web traffic up at least this % on 180 days ago ...", maximum=RATIO_MAX
    )
    web_traffic_min: int = _count(5000, "... with at least this much web traffic now (visits a month) ...")
    social_growth_pct: float = _percent(
        30, "... or social followers up at least this % on 180 days ago ...", maximum=RATIO_MAX
    )
    social_followers_min: int = _count(500, "... with at least this many followers now.")
    fundraise_days: int = _days(
        90, "new_business.fundraise: funded (harmonic_last_funding_date) in the last this many days."
    )


@dataclass(frozen=True)
class LowUsagePolicy:
    """bdr.low_usage: the BDR team's "low usage orgs" (lead-routing-and-scoring.md).

    The handbook does not define low usage. Read from its context (the BDR list is outbound work on
    companies that know PostHog but have not adopted it, and the flowchart sends a BDR's account on
    only when it has "$20k+ potential"): a company of some size (more than `employees_above`, the
    product-led band's 50) with a business email, signed up long enough ago to have adopted it
    (`min_age_days`, the product-led band's 3 months), with few users (at most `max_users`) and
    spend below `mrr_below` (the onboarding lead's $100 first bill, so onboarding and BDR do not
    both take it). Accounts a $0-spend new-business trigger takes go to a TAE first (the order).
    """

    employees_above: int = _count(50, "More than this many employees ...")
    min_age_days: int = _days(90, "... signed up at least this many days ago ...")
    max_users: int = _count(2, "... at most this many users ...")
    mrr_below: float = _dollars(100, "... MRR below this many dollars, and a business email.")


@dataclass(frozen=True)
class EpisodePolicy:
    """A lead's life after crm-sync created it (plg-lead-qualification.md): the Salesforce lead
    statuses that mean a person is working it, qualified it ("in progress"), is nurturing it,
    disqualified or converted it, and the follow-up tasks of the nurture and qualification windows.

    Statuses compare case-insensitively; a status in none of the lists is "open" (not worked yet).
    """

    new_statuses: tuple[str, ...] = setting(
        ("Open - Not Contacted", "Open", "New"),
        "Open lead statuses nobody has moved a lead to yet (the Lead Status picklist's default): only from one "
        "of these, or from no status, does demo triage move a lead (spam to Disqualified, support to [rules.demo] "
        "support_status); any other status is a person's, a conflict left alone. Add your org's default if it "
        "is none of these.",
    )
    working_statuses: tuple[str, ...] = setting(
        ("Working", "Working - Contacted", "Contacted"), "Lead statuses meaning a person is working the lead."
    )
    qualified_statuses: tuple[str, ...] = setting(
        ("In progress", "Qualified"), 'Lead statuses meaning the owner qualified it ("in progress": move fast).'
    )
    nurturing_statuses: tuple[str, ...] = setting(
        ("Nurturing", "Nurture"), 'Lead statuses meaning "not yet": the owner nurtures it and comes back.'
    )
    disqualified_statuses: tuple[str, ...] = setting(
        DISQUALIFIED_STATUSES,
        "Lead statuses meaning the owner disqualified it: the cool-off starts; a lead of the company "
        "in one of them within the last month also hides the instant scheduler (demo.instant_scheduler).",
    )
    converted_statuses: tuple[str, ...] = setting(
        ("Converted", "Closed - Converted"), "Lead statuses meaning converted (besides IsConverted)."
    )
    leads_segment: str = setting(
        "Leads", "The Vitally segment a TAM tracks a qualified lead in (with themselves as Account Executive)."
    )
    nurture_days: int = _days(
        45, 'episode.nurture_follow_up: the revisit task is due this many days on ("revisit in 30-60 days").'
    )
    nurture_task_name: str = setting("Revisit nurtured lead", "The name of the nurture revisit task.")
    qualified_window_months: int = _months(
        3,
        "episode.qualified_window: months from the day the lead's owner qualified it to decide whether it belongs "
        "in the book.",
        maximum=120,
    )
    qualified_task_name: str = setting(
        "Decide: does this lead belong in your book?", "The name of the qualified lead's decision task."
    )
    task_tags: tuple[str, ...] = setting(("crm-sync", "lead-episode"), "The tags of both follow-up tasks.")


@dataclass(frozen=True)
class ScoringPolicy:
    """scoring.lead_score (rules.md §2): the lead-scoring table as data, written to Lead_Score__c.

    Employees start at 0 rather than the handbook's 1 so that a lead with 0 employees scores in the
    lowest band instead of being unscorable. Role and sub-role values are compared case-insensitively;
    a value not listed scores the `other_*` points (it is known, just not valued).
    """

    employee_bands: Bands = setting(
        ((0, 0), (11, 10), (1000, 20)),
        "Employees -> points as [lowest value, points] pairs, ascending: a value scores the last band it reaches "
        "(1,000 employees score 20: the handbook's 1000+, as Big Fish reads it).",
        minimum=0,
        maximum=MONEY_MAX,
    )
    revenue_bands: Bands = setting(
        ((0, 0), (1_000_000, 5), (10_000_000, 10), (100_000_000, 20)),
        "Estimated yearly revenue in dollars -> points, the same way.",
        minimum=0,
        maximum=MONEY_MAX,
    )
    role_points: Mapping[str, int] = setting(
        # The handbook's table lists "leadership/founder" as one row: either word, or that label as
        # an org's picklist may spell it.
        {"engineering": 10, "product": 10, "leadership": 10, "founder": 10, "leadership/founder": 10, "marketing": 5},
        "Role -> points (any case).",
        minimum=0,
        maximum=POINTS_MAX,
    )
    other_role_points: int = _points(0, "Points for a role that is known but not in role_points.")
    sub_role_points: Mapping[str, int] = setting(
        {
            "data_science_engineer": 10,
            "project_engineer": 10,
            "software_engineer": 10,
            "web_engineer": 10,
            "founder": 10,
            "ceo": 10,
            "founder/ceo": 10,  # the handbook's row, as a picklist may spell it
        },
        "Sub-role -> points (any case).",
        minimum=0,
        maximum=POINTS_MAX,
    )
    other_sub_role_points: int = _points(0, "Points for a sub-role that is known but not in sub_role_points.")
    tier1_countries: tuple[str, ...] = setting(
        TIER1_COUNTRIES,
        "Countries (ISO codes or names) scoring tier1_points; leave out to use tier1 of [rules.countries].",
        countries=True,
    )
    tier2_countries: tuple[str, ...] = setting(
        TIER2_COUNTRIES,
        "Countries scoring tier2_points; leave out to use tier2 of [rules.countries].",
        countries=True,
    )
    tier1_points: int = _points(10, "Points for a country of tier1_countries.")
    tier2_points: int = _points(5, "Points for a country of tier2_countries.")
    other_country_points: int = _points(0, "Points for any other country.")
    max_score: int = _points(
        70, 'The most a lead can score (shown as "score/70"); change it with the tables.', minimum=1
    )


@dataclass(frozen=True)
class Policy:
    """Everything the rules read besides the records themselves."""

    allocation: AllocationPolicy = section(AllocationPolicy, "Who should own a $20k+ account.", toml="rules.allocation")
    product_led: ProductLedPolicy = section(ProductLedPolicy, "The product-led MRR band.", toml="rules.product_led")
    territories: Territories = section(Territories, "Countries to sales regions.", toml="territories")
    guards: GuardPolicy = section(GuardPolicy, "What stops any routing.", toml="rules.guards")
    routing: RoutingPolicy = section(RoutingPolicy, "The routing triggers.", toml="rules.routing")
    scoring: ScoringPolicy = section(ScoringPolicy, "The lead score.", toml="rules.scoring")
    demo: DemoPolicy = section(DemoPolicy, "Demo-request triage and scheduling.", toml="rules.demo")
    onboarding: OnboardingPolicy = section(OnboardingPolicy, "The onboarding rules.", toml="rules.onboarding")
    lifecycle: LifecyclePolicy = section(LifecyclePolicy, "Review, downgrade and stage.", toml="rules.lifecycle")
    qualification: QualificationPolicy = section(
        QualificationPolicy, "Product-led lead qualification.", toml="rules.qualification"
    )
    zero_spend: ZeroSpendPolicy = section(
        ZeroSpendPolicy, "The $0-spend and cool-company new-business triggers.", toml="rules.zero_spend"
    )
    low_usage: LowUsagePolicy = section(LowUsagePolicy, "The BDR low-usage trigger.", toml="rules.low_usage")
    episodes: EpisodePolicy = section(EpisodePolicy, "A lead's life after it is created.", toml="rules.episodes")
    tier1_countries: tuple[str, ...] = setting(
        TIER1_COUNTRIES,
        "The lead-scoring table's first country tier (ISO codes or names); with tier2, the ICP countries.",
        countries=True,
        toml="rules.countries.tier1",
    )
    tier2_countries: tuple[str, ...] = setting(
        TIER2_COUNTRIES,
        "Its second tier; the lead score uses both unless [rules.scoring] sets its own.",
        countries=True,
        toml="rules.countries.tier2",
    )
    owner_roles: tuple[str, ...] = setting(
        ("TAM", "CSM", "Account Executive"),
        "Key roles meaning a person owns the account: it is never routed, handed over or reviewed.",
        toml="rules.owner_roles",
    )
    enabled: Mapping[str, bool] = setting(
        {},
        'Rule id -> false to switch a rule off (e.g. "lifecycle.stage" = false for a staged rollout): it writes '
        "nothing, draws no owner and leaves the segments it manages as they are; a routing trigger switched off "
        "is left out of the order. Unlisted rules are on (docs/rules.md lists every id).",
        toml="rules.enabled",
        example={"lifecycle.stage": False},
    )

    @property
    def disabled(self) -> frozenset[str]:
        """The rule ids `[rules.enabled]` switches off."""
        return frozenset(rule for rule, on in self.enabled.items() if not on)

    @property
    def icp_countries(self) -> frozenset[str]:
        return frozenset(self.tier1_countries) | frozenset(self.tier2_countries)


# What each built-in rule decides and what it writes, in one line: docs/rules.md is generated from
# this, the rule ids above and the settings' declarations (`make docs`; a test keeps it current).
RULE_DOCS: Mapping[str, str] = {
    "product_led.mrr_band": "A self-serve account in the product-led MRR band, big enough, in an ICP country "
    "and paying long enough → a TAM: segment `Product-led lead`, trait `routing_reason`, "
    "a lead (LeadSource `Product-led`).",
    "product_led.scale_high_icp": "An account on the scale plan with a high ICP score → a TAM (as above).",
    "product_led.startup_rolloff": "A startup-plan account whose plan ends soon and whose last invoice is large "
    "→ a TAM (as above).",
    "product_led.forecast_spike": "An account whose forecast MRR spikes above its current MRR → a TAM (as above).",
    "product_led.am_referral": "An account in the AM referral segment → a TAM; the lead's LeadSource is `AM referral`.",
    "new_business.demo_request": "An open, unowned inbound lead from a demo request → a TAE: Lead `Routing_Rule__c`, "
    "`Routing_Reason__c`, owner by round robin.",
    "new_business.sales_email": "An open, unowned inbound lead from a sales email → a TAE (as above).",
    "new_business.onboarding_referral": "An account in the onboarding referral segment, or an inbound lead of that "
    "LeadSource → a TAE.",
    "new_business.big_fish": "A new account with many employees, its company's first signup (by domain) → a "
    "TAE: trait `routing_reason`, a lead (LeadSource `New business signal`).",
    "new_business.startup_credits": "A startup that used most of its credits with a large last invoice → a TAE.",
    "new_business.cool_company": "An account flagged 'cool company' (ocean.io), at any spend → a TAE.",
    "new_business.hiring_increase": "A $0-spend account whose company is hiring fast → a TAE.",
    "new_business.web_social_increase": "A $0-spend account whose web traffic or social following grew fast → a TAE.",
    "new_business.fundraise": "A $0-spend account whose company raised money recently → a TAE.",
    "new_business.trust_center": (
        "An open, unowned inbound lead requesting Trust Center access that needs an NDA (its LeadSource) → a TAE."
    ),
    "new_business.campaign": "An open, unowned inbound lead from a campaign → a TAE.",
    "new_business.bdr_qualified": "A lead a BDR qualified → a TAE: a person's BDR lead released to routing (open, "
    "unowned), or crm-sync's own BDR lead its BDR moved to a qualified status (its owner drawn from the TAE pool).",
    "new_business.ae_referral": "An account in the AE referral segment → a TAE.",
    "bdr.closed_lost_unresponsive": "An opportunity closed lost as unresponsive 4-6 calendar months ago → the BDRs: "
    "trait `routing_reason`, a lead (LeadSource `BDR`).",
    "bdr.low_usage": "A paying organisation with low usage → the BDRs (as above).",
    "allocation.new_owner": "An account of $20k+ ARR without an owner (or outgrowing its TAM) → TAM or CSM by "
    "primary products, region by where most users are: trait `new_owner`, segment `TAM/CSM Candidate`.",
    "onboarding.lead": "A first bill of $100+ with a business email → an onboarding specialist by round robin: "
    "segment `Onboarding`, trait `onboarding_specialist`, a Vitally task.",
    "onboarding.direct_handover": "An account in onboarding with stable spend above the handover MRR (no spike, not "
    "one product) counts as an onboarding referral to Sales.",
    "onboarding.circle_back": "A growing account in onboarding below the threshold, not routed this cycle → a "
    "circle-back Vitally task due in 30 days, once per account per quarter.",
    "lifecycle.account_review": "A self-serve account reaching the review MRR, growing organically (no open "
    "opportunity, no open lead someone else created) → segment `Account review`.",
    "lifecycle.csm_downgrade": "A CSM account below the CSM ARR → segment `Account review`.",
    "lifecycle.stage": "The account's stage in the accounts-overview flowchart → trait `lifecycle_stage`.",
    "qualification.recommendation": "Each product-led lead: `qualify`, `nurture` or `disqualify` with the handbook's "
    "filters, its step 5 (pass a company too small to realistically hit $20k ARR, or flat or declining spend with no "
    "expansion lever; qualify only with a plausible first message: an opening-message signal) and the "
    "opening-message signals (once the lead's owner decided, in progress or nurturing, their decision) → "
    "trait `qualification`, segment `Nurture`, Lead `Qualification__c`, `Qualification_Reason__c`.",
    "episode.nurture_follow_up": "A lead its owner set to nurturing → a Vitally task to revisit it, once each time.",
    "episode.qualified_window": "A qualified product-led lead → a Vitally task to decide within the window, once per "
    "lead.",
    "scoring.lead_score": "The handbook's lead score, component by component → Lead `Lead_Score__c` on open leads "
    "whose score changed.",
    "demo.classification": "A demo-request submission → `sales`, `support` or `spam` (offline triage): Lead "
    "`Classification__c` (and `Status` for spam); support and spam skip the round robin.",
    "demo.instant_scheduler": "Whether a demo request may book a meeting at once (2 of 3 of revenue, title, "
    "industry; no recent disqualified lead; not classified support or spam): shown by `explain`, writes nothing.",
}
