"""The LLM triage against a real HTTP server speaking the chat-completions wire format (sandbox.llm),
with the real offline classifier as its fallback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from support import ROOT, example_config_for, run_cli

from connectors.llm import LLMSettings, LLMTriage
from core.triage import Submission
from rules.context import CLOSED_LEAD_STATUSES
from rules.triage import offline_triage
from sandbox import Sandbox, SandboxConfig, generate_book
from sandbox.generator import _FORM_TEXTS
from sandbox.llm import Fault, LLMStub

pytestmark = pytest.mark.e2e

KEY = "sk-stub-key"
BUG = Submission("Since the last release our funnels show zero conversions. Can you check?", "a@shop.io", "Shop", "PM")
PITCH = Submission(
    "We are an SEO agency. Can we send you a free audit of your website?", "x@seo.biz", "SEO Co", "Sales"
)


@pytest.fixture
def stub() -> Iterator[LLMStub]:
    with LLMStub(api_key=KEY) as running:
        yield running


def classifier(stub: LLMStub, **settings: Any) -> LLMTriage:
    base = LLMSettings(base_url=stub.base_url, model="stub-model", api_key=KEY, timeout_seconds=5.0)
    return LLMTriage(replace(base, **settings), offline_triage())


def test_e2e_llm_triage_uses_the_endpoints_label(stub: LLMStub) -> None:
    stub.answers[BUG.text] = {"label": "support", "reason": "the user reports missing conversions"}
    stub.answers[PITCH.text] = {"label": "spam", "reason": "an agency pitching SEO"}
    llm = classifier(stub)
    assert llm.classify(BUG).reason == "support: the user reports missing conversions (LLM stub-model)"
    assert llm.classify(PITCH).label == "spam"
    assert (llm.calls, llm.fallbacks) == (2, 0)
    assert [r["model"] for r in stub.requests] == ["stub-model", "stub-model"]
    assert stub.requests[0]["response_format"]["json_schema"]["strict"] is True


def test_e2e_llm_triage_wrong_key_falls_back(stub: LLMStub) -> None:
    llm = classifier(stub, api_key="sk-wrong")
    verdict = llm.classify(PITCH)
    assert verdict.label == "spam"  # the offline classifier's verdict
    assert verdict.reason.endswith("[LLM not used: HTTP 401]")
    assert stub.requests == []  # refused before it was read


def test_e2e_llm_triage_timeout_falls_back_in_time(stub: LLMStub) -> None:
    stub.fault, stub.delay_seconds = "slow", 3.0
    llm = classifier(stub, timeout_seconds=0.3)
    verdict = llm.classify(BUG)
    assert verdict.label == "support"
    assert verdict.reason.endswith("[LLM not used: no answer within 0.3 s]")
    assert llm.fallbacks == 1


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("http_500", "HTTP 500"),
        ("http_429", "HTTP 429"),
        ("not_json", "the answer is not JSON"),
        ("refusal", "the model refused"),
        ("bad_label", "label is not one of"),
        ("extra_key", "not exactly"),
        ("truncated", "cut short"),
        ("fenced", "the answer is not JSON"),
    ],
)
def test_e2e_llm_triage_every_stub_fault_falls_back(stub: LLMStub, fault: Fault, why: str) -> None:
    stub.fault = fault
    llm = classifier(stub)
    verdict = llm.classify(PITCH)
    assert verdict.label == "spam"
    assert why in verdict.reason
    assert len(stub.requests) == 1


def test_e2e_llm_stub_speaks_the_wire_format(stub: LLMStub) -> None:
    """The stub itself: a chat.completion object, an error object for a wrong key or path."""
    body = {"model": "m", "messages": [{"role": "user", "content": '<submission>{"form_text": "hi"}</submission>'}]}
    ok = requests.post(
        f"{stub.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    )
    assert ok.status_code == 200
    answer = ok.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert json.loads(answer["choices"][0]["message"]["content"]) == stub.default
    denied = requests.post(f"{stub.base_url}/chat/completions", json=body, timeout=5)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    missing = requests.post(
        f"{stub.base_url}/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    )
    assert missing.status_code == 404


# -- selected in the config: the real CLI, the sandbox and the stub -------------------------------


def _llm_config(sandbox: Sandbox, llm: LLMStub, path: Path) -> Path:
    """The example config pointed at the sandbox, with `[rules.demo] classifier = "llm"` asking the stub."""
    return example_config_for(
        sandbox.url,
        path,
        {
            'classifier = "offline"': 'classifier = "llm"',
            'base_url = "https://api.openai.com/v1"': f'base_url = "{llm.base_url}"',
            'model = "gpt-4o-mini"': 'model = "stub-model"',
        },
    )


def test_e2e_llm_classifier_from_the_config_asks_once_per_submission_and_the_rules_read_its_verdicts(
    tmp_path: Path,
) -> None:
    """`[rules.demo] classifier = "llm"`: the first run leaves demo requests unowned and asks the LLM
    after its writes, once per open submission; the second applies the verdicts; no submission is
    ever asked about twice."""
    now = datetime.now(UTC).replace(microsecond=0)
    book = generate_book(160, seed=21, now=now)
    with LLMStub() as llm, Sandbox(book, config=SandboxConfig(vitally_rate_limit=10**7)) as sandbox:
        for text in _FORM_TEXTS["support"]:
            llm.answers[text] = {"label": "support", "reason": "an existing user needs help"}
        for text in _FORM_TEXTS["spam"]:
            llm.answers[text] = {"label": "spam", "reason": "a vendor pitch"}
        config = _llm_config(sandbox, llm, tmp_path / "config.toml")
        state = tmp_path / "state.db"
        waiting = {
            lead["Id"]: lead
            for lead in sandbox.state()["salesforce"]["Lead"]
            if lead["LeadSource"] == "Demo request"
            and not lead["IsConverted"]
            and lead["Status"] not in CLOSED_LEAD_STATUSES
            and lead["Id"] not in book["_cases"]["malformed"]  # reported and skipped, never asked about
        }
        first = run_cli(config, state, "run")
        after_first = {lead["Id"]: lead for lead in sandbox.state()["salesforce"]["Lead"]}
        asked = len(llm.requests)
        second = run_cli(config, state, "run")
        third = run_cli(config, state, "run")
        after = {lead["Id"]: lead for lead in sandbox.state()["salesforce"]["Lead"]}

    for run in (first, second, third):
        assert run.returncode == 0, run.stderr[-2000:]
    assert len(waiting) >= 5
    # Run 1: nothing classified and no owner given before the LLM answered.
    assert all(after_first[i]["Classification__c"] is None for i in waiting)
    assert all(after_first[i]["OwnerId"] == waiting[i]["OwnerId"] for i in waiting)
    assert asked == len(waiting)  # once per open submission, after the run's writes
    assert len(llm.requests) == asked  # runs 2 and 3 asked nothing again
    expected = {
        i: "support" if lead["Form_Text__c"] in _FORM_TEXTS["support"] else
        "spam" if lead["Form_Text__c"] in _FORM_TEXTS["spam"] else "sales"
        for i, lead in waiting.items()
    }  # fmt: skip
    assert {i: after[i]["Classification__c"] for i in waiting} == expected
    assert all(after[i]["Status"] == "Disqualified" for i, label in expected.items() if label == "spam")


@pytest.mark.chaos
def test_e2e_llm_kill_9_while_asking_never_asks_that_submission_again(tmp_path: Path) -> None:
    """A kill -9 while the LLM is answering: the restart does not ask about that submission again
    (it gets the offline verdict, saying why), asks about each other one once, and applies them."""
    now = datetime.now(UTC).replace(microsecond=0)
    book = generate_book(160, seed=21, now=now)
    with LLMStub() as llm, Sandbox(book, config=SandboxConfig(vitally_rate_limit=10**7)) as sandbox:
        config = _llm_config(sandbox, llm, tmp_path / "config.toml")
        state = tmp_path / "state.db"
        waiting = {
            lead["Id"]
            for lead in sandbox.state()["salesforce"]["Lead"]
            if lead["LeadSource"] == "Demo request"
            and not lead["IsConverted"]
            and lead["Status"] not in CLOSED_LEAD_STATUSES
            and lead["Id"] not in book["_cases"]["malformed"]
        }
        llm.fault, llm.delay_seconds = "slow", 60.0
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VITALLY_", "SALESFORCE_", "CRM_SYNC_"))}
        command = [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "run"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
        deadline = time.monotonic() + 120
        while not llm.requests:
            assert process.poll() is None and time.monotonic() < deadline, "the LLM was never asked"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        llm.fault = None
        runs = [run_cli(config, state, "run") for _ in range(2)]

    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert len(llm.requests) == len(waiting)  # the killed request's submission was not asked again
    with sqlite3.connect(state) as db:
        verdicts = dict(db.execute("SELECT lead, reason FROM triage WHERE answered_at IS NOT NULL").fetchall())
    assert set(verdicts) == waiting
    recovered = [lead for lead, reason in verdicts.items() if "asked once before and no answer was recorded" in reason]
    assert len(recovered) == 1
