"""SalesforceClient against a mocked Salesforce REST API (`responses`; nothing really sleeps)."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st
from responses import matchers
from support import decoded, request_kwargs

from connectors.base import SalesforcePort, WriteResult
from connectors.salesforce import SalesforceClient, SalesforceSettings
from core.errors import (
    AuthError,
    ConfigError,
    ContractError,
    QuotaExhaustedError,
    RateLimitedError,
    RetriableError,
    SyncError,
    UnansweredError,
    UnreachableError,
)

INSTANCE = "https://acme.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v59.0"
QUERY = f"{DATA}/query/"
TOKEN_URL = f"{INSTANCE}/services/oauth2/token"
UPSERT = f"{DATA}/composite/sobjects/Lead/Sync_Key__c"
UPDATE = f"{DATA}/composite/sobjects"
TOKEN = "00Dxx!token"

Body = dict[str, Any]
Callback = Callable[[requests.PreparedRequest], tuple[int, dict[str, str], str]]


@pytest.fixture
def sf(sleeps: list[float]) -> SalesforceClient:
    return SalesforceClient(SalesforceSettings(instance_url=INSTANCE, token=TOKEN), sleep=sleeps.append)


def _records(*ids: str, obj: str = "Lead") -> list[Body]:
    return [{"attributes": {"type": obj, "url": f"/services/data/v59.0/sobjects/{obj}/{i}"}, "Id": i} for i in ids]


def _query_body(records: list[Body], next_url: str | None = None) -> Body:
    body: Body = {"totalSize": len(records), "done": next_url is None, "records": records}
    if next_url is not None:
        body["nextRecordsUrl"] = next_url
    return body


def _soql(q: str) -> list[Any]:
    return [matchers.query_param_matcher({"q": q})]


def _sf_error(code: str, message: str = "error") -> str:
    return json.dumps([{"message": message, "errorCode": code, "fields": []}])


def _leads(n: int, **extra: Any) -> list[Body]:
    return [{"Sync_Key__c": f"k{i}", "LastName": f"L{i}", "Company": "C", **extra} for i in range(n)]


def _collection_callback(
    seen: list[list[Body]],
    outcome: Callable[[Body], Body] = lambda record: {"success": True, "created": True, "errors": []},
    headers: dict[str, str] | None = None,
) -> Callback:
    """Answer an sObject Collections request with one result per record, keeping what was sent."""

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        assert request.body is not None
        payload = json.loads(request.body)
        assert payload["allOrNone"] is False
        seen.append(payload["records"])
        results = []
        for n, record in enumerate(payload["records"]):
            result = {"id": f"00Q{len(seen):02d}{n:04d}", **outcome(record)}
            results.append(result)
        return 200, headers or {}, json.dumps(results)

    return callback


# -- reading ---------------------------------------------------------------------------------------


def test_query_formats_with_format_soql_and_strips_attributes(
    sf: SalesforceClient, rsps: responses.RequestsMock
) -> None:
    soql = "SELECT Id, Owner.Name FROM Lead WHERE Email = 'o\\'brien@x.com'"
    # A relationship field and a child subquery (REST API guide, "Query": each nested record has
    # its own `attributes`), among scalars of every JSON type.
    record = {
        "attributes": {"type": "Lead", "url": "/x"},
        "Id": "00Q1",
        "Owner": {"attributes": {"type": "User", "url": "/y"}, "Name": "Ann"},
        "Tasks": {"totalSize": 1, "done": True, "records": [{"attributes": {"type": "Task"}, "Id": "00T1"}]},
        "AnnualRevenue": 1.5,
        "NumberOfEmployees": 3,
        "IsConverted": False,
        "Title": None,
    }
    rsps.add(responses.GET, QUERY, json=_query_body([record]), match=_soql(soql))
    result = list(sf.query("SELECT Id, Owner.Name FROM Lead WHERE Email = {}", "o'brien@x.com"))
    assert result == [
        {
            "Id": "00Q1",
            "Owner": {"Name": "Ann"},
            "Tasks": {"totalSize": 1, "done": True, "records": [{"Id": "00T1"}]},
            "AnnualRevenue": 1.5,
            "NumberOfEmployees": 3,
            "IsConverted": False,
            "Title": None,
        }
    ]
    assert type(result[0]) is dict
    assert sf.requests["GET", "/services/data/v59.0/query"] == 1


def test_query_sends_the_bearer_token(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.GET,
        QUERY,
        json=_query_body([]),
        match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})],
    )
    assert list(sf.query("SELECT Id FROM Lead")) == []


def test_query_follows_next_records_url_lazily(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, QUERY, json=_query_body(_records("1", "2"), "/services/data/v59.0/query/01g-2000"))
    rsps.add(
        responses.GET,
        f"{DATA}/query/01g-2000",
        json=_query_body(_records("3"), "/services/data/v59.0/query/01g-4000"),
    )
    rows = sf.query("SELECT Id FROM Lead")
    assert [decoded(next(rows))["Id"] for _ in range(3)] == ["1", "2", "3"]
    # The third page is never requested: nothing asked for it.
    assert sf.requests["GET", "/services/data/v59.0/query/:locator"] == 1


def test_query_stops_on_a_repeated_next_records_url(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    locator = "/services/data/v59.0/query/01g-2000"
    rsps.add(responses.GET, QUERY, json=_query_body(_records("1"), locator))
    rsps.add(responses.GET, f"{DATA}/query/01g-2000", json=_query_body(_records("2"), locator))
    with pytest.raises(ContractError, match="pagination loop"):
        list(sf.query("SELECT Id FROM Lead"))


def test_query_retries_one_page_without_restarting(
    sf: SalesforceClient, rsps: responses.RequestsMock, sleeps: list[float]
) -> None:
    rsps.add(responses.GET, QUERY, json=_query_body(_records("1"), "/services/data/v59.0/query/01g-2000"))
    rsps.add(responses.GET, f"{DATA}/query/01g-2000", status=503, body=_sf_error("SERVER_UNAVAILABLE"))
    rsps.add(responses.GET, f"{DATA}/query/01g-2000", json=_query_body(_records("2")))
    assert [decoded(r)["Id"] for r in sf.query("SELECT Id FROM Lead")] == ["1", "2"]
    assert len(rsps.calls) == 3 and len(sleeps) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"done": True}, id="no-records"),
        pytest.param({"records": [], "done": False}, id="not-done-without-next"),
        pytest.param({"records": ["x"], "done": True}, id="records-not-objects"),
        pytest.param([], id="a-list"),
    ],
)
def test_query_refuses_an_unknown_answer_shape(
    sf: SalesforceClient, rsps: responses.RequestsMock, body: object
) -> None:
    rsps.add(responses.GET, QUERY, json=body)
    with pytest.raises(ContractError):
        list(sf.query("SELECT Id FROM Lead"))


def test_query_turns_a_format_error_into_a_config_error(sf: SalesforceClient) -> None:
    with pytest.raises(ConfigError):
        sf.query("SELECT Id FROM Lead WHERE Email = {}")


ITER_CHANGED_CASES = [
    pytest.param(
        ["Email", "OwnerId"],
        "2024-03-01T10:05:00Z",
        300,
        "SELECT Id, Email, OwnerId, SystemModstamp FROM Lead "
        "WHERE SystemModstamp >= 2024-03-01T10:00:00+00:00 ORDER BY SystemModstamp, Id",
        id="five-minute-lookback",
    ),
    pytest.param(
        ["Id", "systemmodstamp", "Owner.Name"],
        "2024-03-01T10:05:00.000+0000",
        0,
        "SELECT Id, Owner.Name, SystemModstamp FROM Lead "
        "WHERE SystemModstamp >= 2024-03-01T10:05:00+00:00 ORDER BY SystemModstamp, Id",
        id="no-duplicate-columns-salesforce-timestamp",
    ),
    pytest.param(
        ["Email"],
        "2024-03-01T12:00:00+02:00",
        60,
        "SELECT Id, Email, SystemModstamp FROM Lead "
        "WHERE SystemModstamp >= 2024-03-01T09:59:00+00:00 ORDER BY SystemModstamp, Id",
        id="offset-normalised-to-utc",
    ),
    pytest.param(
        ["Email"],
        None,
        300,
        "SELECT Id, Email, SystemModstamp FROM Lead ORDER BY SystemModstamp, Id",
        id="everything",
    ),
]


@pytest.mark.parametrize(("fields", "since", "lookback", "soql"), ITER_CHANGED_CASES)
def test_iter_changed_builds_the_incremental_query(
    sf: SalesforceClient,
    rsps: responses.RequestsMock,
    fields: list[str],
    since: str | None,
    lookback: int,
    soql: str,
) -> None:
    # Through QueryAll (deleted and merged records too: the REST API guide's "Get Records that
    # Have Been Deleted or Merged").
    rsps.add(responses.GET, f"{DATA}/queryAll/", json=_query_body(_records("00Q1")), match=_soql(soql))
    assert list(sf.iter_changed("Lead", fields, since, lookback_seconds=lookback)) == [{"Id": "00Q1"}]
    assert sf.requests["GET", "/services/data/v59.0/queryAll"] == 1


@pytest.mark.parametrize(
    ("sobject", "fields"),
    [
        pytest.param("Lead; DELETE", ["Email"], id="bad-object"),
        pytest.param("Lead", ["Email FROM User --"], id="injected-field"),
        pytest.param("Lead", ["Email,Name"], id="comma"),
        pytest.param("Lead", ["1Email"], id="leading-digit"),
    ],
)
def test_iter_changed_refuses_names_that_are_not_identifiers(
    sf: SalesforceClient, sobject: str, fields: list[str]
) -> None:
    with pytest.raises(ConfigError):
        sf.iter_changed(sobject, fields, None)


def test_iter_changed_refuses_a_bad_cursor(sf: SalesforceClient) -> None:
    with pytest.raises(ContractError):
        sf.iter_changed("Lead", ["Email"], "last tuesday")


# -- failures and the retry policy -----------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 500, "body": _sf_error("UNKNOWN_EXCEPTION")}, id="500"),
        pytest.param({"status": 503, "body": _sf_error("SERVER_UNAVAILABLE")}, id="503"),
        pytest.param({"status": 502, "body": "<html>bad gateway</html>"}, id="502-html"),
        pytest.param({"status": 429, "body": "[]"}, id="429"),
        pytest.param({"body": requests.exceptions.ReadTimeout("timed out")}, id="timeout"),
        pytest.param({"body": requests.exceptions.ConnectionError("connection reset by peer")}, id="reset"),
    ],
)
def test_request_retries_transient_failures_then_succeeds(
    sf: SalesforceClient, rsps: responses.RequestsMock, sleeps: list[float], failure: dict[str, Any]
) -> None:
    rsps.add(responses.GET, QUERY, **failure)
    rsps.add(responses.GET, QUERY, json=_query_body(_records("1")))
    assert [decoded(r)["Id"] for r in sf.query("SELECT Id FROM Lead")] == ["1"]
    assert len(rsps.calls) == 2
    assert sf.requests["GET", "/services/data/v59.0/query"] == 2
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 2


def test_the_concurrent_requests_limit_is_retried_not_a_spent_quota(
    sf: SalesforceClient, rsps: responses.RequestsMock, sleeps: list[float]
) -> None:
    """`REQUEST_LIMIT_EXCEEDED` also means "ConcurrentRequests (Concurrent API Requests) Limit
    exceeded." (answers recorded by public integrations: the s17 wire audit), which clears in
    seconds: retried like a 429, not the daily allocation that stops the writes and pages someone."""
    concurrent = _sf_error("REQUEST_LIMIT_EXCEEDED", "ConcurrentRequests (Concurrent API Requests) Limit exceeded.")
    rsps.add(responses.GET, QUERY, status=403, body=concurrent)
    rsps.add(responses.GET, QUERY, json={"totalSize": 1, "done": True, "records": [{"Id": "1"}]})
    assert [decoded(r)["Id"] for r in sf.query("SELECT Id FROM Lead")] == ["1"]
    assert len(rsps.calls) == 2 and len(sleeps) == 1
    daily = _sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    rsps.add(responses.GET, QUERY, status=403, body=daily)
    with pytest.raises(QuotaExhaustedError):
        list(sf.query("SELECT Id FROM Lead"))


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        pytest.param(400, _sf_error("MALFORMED_QUERY"), ContractError, id="400"),
        pytest.param(401, _sf_error("INVALID_SESSION_ID"), AuthError, id="401-bare-token"),
        pytest.param(403, _sf_error("REQUEST_LIMIT_EXCEEDED"), QuotaExhaustedError, id="403-quota"),
        pytest.param(403, _sf_error("INSUFFICIENT_ACCESS"), AuthError, id="403-access"),
        pytest.param(404, _sf_error("NOT_FOUND"), ContractError, id="404"),
    ],
)
def test_request_does_not_retry_permanent_failures(
    sf: SalesforceClient,
    rsps: responses.RequestsMock,
    sleeps: list[float],
    status: int,
    body: str,
    error: type[SyncError],
) -> None:
    rsps.add(responses.GET, QUERY, status=status, body=body)
    with pytest.raises(error) as caught:
        list(sf.query("SELECT Id FROM Lead"))
    assert type(caught.value) is error
    assert len(rsps.calls) == 1 and sleeps == []


def test_request_error_message_names_the_error_code(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, QUERY, status=400, body=_sf_error("INVALID_FIELD", "No such column 'Foo__c'"))
    with pytest.raises(ContractError, match="INVALID_FIELD") as caught:
        list(sf.query("SELECT Foo__c FROM Lead"))
    assert caught.value.status == 400


def test_request_gives_up_after_max_attempts(rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    sf = SalesforceClient(SalesforceSettings(instance_url=INSTANCE, token=TOKEN, max_attempts=3), sleep=sleeps.append)
    for _ in range(3):
        rsps.add(responses.GET, QUERY, status=503, body=_sf_error("SERVER_UNAVAILABLE"))
    with pytest.raises(RetriableError) as caught:
        list(sf.query("SELECT Id FROM Lead"))
    assert caught.value.status == 503
    assert len(sleeps) == 2


def test_request_unreachable_after_network_failures(rsps: responses.RequestsMock) -> None:
    sf = SalesforceClient(SalesforceSettings(instance_url=INSTANCE, token=TOKEN, max_attempts=2), sleep=lambda _: None)
    for _ in range(2):
        rsps.add(responses.GET, QUERY, body=requests.exceptions.ConnectTimeout())
    with pytest.raises(UnreachableError):
        list(sf.query("SELECT Id FROM Lead"))


def test_request_rate_limited_is_a_rate_limited_error(rsps: responses.RequestsMock) -> None:
    sf = SalesforceClient(SalesforceSettings(instance_url=INSTANCE, token=TOKEN, max_attempts=1), sleep=lambda _: None)
    rsps.add(responses.GET, QUERY, status=429, body="[]")
    with pytest.raises(RateLimitedError):
        list(sf.query("SELECT Id FROM Lead"))


def test_request_retries_a_non_json_success_and_never_calls_it_a_contract_error(
    sf: SalesforceClient, rsps: responses.RequestsMock
) -> None:
    """An HTML page answered with 200 (issue #14; Airbyte's source-salesforce retries it): retried
    up to max_attempts, then a transient failure, never a contract error that parks a write."""
    rsps.add(responses.GET, QUERY, body="<html>maintenance</html>")
    with pytest.raises(RetriableError) as caught:
        list(sf.query("SELECT Id FROM Lead"))
    assert not isinstance(caught.value, ContractError)
    assert len(rsps.calls) == sf.settings.max_attempts


def test_request_refuses_json_beyond_the_decoding_limits(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    """A page whose JSON cannot be decoded within the limits would come back the same: a contract error."""
    rsps.add(responses.GET, QUERY, body='{"done": true, "records": [], "x": ' + "[" * 50 + "]" * 50 + "}")
    with pytest.raises(ContractError):
        list(sf.query("SELECT Id FROM Lead"))
    assert len(rsps.calls) == 1


# -- authentication --------------------------------------------------------------------------------


def _login(rsps: responses.RequestsMock, token: str, status: int = 200) -> None:
    form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}
    body = (
        {"access_token": token, "instance_url": INSTANCE, "token_type": "Bearer"}
        if status == 200
        else {
            "error": "invalid_client",
            "error_description": "invalid client credentials",
        }
    )
    rsps.add(responses.POST, TOKEN_URL, json=body, status=status, match=[matchers.urlencoded_params_matcher(form)])


def _query_with(rsps: responses.RequestsMock, token: str, **kwargs: Any) -> None:
    rsps.add(responses.GET, QUERY, match=[matchers.header_matcher({"Authorization": f"Bearer {token}"})], **kwargs)


def test_client_credentials_log_in_on_first_use(rsps: responses.RequestsMock) -> None:
    sf = SalesforceClient(
        SalesforceSettings(instance_url=INSTANCE, client_id="cid", client_secret="csecret"), sleep=lambda _: None
    )
    _login(rsps, "tok1")
    _query_with(rsps, "tok1", json=_query_body([]))
    assert list(sf.query("SELECT Id FROM Lead")) == []
    assert sf.requests["POST", "/services/oauth2/token"] == 1


def test_client_credentials_log_in_again_once_after_401(rsps: responses.RequestsMock) -> None:
    sf = SalesforceClient(
        SalesforceSettings(instance_url=INSTANCE, client_id="cid", client_secret="csecret"), sleep=lambda _: None
    )
    _login(rsps, "tok1")
    _query_with(rsps, "tok1", json=_query_body(_records("1")))
    _query_with(rsps, "tok1", status=401, body=_sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
    _login(rsps, "tok2")
    _query_with(rsps, "tok2", json=_query_body(_records("2")))
    assert [decoded(r)["Id"] for r in sf.query("SELECT Id FROM Lead")] == ["1"]
    assert [decoded(r)["Id"] for r in sf.query("SELECT Id FROM Lead")] == ["2"]
    assert sf.requests["POST", "/services/oauth2/token"] == 2
    assert sf.requests["GET", "/services/data/v59.0/query"] == 3


def test_client_credentials_second_401_is_an_auth_error(rsps: responses.RequestsMock) -> None:
    sf = SalesforceClient(
        SalesforceSettings(instance_url=INSTANCE, token="old", client_id="cid", client_secret="csecret"),
        sleep=lambda _: None,
    )
    _query_with(rsps, "old", status=401, body=_sf_error("INVALID_SESSION_ID"))
    _login(rsps, "tok2")
    _query_with(rsps, "tok2", status=401, body=_sf_error("INVALID_SESSION_ID"))
    with pytest.raises(AuthError):
        list(sf.query("SELECT Id FROM Lead"))
    assert sf.requests["POST", "/services/oauth2/token"] == 1


def test_client_credentials_refused_is_an_auth_error(rsps: responses.RequestsMock) -> None:
    sf = SalesforceClient(
        SalesforceSettings(instance_url=INSTANCE, client_id="cid", client_secret="csecret"), sleep=lambda _: None
    )
    _login(rsps, "", status=400)
    with pytest.raises(AuthError, match="invalid_client"):
        list(sf.query("SELECT Id FROM Lead"))


def test_bare_token_401_is_an_auth_error_without_login(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, QUERY, status=401, body=_sf_error("INVALID_SESSION_ID"))
    with pytest.raises(AuthError) as caught:
        list(sf.query("SELECT Id FROM Lead"))
    assert caught.value.status == 401
    assert [call.request.method for call in rsps.calls] == ["GET"]


# Missing or half credentials, a budget share of 0 and a bad API version are refused where
# settings are checked, before a client is made: tests/test_config.py.


# -- writing ---------------------------------------------------------------------------------------


def test_upsert_sends_collections_of_200_with_auto_assign_off(
    sf: SalesforceClient, rsps: responses.RequestsMock
) -> None:
    seen: list[list[Body]] = []
    rsps.add_callback(
        responses.PATCH,
        UPSERT,
        callback=_collection_callback(seen),
        match=[matchers.header_matcher({"Sforce-Auto-Assign": "FALSE"})],
    )
    records = _leads(450, OwnerId="005A")
    results = sf.upsert("Lead", "Sync_Key__c", records, set_owner=True)
    assert [len(batch) for batch in seen] == [200, 200, 50]
    assert [call.request.method for call in rsps.calls] == ["PATCH"] * 3
    assert all(record["attributes"] == {"type": "Lead"} for batch in seen for record in batch)
    assert [r.key for r in results] == [f"k{i}" for i in range(450)]
    assert all(r.ok and r.created for r in results)
    assert results[0].id == "00Q010000" and results[449].id == "00Q030049"
    assert "attributes" not in records[0]  # the caller's dicts are left alone
    assert sf.requests["PATCH", "/services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"] == 3


def test_upsert_without_owner_leaves_assignment_rules_alone(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    seen: list[list[Body]] = []
    rsps.add_callback(responses.PATCH, UPSERT, callback=_collection_callback(seen))
    sf.upsert("Lead", "Sync_Key__c", _leads(1), set_owner=False)
    assert "Sforce-Auto-Assign" not in rsps.calls[0].request.headers


def test_upsert_resends_only_locked_records(
    sf: SalesforceClient, rsps: responses.RequestsMock, sleeps: list[float]
) -> None:
    seen: list[list[Body]] = []

    def outcome(record: Body) -> Body:
        if record["Sync_Key__c"] == "k1" and len(seen) == 1:
            error = {
                "statusCode": "UNABLE_TO_LOCK_ROW",
                "message": "unable to obtain exclusive access",
                "fields": [],
            }
            return {"success": False, "errors": [error]}
        return {"success": True, "created": False, "errors": []}

    rsps.add_callback(responses.PATCH, UPSERT, callback=_collection_callback(seen, outcome))
    results = sf.upsert("Lead", "Sync_Key__c", _leads(3), set_owner=False)
    assert [[r["Sync_Key__c"] for r in batch] for batch in seen] == [["k0", "k1", "k2"], ["k1"]]
    assert [(r.key, r.ok) for r in results] == [("k0", True), ("k1", True), ("k2", True)]
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 2


def test_upsert_reports_a_lock_that_never_clears_as_transient(rsps: responses.RequestsMock) -> None:
    sleeps: list[float] = []
    sf = SalesforceClient(SalesforceSettings(instance_url=INSTANCE, token=TOKEN, lock_retries=2), sleep=sleeps.append)
    seen: list[list[Body]] = []
    locked = {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]}
    rsps.add_callback(responses.PATCH, UPSERT, callback=_collection_callback(seen, lambda record: locked))
    [result] = sf.upsert("Lead", "Sync_Key__c", _leads(1), set_owner=False)
    assert len(seen) == 3 and len(sleeps) == 2
    assert (result.ok, result.code, result.transient) == (False, "UNABLE_TO_LOCK_ROW", True)


@pytest.mark.parametrize(
    "code",
    [
        "DUPLICATES_DETECTED",
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "REQUIRED_FIELD_MISSING",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    ],
)
def test_upsert_reports_permanent_errors_without_resending(
    sf: SalesforceClient, rsps: responses.RequestsMock, sleeps: list[float], code: str
) -> None:
    seen: list[list[Body]] = []

    def outcome(record: Body) -> Body:
        if record["Sync_Key__c"] == "k1":
            error = {
                "statusCode": code,
                "message": "Use one of these records?",
                "fields": ["Email", "Company"],
            }
            return {"success": False, "errors": [error]}
        return {"success": True, "created": True, "errors": []}

    rsps.add_callback(responses.PATCH, UPSERT, callback=_collection_callback(seen, outcome))
    results = sf.upsert("Lead", "Sync_Key__c", _leads(2), set_owner=False)
    assert len(seen) == 1 and sleeps == []
    assert [call.request.method for call in rsps.calls] == ["PATCH"]  # no fallback create (POST)
    assert results[1] == WriteResult(
        key="k1",
        ok=False,
        id="00Q010001",
        code=code,
        message="Use one of these records?",
        fields=("Email", "Company"),
        transient=False,
    )


def test_upsert_reports_a_record_without_external_id_without_sending_it(
    sf: SalesforceClient, rsps: responses.RequestsMock
) -> None:
    seen: list[list[Body]] = []
    rsps.add_callback(responses.PATCH, UPSERT, callback=_collection_callback(seen))
    results = sf.upsert("Lead", "Sync_Key__c", [{"LastName": "x"}, *_leads(1)], set_owner=False)
    assert [(r.ok, r.code) for r in results] == [(False, "MISSING_KEY"), (True, None)]
    assert [[r["Sync_Key__c"] for r in batch] for batch in seen] == [["k0"]]


def test_upsert_refuses_an_answer_that_does_not_match_the_request(
    sf: SalesforceClient, rsps: responses.RequestsMock
) -> None:
    rsps.add(responses.PATCH, UPSERT, json=[{"success": True}])
    with pytest.raises(ContractError):
        sf.upsert("Lead", "Sync_Key__c", _leads(2), set_owner=False)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 503, "body": _sf_error("SERVER_UNAVAILABLE")}, id="503"),
        pytest.param({"body": requests.ConnectTimeout()}, id="never-connected"),
    ],
)
def test_upsert_is_retried_whole_when_it_surely_did_not_take_effect(
    sf: SalesforceClient, rsps: responses.RequestsMock, failure: dict[str, Any]
) -> None:
    """A 503 is "the server is unavailable": the request was not processed (REST API Developer
    Guide, Status Codes and Error Responses); a connection never opened sent nothing."""
    seen: list[list[Body]] = []
    rsps.add(responses.PATCH, UPSERT, **failure)
    rsps.add_callback(responses.PATCH, UPSERT, callback=_collection_callback(seen))
    results = sf.upsert("Lead", "Sync_Key__c", _leads(2), set_owner=False)
    assert all(r.ok for r in results)
    assert [call.request.method for call in rsps.calls] == ["PATCH", "PATCH"]


@pytest.mark.parametrize("status", [502, 504, 520, 524])
def test_a_collection_a_gateway_timed_out_is_not_sent_again(
    sf: SalesforceClient, rsps: responses.RequestsMock, status: int
) -> None:
    """A gateway's answer says the org may have saved the records: a lost answer, not "try again"."""
    rsps.add(responses.PATCH, UPSERT, status=status, body="<html>gateway</html>")
    with pytest.raises(UnansweredError, match=f"HTTP {status} from a gateway"):
        sf.upsert("Lead", "Sync_Key__c", _leads(2), set_owner=False)
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("path", [UPSERT, UPDATE])
def test_a_collection_whose_answer_was_lost_is_not_sent_again(
    sf: SalesforceClient, rsps: responses.RequestsMock, path: str
) -> None:
    """It may have been saved, and a person or an org's Flow may have changed the leads since: the
    apply step looks before it sends them again (tests/test_lost_answers.py)."""
    rsps.add(responses.PATCH, path, body=requests.exceptions.ReadTimeout())
    with pytest.raises(UnansweredError, match="may have taken effect"):
        if path == UPSERT:
            sf.upsert("Lead", "Sync_Key__c", _leads(2), set_owner=False)
        else:
            sf.update("Lead", [{"Id": "00Q000000000001AAA", "Status": "Working"}], set_owner=True)
    assert len(rsps.calls) == 1


def test_upsert_quota_exceeded_is_not_retried(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.PATCH, UPSERT, status=403, body=_sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit"))
    with pytest.raises(QuotaExhaustedError):
        sf.upsert("Lead", "Sync_Key__c", _leads(1), set_owner=False)
    assert len(rsps.calls) == 1


def test_update_patches_collections_by_id(sf: SalesforceClient, rsps: responses.RequestsMock) -> None:
    seen: list[list[Body]] = []
    rsps.add_callback(
        responses.PATCH,
        UPDATE,
        callback=_collection_callback(seen, lambda record: {"success": True, "errors": []}),
        match=[matchers.header_matcher({"Sforce-Auto-Assign": "FALSE"})],
    )
    results = sf.update("Lead", [{"Id": "00Q1", "OwnerId": "00G9"}, {"Id": "00Q2", "OwnerId": "005B"}], set_owner=True)
    assert seen == [
        [
            {"attributes": {"type": "Lead"}, "Id": "00Q1", "OwnerId": "00G9"},
            {"attributes": {"type": "Lead"}, "Id": "00Q2", "OwnerId": "005B"},
        ]
    ]
    assert [(r.key, r.ok, r.created) for r in results] == [("00Q1", True, None), ("00Q2", True, None)]


@pytest.mark.parametrize(("sobject", "field"), [("Lead/../../x", "Sync_Key__c"), ("Lead", "Sync_Key__c/x"), ("", "Id")])
def test_upsert_refuses_names_that_are_not_identifiers(sf: SalesforceClient, sobject: str, field: str) -> None:
    with pytest.raises(ConfigError):
        sf.upsert(sobject, field, _leads(1), set_owner=False)


# -- API budget ------------------------------------------------------------------------------------


def _usage(used: int, total: int) -> dict[str, str]:
    return {"Sforce-Limit-Info": f"api-usage={used}/{total}"}


@pytest.mark.parametrize(("used", "allowed"), [(0, True), (79, True), (80, False), (100, False)])
def test_check_budget_stops_writes_at_our_share(
    sf: SalesforceClient, rsps: responses.RequestsMock, used: int, allowed: bool
) -> None:
    rsps.add(responses.GET, QUERY, json=_query_body([]), headers=_usage(used, 100))
    list(sf.query("SELECT Id FROM Lead"))
    assert sf.api_usage() == (used, 100)
    if allowed:
        seen: list[list[Body]] = []
        rsps.add_callback(responses.PATCH, UPSERT, callback=_collection_callback(seen))
        assert sf.upsert("Lead", "Sync_Key__c", _leads(1), set_owner=False)[0].ok
    else:
        with pytest.raises(QuotaExhaustedError):
            sf.upsert("Lead", "Sync_Key__c", _leads(1), set_owner=False)


def test_api_usage_is_unknown_before_any_request(sf: SalesforceClient) -> None:
    assert sf.api_usage() is None
    sf.check_budget()  # unknown usage does not block the first write


def test_budget_spent_mid_call_returns_the_rest_as_transient(rsps: responses.RequestsMock) -> None:
    sf = SalesforceClient(
        SalesforceSettings(instance_url=INSTANCE, token=TOKEN, budget_share=0.5), sleep=lambda _: None
    )
    seen: list[list[Body]] = []
    rsps.add_callback(responses.PATCH, UPSERT, callback=_collection_callback(seen, headers=_usage(50, 100)))
    results = sf.upsert("Lead", "Sync_Key__c", _leads(250), set_owner=False)
    assert [len(batch) for batch in seen] == [200]
    assert all(r.ok for r in results[:200])
    assert {(r.ok, r.code, r.transient) for r in results[200:]} == {(False, "QUOTA_EXHAUSTED", True)}
    with pytest.raises(QuotaExhaustedError):
        sf.upsert("Lead", "Sync_Key__c", _leads(1), set_owner=False)


# -- the cycle's port ------------------------------------------------------------------------------


def test_salesforce_client_is_the_cycles_salesforce_port(sf: SalesforceClient) -> None:
    assert isinstance(sf, SalesforcePort)


# -- plain-HTTP sandbox ----------------------------------------------------------------------------


def test_plain_http_instance_is_called_over_http(rsps: responses.RequestsMock) -> None:
    sandbox = "http://127.0.0.1:8765"
    sf = SalesforceClient(
        SalesforceSettings(instance_url=sandbox, token="anything", timeout_seconds=7), sleep=lambda _: None
    )
    rsps.add(
        responses.GET,
        f"{sandbox}/services/data/v59.0/query/",
        json=_query_body(_records("1"), "/services/data/v59.0/query/01g-2"),
    )
    rsps.add(responses.GET, f"{sandbox}/services/data/v59.0/query/01g-2", json=_query_body(_records("2")))
    assert [decoded(r)["Id"] for r in sf.query("SELECT Id FROM Lead")] == ["1", "2"]
    assert all(request_kwargs(call.request)["timeout"] == 7 for call in rsps.calls)


def test_plain_http_instance_logs_in_over_http(rsps: responses.RequestsMock) -> None:
    sandbox = "http://localhost:8765"
    sf = SalesforceClient(
        SalesforceSettings(instance_url=sandbox, client_id="cid", client_secret="csecret"), sleep=lambda _: None
    )
    rsps.add(responses.POST, f"{sandbox}/services/oauth2/token", json={"access_token": "t"})
    rsps.add(responses.GET, f"{sandbox}/services/data/v59.0/query/", json=_query_body([]))
    assert list(sf.query("SELECT Id FROM Lead")) == []


# -- secrets ---------------------------------------------------------------------------------------

# A fixed prefix keeps Hypothesis from "finding" a secret that is just a word of our own messages
# (it once drew "SalesforceClient").
_SECRETS = st.text(alphabet=string.ascii_letters + string.digits + "!.-_", min_size=16, max_size=64).map(
    lambda text: f"zq9{text}"
)


@settings(max_examples=40, deadline=None)
@given(secret=_SECRETS, status=st.sampled_from([401, 403, 500, 503, 400]))
def test_errors_never_contain_the_token(secret: str, status: int) -> None:
    sf = SalesforceClient(SalesforceSettings(instance_url=INSTANCE, token=secret, max_attempts=2), sleep=lambda _: None)
    # Even a server that echoes the token must not get it into our messages.
    body = _sf_error("INVALID_SESSION_ID" if status == 401 else "UNKNOWN_EXCEPTION", f"bad token {secret}")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, QUERY, status=status, body=body)
        mock.add(responses.PATCH, UPSERT, status=status, body=body)
        for call in (
            lambda: list(sf.query("SELECT Id FROM Lead")),
            lambda: sf.upsert("Lead", "Sync_Key__c", _leads(1), set_owner=False),
        ):
            with pytest.raises(SyncError) as caught:
                call()
            assert secret not in str(caught.value)
            assert secret not in repr(caught.value)
    assert secret not in repr(sf)


@settings(max_examples=40, deadline=None)
@given(secret=_SECRETS, status=st.sampled_from([400, 401, 500]))
def test_login_errors_never_contain_the_client_secret(secret: str, status: int) -> None:
    sf = SalesforceClient(
        SalesforceSettings(instance_url=INSTANCE, client_id="cid", client_secret=secret, max_attempts=2),
        sleep=lambda _: None,
    )
    body = {"error": "invalid_client", "error_description": f"secret {secret} is wrong"}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, TOKEN_URL, status=status, json=body)
        with pytest.raises(SyncError) as caught:
            list(sf.query("SELECT Id FROM Lead"))
    assert secret not in str(caught.value)
