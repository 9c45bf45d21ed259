"""The rules' tunable defaults (rules.md), as frozen data. The config file overrides any of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rules.countries import TIER1_COUNTRIES, TIER2_COUNTRIES
from rules.demo import DemoPolicy
from rules.lifecycle import LifecyclePolicy
from rules.onboarding import OnboardingPolicy
from rules.qualification import QualificationPolicy
from rules.routing import RoutingPolicy
from rules.scoring import ScoringPolicy

__all__ = [
    "DEFAULT_REGIONS",
    "PRIMARY_PRODUCTS",
    "TIER1_COUNTRIES",
    "TIER2_COUNTRIES",
    "AllocationPolicy",
    "GuardPolicy",
    "Policy",
    "ProductLedPolicy",
    "Territories",
]

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
