"""VitallyClient against a mocked Vitally REST API (`responses`; nothing really sleeps)."""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from responses import matchers
from support import decoded, request_kwargs

from connectors.base import VitallyPort
from connectors.vitally import VitallyClient, VitallySettings
from core.errors import (
    AuthError,
    ConfigError,
    ContractError,
    RateLimitedError,
    RecordError,
    RetriableError,
    SyncError,
    UnansweredError,
    UnreachableError,
    WriteRejectedError,
)

BASE = "https://acme.rest.vitally.io"
ACCOUNTS = f"{BASE}/resources/accounts"
KEY = "sk_live_abc123"


@pytest.fixture
def client(sleeps: list[float]) -> VitallyClient:
    return VitallyClient(VitallySettings(base_url=BASE, api_key=KEY), sleep=sleeps.append, page_size=2)


def _account(n: int, updated_at: str) -> dict[str, Any]:
    return {"id": f"acc{n}", "externalId": f"ext{n}", "name": f"Account {n}", "updatedAt": updated_at}


def _page(results: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"results": results, "next": next_cursor}


def _add_page(
    rsps: responses.RequestsMock,
    results: list[dict[str, Any]],
    next_cursor: str | None,
    cursor: str | None,
    status: str | None = None,
) -> None:
    params = {"limit": "2", "sortBy": "updatedAt"} | ({"from": cursor} if cursor else {})
    params |= {"status": status} if status else {}
    rsps.add(
        responses.GET,
        ACCOUNTS,
        json=_page(results, next_cursor),
        match=[matchers.query_param_matcher(params)],
    )


# -- reading ---------------------------------------------------------------------------------------


def test_iter_accounts_pages_with_from_and_next(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    _add_page(rsps, [_account(1, "2024-03-03T00:00:00Z"), _account(2, "2024-03-02T00:00:00Z")], "c2", None)
    _add_page(rsps, [_account(3, "2024-03-01T00:00:00Z")], None, "c2")
    ids = [decoded(account)["id"] for account in client.iter_accounts()]
    assert ids == ["acc1", "acc2", "acc3"]
    assert client.requests["GET", "/resources/accounts"] == 2


def test_iter_accounts_sends_basic_auth_with_the_key_as_user(
    client: VitallyClient, rsps: responses.RequestsMock
) -> None:
    _add_page(rsps, [], None, None)
    list(client.iter_accounts())
    expected = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert rsps.calls[0].request.headers["Authorization"] == expected


def test_iter_accounts_passes_status_and_sort(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.GET,
        ACCOUNTS,
        json=_page([], None),
        match=[matchers.query_param_matcher({"limit": "2", "sortBy": "createdAt", "status": "churned"})],
    )
    assert list(client.iter_accounts(sort_by="createdAt", status="churned")) == []


def test_iter_accounts_is_lazy(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    _add_page(rsps, [_account(1, "2024-03-03T00:00:00Z")], "c2", None)
    accounts = client.iter_accounts()
    assert decoded(next(accounts))["id"] == "acc1"  # the second page is never requested


@pytest.mark.parametrize(
    "cursors",
    [pytest.param(["c2", "c2"], id="same-cursor-again"), pytest.param(["c2", "c3", "c2"], id="cycle")],
)
def test_iter_accounts_stops_on_a_pagination_loop(
    client: VitallyClient, rsps: responses.RequestsMock, cursors: list[str]
) -> None:
    previous = None
    for n, cursor in enumerate(cursors):
        _add_page(rsps, [_account(n, "2024-03-03T00:00:00Z")], cursor, previous)
        previous = cursor
    with pytest.raises(ContractError, match="pagination loop"):
        list(client.iter_accounts())
    assert client.requests.total == len(cursors)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([], id="a-list"),
        pytest.param({"data": []}, id="no-results"),
        pytest.param({"results": ["x"], "next": None}, id="results-not-objects"),
        pytest.param({"results": [], "next": 5}, id="next-not-a-string"),
    ],
)
def test_iter_accounts_refuses_an_unknown_page_shape(
    client: VitallyClient, rsps: responses.RequestsMock, body: object
) -> None:
    rsps.add(responses.GET, ACCOUNTS, json=body)
    with pytest.raises(ContractError):
        list(client.iter_accounts())


# Pages are newest-first; `pages` lists what Vitally would serve; `fetched` how many pages we expect
# to be requested; `expected` the ids yielded.
SINCE_CASES = [
    pytest.param(
        "2024-03-02T00:00:00Z",
        [[("a", "2024-03-04T00:00:00Z"), ("b", "2024-03-03T00:00:00Z")], [("c", "2024-03-01T00:00:00Z")]],
        2,
        ["a", "b"],
        id="stops-at-first-older-record-on-a-later-page",
    ),
    pytest.param(
        "2024-03-03T00:00:00Z",
        [[("a", "2024-03-04T00:00:00Z"), ("b", "2024-03-02T00:00:00Z")], [("c", "2024-03-01T00:00:00Z")]],
        1,
        ["a"],
        id="does-not-fetch-the-next-page-after-stopping",
    ),
    pytest.param(
        "2024-03-03T00:00:00Z",
        [[("a", "2024-03-03T00:00:00Z"), ("b", "2024-03-03T00:00:00Z")], [("c", "2024-03-02T00:00:00Z")]],
        2,
        ["a", "b"],
        id="equal-timestamps-are-yielded",
    ),
    pytest.param(
        "2024-03-03T01:00:00+01:00",
        [[("a", "2024-03-03T00:00:00.000Z"), ("b", "2024-03-02T23:59:59.999Z")]],
        1,
        ["a"],
        id="instants-not-strings",
    ),
    pytest.param(
        "2024-03-03T00:00:00Z",
        [[("a", "2024-03-04T00:00:00Z"), ("x", "not a date")], [("b", "2024-03-01T00:00:00Z")]],
        2,
        ["a", "x"],
        id="unreadable-timestamp-is-yielded-not-a-stop",
    ),
    pytest.param(
        None,
        [[("a", "2024-03-04T00:00:00Z"), ("b", "2020-01-01T00:00:00Z")], [("c", "2010-01-01T00:00:00Z")]],
        2,
        ["a", "b", "c"],
        id="no-watermark-reads-everything",
    ),
    pytest.param(
        "2024-03-05T00:00:00Z",
        [[("a", "2024-03-04T00:00:00Z"), ("b", "2024-03-03T00:00:00Z")], [("c", "2024-03-01T00:00:00Z")]],
        1,
        [],
        id="nothing-new",
    ),
]


@pytest.mark.parametrize(("watermark", "pages", "fetched", "expected"), SINCE_CASES)
def test_iter_accounts_since_stops_at_the_watermark(
    client: VitallyClient,
    rsps: responses.RequestsMock,
    watermark: str | None,
    pages: list[list[tuple[str, str]]],
    fetched: int,
    expected: list[str],
) -> None:
    cursor: str | None = None
    for n, page in enumerate(pages[:fetched]):
        next_cursor = f"p{n + 1}" if n + 1 < len(pages) else None
        records = [{"id": key, "updatedAt": updated} for key, updated in page]
        # The incremental read asks for churned accounts too (Vitally's default is active only).
        _add_page(rsps, records, next_cursor, cursor, status="activeOrChurned")
        cursor = next_cursor
    assert [decoded(account)["id"] for account in client.iter_accounts_since(watermark)] == expected
    assert client.requests.total == fetched


def test_iter_accounts_since_refuses_a_bad_watermark(client: VitallyClient) -> None:
    with pytest.raises(ContractError):
        list(client.iter_accounts_since("yesterday"))


def test_vitally_client_is_the_cycles_vitally_port(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    assert isinstance(client, VitallyPort)
    _add_page(rsps, [_account(1, "2024-03-03T00:00:00Z")], None, None, status="activeOrChurned")
    assert [decoded(a)["id"] for a in client.iter_accounts_since("2024-03-01T00:00:00Z")] == ["acc1"]


def test_get_account_returns_the_account(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{ACCOUNTS}/ext%2F7", json=_account(7, "2024-03-03T00:00:00Z"))
    assert client.get_account("ext/7") == _account(7, "2024-03-03T00:00:00Z")
    assert client.requests["GET", "/resources/accounts/:id"] == 1


def test_get_account_returns_none_only_for_404(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{ACCOUNTS}/gone", status=404, json={"statusCode": 404})
    assert client.get_account("gone") is None


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, ContractError), (401, AuthError), (403, AuthError), (418, ContractError)],
)
def test_get_account_never_turns_a_failure_into_none(
    client: VitallyClient, rsps: responses.RequestsMock, status: int, error: type[SyncError]
) -> None:
    rsps.add(responses.GET, f"{ACCOUNTS}/x", status=status, body="<html>oops</html>")
    with pytest.raises(error):
        client.get_account("x")


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 500}, id="500"),
        pytest.param({"status": 503}, id="503"),
        pytest.param({"status": 502, "body": "<html>bad gateway</html>"}, id="502-html"),
        pytest.param({"body": requests.exceptions.ReadTimeout("read timed out")}, id="timeout"),
        pytest.param({"body": requests.exceptions.ConnectionError("connection reset by peer")}, id="reset"),
        pytest.param({"body": requests.exceptions.ChunkedEncodingError("cut")}, id="cut-body"),
    ],
)
def test_request_retries_transient_failures_then_succeeds(
    client: VitallyClient, rsps: responses.RequestsMock, sleeps: list[float], failure: dict[str, Any]
) -> None:
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", **failure)
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", json={"id": "a1"})
    assert client.get_account("a1") == {"id": "a1"}
    assert len(rsps.calls) == 2
    assert client.requests["GET", "/resources/accounts/:id"] == 2
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 2


def test_request_gives_up_after_max_attempts(rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    client = VitallyClient(VitallySettings(base_url=BASE, api_key=KEY, max_attempts=3), sleep=sleeps.append)
    for _ in range(3):
        rsps.add(responses.GET, f"{ACCOUNTS}/a1", status=503)
    with pytest.raises(RetriableError) as caught:
        client.get_account("a1")
    assert caught.value.status == 503
    assert len(rsps.calls) == 3 and len(sleeps) == 2


def test_request_unreachable_after_network_failures(rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    client = VitallyClient(VitallySettings(base_url=BASE, api_key=KEY, max_attempts=2), sleep=sleeps.append)
    for _ in range(2):
        rsps.add(responses.GET, f"{ACCOUNTS}/a1", body=requests.exceptions.ConnectTimeout("no route"))
    with pytest.raises(UnreachableError):
        client.get_account("a1")


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, ContractError), (401, AuthError), (403, AuthError), (422, ContractError)],
)
def test_request_does_not_retry_client_errors(
    client: VitallyClient,
    rsps: responses.RequestsMock,
    sleeps: list[float],
    status: int,
    error: type[SyncError],
) -> None:
    rsps.add(responses.GET, ACCOUNTS, status=status, json={"statusCode": status, "message": "no"})
    with pytest.raises(error):
        list(client.iter_accounts())
    assert len(rsps.calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        pytest.param({"RateLimit-Reset": "7"}, 7.0, id="ratelimit-reset"),
        pytest.param({"RateLimit-Reset": "0.5"}, 0.5, id="fractional"),
        pytest.param({"Retry-After": "3"}, 3.0, id="retry-after-fallback"),
    ],
)
def test_request_waits_rate_limit_reset_on_429(
    client: VitallyClient,
    rsps: responses.RequestsMock,
    sleeps: list[float],
    headers: dict[str, str],
    wait: float,
) -> None:
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", status=429, headers=headers)
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", json={"id": "a1"})
    assert client.get_account("a1") == {"id": "a1"}
    assert sleeps == [wait]


def test_request_backs_off_on_429_without_reset(
    client: VitallyClient, rsps: responses.RequestsMock, sleeps: list[float]
) -> None:
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", status=429, headers={"RateLimit-Reset": "soon"})
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", json={"id": "a1"})
    client.get_account("a1")
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 2


def test_request_exhausted_429_raises_rate_limited(rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    client = VitallyClient(VitallySettings(base_url=BASE, api_key=KEY, max_attempts=2), sleep=sleeps.append)
    for _ in range(2):
        rsps.add(responses.GET, f"{ACCOUNTS}/a1", status=429, headers={"RateLimit-Reset": "12"})
    with pytest.raises(RateLimitedError) as caught:
        client.get_account("a1")
    assert caught.value.wait_seconds == 12
    assert sleeps == [12]


def test_request_keeps_the_latest_rate_limit_headers(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    limits = {"RateLimit-Limit": "1000", "RateLimit-Remaining": "998", "RateLimit-Reset": "41"}
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", json={"id": "a1"}, headers=limits)
    assert (client.rate_limit_limit, client.rate_limit_remaining, client.rate_limit_reset) == (
        None,
        None,
        None,
    )
    client.get_account("a1")
    assert (client.rate_limit_limit, client.rate_limit_remaining, client.rate_limit_reset) == (
        1000,
        998,
        41.0,
    )


def test_request_retries_a_non_json_success_and_never_calls_it_a_contract_error(
    client: VitallyClient, rsps: responses.RequestsMock
) -> None:
    """An HTML page answered with 200 is a proxy's while the service recovers (issue #14): retried
    up to max_attempts, then a transient failure (the write stays pending), never a parked one."""
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", body="<html>login</html>", status=200)
    with pytest.raises(RetriableError) as caught:
        client.get_account("a1")
    assert not isinstance(caught.value, ContractError)
    assert len(rsps.calls) == client.settings.max_attempts


def test_request_refuses_json_beyond_the_decoding_limits(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    """JSON that cannot be decoded within the limits would come back the same: a contract error."""
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", body="[" * 50 + "]" * 50, status=200)
    with pytest.raises(ContractError):
        client.get_account("a1")
    assert len(rsps.calls) == 1


def test_request_uses_the_configured_timeout(rsps: responses.RequestsMock) -> None:
    client = VitallyClient(VitallySettings(base_url=BASE, api_key=KEY, timeout_seconds=2.5))
    rsps.add(responses.GET, f"{ACCOUNTS}/a1", json={"id": "a1"})
    client.get_account("a1")
    assert request_kwargs(rsps.calls[0].request)["timeout"] == 2.5


# -- writing ---------------------------------------------------------------------------------------


def test_put_traits_sends_traits_and_returns_the_account(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    traits = {"new_owner": "005A", "segment_enterprise": True, "obsolete": None}
    rsps.add(
        responses.PUT,
        f"{ACCOUNTS}/acc1",
        json={"id": "acc1", "traits": {"new_owner": "005A"}},
        match=[matchers.json_params_matcher({"traits": traits})],
    )
    assert client.put_traits("acc1", traits)["id"] == "acc1"
    assert client.requests["PUT", "/resources/accounts/:id"] == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 503}, id="503"),
        pytest.param({"status": 429, "headers": {"RateLimit-Reset": "0"}}, id="429"),
        pytest.param({"body": requests.ConnectTimeout()}, id="never-connected"),
    ],
)
def test_put_traits_is_retried_when_it_surely_did_not_take_effect(
    client: VitallyClient, rsps: responses.RequestsMock, failure: dict[str, Any]
) -> None:
    rsps.add(responses.PUT, f"{ACCOUNTS}/acc1", **failure)
    rsps.add(responses.PUT, f"{ACCOUNTS}/acc1", json={"id": "acc1"})
    assert client.put_traits("acc1", {"a": 1}) == {"id": "acc1"}
    assert len(rsps.calls) == 2


@pytest.mark.parametrize(
    "lost",
    [
        pytest.param(requests.exceptions.ReadTimeout(), id="read-timeout"),
        pytest.param(requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer")), id="reset"),
        pytest.param(requests.exceptions.SSLError("record layer failure"), id="tls"),
        *(pytest.param(status, id=f"gateway-{status}") for status in (502, 504, 520, 524)),
    ],
)
def test_put_traits_whose_answer_was_lost_is_not_sent_again(
    client: VitallyClient, rsps: responses.RequestsMock, lost: Exception | int
) -> None:
    """It may have taken effect (a gateway's 502, 504, 520 or 524 says the origin was reached and
    may have done the work), and a person may have changed the account since: the apply step
    looks before it sends it again (tests/test_lost_answers.py)."""
    if isinstance(lost, int):
        rsps.add(responses.PUT, f"{ACCOUNTS}/acc1", status=lost, body="<html>gateway</html>")
    else:
        rsps.add(responses.PUT, f"{ACCOUNTS}/acc1", body=lost)
    with pytest.raises(UnansweredError, match="may have taken effect"):
        client.put_traits("acc1", {"a": 1})
    assert len(rsps.calls) == 1


def test_a_read_whose_answer_was_lost_is_retried(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{ACCOUNTS}/acc1", body=requests.exceptions.ReadTimeout())
    rsps.add(responses.GET, f"{ACCOUNTS}/acc1", status=504)
    rsps.add(responses.GET, f"{ACCOUNTS}/acc1", json={"id": "acc1"})
    assert client.get_account("acc1") == {"id": "acc1"}


@pytest.mark.parametrize(("status", "code"), [(400, "HTTP_400"), (404, "NOT_FOUND"), (422, "HTTP_422")])
def test_put_traits_rejection_is_a_write_rejected_error(
    client: VitallyClient, rsps: responses.RequestsMock, status: int, code: str
) -> None:
    rsps.add(responses.PUT, f"{ACCOUNTS}/acc1", status=status, json={"message": "trait too long"})
    with pytest.raises(WriteRejectedError) as caught:
        client.put_traits("acc1", {"a": "x" * 10_000})
    assert (caught.value.record_id, caught.value.code) == ("acc1", code)
    assert len(rsps.calls) == 1


def test_upsert_task_posts_with_external_id(client: VitallyClient, rsps: responses.RequestsMock) -> None:
    task = {"accountId": "acc1", "name": "Call them", "externalId": "crm-sync:task:acc1:renewal"}
    rsps.add(
        responses.POST,
        f"{BASE}/resources/tasks",
        json={"id": "t1", **task},
        match=[matchers.json_params_matcher(task)],
    )
    assert client.upsert_task(task)["id"] == "t1"


def test_upsert_task_is_retried_because_external_id_makes_it_an_upsert(
    client: VitallyClient, rsps: responses.RequestsMock
) -> None:
    task = {"accountId": "acc1", "name": "Call", "externalId": "k1"}
    rsps.add(responses.POST, f"{BASE}/resources/tasks", status=503)
    rsps.add(responses.POST, f"{BASE}/resources/tasks", json={"id": "t1"})
    assert client.upsert_task(task) == {"id": "t1"}


@pytest.mark.parametrize("external_id", [None, "", 42])
def test_upsert_task_requires_an_external_id(client: VitallyClient, external_id: object) -> None:
    # No request is registered: a POST would fail the test with a ConnectionError.
    with responses.RequestsMock(assert_all_requests_are_fired=True), pytest.raises(RecordError):
        client.upsert_task({"accountId": "acc1", "name": "Call", "externalId": external_id})


# -- configuration and secrets ---------------------------------------------------------------------


# An empty key is refused where settings are checked: tests/test_config.py.
@pytest.mark.parametrize("page_size", [0, 101])
def test_vitally_client_rejects_a_page_size_vitally_does_not_serve(page_size: int) -> None:
    with pytest.raises(ConfigError):
        VitallyClient(VitallySettings(base_url=BASE, api_key=KEY), page_size=page_size)


def test_vitally_client_repr_hides_the_key() -> None:
    assert KEY not in repr(VitallyClient(VitallySettings(base_url=BASE, api_key=KEY)))


# Printable ASCII (what fits in a Basic-auth header), long enough not to occur in a message by chance.
# The prefix keeps Hypothesis from drawing a "key" that is merely a word of our own messages.
_KEYS = st.text(alphabet=string.ascii_letters + string.digits + "-_.~+/=", min_size=16, max_size=64).map(
    lambda text: f"zq9{text}"
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=_KEYS, status=st.sampled_from([401, 403, 500, 503, 429]))
def test_errors_never_contain_the_key(key: str, status: int) -> None:
    client = VitallyClient(VitallySettings(base_url=BASE, api_key=key, max_attempts=2), sleep=lambda _: None)
    # The server even echoes the key back: we must not repeat what it says on these paths.
    body = json.dumps({"statusCode": status, "message": f"bad key {key}"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, f"{ACCOUNTS}/a1", status=status, body=body)
        mock.add(responses.PUT, f"{ACCOUNTS}/a1", status=status, body=body)
        calls: tuple[Callable[[], object], ...] = (
            lambda: client.get_account("a1"),
            lambda: client.put_traits("a1", {"t": key}),
        )
        for call in calls:
            with pytest.raises(SyncError) as caught:
                call()
            assert key not in str(caught.value)
            assert key not in repr(caught.value)


@settings(max_examples=40, deadline=None)
@given(key=_KEYS)
def test_write_rejections_quote_the_body_without_the_key(key: str) -> None:
    client = VitallyClient(VitallySettings(base_url=BASE, api_key=key), sleep=lambda _: None)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.PUT, f"{ACCOUNTS}/a1", status=400, json={"message": f"invalid trait, key={key}"})
        with pytest.raises(WriteRejectedError) as caught:
            client.put_traits("a1", {"t": 1})
    assert key not in str(caught.value)
    assert "invalid trait" in str(caught.value)


def test_a_rejections_reason_is_read_from_error_as_vitally_words_it() -> None:
    # {"error": "..."}: the body a live Vitally request answers with (the api-evangelist/vitally
    # transcription of the REST API, errors/vitally-problem-types.yml); before, only `message` was
    # read and the reason dropped to "HTTP 400".
    client = VitallyClient(VitallySettings(base_url=BASE, api_key="k"), sleep=lambda _: None)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.PUT, f"{ACCOUNTS}/a1", status=400, json={"error": "assignedToId is not a user"})
        with pytest.raises(WriteRejectedError) as caught:
            client.put_traits("a1", {"t": 1})
    assert "assignedToId is not a user" in str(caught.value)
    # With both, the message is the detail and the error its class (a framework's 400 body).
    both = {"statusCode": 400, "message": "traits.t: not a number", "error": "Bad Request"}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.PUT, f"{ACCOUNTS}/a1", status=400, json=both)
        with pytest.raises(WriteRejectedError) as caught:
            client.put_traits("a1", {"t": 1})
    assert "traits.t: not a number" in str(caught.value)


@settings(max_examples=20, deadline=None)
@given(key=_KEYS)
def test_network_errors_never_contain_the_key(key: str) -> None:
    client = VitallyClient(VitallySettings(base_url=BASE, api_key=key, max_attempts=2), sleep=lambda _: None)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        for _ in range(2):
            mock.add(responses.GET, f"{ACCOUNTS}/a1", body=requests.exceptions.ConnectionError(f"reset {key}"))
        with pytest.raises(UnreachableError) as caught:
            client.get_account("a1")
    assert key not in str(caught.value)
