"""The sandbox's book generator: deterministic, covering every handbook situation, in wire shapes."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from sandbox.generator import (
    CASE_NAMES,
    MIN_FULL_COVERAGE,
    MIN_FULL_COVERAGE_REAL_ORG,
    REAL_ORG_CASE_NAMES,
    generate_book,
)

NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
TODAY = NOW.date()
PRIMARY = {"product_analytics", "session_replay", "feature_flags", "surveys", "data_warehouse", "error_tracking"}
ICP = {
    "AT", "CA", "FR", "DE", "JP", "NO", "SE", "GB", "US",  # tier 1
    "AU", "BE", "EE", "FI", "GE", "GG", "NL", "NZ", "PL", "PT", "SG",  # tier 2
}  # fmt: skip
OPEN_STATUSES = {"Open - Not Contacted", "Working"}
LEAD_SOURCES = {
    "Demo request", "Sales email", "Onboarding referral", "AE referral", "AM referral",
    "Trust center", "Campaign", "BDR", "Product-led",
}  # fmt: skip

# Every situation the brief asks for, spelled out so that a case silently dropped from the
# generator's table fails here.
REQUIRED_CASES = (
    "product_led.mrr_band", "product_led.scale_high_icp", "product_led.startup_rolloff",
    "product_led.forecast_spike", "product_led.am_referral", "new_business.onboarding_referral",
    "new_business.big_fish", "new_business.startup_credits", "new_business.ae_referral",
    "bdr.closed_lost_unresponsive", "new_business.demo_request", "new_business.sales_email",
    "new_business.trust_center", "new_business.campaign", "new_business.bdr_qualified",
    "near_miss.product_led.mrr_band.mrr_499", "near_miss.product_led.mrr_band.mrr_1668",
    "near_miss.product_led.mrr_band.employees_50", "near_miss.product_led.mrr_band.users_7",
    "near_miss.product_led.mrr_band.paying_2_months", "near_miss.allocation.new_owner.arr_19999",
    "boundary.allocation.new_owner.arr_20000", "guard.owned_key_role", "guard.am_managed",
    "guard.open_lead", "guard.open_opportunity", "guard.active_sales_segment", "guard.cool_off",
    "near_miss.guard.cool_off.91_days", "guard.slack_channel", "allocation.unowned_tam",
    "allocation.unowned_csm", "allocation.tae_handover", "allocation.tam_to_csm", "allocation.region_us",
    "allocation.region_eu", "allocation.region_singapore", "allocation.region_tie_hq",
    "allocation.singapore_csm_fallback", "allocation.no_users_hq", "onboarding.lead",
    "onboarding.not_business_email", "onboarding.direct_handover", "onboarding.spike",
    "onboarding.misconfigured", "onboarding.circle_back", "lifecycle.account_review",
    "lifecycle.csm_downgrade", "qualification.disqualify_low_mrr",
    "qualification.disqualify_single_product", "qualification.disqualify_credits",
    "qualification.nurture_growing", "qualification.nurture_early_implementation",
    "qualification.qualify", "signal.autocapture_no_actions", "signal.b2b_no_group_analytics",
    "signal.mobile_no_replay", "signal.ai_no_llm", "signal.flags_no_experiments",
    "signal.billing_page_views", "signal.billing_limits_close", "signal.competitor_destination",
    "signal.warehouse_destination", "signal.multi_project", "unknown.missing_employee_count",
    "unknown.null_mrr",
)  # fmt: skip

SF_PREFIX = {"Lead": "00Q", "User": "005", "Opportunity": "006", "Account": "001"}
SF_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%f%z"
VITALLY_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")


@pytest.fixture(scope="module")
def book() -> dict[str, Any]:
    return generate_book(300, seed=7, now=NOW)


# -- helpers: an independent reading of the raw records ---------------------------------------


def _accounts_with(book: dict[str, Any], case: str) -> list[dict[str, Any]]:
    wanted = {aid for aid, cases in book["_cases"]["accounts"].items() if case in cases}
    return [a for a in book["vitally"]["accounts"] if a["id"] in wanted]


def _all_cases(book: dict[str, Any]) -> set[str]:
    cases = book["_cases"]
    return {c for names in [*cases["accounts"].values(), *cases["leads"].values()] for c in names}


def _clean_accounts(book: dict[str, Any]) -> Iterator[dict[str, Any]]:
    malformed = book["_cases"]["malformed"]
    return (a for a in book["vitally"]["accounts"] if a["id"] not in malformed)


def _roles(account: dict[str, Any]) -> set[str]:
    return {r["keyRole"]["label"] for r in account["keyRoles"]}


def _segments(account: dict[str, Any]) -> set[str]:
    return {s["name"] for s in account["segments"]}


def _owned(account: dict[str, Any]) -> bool:
    return bool(_roles(account) & {"TAM", "CSM", "Account Executive"})


def _primary(account: dict[str, Any]) -> int:
    return len(PRIMARY & set(account["traits"]["paidProducts"]))


def _days_ago(text: str) -> int:
    return (TODAY - date.fromisoformat(text)).days


def _months_paying(account: dict[str, Any]) -> int:
    start = date.fromisoformat(account["traits"]["first_paid_at"])
    months = (TODAY.year - start.year) * 12 + TODAY.month - start.month
    return months - (TODAY.day < start.day)


def _iso(country: str) -> str:
    return {"Deutschland": "DE", "Germany": "DE", "UK": "GB", "USA": "US", "United States": "US"}.get(country, country)


def _in_mrr_band_except(account: dict[str, Any], miss: str) -> bool:
    """The account meets every product_led.mrr_band condition but `miss`, which it fails."""
    t = account["traits"]
    checks = {
        "mrr": 500 <= account["mrr"] <= 1667,
        "employees": t["employee_count"] > 50,
        "users": t["user_count"] > 7,
        "country": _iso(t["country"]) in ICP,
        "months": _months_paying(account) >= 3,
    }
    return all(ok != (name == miss) for name, ok in checks.items())


def _region_counts(account: dict[str, Any]) -> Counter[str]:
    region = {"US": "US", "CA": "US", "SG": "Singapore", "IN": "Singapore", "AU": "Singapore"}
    counts: Counter[str] = Counter()
    for country, n in account["traits"]["users_by_country"].items():
        counts[region.get(country, "EU")] += n
    return counts


def _opportunities_of(book: dict[str, Any], account: dict[str, Any]) -> list[dict[str, Any]]:
    sf_ids = {a["Id"] for a in book["salesforce"]["Account"] if a["Vitally_Account_Id__c"] == account["id"]}
    return [o for o in book["salesforce"]["Opportunity"] if o["AccountId"] in sf_ids]


def _leads_of(book: dict[str, Any], account: dict[str, Any]) -> list[dict[str, Any]]:
    return [lead for lead in book["salesforce"]["Lead"] if lead["Vitally_Account_Id__c"] == account["id"]]


def _last_invoice(account: dict[str, Any]) -> float:
    amount: float = account["traits"]["invoices"][-1]["amount"]
    return amount


def _sf_checksum(base: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    return "".join(alphabet[sum(1 << k for k, c in enumerate(base[i : i + 5]) if "A" <= c <= "Z")] for i in (0, 5, 10))


# What each constructed case must actually look like in the data, read independently of the generator.
CASE_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], bool]] = {
    "product_led.mrr_band": lambda a, b: _in_mrr_band_except(a, ""),
    "near_miss.product_led.mrr_band.mrr_499": lambda a, b: a["mrr"] == 499 and _in_mrr_band_except(a, "mrr"),
    "near_miss.product_led.mrr_band.mrr_1668": lambda a, b: a["mrr"] == 1668 and _in_mrr_band_except(a, "mrr"),
    "near_miss.product_led.mrr_band.employees_50": lambda a, b: (
        a["traits"]["employee_count"] == 50 and _in_mrr_band_except(a, "employees")
    ),
    "near_miss.product_led.mrr_band.users_7": lambda a, b: (
        a["traits"]["user_count"] == 7 and a["usersCount"] == 7 and _in_mrr_band_except(a, "users")
    ),
    "near_miss.product_led.mrr_band.paying_2_months": lambda a, b: (
        _months_paying(a) == 2 and _in_mrr_band_except(a, "months")
    ),
    "product_led.scale_high_icp": lambda a, b: a["traits"]["plan"] == "scale" and a["traits"]["icp_score"] >= 10,
    "product_led.startup_rolloff": lambda a, b: (
        a["traits"]["plan"] == "startup"
        and 0 <= -_days_ago(a["traits"]["startup_plan_ends_at"]) <= 60
        and _last_invoice(a) > 1500
    ),
    "product_led.forecast_spike": lambda a, b: a["mrr"] > 1000 and a["traits"]["forecasted_mrr"] > 1.5 * a["mrr"],
    "product_led.am_referral": lambda a, b: "AM referral" in _segments(a),
    "new_business.onboarding_referral": lambda a, b: "Onboarding referral" in _segments(a),
    "new_business.ae_referral": lambda a, b: "AE referral" in _segments(a),
    "new_business.big_fish": lambda a, b: (
        NOW - datetime.fromisoformat(a["createdAt"]) < timedelta(days=14) and a["traits"]["employee_count"] >= 1000
    ),
    "new_business.startup_credits": lambda a, b: (
        a["traits"]["startup_credits_used"] >= 0.5 * a["traits"]["startup_credits_total"] and _last_invoice(a) > 5000
    ),
    "bdr.closed_lost_unresponsive": lambda a, b: any(
        o["StageName"] == "Closed Lost"
        and o["Loss_Reason__c"] == "Unresponsive"
        and 120 <= _days_ago(o["CloseDate"]) <= 180
        for o in _opportunities_of(b, a)
    ),
    "near_miss.bdr.closed_lost_unresponsive.closed_100_days": lambda a, b: (
        [_days_ago(o["CloseDate"]) for o in _opportunities_of(b, a)] == [100]
    ),
    "guard.owned_key_role": lambda a, b: _owned(a) and _in_mrr_band_except(a, ""),
    "guard.am_managed": lambda a, b: "AM Managed" in _segments(a) and _in_mrr_band_except(a, ""),
    "guard.open_lead": lambda a, b: any(
        lead["Status"] in OPEN_STATUSES and not lead["IsConverted"] for lead in _leads_of(b, a)
    ),
    "guard.open_opportunity": lambda a, b: any(
        not o["StageName"].startswith("Closed") for o in _opportunities_of(b, a)
    ),
    "guard.active_sales_segment": lambda a, b: bool(_segments(a) & {"Active Trial", "Annual Plan", "Leads"}),
    "guard.cool_off": lambda a, b: _days_ago(a["traits"]["lead_disqualified_at"]) < 90,
    "near_miss.guard.cool_off.91_days": lambda a, b: _days_ago(a["traits"]["lead_disqualified_at"]) == 91,
    "guard.slack_channel": lambda a, b: a["traits"]["slack_channel"].startswith("#posthog-"),
    "allocation.unowned_tam": lambda a, b: not _owned(a) and 12 * a["mrr"] >= 20_000 and 1 <= _primary(a) <= 2,
    "allocation.unowned_csm": lambda a, b: not _owned(a) and 12 * a["mrr"] >= 20_000 and _primary(a) >= 3,
    "allocation.tae_handover": lambda a, b: "Account Executive" in _roles(a) and 12 * a["mrr"] >= 20_000,
    "allocation.tam_to_csm": lambda a, b: "TAM" in _roles(a) and _primary(a) >= 3 and 12 * a["mrr"] >= 20_000,
    "allocation.region_us": lambda a, b: _region_counts(a).most_common(1)[0][0] == "US",
    "allocation.region_eu": lambda a, b: _region_counts(a).most_common(1)[0][0] == "EU",
    "allocation.region_singapore": lambda a, b: _region_counts(a).most_common(1)[0][0] == "Singapore",
    "allocation.singapore_csm_fallback": lambda a, b: (
        _region_counts(a).most_common(1)[0][0] == "Singapore" and _primary(a) >= 3
    ),
    "allocation.region_tie_hq": lambda a, b: len(set(_region_counts(a).values())) == 1 and len(_region_counts(a)) == 2,
    "allocation.no_users_hq": lambda a, b: a["traits"]["users_by_country"] == {} and a["traits"]["country"],
    "near_miss.allocation.new_owner.arr_19999": lambda a, b: math.isclose(12 * a["mrr"], 19_999),
    "boundary.allocation.new_owner.arr_20000": lambda a, b: 12 * a["mrr"] >= 20_000 and 12 * a["mrr"] < 20_001,
    "onboarding.lead": lambda a, b: (
        a["traits"]["invoices"][0]["amount"] >= 100 and a["traits"]["business_email"] is True
    ),
    "onboarding.not_business_email": lambda a, b: (
        a["traits"]["invoices"][0]["amount"] >= 100 and a["traits"]["business_email"] is False
    ),
    "onboarding.spike": lambda a, b: _last_invoice(a) > 3 * a["traits"]["invoices"][-2]["amount"],
    "onboarding.misconfigured": lambda a, b: (
        max(a["traits"]["product_spend"].values()) > 0.9 * sum(a["traits"]["product_spend"].values())
    ),
    "onboarding.circle_back": lambda a, b: (
        "Onboarding Specialist" in _roles(a)
        and a["mrr"] < 1000
        and _last_invoice(a) > a["traits"]["invoices"][0]["amount"]
    ),
    "lifecycle.account_review": lambda a, b: not _owned(a) and a["mrr"] >= 2000,
    "lifecycle.csm_downgrade": lambda a, b: "CSM" in _roles(a) and 12 * a["mrr"] < 20_000,
    "qualification.disqualify_single_product": lambda a, b: (
        len(a["traits"]["product_spend"]) == 1 and sum(a["traits"]["product_spend"].values()) < 200
    ),
    "signal.autocapture_no_actions": lambda a, b: (
        a["traits"]["autocapture_pct"] > 80 and a["traits"]["actions_count"] == 0
    ),
    "signal.b2b_no_group_analytics": lambda a, b: (
        a["traits"]["is_b2b"] and "group_analytics" not in a["traits"]["activated_products"]
    ),
    "signal.ai_no_llm": lambda a, b: (
        a["traits"]["is_ai_product"] and "llm_analytics" not in a["traits"]["activated_products"]
    ),
    "unknown.missing_employee_count": lambda a, b: "employee_count" not in a["traits"],
    "unknown.null_mrr": lambda a, b: a["mrr"] is None,
}


# -- tests ----------------------------------------------------------------------------------------


def test_generate_book_is_deterministic() -> None:
    first = generate_book(400, seed=3, now=NOW, id_offset=1000)
    random.seed(12345)  # the global RNG must not matter
    second = generate_book(400, seed=3, now=NOW, id_offset=1000)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_generate_book_depends_on_seed_and_now() -> None:
    base = generate_book(200, seed=1, now=NOW)
    assert generate_book(200, seed=2, now=NOW)["vitally"]["accounts"] != base["vitally"]["accounts"]
    later = generate_book(200, seed=1, now=NOW + timedelta(days=1))
    shifted = [datetime.fromisoformat(a["createdAt"]) + timedelta(days=1) for a in base["vitally"]["accounts"]]
    assert [datetime.fromisoformat(a["createdAt"]) for a in later["vitally"]["accounts"]] == shifted


def test_generate_book_does_not_share_state_between_books() -> None:
    first = generate_book(200, now=NOW, malformed_share=0.1)
    for account in first["vitally"]["accounts"]:
        for value in account["traits"].values():
            if isinstance(value, dict):
                value["tampered"] = 1
            elif isinstance(value, list):
                value.append("tampered")
    second = generate_book(200, now=NOW, malformed_share=0.1)
    assert "tampered" not in json.dumps(second)


def test_generate_book_ids_are_unique_across_offsets() -> None:
    n = 300
    books = [generate_book(n, seed=5, now=NOW, id_offset=offset) for offset in (0, n, 5 * n)]

    def ids(book: dict[str, Any]) -> list[str]:
        vitally, sf = book["vitally"], book["salesforce"]
        return [
            *(a["id"] for a in vitally["accounts"]),
            *(a["externalId"] for a in vitally["accounts"]),
            *(u["id"] for u in vitally["users"]),
            *(r["Id"] for obj in ("Lead", "Opportunity", "Account") for r in sf[obj]),
        ]

    all_ids = [i for book in books for i in ids(book)]
    assert len(all_ids) == len(set(all_ids))
    assert books[1]["vitally"]["accounts"][0]["id"] == f"acc_{n}"
    # The sales team is shared so that books with different offsets can be merged.
    assert books[0]["salesforce"]["User"] == books[2]["salesforce"]["User"]


def test_generate_book_covers_every_case_at_300(book: dict[str, Any]) -> None:
    present = _all_cases(book)
    assert [c for c in REQUIRED_CASES if c not in present] == []
    assert [c for c in CASE_NAMES if c not in present] == []
    assert MIN_FULL_COVERAGE <= 200


def test_generate_book_covers_every_case_at_the_documented_minimum() -> None:
    small = generate_book(MIN_FULL_COVERAGE, now=NOW)
    assert set(CASE_NAMES) <= _all_cases(small)
    assert len(small["vitally"]["accounts"]) == MIN_FULL_COVERAGE


def test_generate_book_case_records_exist_and_are_clean(book: dict[str, Any]) -> None:
    account_ids = {a["id"] for a in book["vitally"]["accounts"]}
    lead_ids = {lead["Id"] for lead in book["salesforce"]["Lead"]}
    cases = book["_cases"]
    assert set(cases["accounts"]) <= account_ids
    assert set(cases["leads"]) <= lead_ids
    assert not set(cases["malformed"]) & (set(cases["accounts"]) | set(cases["leads"]))


@pytest.mark.parametrize("case", sorted(CASE_CHECKS))
def test_generate_book_constructs_each_case_as_described(book: dict[str, Any], case: str) -> None:
    accounts = _accounts_with(book, case)
    assert accounts, case
    for account in accounts:
        assert CASE_CHECKS[case](account, book), (case, account["id"])


def test_generate_book_near_misses_sit_just_outside_thresholds(book: dict[str, Any]) -> None:
    (closed_200,) = _accounts_with(book, "near_miss.bdr.closed_lost_unresponsive.closed_200_days")
    assert [_days_ago(o["CloseDate"]) for o in _opportunities_of(book, closed_200)] == [200]
    (rolloff,) = _accounts_with(book, "near_miss.product_led.startup_rolloff.ends_in_63_days")
    assert -_days_ago(rolloff["traits"]["startup_plan_ends_at"]) == 63
    (spike,) = _accounts_with(book, "near_miss.product_led.forecast_spike.forecast_1_5x")
    assert spike["traits"]["forecasted_mrr"] == 1.5 * spike["mrr"]
    (fish,) = _accounts_with(book, "near_miss.new_business.big_fish.employees_999")
    assert fish["traits"]["employee_count"] == 999
    (first_bill,) = _accounts_with(book, "near_miss.onboarding.lead.first_invoice_99")
    assert first_bill["traits"]["invoices"][0]["amount"] == 99
    (downgrade,) = _accounts_with(book, "near_miss.lifecycle.csm_downgrade.arr_20000")
    assert 12 * downgrade["mrr"] >= 20_000 and "CSM" in _roles(downgrade)


def test_generate_book_leads_cover_sources_and_form_texts(book: dict[str, Any]) -> None:
    leads = book["salesforce"]["Lead"]
    assert {lead["LeadSource"] for lead in leads} >= LEAD_SOURCES
    by_case = {c: lead for lead in leads for c in book["_cases"]["leads"].get(lead["Id"], [])}
    assert re.search(r"backlinks|offshore|followers", by_case["demo.classify_spam"]["Form_Text__c"])
    assert re.search(r"broken|password|not showing up", by_case["demo.classify_support"]["Form_Text__c"])
    assert re.search(r"pricing|contract|demo", by_case["demo.classify_sales"]["Form_Text__c"])
    for case in ("new_business.sales_email", "new_business.trust_center", "new_business.bdr_qualified"):
        lead = by_case[case]
        assert lead["OwnerId"] is None and lead["Status"] in OPEN_STATUSES and not lead["IsConverted"]
    recent = by_case["demo.scheduler_recent_disqualification"]
    twins = [x for x in leads if x["Company"] == recent["Company"] and x["Status"] == "Disqualified"]
    assert twins and all(NOW - datetime.strptime(x["SystemModstamp"], SF_TIMESTAMP) < timedelta(days=30) for x in twins)
    assert any(lead["OwnerId"] is None for lead in leads) and any(lead["OwnerId"] for lead in leads)


def test_generate_book_tam_at_cap_manages_exactly_fifteen(book: dict[str, Any]) -> None:
    managed: Counter[str] = Counter()
    for account in _clean_accounts(book):
        if "AM Managed" in _segments(account):
            managed.update(r["vitallyUser"]["id"] for r in account["keyRoles"] if r["keyRole"]["label"] == "TAM")
    capped = {r["vitallyUser"]["id"] for a in _accounts_with(book, "round_robin.tam_at_cap") for r in a["keyRoles"]}
    assert len(capped) == 1
    (tam,) = capped
    assert managed[tam] == 15
    assert all(count < 15 for who, count in managed.items() if who != tam)


@pytest.mark.parametrize(("n", "share", "accounts"), [(1000, 0.05, 50), (300, 0.02, 6), (50, 0.001, 1), (40, 0.001, 0)])
def test_generate_book_malformed_share_is_respected(n: int, share: float, accounts: int) -> None:
    book = generate_book(n, now=NOW, malformed_share=share)
    malformed = book["_cases"]["malformed"]
    assert sum(key.startswith("acc_") for key in malformed) == accounts
    leads = sum(key.startswith("00Q") for key in malformed)
    expected_leads = round(len(book["salesforce"]["Lead"]) * share)
    assert leads == (max(expected_leads, 1) if n >= 50 else expected_leads)


def test_generate_book_without_malformed_share_is_all_clean() -> None:
    assert generate_book(500, now=NOW, malformed_share=0)["_cases"]["malformed"] == {}


def _field_is_clean(record: dict[str, Any], path: str) -> bool:
    """Whether the value at `path` has the shape a clean record would give it."""
    target, key = (record["traits"], path[7:]) if path.startswith("traits.") else (record, path)
    if key not in target:
        return False
    value = target[key]

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

    checks: dict[str, Callable[[Any], bool]] = {
        "mrr": number,
        "forecasted_mrr": number,
        "AnnualRevenue": number,
        "employee_count": lambda v: isinstance(v, int) and v >= 0,
        "user_count": lambda v: isinstance(v, int) and v >= 0,
        "NumberOfEmployees": lambda v: isinstance(v, int) and v >= 0,
        "invoices": lambda v: isinstance(v, list),
        "paidProducts": lambda v: isinstance(v, list),
        "users_by_country": lambda v: all(isinstance(c, int) for c in v.values()),
        "createdAt": lambda v: bool(VITALLY_TIMESTAMP.match(v)),
        "CreatedDate": lambda v: bool(re.match(r"^\d{4}-\d\d-\d\dT", v)),
        "first_paid_at": lambda v: bool(re.match(r"^\d{4}-\d\d-\d\d$", v)),
        "country": lambda v: (
            isinstance(v, str) and (len(v) == 2 or v in {"Deutschland", "Germany", "UK", "USA", "United States"})
        ),
        "Country": lambda v: isinstance(v, str),
        "name": lambda v: isinstance(v, str) and bool(v),
    }
    return checks[key](value)


def test_generate_book_malformed_records_are_listed_and_storable() -> None:
    book = generate_book(2000, now=NOW, malformed_share=0.05)
    malformed = book["_cases"]["malformed"]
    records = {a["id"]: a for a in book["vitally"]["accounts"]} | {x["Id"]: x for x in book["salesforce"]["Lead"]}
    kinds = set(malformed.values())
    assert {"mrr", "traits.employee_count", "traits.invoices", "createdAt", "name", "traits.country"} <= kinds
    for record_id, path in malformed.items():
        record = records[record_id]
        assert not _field_is_clean(record, path), (record_id, path)
        if record_id.startswith("acc_"):
            assert record["id"] == record_id and VITALLY_TIMESTAMP.match(record["updatedAt"])
        else:
            datetime.strptime(record["SystemModstamp"], SF_TIMESTAMP)
    assert json.loads(json.dumps(book, allow_nan=False)) == book


def test_generate_book_clean_accounts_have_the_wire_shape(book: dict[str, Any]) -> None:
    top = {
        "id": str, "externalId": str, "name": str, "createdAt": str, "updatedAt": str, "traits": dict,
        "usersCount": int, "keyRoles": list, "segments": list,
    }  # fmt: skip
    trait_types: dict[str, type | tuple[type, ...]] = {
        "domain": str, "forecasted_mrr": (int, float), "invoices": list, "product_spend": dict, "paidProducts": list,
        "activated_products": list, "plan": str, "annual_plan": bool, "billing_limits": dict, "employee_count": int,
        "harmonic_headcount": int, "harmonic_headcount_180d": int, "estimated_revenue": (int, float),
        "industry": str, "country": str, "icp_score": int, "user_count": int, "users_by_country": dict,
        "business_email": bool, "autocapture_pct": float, "custom_event_pct": float, "actions_count": int,
        "project_count": int, "data_destinations": list, "billing_page_views_30d": int, "is_b2b": bool,
        "has_mobile_app": bool, "is_ai_product": bool, "first_paid_at": str, "startup_plan_ends_at": str,
        "startup_credits_total": float, "startup_credits_used": float, "harmonic_last_funding_date": str,
        "lead_disqualified_at": str, "slack_channel": str, "harmonic_web_traffic": int,
        "harmonic_web_traffic_180d": int, "harmonic_social_followers": int, "harmonic_social_followers_180d": int,
        "ocean_cool_company": bool,
    }  # fmt: skip
    labels = {"TAM", "CSM", "Account Executive", "Onboarding Specialist"}
    for account in _clean_accounts(book):
        for key, kind in top.items():
            assert isinstance(account[key], kind), (account["id"], key)
        assert account["mrr"] is None or isinstance(account["mrr"], int | float)
        assert account["accountOwnerId"] is None and account["churnedAt"] is None
        assert account["id"].startswith("acc_") and account["externalId"].startswith("org_")
        traits = account["traits"]
        assert set(traits) <= set(trait_types), set(traits) - set(trait_types)
        for key, value in traits.items():
            assert isinstance(value, trait_types[key]), (account["id"], key, value)
        months = [inv["month"] for inv in traits["invoices"]]
        assert months == sorted(months) and all(re.match(r"^\d{4}-\d\d$", m) for m in months)
        assert all(isinstance(inv["amount"], int | float) for inv in traits["invoices"])
        assert all(len(c) == 2 and isinstance(k, int) for c, k in traits["users_by_country"].items())
        assert account["usersCount"] == traits["user_count"]
        for role in account["keyRoles"]:
            assert role["keyRole"]["label"] in labels
            assert set(role["vitallyUser"]) == {"id", "name", "email"}
        for segment in account["segments"]:
            assert segment["id"].startswith("seg_") and isinstance(segment["name"], str)
    countries = [a["traits"].get("country") for a in generate_book(3000, now=NOW)["vitally"]["accounts"]]
    assert {"United States", "USA", "UK", "Deutschland"} & set(countries)
    assert sum(isinstance(c, str) and len(c) == 2 for c in countries) > 0.7 * len(countries)


def test_generate_book_users_and_salesforce_records_have_the_wire_shape(book: dict[str, Any]) -> None:
    account_ids = {a["id"] for a in book["vitally"]["accounts"]}
    for user in book["vitally"]["users"]:
        assert set(user) == {"id", "externalId", "name", "email", "accountIds", "createdAt", "updatedAt", "traits"}
        assert set(user["accountIds"]) <= account_ids and len(user["traits"]["country"]) == 2
    sf = book["salesforce"]
    lead_fields = {
        "Id", "FirstName", "LastName", "Email", "Company", "Title", "Role__c", "Sub_Role__c", "Country",
        "NumberOfEmployees", "AnnualRevenue", "Industry", "LeadSource", "Status", "OwnerId", "IsConverted",
        "Form_Text__c", "Vitally_Account_Id__c", "CreatedDate", "SystemModstamp", "Lead_Score__c",
    }  # fmt: skip
    for lead in sf["Lead"]:
        assert lead_fields <= set(lead) and "attributes" not in lead
        assert lead["Lead_Score__c"] is None and lead["LastName"] and lead["Company"]
        assert lead["Vitally_Account_Id__c"] is None or lead["Vitally_Account_Id__c"] in account_ids
    user_ids = {u["Id"] for u in sf["User"]}
    assert {"Id", "Name", "Email", "IsActive", "Title"} <= set(sf["User"][0])
    assert 1 <= sum(not u["IsActive"] for u in sf["User"]) <= 2
    titles = " ".join(u["Title"] for u in sf["User"])
    for role in ("Technical Account Manager (US)", "Technical Account Manager (EU)", "(Singapore)",
                 "Customer Success Manager (EU)", "Technical Account Executive", "Business Development",
                 "Onboarding Specialist"):  # fmt: skip
        assert role in titles
    assert {lead["OwnerId"] for lead in sf["Lead"]} - {None} <= user_ids
    sf_accounts = {a["Id"]: a for a in sf["Account"]}
    for opp in sf["Opportunity"]:
        assert opp["AccountId"] in sf_accounts and opp["OwnerId"] in user_ids
        assert re.match(r"^\d{4}-\d\d-\d\d$", opp["CloseDate"])
        assert opp["Loss_Reason__c"] is None or opp["StageName"] == "Closed Lost"
    for account in sf["Account"]:
        assert account["Vitally_Account_Id__c"] in account_ids and account["Website"].startswith("https://")


def test_generate_book_timestamps_parse_and_are_not_in_the_future(book: dict[str, Any]) -> None:
    malformed = book["_cases"]["malformed"]
    for record in [*_clean_accounts(book), *book["vitally"]["users"]]:
        assert VITALLY_TIMESTAMP.match(record["createdAt"]) and VITALLY_TIMESTAMP.match(record["updatedAt"])
        created, updated = datetime.fromisoformat(record["createdAt"]), datetime.fromisoformat(record["updatedAt"])
        assert created <= updated <= NOW, record["id"]
    for obj in ("Lead", "User", "Opportunity", "Account"):
        for record in book["salesforce"][obj]:
            if record["Id"] in malformed:
                continue
            created = datetime.strptime(record["CreatedDate"], SF_TIMESTAMP)
            modified = datetime.strptime(record["SystemModstamp"], SF_TIMESTAMP)
            assert created <= modified <= NOW, (obj, record["Id"])


def test_generate_book_salesforce_ids_look_right(book: dict[str, Any]) -> None:
    for obj, prefix in SF_PREFIX.items():
        for record in book["salesforce"][obj]:
            record_id = record["Id"]
            assert re.match(rf"^{prefix}[0-9A-Za-z]{{15}}$", record_id), record_id
            assert record_id[15:] == _sf_checksum(record_id[:15]), record_id


def test_generate_book_scales_salesforce_with_the_book() -> None:
    book = generate_book(5000, now=NOW)
    sf = book["salesforce"]
    assert 5000 // 5 <= len(sf["Lead"]) <= 5000 // 5 + 60
    assert 5000 // 20 <= len(sf["Opportunity"]) <= 5000 // 5
    small_self_serve = sum(1 for a in _clean_accounts(book) if (a["mrr"] or 0) < 500 and not a["keyRoles"])
    assert small_self_serve > 0.75 * 5000
    assert len(book["vitally"]["users"]) <= 3 * 5000


@pytest.mark.parametrize("n", [0, 1, 10, 49, MIN_FULL_COVERAGE - 1])
def test_generate_book_handles_small_books(n: int) -> None:
    book = generate_book(n, now=NOW, id_offset=10)
    assert len(book["vitally"]["accounts"]) == n
    assert book["_cases"]["accounts"] == {} and book["_cases"]["leads"] == {}  # all random below the minimum
    sf = book["salesforce"]
    assert len(sf["Lead"]) <= n and len(sf["Opportunity"]) <= n
    assert all(int(lead["Id"][3:15]) < 10 + n for lead in sf["Lead"])


@pytest.mark.parametrize(
    "kwargs",
    [{"n": -1}, {"n": 10, "malformed_share": 1.5}, {"n": 10, "malformed_share": -0.1}, {"n": 10, "id_offset": -1}],
)
def test_generate_book_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate_book(now=NOW, **kwargs)


def test_generate_book_treats_naive_now_as_utc() -> None:
    naive = generate_book(150, now=NOW.replace(tzinfo=None))
    assert naive == generate_book(150, now=NOW)


def test_generate_book_of_20000_accounts_holds_each_once_with_every_case() -> None:
    # How long a big book takes is measured by bench/sandbox_throughput.py, never asserted here.
    book = generate_book(20_000, now=NOW)

    assert [a["id"] for a in book["vitally"]["accounts"]] == [f"acc_{i}" for i in range(20_000)]
    assert sum(key.startswith("acc_") for key in book["_cases"]["malformed"]) == 400
    assert set(CASE_NAMES) <= _all_cases(book)


# -- real_org books (issue 14) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def real_book() -> dict[str, Any]:
    return generate_book(MIN_FULL_COVERAGE_REAL_ORG + 200, seed=7, now=NOW, real_org=True)


def test_generate_book_real_org_covers_its_cases(real_book: dict[str, Any]) -> None:
    present = _all_cases(real_book)
    assert [c for c in (*CASE_NAMES, *REAL_ORG_CASE_NAMES) if c not in present] == []
    assert not set(REAL_ORG_CASE_NAMES) & set(CASE_NAMES)
    small = generate_book(MIN_FULL_COVERAGE_REAL_ORG, now=NOW, real_org=True)
    assert set(REAL_ORG_CASE_NAMES) <= _all_cases(small)


def test_generate_book_real_org_owners_live_in_vitallys_own_fields(real_book: dict[str, Any]) -> None:
    for field in ("accountOwnerId", "csmId", "accountExecutiveId"):
        (account,) = _accounts_with(real_book, f"guard.owned_{_snake(field)}")
        assert account["keyRoles"] == [] and account[field] is not None
        assert [f for f in ("accountOwnerId", "csmId", "accountExecutiveId") if account[f]] == [field]
    team_ids = {r["vitallyUser"]["id"] for a in real_book["vitally"]["accounts"] for r in a["keyRoles"]}
    for account in real_book["vitally"]["accounts"]:
        roles = {r["keyRole"]["label"]: r["vitallyUser"]["id"] for r in account["keyRoles"]}
        if "CSM" in roles:
            assert account["csmId"] == roles["CSM"]
        if "Account Executive" in roles:
            assert account["accountExecutiveId"] == roles["Account Executive"]
        for role in account["keyRoles"]:
            # The full recorded shape (AB-vitally; fixture vitally_accounts_page.json).
            assert set(role) == {"id", "createdAt", "assignedAt", "keyRole", "vitallyUser"}
            assert set(role["keyRole"]) == {"id", "createdAt", "label"}
            assert set(role["vitallyUser"]) == {"id", "name", "email", "licenseStatus"}
    assert team_ids


def test_generate_book_real_org_churns_a_share_and_the_churned_case(real_book: dict[str, Any]) -> None:
    churned = set(real_book["_cases"]["churned"])
    accounts = {a["id"]: a for a in real_book["vitally"]["accounts"]}
    (case,) = _accounts_with(real_book, "lifecycle.churned")
    assert case["id"] in churned
    assert 0.02 * len(accounts) <= len(churned) <= 0.1 * len(accounts)
    for account_id in churned:
        account = accounts[account_id]
        assert account["churnedAt"] is not None and account["mrr"] == 0.0
        assert account["createdAt"] <= account["churnedAt"] <= account["updatedAt"]
    assert all(a["churnedAt"] is None for i, a in accounts.items() if i not in churned)


def test_generate_book_real_org_leads_are_owned_and_spell_countries_by_name(real_book: dict[str, Any]) -> None:
    sf = real_book["salesforce"]
    users = {u["Id"] for u in sf["User"]}
    queues = {g["Id"] for g in sf["Group"] if g["Type"] == "Queue"}
    owners = [lead["OwnerId"] for lead in sf["Lead"]]
    assert all(owner in users | queues for owner in owners)
    by_id = {lead["Id"]: lead for lead in sf["Lead"]}
    cases = real_book["_cases"]["leads"]
    queued = [by_id[i] for i, c in cases.items() if "inbound.queue_owned" in c]
    default = [by_id[i] for i, c in cases.items() if "inbound.default_owner_user" in c]
    assert queued and all(lead["OwnerId"] in queues for lead in queued)
    assert default and all(lead["OwnerId"] not in queues and lead["OwnerId"] in users for lead in default)
    malformed = real_book["_cases"]["malformed"]
    for lead in sf["Lead"]:
        if lead["Id"] in malformed or lead["Country"] is None:
            continue
        assert len(lead["Country"]) > 2 and len(lead["CountryCode"]) == 2, lead["Country"]


def test_generate_book_real_org_long_company_names(real_book: dict[str, Any]) -> None:
    (over_80,) = _accounts_with(real_book, "input.company_name_over_80")
    (over_255,) = _accounts_with(real_book, "input.company_name_over_255")
    assert 80 < len(over_80["name"]) <= 255 < len(over_255["name"])


def test_generate_book_real_org_leaves_the_default_book_alone() -> None:
    default = generate_book(300, seed=7, now=NOW)
    assert "Group" not in default["salesforce"] and "churned" not in default["_cases"]
    assert generate_book(300, seed=7, now=NOW, real_org=True) != default


def _snake(field: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", field).lower().removesuffix("_id") + "_id"
