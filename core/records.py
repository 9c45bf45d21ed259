"""Parse the services' raw records into typed records, at the connector boundary.

A malformed record raises `RecordError` naming the record and the field at fault; the caller
reports it and skips the record. Absent or null traits are unknown (None), never zero.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import attrgetter
from typing import Annotated, Any, TypeVar

import msgspec

from core.countries import normalise_country
from core.decoding import decode_stored
from core.errors import RecordError
from core.model import Account, Invoice, Lead, Opportunity, SfAccount, SfUser, new_account

__all__ = [
    "DEFAULT_KEY_ROLE_LABELS",
    "DEFAULT_OWNER_FIELDS",
    "DEFAULT_TRAIT_KEYS",
    "STATUS_SINCE",
    "account_json_parser",
    "parse_account",
    "parse_account_json",
    "parse_lead",
    "parse_opportunity",
    "parse_sf_account",
    "parse_timestamp",
    "parse_user",
]

# Canonical field -> Vitally trait key (data-model.md); a deployment overrides these in the config.
DEFAULT_TRAIT_KEYS: Mapping[str, str] = {
    "domain": "domain",
    "forecasted_mrr": "forecasted_mrr",
    "invoices": "invoices",
    "product_spend": "product_spend",
    "paid_products": "paidProducts",
    "activated_products": "activated_products",
    "plan": "plan",
    "annual_plan": "annual_plan",
    "first_paid_at": "first_paid_at",
    "startup_plan_ends_at": "startup_plan_ends_at",
    "startup_credits_total": "startup_credits_total",
    "startup_credits_used": "startup_credits_used",
    "billing_limits": "billing_limits",
    "employee_count": "employee_count",
    "harmonic_headcount": "harmonic_headcount",
    "harmonic_headcount_180d": "harmonic_headcount_180d",
    "harmonic_last_funding_date": "harmonic_last_funding_date",
    "harmonic_web_traffic": "harmonic_web_traffic",
    "harmonic_web_traffic_180d": "harmonic_web_traffic_180d",
    "harmonic_social_followers": "harmonic_social_followers",
    "harmonic_social_followers_180d": "harmonic_social_followers_180d",
    "ocean_cool_company": "ocean_cool_company",
    "estimated_revenue": "estimated_revenue",
    "industry": "industry",
    "country": "country",
    "icp_score": "icp_score",
    "user_count": "user_count",
    "users_by_country": "users_by_country",
    "business_email": "business_email",
    "autocapture_pct": "autocapture_pct",
    "custom_event_pct": "custom_event_pct",
    "actions_count": "actions_count",
    "project_count": "project_count",
    "data_destinations": "data_destinations",
    "billing_page_views_30d": "billing_page_views_30d",
    "slack_channel": "slack_channel",
    "lead_disqualified_at": "lead_disqualified_at",
    "is_b2b": "is_b2b",
    "has_mobile_app": "has_mobile_app",
    "is_ai_product": "is_ai_product",
}

# A Vitally key-role label -> the role the rules know it as (`csm_role`, `owner_roles`, ...). Vitally's
# default key roles are "Customer Success Manager" and "Account Executive" (V-keyroles); the
# rules' defaults name the first "CSM". A label not listed keeps its own name.
DEFAULT_KEY_ROLE_LABELS: Mapping[str, str] = {"Customer Success Manager": "CSM"}

# Vitally's owner attributes of an account (V-accounts: Vitally user ids) -> the role each counts
# as when no key role gives that role already ("": not read). The handbook's account owner is
# the TAM (segment AM Managed); a workspace whose account owner is its CSM says so in the config.
DEFAULT_OWNER_FIELDS: Mapping[str, str] = {
    "accountOwnerId": "TAM",
    "csmId": "CSM",
    "accountExecutiveId": "Account Executive",
}

T = TypeVar("T")


class _Bad(ValueError):
    """A value of the wrong shape; turned into a RecordError with the field's name. A ValueError, so
    that callers of `parse_timestamp` catch it as the standard parsers' failure."""


def parse_timestamp(value: object) -> datetime:
    """ISO 8601 (with `Z`, an offset, or Salesforce's `+0000`) → aware datetime (naive = UTC);
    anything else raises ValueError."""
    if not isinstance(value, str) or not value:
        raise _Bad(f"expected an ISO 8601 timestamp, got {_show(value)}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"  # Salesforce writes +0000
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Bad(f"expected an ISO 8601 timestamp, got {_show(value)}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _show(value: object) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an integer of more than 4,300 digits; a nesting too deep
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= 60 else text[:57] + "..."


MAX_MAGNITUDE = 1e15
"""The largest number a record may carry in a field crm-sync reads (amounts, counts, scores):
beyond any real book, and small enough that no rule's arithmetic (12 × MRR, growth) overflows."""


def _number(value: object) -> float:
    kind = type(value)
    # The common cases first, without a call: this runs millions of times a cycle. (NaN and the
    # infinities fail the comparison; an int compares exactly with the float bound.)
    if kind is float and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    if kind is int and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    if kind is int or kind is float:
        number = _in_range(value)  # type: ignore[arg-type]
        return number
    if isinstance(value, bool):
        raise _Bad(f"expected a number, got {_show(value)}")
    if isinstance(value, int | float):
        return _in_range(value)
    if isinstance(value, str):
        try:
            number = float(value.replace(",", "").strip())
        except ValueError:
            raise _Bad(f"expected a number, got {_show(value)}") from None
        return _in_range(number, value)
    raise _Bad(f"expected a number, got {_show(value)}")


def _in_range(value: float, shown: object = None) -> float:
    """`value` as a float when it is finite and within ±`MAX_MAGNITUDE`. An integer too large for
    a float (JSON allows any number of digits) is out of range, not an OverflowError."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Bad(f"expected a finite number, got {_show(value if shown is None else shown)}")
    if abs(number) > MAX_MAGNITUDE:
        raise _Bad(f"expected a number within ±10^15, got {_show(value if shown is None else shown)}")
    return number


def _money(value: object) -> float:
    kind = type(value)
    if (kind is float or kind is int) and 0 <= value <= MAX_MAGNITUDE:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]  # the common case, as `_number` reads it
    number = _number(value)
    if number < 0:
        raise _Bad(f"expected an amount ≥ 0, got {_show(value)}")
    return number


def _signed_int(value: object) -> int:
    number = _number(value)
    if not number.is_integer():
        raise _Bad(f"expected a whole number, got {_show(value)}")
    return int(number)


def _count(value: object) -> int:
    if type(value) is int and 0 <= value <= MAX_MAGNITUDE:
        return value  # the common case: exactly what the checks below return for it
    number = _signed_int(value)
    if number < 0:
        raise _Bad(f"expected a count ≥ 0, got {_show(value)}")
    return number


def _percent(value: object) -> float:
    number = _number(value)
    if not 0 <= number <= 100:
        raise _Bad(f"expected a percentage in [0, 100], got {_show(value)}")
    return number


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise _Bad(f"expected true or false, got {_show(value)}")


def _text(value: object) -> str:
    if type(value) is str and value.isascii():
        return value  # the common case: ASCII text holds no lone surrogate
    if not isinstance(value, str):
        raise _Bad(f"expected text, got {_show(value)}")
    if not _encodable(value):
        raise _Bad(f"expected text, got invalid Unicode (a lone surrogate) in {_show(value)}")
    return value


def _encodable(text: str) -> bool:
    """JSON can carry a lone UTF-16 surrogate (`"\\ud800"`), which is no character: nothing
    downstream could print or store it as UTF-8."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _date(value: object) -> date:
    if not isinstance(value, str):
        raise _Bad(f"expected a date, got {_show(value)}")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise _Bad(f"expected a date (YYYY-MM-DD), got {_show(value)}") from None


def _country(value: object) -> str | None:
    """The ISO code of a country named or coded in text; None for text that names none ("N/A",
    "Remote", a typo): unknown, as an absent value is. Country fields are free text in the real
    services (Salesforce's `Lead.Country` is a string of up to 80 characters unless the org turns
    on State and Country/Territory picklists; a Vitally trait holds whatever an integration wrote),
    so such a value is not a malformed record: the rules that need the country read it as unknown
    and the record's other fields still count. A value that is not text is malformed."""
    return normalise_country(_text(value))


def _lead_country(value: object) -> str | None:
    """A lead's country: its ISO code, or the text as typed when it names no country (the lead
    score says it is not recognised; the round robin's region is the default one either way)."""
    text = _text(value)
    return normalise_country(text) or text.strip() or None


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"expected a list of text, got {_show(value)}")
    return tuple(value)


def _money_map(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise _Bad(f"expected an object of amounts, got {_show(value)}")
    return {str(k): _money(v) for k, v in value.items()}


def _country_counts(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise _Bad(f"expected an object of country → count, got {_show(value)}")
    counts: dict[str, int] = {}
    for key, count in value.items():
        users = _count(count)  # a count that is not one is malformed whatever its key
        code = _country(key)
        if code is None:
            # Users located in no country: an IP-location database's buckets for none ("A1" an
            # anonymous proxy, "A2" a satellite provider, "O1" other, "EU" and "AP" a continent
            # only), or "Unknown". They count toward no region.
            continue
        counts[code] = counts.get(code, 0) + users
    return counts


def _invoices(value: object) -> tuple[Invoice, ...]:
    if not isinstance(value, list):
        raise _Bad(f"expected a list of invoices, got {_show(value)}")
    invoices = []
    for item in value:
        if not isinstance(item, dict) or "month" not in item or "amount" not in item:
            raise _Bad(f"expected invoices as {{month, amount}}, got {_show(item)}")
        month = _text(item["month"])
        if len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isdigit():
            raise _Bad(f"expected an invoice month YYYY-MM, got {_show(month)}")
        invoices.append(Invoice(month, _money(item["amount"])))
    return _by_month(invoices)


def _by_month(invoices: list[Invoice]) -> tuple[Invoice, ...]:
    """The invoices oldest first, as every rule reads them (the last one is the latest month's):
    the trait's list is a billing system's export, in whatever order it keeps (found by a review:
    a list newest first made "a last invoice greater than $1500" read the oldest). Invoices of one
    month keep their order."""
    return tuple(sorted(invoices, key=_MONTH))


_MONTH = attrgetter("month")


_TRAIT_PARSERS: Mapping[str, Callable[[object], object]] = {
    "domain": _text,
    "forecasted_mrr": _money,
    "invoices": _invoices,
    "product_spend": _money_map,
    "paid_products": _str_list,
    "activated_products": _str_list,
    "plan": _text,
    "annual_plan": _bool,
    "first_paid_at": _date,
    "startup_plan_ends_at": _date,
    "startup_credits_total": _money,
    "startup_credits_used": _money,
    "billing_limits": _money_map,
    "employee_count": _count,
    "harmonic_headcount": _count,
    "harmonic_headcount_180d": _count,
    "harmonic_last_funding_date": _date,
    "harmonic_web_traffic": _count,
    "harmonic_web_traffic_180d": _count,
    "harmonic_social_followers": _count,
    "harmonic_social_followers_180d": _count,
    "ocean_cool_company": _bool,
    "estimated_revenue": _money,
    "industry": _text,
    "country": _country,
    "icp_score": _signed_int,
    "user_count": _count,
    "users_by_country": _country_counts,
    "business_email": _bool,
    "autocapture_pct": _percent,
    "custom_event_pct": _percent,
    "actions_count": _count,
    "project_count": _count,
    "data_destinations": _str_list,
    "billing_page_views_30d": _count,
    "slack_channel": _text,
    "lead_disqualified_at": _date,
    "is_b2b": _bool,
    "has_mobile_app": _bool,
    "is_ai_product": _bool,
}


# Parsers whose common case `_account_traits` takes inline (a call less for most of the 40 traits
# of 100,000 accounts): each kind's test is that parser's own first branch, with the same result.
_INLINE: Mapping[Callable[[object], object], int] = {_bool: 1, _count: 2, _money: 3, _text: 4}
# (`_money`'s inline case is a float: an int amount goes through `_money`, which makes it a float.)


@functools.cache
def _parsers_by_key(
    trait_keys: tuple[tuple[str, str], ...],
) -> dict[str, tuple[str, Callable[[object], object], int]]:
    """Vitally trait key → (canonical field, parser, its `_INLINE` kind or 0), for the configured
    trait keys."""
    renamed = dict(trait_keys)
    return {
        renamed.get(canonical, canonical): (canonical, parse, _INLINE.get(parse, 0))
        for canonical, parse in _TRAIT_PARSERS.items()
    }


def _field(system: str, record_id: str, name: str, value: object, parse: Callable[[object], T]) -> T:
    try:
        return parse(value)
    except _Bad as bad:
        raise RecordError(system, record_id, name, str(bad)) from None


def parse_account(
    raw: Mapping[str, Any],
    trait_keys: Mapping[str, str] = DEFAULT_TRAIT_KEYS,
    written_keys: tuple[str, ...] = (),
    key_role_labels: Mapping[str, str] = DEFAULT_KEY_ROLE_LABELS,
    owner_fields: Mapping[str, str] = DEFAULT_OWNER_FIELDS,
) -> Account:
    """A Vitally account object → `Account`; `written_keys` are the traits the daemon writes, kept
    as read so the planner (`sync.plan`) can diff against them. The account's roles
    (`Account.roles`) are its key roles, each under the name `key_role_labels` gives its label,
    then each owner attribute set (`owner_fields`: attribute → role) for a role no key role gives."""
    record_id = raw.get("id")
    if not isinstance(record_id, str) or not record_id or not _encodable(record_id):
        raise RecordError("vitally", _show(record_id), "id", "missing account id")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or not _encodable(name):
        raise RecordError("vitally", record_id, "name", f"expected a name, got {_show(name)}")
    updated_at = _field("vitally", record_id, "updatedAt", raw.get("updatedAt"), parse_timestamp)
    created = raw.get("createdAt")
    created_at = None if created is None else _field("vitally", record_id, "createdAt", created, parse_timestamp)
    mrr_raw = raw.get("mrr")
    mrr = None if mrr_raw is None else _field("vitally", record_id, "mrr", mrr_raw, _money)
    external = raw.get("externalId")
    traits, values = _account_traits(record_id, raw.get("traits"), trait_keys)
    segments = _account_segments(record_id, raw.get("segments"))
    key_roles, key_role_emails = _account_key_roles(record_id, raw.get("keyRoles"))
    owner_ids = _account_owner_ids(record_id, raw, owner_fields)
    churned = raw.get("churnedAt")
    churned_at = None if churned is None else _field("vitally", record_id, "churnedAt", churned, parse_timestamp)
    written = _written_traits(record_id, traits, written_keys)
    roles = _roles(key_roles, key_role_emails, owner_ids, key_role_labels, owner_fields)
    # The typed traits, then the record's own fields: `_TRAIT_PARSERS` names other Account fields
    # than these (tests/test_records.py checks it), so nothing is overwritten.
    values.update(
        id=record_id,
        name=name,
        updated_at=updated_at,
        external_id=external if isinstance(external, str) else None,
        created_at=created_at,
        mrr=mrr,
        segments=segments,
        key_roles=key_roles,
        key_role_emails=key_role_emails,
        owner_ids=owner_ids,
        churned_at=churned_at,
        role_holders=roles[0],
        role_holder_emails=roles[1],
        role_sources=roles[2],
        written=written,
    )
    return new_account(values)


def _account_traits(
    record_id: str, traits: object, trait_keys: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, object]]:
    """(the raw traits object, the typed values of the traits crm-sync reads, by canonical name)."""
    if traits is None:
        traits = {}
    if not isinstance(traits, dict):
        raise RecordError("vitally", record_id, "traits", f"expected an object, got {_show(traits)}")
    values: dict[str, object] = {}
    parsers = _parsers_by_key(tuple(trait_keys.items()))
    for key, value in traits.items():
        entry = parsers.get(key)
        if entry is None or value is None:
            continue
        canonical, parse, kind = entry
        given = type(value)
        if kind and (
            (kind == 1 and given is bool)  # _bool
            or (kind == 2 and given is int and 0 <= value <= MAX_MAGNITUDE)  # _count
            or (kind == 3 and given is float and 0 <= value <= MAX_MAGNITUDE)  # _money
            or (kind == 4 and given is str and value.isascii())  # _text
        ):
            values[canonical] = value
            continue
        try:
            values[canonical] = parse(value)
        except _Bad as bad:
            raise RecordError("vitally", record_id, f"traits.{key}", str(bad)) from None
    return traits, values


def _account_segments(record_id: str, segment_list: object) -> frozenset[str]:
    """The names of the segments the account is in."""
    segment_list = segment_list or []
    if not isinstance(segment_list, list):
        raise RecordError("vitally", record_id, "segments", f"expected a list, got {_show(segment_list)}")
    return frozenset(s["name"] for s in segment_list if isinstance(s, dict) and isinstance(s.get("name"), str))


def _account_key_roles(record_id: str, role_list: object) -> tuple[dict[str, str], dict[str, str]]:
    """(key role label -> the user's id or name, key role label -> the user's email, casefolded)."""
    role_list = role_list or []
    if not isinstance(role_list, list):
        raise RecordError("vitally", record_id, "keyRoles", f"expected a list, got {_show(role_list)}")
    key_roles: dict[str, str] = {}
    key_role_emails: dict[str, str] = {}
    for role in role_list:
        # {keyRole: {label}, vitallyUser: {id, name, email}}; either part may be null.
        key_role = role.get("keyRole") if isinstance(role, dict) else None
        user = role.get("vitallyUser") if isinstance(role, dict) else None
        if not isinstance(role, dict) or not isinstance(key_role, dict | None) or not isinstance(user, dict | None):
            raise RecordError("vitally", record_id, "keyRoles", f"expected key role objects, got {_show(role)}")
        label = (key_role or {}).get("label")
        user = user or {}
        if isinstance(label, str):
            key_roles[label] = str(user.get("id") or user.get("name") or "")
            if isinstance(user.get("email"), str):
                key_role_emails[label] = user["email"].casefold()
    return key_roles, key_role_emails


def _account_owner_ids(record_id: str, raw: Mapping[str, Any], owner_fields: Mapping[str, str]) -> dict[str, str]:
    """The owner attributes that are set: attribute → Vitally user id (null or absent: unset). An
    attribute configured to no role ("") is not read."""
    owners: dict[str, str] = {}
    for attribute, role in owner_fields.items():
        value = raw.get(attribute) if role else None
        if value is None or value == "":
            continue
        owners[attribute] = _field("vitally", record_id, attribute, value, _text)
    return owners


_Roles = tuple[dict[str, str] | None, dict[str, str] | None, dict[str, str] | None]


def _roles(
    key_roles: Mapping[str, str],
    emails: Mapping[str, str],
    owner_ids: Mapping[str, str],
    labels: Mapping[str, str],
    owner_fields: Mapping[str, str],
) -> _Roles:
    """(role → holder, role → holder's email, role → where it was read), or Nones when they are
    the key roles as they are (no label renamed, no owner attribute set: most accounts)."""
    if not owner_ids and not any(label in labels for label in key_roles):
        return None, None, None
    holders: dict[str, str] = {}
    role_emails: dict[str, str] = {}
    sources: dict[str, str] = {}
    for label, user in key_roles.items():
        role = labels.get(label, label)
        if role in holders:
            continue
        holders[role], sources[role] = user, "key role"
        if label in emails:
            role_emails[role] = emails[label]
    for attribute, user in owner_ids.items():
        role = owner_fields[attribute]
        if role not in holders:
            holders[role], sources[role] = user, attribute
    return holders, role_emails, sources


def _written_traits(record_id: str, traits: Mapping[str, Any], written_keys: tuple[str, ...]) -> dict[str, Any]:
    """The traits crm-sync writes, as read (`None` when absent)."""
    written = {key: traits.get(key) for key in written_keys}
    _check_written(record_id, written)
    return written


def _check_written(record_id: str, written: Mapping[str, object]) -> None:
    """The traits crm-sync writes are shown in the plan as `previous`: text must be text and
    numbers finite and in range."""
    for key, value in written.items():
        kind = type(value)
        # The common cases first, without a call (eleven traits an account, most never written).
        if value is None or ((kind is float or kind is int) and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE):  # type: ignore[operator]
            continue
        if isinstance(value, str) and not _encodable(value):
            _field("vitally", record_id, f"traits.{key}", value, _text)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            _field("vitally", record_id, f"traits.{key}", value, _number)


def _sf_get(raw: Mapping[str, Any], obj: str, name: str, parse: Callable[[object], T]) -> T | None:
    value = raw.get(name)
    if value is None:
        return None
    # `_field` inlined: called for every field of every record each cycle (1.6 million times a
    # cycle at 100,000 accounts), so the error's system and id are made only when it fails.
    try:
        return parse(value)
    except _Bad as bad:
        raise RecordError(f"salesforce {obj}", str(raw.get("Id")), name, str(bad)) from None


def _optional_text(value: object) -> str | None:
    """A field that only adds to what the record says (a merged lead's `MasterRecordId`: the lead
    is deleted either way): its text, or None when it is not text. Such a value must not make the
    record malformed, which would drop what matters about it (crm-sync's deleted lead, a "no")."""
    try:
        return None if value is None else _text(value)
    except _Bad:
        return None


def _sf_id(raw: Mapping[str, Any], obj: str) -> str:
    record_id = raw.get("Id")
    if not isinstance(record_id, str) or not record_id or not _encodable(record_id):
        raise RecordError(f"salesforce {obj}", _show(record_id), "Id", "missing Id")
    return record_id


# The key crm-sync adds to a Lead record it mirrors (`sync.ingest`): the SystemModstamp of the first
# version it read with the lead's current Status. Salesforce keeps no date of a status change (Field
# History Tracking aside), and SystemModstamp moves with every later edit of any field: a marketing
# tool touching a disqualified lead would restart its cool-off.
STATUS_SINCE = "crm_sync_status_since"


def parse_lead(raw: Mapping[str, Any]) -> Lead:
    """A Salesforce Lead record → `Lead`. Its country is `CountryCode` (the ISO code an org with
    State and Country/Territory picklists keeps) when set, else `Country` (a name or a code)."""
    record_id = _sf_id(raw, "Lead")
    modstamp = _sf_get(raw, "Lead", "SystemModstamp", parse_timestamp)
    if modstamp is None:
        raise RecordError("salesforce Lead", record_id, "SystemModstamp", "missing SystemModstamp")
    country_field = "CountryCode" if raw.get("CountryCode") not in (None, "") else "Country"
    country = raw.get(country_field)
    return Lead(
        id=record_id,
        system_modstamp=modstamp,
        email=_sf_get(raw, "Lead", "Email", _text),
        last_name=_sf_get(raw, "Lead", "LastName", _text),
        company=_sf_get(raw, "Lead", "Company", _text),
        title=_sf_get(raw, "Lead", "Title", _text),
        role=_sf_get(raw, "Lead", "Role__c", _text),
        sub_role=_sf_get(raw, "Lead", "Sub_Role__c", _text),
        country=None if country in (None, "") else _sf_get(raw, "Lead", country_field, _lead_country),
        employees=_sf_get(raw, "Lead", "NumberOfEmployees", _count),
        annual_revenue=_sf_get(raw, "Lead", "AnnualRevenue", _money),
        industry=_sf_get(raw, "Lead", "Industry", _text),
        lead_source=_sf_get(raw, "Lead", "LeadSource", _text),
        status=_sf_get(raw, "Lead", "Status", _text),
        owner_id=_sf_get(raw, "Lead", "OwnerId", _text),
        is_converted=bool(_sf_get(raw, "Lead", "IsConverted", _bool)),
        form_text=_sf_get(raw, "Lead", "Form_Text__c", _text),
        vitally_account_id=_sf_get(raw, "Lead", "Vitally_Account_Id__c", _text),
        created_date=_sf_get(raw, "Lead", "CreatedDate", parse_timestamp),
        lead_score=_sf_get(raw, "Lead", "Lead_Score__c", _number),
        sync_key=_sf_get(raw, "Lead", "Sync_Key__c", _text),
        routing_rule=_sf_get(raw, "Lead", "Routing_Rule__c", _text),
        routing_reason=_sf_get(raw, "Lead", "Routing_Reason__c", _text),
        classification=_sf_get(raw, "Lead", "Classification__c", _text),
        converted_date=_sf_get(raw, "Lead", "ConvertedDate", _date),
        converted_opportunity_id=_sf_get(raw, "Lead", "ConvertedOpportunityId", _text),
        is_deleted=bool(_sf_get(raw, "Lead", "IsDeleted", _bool)),
        master_record_id=_optional_text(raw.get("MasterRecordId")),
        # Most leads were first read in their status: the note is their own stamp, parsed once.
        status_since=modstamp
        if raw.get(STATUS_SINCE) == raw.get("SystemModstamp")
        else _status_since(raw.get(STATUS_SINCE)),
    )


def _status_since(value: object) -> datetime | None:
    """crm-sync's own note of when the lead's status was first seen (None when it has none or it
    does not read: never an error of the record's, which Salesforce sent without it)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except (RecordError, ValueError):
        return None


def _sf_id_and_stamp(raw: Mapping[str, Any], obj: str) -> str:
    """The record's Id, once its SystemModstamp (when selected) is known to be readable: the
    incremental read orders and resumes by it."""
    record_id = _sf_id(raw, obj)
    _sf_get(raw, obj, "SystemModstamp", parse_timestamp)
    return record_id


def parse_user(raw: Mapping[str, Any]) -> SfUser:
    record_id = _sf_id_and_stamp(raw, "User")
    return SfUser(
        id=record_id,
        name=_sf_get(raw, "User", "Name", _text) or record_id,
        email=_sf_get(raw, "User", "Email", _text),
        is_active=bool(_sf_get(raw, "User", "IsActive", _bool)),
    )


def parse_opportunity(raw: Mapping[str, Any]) -> Opportunity:
    record_id = _sf_id_and_stamp(raw, "Opportunity")
    return Opportunity(
        id=record_id,
        account_id=_sf_get(raw, "Opportunity", "AccountId", _text),
        stage_name=_sf_get(raw, "Opportunity", "StageName", _text),
        close_date=_sf_get(raw, "Opportunity", "CloseDate", _date),
        loss_reason=_sf_get(raw, "Opportunity", "Loss_Reason__c", _text),
        owner_id=_sf_get(raw, "Opportunity", "OwnerId", _text),
    )


def parse_sf_account(raw: Mapping[str, Any]) -> SfAccount:
    record_id = _sf_id_and_stamp(raw, "Account")
    return SfAccount(
        id=record_id,
        name=_sf_get(raw, "Account", "Name", _text),
        website=_sf_get(raw, "Account", "Website", _text),
        vitally_account_id=_sf_get(raw, "Account", "Vitally_Account_Id__c", _text),
        owner_id=_sf_get(raw, "Account", "OwnerId", _text),
    )


# -- accounts decoded straight from their JSON text (issue #17) -------------------------------------
#
# A cycle parses every mirrored account from the text it stored: decoding that text into dicts and
# lists, then walking them with the parsers above, is two passes over each record (18 µs an account
# at the default trait keys). `parse_account_json` decodes it once, with msgspec, straight into a
# structure typed after `_TRAIT_PARSERS`, then makes the `Account` from it (11-12 µs). The typed
# decoding is at least as strict as the parsers: every value it accepts, the parser of its field
# accepts and reads the same (an amount given as an integer is the same float; a count the same
# int); anything it refuses (a wrong type, a number out of range, a missing id, JSON msgspec does not
# read) goes to `parse_account` over the decoded text, so every `Account` and every `RecordError` is
# the one `parse_account` gives (tests/test_records_json.py checks it over generated records).

_Money = Annotated[float, msgspec.Meta(ge=0, le=MAX_MAGNITUDE)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=int(MAX_MAGNITUDE))]


def _typed_invoices(invoices: list[Invoice]) -> tuple[Invoice, ...]:
    """The invoices msgspec decoded straight into `Invoice`s (2.5 µs an account fewer than a
    structure of their own copied into them), checked as `_invoices` checks them."""
    for invoice in invoices:
        month, amount = invoice.month, invoice.amount
        if len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isdigit():
            raise _Bad("invoice month")  # `_invoices` words the error: the caller asks it
        if not 0 <= amount <= MAX_MAGNITUDE:
            raise _Bad("invoice amount")  # `_money`'s range, as `_Money` holds it elsewhere
    return _by_month(invoices)


# Each parser's type for msgspec, and what is done to the value msgspec gives (None: nothing).
_TYPED: Mapping[Callable[[object], object], tuple[Any, Callable[[Any], object] | None]] = {
    _text: (str, None),
    _money: (_Money, None),
    _count: (_Count, None),
    _signed_int: (Annotated[int, msgspec.Meta(ge=-int(MAX_MAGNITUDE), le=int(MAX_MAGNITUDE))], None),
    _percent: (Annotated[float, msgspec.Meta(ge=0, le=100)], None),
    _bool: (bool, None),
    _date: (str, _date),
    _country: (str, _country),
    _str_list: (list[str], tuple),
    _money_map: (dict[str, _Money], None),
    _country_counts: (dict[str, _Count], _country_counts),
    _invoices: (list[Invoice], _typed_invoices),
}

# The account's own members, besides its traits and owner attributes.
_ACCOUNT_MEMBERS = ("id", "name", "updatedAt", "createdAt", "externalId", "mrr", "churnedAt", "segments", "keyRoles")


@dataclass(frozen=True)
class _AccountDecoder:
    decoder: msgspec.json.Decoder[Any]
    then: tuple[tuple[str, Callable[[Any], object]], ...]  # canonical trait -> its conversion
    canonical: tuple[str, ...]  # the traits structure's first fields: the canonical traits
    written: tuple[str, ...]  # the written trait keys, in the order of the structure's last fields
    owners: tuple[tuple[str, str], ...]  # owner attribute -> its field in the account structure


@functools.cache
def _account_decoder(
    trait_keys: tuple[tuple[str, str], ...], written_keys: tuple[str, ...], owner_fields: tuple[tuple[str, str], ...]
) -> _AccountDecoder | None:
    """The typed decoding for these settings, or None when they cannot have one (two fields read
    from one key, a written trait that is also read as a typed one): then every account takes
    `parse_account`'s path."""
    parsers = _parsers_by_key(trait_keys)  # key -> (canonical, parser, inline kind)
    fields: list[tuple[str, object, None]] = []
    rename: dict[str, str] = {}
    then: list[tuple[str, Callable[[Any], object]]] = []
    for key, (canonical, parse, _) in parsers.items():
        kind, convert = _TYPED.get(parse, (Any, parse))
        fields.append((canonical, kind | None, None))
        rename[canonical] = key
        if convert is not None:
            then.append((canonical, convert))
    written: list[tuple[str, str]] = []
    for number, key in enumerate(dict.fromkeys(written_keys)):
        if key in parsers:
            return None
        written.append((key, f"_written_{number}"))
        fields.append((f"_written_{number}", Any, None))
        rename[f"_written_{number}"] = key
    if len(set(rename.values())) != len(rename):
        return None
    traits = msgspec.defstruct("_TypedTraits", fields, rename=rename, omit_defaults=False)
    members: list[tuple[str, object, None]] = [(name, Any, None) for name in _ACCOUNT_MEMBERS]
    members.append(("traits", traits | None, None))
    owners: list[tuple[str, str]] = []
    for number, (attribute, role) in enumerate(owner_fields):
        if not role:
            continue
        if attribute in _ACCOUNT_MEMBERS or attribute == "traits":  # mypyc: no starred tuple here
            return None
        owners.append((attribute, f"_owner_{number}"))
        members.append((f"_owner_{number}", Any, None))
    account_rename = {field: attribute for attribute, field in owners}
    account = msgspec.defstruct("_TypedAccount", members, rename=account_rename)
    names = tuple(name for name, _, _ in fields[: len(parsers)])
    keys = tuple(key for key, _ in written)
    return _AccountDecoder(msgspec.json.Decoder(account), tuple(then), names, keys, tuple(owners))


def parse_account_json(
    text: str,
    trait_keys: Mapping[str, str] = DEFAULT_TRAIT_KEYS,
    written_keys: tuple[str, ...] = (),
    key_role_labels: Mapping[str, str] = DEFAULT_KEY_ROLE_LABELS,
    owner_fields: Mapping[str, str] = DEFAULT_OWNER_FIELDS,
) -> Account:
    """`parse_account(decode_stored(text), ...)`: the same `Account` or the same `RecordError`, for
    the JSON text of one Vitally account as crm-sync stored it, decoded once (see above)."""
    return account_json_parser(trait_keys, written_keys, key_role_labels, owner_fields)(text)


def account_json_parser(
    trait_keys: Mapping[str, str] = DEFAULT_TRAIT_KEYS,
    written_keys: tuple[str, ...] = (),
    key_role_labels: Mapping[str, str] = DEFAULT_KEY_ROLE_LABELS,
    owner_fields: Mapping[str, str] = DEFAULT_OWNER_FIELDS,
) -> Callable[[str], Account]:
    """`parse_account_json` with these settings, its typed decoding made once: for a caller that
    parses a whole mirror with the same settings."""
    typed = _account_decoder(tuple(trait_keys.items()), written_keys, tuple(owner_fields.items()))

    def parse(text: str) -> Account:
        if typed is not None:
            try:
                return _typed_account(typed, text, written_keys, key_role_labels, owner_fields)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, _Bad, RecordError):
                pass  # `parse_account` says what is wrong, as it always has
        return parse_account(decode_stored(text), trait_keys, written_keys, key_role_labels, owner_fields)

    return parse


def _typed_account(
    typed: _AccountDecoder,
    text: str,
    written_keys: tuple[str, ...],
    key_role_labels: Mapping[str, str],
    owner_fields: Mapping[str, str],
) -> Account:
    raw = typed.decoder.decode(text)
    record_id, name = raw.id, raw.name
    if type(record_id) is not str or not record_id or type(name) is not str or not name.strip():
        raise _Bad("id or name")  # msgspec never gives a lone surrogate: the rest of the checks hold
    traits = raw.traits
    if traits is None:
        values: dict[str, Any] = {}
        written = dict.fromkeys(written_keys)
    else:
        # By place: the canonical traits first (`zip` stops at their end), the written ones last.
        read = msgspec.structs.astuple(traits)
        values = {key: value for key, value in zip(typed.canonical, read, strict=False) if value is not None}
        for canonical, convert in typed.then:
            value = values.get(canonical)
            if value is not None:
                values[canonical] = convert(value)
        written = dict(zip(typed.written, read[len(typed.canonical) :], strict=True))
        _check_written(record_id, written)
    created, churned, external = raw.createdAt, raw.churnedAt, raw.externalId
    key_roles, key_role_emails = _account_key_roles(record_id, raw.keyRoles)
    owner_ids = _account_owner_ids(
        record_id, {attribute: getattr(raw, field) for attribute, field in typed.owners}, owner_fields
    )
    roles = _roles(key_roles, key_role_emails, owner_ids, key_role_labels, owner_fields)
    values.update(
        id=record_id,
        name=name,
        updated_at=parse_timestamp(raw.updatedAt),
        external_id=external if isinstance(external, str) else None,
        created_at=None if created is None else parse_timestamp(created),
        mrr=_money(raw.mrr) if raw.mrr is not None else None,
        segments=_account_segments(record_id, raw.segments),
        key_roles=key_roles,
        key_role_emails=key_role_emails,
        owner_ids=owner_ids,
        churned_at=None if churned is None else parse_timestamp(churned),
        role_holders=roles[0],
        role_holder_emails=roles[1],
        role_sources=roles[2],
        written=written,
    )
    return new_account(values)
