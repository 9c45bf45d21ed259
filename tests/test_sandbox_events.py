"""The sandbox's own webhooks (`sandbox.events`, issue 17), received by crm-sync's real receiver
over HTTP: a Vitally Playbook webhook when an account enters a segment, a Salesforce Outbound
Message when an inbound Lead is created, each acknowledged only once stored, and the faults real
deliveries have (duplicates, loss, delay, out of order, retries until the Ack).

Payload shapes: the Vitally body follows tests/fixtures/real/vitally_playbook_webhook.json (the
account under `match.account`, traits flattened onto it: a third party's documentation of the
Playbook webhook action); the Outbound Message follows
tests/fixtures/real/salesforce_outbound_message_lead.xml (Salesforce's Outbound Message WSDL);
both are cited in tests/fixtures/real/SOURCES.md."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from support import stored_events

from sandbox import ControlError, Sandbox, events
from sandbox.events import ORG_ID
from state import StateDB
from state.events import EventInbox
from sync import outbound
from sync.health import Health, HealthServer, serve
from sync.receiver import EventSettings, Receiver

VITALLY_SECRET = "sandbox-vitally-secret-0123456789"
SF_SECRET = "sandbox-salesforce-secret-0123456"
ACCOUNT = {
    "id": "acc_0001",
    "externalId": "org_1",
    "name": "Northwind Robotics",
    "createdAt": "2025-01-01T00:00:00.000Z",
    "updatedAt": "2026-11-20T09:00:00.000Z",
    "traits": {"country": "US", "plan": "free"},
    "segments": [],
}
INBOUND = {"LastName": "Doe", "Company": "Acme Inc", "LeadSource": "Demo request", "Status": "Open - Not Contacted"}


@dataclass
class Rig:
    sandbox: Sandbox
    url: str
    state: Path
    logged: list[tuple[str, dict[str, Any]]]

    def stored(self) -> list[tuple[str, str, str]]:
        return stored_events(self.state)

    def web_to_lead(self, **row: Any) -> str:
        with self.sandbox._lock:
            [lead] = self.sandbox._salesforce.add_leads([{**INBOUND, **row}], owner_ids=[])
        return lead


def _until(check: Callable[[], bool], seconds: float = 10) -> None:
    """Deliveries run in the sandbox's sender thread: wait for the outcome, never for a time."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the webhook did not arrive"
        time.sleep(0.01)


def _rig(tmp_path: Path, org_id: str = ORG_ID) -> Iterator[Rig]:
    state = tmp_path / "state.db"
    StateDB.open(state).close()
    inbox = EventInbox(state, wait_seconds=5)
    logged: list[tuple[str, dict[str, Any]]] = []
    settings = EventSettings(
        vitally_secret=VITALLY_SECRET, salesforce_secret=SF_SECRET, salesforce_org_id=org_id, queue_wait_seconds=5
    )
    receiver = Receiver(settings, inbox, lambda e, d: logged.append((e, dict(d))), wake=threading.Event().set)
    server: HealthServer = serve(Health(60, version="test"), "127.0.0.1", 0, events=receiver)
    try:
        with Sandbox({"vitally": {"accounts": [ACCOUNT]}}) as sandbox:
            yield Rig(sandbox, f"http://127.0.0.1:{server.port}", state, logged)
    finally:
        server.close()
        inbox.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from _rig(tmp_path)


def _on(rig: Rig, **faults: Any) -> None:
    rig.sandbox.configure_events(
        vitally_url=f"{rig.url}/events/vitally/{VITALLY_SECRET}",
        salesforce_url=f"{rig.url}/events/salesforce/{SF_SECRET}",
        salesforce_retry_s=0.01,
        **faults,
    )


def test_webhooks_are_off_by_default(rig: Rig) -> None:
    rig.sandbox.set_segment("acc_0001", "AM referral")
    rig.web_to_lead()
    assert rig.sandbox.events_pending() == 0
    assert rig.sandbox.event_deliveries() == []
    assert rig.stored() == []


def test_a_segment_added_posts_a_playbook_webhook_the_receiver_stores(rig: Rig) -> None:
    _on(rig)
    rig.sandbox.set_segment("acc_0001", "AM referral")
    _until(lambda: len(rig.sandbox.event_deliveries()) == 1)
    [sent] = rig.sandbox.event_deliveries()
    assert (sent["source"], sent["record"], sent["status"], sent["acknowledged"]) == ("vitally", "acc_0001", 200, True)
    assert [(s, r) for s, r, _ in rig.stored()] == [("vitally", "acc_0001")]
    rig.sandbox.set_segment("acc_0001", "AM referral")  # already in it: no second webhook
    assert rig.sandbox.events_pending() == 0


def test_the_playbook_body_carries_the_account_under_match_account() -> None:
    payload = json.loads(events._playbook_body({**ACCOUNT, "segments": [{"id": "s", "name": "AM referral"}]}))
    flat = {"id": "acc_0001", "externalId": "org_1", "name": "Northwind Robotics", "country": "US", "plan": "free"}
    assert payload == {"match": {"account": flat}}


def test_the_vitally_secret_may_travel_in_a_bearer_header(rig: Rig) -> None:
    rig.sandbox.configure_events(vitally_url=f"{rig.url}/events/vitally", vitally_bearer=VITALLY_SECRET)
    rig.sandbox.set_segment("acc_0001", "AE referral")
    _until(lambda: len(rig.sandbox.event_deliveries()) == 1)
    assert rig.sandbox.event_deliveries()[0]["status"] == 200
    assert [(s, r) for s, r, _ in rig.stored()] == [("vitally", "acc_0001")]


def test_an_inbound_lead_posts_an_outbound_message_acknowledged_once_stored(rig: Rig) -> None:
    _on(rig)
    lead = rig.web_to_lead(Email="jane@northwind.example")
    _until(lambda: len(rig.sandbox.event_deliveries()) == 1)
    [sent] = rig.sandbox.event_deliveries()
    assert (sent["source"], sent["record"], sent["status"], sent["acknowledged"]) == ("salesforce", lead, 200, True)
    [(source, record, delivery)] = rig.stored()
    assert (source, record, delivery) == ("salesforce", lead, f"salesforce:{sent['key']}")


def test_the_outbound_message_parses_as_salesforce_sends_it(rig: Rig) -> None:
    lead = {"Id": "00Q8d0000000001EAA", "Company": "Acme & Sons", "LastName": "Doe", "OwnerId": None}
    message = outbound.parse(events._outbound_body(lead, "04l8d0000000001AAA", rig.sandbox._events.settings))
    assert message.organization_id == ORG_ID
    [notification] = message.notifications
    assert (notification.id, notification.sobject, notification.record_id) == (
        "04l8d0000000001AAA",
        "Lead",
        "00Q8d0000000001EAA",
    )


def _rest(rig: Rig, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A rep's write through the REST API (any non-empty token is the sandbox's)."""
    url = f"{rig.sandbox.url}/services/data/v59.0/sobjects/{path}"
    answer = requests.request(method, url, json=body, headers={"Authorization": "Bearer rep"}, timeout=10)
    assert answer.status_code in (200, 201, 204), answer.text
    return answer.json() if answer.content else {}


def test_an_opportunity_created_or_updated_posts_an_outbound_message_on_opportunity(rig: Rig) -> None:
    """A record-triggered Flow on Opportunity (created or updated) sends it, as the README's
    setup has the org do (tests/fixtures/real/salesforce_outbound_message_opportunity.xml)."""
    _on(rig)
    account = _rest(rig, "POST", "Account", {"Name": "Northwind Robotics", "Vitally_Account_Id__c": "acc_0001"})["id"]
    opportunity = _rest(
        rig,
        "POST",
        "Opportunity",
        {"Name": "Annual", "AccountId": account, "StageName": "Prospecting", "CloseDate": "2026-12-31"},
    )["id"]
    _until(lambda: len(rig.sandbox.event_deliveries()) == 1)
    _rest(rig, "PATCH", f"Opportunity/{opportunity}", {"StageName": "Closed Lost"})
    _until(lambda: len(rig.sandbox.event_deliveries()) == 2)
    assert [(d["source"], d["record"], d["acknowledged"]) for d in rig.sandbox.event_deliveries()] == [
        ("salesforce", opportunity, True)
    ] * 2
    assert [(s, r) for s, r, _ in rig.stored()] == [("salesforce", opportunity)] * 2  # two notifications
    body = events._notification(
        rig.sandbox._event_record("salesforce", opportunity), "04l8d0000000009AAA", "Opportunity"
    )
    assert b'xsi:type="sf:Opportunity"' in body and b"<sf:StageName>Closed Lost</sf:StageName>" in body


def test_a_conversions_opportunity_posts_its_message_and_the_flow_may_be_off(rig: Rig) -> None:
    _on(rig, opportunity_messages=False)
    lead = rig.web_to_lead()
    _until(lambda: len(rig.sandbox.event_deliveries()) == 1)  # the inbound lead's own
    rig.sandbox.convert(lead)
    assert rig.sandbox.events_pending() == 0 and len(rig.sandbox.event_deliveries()) == 1
    rig.sandbox.configure_events(opportunity_messages=True)
    made = rig.sandbox.convert(rig.web_to_lead())["opportunity"]
    _until(lambda: any(d["record"] == made for d in rig.sandbox.event_deliveries()))
    assert [r for s, r, _ in rig.stored() if r.startswith("006")] == [made]


def test_a_lead_deleted_before_delivery_sends_a_notification_with_no_data(rig: Rig) -> None:
    """ "If the record is deleted before the notification is delivered, the notification contains no
    data" (Salesforce Help, "Considerations for Outbound Messages"): the sandbox sends it (before,
    it sent nothing), and crm-sync's receiver acknowledges the message and reports the notification."""
    _on(rig, delay_s=0.5)
    lead = rig.web_to_lead()
    requests.delete(
        f"{rig.sandbox.url}/services/data/v59.0/sobjects/Lead/{lead}",
        headers={"Authorization": "Bearer test"},
        timeout=5,
    ).raise_for_status()
    _until(lambda: len(rig.sandbox.event_deliveries()) == 1)
    [sent] = rig.sandbox.event_deliveries()
    assert (sent["record"], sent["status"], sent["acknowledged"]) == (lead, 200, True)
    assert rig.stored() == []  # nothing to route: the next scheduled cycle reads the deletion
    assert [e for e, _ in rig.logged if e.startswith("event_") and e != "event_received"] == ["event_no_data"]


def test_a_create_rolled_back_sends_nothing(rig: Rig) -> None:
    """A Lead whose create an `allOrNone` collection rolled back never existed: Salesforce sends an
    Outbound Message after the transaction commits, so nothing is sent (as a deleted Lead's
    notification without data is: the test above)."""
    _on(rig, delay_s=0.2)
    body = {
        "allOrNone": True,
        "records": [
            {"attributes": {"type": "Lead"}, "LastName": "Roe", "Company": "Acme", "LeadSource": "Web"},
            {"attributes": {"type": "Lead"}, "Company": "No LastName"},  # LastName is required: all roll back
        ],
    }
    requests.post(
        f"{rig.sandbox.url}/services/data/v59.0/composite/sobjects",
        json=body,
        headers={"Authorization": "Bearer test"},
        timeout=5,
    )
    assert rig.sandbox.state()["salesforce"]["Lead"] == []
    rig.web_to_lead()  # a later inbound lead is sent: the rolled-back one was skipped, not delayed
    _until(lambda: len(rig.sandbox.event_deliveries()) == 1)
    [sent] = rig.sandbox.event_deliveries()
    assert sent["acknowledged"] and len(rig.stored()) == 1
    assert [e for e, _ in rig.logged if e == "event_no_data"] == []


def test_leads_crm_sync_creates_send_no_message(rig: Rig) -> None:
    _on(rig)
    with rig.sandbox._lock:
        rig.sandbox._salesforce.add_leads([{**INBOUND, "Sync_Key__c": "crm-sync-acc_0001-1"}], owner_ids=[])
    rig.web_to_lead()  # the next inbound lead is sent: the first was skipped, not delayed
    _until(lambda: len(rig.sandbox.event_deliveries()) == 1)
    assert len(rig.stored()) == 1


@pytest.fixture
def foreign(tmp_path: Path) -> Iterator[Rig]:
    """A receiver that expects another org: every message of the sandbox's org is 401."""
    yield from _rig(tmp_path, org_id="00D000000000009AAA")


def test_a_message_not_acknowledged_is_sent_again_until_given_up(foreign: Rig) -> None:
    _on(foreign, salesforce_max_attempts=3)
    lead = foreign.web_to_lead()
    _until(lambda: len(foreign.sandbox.event_deliveries()) == 3 and foreign.sandbox.events_pending() == 0)
    sent = foreign.sandbox.event_deliveries()
    assert [(d["record"], d["attempt"], d["status"], d["acknowledged"]) for d in sent] == [
        (lead, 1, 401, False),
        (lead, 2, 401, False),
        (lead, 3, 401, False),
    ]
    assert len({d["key"] for d in sent}) == 1  # the same notification each time
    assert foreign.stored() == []
    assert [d["reason"] for e, d in foreign.logged if e == "event_rejected"] == ["organization id"] * 3


def test_duplicates_are_sent_twice_and_stored_once(rig: Rig) -> None:
    _on(rig, duplicate_share=1.0)
    rig.sandbox.set_segment("acc_0001", "AM referral")
    lead = rig.web_to_lead()
    _until(lambda: len(rig.sandbox.event_deliveries()) == 4)
    sent = rig.sandbox.event_deliveries()
    assert sorted((d["source"], bool(d.get("duplicate"))) for d in sent) == [
        ("salesforce", False),
        ("salesforce", True),
        ("vitally", False),
        ("vitally", True),
    ]
    assert all(d["acknowledged"] for d in sent)
    assert sorted((s, r) for s, r, _ in rig.stored()) == [("salesforce", lead), ("vitally", "acc_0001")]


def test_lost_deliveries_are_never_sent(rig: Rig) -> None:
    _on(rig, loss_share=1.0)
    rig.sandbox.set_segment("acc_0001", "AM referral")
    rig.web_to_lead()
    assert rig.sandbox.events_pending() == 0
    assert [d.get("lost") for d in rig.sandbox.event_deliveries()] == [True, True]
    assert rig.stored() == []


def test_jitter_delivers_out_of_order(rig: Rig) -> None:
    _on(rig, jitter_s=0.3, random_seed=7)
    leads = [rig.web_to_lead(LastName=f"L{i}") for i in range(8)]
    _until(lambda: len(rig.sandbox.event_deliveries()) == 8)
    received = [d["record"] for d in rig.sandbox.event_deliveries()]
    assert sorted(received) == sorted(leads)
    assert received != leads  # arrived in another order than created
    assert [r for _, r, _ in rig.stored()] == received


def test_bad_feed_settings_are_refused(rig: Rig) -> None:
    with pytest.raises(ControlError, match="nope: unknown setting; loss_share: bad value"):
        rig.sandbox.configure_events(loss_share=2, nope=1)


def test_the_json_control_sets_and_shows_the_webhooks_without_the_bearer(rig: Rig) -> None:
    control = f"{rig.sandbox.url}/_sandbox/events"
    answer = requests.post(control, json={"vitally_bearer": VITALLY_SECRET, "loss_share": 0.25}, timeout=10)
    assert answer.status_code == 200
    shown = answer.json()
    assert (shown["settings"]["loss_share"], shown["settings"]["vitally_bearer"]) == (0.25, "***")
    assert (shown["deliveries"], shown["pending"]) == ([], 0)
    assert VITALLY_SECRET not in answer.text
    refused = requests.post(control, json={"duplicate_share": -1}, timeout=10)
    assert (refused.status_code, refused.json()) == (400, {"error": "duplicate_share: bad value"})
    assert requests.get(control, timeout=10).json()["settings"]["loss_share"] == 0.25


def _collection_of_inbound_leads(rig: Rig, count: int) -> list[str]:
    """`count` inbound Leads created by one sObject Collections request (an import or a form
    tool's bulk sync): up to 200 records a request."""
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Lead"}, **INBOUND, "LastName": f"Doe {i}", "Email": f"j{i}@acme{i}.example"}
            for i in range(count)
        ],
    }
    answer = requests.post(
        f"{rig.sandbox.url}/services/data/v59.0/composite/sobjects",
        json=body,
        headers={"Authorization": "Bearer test"},
        timeout=5,
    )
    answer.raise_for_status()
    return [result["id"] for result in answer.json()]


def test_leads_created_together_arrive_in_messages_of_up_to_100_notifications(rig: Rig) -> None:
    """ "A single SOAP message can include up to 100 notifications [...] If you issue multiple
    discrete calls, the calls are sometimes batched together into one or more SOAP messages" (SOAP
    API Developer Guide, "Understanding Notifications"; the WSDL's `Notification maxOccurs="100"`).
    150 Leads created by one request come in two messages, 100 and 50, each acknowledged once
    every notification in it is stored. (The batch window is widened: creating 150 Leads can take
    longer than the default 50 ms on a loaded machine, which then sent 90 and 60.)"""
    _on(rig, salesforce_batch_window_s=10.0)
    leads = _collection_of_inbound_leads(rig, 150)
    _until(lambda: len(rig.sandbox.event_deliveries()) == 150)
    sent = rig.sandbox.event_deliveries()
    sizes = Counter(d["message"] for d in sent)
    assert sorted(sizes.values()) == [50, 100]
    assert all(d["batch"] == sizes[d["message"]] and d["acknowledged"] for d in sent)
    assert sorted(d["record"] for d in sent) == sorted(leads)
    assert sorted(record for _, record, _ in rig.stored()) == sorted(leads)
    assert [e for e, _ in rig.logged if e.startswith("event_") and e != "event_received"] == []


def test_a_refused_message_retries_each_notification(foreign: Rig) -> None:
    """Each notification of a message that is not acknowledged is sent again ("messages are retried
    independent of their order in the queue"); those due together are batched again."""
    _on(foreign, salesforce_max_attempts=2)
    leads = _collection_of_inbound_leads(foreign, 3)
    _until(lambda: len(foreign.sandbox.event_deliveries()) == 6 and foreign.sandbox.events_pending() == 0)
    sent = foreign.sandbox.event_deliveries()
    assert sorted((d["record"], d["attempt"], d["status"]) for d in sent) == sorted(
        (lead, attempt, 401) for lead in leads for attempt in (1, 2)
    )
    assert {d["batch"] for d in sent} == {3} and len({d["message"] for d in sent}) == 2


def test_a_batch_of_one_sends_each_notification_alone(rig: Rig) -> None:
    _on(rig, salesforce_batch_max=1)
    _collection_of_inbound_leads(rig, 3)
    _until(lambda: len(rig.sandbox.event_deliveries()) == 3)
    assert {d["batch"] for d in rig.sandbox.event_deliveries()} == {1}
    assert len(rig.stored()) == 3
