"""The sandbox's Vitally side, driven over HTTP with requests as the connector does."""

from __future__ import annotations

import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import requests
from conftest import T0, VITALLY_KEY, SeedBuilder, plain_http_session

from sandbox.server import Sandbox


def _pages(session: requests.Session, url: str, **params: Any) -> list[dict[str, Any]]:
    pages = []
    cursor = None
    while True:
        query = dict(params, **({"from": cursor} if cursor else {}))
        response = session.get(url, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        cursor = page["next"]
        if cursor is None:
            return pages


def _ids(page: dict[str, Any]) -> list[str]:
    return [r["id"] for r in page["results"]]


# ----------------------------------------------------------------------------- listing


def test_accounts_paging_walks_1050_accounts_in_11_pages_newest_first(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder, vitally: requests.Session
) -> None:
    seed.accounts(1040)
    # Ten accounts share one updatedAt: the cursor must break ties, not skip or repeat them.
    for i in range(1040, 1050):
        seed.account(i, updated_at=T0 - timedelta(minutes=500))
    sb = make_sandbox(seed.build())

    pages = _pages(vitally, f"{sb.url}/resources/accounts", limit=100)

    ids = [i for p in pages for i in _ids(p)]
    assert len(pages) == 11
    assert len(ids) == 1050 and len(set(ids)) == 1050
    stamps = [r["updatedAt"] for p in pages for r in p["results"]]
    assert stamps == sorted(stamps, reverse=True)
    assert ids[0] == "acc_0"


def test_accounts_default_limit_is_100_and_over_100_is_400(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder, vitally: requests.Session
) -> None:
    sb = make_sandbox(seed.accounts(150).build())

    assert len(vitally.get(f"{sb.url}/resources/accounts").json()["results"]) == 100
    response = vitally.get(f"{sb.url}/resources/accounts", params={"limit": 101})
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


def test_accounts_cursor_is_a_keyset_position_not_an_offset(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder, vitally: requests.Session
) -> None:
    sb = make_sandbox(seed.accounts(30).build())
    url = f"{sb.url}/resources/accounts"
    first = vitally.get(url, params={"limit": 10}).json()
    # acc_25 moves to the front of the order between two page reads.
    vitally.put(f"{url}/acc_25", json={"traits": {"x": 1}}).raise_for_status()

    second = vitally.get(url, params={"limit": 10, "from": first["next"]}).json()

    assert _ids(second) == [f"acc_{i}" for i in range(10, 20)]
    assert not first["next"].isdigit()
    decoded = base64.urlsafe_b64decode(first["next"] + "==")
    assert b"acc_9" in decoded


def test_accounts_status_filters_churned_accounts(sandbox: Sandbox, vitally: requests.Session) -> None:
    url = f"{sandbox.url}/resources/accounts"

    def ids(status: str | None) -> set[str]:
        return set(_ids(vitally.get(url, params={"status": status} if status else {}).json()))

    assert ids(None) == {"acc_0", "acc_1", "acc_2", "acc_4"}
    assert ids("active") == ids(None)
    assert ids("churned") == {"acc_3"}
    assert ids("activeOrChurned") == {f"acc_{i}" for i in range(5)}
    assert vitally.get(url, params={"status": "gone"}).status_code == 400


def test_accounts_sort_by_created_at_is_descending(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder, vitally: requests.Session
) -> None:
    seed.accounts(5)
    seed.accounts_[4]["createdAt"] = T0.isoformat()  # newest creation, oldest update
    sb = make_sandbox(seed.build())

    page = vitally.get(f"{sb.url}/resources/accounts", params={"sortBy": "createdAt"}).json()

    assert _ids(page)[0] == "acc_4"
    created = [r["createdAt"] for r in page["results"]]
    assert created == sorted(created, reverse=True)


def test_users_list_and_account_users(sandbox: Sandbox, vitally: requests.Session) -> None:
    everyone = vitally.get(f"{sandbox.url}/resources/users").json()
    members = vitally.get(f"{sandbox.url}/resources/accounts/org_0/users").json()

    assert {u["id"] for u in everyone["results"]} == {"usr_0", "usr_1", "usr_2"}
    assert {u["id"] for u in members["results"]} == {"usr_0", "usr_1"}
    assert members["next"] is None


# ---------------------------------------------------------------------------- accounts


def test_account_get_by_id_or_external_id_and_404(sandbox: Sandbox, vitally: requests.Session) -> None:
    by_id = vitally.get(f"{sandbox.url}/resources/accounts/acc_1")
    by_external = vitally.get(f"{sandbox.url}/resources/accounts/org_1")
    missing = vitally.get(f"{sandbox.url}/resources/accounts/nope")

    assert by_id.json() == by_external.json()
    assert by_id.json()["externalId"] == "org_1"
    assert missing.status_code == 404
    assert missing.json() == {"statusCode": 404, "message": "Account not found"}


def test_account_put_merges_traits_and_null_deletes(sandbox: Sandbox, vitally: requests.Session) -> None:
    url = f"{sandbox.url}/resources/accounts/acc_0"
    vitally.put(url, json={"traits": {"a": 1, "b": 2}}).raise_for_status()

    response = vitally.put(url, json={"traits": {"b": None, "c": {"deep": True}}})

    assert response.status_code == 200
    assert response.json()["traits"] == {"a": 1, "c": {"deep": True}}
    assert vitally.get(url).json()["traits"] == {"a": 1, "c": {"deep": True}}


def test_answers_are_written_as_the_services_write_json(sandbox: Sandbox, vitally: requests.Session) -> None:
    """Text as UTF-8, not `\\u` escapes, as JSON APIs write it (JavaScript's `JSON.stringify`
    among them); a lone surrogate, which UTF-8 cannot carry, escaped as `JSON.stringify` escapes
    it. Either way the value read back is the value written."""
    url = f"{sandbox.url}/resources/accounts/acc_0"
    vitally.put(url, json={"traits": {"city": "Zürich 東京 😀"}}).raise_for_status()
    plain = vitally.get(url)
    assert "Zürich 東京 😀".encode() in plain.content and b"\\u" not in plain.content
    assert plain.json()["traits"]["city"] == "Zürich 東京 😀"

    vitally.put(url, json={"traits": {"odd": "a\ud800b"}}).raise_for_status()
    odd = vitally.get(url)
    assert b'"a\\ud800b"' in odd.content
    assert odd.json()["traits"] == {"city": "Zürich 東京 😀", "odd": "a\ud800b"}


def test_account_put_bumps_updated_at_strictly_within_one_millisecond(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder, vitally: requests.Session
) -> None:
    sb = make_sandbox(seed.accounts(2).build(), now=T0 + timedelta(days=1))  # frozen clock
    url = f"{sb.url}/resources/accounts"

    first = vitally.put(f"{url}/acc_0", json={"traits": {"n": 1}}).json()["updatedAt"]
    second = vitally.put(f"{url}/acc_1", json={"traits": {"n": 1}}).json()["updatedAt"]

    assert first == "2026-11-23T10:00:00.000Z"
    assert second > first


def test_account_put_ignores_segments_and_owner(sandbox: Sandbox, vitally: requests.Session) -> None:
    url = f"{sandbox.url}/resources/accounts/acc_0"

    body = vitally.put(url, json={"segments": [{"id": "s", "name": "Hacked"}], "accountOwnerId": "adm_1"}).json()

    assert body["segments"] == []
    assert body["accountOwnerId"] is None


def test_playbook_segment_follows_its_trait_both_ways(sandbox: Sandbox, vitally: requests.Session) -> None:
    url = f"{sandbox.url}/resources/accounts/acc_4"

    # Playbooks run after the PUT, as Vitally's do (about hourly): each state is read once they ran.
    vitally.put(url, json={"traits": {"segment_nurture": True}}).raise_for_status()
    sandbox.run_playbooks(everything=True)
    added = vitally.get(url).json()
    vitally.put(url, json={"traits": {"segment_nurture": False}}).raise_for_status()
    sandbox.run_playbooks(everything=True)
    removed = vitally.get(url).json()

    assert {s["name"] for s in added["segments"]} == {"AM referral", "Nurture"}
    assert {"id": "seg_nurture", "name": "Nurture"} in added["segments"]
    assert [s["name"] for s in removed["segments"]] == ["AM referral"]


def test_playbooks_run_on_the_seed_and_are_configurable(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder, vitally: requests.Session
) -> None:
    seed.account(0, traits={"segment_onboarding": True, "vip": True})
    seed.account(1, traits={"segment_onboarding": "yes"}, segments=["Onboarding"])
    sb = make_sandbox(seed.build(), playbooks=[["VIP", "vip"]])

    first = vitally.get(f"{sb.url}/resources/accounts/acc_0").json()
    second = vitally.get(f"{sb.url}/resources/accounts/acc_1").json()

    # Onboarding is not a managed segment under this config, so its hand-set membership stays.
    assert [s["name"] for s in first["segments"]] == ["VIP"]
    assert [s["name"] for s in second["segments"]] == ["Onboarding"]


# ------------------------------------------------------------------------ tasks, notes


def test_tasks_upsert_on_external_id(sandbox: Sandbox, vitally: requests.Session) -> None:
    url = f"{sandbox.url}/resources/tasks"
    task = {
        "accountId": "acc_0",
        "name": "Circle back",
        "description": "d",
        "dueDate": "2026-12-01",
        "assignedToId": "adm_1",
        "externalId": "circle:acc_0:2026-11",
        "tags": ["crm-sync"],
    }

    created = vitally.post(url, json=task).json()
    updated = vitally.post(url, json={**task, "name": "Circle back (again)"}).json()
    listed = vitally.get(url).json()["results"]

    assert updated["id"] == created["id"]
    assert [t["name"] for t in listed] == ["Circle back (again)"]
    assert listed[0]["tags"] == ["crm-sync"]


def test_tasks_refuse_unknown_account_and_missing_name(sandbox: Sandbox, vitally: requests.Session) -> None:
    url = f"{sandbox.url}/resources/tasks"

    assert vitally.post(url, json={"accountId": "nope", "name": "x"}).status_code == 404
    assert vitally.post(url, json={"accountId": "acc_0"}).status_code == 400
    assert vitally.post(url, json={"name": "x"}).status_code == 400


def test_notes_upsert_on_external_id(sandbox: Sandbox, vitally: requests.Session) -> None:
    url = f"{sandbox.url}/resources/notes"
    note = {"accountId": "org_1", "note": "<p>hi</p>", "noteDate": "2026-11-22", "externalId": "n1"}

    vitally.post(url, json=note).raise_for_status()
    vitally.post(url, json={**note, "note": "<p>bye</p>"}).raise_for_status()
    listed = vitally.get(url).json()["results"]

    assert [(n["accountId"], n["note"]) for n in listed] == [("acc_1", "<p>bye</p>")]


# ------------------------------------------------------------------ auth, rate limit


def test_auth_missing_or_wrong_key_is_401(make_sandbox: Callable[..., Sandbox]) -> None:
    open_sb = make_sandbox(None)
    strict = make_sandbox(None, vitally_api_key="sk_right")
    anonymous = plain_http_session()

    missing = anonymous.get(f"{open_sb.url}/resources/accounts")
    wrong = anonymous.get(f"{strict.url}/resources/accounts", auth=("sk_wrong", ""))
    right = anonymous.get(f"{strict.url}/resources/accounts", auth=("sk_right", ""))
    any_key = anonymous.get(f"{open_sb.url}/resources/accounts", auth=("anything", ""))

    assert missing.status_code == wrong.status_code == 401
    assert wrong.json() == {"statusCode": 401, "message": "Unauthorized"}
    assert right.status_code == any_key.status_code == 200


def test_rate_limit_is_a_sliding_window_reported_in_headers(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(None, vitally_rate_limit=3, vitally_rate_window_s=30)
    session = plain_http_session()
    url = f"{sb.url}/resources/accounts"

    answers = [session.get(url, auth=(VITALLY_KEY, "")) for _ in range(4)]
    other_key = session.get(url, auth=("another-key", ""))

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    # Vitally's own format (V-overview; fixture vitally_ratelimit_headers.json): limit, limit;window.
    assert all(a.headers["RateLimit-Limit"] == "3, 3;window=30" for a in answers)
    assert 1 <= int(answers[3].headers["RateLimit-Reset"]) <= 30
    assert answers[3].json()["statusCode"] == 429
    assert other_key.status_code == 200


def test_concurrent_writes_get_distinct_increasing_stamps(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    sb = make_sandbox(seed.accounts(8).build(), now=T0)  # frozen clock: every write in one millisecond

    def write(i: int) -> list[str]:
        session = plain_http_session()
        url = f"{sb.url}/resources/accounts/acc_{i}"
        return [
            session.put(url, json={"traits": {"n": n}}, auth=(VITALLY_KEY, "")).json()["updatedAt"] for n in range(10)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        per_thread = list(pool.map(write, range(8)))

    stamps = [s for thread in per_thread for s in thread]
    assert len(set(stamps)) == 80
    assert all(thread == sorted(thread) for thread in per_thread)
    assert [a["traits"]["n"] for a in sb.state()["vitally"]["accounts"]] == [9] * 8
