"""An org's own names for crm-sync's custom fields (`[salesforce.fields]`) and its State and
Country/Territory picklists (`salesforce.state_country_picklists`), issue #14.

Wire shapes: the query page and collection answers are Salesforce's documented shapes (SF-query,
SF-collections in tests/fixtures/real/SOURCES.md); with the picklists on, `Country` takes only the
picklist's integration values and the ISO code goes in `CountryCode` (SF-picklists there)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from conftest import real_fixture
from test_real_org_leads import routed_book

from connectors.salesforce import DEFAULT_FIELDS, SalesforceClient, SalesforceSettings
from core.errors import ConfigError
from core.records import parse_lead
from sandbox import Sandbox, SandboxConfig
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import Config, example_against, parse_config
from sync.cycle import run_cycle
from sync.ingest import SF_OBJECTS, sf_objects
from sync.preflight import preflight, schema_problems

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
INSTANCE = "https://acme.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v59.0"
RENAMED = {"sync_key": "External_Key__c", "lead_score": "Score__c"}


def _client() -> SalesforceClient:
    fields = {**DEFAULT_FIELDS, **RENAMED}
    settings = SalesforceSettings(instance_url=INSTANCE, token="00Dxx!t", fields=fields)
    return SalesforceClient(settings, sleep=lambda _: None)


# -- the adapter renames on the wire, both ways ---------------------------------------------------


def test_reads_select_the_orgs_names_and_return_crm_syncs() -> None:
    page = {"totalSize": 1, "done": True, "records": [
        {"attributes": {"type": "Lead", "url": "/services/data/v59.0/sobjects/Lead/00Q1"}, "Id": "00Q1",
         "external_key__c": "k1", "Score__c": 42, "SystemModstamp": "2026-11-22T09:00:00.000+0000"}]}  # fmt: skip
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{DATA}/queryAll/", json=page)
        records = list(_client().iter_changed("Lead", ["Id", "Sync_Key__c", "Lead_Score__c"], None))
        soql = parse_qs(urlsplit(rsps.calls[0].request.url or "").query)["q"][0]
    assert soql == "SELECT Id, External_Key__c, Score__c, SystemModstamp FROM Lead ORDER BY SystemModstamp, Id"
    # Matched case-insensitively, as Salesforce names are; the query's `attributes` are dropped upstream.
    assert records == [{"Id": "00Q1", "Sync_Key__c": "k1", "Lead_Score__c": 42,
                        "SystemModstamp": "2026-11-22T09:00:00.000+0000"}]  # fmt: skip


def test_a_mini_cycle_s_linked_leads_are_read_under_the_orgs_names() -> None:
    """`read_where` (an event's mini-cycle reads an account's leads by `Vitally_Account_Id__c`):
    found by a review (2026-12-05), the mini-cycle's query selected crm-sync's names, so an org that
    renames a field got INVALID_FIELD for every Vitally event."""
    page = {"totalSize": 1, "done": True, "records": [
        {"attributes": {"type": "Lead", "url": "/services/data/v59.0/sobjects/Lead/00Q1"}, "Id": "00Q1",
         "External_Key__c": "k1", "Account_Ref__c": "acc_1"}]}  # fmt: skip
    client = SalesforceClient(
        SalesforceSettings(
            instance_url=INSTANCE,
            token="00Dxx!t",
            fields={**DEFAULT_FIELDS, **RENAMED, "lead_vitally_account_id": "Account_Ref__c"},
        ),
        sleep=lambda _: None,
    )
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{DATA}/query/", json=page)
        fields = ["Sync_Key__c", "Vitally_Account_Id__c"]
        records = list(client.read_where("Lead", fields, "Vitally_Account_Id__c", ["acc_1"]))
        soql = parse_qs(urlsplit(rsps.calls[0].request.url or "").query)["q"][0]
    assert soql == "SELECT Id, External_Key__c, Account_Ref__c FROM Lead WHERE Account_Ref__c IN ('acc_1')"
    assert records == [{"Id": "00Q1", "Sync_Key__c": "k1", "Vitally_Account_Id__c": "acc_1"}]


def test_writes_upsert_on_the_orgs_key_field_and_errors_name_crm_syncs_fields() -> None:
    error = {"statusCode": "INVALID_TYPE_ON_FIELD_IN_RECORD", "message": "Score: value not of required type",
             "fields": ["Score__c"]}  # fmt: skip
    answer = [{"success": False, "errors": [error]}]
    sent: list[Any] = []

    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        sent.append(json.loads(request.body or "{}"))
        return 200, {}, json.dumps(answer)

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.PATCH, f"{DATA}/composite/sobjects/Lead/External_Key__c", callback=reply)
        (result,) = _client().upsert("Lead", "Sync_Key__c", [{"Sync_Key__c": "k1", "Lead_Score__c": "x"}],
                                     set_owner=False)  # fmt: skip
    (record,) = sent[0]["records"]
    assert {k: v for k, v in record.items() if k != "attributes"} == {"External_Key__c": "k1", "Score__c": "x"}
    assert result.key == "k1" and not result.ok and result.fields == ("Lead_Score__c",)


def test_the_config_refuses_an_unknown_field_and_two_fields_under_one_name() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"salesforce": {"fields": {"sync_kee": "Sync_Key__c", "role": "Sub_Role__c"}}})
    assert caught.value.problems == [
        "salesforce.fields.sub_role: Lead.Sub_Role__c is already role's",
        "salesforce.fields.sync_kee: not a field crm-sync reads or writes",
    ]
    config = parse_config({"salesforce": {"fields": {"sync_key": "External_Key__c"}}})
    assert config.salesforce.fields == {**DEFAULT_FIELDS, "sync_key": "External_Key__c"}  # the rest keep their names


# -- State and Country/Territory picklists ---------------------------------------------------------


def test_a_leads_country_is_its_code_first() -> None:
    raw = {"Id": "00Q000000000001AAA", "SystemModstamp": "2026-11-22T09:00:00.000+0000",
           "Country": "Germany", "CountryCode": "DE"}  # fmt: skip
    assert parse_lead(raw).country == "DE"
    assert parse_lead({**raw, "CountryCode": None}).country == "DE"  # a name, normalised
    # no CountryCode in an org without them
    assert sf_objects(SalesforceSettings(state_country_picklists=False))["Lead"] == SF_OBJECTS["Lead"]
    assert sf_objects(SalesforceSettings(state_country_picklists=True))["Lead"][-1] == "CountryCode"
    assert SalesforceSettings().state_country_picklists is True  # on in new orgs, so on by default


def _cycle(sandbox: Sandbox, config: Config) -> Any:
    return run_cycle(config, StateDB.memory(), make_vitally(config), make_salesforce(config), clock=lambda: NOW)


@pytest.mark.parametrize("picklists", [True, False])
def test_a_new_lead_in_an_org_with_the_picklists_carries_its_iso_code_in_country_code(picklists: bool) -> None:
    """On: written to CountryCode, the org fills Country with its name. Off in the config against an
    org that has them: Country refuses the code (FIELD_INTEGRITY_EXCEPTION) and the write is parked,
    which is what `python -m sync check` catches before a cycle runs."""
    with Sandbox(routed_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = example_against(sandbox.url)
        config = replace(config, salesforce=replace(config.salesforce, state_country_picklists=picklists))
        report = _cycle(sandbox, config)
        leads = [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]
    (write,) = [w for w in report.plan if w.op == "upsert_lead"]
    if picklists:
        assert write.fields["CountryCode"] == "DE" and "Country" not in write.fields
        (lead,) = leads
        assert (lead["CountryCode"], lead["Country"]) == ("DE", "Germany")
    else:
        assert write.fields["Country"] == "DE" and leads == []


def test_an_org_that_renames_crm_syncs_fields_gets_its_lead_under_its_names() -> None:
    schema = {"Lead": {"Sync_Key__c": {"name": "External_Key__c"}, "Lead_Score__c": {"name": "Score__c"}}}
    with Sandbox(routed_book(), config=SandboxConfig(real_org=True, sf_schema=schema), now=NOW) as sandbox:
        config = example_against(sandbox.url)
        salesforce = replace(config.salesforce, state_country_picklists=True,
                             fields={**DEFAULT_FIELDS, **RENAMED})  # fmt: skip
        report = _cycle(sandbox, replace(config, salesforce=salesforce))
        leads = [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("External_Key__c")]
        paths = {c["path"] for c in sandbox.calls() if "/composite/sobjects/Lead/" in c["path"]}
    (write,) = [w for w in report.plan if w.op == "upsert_lead"]
    (lead,) = leads
    assert report.exit_code == 0
    assert lead["External_Key__c"] == write.fields["Sync_Key__c"] and lead["Score__c"] == write.fields["Lead_Score__c"]
    assert paths == {"/services/data/v59.0/composite/sobjects/Lead/External_Key__c"}


# -- the preflight's schema check on a recorded describe -------------------------------------------


def test_check_reads_a_recorded_lead_describe_and_names_every_gap() -> None:
    """salesforce_lead_describe.json (GO-describe, AB-describe, SF-owner, SF-picklists in SOURCES.md):
    trimmed to the standard fields crm-sync uses plus four custom fields like ours, LeadSource
    without our signal sources, a restricted Routing_Rule__c of three values, picklists on. Fetched
    through `SalesforceClient.describe`, then judged against the default config."""
    recorded = real_fixture("salesforce_lead_describe.json")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{DATA}/sobjects/Lead/describe", json=recorded)
        described = _client().describe("Lead")
    config = parse_config({"salesforce": {"state_country_picklists": True}})
    problems = schema_problems(config, {"Lead": described})
    missing = [p.split(":")[0] for p in problems if ": missing: " in p]
    hidden = [p.split(":")[0] for p in problems if ": not visible to this user: " in p]
    sources = [p.split("'")[1] for p in problems if p.startswith("Lead.LeadSource: value ")]
    (rules,) = [p for p in problems if p.startswith("Lead.Routing_Rule__c: restricted picklist lacks ")]
    assert sorted(missing) == sorted(f"Lead.{name}" for name in (
        "Role__c", "Sub_Role__c", "Form_Text__c", "Classification__c", "Routing_Reason__c", "Qualification__c",
        "Qualification_Reason__c"))  # fmt: skip
    assert hidden == ["Lead.ConvertedDate", "Lead.ConvertedOpportunityId"]  # standard: trimmed from the record
    assert sources == ["Product-led", "New business signal", "AM referral", "AE referral"]  # "BDR" is there
    assert "new_business.demo_request" not in rules and "product_led.mrr_band" in rules
    assert len(problems) == len(missing) + len(hidden) + len(sources) + 1  # Sync_Key__c is a unique external id
    flipped = parse_config({"salesforce": {"state_country_picklists": False}})
    assert schema_problems(flipped, {"Lead": described})[0].startswith(
        "salesforce.state_country_picklists: the org has State and Country/Territory picklists"
    )


def test_check_finds_renamed_fields_under_the_orgs_names() -> None:
    """An org whose key, score and Account link carry other names, mapped in `[salesforce.fields]`:
    ready. The same org without the mapping: each renamed field is one line naming its key."""
    schema = {"Lead": {"Sync_Key__c": {"name": "External_Key__c"}, "Lead_Score__c": {"name": "Score__c"}},
              "Account": {"Vitally_Account_Id__c": {"name": "Vitally_Id__c"}}}  # fmt: skip
    renamed = {**DEFAULT_FIELDS, **RENAMED, "account_vitally_account_id": "Vitally_Id__c"}
    with Sandbox({}, config=SandboxConfig(real_org=True, sf_schema=schema), now=NOW) as sandbox:
        base = example_against(sandbox.url)
        found = {}
        for name, fields in (("mapped", renamed), ("unmapped", DEFAULT_FIELDS)):
            salesforce = replace(base.salesforce, state_country_picklists=True, fields=fields)
            config = replace(base, salesforce=salesforce, pools={})
            found[name] = preflight(config, make_vitally(config), make_salesforce(config))
    assert (found["mapped"].exit_code, found["mapped"].problems) == (0, [])
    assert found["unmapped"].exit_code == 2
    assert sorted(p.split(": ")[0] for p in found["unmapped"].problems) == [
        "Account.Vitally_Account_Id__c", "Lead.Lead_Score__c", "Lead.Sync_Key__c"]  # fmt: skip
