"""The Zendesk adapter against the sandbox's Zendesk (a real HTTP server speaking Zendesk's wire
format, sandbox/zendesk.py): a ticket is created once per external id, whatever is repeated, and
each answer becomes one of `core.errors` (what the outbox then does: retry, park or stop)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.zendesk import ZendeskClient, ZendeskSettings
from core.errors import AuthError, RetriableError, WriteRejectedError
from sandbox import Sandbox, SandboxConfig

TOKEN = "zd-connector-test"
TICKET: dict[str, Any] = {
    "external_id": "crm-sync-lead-00Q1",
    "subject": "Support request from the demo form: Acme",
    "comment": {"body": "Our session recordings stopped loading."},
    "requester": {"name": "Nina Baker", "email": "nina@acme.io"},
    "tags": ["crm-sync", "demo-form"],
}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(config=SandboxConfig(zendesk_token=TOKEN)) as sb:
        yield sb


def client(sandbox: Sandbox, token: str = TOKEN, **settings: Any) -> ZendeskClient:
    base = {"base_url": sandbox.url, "email": "ops@example.com", "api_token": token, "max_wait_seconds": 0}
    return ZendeskClient(ZendeskSettings(**{**base, **settings}), sleep=lambda _: None)


def tickets(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(sandbox.state()["zendesk"]["tickets"])


def test_a_ticket_has_the_submitter_as_requester_and_is_found_by_its_external_id(sandbox: Sandbox) -> None:
    zendesk = client(sandbox)
    assert zendesk.find("crm-sync-lead-00Q1") is None
    created = zendesk.create(TICKET)

    [stored] = tickets(sandbox)
    assert stored["external_id"] == "crm-sync-lead-00Q1" and stored["description"] == TICKET["comment"]["body"]
    assert sandbox.state()["zendesk"]["users"]["nina@acme.io"] == stored["requester_id"]
    assert stored["tags"] == ["crm-sync", "demo-form"]
    found = zendesk.find("crm-sync-lead-00Q1")
    assert found is not None and found["id"] == created["id"]


def test_a_repeated_create_answers_the_same_ticket(sandbox: Sandbox) -> None:
    zendesk = client(sandbox)
    first, again = zendesk.create(TICKET), zendesk.create(TICKET)  # the Idempotency-Key is the external id
    assert first["id"] == again["id"] and len(tickets(sandbox)) == 1


def test_a_create_whose_answer_is_lost_is_retried_without_a_second_ticket(sandbox: Sandbox) -> None:
    sandbox.add_fault("drop_response", method="POST", path_prefix="/api/v2/tickets")
    created = client(sandbox, timeout_seconds=2).create(TICKET)
    assert [t["id"] for t in tickets(sandbox)] == [created["id"]]


def test_a_refused_token_is_an_auth_error_that_names_no_secret(sandbox: Sandbox) -> None:
    with pytest.raises(AuthError) as refused:
        client(sandbox, token="zd-not-this-one").create(TICKET)
    assert "zd-" not in str(refused.value) and tickets(sandbox) == []


def test_an_invalid_requester_is_a_rejected_write_that_does_not_quote_the_email(sandbox: Sandbox) -> None:
    bad = {**TICKET, "requester": {"name": "X", "email": "not-an-address@"}}
    with pytest.raises(WriteRejectedError) as refused:
        client(sandbox).create(bad)
    assert "RecordInvalid" in str(refused.value) and "not-an-address" not in str(refused.value)


def test_zendesk_down_is_retriable_after_the_configured_attempts(sandbox: Sandbox) -> None:
    sandbox.add_fault("status", method="POST", path_prefix="/api/v2/tickets", status=503, count=10)
    sandbox.reset()
    with pytest.raises(RetriableError):
        client(sandbox, max_attempts=3).create(TICKET)
    assert sandbox.counters()["zendesk"] == {"POST /api/v2/tickets": 3} and tickets(sandbox) == []
