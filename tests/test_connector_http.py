"""The shared plumbing of both adapters: the retry policy, the HTTP adapters, pagination."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import TypedDict

import pytest
import requests
import responses
from support import request_kwargs

from connectors.base import RequestCounter, WriteResult, parse_iso_utc
from connectors.http import (
    PlainHTTPAdapter,
    TimeoutHTTPAdapter,
    backoff_wait,
    call_with_retry,
    make_session,
    never_sent,
)
from connectors.paging import CursorPaginator
from core.errors import (
    ConfigError,
    ContractError,
    RateLimitedError,
    RetriableError,
    SyncError,
    UnansweredError,
    UnreachableError,
    WriteRejectedError,
)


# The retry policy has no defaults of its own: the adapters pass their settings. These are the
# declared defaults of both adapters (5 attempts, waits capped at 60 s), which the cases assume.
class _Retry(TypedDict):
    max_attempts: int
    max_wait: float


RETRY: _Retry = {"max_attempts": 5, "max_wait": 60.0}


class Script:
    """A callable that raises or returns the scripted outcomes in turn, counting calls."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> object:
        outcome = self.outcomes[self.calls]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _http(status: int) -> RetriableError:
    return RetriableError(f"HTTP {status}", system="test", status=status)


def _net() -> RetriableError:
    return RetriableError("network error (ConnectionError)", system="test")


# -- call_with_retry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "calls", "wait_bounds"),
    [
        pytest.param([_http(500), "ok"], 2, [(1, 2)], id="500-then-ok"),
        pytest.param([_http(503), _http(502), "ok"], 3, [(1, 2), (2, 3)], id="503-502-then-ok"),
        pytest.param([_net(), "ok"], 2, [(1, 2)], id="reset-then-ok"),
        pytest.param([RateLimitedError("429", wait_seconds=7), "ok"], 2, [(7, 7)], id="429-waits-reset"),
        pytest.param([RateLimitedError("429", wait_seconds=600), "ok"], 2, [(60, 60)], id="429-wait-capped"),
        pytest.param([RateLimitedError("429"), "ok"], 2, [(1, 2)], id="429-without-reset-backs-off"),
        pytest.param([_http(500)] * 4 + ["ok"], 5, [(1, 2), (2, 3), (4, 5), (8, 9)], id="exponential"),
    ],
)
def test_call_with_retry_retries_transient_failures_then_succeeds(
    outcomes: list[object], calls: int, wait_bounds: list[tuple[float, float]]
) -> None:
    script = Script(*outcomes)
    sleeps: list[float] = []
    assert call_with_retry(script, sleep=sleeps.append, **RETRY) == "ok"
    assert script.calls == calls
    assert len(sleeps) == len(wait_bounds)
    for wait, (low, high) in zip(sleeps, wait_bounds, strict=True):
        assert low <= wait <= high


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        pytest.param(_net(), UnreachableError, id="network-becomes-unreachable"),
        pytest.param(_http(503), RetriableError, id="http-status-reraised"),
        pytest.param(RateLimitedError("429", wait_seconds=1), RateLimitedError, id="rate-limit-reraised"),
    ],
)
def test_call_with_retry_gives_up_after_max_attempts(error: RetriableError, raised: type[SyncError]) -> None:
    script = Script(*[error] * 3)
    sleeps: list[float] = []
    with pytest.raises(raised) as caught:
        call_with_retry(script, sleep=sleeps.append, max_attempts=3, max_wait=60)
    assert type(caught.value) is raised
    assert script.calls == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "error",
    [
        ContractError("HTTP 400"),
        WriteRejectedError("k", "DUPLICATES_DETECTED", "dup"),
        ValueError("a bug is not retried either"),
    ],
)
def test_call_with_retry_does_not_retry_other_errors(error: Exception) -> None:
    script = Script(error, "ok")
    sleeps: list[float] = []
    with pytest.raises(type(error)):
        call_with_retry(script, sleep=sleeps.append, **RETRY)
    assert (script.calls, sleeps) == (1, [])


def test_call_with_retry_runs_unsafe_operations_once() -> None:
    script = Script(_http(500), "ok")
    sleeps: list[float] = []
    with pytest.raises(RetriableError):
        call_with_retry(script, sleep=sleeps.append, is_safe=False, **RETRY)
    assert (script.calls, sleeps) == (1, [])


def test_call_with_retry_never_sends_a_write_again_whose_answer_was_lost() -> None:
    """A write that went out and got no answer may have taken effect: repeating it could undo what a
    person did since. It is raised as it is (not as `UnreachableError`: the service answered
    before and may again), and the apply step looks at the record first."""
    script = Script(UnansweredError("vitally PUT /resources/accounts/:id: no answer"), "ok")
    sleeps: list[float] = []
    with pytest.raises(UnansweredError):
        call_with_retry(script, sleep=sleeps.append, **RETRY)
    assert (script.calls, sleeps) == (1, [])


def test_never_sent_tells_a_refused_connection_from_a_lost_answer() -> None:
    refused = make_session("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(requests.ConnectionError) as caught:
        refused.get("http://127.0.0.1:9/")  # nothing listens on the discard port: refused
    assert never_sent(caught.value)
    assert never_sent(requests.ConnectTimeout())
    assert not never_sent(requests.exceptions.ReadTimeout())  # sent; its answer did not come in time
    assert not never_sent(requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer")))
    assert not never_sent(requests.exceptions.ChunkedEncodingError())  # the answer broke off
    # requests raises the same SSLError for a failed handshake and for an answer broken off once
    # the request was sent: taken as a lost answer, which the look before a re-send makes safe.
    assert not never_sent(requests.exceptions.SSLError("EOF occurred in violation of protocol"))


def test_backoff_wait_grows_and_is_capped() -> None:
    assert 1 <= backoff_wait(1, max_wait=60) <= 2
    assert 16 <= backoff_wait(5, max_wait=60) <= 17
    assert backoff_wait(50, max_wait=60) == 60


# -- adapters and sessions ---------------------------------------------------------------------------


def test_make_session_sets_a_default_timeout(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, "https://api.example.com/a", json={})
    rsps.add(responses.GET, "https://api.example.com/b", json={})
    session = make_session("https://api.example.com", timeout=4.5)
    session.get("https://api.example.com/a")
    session.get("https://api.example.com/b", timeout=1)
    assert [request_kwargs(call.request)["timeout"] for call in rsps.calls] == [4.5, 1]


def test_a_session_reads_the_environments_settings_once_a_host_and_as_requests_does(
    monkeypatch: pytest.MonkeyPatch, rsps: responses.RequestsMock
) -> None:
    """Proxies, the bypass list and the CA bundle come from the environment as requests reads
    them, looked up once per scheme and host instead of on every request; a request's own
    settings still win."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "login.example.com")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp-bundle.pem")
    session = make_session("https://api.example.com", timeout=3)
    plain = requests.Session()
    for url in ("https://api.example.com/a?x=1", "https://login.example.com/t", "http://api.example.com/a"):
        assert session.merge_environment_settings(url, {}, None, None, None) == plain.merge_environment_settings(
            url, {}, None, None, None
        )
    proxies = session.merge_environment_settings("https://api.example.com/b", {}, None, None, None)["proxies"]
    assert proxies["https"] == "http://proxy.internal:3128"
    own = {"https": "http://other:8080"}
    assert session.merge_environment_settings("https://api.example.com/a", own, None, False, None) == (
        plain.merge_environment_settings("https://api.example.com/a", own, None, False, None)
    )

    looked_up: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        looked_up.append(url)
        return real(url, no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    rsps.add(responses.GET, "https://api.example.com/page", json={})
    fresh = make_session("https://api.example.com", timeout=3)
    for _ in range(5):
        fresh.get("https://api.example.com/page")
    assert len(rsps.calls) == 5
    assert looked_up == ["https://api.example.com/page"]  # requests alone: five lookups
    assert all(request_kwargs(call.request)["verify"] == "/etc/ssl/corp-bundle.pem" for call in rsps.calls)


def test_plain_http_adapter_sends_https_requests_over_http(rsps: responses.RequestsMock) -> None:
    # simple-salesforce builds https://host:port from the sandbox's http:// instance URL.
    rsps.add(responses.GET, "http://127.0.0.1:8765/services/data/v59.0/query", json={"ok": True})
    session = make_session("http://127.0.0.1:8765", timeout=3)
    response = session.get("https://127.0.0.1:8765/services/data/v59.0/query")
    assert response.json() == {"ok": True}
    assert rsps.calls[0].request.url == "http://127.0.0.1:8765/services/data/v59.0/query"
    assert request_kwargs(rsps.calls[0].request)["timeout"] == 3


def test_plain_http_adapter_leaves_other_hosts_alone(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, "https://login.example.com/x", json={})
    rsps.add(responses.GET, "https://127.0.0.1:8765/x", json={})
    session = make_session("http://127.0.0.1:876", timeout=3)
    session.get("https://login.example.com/x")
    session.get("https://127.0.0.1:8765/x")  # a longer port must not match the prefix
    assert [call.request.url for call in rsps.calls] == [
        "https://login.example.com/x",
        "https://127.0.0.1:8765/x",
    ]


def test_make_session_never_downgrades_an_https_base(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, "https://org.my.salesforce.com/x", json={})
    session = make_session("https://org.my.salesforce.com", timeout=3)
    session.get("https://org.my.salesforce.com/x")
    assert rsps.calls[0].request.url == "https://org.my.salesforce.com/x"
    adapter = session.get_adapter("https://org.my.salesforce.com/x")
    assert type(adapter) is TimeoutHTTPAdapter


def test_make_session_mounts_the_plain_adapter_for_the_sandbox_only() -> None:
    session = make_session("http://localhost:8080", timeout=3)
    assert isinstance(session.get_adapter("https://localhost:8080/services"), PlainHTTPAdapter)
    assert not isinstance(session.get_adapter("https://localhost:9090/services"), PlainHTTPAdapter)


@pytest.mark.parametrize("url", ["ftp://example.com", "example.com", "https://"])
def test_make_session_rejects_a_non_http_base_url(url: str) -> None:
    with pytest.raises(ConfigError):
        make_session(url, timeout=3)


def test_timeout_adapter_applies_to_real_connections() -> None:
    # No mock: a refused connection still goes through our adapter and raises requests' error.
    session = make_session("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(requests.ConnectionError):
        session.get("https://127.0.0.1:9/")


# -- pagination ------------------------------------------------------------------------------------


def test_cursor_paginator_follows_cursors_until_none() -> None:
    pages = {None: ([1, 2], "b"), "b": ([3], "c"), "c": ([], None)}
    asked: list[str | None] = []

    def fetch(token: str | None) -> tuple[list[int], str | None]:
        asked.append(token)
        return pages[token]

    paginator = CursorPaginator()
    assert [list(page) for page in paginator.pages(fetch)] == [[1, 2], [3], []]
    assert asked == [None, "b", "c"]
    assert paginator.finished and paginator.pages_read == 3


def test_cursor_paginator_is_lazy() -> None:
    asked: list[str | None] = []

    def fetch(token: str | None) -> tuple[list[int], str | None]:
        asked.append(token)
        return [1], f"{token}x"

    pages = CursorPaginator().pages(fetch)
    next(pages)
    assert asked == [None]


@pytest.mark.parametrize(
    ("cursors", "pages_before_error"),
    [
        pytest.param(["a", "a"], 1, id="same-cursor-twice"),
        pytest.param(["a", "b", "a"], 2, id="cycle"),
    ],
)
def test_cursor_paginator_detects_loops(cursors: list[str], pages_before_error: int) -> None:
    returned = iter(cursors)
    seen = 0
    with pytest.raises(ContractError, match="pagination loop"):
        for _ in CursorPaginator().pages(lambda token: ([token], next(returned))):
            seen += 1
    assert seen == pages_before_error


def test_cursor_paginator_ahead_yields_the_same_pages_from_the_same_requests() -> None:
    pages = {None: ([1, 2], "b"), "b": ([3], "c"), "c": ([], None)}
    asked: list[str | None] = []
    threads: set[str] = set()

    def fetch(token: str | None) -> tuple[list[int], str | None]:
        asked.append(token)
        threads.add(threading.current_thread().name)
        return pages[token]

    paginator = CursorPaginator()
    assert [list(page) for page in paginator.pages(fetch, ahead=True)] == [[1, 2], [3], []]
    assert asked == [None, "b", "c"]
    assert paginator.finished and paginator.pages_read == 3
    assert any(name.startswith("page-ahead") for name in threads)  # the pages after the first


def test_cursor_paginator_ahead_requests_the_next_page_while_the_consumer_works() -> None:
    """The page after the one yielded is being fetched before the consumer asks for it; one
    page ahead, never more."""
    second_asked = threading.Event()

    def fetch(token: str | None) -> tuple[list[str | None], str | None]:
        if token == "b":
            second_asked.set()
        return [token], {None: "b", "b": "c", "c": None}[token]

    pages = CursorPaginator().pages(fetch, ahead=True)
    assert next(pages) == [None]
    assert second_asked.wait(timeout=10)  # asked for while the consumer still holds page 1
    assert [list(page) for page in pages] == [["b"], ["c"]]


def test_cursor_paginator_ahead_has_begun_the_next_fetch_when_it_yields_a_page() -> None:
    """The fetch of the next page has started (its request goes out) before the consumer gets the
    page before it: the consumer's work never holds the request back (issue #17)."""
    begun: list[str | None] = []

    def fetch(token: str | None) -> tuple[list[str | None], str | None]:
        begun.append(token)
        return [token], {None: "b", "b": "c", "c": None}[token]

    seen = [(list(page), list(begun)) for page in CursorPaginator().pages(fetch, ahead=True)]
    assert seen == [([None], [None, "b"]), (["b"], [None, "b", "c"]), (["c"], [None, "b", "c"])]


def test_cursor_paginator_ahead_raises_a_failure_where_the_consumer_asks_for_that_page() -> None:
    def fetch(token: str | None) -> tuple[list[int], str | None]:
        if token == "c":
            raise RetriableError("page 3 failed")
        return [1], {None: "b", "b": "c"}[token]

    seen = 0
    with pytest.raises(RetriableError, match="page 3"):
        for _ in CursorPaginator().pages(fetch, ahead=True):
            seen += 1
    assert seen == 2
    returned = iter(["a", "b", "a"])
    seen = 0
    with pytest.raises(ContractError, match="pagination loop"):
        for _ in CursorPaginator().pages(lambda token: ([token], next(returned)), ahead=True):
            seen += 1
    assert seen == 2


def test_cursor_paginator_ahead_closed_early_has_asked_one_page_more_and_waited_for_it() -> None:
    asked: list[str | None] = []
    finished: list[str | None] = []
    release = threading.Event()

    def fetch(token: str | None) -> tuple[list[str | None], str | None]:
        asked.append(token)
        if token is not None:
            release.wait(timeout=10)
        finished.append(token)
        return [token], f"{token}x"

    pages = CursorPaginator().pages(fetch, ahead=True)
    assert isinstance(pages, Generator)
    next(pages)
    threading.Timer(0.2, release.set).start()
    pages.close()  # returns once the page asked ahead is answered: no request outlives the read
    assert asked == [None, "Nonex"] and finished == asked


def test_cursor_paginator_refuses_to_advance_after_the_end() -> None:
    paginator = CursorPaginator()
    paginator.advance(None)
    with pytest.raises(ContractError):
        paginator.advance("x")


# -- base ------------------------------------------------------------------------------------------


def test_request_counter_counts_by_method_and_template() -> None:
    counter = RequestCounter()
    counter.add("get", "/resources/accounts")
    counter.add("GET", "/resources/accounts")
    counter.add("PUT", "/resources/accounts/:id")
    assert counter["GET", "/resources/accounts"] == 2
    assert counter.snapshot() == {("GET", "/resources/accounts"): 2, ("PUT", "/resources/accounts/:id"): 1}
    assert counter.total == 3


def test_write_result_is_frozen() -> None:
    result = WriteResult(key="k", ok=True)
    with pytest.raises(AttributeError):
        result.ok = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2024-03-01T10:00:00Z", "2024-03-01T10:00:00+00:00"),
        ("2024-03-01T10:00:00.000+0000", "2024-03-01T10:00:00+00:00"),
        ("2024-03-01T11:00:00+01:00", "2024-03-01T10:00:00+00:00"),
        ("2024-03-01T10:00:00", "2024-03-01T10:00:00+00:00"),
    ],
)
def test_parse_iso_utc_reads_both_services_formats(text: str, iso: str) -> None:
    assert parse_iso_utc(text).isoformat() == iso


def test_interruptible_sleep_ends_a_long_wait_within_a_nap_of_the_stop() -> None:
    from connectors.http import interruptible_sleep
    from core.errors import StopRequested

    asked: list[bool] = []
    sleep = interruptible_sleep(lambda: bool(asked), nap=0.01)
    sleep(0.02)  # no stop: the whole wait
    started = time.monotonic()
    threading.Timer(0.05, lambda: asked.append(True)).start()
    with pytest.raises(StopRequested):
        sleep(120)
    assert time.monotonic() - started < 1.0
    with pytest.raises(StopRequested):  # once asked, no attempt starts: even a wait of 0 refuses
        sleep(0)


def test_call_with_retry_starts_no_attempt_after_a_stop_during_the_wait() -> None:
    from connectors.http import interruptible_sleep
    from core.errors import StopRequested

    attempts: list[int] = []

    def attempt() -> None:
        attempts.append(1)
        raise RateLimitedError("429", system="vitally", wait_seconds=120)

    sleep = interruptible_sleep(lambda: len(attempts) >= 1, nap=0.01)
    with pytest.raises(StopRequested):
        call_with_retry(attempt, sleep=sleep, max_attempts=5, max_wait=120)
    assert len(attempts) == 1
