"""The sandbox's Salesforce side, driven with simple-salesforce as the connector does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from conftest import (
    T0,
    SeedBuilder,
    plain_http_session,
    real_fixture,
    salesforce_client,
    sf_collection,
    sf_errors,
    sf_id,
    small_seed,
    sobject,
)
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.format import format_soql

from sandbox.server import Sandbox
from sandbox.store import INBOUND_QUEUE_ID

REP_0, REP_1, REP_INACTIVE = sf_id("005", 0), sf_id("005", 1), sf_id("005", 2)
QUEUE = INBOUND_QUEUE_ID  # a queue the org has: a real org refuses an owner it does not know


def _lead(key: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Lead"}, "Sync_Key__c": key, "LastName": "Smith", "Company": "Acme", **fields}


def _upsert(
    sf: Salesforce, records: list[dict[str, Any]], *, all_or_none: bool = False, headers: dict[str, str] | None = None
) -> Any:
    return sf.restful(
        "composite/sobjects/Lead/Sync_Key__c",
        method="PATCH",
        headers=headers or {},
        json={"allOrNone": all_or_none, "records": records},
    )


def _lead_by_key(sandbox: Sandbox, key: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.state()["salesforce"]["Lead"] if r.get("Sync_Key__c") == key]


# ------------------------------------------------------------------------------- query


def test_query_all_iter_pages_4500_leads_at_2000(make_sandbox: Callable[..., Sandbox], seed: SeedBuilder) -> None:
    sb = make_sandbox(seed.leads(4500).build())
    sf = salesforce_client(sb.url)

    first = sf.query("SELECT Id, LastName FROM Lead")
    records = list(sf.query_all_iter("SELECT Id, LastName FROM Lead"))

    assert first["totalSize"] == 4500 and first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    assert len({r["Id"] for r in records}) == 4500
    assert records[0]["attributes"] == {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{sf_id('00Q', 0)}"}
    assert sb.counters()["salesforce"] == {
        "GET /services/data/v59.0/query": 2,
        "GET /services/data/v59.0/query/:locator": 2,
    }


def test_query_pages_are_a_snapshot_taken_at_query_time(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    sb = make_sandbox(seed.leads(30).build(), sf_page_size=10)
    sf = salesforce_client(sb.url)

    first = sf.query("SELECT Id FROM Lead ORDER BY Id")
    sobject(sf, "Lead").delete(first["records"][0]["Id"])
    sobject(sf, "Lead").create({"LastName": "New", "Company": "New Co"})
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)

    assert rest["totalSize"] == 30 and len(rest["records"]) == 10 and not rest["done"]
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 30


def test_query_bad_soql_is_malformed_query(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Lead WHERE")

    assert sf_errors(caught.value)[0]["errorCode"] == "MALFORMED_QUERY"


def test_query_unknown_field_is_invalid_field(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Lead WHERE Nope__c = 1")

    assert sf_errors(caught.value)[0]["errorCode"] == "INVALID_FIELD"
    assert "Nope__c" in sf_errors(caught.value)[0]["message"]


@pytest.mark.parametrize(
    "company",
    ["O'Brien & Sons", "Back\\slash Ltd", "100% Pure_Co", 'Say "hi"', "it's 50%\\_off\nnow"],
)
def test_format_soql_values_round_trip_exactly(sf: Salesforce, company: str) -> None:
    sobject(sf, "Lead").create({"LastName": "Quote", "Company": company})
    # The decoy matches the LIKE pattern only if the sandbox loses the escapes of % and _.
    decoy = company.replace("%", "% more").replace("_", "-")
    sobject(sf, "Lead").create({"LastName": "Decoy", "Company": decoy if decoy != company else company + " Holdings"})

    equal = sf.query(format_soql("SELECT Company FROM Lead WHERE Company = {}", company))
    like = sf.query(format_soql("SELECT Company FROM Lead WHERE Company LIKE '{:like}'", company))
    listed = sf.query(format_soql("SELECT Company FROM Lead WHERE Company IN {}", [company, "nobody"]))

    assert [r["Company"] for r in equal["records"]] == [company]
    assert [r["Company"] for r in like["records"]] == [company]
    assert [r["Company"] for r in listed["records"]] == [company]


def test_query_datetime_filter_uses_system_modstamp(make_sandbox: Callable[..., Sandbox], seed: SeedBuilder) -> None:
    seed.lead(0, SystemModstamp="2026-11-20T09:59:59.000+0000")
    seed.lead(1, SystemModstamp="2026-11-20T10:00:00.000+0000")
    sb = make_sandbox(seed.build())
    sf = salesforce_client(sb.url)

    since = T0 - timedelta(days=2)
    result = sf.query(format_soql("SELECT Id FROM Lead WHERE SystemModstamp >= {}", since))

    assert [r["Id"] for r in result["records"]] == [sf_id("00Q", 1)]


# ------------------------------------------------------------------------ single rows


def test_upsert_twice_makes_one_record_201_then_200(sandbox: Sandbox, sf: Salesforce) -> None:
    first = sobject(sf, "Lead").upsert("Sync_Key__c/acc_0", {"LastName": "Smith", "Company": "Acme"}, raw_response=True)
    second = sobject(sf, "Lead").upsert("Sync_Key__c/acc_0", {"Title": "CTO"}, raw_response=True)

    assert first.status_code == 201 and first.json()["created"] is True
    assert second.status_code == 200 and second.json() == {
        "id": first.json()["id"],
        "success": True,
        "errors": [],
        "created": False,
    }
    [lead] = _lead_by_key(sandbox, "acc_0")
    assert (lead["Title"], lead["Company"]) == ("CTO", "Acme")


def test_upsert_with_several_matches_is_300(make_sandbox: Callable[..., Sandbox], seed: SeedBuilder) -> None:
    seed.lead(0, Sync_Key__c="dup")
    seed.lead(1, Sync_Key__c="dup")
    sb = make_sandbox(seed.build())
    session = plain_http_session()

    response = session.patch(
        f"{sb.url}/services/data/v59.0/sobjects/Lead/Sync_Key__c/dup",
        json={"Title": "x"},
        headers={"Authorization": "Bearer t"},
    )

    assert response.status_code == 300
    assert len(response.json()) == 2


def test_create_update_get_delete_a_lead(sandbox: Sandbox, sf: Salesforce) -> None:
    created = sobject(sf, "Lead").create(
        {"LastName": "Doe", "FirstName": "Jane", "Company": "Initech", "OwnerId": REP_0}
    )
    status = sobject(sf, "Lead").update(created["id"], {"Title": "VP"})
    fetched = sobject(sf, "Lead").get(created["id"])
    sobject(sf, "Lead").delete(created["id"])

    assert created["success"] is True and created["id"].startswith("00Q") and len(created["id"]) == 18
    assert status == 204
    assert (fetched["Name"], fetched["Title"], fetched["IsConverted"]) == ("Jane Doe", "VP", False)
    assert fetched["attributes"]["type"] == "Lead"
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sobject(sf, "Lead").get(created["id"])
    assert sf_errors(caught.value)[0]["errorCode"] == "NOT_FOUND"


def test_create_lead_without_company_is_required_field_missing(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").create({"LastName": "Doe"})

    assert sf_errors(caught.value) == [
        {
            "message": "Required fields are missing: [Company]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Company"],
        }
    ]


def test_write_validation_errors(sf: Salesforce) -> None:
    cases: dict[str, dict[str, Any]] = {
        "INVALID_CROSS_REFERENCE_KEY": {"OwnerId": sf_id("005", 99)},
        "INACTIVE_OWNER_OR_USER": {"OwnerId": REP_INACTIVE},
        "INVALID_FIELD": {"Nope__c": 1},
        # Not createable (a lead's conversion date is Salesforce's to set). IsConverted is
        # createable in a real org (the recorded describe), but never updateable: see below.
        "INVALID_FIELD_FOR_INSERT_UPDATE": {"ConvertedDate": "2026-11-01"},
    }
    for code, fields in cases.items():
        with pytest.raises(SalesforceMalformedRequest) as caught:
            sobject(sf, "Lead").create({"LastName": "Doe", "Company": "Acme", **fields})
        assert sf_errors(caught.value)[0]["errorCode"] == code
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").update(sf_id("00Q", 0), {"IsConverted": True})
    assert sf_errors(caught.value)[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert sobject(sf, "Lead").create({"LastName": "Q", "Company": "Acme", "OwnerId": QUEUE})["success"] is True


def test_update_unknown_id_is_404_and_converted_lead_is_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound):
        sobject(sf, "Lead").update(sf_id("00Q", 999), {"Title": "x"})
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").update(sf_id("00Q", 4), {"Title": "x"})

    assert sf_errors(caught.value)[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_a_number_beyond_its_fields_digits_fails_the_record(sandbox: Sandbox, sf: Salesforce) -> None:
    """Lead `NumberOfEmployees` is an int of 8 digits (the recorded describe): a real org refuses
    1431655766 with "Employees: value outside of valid range on numeric field: 1431655766"
    (public connector test suites record it; code index of the s17 wire audit)."""
    results = _upsert(sf, [_lead("big", NumberOfEmployees=1431655766), _lead("ok", NumberOfEmployees=99_999_999)])
    assert [r["success"] for r in results] == [False, True]
    assert results[0]["errors"] == [
        {
            "statusCode": "NUMBER_OUTSIDE_VALID_RANGE",
            "message": "Employees: value outside of valid range on numeric field: 1431655766",
            "fields": ["NumberOfEmployees"],
        }
    ]
    assert _lead_by_key(sandbox, "big") == []


def test_text_length_counts_utf16_units(sf: Salesforce) -> None:
    """Salesforce counts a character outside the Basic Multilingual Plane twice (Salesforce Help,
    "Surrogate Pair Characters Are Treated as Two Characters"): 41 emoji are 82 of LastName's 80."""
    results = _upsert(sf, [_lead("emoji", LastName="\U0001f680" * 41), _lead("fits", LastName="\U0001f680" * 40)])
    assert [r["success"] for r in results] == [False, True]
    assert results[0]["errors"][0]["statusCode"] == "STRING_TOO_LONG"


def test_text_is_stored_trimmed_and_an_empty_one_as_null(sandbox: Sandbox, sf: Salesforce) -> None:
    """ "sObject String field values follow the same rules as in the SOAP API: they can never be
    empty (only null), and they can never include leading and trailing whitespace" (Apex Developer
    Guide, Primitive Data Types)."""
    created = sobject(sf, "Lead").create({"LastName": "  Doe ", "Company": "Acme\t", "Title": "", "Industry": "  "})
    lead = sobject(sf, "Lead").get(created["id"])
    assert (lead["LastName"], lead["Company"], lead["Title"], lead["Industry"]) == ("Doe", "Acme", None, None)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").create({"LastName": "   ", "Company": "Acme"})  # blank is missing
    assert sf_errors(caught.value)[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_an_update_of_a_deleted_lead_is_entity_is_deleted(sf: Salesforce) -> None:
    """A record in the recycle bin: a real org answers "entity is deleted" (public connectors'
    recorded answers), not a bad reference."""
    created = sobject(sf, "Lead").create({"LastName": "Doe", "Company": "Acme"})
    sobject(sf, "Lead").delete(created["id"])
    results = sf_collection(
        sf,
        "composite/sobjects",
        "PATCH",
        {"allOrNone": False, "records": [{"attributes": {"type": "Lead"}, "Id": created["id"], "Title": "CTO"}]},
    )
    assert results[0]["errors"] == [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]


def test_create_with_a_taken_unique_external_id_is_duplicate_value(sf: Salesforce) -> None:
    sobject(sf, "Lead").create({"LastName": "A", "Company": "Acme", "Sync_Key__c": "k"})

    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").create({"LastName": "B", "Company": "Acme", "Sync_Key__c": "k"})

    assert sf_errors(caught.value)[0]["errorCode"] == "DUPLICATE_VALUE"


def test_writes_maintain_system_timestamps_from_the_clock(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.set_clock(T0)
    created = sobject(sf, "Lead").create({"LastName": "Doe", "Company": "Acme"})
    sandbox.set_clock(advance_seconds=90)
    sobject(sf, "Lead").update(created["id"], {"Title": "CTO"})

    lead = sobject(sf, "Lead").get(created["id"])

    assert lead["CreatedDate"] == "2026-11-22T10:00:00.000+0000"
    assert lead["SystemModstamp"] == lead["LastModifiedDate"] == "2026-11-22T10:01:30.000+0000"


# ------------------------------------------------------------------------ collections


def test_collection_with_one_bad_record_is_200_with_one_per_record_error(sandbox: Sandbox, sf: Salesforce) -> None:
    results = _upsert(sf, [_lead("a"), _lead("b", Company=None), _lead("c")])

    assert [r["success"] for r in results] == [True, False, True]
    assert [r["created"] for r in results] == [True, False, True]
    assert results[1]["errors"] == [
        {
            "statusCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [Company]",
            "fields": ["Company"],
        }
    ]
    assert [len(_lead_by_key(sandbox, k)) for k in "abc"] == [1, 0, 1]
    again = _upsert(sf, [_lead("a", Title="CEO")])
    assert again == [{"id": results[0]["id"], "success": True, "errors": [], "created": False}]


def test_collection_all_or_none_rolls_back_every_record(sandbox: Sandbox, sf: Salesforce) -> None:
    _upsert(sf, [_lead("keep", Title="Before")])

    results = _upsert(sf, [_lead("keep", Title="After"), _lead("new"), _lead("bad", LastName="")], all_or_none=True)

    assert [r["success"] for r in results] == [False, False, False]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert _lead_by_key(sandbox, "keep")[0]["Title"] == "Before"
    assert _lead_by_key(sandbox, "new") == []


def test_collection_create_and_update_by_id(sandbox: Sandbox, sf: Salesforce) -> None:
    created = sf_collection(
        sf,
        "composite/sobjects",
        "POST",
        {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "A", "Company": "X"},
                {"attributes": {"type": "Lead"}, "LastName": "B"},
            ],
        },
    )
    updated = sf_collection(
        sf,
        "composite/sobjects",
        "PATCH",
        {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "Id": created[0]["id"], "Title": "Boss"},
                {"attributes": {"type": "Lead"}, "Id": sf_id("00Q", 999), "Title": "Ghost"},
                {"attributes": {"type": "Lead"}, "Id": sf_id("00Q", 4), "Title": "Converted"},
            ],
        },
    )

    assert [r["success"] for r in created] == [True, False]
    assert [r["success"] for r in updated] == [True, False, False]
    assert [r["errors"][0]["statusCode"] for r in updated[1:]] == [
        "INVALID_CROSS_REFERENCE_KEY",
        "CANNOT_UPDATE_CONVERTED_LEAD",
    ]
    assert sobject(sf, "Lead").get(created[0]["id"])["Title"] == "Boss"


def test_collection_over_200_records_is_400(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _upsert(sf, [_lead(str(i)) for i in range(201)])

    assert sf_errors(caught.value)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_collection_upsert_refuses_a_key_twice_in_one_request(sf: Salesforce) -> None:
    results = _upsert(sf, [_lead("same"), _lead("same"), _lead("other")])

    assert [r["success"] for r in results] == [False, False, True]
    assert results[0]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"


# ------------------------------------------------------------------- assignment rule


def test_assignment_rule_overwrites_owner_unless_auto_assign_is_false(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(small_seed(), assignment_rule_owner_id=QUEUE)
    sf = salesforce_client(sb.url)
    off = {"Sforce-Auto-Assign": "false"}

    sobject(sf, "Lead").upsert("Sync_Key__c/single-on", {"LastName": "A", "Company": "X", "OwnerId": REP_1})
    sobject(sf, "Lead").upsert(
        "Sync_Key__c/single-off", {"LastName": "A", "Company": "X", "OwnerId": REP_1}, headers=off
    )
    _upsert(sf, [_lead("coll-on", OwnerId=REP_1)])
    _upsert(sf, [_lead("coll-off", OwnerId=REP_1)], headers={"Sforce-Auto-Assign": "FALSE"})
    created = sobject(sf, "Lead").create({"LastName": "A", "Company": "X", "OwnerId": REP_1})

    owners = {k: _lead_by_key(sb, k)[0]["OwnerId"] for k in ("single-on", "single-off", "coll-on", "coll-off")}
    assert owners == {"single-on": QUEUE, "single-off": REP_1, "coll-on": QUEUE, "coll-off": REP_1}
    assert sobject(sf, "Lead").get(created["id"])["OwnerId"] == QUEUE


# ---------------------------------------------------------------------- auth, limits


def test_expired_session_is_401_invalid_session_id(sandbox: Sandbox, sf: Salesforce) -> None:
    sf.query("SELECT Id FROM Lead")
    sandbox.expire_sessions()

    with pytest.raises(SalesforceExpiredSession) as caught:
        sf.query("SELECT Id FROM Lead")

    # The body of a real 401 (SF-codes; fixture salesforce_error_invalid_session.json): no `fields`.
    assert sf_errors(caught.value) == real_fixture("salesforce_error_invalid_session.json")


def test_configured_token_only_and_missing_token_is_401(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(None, sf_token="right")
    session = plain_http_session()
    url = f"{sb.url}/services/data/v59.0/limits/"

    assert session.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert session.get(url).status_code == 401
    assert session.get(url, headers={"Authorization": "Bearer right"}).status_code == 200


def test_oauth_client_credentials_issues_a_working_token(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(None, sf_token="only-this", sf_client_id="cid", sf_client_secret="shh")
    session = plain_http_session()
    url = f"{sb.url}/services/oauth2/token"

    refused = session.post(url, data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "wrong"})
    granted = session.post(
        url, data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "shh"}
    ).json()
    sf = salesforce_client(granted["instance_url"], token=granted["access_token"])

    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
    assert granted["token_type"] == "Bearer" and granted["instance_url"] == sb.url
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0


def test_daily_quota_is_reported_then_refused_with_403(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(None, sf_daily_quota=3)
    sf = salesforce_client(sb.url)

    sf.query("SELECT Id FROM Lead")
    usage_after_one = sf.api_usage["api-usage"]
    limits = sf.limits()
    sf.query("SELECT Id FROM Lead")
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Lead")

    assert (usage_after_one.used, usage_after_one.total) == (1, 3)
    assert limits == {"DailyApiRequests": {"Max": 3, "Remaining": 1}}
    # The body of a real 403 (SF-codes; fixture salesforce_error_request_limit_exceeded.json).
    assert sf_errors(caught.value) == real_fixture("salesforce_error_request_limit_exceeded.json")
    raw = requests.get(f"{sb.url}/services/data/v59.0/limits/", headers={"Authorization": "Bearer t"}, timeout=5)
    assert raw.status_code == 403 and raw.headers["Sforce-Limit-Info"] == "api-usage=3/3"


def test_any_api_version_is_accepted(sandbox: Sandbox) -> None:
    response = plain_http_session().get(
        f"{sandbox.url}/services/data/v62.0/query/",
        params={"q": "SELECT Id FROM User"},
        headers={"Authorization": "Bearer t"},
    )

    assert response.status_code == 200
    assert response.json()["records"][0]["attributes"]["url"].startswith("/services/data/v62.0/sobjects/User/")
