"""Contract tests: Salesforce payloads shaped like the documented examples and like what other
public connectors record, run through `SalesforceClient` and the record parser with `responses`.

Every fixture lives in `tests/fixtures/real/`; each test names its fixtures and their sources (the
keys are those of `tests/fixtures/real/SOURCES.md`). Nobody here invented these shapes.

Where today's product is wrong, the test states the correct expectation and is marked
`xfail(strict=True, reason="issue #14: ...")`: it fails loudly once the product is fixed, and the
mark must then go. Not run here because no product code reads them yet: the Lead describe (the
sandbox's describe is compared with it in test_sandbox_schema.py; the `check` command will read
it), `salesforce_limits.json` (the product reads usage from `Sforce-Limit-Info`), the single-record
error bodies (the product writes only through collections; the sandbox's are compared with them in
test_sandbox_schema.py) and the Outbound Message envelopes (issue #17).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import responses
from conftest import real_fixture
from responses import matchers
from support import all_decoded

from connectors.salesforce import SalesforceClient, SalesforceSettings
from core.errors import ContractError, QuotaExhaustedError
from core.records import parse_lead

INSTANCE = "https://example.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v59.0"
QUERY = f"{DATA}/query/"
UPSERT = f"{DATA}/composite/sobjects/Lead/Sync_Key__c"
COLLECTION = f"{DATA}/composite/sobjects"
TOKEN_URL = f"{INSTANCE}/services/oauth2/token"
SOQL = "SELECT Id, OwnerId FROM Lead"
QUEUE = "00G000000000001EAA"


@pytest.fixture
def sf(sleeps: list[float]) -> SalesforceClient:
    settings = SalesforceSettings(instance_url=INSTANCE, token="00D000000000001!token")
    return SalesforceClient(settings, sleep=sleeps.append)


def _headers(name: str = "salesforce_response_headers.json") -> dict[str, str]:
    """A recorded response head without the framing headers `responses` sets itself."""
    headers: dict[str, str] = real_fixture(name)
    return {k: v for k, v in headers.items() if k not in ("Content-Type", "Transfer-Encoding")}


def _query(rsps: responses.RequestsMock, soql: str = SOQL, **kwargs: Any) -> None:
    rsps.add(responses.GET, QUERY, match=[matchers.query_param_matcher({"q": soql})], **kwargs)


def _records(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "attributes"} for r in request["records"]]


# ------------------------------------------------------------------------------- reads


def test_query_pages_parse_into_leads(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_query_page.json and salesforce_query_last_page.json (SF-query; SF-picklists for
    Country/CountryCode; a lead in a queue, SF-owner) with salesforce_response_headers.json
    (SF-limitinfo v36 example head)."""
    first = real_fixture("salesforce_query_page.json")
    last = real_fixture("salesforce_query_last_page.json")
    _query(rsps, json=first, headers=_headers())
    rsps.add(responses.GET, INSTANCE + first["nextRecordsUrl"], json=last, headers=_headers())

    leads = [parse_lead(record) for record in all_decoded(sf.query(SOQL))]

    assert [lead.id for lead in leads] == [r["Id"] for r in first["records"] + last["records"]]
    assert [lead.owner_id for lead in leads] == [
        QUEUE,
        "005000000000009AAA",
        "005000000000001AAA",
        "005000000000001AAA",
        QUEUE,
    ]
    assert [lead.country for lead in leads] == ["DE", "US", "US", "CA", "GB"]
    analytics = leads[2]
    assert (analytics.lead_score, analytics.routing_rule, analytics.sync_key) == (
        72.0,
        "bdr.closed_lost_unresponsive",
        "crm-sync:lead:00000000-0000-4000-8000-00000000a001",
    )
    assert leads[3].is_converted and leads[3].status == "Closed - Converted"
    assert sf.api_usage() == (18, 5000)
    assert sf.last_query_time == parsedate_to_datetime(_headers()["Date"])


def test_a_deleted_lead_from_query_all_parses(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_queryall_deleted_page.json (SF-queryall: same shape as query, IsDeleted true).
    The connector has no queryAll read yet; the page is read through the query path to check the
    shape and the parser."""
    page = real_fixture("salesforce_queryall_deleted_page.json")
    _query(rsps, json=page, headers=_headers())

    (lead,) = [parse_lead(record) for record in all_decoded(sf.query(SOQL))]

    assert (lead.id, lead.owner_id, lead.company) == ("00Q000000000007EAA", QUEUE, "Example Deleted Inc")


def test_usage_over_the_allocation_stops_writes(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_response_headers_burst.json (SF-limitinfo: `api-usage=110018/100000;
    api-bursts=1/750`: usage can exceed the allocation)."""
    burst = _headers("salesforce_response_headers_burst.json")
    _query(rsps, json={"totalSize": 0, "done": True, "records": []}, headers=burst)

    list(sf.query(SOQL))

    assert sf.api_usage() == (110018, 100000)
    with pytest.raises(QuotaExhaustedError):
        sf.upsert("Lead", "Sync_Key__c", [{"Sync_Key__c": "k", "LastName": "L", "Company": "C"}], set_owner=False)


# ------------------------------------------------------------------------------ writes


def test_upsert_collection_reads_every_per_record_result(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_composite_upsert_request.json and salesforce_composite_upsert_response.json
    (SF-upsert: 200 with results in request order; ERR-msgs and FI-msgs for the messages)."""
    request = real_fixture("salesforce_composite_upsert_request.json")
    rsps.add(
        responses.PATCH,
        UPSERT,
        json=real_fixture("salesforce_composite_upsert_response.json"),
        headers=_headers(),
        match=[matchers.json_params_matcher(request), matchers.header_matcher({"Sforce-Auto-Assign": "FALSE"})],
    )

    results = sf.upsert("Lead", "Sync_Key__c", _records(request), set_owner=True)

    assert [(r.ok, r.created, r.id) for r in results[:2]] == [
        (True, False, "00Q000000000003EAA"),
        (True, True, "00Q000000000008EAA"),
    ]
    assert [(r.code, r.fields, r.transient) for r in results[2:]] == [
        ("STRING_TOO_LONG", ("Company",), False),
        ("FIELD_INTEGRITY_EXCEPTION", ("Country",), False),
        ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ("Routing_Rule__c",), False),
    ]
    assert results[3].message is not None and results[3].message.endswith("valid countries.: Country")
    assert [r.key for r in results] == [r["Sync_Key__c"] for r in request["records"]]


def test_update_collection_resends_only_the_locked_record(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_composite_update_response.json (SF-create SaveResult items; ERR-msgs for
    UNABLE_TO_LOCK_ROW; restforce's error codes for CANNOT_UPDATE_CONVERTED_LEAD)."""
    ids = ["00Q000000000001EAA", "00Q000000000002EAA", "00Q000000000004EAA"]
    records = [{"Id": i, "Title": "CTO"} for i in ids]
    rsps.add(responses.PATCH, COLLECTION, json=real_fixture("salesforce_composite_update_response.json"))
    rsps.add(
        responses.PATCH,
        COLLECTION,
        json=[{"id": ids[1], "success": True, "errors": []}],
        match=[matchers.json_params_matcher({"allOrNone": False, "records": [{"attributes": {"type": "Lead"},
                                                                              **records[1]}]})],
    )  # fmt: skip

    results = sf.update("Lead", records, set_owner=False)

    assert [(r.key, r.ok, r.code) for r in results] == [
        (ids[0], True, None),
        (ids[1], True, None),
        (ids[2], False, "CANNOT_UPDATE_CONVERTED_LEAD"),
    ]


def test_a_duplicate_value_failure_carries_no_id(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_composite_create_response.json (SF-create; ERR-msgs for DUPLICATE_VALUE): the
    same SaveResult items answer an update collection."""
    rsps.add(responses.PATCH, COLLECTION, json=real_fixture("salesforce_composite_create_response.json"))

    results = sf.update("Lead", [{"Id": "00Q000000000009EAA"}, {"Id": "00Q000000000010EAA"}], set_owner=False)

    assert (results[0].ok, results[0].id) == (True, "00Q000000000009EAA")
    assert (results[1].ok, results[1].id, results[1].code, results[1].transient) == (
        False,
        None,
        "DUPLICATE_VALUE",
        False,
    )


def test_an_all_or_none_rollback_names_both_codes(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_composite_allornone_rollback_response.json (SF-create's allOrNone example)."""
    rsps.add(responses.PATCH, COLLECTION, json=real_fixture("salesforce_composite_allornone_rollback_response.json"))

    results = sf.update("Lead", [{"Id": "00Q000000000011EAA"}, {"Id": "00Q000000000012EAA"}], set_owner=False)

    assert [r.code for r in results] == ["DUPLICATES_DETECTED", "ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert not any(r.ok for r in results)


# ---------------------------------------------------------------------- whole-request errors


def test_an_unknown_field_in_soql_is_a_contract_error(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_error_invalid_field_soql.json (ERR-msgs, recorded body; SF-codes): 400."""
    soql = "SELECT Id, Routing_Rule__x FROM Lead"
    _query(rsps, soql, status=400, json=real_fixture("salesforce_error_invalid_field_soql.json"))

    with pytest.raises(ContractError) as caught:
        list(sf.query(soql))

    assert "INVALID_FIELD" in str(caught.value) and caught.value.status == 400


def test_an_unknown_external_id_field_is_a_contract_error(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_error_upsert_unknown_external_id_field.json (restforce's recorded upsert error): 404."""
    rsps.add(
        responses.PATCH,
        f"{DATA}/composite/sobjects/Lead/Sync_Key__x",
        status=404,
        json=real_fixture("salesforce_error_upsert_unknown_external_id_field.json"),
    )

    with pytest.raises(ContractError) as caught:
        sf.upsert("Lead", "Sync_Key__x", [{"Sync_Key__x": "k"}], set_owner=False)

    assert "NOT_FOUND" in str(caught.value)


def test_the_daily_limit_stops_the_cycle(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_error_request_limit_exceeded.json (SF-codes: 403 REQUEST_LIMIT_EXCEEDED)."""
    _query(rsps, status=403, json=real_fixture("salesforce_error_request_limit_exceeded.json"))

    with pytest.raises(QuotaExhaustedError):
        list(sf.query(SOQL))


def test_an_expired_session_logs_in_again(rsps: responses.RequestsMock) -> None:
    """salesforce_error_invalid_session.json (SF-codes; simple-salesforce checks INVALID_SESSION_ID
    on 401)."""
    sf = SalesforceClient(
        SalesforceSettings(instance_url=INSTANCE, token="old", client_id="cid", client_secret="csecret"),
        sleep=lambda _: None,
    )
    _query(rsps, status=401, json=real_fixture("salesforce_error_invalid_session.json"))
    rsps.add(responses.POST, TOKEN_URL, json={"access_token": "new", "instance_url": INSTANCE})
    rsps.add(
        responses.GET,
        QUERY,
        json={"totalSize": 0, "done": True, "records": []},
        match=[matchers.query_param_matcher({"q": SOQL}), matchers.header_matcher({"Authorization": "Bearer new"})],
    )

    assert list(sf.query(SOQL)) == []


# ------------------------------------------------------------------- transient failures


_EMPTY_PAGE = {"totalSize": 0, "done": True, "records": []}


def test_a_maintenance_page_on_a_5xx_is_retried(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """An HTML page on 503 (AB-sf-retry retries every 5xx; the page is our wording), then a page."""
    _query(rsps, status=503, body="<html><body>Down for maintenance</body></html>", content_type="text/html")
    _query(rsps, json=_EMPTY_PAGE)

    assert list(sf.query(SOQL)) == []


def test_a_406_without_body_is_retried(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """A 406 with no body (AB-sf-retry: "most of the time" without one; Airbyte retries it)."""
    _query(rsps, status=406, body="")
    _query(rsps, json=_EMPTY_PAGE)

    assert list(sf.query(SOQL)) == []


def test_the_420_edge_page_is_retried(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """salesforce_420_edge_page.html (AB-sf-retry quotes the page; Airbyte retries 420)."""
    page = real_fixture("salesforce_420_edge_page.html")
    _query(rsps, status=420, body=page, content_type="text/html")
    _query(rsps, json=_EMPTY_PAGE)

    assert list(sf.query(SOQL)) == []


def test_a_200_with_an_html_body_is_retried(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """An HTML body with status 200 (AB-sf-retry retries JSONDecodeError; the page is ours)."""
    _query(rsps, status=200, body="<html><body>Please wait</body></html>", content_type="text/html")
    _query(rsps, json=_EMPTY_PAGE)

    assert list(sf.query(SOQL)) == []


def test_a_406_on_a_write_is_retried(rsps: responses.RequestsMock, sf: SalesforceClient) -> None:
    """A 406 without body on an upsert (AB-sf-retry), then salesforce_composite_upsert_response.json's
    first item: an upsert by external id is safe to repeat."""
    rsps.add(responses.PATCH, UPSERT, status=406, body="")
    rsps.add(responses.PATCH, UPSERT, json=real_fixture("salesforce_composite_upsert_response.json")[:1])

    results = sf.upsert("Lead", "Sync_Key__c", [{"Sync_Key__c": "k", "LastName": "L", "Company": "C"}],
                        set_owner=False)  # fmt: skip

    assert results[0].ok
