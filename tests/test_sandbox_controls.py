"""The sandbox's controls (`/_sandbox/...` and the same Python methods) and its HTTP server."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import (
    T0,
    VITALLY_KEY,
    child_process,
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
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

from sandbox.server import Sandbox


def _control(sandbox: Sandbox, method: str, name: str, body: dict[str, Any] | None = None) -> requests.Response:
    return plain_http_session().request(method, f"{sandbox.url}/_sandbox/{name}", json=body)


def _lead(key: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Lead"}, "Sync_Key__c": key, "LastName": "Smith", "Company": "Acme", **fields}


# --------------------------------------------------------------------- log, counters


def test_calls_log_every_api_call_but_no_control_call(
    sandbox: Sandbox, vitally: requests.Session, sf: Salesforce
) -> None:
    vitally.get(f"{sandbox.url}/resources/accounts/acc_0")
    vitally.get(f"{sandbox.url}/resources/accounts/nope")
    _control(sandbox, "GET", "counters")
    sf.query("SELECT Id FROM Lead")

    log = _control(sandbox, "GET", "calls").json()
    tail = _control(sandbox, "GET", "calls?since=2").json()

    assert [(c["system"], c["method"], c["path"], c["status"]) for c in log["calls"]] == [
        ("vitally", "GET", "/resources/accounts/acc_0", 200),
        ("vitally", "GET", "/resources/accounts/nope", 404),
        ("salesforce", "GET", "/services/data/v59.0/query/", 200),
    ]
    assert log["next"] == 3
    assert [c["seq"] for c in tail["calls"]] == [2]
    assert sandbox.calls(since=1)[0]["path"] == "/resources/accounts/nope"


def test_counters_group_by_method_and_path_template(
    sandbox: Sandbox, vitally: requests.Session, sf: Salesforce
) -> None:
    vitally.put(f"{sandbox.url}/resources/accounts/acc_0", json={"traits": {}})
    vitally.put(f"{sandbox.url}/resources/accounts/acc_1", json={"traits": {}})
    sf.restful("composite/sobjects/Lead/Sync_Key__c", method="PATCH", json={"records": [_lead("k")]})
    sobject(sf, "Lead").upsert("Sync_Key__c/k2", {"LastName": "A", "Company": "B"})
    sobject(sf, "Lead").get(sf_id("00Q", 1))

    assert _control(sandbox, "GET", "counters").json() == {
        "vitally": {"PUT /resources/accounts/:id": 2},
        "salesforce": {
            "PATCH /services/data/v59.0/composite/sobjects/Lead/Sync_Key__c": 1,
            "PATCH /services/data/v59.0/sobjects/Lead/Sync_Key__c/:value": 1,
            "GET /services/data/v59.0/sobjects/Lead/:id": 1,
        },
    }


def test_reset_clears_log_and_counters_but_not_state(sandbox: Sandbox, vitally: requests.Session) -> None:
    vitally.put(f"{sandbox.url}/resources/accounts/acc_0", json={"traits": {"kept": True}})

    assert _control(sandbox, "POST", "reset").json() == {"ok": True}

    assert sandbox.calls() == [] and sandbox.counters() == {"vitally": {}, "salesforce": {}}
    assert sandbox.state()["vitally"]["accounts"][0]["traits"] == {"kept": True}


# ------------------------------------------------------------------------------ config


def test_config_changes_settings_and_rejects_unknown_ones(sandbox: Sandbox, vitally: requests.Session) -> None:
    changed = _control(sandbox, "POST", "config", {"latency_ms": 60, "vitally_rate_limit": 50})
    refused = _control(sandbox, "POST", "config", {"latency": 5, "sf_page_size": 0})

    started = time.perf_counter()
    response = vitally.get(f"{sandbox.url}/resources/accounts/acc_0")
    elapsed = time.perf_counter() - started

    assert changed.json()["latency_ms"] == 60 and sandbox.config.vitally_rate_limit == 50
    assert refused.status_code == 400
    assert "latency: unknown setting" in refused.json()["error"] and "sf_page_size" in refused.json()["error"]
    assert response.headers["RateLimit-Limit"] == "50, 50;window=60"  # Vitally's format (V-overview)
    assert elapsed >= 0.06


# ------------------------------------------------------------------------------ faults


def test_fault_status_fails_the_next_matching_calls_then_clears(sandbox: Sandbox, sf: Salesforce) -> None:
    _control(
        sandbox,
        "POST",
        "faults",
        {"method": "GET", "path_prefix": "/services/data", "kind": "status", "status": 503, "count": 2},
    )
    sandbox.add_fault("status", method="PATCH", status=500)  # armed, but never matches a GET

    failures = []
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as caught:
            sf.query("SELECT Id FROM Lead")
        failures.append(caught.value)
    recovered = sf.query("SELECT Id FROM Lead")

    assert [f.status for f in failures] == [503, 503]
    assert sf_errors(failures[0])[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert recovered["totalSize"] == 5
    assert [f["method"] for f in sandbox.faults()] == ["PATCH"]
    assert [c.get("fault") for c in sandbox.calls()] == ["status", "status", None]


def test_fault_body_contains_hits_only_the_requests_that_carry_that_text(sandbox: Sandbox, sf: Salesforce) -> None:
    """A gateway or firewall refusing one payload wherever it travels: the fault fires on a
    collection that holds the lead, whatever else it holds, and on no other; the call log names
    the records each collection carried."""
    path = "composite/sobjects/Lead/Sync_Key__c"
    _control(sandbox, "POST", "faults", {"method": "PATCH", "status": 502, "count": 5, "body_contains": '"bad"'})
    refused = _control(sandbox, "POST", "faults", {"status": 502, "body_contains": 7})

    with pytest.raises(SalesforceGeneralError) as caught:
        sf.restful(path, method="PATCH", json={"records": [_lead("good"), _lead("bad")]})
    answered = sf_collection(sf, path, "PATCH", {"records": [_lead("good"), _lead("other")]})

    assert caught.value.status == 502 and [r["success"] for r in answered] == [True, True]
    assert refused.status_code == 400 and "body_contains: expected a string" in refused.json()["error"]
    assert [(c["status"], c["records"]) for c in sandbox.calls()] == [(502, ["good", "bad"]), (200, ["good", "other"])]
    assert [f["body_contains"] for f in sandbox.faults()] == ['"bad"']  # 4 of its 5 left


def test_fault_429_carries_rate_limit_reset(sandbox: Sandbox, vitally: requests.Session) -> None:
    sandbox.add_fault("status", path_prefix="/resources/", status=429, reset_seconds=7)

    response = vitally.get(f"{sandbox.url}/resources/accounts")

    assert response.status_code == 429
    assert response.headers["RateLimit-Reset"] == "7" and response.headers["RateLimit-Remaining"] == "0"
    assert response.json()["statusCode"] == 429
    assert vitally.get(f"{sandbox.url}/resources/accounts").status_code == 200


def test_fault_reset_closes_the_socket_and_applies_nothing(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.add_fault("reset", method="PATCH")

    with pytest.raises(requests.ConnectionError):
        sobject(sf, "Lead").upsert("Sync_Key__c/lost", {"LastName": "A", "Company": "B"})

    assert [r for r in sandbox.state()["salesforce"]["Lead"] if r.get("Sync_Key__c") == "lost"] == []
    assert sobject(sf, "Lead").upsert("Sync_Key__c/lost", {"LastName": "A", "Company": "B"}) == 201


def test_fault_drop_response_applies_the_write_but_never_answers(sandbox: Sandbox, sf: Salesforce) -> None:
    _control(
        sandbox,
        "POST",
        "faults",
        {"kind": "drop_response", "method": "PATCH", "path_prefix": "/services/data/v59.0/composite"},
    )

    with pytest.raises(requests.ConnectionError):
        sf.restful("composite/sobjects/Lead/Sync_Key__c", method="PATCH", json={"records": [_lead("applied")]})
    retried = sf_collection(sf, "composite/sobjects/Lead/Sync_Key__c", "PATCH", {"records": [_lead("applied")]})

    assert [r for r in sandbox.state()["salesforce"]["Lead"] if r.get("Sync_Key__c") == "applied"] != []
    assert retried[0]["created"] is False
    assert sandbox.calls()[0]["fault"] == "drop_response" and sandbox.calls()[0]["status"] == 200


def test_fault_timeout_holds_the_request_past_the_client_timeout(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(small_seed(), fault_timeout_s=1.0)
    sb.add_fault("timeout", path_prefix="/resources/")
    session = plain_http_session(timeout=0.2)

    with pytest.raises(requests.Timeout):
        session.get(f"{sb.url}/resources/accounts", auth=(VITALLY_KEY, ""))

    assert session.get(f"{sb.url}/resources/accounts", auth=(VITALLY_KEY, "")).status_code == 200


def test_fault_share_is_reproducible_with_a_seed(make_sandbox: Callable[..., Sandbox]) -> None:
    def pattern() -> list[int]:
        sb = make_sandbox(None)
        sb.add_fault("status", share=0.5, random_seed=42, status=502)
        session = plain_http_session()
        return [session.get(f"{sb.url}/resources/accounts", auth=("k", "")).status_code for _ in range(20)]

    first, second = pattern(), pattern()

    assert first == second
    assert set(first) == {200, 502}


def test_faults_delete_disarms_everything(sandbox: Sandbox, vitally: requests.Session) -> None:
    sandbox.add_fault("status", share=1.0)

    assert _control(sandbox, "DELETE", "faults").json() == {"ok": True}
    assert vitally.get(f"{sandbox.url}/resources/accounts").status_code == 200


# ----------------------------------------------------------------------- record errors


def test_record_errors_fail_the_next_matching_records(sandbox: Sandbox, sf: Salesforce) -> None:
    _control(
        sandbox,
        "POST",
        "record_errors",
        {"object": "Lead", "code": "UNABLE_TO_LOCK_ROW", "count": 1, "match": {"Sync_Key__c": "b"}},
    )
    sandbox.add_record_errors("Lead", "DUPLICATES_DETECTED", count=1, match={"Sync_Key__c": "single"})
    records = [_lead("a"), _lead("b"), _lead("c")]

    first = sf_collection(sf, "composite/sobjects/Lead/Sync_Key__c", "PATCH", {"records": records})
    second = sf_collection(sf, "composite/sobjects/Lead/Sync_Key__c", "PATCH", {"records": records})
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sobject(sf, "Lead").upsert("Sync_Key__c/single", {"LastName": "A", "Company": "B"})

    assert [r["success"] for r in first] == [True, False, True]
    assert first[1]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert [r["success"] for r in second] == [True, True, True]
    assert sf_errors(caught.value)[0]["errorCode"] == "DUPLICATES_DETECTED"
    assert sandbox.record_errors() == []


def test_record_errors_refuse_an_unknown_object(sandbox: Sandbox) -> None:
    response = _control(sandbox, "POST", "record_errors", {"object": "Nope", "code": "X"})

    assert response.status_code == 400 and "object" in response.json()["error"]


# ------------------------------------------------------------------------------- clock


def test_clock_can_be_frozen_advanced_and_made_real(sandbox: Sandbox, vitally: requests.Session) -> None:
    frozen = _control(sandbox, "POST", "clock", {"now": "2027-01-01T00:00:00Z"}).json()
    advanced = _control(sandbox, "POST", "clock", {"advance_seconds": 3600}).json()
    stamped = vitally.put(f"{sandbox.url}/resources/accounts/acc_0", json={"traits": {}}).json()["updatedAt"]
    real = _control(sandbox, "POST", "clock", {"real": True}).json()

    assert frozen == {"now": "2027-01-01T00:00:00.000Z", "fixed": True}
    assert advanced["now"] == "2027-01-01T01:00:00.000Z"
    assert stamped == "2027-01-01T01:00:00.000Z"
    assert real["fixed"] is False
    assert abs(datetime.fromisoformat(real["now"]) - datetime.now(UTC)) < timedelta(seconds=5)
    assert _control(sandbox, "POST", "clock", {"now": "not a date"}).status_code == 400


def test_clock_drives_the_salesforce_daily_quota_reset(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(None, now=T0, sf_daily_quota=1)
    sf = salesforce_client(sb.url)
    sf.limits()
    sb.set_clock(advance_seconds=86400)

    assert sf.limits() == {"DailyApiRequests": {"Max": 1, "Remaining": 0}}


# ------------------------------------------------------------------- state, simulate


def test_state_is_a_seed_that_rebuilds_the_same_sandbox(
    sandbox: Sandbox, sf: Salesforce, vitally: requests.Session
) -> None:
    sobject(sf, "Lead").upsert("Sync_Key__c/s", {"LastName": "A", "Company": "B"})
    vitally.post(f"{sandbox.url}/resources/tasks", json={"accountId": "acc_0", "name": "t", "externalId": "t1"})
    state = _control(sandbox, "GET", "state").json()

    with Sandbox(state) as copy:
        again = copy.state()

    assert again["vitally"] == state["vitally"]
    assert again["salesforce"] == state["salesforce"]
    assert len(state["vitally"]["tasks"]) == 1


def test_load_adds_new_records_and_replaces_known_ones_by_id(
    sandbox: Sandbox, vitally: requests.Session, sf: Salesforce
) -> None:
    changed = {**small_seed()["vitally"]["accounts"][0], "mrr": 2400, "updatedAt": "2026-11-22T11:00:00.000Z"}
    seed = {
        "vitally": {"accounts": [changed, {"id": "acc_new", "name": "New", "updatedAt": "2026-01-01T00:00:00.000Z"}]},
        "salesforce": {"Lead": [{"LastName": "Ng", "Company": "Acme", "Sync_Key__c": "loaded"}]},
    }

    answer = _control(sandbox, "POST", "load", seed)

    assert answer.status_code == 200
    assert answer.json() == {"vitally": {"accounts": 2}, "salesforce": {"Lead": 1}}
    newest = vitally.get(f"{sandbox.url}/resources/accounts", params={"limit": 1}).json()["results"][0]
    assert (newest["id"], newest["mrr"]) == ("acc_0", 2400)
    assert vitally.get(f"{sandbox.url}/resources/accounts/acc_new").json()["name"] == "New"
    assert len(sandbox.state()["vitally"]["accounts"]) == 6
    assert sf.query("SELECT Id FROM Lead WHERE Sync_Key__c = 'loaded'")["totalSize"] == 1
    assert len(sandbox.calls()) == 3  # the three reads above: the load itself is a control, never logged


@pytest.mark.parametrize(
    "seed",
    [{"people": {}}, {"vitally": []}, {"vitally": {"accounts": {}}}, {"salesforce": {"Lead": ["x"]}}],
)
def test_load_refuses_a_body_that_is_not_a_seed(sandbox: Sandbox, seed: dict[str, Any]) -> None:
    before = sandbox.state()

    answer = _control(sandbox, "POST", "load", seed)

    assert answer.status_code == 400
    assert "error" in answer.json()
    after = sandbox.state()
    assert (after["vitally"], after["salesforce"]) == (before["vitally"], before["salesforce"])


def test_simulate_moves_mrr_and_adds_signups_and_leads_reproducibly(
    make_sandbox: Callable[..., Sandbox], vitally: requests.Session
) -> None:
    def run() -> tuple[Sandbox, dict[str, Any]]:
        sb = make_sandbox(small_seed(), now=T0)
        return sb, _control(sb, "POST", "simulate", {"steps": 2, "random_seed": 9}).json()

    (first, summary), (second, _) = run(), run()
    state = first.state()

    assert summary["mrr_changes"] >= 2 and summary["new_accounts"] >= 2 and summary["new_leads"] >= 2
    assert len(state["vitally"]["accounts"]) == 5 + summary["new_accounts"]
    assert len(state["salesforce"]["Lead"]) == 5 + summary["new_leads"]
    assert state == second.state()
    newest = vitally.get(f"{first.url}/resources/accounts", params={"limit": 1}).json()["results"][0]
    assert newest["updatedAt"] >= "2026-11-22T10:00:00.000Z"


# ------------------------------------------------------------------------ the server


def test_stop_drops_keep_alive_connections_and_frees_the_port(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(None)
    session = plain_http_session(timeout=2)
    assert session.get(f"{sb.url}/resources/accounts", auth=("k", "")).status_code == 200
    port = int(sb.url.rsplit(":", 1)[1])

    sb.stop()

    with pytest.raises(requests.ConnectionError):
        session.get(f"http://127.0.0.1:{port}/resources/accounts", auth=("k", ""))
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_unknown_paths_and_controls_are_404(sandbox: Sandbox) -> None:
    session = plain_http_session()

    assert session.get(f"{sandbox.url}/elsewhere").status_code == 404
    assert _control(sandbox, "POST", "nothing").status_code == 404
    assert session.get(f"{sandbox.url}/resources/accounts/acc_0/users/x", auth=("k", "")).status_code == 404


@pytest.mark.slow
def test_serve_prints_its_address_and_stops_on_sigterm() -> None:
    with child_process([sys.executable, "-c", "from sandbox.server import serve; serve(None, 0)"]) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split()[3]
        answered = plain_http_session(timeout=5).get(f"{url}/resources/accounts", auth=("k", ""))
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)

    assert line.startswith("sandbox listening on http://127.0.0.1:") and line.endswith("(0 accounts, 0 leads)\n")
    assert answered.status_code == 200
    assert returncode == 0


_SERVE_A_BOOK = (
    "from datetime import UTC, datetime; from sandbox.generator import generate_book; "
    "from sandbox.server import serve; serve(generate_book(300, now=datetime.now(UTC)), 0)"
)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_while_requests_are_in_flight(stop: signal.Signals) -> None:
    # The stop once raised KeyboardInterrupt wherever the main thread was, lock code included,
    # where it could be lost; it must now end the server whatever the server is doing.
    with child_process([sys.executable, "-c", _SERVE_A_BOOK]) as process:
        assert process.stdout is not None
        url = process.stdout.readline().split()[3]
        busy = threading.Event()
        statuses: list[int] = []

        def load() -> None:
            session = plain_http_session(timeout=5)
            try:
                while True:
                    statuses.append(session.get(f"{url}/resources/accounts", auth=("k", "")).status_code)
                    busy.set()
            except requests.RequestException:
                return  # the server went away

        clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for client in clients:
            client.start()
        assert busy.wait(timeout=30)
        process.send_signal(stop)
        returncode = process.wait(timeout=10)
        for client in clients:
            client.join(timeout=10)

    assert returncode == 0
    assert statuses and set(statuses) == {200}
    assert not any(client.is_alive() for client in clients)


# ------------------------------------------------------------- faults of the real kinds


def test_fault_empty_is_a_status_without_any_body(sandbox: Sandbox) -> None:
    # Salesforce's 406 comes "most of the time" with no body (AB-sf-retry in fixtures/real/SOURCES.md).
    sandbox.add_fault("empty", path_prefix="/services/", status=406)

    response = plain_http_session().get(
        f"{sandbox.url}/services/data/v59.0/limits/", headers={"Authorization": "Bearer t"}
    )

    assert response.status_code == 406 and response.content == b""
    assert "Content-Type" not in response.headers and response.headers["Content-Length"] == "0"
    assert "Sforce-Limit-Info" in response.headers


def test_fault_html_420_is_the_edge_page(sandbox: Sandbox, sf: Salesforce) -> None:
    recorded = real_fixture("salesforce_420_edge_page.html")
    sentence = recorded[recorded.index("We are setting things up") : recorded.index("</p>")]
    _control(sandbox, "POST", "faults", {"kind": "html", "status": 420, "path_prefix": "/services/"})

    with pytest.raises(SalesforceGeneralError) as caught:
        sf.query("SELECT Id FROM Lead")

    assert caught.value.status == 420
    assert caught.value.content == recorded  # simple-salesforce keeps a non-JSON body as text
    assert sentence in caught.value.content


@pytest.mark.parametrize(("status", "path"), [(503, "/resources/accounts"), (200, "/resources/accounts")])
def test_fault_html_elsewhere_is_a_maintenance_page(sandbox: Sandbox, status: int, path: str) -> None:
    sandbox.add_fault("html", path_prefix="/resources/", status=status)

    response = plain_http_session().get(f"{sandbox.url}{path}", auth=(VITALLY_KEY, ""))

    assert response.status_code == status
    assert response.headers["Content-Type"] == "text/html;charset=UTF-8"
    assert response.text.startswith("<!DOCTYPE html>") and "maintenance" in response.text
    with pytest.raises(ValueError):
        response.json()
    assert sandbox.calls()[-1]["fault"] == "html"


def test_fault_unknown_kind_is_refused(sandbox: Sandbox) -> None:
    answer = _control(sandbox, "POST", "faults", {"kind": "gremlins"})

    assert answer.status_code == 400 and "empty" in answer.json()["error"] and "html" in answer.json()["error"]
