"""Contract tests: Vitally payloads shaped like the documented examples and like what other public
connectors record, run through `VitallyClient` and the record parser with `responses`.

Every fixture lives in `tests/fixtures/real/`; each test names its fixtures and their sources (the
keys are those of `tests/fixtures/real/SOURCES.md`). Nobody here invented these shapes.

Where today's product is wrong, the test states the correct expectation and is marked
`xfail(strict=True, reason="issue #14: ...")`: it fails loudly once the product is fixed, and the
mark must then go. `vitally_playbook_webhook.json` has no counterpart in the product yet (issue
#17) and is not run here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import responses
from conftest import real_fixture
from responses import matchers
from support import all_decoded

from connectors.vitally import VitallyClient, VitallySettings
from core.errors import RateLimitedError
from core.model import Account
from core.records import parse_account
from rules.context import EMPTY
from rules.guards import routing_guard
from rules.policy import Policy

BASE = "https://example.rest.vitally.io"
ACCOUNTS = f"{BASE}/resources/accounts"
KEY = "sk_live_contract"
NOW = datetime(2026, 2, 27, 12, 0, tzinfo=UTC)
OWNED_ID = "00000000-0000-4000-8000-00000000a001"


@pytest.fixture
def client(sleeps: list[float]) -> VitallyClient:
    return VitallyClient(VitallySettings(base_url=BASE, api_key=KEY), sleep=sleeps.append)


def _headers() -> dict[str, str]:
    headers: dict[str, str] = real_fixture("vitally_ratelimit_headers.json")
    return headers


def _unowned_by_key_role(raw: dict[str, Any]) -> Account:
    """The recorded owned account with its key roles taken away: owned only through Vitally's
    owner attributes, as V-accounts allows (accountOwnerId, csmId, accountExecutiveId)."""
    return parse_account({**raw, "keyRoles": []})


# ---------------------------------------------------------------------------- accounts


def test_accounts_pages_parse_into_accounts(rsps: responses.RequestsMock, client: VitallyClient) -> None:
    """vitally_accounts_page.json, vitally_accounts_page_activeorchurned_last.json (V-accounts,
    V-overview, AB-vitally, W-list) with vitally_ratelimit_headers.json (V-overview)."""
    first = real_fixture("vitally_accounts_page.json")
    last = real_fixture("vitally_accounts_page_activeorchurned_last.json")
    query = {"limit": "100", "sortBy": "updatedAt", "status": "activeOrChurned"}
    rsps.add(responses.GET, ACCOUNTS, json=first, headers=_headers(), match=[matchers.query_param_matcher(query)])
    rsps.add(
        responses.GET,
        ACCOUNTS,
        json=last,
        headers=_headers(),
        match=[matchers.query_param_matcher({**query, "from": first["next"]})],
    )

    raw = all_decoded(client.iter_accounts(status="activeOrChurned"))
    accounts = [parse_account(item) for item in raw]

    assert [a.id for a in accounts] == [r["id"] for r in first["results"] + last["results"]]
    owned = accounts[0]
    assert (owned.name, owned.external_id, owned.mrr) == ("Example Analytics Inc", "example-org-1001", 4850.0)
    assert (owned.country, owned.employee_count, owned.paid_products) == (
        "US",
        240,
        ("product_analytics", "session_replay"),
    )
    assert owned.segments == frozenset({"TAM/CSM Candidate", "AM referral"})
    assert owned.key_roles == {
        "Customer Success Manager": "00000000-0000-4000-8000-0000000ad002",
        "Account Executive": "00000000-0000-4000-8000-0000000ad003",
    }
    assert owned.key_role_emails["Account Executive"] == "avery@vendor.example"
    assert accounts[1].key_roles == {} and accounts[1].mrr == 0.0
    assert accounts[2].country == "GB"


def test_rate_limit_headers_in_vitallys_format_are_read(rsps: responses.RequestsMock, client: VitallyClient) -> None:
    """vitally_ratelimit_headers.json (V-overview, verbatim: `RateLimit-Limit: 1000, 1000;window=60`)."""
    owned = real_fixture("vitally_account_owned.json")
    rsps.add(responses.GET, f"{ACCOUNTS}/{OWNED_ID}", json=owned, headers=_headers())

    client.get_account(OWNED_ID)

    assert (client.rate_limit_limit, client.rate_limit_remaining, client.rate_limit_reset) == (1000, 999, 59.0)


def test_an_account_owned_by_a_key_role_is_not_routed() -> None:
    """vitally_account_owned.json (V-accounts, AB-vitally; V-keyroles for the default labels):
    its "Account Executive" key role is one of the policy's owner roles."""
    account = parse_account(real_fixture("vitally_account_owned.json"))

    assert routing_guard(account, EMPTY, Policy(), NOW) is not None


@pytest.mark.parametrize("owner_field", ["accountOwnerId", "csmId", "accountExecutiveId"])
def test_an_account_owned_through_vitallys_owner_fields_is_not_routed(owner_field: str) -> None:
    """vitally_account_owned.json (V-accounts: accountOwnerId, csmId and accountExecutiveId are
    Vitally user ids; AB-vitally accounts.json): owned through one owner attribute alone."""
    raw = real_fixture("vitally_account_owned.json")
    only = {**raw, "accountOwnerId": None, "csmId": None, "accountExecutiveId": None, owner_field: raw[owner_field]}

    account = _unowned_by_key_role(only)

    assert routing_guard(account, EMPTY, Policy(), NOW) is not None


def test_an_account_with_vitallys_default_csm_key_role_is_not_routed() -> None:
    """vitally_account_owned.json (V-keyroles: the default roles are "Customer Success Manager" and
    "Account Executive"), keeping only its CSM key role and no owner attribute."""
    raw = real_fixture("vitally_account_owned.json")
    csm_only = [r for r in raw["keyRoles"] if r["keyRole"]["label"] == "Customer Success Manager"]
    bare = {**raw, "keyRoles": csm_only, "accountOwnerId": None, "csmId": None, "accountExecutiveId": None}

    assert routing_guard(parse_account(bare), EMPTY, Policy(), NOW) is not None


# ------------------------------------------------------------------------------- churn


def test_incremental_reads_include_churned_accounts(rsps: responses.RequestsMock, client: VitallyClient) -> None:
    """vitally_accounts_page_activeorchurned_last.json (W-list: `status` defaults to active, so a
    churned account drops out of default reads; AB-vitally sends activeOrChurned)."""
    page = real_fixture("vitally_accounts_page_activeorchurned_last.json")
    rsps.add(
        responses.GET,
        ACCOUNTS,
        json=page,
        headers=_headers(),
        match=[matchers.query_param_matcher({"status": "activeOrChurned"}, strict_match=False)],
    )

    # The cycle's incremental read (sync/ingest.py) is `iter_accounts_since`.
    assert [a["id"] for a in all_decoded(client.iter_accounts_since(None))] == [page["results"][0]["id"]]


def test_a_churned_account_is_not_routed() -> None:
    """vitally_accounts_page_activeorchurned_last.json (V-accounts: churnedAt), without its owner."""
    raw = real_fixture("vitally_accounts_page_activeorchurned_last.json")["results"][0]

    account = parse_account({**raw, "accountOwnerId": None})

    assert routing_guard(account, EMPTY, Policy(), NOW) is not None


# ------------------------------------------------------------------------------ writes


def test_put_traits_sends_the_documented_body(rsps: responses.RequestsMock, client: VitallyClient) -> None:
    """vitally_account_put_traits_request.json (V-accounts, W-put: traits merged, null removes) and
    vitally_account_owned.json as the answer."""
    body = real_fixture("vitally_account_put_traits_request.json")
    answer = real_fixture("vitally_account_owned.json")
    rsps.add(
        responses.PUT,
        f"{ACCOUNTS}/{OWNED_ID}",
        json=answer,
        headers=_headers(),
        match=[matchers.json_params_matcher(body)],
    )

    assert client.put_traits(OWNED_ID, body["traits"]) == answer


def test_task_upsert_sends_the_documented_request_and_reads_the_task(
    rsps: responses.RequestsMock, client: VitallyClient
) -> None:
    """vitally_task_upsert_request.json and vitally_task.json (V-tasks example request and
    response, W-task: unique on externalId)."""
    request = real_fixture("vitally_task_upsert_request.json")
    task = real_fixture("vitally_task.json")
    rsps.add(
        responses.POST,
        f"{BASE}/resources/tasks",
        json=task,
        headers=_headers(),
        match=[matchers.json_params_matcher(request)],
    )

    assert client.upsert_task(request) == task


def test_account_tasks_page(rsps: responses.RequestsMock, client: VitallyClient) -> None:
    """vitally_task.json (V-tasks object) in the page envelope of vitally_users_page.json (V-users,
    V-overview: `results`, `next: null` on the last page): the tasks of one account, as the
    people-win check reads them (`GET /resources/accounts/:id/tasks`, sync/freshness.py)."""
    task = real_fixture("vitally_task.json")
    page = {**real_fixture("vitally_users_page.json"), "results": [task]}
    rsps.add(responses.GET, f"{ACCOUNTS}/{OWNED_ID}/tasks", json=page, headers=_headers())

    tasks = all_decoded(client.iter_account_tasks(OWNED_ID))

    assert tasks == [task]


# ---------------------------------------------------------------------------- failures


def test_429_waits_the_documented_reset_then_retries(
    rsps: responses.RequestsMock, client: VitallyClient, sleeps: list[float]
) -> None:
    """vitally_429_headers.json (V-overview: the same three headers on a 429; no body documented)."""
    url = f"{ACCOUNTS}/{OWNED_ID}"
    rsps.add(responses.GET, url, status=429, body="", headers=real_fixture("vitally_429_headers.json"))
    rsps.add(responses.GET, url, json=real_fixture("vitally_account_owned.json"), headers=_headers())

    account = client.get_account(OWNED_ID)

    assert account is not None and account["id"] == OWNED_ID
    # The retry waits the documented reset; the shared rate limiter, whose clock a fake sleep
    # does not move, may then hold the request for what it believes is left of it.
    assert sleeps[0] == 37.0 and all(wait <= 37.0 for wait in sleeps)


def test_429_alone_is_a_rate_limit_error_with_the_documented_wait(
    rsps: responses.RequestsMock, sleeps: list[float]
) -> None:
    """vitally_429_headers.json (V-overview)."""
    client = VitallyClient(VitallySettings(base_url=BASE, api_key=KEY, max_attempts=1), sleep=sleeps.append)
    rsps.add(responses.GET, f"{ACCOUNTS}/{OWNED_ID}", status=429, headers=real_fixture("vitally_429_headers.json"))

    with pytest.raises(RateLimitedError) as caught:
        client.get_account(OWNED_ID)

    assert caught.value.wait_seconds == 37.0
    assert client.rate_limit_limit == 1000 and client.rate_limit_remaining == 0


def test_an_html_maintenance_page_on_a_5xx_is_retried(rsps: responses.RequestsMock, client: VitallyClient) -> None:
    """A maintenance page (our wording: no source records Vitally's) on 503, then
    vitally_account_owned.json."""
    url = f"{ACCOUNTS}/{OWNED_ID}"
    rsps.add(responses.GET, url, status=503, body="<html><body>Down for maintenance</body></html>",
             content_type="text/html")  # fmt: skip
    rsps.add(responses.GET, url, json=real_fixture("vitally_account_owned.json"), headers=_headers())

    assert client.get_account(OWNED_ID) is not None


def test_an_html_page_with_status_200_is_retried(rsps: responses.RequestsMock, client: VitallyClient) -> None:
    """An HTML page answered with 200 (a proxy's; Airbyte's connectors retry a body that is not
    JSON: AB-sf-retry), then vitally_account_owned.json."""
    url = f"{ACCOUNTS}/{OWNED_ID}"
    rsps.add(responses.GET, url, status=200, body="<html><body>Please wait…</body></html>", content_type="text/html")
    rsps.add(responses.GET, url, json=real_fixture("vitally_account_owned.json"), headers=_headers())

    assert client.get_account(OWNED_ID) is not None
