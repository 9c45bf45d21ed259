"""The Slack adapter against the sandbox's Slack (a real HTTP server speaking Slack's wire format,
sandbox/slack.py): what a post sends, how an uncertain post is found again, and how each answer
becomes one of `core.errors` (what the outbox then does: retry, park or stop for the cycle)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.slack import EVENT_TYPE, AnnounceSettings, SlackClient
from core.errors import AuthError, RateLimitedError, RetriableError, WriteRejectedError
from sandbox import Sandbox, SandboxConfig
from sandbox.slack import CHANNEL_ID, WEBHOOK_PATH

TOKEN = "xoxb-connector-test"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(config=SandboxConfig(slack_token=TOKEN, fault_timeout_s=2)) as sb:
        yield sb


def bot(sandbox: Sandbox, token: str = TOKEN, **settings: Any) -> SlackClient:
    return SlackClient(AnnounceSettings(bot_token=token, channel=CHANNEL_ID, api_url=f"{sandbox.url}/api", **settings))


def messages(sandbox: Sandbox) -> list[dict[str, object]]:
    return list(sandbox.state()["slack"]["messages"])


def test_a_post_carries_the_text_and_the_metadata_that_finds_it_again(sandbox: Sandbox) -> None:
    client = bot(sandbox)
    ts = client.post(":new: *Demo request*: <https://x/lightning/r/Lead/00Q1/view|Acme>", "00Q1", "k1")

    [message] = messages(sandbox)
    assert ts and message["ts"] == ts
    assert message["text"] == ":new: *Demo request*: <https://x/lightning/r/Lead/00Q1/view|Acme>"
    assert message["metadata"] == {"event_type": EVENT_TYPE, "event_payload": {"lead_id": "00Q1", "key": "k1"}}
    assert client.posted_since(0.0) == {"00Q1"}
    assert client.posted_since(float(ts) + 1) == set()  # strictly after `oldest`, as Slack reads it


def test_the_history_is_read_page_by_page() -> None:
    with Sandbox(config=SandboxConfig(slack_burst=1000)) as sandbox:
        client = bot(sandbox)
        for i in range(450):
            client.post(f"lead {i}", f"00Q{i}", f"k{i}")
        sandbox.reset()

        assert client.posted_since(0.0) == {f"00Q{i}" for i in range(450)}
        assert sandbox.counters()["slack"] == {"GET /api/conversations.history": 3}  # 200 a page


def test_a_refused_token_is_an_auth_error_that_names_no_secret(sandbox: Sandbox) -> None:
    with pytest.raises(AuthError) as refused:
        bot(sandbox, token="xoxb-not-this-one").post("text", "00Q1", "k1")
    assert "invalid_auth" in str(refused.value) and "xoxb" not in str(refused.value)
    assert messages(sandbox) == []


def test_a_message_slack_refuses_for_good_is_a_rejected_write(sandbox: Sandbox) -> None:
    with pytest.raises(WriteRejectedError) as refused:
        bot(sandbox).post("x" * 40_001, "00Q1", "k1")
    assert "msg_too_long" in str(refused.value)


def test_past_the_burst_slack_asks_to_wait(sandbox: Sandbox) -> None:
    sandbox.configure(slack_burst=2)
    client = bot(sandbox)
    client.post("one", "00Q1", "k1")
    client.post("two", "00Q2", "k2")
    with pytest.raises(RateLimitedError) as limited:
        client.post("three", "00Q3", "k3")
    assert limited.value.wait_seconds is not None and limited.value.wait_seconds > 0
    assert len(messages(sandbox)) == 2


def test_a_server_error_and_a_timeout_are_retriable(sandbox: Sandbox) -> None:
    sandbox.add_fault("status", method="POST", path_prefix="/api/chat.postMessage", status=503)
    with pytest.raises(RetriableError):
        bot(sandbox).post("text", "00Q1", "k1")
    sandbox.add_fault("timeout", method="POST", path_prefix="/api/chat.postMessage")
    with pytest.raises(RetriableError) as late:
        bot(sandbox, timeout_seconds=0.5).post("text", "00Q1", "k1")
    assert "may have gone out" in str(late.value)


def test_the_incoming_webhook_posts_and_a_wrong_url_stops_the_posts(sandbox: Sandbox) -> None:
    webhook = SlackClient(AnnounceSettings(webhook_url=f"{sandbox.url}{WEBHOOK_PATH}abcdefgh12345678"))
    assert webhook.post("from the webhook", "00Q1", "k1") == ""
    assert [m["text"] for m in messages(sandbox)] == ["from the webhook"]

    wrong = SlackClient(AnnounceSettings(webhook_url=f"{sandbox.url}/services/T0/B0/secretpath123"))
    with pytest.raises(AuthError) as refused:
        wrong.post("text", "00Q2", "k2")
    assert "secretpath123" not in str(refused.value)  # a webhook's path is its secret


def test_a_token_http_cannot_carry_is_an_auth_error_that_never_shows_it(sandbox: Sandbox) -> None:
    # http.client refuses a header with a line break by raising a ValueError that quotes it: the
    # client answers with an error of its own (the config refuses such a secret first; this is for
    # a settings object made another way).
    secret = "xoxb-1234-SECRETSECRET"
    client = SlackClient(AnnounceSettings(bot_token=secret + "\n", channel=CHANNEL_ID, api_url=f"{sandbox.url}/api"))
    with pytest.raises(AuthError) as refused:
        client.post("hello", "00Q1", "k1")
    assert secret not in str(refused.value) and secret not in repr(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
