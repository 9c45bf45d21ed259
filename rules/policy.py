"""Every tunable of the rules (rules.md), with its default, as frozen data: the one place a rule's
setting is declared. The config file's `[rules.*]` tables override any of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

__all__ = [
    "DEFAULT_REGIONS",
    "PRIMARY_PRODUCTS",
    "ROUTING_RULE_IDS",
    "TIER1_COUNTRIES",
    "TIER2_COUNTRIES",
    "AllocationPolicy",
    "Bands",
    "DemoPolicy",
    "GuardPolicy",
    "LifecyclePolicy",
    "OnboardingPolicy",
    "Period",
    "Policy",
    "ProductLedPolicy",
    "QualificationPolicy",
    "RoutingPolicy",
    "ScoringPolicy",
    "Territories",
]

# The two country tiers of the handbook's lead-scoring table; together they are the ICP countries.
TIER1_COUNTRIES = ("AT", "CA", "FR", "DE", "JP", "NO", "SE", "GB", "US")
TIER2_COUNTRIES = ("AU", "BE", "EE", "FI", "GE", "GG", "NL", "NZ", "PL", "PT", "SG")


# The rule ids of rules.md §1, in its order (the default evaluation order).
ROUTING_RULE_IDS: tuple[str, ...] = (
    "product_led.mrr_band",
    "product_led.scale_high_icp",
    "product_led.startup_rolloff",
    "product_led.forecast_spike",
    "product_led.am_referral",
    "new_business.demo_request",
    "new_business.sales_email",
    "new_business.onboarding_referral",
    "new_business.big_fish",
    "new_business.startup_credits",
    "new_business.trust_center",
    "new_business.campaign",
    "new_business.bdr_qualified",
    "new_business.ae_referral",
    "bdr.closed_lost_unresponsive",
)


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


@dataclass(frozen=True)
class Territories:
    """Countries (ISO2) to sales regions; unlisted countries go to `default_region`."""

    regions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_REGIONS))
    default_region: str = "EU"

    def region_of(self, country: str) -> str:
        return self.regions.get(country.upper(), self.default_region)


@dataclass(frozen=True)
class AllocationPolicy:
    """`allocation.new_owner`: who should own a $20k+ account (account-allocation.md)."""

    arr_threshold: float = 20_000
    csm_min_primary_products: int = 3
    primary_products: tuple[str, ...] = PRIMARY_PRODUCTS
    owner_options: tuple[str, ...] = ("US TAM", "US CSM", "EU TAM", "EU CSM", "Singapore TAM")
    # A (region, team) pair nobody covers falls back to another option and is flagged for review.
    fallbacks: Mapping[str, str] = field(default_factory=lambda: {"Singapore CSM": "Singapore TAM"})
    segment: str = "TAM/CSM Candidate"


@dataclass(frozen=True)
class ProductLedPolicy:
    """Product-led routing triggers (lead-routing-and-scoring.md, product-led sales team)."""

    mrr_min: float = 500
    mrr_max: float = 1667
    employees_above: int = 50
    users_above: int = 7
    min_paying_months: int = 3


@dataclass(frozen=True)
class GuardPolicy:
    """What counts as already owned or already being worked (routing guards)."""

    owned_segments: tuple[str, ...] = ("AM Managed",)
    active_sales_segments: tuple[str, ...] = ("Active Trial", "Annual Plan", "Leads")
    cool_off_days: int = 90


@dataclass(frozen=True)
class DemoPolicy:
    """Demo-request triage and instant-scheduler requirements; the config file overrides any of it.

    Keywords match whole words or phrases, case-insensitively, with an optional plural "s"
    ("bug" matches "bugs", "seo" does not match "Seoul"). Sales keywords only break ties: a form
    with as many sales signals as support (or spam) signals stays with sales, because a lost deal
    costs more than a TAE reading a support question.

    `min_annual_revenue` is $10m: the handbook's scoring table starts valuing ability to pay at
    10 points there, so the scheduler's revenue bar and the score agree on a "real budget".
    Title keywords match at the start of a word ("engineer" matches "Engineering Manager").
    Industries are compared case-insensitively as whole values.
    """

    lead_source: str = "Demo request"
    classifier: str = "keywords"
    spam_keywords: tuple[str, ...] = (
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
    )
    support_keywords: tuple[str, ...] = (
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
    )
    sales_keywords: tuple[str, ...] = (
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
    )
    # Spam signals besides keywords: this many links or more, or shouting (mostly upper-case letters).
    spam_min_urls: int = 3
    spam_caps_ratio: float = 0.8
    spam_caps_min_letters: int = 20
    spam_status: str = "Disqualified"
    min_annual_revenue: float = 10_000_000
    title_keywords: tuple[str, ...] = (
        "cto",
        "vp",
        "head",
        "director",
        "founder",
        "ceo",
        "engineer",
        "product",
        "chief",
        "lead",
    )
    industries: tuple[str, ...] = (
        "Software",
        "Computer Software",
        "Internet",
        "Internet Software & Services",
        "Information Technology and Services",
        "Technology",
        "SaaS",
        "Financial Technology",
    )
    scheduler_min_met: int = 2
    disqualified_block_days: int = 30


@dataclass(frozen=True)
class LifecyclePolicy:
    """Tunables of the lifecycle rules (rules.md §5 defaults; the stage names are the flowchart's nodes).

    `review_mrr`: a self-serve account at or above this MRR goes to Account review (2000, "organic
    growth to $2k+ MRR"). `segment`: the managed segment of both review rules. The role labels name the
    key roles (data-model.md). `tam_segments`: segments meaning a TAM/AM owns the account without a key
    role (`AM Managed`). The lead sources and segments decide the lead stages; sources not listed as
    expansion or BDR count as new business.
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

    review_mrr: float = 2000
    segment: str = "Account review"
    csm_role: str = "CSM"
    tam_role: str = "TAM"
    ae_role: str = "Account Executive"
    specialist_role: str = "Onboarding Specialist"
    tam_segments: tuple[str, ...] = ("AM Managed",)
    onboarding_segment: str = "Onboarding"
    expansion_segments: tuple[str, ...] = ("Product-led lead", "AM referral")
    new_business_segments: tuple[str, ...] = ("Onboarding referral", "AE referral")
    expansion_lead_sources: tuple[str, ...] = ("Product-led", "AM referral")
    bdr_lead_sources: tuple[str, ...] = ("BDR",)


@dataclass(frozen=True)
class OnboardingPolicy:
    """Tunables of the onboarding rules; defaults from rules.md §5, the rest chosen where the handbook is silent.

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

    segment: str = "Onboarding"
    specialist_role: str = "Onboarding Specialist"
    first_bill_min: float = 100
    first_bill_skips_zero: bool = True
    first_bill_max_age_months: int = 3
    handover_mrr_above: float = 1000
    recent_invoices: int = 3
    stability_band: float = 1.25
    spike_factor: float = 2.0
    spike_lookback: int = 6
    concentration_max: float = 0.8
    circle_back_mrr_max: float = 1000
    circle_back_min_last_invoice: float = 100
    growth_min: float = 0.2
    growth_months: int = 2
    task_due_days: int = 30
    task_period: Period = "quarter"
    task_name: str = "Circle back: growing account"
    task_tags: tuple[str, ...] = ("crm-sync",)


@dataclass(frozen=True)
class QualificationPolicy:
    """Thresholds of `qualification.recommendation` (plg-lead-qualification.md); money in USD.

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
    """

    low_mrr: float = 500
    single_product_spend_under: float = 200
    credits_months_left: int = 12
    low_burn_used_pct: float = 25
    nurture_mrr_under: float = 1000
    early_autocapture_pct: float = 70
    early_custom_event_pct: float = 10
    target_arr: float = 20_000
    months_to_target: int = 12
    growth_invoices: int = 3
    growth_trend_pct: float = 5
    max_projected_growth_pct: float = 100
    unpaid_activated_min: int = 1
    paid_products_min: int = 2
    employees_min: int = 50
    funding_within_days: int = 365
    headcount_growth_pct: float = 20
    # Opening-message signals.
    high_autocapture_pct: float = 70
    billing_limit_margin_pct: float = 10
    billing_page_views_min: int = 1
    several_projects: int = 3
    spend_jump_pct: float = 50
    competitor_destinations: tuple[str, ...] = ("amplitude", "mixpanel", "heap", "fullstory", "pendo", "segment")
    warehouse_destinations: tuple[str, ...] = ("snowflake", "bigquery", "redshift", "databricks", "s3", "clickhouse")
    # Products whose absence is an opening-message hook (compared with rules.base.product_key).
    group_analytics_product: str = "group_analytics"
    mobile_replay_product: str = "mobile_replay"
    llm_analytics_product: str = "llm_analytics"
    flags_product: str = "feature_flags"
    experiments_product: str = "experiments"
    segment: str = "Nurture"
    # None: the primary products of `policy.allocation`.
    primary_products: tuple[str, ...] | None = field(default=None)


@dataclass(frozen=True)
class RoutingPolicy:
    """The routing triggers' tunables (rules.md §1 defaults); `order` decides which trigger wins."""

    high_icp_threshold: int = 10
    scale_plan: str = "scale"
    startup_plan: str = "startup"
    rolloff_days: int = 60
    rolloff_last_invoice_above: float = 1500
    forecast_mrr_above: float = 1000
    forecast_ratio_above: float = 1.5
    big_fish_days: int = 14
    big_fish_employees: int = 1000
    credits_used_share: float = 0.5
    credits_last_invoice_above: float = 5000
    bdr_closed_lost_reason: str = "Unresponsive"
    bdr_min_days: int = 120
    bdr_max_days: int = 180
    am_referral_segment: str = "AM referral"
    ae_referral_segment: str = "AE referral"
    onboarding_referral_segment: str = "Onboarding referral"
    demo_request_source: str = "Demo request"
    sales_email_source: str = "Sales email"
    onboarding_referral_source: str = "Onboarding referral"
    trust_center_source: str = "Trust center"
    campaign_source: str = "Campaign"
    bdr_qualified_source: str = "BDR"
    # Salesforce queue ids start with 00G: a lead in a queue is still unowned.
    queue_id_prefix: str = "00G"
    product_led_segment: str = "Product-led lead"
    order: tuple[str, ...] = ROUTING_RULE_IDS


@dataclass(frozen=True)
class ScoringPolicy:
    """The handbook's lead-scoring table as data; the config file overrides any of it.

    Employees start at 0 rather than the handbook's 1 so that a lead with 0 employees scores in the
    lowest band instead of being unscorable. Role and sub-role values are compared case-insensitively;
    a value not listed scores the `other_*` points (it is known, just not valued).
    """

    employee_bands: Bands = ((0, 0), (11, 10), (1001, 20))
    revenue_bands: Bands = ((0, 0), (1_000_000, 5), (10_000_000, 10), (100_000_000, 20))
    role_points: Mapping[str, int] = field(
        default_factory=lambda: {"engineering": 10, "product": 10, "leadership": 10, "founder": 10, "marketing": 5}
    )
    other_role_points: int = 0
    sub_role_points: Mapping[str, int] = field(
        default_factory=lambda: {
            "data_science_engineer": 10,
            "project_engineer": 10,
            "software_engineer": 10,
            "web_engineer": 10,
            "founder": 10,
            "ceo": 10,
        }
    )
    other_sub_role_points: int = 0
    tier1_countries: tuple[str, ...] = TIER1_COUNTRIES
    tier2_countries: tuple[str, ...] = TIER2_COUNTRIES
    tier1_points: int = 10
    tier2_points: int = 5
    other_country_points: int = 0
    max_score: int = 70


@dataclass(frozen=True)
class Policy:
    """Everything the rules read besides the records themselves."""

    allocation: AllocationPolicy = field(default_factory=AllocationPolicy)
    product_led: ProductLedPolicy = field(default_factory=ProductLedPolicy)
    territories: Territories = field(default_factory=Territories)
    guards: GuardPolicy = field(default_factory=GuardPolicy)
    routing: RoutingPolicy = field(default_factory=RoutingPolicy)
    scoring: ScoringPolicy = field(default_factory=ScoringPolicy)
    demo: DemoPolicy = field(default_factory=DemoPolicy)
    onboarding: OnboardingPolicy = field(default_factory=OnboardingPolicy)
    lifecycle: LifecyclePolicy = field(default_factory=LifecyclePolicy)
    qualification: QualificationPolicy = field(default_factory=QualificationPolicy)
    tier1_countries: tuple[str, ...] = TIER1_COUNTRIES
    tier2_countries: tuple[str, ...] = TIER2_COUNTRIES
    owner_roles: tuple[str, ...] = ("TAM", "CSM", "Account Executive")

    @property
    def icp_countries(self) -> frozenset[str]:
        return frozenset(self.tier1_countries) | frozenset(self.tier2_countries)
