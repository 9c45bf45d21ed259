"""The event receiver over real HTTP (issue 17): authentication (401, logged, nothing stored),
the Salesforce Outbound Message's SOAP parsing and its exact Ack, the Vitally Playbook webhook,
and "acknowledged only once stored"."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import real_fixture
from support import stored_events, wait_until

from state import StateDB
from state.events import EventInbox, inbox_path
from sync import outbound
from sync.health import Health, HealthServer, serve
from sync.receiver import MAX_BODY_BYTES, EventSettings, Receiver

VITALLY_SECRET = "v" * 20 + "-Vitally-secret_0123"
SF_SECRET = "s" * 20 + "-Salesforce-secret.9"
ORG = "00D000000000001EAA"  # the fixture's OrganizationId
SETTINGS = EventSettings(
    vitally_secret=VITALLY_SECRET, salesforce_secret=SF_SECRET, salesforce_org_id=ORG, queue_wait_seconds=5
)


@dataclass
class Logged:
    lines: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, event: str, data: Any) -> None:
        self.lines.append((event, dict(data)))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [data for name, data in self.lines if name == event]


@dataclass
class Listener:
    url: str
    state: Path
    log: Logged
    woken: threading.Event
    inbox: EventInbox

    def stored(self) -> list[tuple[str, str, str]]:
        return stored_events(self.state)


def _listen(tmp_path: Path, settings: EventSettings) -> Iterator[Listener]:
    state = tmp_path / "state.db"
    StateDB.open(state).close()
    inbox = EventInbox(state, wait_seconds=settings.queue_wait_seconds)
    log = Logged()
    woken = threading.Event()
    receiver = Receiver(settings, inbox, log, wake=woken.set)
    server: HealthServer = serve(Health(60, version="test"), "127.0.0.1", 0, events=receiver)
    try:
        yield Listener(f"http://127.0.0.1:{server.port}", state, log, woken, inbox)
    finally:
        server.close()
        inbox.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    yield from _listen(tmp_path, SETTINGS)


def _webhook() -> bytes:
    return json.dumps(real_fixture("vitally_playbook_webhook.json")).encode()


def _message() -> bytes:
    return str(real_fixture("salesforce_outbound_message_lead.xml")).encode()


def _no_secret_logged(log: Logged) -> None:
    text = json.dumps(log.lines)
    assert VITALLY_SECRET not in text and SF_SECRET not in text


# -- Vitally ------------------------------------------------------------------------------------------


def test_vitally_webhook_with_the_secret_in_the_path_is_stored_then_acknowledged(listener: Listener) -> None:
    answer = requests.post(f"{listener.url}/events/vitally/{VITALLY_SECRET}", data=_webhook(), timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"queued": 1})
    [(source, record, delivery)] = listener.stored()
    assert (source, record) == ("vitally", "00000000-0000-4000-8000-00000000a002")  # match.account.id
    assert delivery.startswith("vitally:")
    assert listener.woken.is_set()
    assert listener.log.named("event_received") == [{"source": "vitally", "records": 1, "new": 1}]
    _no_secret_logged(listener.log)


def test_vitally_webhook_with_the_secret_in_a_bearer_header(listener: Listener) -> None:
    headers = {"Authorization": f"Bearer {VITALLY_SECRET}", "Content-Type": "application/json"}
    answer = requests.post(f"{listener.url}/events/vitally", data=_webhook(), headers=headers, timeout=10)
    assert answer.status_code == 200
    assert len(listener.stored()) == 1


def test_vitally_repeat_is_stored_once_while_the_first_waits(listener: Listener) -> None:
    url = f"{listener.url}/events/vitally/{VITALLY_SECRET}"
    first = requests.post(url, data=_webhook(), timeout=10)
    second = requests.post(url, data=_webhook(), timeout=10)
    assert (first.json(), second.json()) == ({"queued": 1}, {"queued": 0})
    assert len(listener.stored()) == 1
    state = StateDB.open(listener.state)
    try:
        with state.atomic():
            state.finish_events(state.pending_events(10), "done", 1, "2026-11-22T10:00:00.000Z")
    finally:
        state.close()
    # Processed: the same body again is news (the account left the segment and joined it again).
    assert requests.post(url, data=_webhook(), timeout=10).json() == {"queued": 1}


@pytest.mark.parametrize(
    ("path", "headers", "reason"),
    [
        ("/events/vitally/wrong-secret-wrong-secret-wrong", {}, "wrong secret"),
        ("/events/vitally", {}, "no secret"),
        ("/events/vitally", {"Authorization": "Bearer nope"}, "wrong secret"),
        ("/events/vitally", {"Authorization": f"Basic {VITALLY_SECRET}"}, "no secret"),
        (f"/events/vitally/{VITALLY_SECRET[:-1]}", {}, "wrong secret"),
        (f"/events/vitally/{SF_SECRET}", {}, "wrong secret"),
    ],
    ids=["wrong-path", "none", "wrong-bearer", "not-bearer", "prefix", "other-source's"],
)
def test_vitally_without_its_secret_is_401_logged_and_stores_nothing(
    listener: Listener, path: str, headers: dict[str, str], reason: str
) -> None:
    answer = requests.post(listener.url + path, data=_webhook(), headers=headers, timeout=10)
    assert answer.status_code == 401
    assert listener.stored() == []
    assert not listener.woken.is_set()
    [rejected] = listener.log.named("event_rejected")
    assert rejected == {"source": "vitally", "reason": reason, "remote": "127.0.0.1"}
    assert path not in json.dumps(listener.log.lines)  # the path can hold a secret: never logged
    _no_secret_logged(listener.log)


def test_a_rejection_behind_a_proxy_names_the_forwarded_client(listener: Listener) -> None:
    headers = {"X-Forwarded-For": "203.0.113.9, 10.0.0.2"}
    requests.post(f"{listener.url}/events/vitally/nope", data=b"{}", headers=headers, timeout=10)
    assert listener.log.named("event_rejected")[0]["forwarded_for"] == "203.0.113.9"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"match": {}}',
        b'{"match": {"account": {"id": 5}}}',
        b'{"match": {"account": {"id": " "}}}',
    ],
)
def test_vitally_body_without_an_account_id_is_400(listener: Listener, body: bytes) -> None:
    answer = requests.post(f"{listener.url}/events/vitally/{VITALLY_SECRET}", data=body, timeout=10)
    assert answer.status_code == 400
    assert listener.stored() == []
    assert listener.log.named("event_malformed")[0]["source"] == "vitally"


def test_a_bad_secret_is_refused_before_the_body_is_judged(listener: Listener) -> None:
    answer = requests.post(f"{listener.url}/events/vitally/nope", data=b"not json", timeout=10)
    assert answer.status_code == 401
    assert listener.log.named("event_malformed") == []


# -- Salesforce -----------------------------------------------------------------------------------------


def test_outbound_message_is_stored_then_answered_with_the_exact_ack(listener: Listener) -> None:
    url = f"{listener.url}/events/salesforce/{SF_SECRET}"
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    answer = requests.post(url, data=_message(), headers=headers, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/xml")
    assert answer.content == str(real_fixture("salesforce_outbound_message_ack.xml")).encode()
    assert listener.stored() == [
        ("salesforce", "00Q000000000001EAA", "salesforce:04l000000000001AAA"),
        ("salesforce", "00Q000000000002EAA", "salesforce:04l000000000002AAA"),
    ]
    # Delivered again (Salesforce retries, or sends twice): acknowledged again, stored once, for good.
    again = requests.post(url, data=_message(), headers=headers, timeout=10)
    assert again.content == outbound.ACK
    assert len(listener.stored()) == 2
    assert listener.log.named("event_received")[-1] == {"source": "salesforce", "records": 2, "new": 0}


def test_outbound_message_of_another_org_is_401_and_logged(listener: Listener) -> None:
    body = _message().replace(ORG.encode(), b"00D000000000002EAA")
    answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=body, timeout=10)
    assert answer.status_code == 401
    assert answer.content != outbound.ACK
    assert listener.stored() == []
    assert listener.log.named("event_rejected") == [
        {"source": "salesforce", "reason": "organization id", "remote": "127.0.0.1"}
    ]


@pytest.mark.parametrize(
    "path", ["/events/salesforce", "/events/salesforce/nope", f"/events/salesforce/{VITALLY_SECRET}"]
)
def test_outbound_message_without_its_secret_is_401(listener: Listener, path: str) -> None:
    # A Bearer header is no way in for Salesforce: it cannot send one.
    headers = {"Authorization": f"Bearer {SF_SECRET}"}
    answer = requests.post(listener.url + path, data=_message(), headers=headers, timeout=10)
    assert answer.status_code == 401
    assert listener.stored() == []
    assert len(listener.log.named("event_rejected")) == 1
    _no_secret_logged(listener.log)


def test_the_org_id_may_be_configured_with_15_characters(tmp_path: Path) -> None:
    for listener in _listen(tmp_path, replace(SETTINGS, salesforce_org_id=ORG[:15])):
        answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=_message(), timeout=10)
        assert answer.content == outbound.ACK


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<notifications/>",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><lolz>&lol;</lolz>',
        b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body/>",
    ],
    ids=["empty", "no-envelope", "entity", "truncated"],
)
def test_malformed_outbound_message_is_400_and_not_acknowledged(listener: Listener, body: bytes) -> None:
    answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=body, timeout=10)
    assert answer.status_code == 400
    assert answer.content != outbound.ACK
    assert listener.stored() == []


def test_a_notification_on_another_object_is_acknowledged_and_ignored(listener: Listener) -> None:
    body = _message().replace(b'xsi:type="sf:Lead"', b'xsi:type="sf:Contact"', 1)
    answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=body, timeout=10)
    assert answer.content == outbound.ACK  # retrying it would not help: Salesforce must stop sending it
    assert [record for _, record, _ in listener.stored()] == ["00Q000000000002EAA"]
    assert listener.log.named("event_ignored") == [{"source": "salesforce", "objects": ["Contact"]}]


def test_an_opportunitys_notification_is_queued_like_a_leads(listener: Listener) -> None:
    """A Flow on Opportunity (created or updated) sends the same envelope, its `sObject` typed
    `sf:Opportunity` (tests/fixtures/real/salesforce_outbound_message_opportunity.xml)."""
    body = str(real_fixture("salesforce_outbound_message_opportunity.xml")).encode()
    answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=body, timeout=10)
    assert answer.content == outbound.ACK
    assert [(source, record) for source, record, _ in listener.stored()] == [("salesforce", "006000000000001AAA")]
    assert listener.log.named("event_ignored") == []


def test_a_notification_whose_id_is_not_its_objects_names_no_record(listener: Listener) -> None:
    """An Id's first three characters name its object in every org (00Q a Lead, 006 an
    Opportunity): a notification typed one and naming the other is reported, not queued."""
    body = _message().replace(b'xsi:type="sf:Lead"', b'xsi:type="sf:Opportunity"', 1)
    answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=body, timeout=10)
    assert answer.content == outbound.ACK
    assert [record for _, record, _ in listener.stored()] == ["00Q000000000002EAA"]
    problems = [line["problem"] for line in listener.log.named("event_no_data")]
    assert problems == ["notification 04l000000000001AAA: an Opportunity Id starts with 006"]


def test_a_body_over_the_limit_is_413_and_never_read(listener: Listener) -> None:
    answer = requests.post(
        f"{listener.url}/events/salesforce/{SF_SECRET}", data=b"x" * (MAX_BODY_BYTES + 1), timeout=10
    )
    assert answer.status_code == 413
    assert listener.stored() == []


# -- what is not acknowledged -----------------------------------------------------------------------------


def test_events_not_stored_in_time_are_503_and_never_acknowledged(tmp_path: Path) -> None:
    for listener in _listen(tmp_path, replace(SETTINGS, queue_wait_seconds=0.3)):
        # Another writer of the inbox holds it longer than the receiver waits (the main thread's
        # updates take milliseconds: only a stuck writer or a failing disk does this).
        blocker = sqlite3.connect(inbox_path(listener.state), isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=_message(), timeout=10)
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        assert answer.status_code == 503
        assert answer.content != outbound.ACK
        assert listener.stored() == []
        assert listener.log.named("event_not_queued")[0]["source"] == "salesforce"
        # Salesforce sends it again; now it is stored and acknowledged.
        again = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=_message(), timeout=10)
        assert again.content == outbound.ACK
        assert len(listener.stored()) == 2


def test_a_cycle_holding_the_states_write_lock_never_holds_up_an_event(tmp_path: Path) -> None:
    """A scheduled cycle holds the state's write lock for its whole read-and-plan transaction
    (longer than `queue_wait_seconds` on a large book): every webhook that arrives meanwhile is
    stored and acknowledged at once, and none of it waited for the cycle."""
    for listener in _listen(tmp_path, replace(SETTINGS, queue_wait_seconds=2)):
        state = StateDB.open(listener.state)
        answers: list[tuple[int, float]] = []
        try:
            with state.atomic():
                state.set_cursor("vitally.accounts", "2026-11-22T10:00:00.000Z")
                for index in range(10):
                    body = json.loads(_webhook())
                    body["match"]["account"]["id"] = f"acc_{index}"
                    started = time.monotonic()
                    vitally = requests.post(
                        f"{listener.url}/events/vitally/{VITALLY_SECRET}", data=json.dumps(body), timeout=10
                    )
                    answers.append((vitally.status_code, time.monotonic() - started))
                started = time.monotonic()
                sf = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=_message(), timeout=10)
                answers.append((sf.status_code if sf.content == outbound.ACK else 0, time.monotonic() - started))
                # on disk while the cycle's transaction is open (the message names two Leads)
                assert len(listener.stored()) == 10 + 2
        finally:
            state.close()
        assert [status for status, _ in answers] == [200] * 11
        assert max(seconds for _, seconds in answers) < 1.0
        assert listener.log.named("event_not_queued") == []


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        (replace(SETTINGS, vitally_secret=None), f"/events/vitally/{VITALLY_SECRET}"),
        (replace(SETTINGS, salesforce_secret=None), f"/events/salesforce/{SF_SECRET}"),
        (SETTINGS, f"/events/zendesk/{VITALLY_SECRET}"),
        (SETTINGS, f"/events/vitally/{VITALLY_SECRET}/more"),
    ],
    ids=["vitally-off", "salesforce-off", "unknown-source", "deeper-path"],
)
def test_an_endpoint_that_is_not_configured_does_not_exist(tmp_path: Path, settings: EventSettings, path: str) -> None:
    for listener in _listen(tmp_path, settings):
        answer = requests.post(listener.url + path, data=_webhook(), timeout=10)
        assert answer.status_code == 404
        assert listener.stored() == []


def test_only_post_is_accepted(listener: Listener) -> None:
    answer = requests.get(f"{listener.url}/events/vitally/{VITALLY_SECRET}", timeout=10)
    assert answer.status_code == 405
    # The health endpoints are still served beside the receiver.
    assert requests.get(f"{listener.url}/livez", timeout=10).status_code == 200


def test_rejections_are_logged_at_most_20_a_minute_then_counted(listener: Listener) -> None:
    for _ in range(25):
        requests.post(f"{listener.url}/events/vitally/nope", data=b"{}", timeout=10)
    assert len(listener.log.named("event_rejected")) == 20
    listener.log.lines.clear()
    # The window is a minute: the next line logged would carry "suppressed": 5. Shown by the class itself:
    from sync.throttle import Throttled

    log = Logged()
    limited = Throttled(log, "event_rejected", 20)
    for _ in range(22):
        limited({"source": "vitally"})
    assert limited._window is not None
    limited._window -= 61  # a minute later
    limited({"source": "vitally"})
    assert log.lines[-1] == ("event_rejected", {"source": "vitally", "suppressed": 2})


# -- SOAP, by itself -------------------------------------------------------------------------------------


def test_parse_reads_the_recorded_message() -> None:
    message = outbound.parse(_message())
    assert message.organization_id == ORG
    assert message.action_id == "04k000000000001AAA"
    assert message.notifications == (
        outbound.Notification("04l000000000001AAA", "Lead", "00Q000000000001EAA"),
        outbound.Notification("04l000000000002AAA", "Lead", "00Q000000000002EAA"),
    )


def test_parse_refuses_more_than_100_notifications() -> None:
    text = _message().decode()
    start, end = text.index("   <Notification>"), text.index("  </notifications>")
    one = text[start : text.index("   <Notification>", start + 1)]
    many = text[:start] + "".join(one.replace("04l000000000001AAA", f"04l0000000{i:05d}AAA") for i in range(101))
    with pytest.raises(outbound.SoapError, match="1 to 100"):
        outbound.parse((many + text[end:]).encode())


def _no_data(body: bytes) -> bytes:
    """The fixture with its first Notification carrying no data: "If the record is deleted before
    the notification is delivered, the notification contains no data" (Salesforce Help,
    "Considerations for Outbound Messages"): its sObject is left empty."""
    text = body.decode()
    start = text.index("<sObject")
    opened = text.index(">", start) + 1
    return (text[:opened] + text[text.index("</sObject>", opened) :]).encode()


def test_parse_keeps_the_other_notifications_of_one_that_names_no_record() -> None:
    for body in (_message().replace(b"<sf:Id>00Q000000000001EAA</sf:Id>", b""), _no_data(_message())):
        message = outbound.parse(body)
        assert message.notifications == (outbound.Notification("04l000000000002AAA", "Lead", "00Q000000000002EAA"),)
        assert message.unreadable == (
            "notification 04l000000000001AAA: its sObject has no type or no valid Id (no data)",
        )


def test_a_notification_with_no_data_is_reported_and_its_message_acknowledged(listener: Listener) -> None:
    """A record deleted before its notification was delivered: the message's other notification is
    queued and the message acknowledged (before, the whole message was refused with a 400 and
    Salesforce retried it, every notification of it with it, for 24 hours before dropping it)."""
    answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=_no_data(_message()), timeout=10)
    assert answer.status_code == 200 and answer.content == outbound.ACK
    assert [record for _, record, _ in listener.stored()] == ["00Q000000000002EAA"]
    (no_data,) = listener.log.named("event_no_data")
    assert no_data["source"] == "salesforce" and "04l000000000001AAA" in no_data["problem"]
    assert listener.log.named("event_malformed") == []  # a routine deletion, not a malformed request
    # A message of nothing but such notifications is acknowledged too: a retry carries the same nothing.
    only = _no_data(_message().replace(b"<sf:Id>00Q000000000002EAA</sf:Id>", b""))
    answer = requests.post(f"{listener.url}/events/salesforce/{SF_SECRET}", data=only, timeout=10)
    assert answer.content == outbound.ACK
    assert len(listener.stored()) == 1
    assert len(listener.log.named("event_no_data")) == 3


def test_case_safe_ids_and_org_comparison() -> None:
    # The fixture's own pair: the 15-character id of EnterpriseUrl and the 18-character OrganizationId.
    assert outbound.case_safe_id("00D000000000001") == ORG
    assert outbound.case_safe_id(ORG) == ORG
    assert outbound.case_safe_id("001A0000006Vm9r") == "001A0000006Vm9rIAC"  # Salesforce's documented example
    assert outbound.same_org("00D000000000001", ORG)
    assert outbound.same_org(ORG.lower(), ORG)
    assert not outbound.same_org("00D000000000002", ORG)
    assert not outbound.same_org("00D00000000000", ORG)  # 14 characters: no id
    assert not outbound.same_org("", "")


def test_parse_gives_a_15_character_record_id_in_its_18_character_form() -> None:
    # The mirror holds the REST API's 18-character ids: a Notification naming its Lead by the
    # 15-character form (which the parser accepts) must name the same row, or the event is
    # acknowledged, marked done and never routed (found by a review of the event path).
    body = _message().replace(b"<sf:Id>00Q000000000001EAA</sf:Id>", b"<sf:Id>00Q000000000001</sf:Id>")
    first, second = outbound.parse(body).notifications
    assert first.record_id == "00Q000000000001EAA" == outbound.case_safe_id("00Q000000000001")
    assert second.record_id == "00Q000000000002EAA"


def test_a_chunked_body_without_content_length_is_411_not_a_malformed_webhook(listener: Listener) -> None:
    # The WSGI server does not decode chunked bodies: the receiver asks for a Content-Length
    # instead of reading an empty body and calling the webhook malformed (400).
    def chunks() -> Iterator[bytes]:
        yield _webhook()

    answer = requests.post(f"{listener.url}/events/vitally/{VITALLY_SECRET}", data=chunks(), timeout=10)
    assert answer.status_code == 411
    assert "Content-Length" in answer.json()["error"]
    assert listener.stored() == []
    assert listener.log.named("event_malformed") == [
        {
            "source": "vitally",
            "problem": "a body without Content-Length (Transfer-Encoding) cannot be read: send Content-Length",
        }
    ]
    # The same body with its length is stored (the reverse proxy in front sends one).
    assert requests.post(f"{listener.url}/events/vitally/{VITALLY_SECRET}", data=_webhook(), timeout=10).ok
    assert len(listener.stored()) == 1


# -- the listener's own limits (a review: a silent client printed a traceback on stderr, and any
# number of them could each hold a thread) ------------------------------------------------------------


def _bare_listener(
    log: Logged,
    *,
    max_connections: int = 64,
    client_timeout: float = 10,
    request_deadline: float = 45,
    probe_reserve: int = 8,
    health: Health | None = None,
) -> HealthServer:
    return serve(
        health or Health(60, version="test"),
        "127.0.0.1",
        0,
        log=log,
        max_connections=max_connections,
        client_timeout=client_timeout,
        request_deadline=request_deadline,
        probe_reserve=probe_reserve,
    )


def test_a_client_that_trickles_its_request_is_dropped_at_the_deadline_and_its_slot_comes_back() -> None:
    """A byte every 0.2 s never trips the per-read timeout; the whole-connection deadline ends it
    (found by a review: a trickling client held its slot for good, and 64 of them every slot)."""
    log = Logged()
    server = _bare_listener(log, max_connections=1, client_timeout=5, request_deadline=1, probe_reserve=0)
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as slow:
            started = time.monotonic()
            dropped = False
            for byte in b"GET /livez HTTP/1.1\r\nHost: a-very-slow-client.example\r\n":
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    dropped = True
                    break
                time.sleep(0.2)
            elapsed = time.monotonic() - started
        assert dropped and elapsed < 4, elapsed
        wait_until(lambda: _answers(f"http://127.0.0.1:{server.port}/livez"), "the slot given back")
    finally:
        server.close()
    assert {"error": "deadline", "seconds": 1} in log.named("listener_error")


def test_a_silent_client_is_dropped_with_one_log_line_and_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    log = Logged()
    server = _bare_listener(log, client_timeout=0.3)
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as silent:
            silent.sendall(b"GET /livez HT")  # and nothing more
            silent.settimeout(5)
            assert silent.recv(100) == b""  # dropped by the listener
        wait_until(lambda: bool(log.named("listener_error")), "the listener's line")
    finally:
        server.close()
    assert log.named("listener_error") == [{"error": "TimeoutError"}]
    assert "Traceback" not in capfd.readouterr().err


def test_connections_beyond_the_limit_and_the_probes_reserve_are_closed_at_once_and_the_listener_serves_again() -> None:
    log = Logged()
    server = _bare_listener(log, max_connections=2, client_timeout=5, probe_reserve=1)
    url = f"http://127.0.0.1:{server.port}/livez"
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]  # the cap and the reserve
    try:
        wait_until(lambda: _refused(server.port), "a fourth connection closed")
        assert log.named("listener_busy")[0] == {"connections": 2}
    finally:
        for connection in held:
            connection.close()
    try:
        wait_until(lambda: _answers(url), "the listener serving again once the two are gone")
        assert server_refused(server, "closed") >= 1 and server_refused(server, "reserved") == 0
    finally:
        server.close()


def test_beyond_the_cap_the_listener_still_answers_its_probes_and_turns_webhooks_away_with_503() -> None:
    """A flood of webhooks holding every connection the cap allows must not fail a liveness probe
    (Kubernetes would restart a daemon that is only busy; found by a review: the cap counted the
    probes too). The reserve serves a GET of /livez, /healthz or /metrics; a webhook on it is
    answered 503 with Retry-After (Salesforce sends it again), after its body was read: a large
    body left unread reset the connection, and its sender saw a broken pipe instead (a review:
    2 of 10 webhooks of 800 KB). Each is counted, for the alert."""
    log = Logged()
    health = Health(60, version="test")
    server = _bare_listener(log, max_connections=2, client_timeout=5, probe_reserve=1, health=health)
    base = f"http://127.0.0.1:{server.port}"
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        for connection in held:  # each slot of the cap taken by a request whose headers are still coming
            connection.sendall(b"POST /events/vitally/secret HTTP/1.1\r\nHost: x\r\n")
        wait_until(lambda: _answers(f"{base}/livez"), "a probe answered on the reserve")

        def reserve_free() -> None:
            # Each request waits for the last one's thread to give the reserved slot back: else it
            # may come beyond the reserve and be closed at once, which is the other path.
            wait_until(lambda: server._server._reserve._value == 1, "the reserved slot free")

        for path in ("/healthz", "/metrics"):
            reserve_free()
            assert requests.get(f"{base}{path}", timeout=5).status_code in (200, 503)  # served, whatever it says
        reserve_free()
        webhook = requests.post(f"{base}/events/vitally/secret", json={"match": {}}, timeout=5)
        assert webhook.status_code == 503 and webhook.headers["Retry-After"] == "1"
        assert {"connections": 2, "reserved_for": "probes"} in log.named("listener_busy")
        large = json.dumps({"match": {"account": {"traits": {"notes": "x" * 800_000}}}}).encode()
        answers = []
        for _ in range(40):  # without the body read, about 1 in 10 was reset
            reserve_free()
            answers.append(_post_status(server.port, "/events/vitally/secret", large))
        assert answers == [503] * 40
        refused = health.registry.get_sample_value("crm_sync_listener_refused_total", {"reason": "reserved"})
        assert refused == 41
    finally:
        for connection in held:
            connection.close()
        server.close()


def test_without_a_reserve_a_connection_beyond_the_cap_is_closed_even_for_a_probe() -> None:
    log = Logged()
    server = _bare_listener(log, max_connections=1, client_timeout=5, probe_reserve=0)
    try:
        with socket.create_connection(("127.0.0.1", server.port)):
            wait_until(lambda: _refused(server.port), "a second connection closed")
    finally:
        server.close()
    assert log.named("listener_busy")[0] == {"connections": 1}


def _post_status(port: int, path: str, body: bytes) -> int | str:
    """The status a POST of `body` got, or the error its client saw instead (http.client, which
    sends the whole body before it reads the answer, as a webhook's sender does)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        return connection.getresponse().status
    except OSError as error:
        return repr(error)
    finally:
        connection.close()


def server_refused(server: HealthServer, reason: str) -> float:
    """The listener's `crm_sync_listener_refused_total{reason}` as its /metrics says it."""
    text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
    line = next(
        line for line in text.splitlines() if line.startswith(f'crm_sync_listener_refused_total{{reason="{reason}"}}')
    )
    return float(line.split()[-1])


def _refused(port: int) -> bool:
    """Whether a new connection is closed by the listener without an answer."""
    with socket.create_connection(("127.0.0.1", port)) as extra:
        extra.settimeout(2)
        try:
            extra.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            return extra.recv(100) == b""
        except ConnectionResetError:
            return True


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_a_body_over_the_limit_is_logged_since_its_sender_retries_it(listener: Listener) -> None:
    requests.post(f"{listener.url}/events/vitally/{VITALLY_SECRET}", data=b"x" * (MAX_BODY_BYTES + 1), timeout=10)
    [line] = listener.log.named("event_malformed")
    assert line == {
        "source": "vitally",
        "problem": f"a body over {MAX_BODY_BYTES} bytes (1048577 announced) is not read",
    }
