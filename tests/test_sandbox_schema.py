"""The sandbox's Salesforce schema: describe and write validation served from one field table.

Shapes are compared with the recorded payloads of `tests/fixtures/real/` (sources in its
SOURCES.md): the Lead describe (GO-describe, AB-describe, SF-owner, SF-picklists) and the error
bodies (ERR-msgs, FI-msgs).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
import requests
from conftest import (
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
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from sandbox.server import Sandbox

# Properties a write is held to, compared field by field with the recorded describe.
CONTRACT_KEYS = (
    "type", "length", "nillable", "createable", "updateable", "defaultedOnCreate", "externalId", "unique",
    "idLookup", "custom", "referenceTo", "relationshipName", "controllerName", "dependentPicklist", "soapType",
    "byteLength", "precision", "scale", "digits", "label", "compoundFieldName", "namePointing",
)  # fmt: skip


def _enforcing(make_sandbox: Callable[..., Sandbox], **settings: Any) -> tuple[Sandbox, Salesforce]:
    sb = make_sandbox(small_seed(), **settings)  # the schema is enforced by default
    return sb, salesforce_client(sb.url)


def _create_error(sf: Salesforce, **fields: Any) -> list[dict[str, Any]]:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").create({"LastName": "Doe", "Company": "Acme", **fields})
    content: list[dict[str, Any]] = sf_errors(caught.value)
    return content


def _upsert(sf: Salesforce, *records: dict[str, Any]) -> list[dict[str, Any]]:
    body = [{"attributes": {"type": "Lead"}, "LastName": "Doe", "Company": "Acme", **r} for r in records]
    return sf_collection(sf, "composite/sobjects/Lead/Sync_Key__c", "PATCH", {"allOrNone": False, "records": body})


# ----------------------------------------------------------------------------- describe


def test_describe_has_the_recorded_shape_and_the_fields_properties(make_sandbox: Callable[..., Sandbox]) -> None:
    recorded = real_fixture("salesforce_lead_describe.json")
    sb = make_sandbox(None, sf_state_country_picklists=True)

    mine = sobject(salesforce_client(sb.url), "Lead").describe()

    assert set(mine) == set(recorded)
    by_name = {f["name"]: f for f in mine["fields"]}
    for field in recorded["fields"]:
        ours = by_name[field["name"]]
        assert set(ours) == set(field), field["name"]
        assert {k: ours[k] for k in CONTRACT_KEYS} == {k: field[k] for k in CONTRACT_KEYS}, field["name"]
        if field["name"] != "Routing_Rule__c":
            # Ours is unrestricted by default so that rules a deployment adds are accepted; an
            # org restricts it through sf_schema (test_org_overrides_change_describe_and_writes_together).
            assert ours["restrictedPicklist"] == field["restrictedPicklist"], field["name"]
    assert mine["keyPrefix"] == recorded["keyPrefix"] == "00Q"
    assert mine["urls"]["describe"] == "/services/data/v59.0/sobjects/Lead/describe"


def test_describe_picklists_carry_values_and_the_state_country_dependency(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sb = make_sandbox(None, sf_state_country_picklists=True)
    fields = {f["name"]: f for f in sobject(salesforce_client(sb.url), "Lead").describe()["fields"]}
    countries = [p["value"] for p in fields["CountryCode"]["picklistValues"]]
    states = {p["value"]: p for p in fields["StateCode"]["picklistValues"]}

    assert {p["value"] for p in fields["LeadSource"]["picklistValues"]} >= {"Web", "Demo request", "BDR"}
    assert [p["value"] for p in fields["Status"]["picklistValues"] if p["defaultValue"]] == ["Open - Not Contacted"]
    assert set(fields["CountryCode"]["picklistValues"][0]) == {"active", "defaultValue", "label", "validFor", "value"}
    assert {"US", "DE", "GB", "CA"} <= set(countries) and len(countries) > 200
    assert fields["StateCode"]["controllerName"] == "CountryCode" and fields["StateCode"]["dependentPicklist"]
    # validFor: bit i (most significant first) is the i-th CountryCode value (SF-picklists).
    bits = base64.b64decode(states["CA"]["validFor"])
    us = countries.index("US")
    assert bits[us // 8] & (0x80 >> (us % 8))
    assert sum(bin(byte).count("1") for byte in bits) == 1
    assert states["CA"]["label"] == "California"


def test_describe_without_the_picklists_has_no_code_fields(make_sandbox: Callable[..., Sandbox]) -> None:
    # An org whose admin never enabled State and Country/Territory picklists (older orgs; new ones
    # have them on, as the sandbox by default).
    sf = salesforce_client(make_sandbox(small_seed(), sf_state_country_picklists=False).url)
    names = {f["name"] for f in sobject(sf, "Lead").describe()["fields"]}

    assert "Country" in names and "CountryCode" not in names and "StateCode" not in names
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id, CountryCode FROM Lead")
    assert sf_errors(caught.value)[0]["errorCode"] == "INVALID_FIELD"


def test_describe_owner_is_never_nillable_and_points_at_users_and_queues(sf: Salesforce) -> None:
    owner = next(f for f in sobject(sf, "Lead").describe()["fields"] if f["name"] == "OwnerId")
    recorded = next(f for f in real_fixture("salesforce_lead_describe.json")["fields"] if f["name"] == "OwnerId")

    assert owner == recorded


def test_global_describe_lists_every_object(sf: Salesforce) -> None:
    answer = sf.describe()
    assert isinstance(answer, dict), answer

    assert answer["maxBatchSize"] == 200
    assert {o["name"] for o in answer["sobjects"]} >= {"Lead", "User", "Opportunity", "Account", "Group"}
    assert next(o for o in answer["sobjects"] if o["name"] == "Group")["keyPrefix"] == "00G"


# ------------------------------------------------------------------- error bodies


def test_soql_invalid_field_is_the_recorded_body(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id, Routing_Rule__x FROM Lead")

    assert sf_errors(caught.value) == real_fixture("salesforce_error_invalid_field_soql.json")


def test_soql_invalid_field_points_at_the_first_unknown_field_on_its_line(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id, Nope__c\nFROM Lead\nWHERE Zzz__c = 1")

    message = sf_errors(caught.value)[0]["message"]
    assert message.startswith("\nSELECT Id, Nope__c\n           ^\nERROR at Row:1:Column:12\nNo such column 'Nope__c'")
    assert "fields" not in sf_errors(caught.value)[0]


@pytest.mark.parametrize(
    ("fixture", "fields"),
    [
        ("salesforce_error_string_too_long.json", {"LastName": "Example" * 12}),
        ("salesforce_error_restricted_picklist.json", {"Routing_Rule__c": "not.a.picklist.value"}),
        ("salesforce_error_country_integrity.json", {"Country": "GB"}),
        ("salesforce_error_country_code_integrity.json", {"CountryCode": "XK"}),
    ],
)
def test_single_write_errors_are_the_recorded_bodies(
    make_sandbox: Callable[..., Sandbox], fixture: str, fields: dict[str, Any]
) -> None:
    restricted = {"Lead": {"Routing_Rule__c": {"restrictedPicklist": True}}}
    _, sf = _enforcing(make_sandbox, sf_state_country_picklists=True, sf_schema=restricted)

    assert _create_error(sf, **fields) == real_fixture(fixture)


def test_duplicate_value_is_the_recorded_body(sf: Salesforce) -> None:
    first = sobject(sf, "Lead").create({"LastName": "A", "Company": "Acme", "Sync_Key__c": "k"})

    error = _create_error(sf, Sync_Key__c="k")

    recorded = real_fixture("salesforce_error_duplicate_value.json")
    assert error == [{**recorded[0], "message": recorded[0]["message"].replace("00Q000000000003EAA", first["id"])}]


def test_collection_errors_are_per_record_with_status_code_as_recorded(make_sandbox: Callable[..., Sandbox]) -> None:
    request = real_fixture("salesforce_composite_upsert_request.json")
    recorded = real_fixture("salesforce_composite_upsert_response.json")
    restricted = {"Lead": {"Routing_Rule__c": {"restrictedPicklist": True}}}
    sb, sf = _enforcing(make_sandbox, real_org=True, sf_schema=restricted)
    sb.load({"salesforce": {"User": [{"Id": "005000000000001AAA", "LastName": "Rep", "IsActive": True}]}})

    results = sf_collection(sf, "composite/sobjects/Lead/Sync_Key__c", "PATCH", request)

    assert [r["success"] for r in results] == [r["success"] for r in recorded]
    assert [r.get("created") for r in results[:2]] == [True, True]
    # Failed items: the recorded errors exactly; `id`/`created` on failures are unsourced (SOURCES.md).
    assert [r["errors"] for r in results[2:]] == [r["errors"] for r in recorded[2:]]


def test_json_type_errors_fail_the_whole_request(make_sandbox: Callable[..., Sandbox]) -> None:
    sb, sf = _enforcing(make_sandbox)

    single = _create_error(sf, Lead_Score__c="high")
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _upsert(sf, {"Sync_Key__c": "ok"}, {"Sync_Key__c": "bad", "NumberOfEmployees": [1]})

    assert single[0]["errorCode"] == "JSON_PARSER_ERROR" and "fields" not in single[0]
    assert single[0]["message"].startswith(
        "Cannot deserialize instance of double from VALUE_STRING value high or request may be missing"
    )
    assert sf_errors(caught.value)[0]["message"].startswith("Cannot deserialize instance of int from START_ARRAY value")
    assert [r for r in sb.state()["salesforce"]["Lead"] if r.get("Sync_Key__c") == "ok"] == []


def test_values_salesforce_can_read_are_stored_as_their_type(make_sandbox: Callable[..., Sandbox]) -> None:
    _, sf = _enforcing(make_sandbox)

    created = sobject(sf, "Lead").create(
        {"LastName": "D", "Company": "A", "Lead_Score__c": "42.5", "NumberOfEmployees": "12"}
    )
    lead = sobject(sf, "Lead").get(created["id"])

    assert (lead["Lead_Score__c"], lead["NumberOfEmployees"], lead["Status"]) == (42.5, 12, "Open - Not Contacted")


def test_email_and_non_nillable_fields_are_checked(make_sandbox: Callable[..., Sandbox]) -> None:
    _, sf = _enforcing(make_sandbox)

    bad_email = _create_error(sf, Email="not-an-address")
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").update(sf_id("00Q", 0), {"Status": None})

    assert bad_email == [
        {"message": "Email: invalid email address: not-an-address", "errorCode": "INVALID_EMAIL_ADDRESS",
         "fields": ["Email"]}
    ]  # fmt: skip
    assert sf_errors(caught.value)[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_unknown_field_in_a_write_is_invalid_field(sf: Salesforce) -> None:
    assert _create_error(sf, Nope__c=1) == [
        {"message": "No such column 'Nope__c' on sobject of type Lead", "errorCode": "INVALID_FIELD",
         "fields": ["Nope__c"]}
    ]  # fmt: skip


def test_values_are_enforced_by_default_and_can_be_let_through(
    sf: Salesforce, make_sandbox: Callable[..., Sandbox]
) -> None:
    lax = salesforce_client(make_sandbox(small_seed(), sf_enforce_schema=False).url)

    created = sobject(lax, "Lead").create({"LastName": "x" * 300, "Company": "Acme", "Lead_Score__c": "high"})

    assert _create_error(sf, LastName="x" * 300)[0]["errorCode"] == "STRING_TOO_LONG"
    assert sobject(lax, "Lead").get(created["id"])["LastName"] == "x" * 300


# -------------------------------------------------------------------- org overrides


def test_org_overrides_change_describe_and_writes_together(make_sandbox: Callable[..., Sandbox]) -> None:
    schema = {
        "Lead": {
            "Sync_Key__c": {"unique": False, "externalId": False, "idLookup": False},
            "Lead_Score__c": None,
            "Routing_Rule__c": {"name": "Routing_Rule_Name__c", "restrictedPicklist": True},
            "LeadSource": {"removePicklistValues": ["Product-led"], "addPicklistValues": ["Partner event"],
                           "restrictedPicklist": True},
            "Segment__c": {"type": "picklist", "picklistValues": ["A", "B"], "label": "Segment"},
        }
    }  # fmt: skip
    sb, sf = _enforcing(make_sandbox, sf_schema=schema)
    fields = {f["name"]: f for f in sobject(sf, "Lead").describe()["fields"]}

    assert not fields["Sync_Key__c"]["unique"] and not fields["Sync_Key__c"]["externalId"]
    assert "Lead_Score__c" not in fields and "Routing_Rule__c" not in fields
    assert fields["Routing_Rule_Name__c"]["custom"] and fields["Routing_Rule_Name__c"]["restrictedPicklist"]
    sources = [p["value"] for p in fields["LeadSource"]["picklistValues"]]
    assert "Product-led" not in sources and sources[-1] == "Partner event"
    assert fields["Segment__c"]["type"] == "picklist" and fields["Segment__c"]["custom"]

    assert _create_error(sf, Lead_Score__c=1)[0]["errorCode"] == "INVALID_FIELD"
    assert _create_error(sf, LeadSource="Product-led")[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "Sync_Key__c": "same", "Segment__c": "A"})
    sobject(sf, "Lead").create({"LastName": "A", "Company": "B", "Sync_Key__c": "same"})  # no longer unique
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _upsert(sf, {"Sync_Key__c": "x"})  # no longer an external id
    assert sf_errors(caught.value)[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceResourceNotFound):
        sobject(sf, "Lead").upsert("Sync_Key__c/x", {"LastName": "A", "Company": "B"})
    assert len([r for r in sb.state()["salesforce"]["Lead"] if r.get("Sync_Key__c") == "same"]) == 2


def test_overrides_come_from_a_seed_or_the_config_control(make_sandbox: Callable[..., Sandbox]) -> None:
    seeded = make_sandbox({**small_seed(), "config": {"sf_schema": {"Lead": {"Classification__c": None}}}})
    controlled = make_sandbox(small_seed())
    session = plain_http_session()

    changed = session.post(f"{controlled.url}/_sandbox/config", json={"sf_schema": {"Lead": {"Title": None}}})
    refused = session.post(
        f"{controlled.url}/_sandbox/config",
        json={"sf_schema": {"Lead": {"Title": {"lenght": 3}}, "Nope": {}}},
    )

    seeded_fields = sobject(salesforce_client(seeded.url), "Lead").describe()["fields"]
    assert "Classification__c" not in {f["name"] for f in seeded_fields}
    assert changed.status_code == 200 and changed.json()["sf_schema"] == {"Lead": {"Title": None}}
    assert "Title" not in {f["name"] for f in sobject(salesforce_client(controlled.url), "Lead").describe()["fields"]}
    assert refused.status_code == 400
    assert (
        "Lead.Title.lenght: unknown key" in refused.json()["error"]
        and "Nope: unknown sObject" in refused.json()["error"]
    )


def test_load_control_refuses_a_bad_config_before_any_record(sandbox: Sandbox) -> None:
    before = sandbox.state()["salesforce"]

    answer = plain_http_session().post(
        f"{sandbox.url}/_sandbox/load",
        json={"config": {"sf_default_lead_owner": "robot"}, "salesforce": {"Lead": [{"LastName": "X"}]}},
    )

    assert answer.status_code == 400 and "sf_default_lead_owner" in answer.json()["error"]
    assert sandbox.state()["salesforce"] == before


def test_describe_of_a_seeded_custom_object_is_served(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox({"salesforce": {"Invoice__c": [{"Amount__c": 12.5, "Name": "INV-1"}]}})

    response = requests.get(
        f"{sb.url}/services/data/v59.0/sobjects/Invoice__c/describe", headers={"Authorization": "Bearer t"}, timeout=5
    )

    fields = {f["name"]: f for f in response.json()["fields"]}
    assert response.json()["custom"] is True
    assert fields["Amount__c"]["type"] == "double" and fields["Amount__c"]["custom"]
