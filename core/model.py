"""Typed records the rules decide on: plain frozen data, parsed at the connector boundary.

A field that is ``None`` is *unknown* (absent or null at the source), never zero: a rule that
needs it does not fire and names it in its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import date, datetime
from typing import Any

__all__ = ["Account", "Invoice", "Lead", "Opportunity", "SfAccount", "SfUser", "new_account"]


@dataclass(frozen=True)
class Invoice:
    month: str  # "YYYY-MM"
    amount: float


@dataclass(frozen=True)
class Account:
    """A Vitally account with its traits under canonical names (data-model.md)."""

    id: str
    name: str
    updated_at: datetime
    external_id: str | None = None
    created_at: datetime | None = None
    mrr: float | None = None
    segments: frozenset[str] = frozenset()
    key_roles: Mapping[str, str] = field(default_factory=dict)  # role label -> Vitally user id
    key_role_emails: Mapping[str, str] = field(default_factory=dict)  # role label -> that person's email
    # Vitally's own owner attributes that are set (`accountOwnerId`, `csmId`, `accountExecutiveId`
    # -> a Vitally user id): an account can be owned through them alone, without a key role.
    owner_ids: Mapping[str, str] = field(default_factory=dict)
    # When the account churned (Vitally's `churnedAt`); a churned account leaves every book.
    churned_at: datetime | None = None
    # Who holds each role the rules know (`csm_role`, `owner_roles`, ...): its key roles under the
    # rules' names, and the owner attributes read as roles (`core.records.parse_account` fills
    # them in from the configured labels). None: the key roles as they are (an Account built by hand).
    role_holders: Mapping[str, str] | None = None
    role_holder_emails: Mapping[str, str] | None = None
    # role -> where it was read: "key role", or the owner attribute (`csmId`) that gave it.
    role_sources: Mapping[str, str] | None = None
    domain: str | None = None
    forecasted_mrr: float | None = None
    invoices: tuple[Invoice, ...] | None = None
    product_spend: Mapping[str, float] | None = None
    paid_products: tuple[str, ...] | None = None
    activated_products: tuple[str, ...] | None = None
    plan: str | None = None
    annual_plan: bool | None = None
    first_paid_at: date | None = None
    startup_plan_ends_at: date | None = None
    startup_credits_total: float | None = None
    startup_credits_used: float | None = None
    billing_limits: Mapping[str, float] | None = None
    employee_count: int | None = None
    harmonic_headcount: int | None = None
    harmonic_headcount_180d: int | None = None
    harmonic_last_funding_date: date | None = None
    # Web and social traction (Harmonic's traction metrics): now and 180 days ago.
    harmonic_web_traffic: int | None = None
    harmonic_web_traffic_180d: int | None = None
    harmonic_social_followers: int | None = None
    harmonic_social_followers_180d: int | None = None
    ocean_cool_company: bool | None = None  # flagged a 'cool company' in ocean.io
    estimated_revenue: float | None = None
    industry: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2 after normalisation; None: unknown or names no country
    icp_score: int | None = None
    user_count: int | None = None
    users_by_country: Mapping[str, int] | None = None  # ISO2 -> count (users located in no country left out)
    business_email: bool | None = None
    autocapture_pct: float | None = None
    custom_event_pct: float | None = None
    actions_count: int | None = None
    project_count: int | None = None
    data_destinations: tuple[str, ...] | None = None
    billing_page_views_30d: int | None = None
    slack_channel: str | None = None
    lead_disqualified_at: date | None = None
    is_b2b: bool | None = None
    has_mobile_app: bool | None = None
    is_ai_product: bool | None = None
    # What the daemon itself writes, as read back (trait name -> value), for diffing.
    written: Mapping[str, object] = field(default_factory=dict)

    @property
    def arr(self) -> float | None:
        return None if self.mrr is None else 12 * self.mrr

    @property
    def roles(self) -> Mapping[str, str]:
        """Role (as the rules name it) -> the Vitally user holding it, from key roles and owner
        attributes."""
        return self.key_roles if self.role_holders is None else self.role_holders

    @property
    def role_emails(self) -> Mapping[str, str]:
        """Role (as the rules name it) -> its holder's email, casefolded (key roles only carry one)."""
        return self.key_role_emails if self.role_holder_emails is None else self.role_holder_emails

    def role_source(self, role: str) -> str:
        """How the account holds `role`: "key role", or the owner attribute that names its holder."""
        if self.role_sources is None:
            return "key role"
        return self.role_sources.get(role, "key role")

    @property
    def churned(self) -> bool:
        return self.churned_at is not None


_ACCOUNT_FIELDS = fields(Account)
_ACCOUNT_NAMES = frozenset(f.name for f in _ACCOUNT_FIELDS)
_ACCOUNT_REQUIRED = frozenset(f.name for f in _ACCOUNT_FIELDS if f.default is MISSING and f.default_factory is MISSING)
_ACCOUNT_DEFAULTS: Mapping[str, Any] = {f.name: f.default for f in _ACCOUNT_FIELDS if f.default is not MISSING}
_ACCOUNT_FACTORIES: Mapping[str, Callable[[], Any]] = {
    f.name: f.default_factory for f in _ACCOUNT_FIELDS if f.default_factory is not MISSING
}


def new_account(values: Mapping[str, Any]) -> Account:
    """`Account(**values)`, the same instance (equal, same fields and defaults), made without the
    frozen dataclass's `__init__`, which sets its 63 fields one `object.__setattr__` call at a time
    (18 µs an account, a tenth of parsing one: `core.records.parse_account` makes 100,000 a
    cold cycle). The checks `__init__` makes are kept: every name a field, the required ones given;
    a `TypeError` otherwise."""
    if not values.keys() <= _ACCOUNT_NAMES or not values.keys() >= _ACCOUNT_REQUIRED:
        unknown = sorted(values.keys() - _ACCOUNT_NAMES)
        missing = sorted(_ACCOUNT_REQUIRED - values.keys())
        raise TypeError(f"Account: unknown fields {unknown}, missing fields {missing}")
    account = object.__new__(Account)
    attributes = account.__dict__  # frozen forbids setattr, not filling the instance's dictionary
    attributes.update(_ACCOUNT_DEFAULTS)
    for name, factory in _ACCOUNT_FACTORIES.items():
        if name not in values:
            attributes[name] = factory()
    attributes.update(values)
    return account


@dataclass(frozen=True, slots=True)
class Lead:
    """A Salesforce Lead. Slotted: a cycle at 100,000 accounts keeps tens of thousands parsed (an
    account's context holds its linked leads), and an instance of these 29 fields without slots
    held a dictionary of its own, about 1,700 bytes against 330."""

    id: str
    system_modstamp: datetime
    email: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    role: str | None = None
    sub_role: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2, or the text as typed when it names no country
    employees: int | None = None
    annual_revenue: float | None = None
    industry: str | None = None
    lead_source: str | None = None
    status: str | None = None
    owner_id: str | None = None
    is_converted: bool = False
    form_text: str | None = None
    vitally_account_id: str | None = None
    created_date: datetime | None = None
    lead_score: float | None = None
    sync_key: str | None = None
    routing_rule: str | None = None
    routing_reason: str | None = None
    classification: str | None = None
    converted_date: date | None = None
    converted_opportunity_id: str | None = None
    # Deleted (or merged away) in Salesforce, as QueryAll reads it: only crm-sync's own leads are
    # kept in the mirror once deleted (`sync.ingest`), so that the deletion is read as a person's "no".
    is_deleted: bool = False
    # Merged away in Salesforce: the surviving lead (`MasterRecordId`, set on the deleted one).
    master_record_id: str | None = None
    # Not a Salesforce field: set on the surviving lead as an account's context shows it
    # (`sync.facts`), the Id of crm-sync's lead for that account merged into it.
    merged_from: str | None = None
    # Not a Salesforce field: the SystemModstamp of the first version crm-sync read with the lead's
    # current Status (`core.records.STATUS_SINCE`, kept by `sync.ingest`): when a person moved it
    # there, as near as crm-sync saw it, which a later edit of another field does not move.
    status_since: datetime | None = None


@dataclass(frozen=True)
class SfUser:
    id: str
    name: str
    email: str | None
    is_active: bool


@dataclass(frozen=True)
class Opportunity:
    id: str
    account_id: str | None
    stage_name: str | None
    close_date: date | None
    loss_reason: str | None
    owner_id: str | None


@dataclass(frozen=True)
class SfAccount:
    id: str
    name: str | None
    website: str | None
    vitally_account_id: str | None
    owner_id: str | None
