"""The LLM triage against a real HTTP server speaking the chat-completions wire format (sandbox.llm),
with the real offline classifier as its fallback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests

from connectors.llm import LLMSettings, LLMTriage
from core.triage import Submission
from rules.triage import offline_triage
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
