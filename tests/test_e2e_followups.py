"""Announcements and tickets end to end: the real CLI against a generated book in the sandbox, with
Slack (bot token, chat.postMessage) and Zendesk configured. Every new lead is announced exactly once
(crm-sync's upserts and the inbound leads its round robin gives an owner), every support submission
gets exactly one ticket and no owner, also when the process is killed with SIGKILL between a lead's
write and its post, or while a post or a ticket is in flight."""

from __future__ import annotations

import base64
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, example_config_for, run_cli

from connectors.slack import DEFAULT_LABELS
from sandbox import Sandbox, SandboxConfig, generate_book
from sandbox.llm import LLMStub
from sandbox.server import FaultKind
from sandbox.slack import CHANNEL_ID
from sync.config import example_against

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC).replace(microsecond=0)
TOKEN = {"TEST_SLACK_BOT_TOKEN": "xoxb-test-token"}
POST = "/api/chat.postMessage"
UPSERT = "/services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"
TICKETS = "/api/v2/tickets"


def configure(sandbox: Sandbox, path: Path) -> Path:
    """The example config against the sandbox, with announcements by bot token, Zendesk tickets,
    and support requests closed with a status of their own."""
    config = example_config_for(sandbox.url, path)
    text = config.read_text()
    for old, new in (
        ('api_url = "https://slack.com/api"', f'api_url = "{sandbox.url}/api"\nchannel = "{CHANNEL_ID}"'),
        ('# bot_token_env = "CRM_SYNC_SLACK_BOT_TOKEN"', 'bot_token_env = "TEST_SLACK_BOT_TOKEN"'),
        (f'# base_url = "{sandbox.url}"', f'base_url = "{sandbox.url}"'),
        ('# email = "ops@acme.com"', 'email = "ops@example.com"'),
        ("[rules.demo]\n", '[rules.demo]\nsupport_status = "Closed - Support"\n'),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def book() -> dict[str, Any]:
    return generate_book(160, seed=21, now=NOW)


@pytest.fixture
def sandbox(book: dict[str, Any]) -> Iterator[Sandbox]:
    with Sandbox(book, config=SandboxConfig(vitally_rate_limit=10**7, slack_burst=10**6, fault_timeout_s=5)) as sb:
        yield sb


def leads(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {lead["Id"]: lead for lead in sandbox.state()["salesforce"]["Lead"]}


def announced(sandbox: Sandbox) -> Counter[str]:
    """Posts in the channel per lead id (from crm-sync's message metadata)."""
    messages = sandbox.state()["slack"]["messages"]
    return Counter(m["metadata"]["event_payload"]["lead_id"] for m in messages if "metadata" in m)


def tickets(sandbox: Sandbox) -> Counter[str]:
    return Counter(t["external_id"] for t in sandbox.state()["zendesk"]["tickets"])


def unescape(text: str) -> str:
    """Slack's mrkdwn escapes undone (`&amp;`, `&lt;`, `&gt;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def new_leads(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[str]:
    """Leads crm-sync created, and inbound leads it gave an owner (computed from the sandbox)."""
    created = {i for i, lead in after.items() if lead.get("Sync_Key__c") and i not in before}
    routed = {
        i
        for i, lead in after.items()
        if i in before and lead["OwnerId"] != before[i]["OwnerId"] and lead.get("Routing_Rule__c")
    }
    return created | routed


def support_requests(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[str]:
    """Leads the run classified support that carry an address to answer (one without gets no ticket)."""
    return {
        i
        for i, lead in after.items()
        if lead.get("Classification__c") == "support"
        and before.get(i, {}).get("Classification__c") != "support"
        and lead.get("Email")
    }


def test_e2e_each_new_lead_is_announced_once_and_each_support_request_gets_one_ticket_and_no_owner(
    sandbox: Sandbox, book: dict[str, Any], tmp_path: Path
) -> None:
    config, state = configure(sandbox, tmp_path / "config.toml"), tmp_path / "state.db"
    before = leads(sandbox)
    first = run_cli(config, state, "run", env=TOKEN)
    after = leads(sandbox)
    sandbox.reset()
    second = run_cli(config, state, "run", env=TOKEN)

    assert first.returncode == 0, first.stderr[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    wanted = new_leads(before, after)
    assert len(wanted) > 40  # the generated book's routed accounts and inbound leads
    posts = announced(sandbox)
    assert set(posts) == wanted and set(posts.values()) == {1}
    label_of = {m["metadata"]["event_payload"]["lead_id"]: m["text"] for m in sandbox.state()["slack"]["messages"]}
    some = next(i for i in wanted if after[i].get("Routing_Rule__c") == "new_business.demo_request")
    assert label_of[some].startswith(":new: *Demo request*: <") and f"/lightning/r/Lead/{some}/view|" in label_of[some]
    # Every post: its rule's label, the company linked to the lead's record, its owner by name.
    names = {user["Id"]: user["Name"] for user in sandbox.state()["salesforce"]["User"]}
    named = 0
    for lead_id in wanted:
        post = re.fullmatch(
            rf":new: \*(.+)\*: <https?://\S+/lightning/r/Lead/{lead_id}/view\|(.+)>, owner \*(.+)\*", label_of[lead_id]
        )
        assert post is not None, label_of[lead_id]
        label, company, owner = (unescape(group) for group in post.groups())
        assert label == DEFAULT_LABELS[after[lead_id]["Routing_Rule__c"]]
        assert company == after[lead_id]["Company"]
        assert owner in (names[after[lead_id]["OwnerId"]], "Salesforce's default owner")
        named += owner != "Salesforce's default owner"
    assert named > len(wanted) * 0.8  # the round robin's owners, named

    support = support_requests(before, after)
    assert support, "the generated book holds support submissions"
    assert tickets(sandbox) == Counter({f"crm-sync-lead-{i}": 1 for i in support})
    by_id = {t["external_id"]: t for t in sandbox.state()["zendesk"]["tickets"]}
    for lead_id in support:
        lead = after[lead_id]
        assert lead["Status"] == "Closed - Support"
        assert lead["OwnerId"] == before[lead_id]["OwnerId"], "a support request got an owner"
        assert lead_id not in posts
        assert by_id[f"crm-sync-lead-{lead_id}"]["description"].startswith(lead["Form_Text__c"])
    # The generator's follow-up cases (sandbox/cases_followups.py), one by one.
    cases = {case: lead for lead, names in book["_cases"]["leads"].items() for case in names}
    members = {m.user_id for pool in example_against(sandbox.url).pools.values() for m in pool.members}
    for case in ("followups.support_ticket", "followups.support_ticket.billing", "followups.support_ticket.polite"):
        assert tickets(sandbox)[f"crm-sync-lead-{cases[case]}"] == 1, case
        # No round-robin owner: it keeps the owner it arrived with (in a real org never empty: the
        # default lead owner or a queue, docs/salesforce-setup.md section 5).
        assert after[cases[case]]["OwnerId"] == before[cases[case]]["OwnerId"], case
        assert after[cases[case]]["OwnerId"] not in members, case
    no_email = cases["near_miss.followups.support_ticket.no_email"]
    assert after[no_email]["Classification__c"] == "support" and f"crm-sync-lead-{no_email}" not in tickets(sandbox)
    assert f"crm-sync-lead-{cases['followups.spam_dropped']}" not in tickets(sandbox)
    assert cases["followups.spam_dropped"] not in posts
    assert posts[cases["followups.announced_inbound"]] == 1
    spam = {i for i, lead in after.items() if lead.get("Classification__c") == "spam"}
    assert spam and not spam & set(posts) and all(after[i]["OwnerId"] == before[i]["OwnerId"] for i in spam)
    # The run's summary line counts them.
    assert f"; {len(wanted)} lead(s) announced; {len(support)} ticket(s) opened\n" in first.stderr
    # The second cycle announces and opens nothing again.
    assert sandbox.counters().get("slack") is None and sandbox.counters().get("zendesk") is None
    assert "announced" not in second.stderr and "ticket(s) opened" not in second.stderr


# -- kill -9 ----------------------------------------------------------------------------------------


def _start(config: Path, state: Path, log: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VITALLY_", "SALESFORCE_", "CRM_SYNC_"))}
    env.update(TOKEN)
    command = [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "run"]
    with log.open("w") as err:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, text=True, cwd=ROOT, env=env)


def _kill_when_faulted(process: subprocess.Popen[str], sandbox: Sandbox, delay: float) -> None:
    deadline = time.monotonic() + 120
    while not any(c.get("fault") for c in sandbox.calls()):
        assert process.poll() is None, "the run ended before the faulted request"
        assert time.monotonic() < deadline, "the faulted request never came"
        time.sleep(0.005)
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.chaos
@pytest.mark.parametrize(
    ("method", "prefix", "fault"),
    [
        ("POST", POST, "drop_response"),  # the post went out, its answer was lost: found in the history
        ("POST", POST, "timeout"),  # the post never reached Slack: posted on restart
        ("PATCH", UPSERT, "drop_response"),  # the leads exist, their upsert's answer was lost: still announced
        ("POST", TICKETS, "drop_response"),  # the ticket exists, its answer was lost: found by external id
    ],
)
def test_e2e_kill_9_between_a_write_and_its_follow_up_still_announces_each_lead_and_tickets_each_request_once(
    sandbox: Sandbox, tmp_path: Path, method: str, prefix: str, fault: FaultKind
) -> None:
    config, state = configure(sandbox, tmp_path / "config.toml"), tmp_path / "state.db"
    before = leads(sandbox)
    sandbox.add_fault(fault, method=method, path_prefix=prefix, count=10**6)
    _kill_when_faulted(_start(config, state, tmp_path / "run.log"), sandbox, delay=0.2)
    sandbox.clear_faults()
    for _ in range(3):
        result = run_cli(config, state, "run", env=TOKEN)
    assert result.returncode == 0, result.stderr[-2000:]

    after = leads(sandbox)
    posts = announced(sandbox)
    assert set(posts) == new_leads(before, after) and set(posts.values()) == {1}
    assert tickets(sandbox) == Counter({f"crm-sync-lead-{i}": 1 for i in support_requests(before, after)})
    assert (
        Counter(lead.get("Sync_Key__c") for lead in after.values() if lead.get("Sync_Key__c")).most_common(1)[0][1] == 1
    )


# -- secrets ----------------------------------------------------------------------------------------

SECRETS = {
    "TEST_SLACK_BOT_TOKEN": "xoxb-7f3a9c1e-slack-secret",
    "TEST_ZENDESK_API_TOKEN": "zd-5b2e8d40-zendesk-secret",
    "TEST_LLM_API_KEY": "sk-c91d77aa-llm-secret",
}


def stored_bytes(directory: Path) -> bytes:
    """The state database's files (the database, its WAL and shared memory), as bytes."""
    return b"".join(path.read_bytes() for path in sorted(directory.glob("state.db*")))


def _forms(secret: str) -> list[str]:
    """The shapes a secret could leak in: itself, and as the HTTP headers that carry it."""
    basic = base64.b64encode(f"ops@example.com/token:{secret}".encode()).decode()
    return [secret, f"Bearer {secret}", basic]


def test_e2e_no_slack_zendesk_or_llm_secret_in_any_output_error_or_the_state(tmp_path: Path) -> None:
    """Slack, Zendesk and the LLM configured with secrets from the environment, each one accepted
    (the sandbox and the stub insist on these values) and each path through an error taken (a token
    Slack refuses, Zendesk down, the LLM failing): no secret in stdout, stderr, the state
    database (its files, WAL included) or the outputs of `report`, `failed`, `explain`. An LLM
    that fails (HTTP 500) puts its error in each verdict's reason, which the state keeps."""
    now = datetime.now(UTC).replace(microsecond=0)
    book = generate_book(160, seed=21, now=now)
    sandbox_config = SandboxConfig(
        vitally_rate_limit=10**7,
        slack_burst=10**6,
        fault_timeout_s=5,
        slack_token="xoxb-someone-else",  # run 1: Slack refuses crm-sync's token
        zendesk_token=SECRETS["TEST_ZENDESK_API_TOKEN"],
    )
    outputs: list[str] = []
    with LLMStub(api_key=SECRETS["TEST_LLM_API_KEY"]) as llm, Sandbox(book, config=sandbox_config) as sandbox:
        config = configure(sandbox, tmp_path / "config.toml")
        text = config.read_text()
        for old, new in (
            ('# api_token_env = "CRM_SYNC_ZENDESK_API_TOKEN"', 'api_token_env = "TEST_ZENDESK_API_TOKEN"'),
            ('classifier = "offline"', 'classifier = "llm"'),
            ('base_url = "https://api.openai.com/v1"', f'base_url = "{llm.base_url}"'),
            ('# api_key_env = "CRM_SYNC_LLM_API_KEY"', 'api_key_env = "TEST_LLM_API_KEY"'),
        ):
            assert old in text, old
            text = text.replace(old, new, 1)
        config.write_text(text)
        assert not any(secret in text for secret in SECRETS.values())
        state = tmp_path / "state.db"

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            result = run_cli(config, state, *args, env=SECRETS)
            outputs.extend((result.stdout, result.stderr))
            return result

        def errors() -> str:
            """The errors the outbox keeps for failed follow-ups (what `failed` and the logs show)."""
            with sqlite3.connect(state) as db:
                rows = db.execute("SELECT last_error FROM outbox WHERE system IN ('slack', 'zendesk')").fetchall()
            outputs.append(text := "\n".join(str(error) for (error,) in rows if error))
            return text

        llm.fault = "http_500"
        first = run("run")  # the LLM asked and failing (offline verdicts); posts refused (invalid_auth)
        refused = errors()
        llm.fault = None
        sandbox.configure(slack_token=SECRETS["TEST_SLACK_BOT_TOKEN"])
        sandbox.add_fault("status", method="POST", path_prefix=TICKETS, status=503, count=10**6)
        run("run")  # posts go out; Zendesk answers 503 to every ticket
        down = errors()
        sandbox.clear_faults()
        third = run("run")  # tickets created
        for args in (("report",), ("failed",), ("explain", *list(leads(sandbox))[:3])):
            run(*args)
        posted, opened = announced(sandbox), tickets(sandbox)

    assert "LLM triage not used: HTTP 500" in first.stderr and "failed 1," in first.stderr
    assert "invalid_auth" in refused and "503" in down  # the error paths were taken
    assert b"LLM not used: HTTP 500" in stored_bytes(tmp_path)
    assert third.returncode in (0, 1), third.stderr[-2000:]
    assert posted and opened and llm.requests  # each secret was sent, and accepted
    assert set(posted.values()) == {1} and set(opened.values()) == {1}
    stored = stored_bytes(tmp_path)
    assert stored and "".join(outputs)
    for secret in SECRETS.values():
        for form in _forms(secret):
            assert form.encode() not in stored, f"a secret in the state database: {form[:12]}…"
            assert all(form not in output for output in outputs), f"a secret in an output: {form[:12]}…"


def test_e2e_apply_announces_the_leads_it_writes_and_tickets_support_requests_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """`apply PLAN` writes what a reviewed dry run planned: its leads get their announcement and
    its support requests their ticket, as a cycle's do (found by a review: apply queued no
    follow-up, and no later cycle queued one for a write already done)."""
    config, state, plan = configure(sandbox, tmp_path / "config.toml"), tmp_path / "state.db", tmp_path / "plan.json"
    before = leads(sandbox)
    dry = run_cli(config, state, "run", "--dry-run", "--out", str(plan), env=TOKEN)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert announced(sandbox) == Counter() and tickets(sandbox) == Counter()

    applied = run_cli(config, state, "apply", str(plan), env=TOKEN)

    assert applied.returncode == 0, applied.stderr[-2000:]
    after = leads(sandbox)
    wanted = new_leads(before, after)
    support = support_requests(before, after)
    assert len(wanted) > 40 and support
    assert announced(sandbox) == Counter({lead: 1 for lead in wanted})
    assert tickets(sandbox) == Counter({f"crm-sync-lead-{lead}": 1 for lead in support})
    # A cycle after it posts and tickets nothing again.
    again = run_cli(config, state, "run", env=TOKEN)
    assert again.returncode == 0, again.stderr[-2000:]
    assert announced(sandbox) == Counter({lead: 1 for lead in wanted})
    assert tickets(sandbox) == Counter({f"crm-sync-lead-{lead}": 1 for lead in support})
