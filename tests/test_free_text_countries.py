"""A country field that names no country is an unknown value, not a malformed record, through a
real cycle against the sandbox: the record is routed, scored and allocated like any other.

Where the shapes come from: Salesforce's `Lead.Country` is a `string` of length 80 (the Lead page
of the Salesforce field reference, developer.salesforce.com/docs/platform/field-reference), free
text unless the org turns on State and Country/Territory picklists, so a web form's "Remote" or
"N/A" reaches it as typed; the users' countries come from IP location, whose databases also answer
codes that name no country (MaxMind's legacy GeoIP codes: A1 anonymous proxy, A2 satellite
provider, O1 other country, EU Europe, AP Asia/Pacific). Until this was fixed, each such record was
reported malformed and skipped: a demo request never got an owner, a $20k account no New Owner.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from support import dry_cycle, sandbox_org_config

from sandbox import Sandbox, generate_book

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _case(book: dict[str, Any], kind: str, case: str) -> str:
    return str(next(record for record, cases in book["_cases"][kind].items() if case in cases))


def test_a_demo_request_from_remote_and_an_account_of_unlocated_users_are_routed_not_skipped() -> None:
    book = generate_book(300, seed=11, now=NOW)
    lead_id = _case(book, "leads", "demo.classify_sales")
    account_id = _case(book, "accounts", "allocation.region_eu")  # 4 primary products: a CSM
    lead = next(r for r in book["salesforce"]["Lead"] if r["Id"] == lead_id)
    lead["Country"] = "Remote"
    lead.pop("CountryCode", None)
    account = next(a for a in book["vitally"]["accounts"] if a["id"] == account_id)
    account["traits"]["country"] = "N/A"
    # Most users are located nowhere; of those located, most are in the EU.
    account["traits"]["users_by_country"] = {"A1": 40, "Unknown": 25, "DE": 9, "FR": 4, "US": 2}
    # Kosovo's XK is no ISO country, and a Salesforce country picklist refuses it: an account in
    # Kosovo is routed, and its new lead carries no country.
    referred_id = _case(book, "accounts", "product_led.am_referral")
    referred = next(a for a in book["vitally"]["accounts"] if a["id"] == referred_id)
    referred["traits"]["country"] = "Kosovo"
    referred["traits"]["users_by_country"] = {"XK": 12}

    with Sandbox(book, now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)  # inbound leads wait with the org's default lead owner
        report = dry_cycle(config, NOW)

    assert not [e for e in report.record_errors if e.record_id in (lead_id, account_id, referred_id)]
    lead_writes = [w for w in report.plan if w.record == lead_id]
    assert [w.rule for w in lead_writes if w.owner is not None] == ["new_business.demo_request"]
    scored = next(w for w in lead_writes if "Lead_Score__c" in w.payload)
    assert "country 'Remote' not recognised → 0" in scored.reason
    owner = next(w for w in report.plan if w.record == account_id and "new_owner" in w.fields)
    assert owner.fields["new_owner"] == "EU CSM"
    assert "DE 9, FR 4, US 2" in owner.reason and "A1" not in owner.reason
    (created,) = [w for w in report.plan if w.account == referred_id and w.system == "salesforce"]
    assert created.rule == "product_led.am_referral"
    assert not {"Country", "CountryCode"} & set(created.payload), created.payload


def test_an_inbound_lead_that_names_no_country_takes_the_region_of_its_linked_account() -> None:
    """A demo request with no country (or one that names none) drew from the default region's pool
    (TAE/*) even when `Vitally_Account_Id__c` links it to an account whose users are all in the US
    (found by a review, 2026-12-06): the account's region, as its own leads take, now picks the
    pool; a lead whose country names one keeps its own."""
    book = generate_book(300, seed=11, now=NOW)
    us_account = _case(book, "accounts", "allocation.region_us")
    cases = book["_cases"]["leads"]
    leads = [
        r
        for r in book["salesforce"]["Lead"]
        if "new_business.demo_request" in cases.get(r["Id"], ())
        and not {"demo.classify_support", "demo.classify_spam"} & set(cases[r["Id"]])
    ]
    assert len(leads) >= 3
    for lead, country in zip(leads, (None, "Remote", "DE"), strict=False):
        lead.pop("CountryCode", None)
        lead["Country"] = country
        lead["Vitally_Account_Id__c"] = us_account
    countries = {lead["Id"]: lead["Country"] for lead in leads[:3]}

    with Sandbox(book, now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        report = dry_cycle(config, NOW)

    pools = {w.record: w.owner.pool for w in report.plan if w.record in countries and w.owner is not None}
    # DE is in the EU, whose TAEs are the pool for every region but the US ("TAE/*").
    expected = {lead_id: "TAE/*" if country == "DE" else "TAE/US" for lead_id, country in countries.items()}
    assert pools == expected, (pools, countries)
