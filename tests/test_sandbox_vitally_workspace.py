"""The sandbox's Vitally side as a real workspace: owner ids, delayed Playbooks, segment links,
the documented rate-limit header and task shape, churned accounts.

Sources (tests/fixtures/real/SOURCES.md): V-accounts and AB-vitally (owner ids, key roles),
V-playbooks ("Playbooks run roughly every hour"), V-segments (each Playbook and each manual add is
its own link; a hand-applied segment "will not be automatically removed"), V-overview (the
`RateLimit-*` headers), V-tasks (task attributes), W-list (`status`, default active).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import requests
from conftest import T0, VITALLY_KEY, SeedBuilder, plain_http_session, real_fixture

from sandbox.server import Sandbox

OWNERS = {"accountOwnerId": "adm_owner", "csmId": "adm_csm", "accountExecutiveId": "adm_ae"}


def _names(account: dict[str, Any]) -> list[str]:
    return sorted(s["name"] for s in account["segments"])


def _session() -> requests.Session:
    session = plain_http_session()
    session.auth = (VITALLY_KEY, "")
    return session


def _delayed(make_sandbox: Callable[..., Sandbox], seed: SeedBuilder, **settings: Any) -> tuple[Sandbox, str]:
    sb = make_sandbox(seed.build(), now=T0, vitally_playbooks="delayed", vitally_segment_links=True, **settings)
    return sb, f"{sb.url}/resources/accounts"


# ------------------------------------------------------------------------ accounts


def test_owner_ids_are_kept_and_only_account_owner_can_be_cleared(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    seed.account(0).update(OWNERS)
    seed.account(1)
    sb = make_sandbox(seed.build())
    session = _session()
    url = f"{sb.url}/resources/accounts"

    ignored = session.put(f"{url}/acc_0", json={"csmId": None, "accountExecutiveId": "x", "accountOwnerId": "y"})
    cleared = session.put(f"{url}/acc_0", json={"accountOwnerId": None}).json()
    plain = session.get(f"{url}/acc_1").json()

    assert {k: ignored.json()[k] for k in OWNERS} == OWNERS
    assert (cleared["accountOwnerId"], cleared["csmId"], cleared["accountExecutiveId"]) == (None, "adm_csm", "adm_ae")
    assert {k: plain[k] for k in OWNERS} == dict.fromkeys(OWNERS)


def test_the_recorded_accounts_load_and_read_back_unchanged(make_sandbox: Callable[..., Sandbox]) -> None:
    page = real_fixture("vitally_accounts_page.json")
    churned = real_fixture("vitally_accounts_page_activeorchurned_last.json")["results"]
    sb = make_sandbox({"vitally": {"accounts": page["results"] + churned}}, playbooks=[])
    session = _session()

    active = session.get(f"{sb.url}/resources/accounts").json()["results"]
    everything = session.get(f"{sb.url}/resources/accounts", params={"status": "activeOrChurned"}).json()["results"]

    assert active == page["results"]  # newest first, every documented attribute as recorded
    assert [a["id"] for a in everything] == [a["id"] for a in page["results"] + churned]


# ---------------------------------------------------------------------------- Playbooks


def test_delayed_playbooks_answer_the_put_with_the_segments_before(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    seed.account(0)
    sb, url = _delayed(make_sandbox, seed)
    session = _session()

    answer = session.put(f"{url}/acc_0", json={"traits": {"segment_nurture": True}}).json()
    before = session.get(f"{url}/acc_0").json()
    pending = sb.pending_playbooks()
    sb.set_clock(advance_seconds=3599)
    still = session.get(f"{url}/acc_0").json()
    sb.set_clock(advance_seconds=2)
    after = session.get(f"{url}/acc_0").json()

    assert answer["segments"] == [] and before["segments"] == [] and still["segments"] == []
    assert pending == [{"accountId": "acc_0", "due": "2026-11-22T11:00:00.000Z"}]
    assert _names(after) == ["Nurture"]
    assert after["updatedAt"] > answer["updatedAt"]  # an incremental reader sees the Playbook's change
    assert sb.pending_playbooks() == []


def test_playbook_delay_is_configurable_and_runs_can_be_forced(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    seed.accounts(2)
    sb, url = _delayed(make_sandbox, seed, vitally_playbook_delay_s=60)
    session = _session()
    session.put(f"{url}/acc_0", json={"traits": {"segment_onboarding": True}})
    session.put(f"{url}/acc_1", json={"traits": {"segment_onboarding": True}})

    sb.set_clock(advance_seconds=61)
    due = plain_http_session().post(f"{sb.url}/_sandbox/playbooks", json={"run": "due"}).json()
    session.put(f"{url}/acc_0", json={"traits": {"segment_onboarding": False}})
    forced = plain_http_session().post(f"{sb.url}/_sandbox/playbooks", json={"run": "all"}).json()

    assert due == {"ran": 2} and forced == {"ran": 1}
    assert _names(session.get(f"{url}/acc_0").json()) == []
    assert _names(session.get(f"{url}/acc_1").json()) == ["Onboarding"]


def test_a_segment_a_person_added_is_never_removed_by_a_playbook(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    seed.account(0, segments=["Nurture"])  # added by hand, its Playbook trait is not set
    seed.account(1)
    sb, url = _delayed(make_sandbox, seed)
    session = _session()

    session.put(f"{url}/acc_1", json={"traits": {"segment_nurture": True}})
    sb.run_playbooks(everything=True)
    sb.set_segment("acc_1", "Nurture")  # a person adds it too
    session.put(f"{url}/acc_0", json={"traits": {"segment_nurture": False}})
    session.put(f"{url}/acc_1", json={"traits": {"segment_nurture": False}})
    sb.run_playbooks(everything=True)

    assert _names(session.get(f"{url}/acc_0").json()) == ["Nurture"]
    assert _names(session.get(f"{url}/acc_1").json()) == ["Nurture"]
    sb.set_segment("acc_1", "Nurture", present=False)
    assert _names(session.get(f"{url}/acc_1").json()) == []


def test_the_playbooks_own_link_goes_when_its_trait_does(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    seed.account(0, traits={"segment_nurture": True})
    sb, url = _delayed(make_sandbox, seed)
    session = _session()

    seeded = session.get(f"{url}/acc_0").json()  # a seed is settled: its Playbooks have run
    session.put(f"{url}/acc_0", json={"traits": {"segment_nurture": False}})
    sb.run_playbooks(everything=True)

    assert _names(seeded) == ["Nurture"]
    assert _names(session.get(f"{url}/acc_0").json()) == []


def test_a_segment_a_person_removes_stays_removed_while_its_playbook_still_matches(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    """ "If a Playbook added Account A to Segment B, and a person removes it, the Playbook that
    originally added the account to the segment will not add it back" (docs.vitally.io,
    Segmentation, "Manually Assign Segments"). Before, the sandbox kept a Playbook's segment a
    person removed, or put it back at the next run."""
    seed.account(0, traits={"segment_nurture": True})  # a settled seed: its Playbook added Nurture
    for links in (True, False):
        sb = make_sandbox(seed.build(), now=T0, vitally_playbooks="delayed", vitally_segment_links=links)
        url = f"{sb.url}/resources/accounts"
        session = _session()
        assert _names(session.get(f"{url}/acc_0").json()) == ["Nurture"]

        sb.set_segment("acc_0", "Nurture", present=False)
        session.put(f"{url}/acc_0", json={"traits": {"segment_nurture": True, "other": 1}})  # a Playbook run is due
        sb.run_playbooks(everything=True)
        assert _names(session.get(f"{url}/acc_0").json()) == [], links
        # Across the state round trip, with links or without (`segments_removed`).
        state = sb.state()["vitally"]
        assert state["segments_removed"] == [{"accountId": "acc_0", "segment": "Nurture"}]
        copy = make_sandbox({"vitally": state}, now=T0, vitally_playbooks="delayed", vitally_segment_links=links)
        _session().put(f"{copy.url}/resources/accounts/acc_0", json={"traits": {"other": 2}})
        copy.run_playbooks(everything=True)
        assert _names(_session().get(f"{copy.url}/resources/accounts/acc_0").json()) == [], links

        # It leaves the Playbook's match, then matches again: the Playbook adds it again.
        session.put(f"{url}/acc_0", json={"traits": {"segment_nurture": False}})
        sb.run_playbooks(everything=True)
        session.put(f"{url}/acc_0", json={"traits": {"segment_nurture": True}})
        sb.run_playbooks(everything=True)
        assert _names(session.get(f"{url}/acc_0").json()) == ["Nurture"], links


def test_segment_links_survive_the_state_round_trip(make_sandbox: Callable[..., Sandbox], seed: SeedBuilder) -> None:
    seed.account(0, segments=["AM referral"], traits={"segment_nurture": True})
    sb, _ = _delayed(make_sandbox, seed)

    state = sb.state()
    copy = make_sandbox({"vitally": state["vitally"]}, vitally_segment_links=True)

    assert sorted((x["segment"], x["addedBy"]) for x in state["vitally"]["segment_links"]) == [
        ("AM referral", "person"),
        ("Nurture", "playbook"),
    ]
    assert copy.state()["vitally"]["segment_links"] == state["vitally"]["segment_links"]


def test_by_default_playbooks_run_after_the_put_and_inside_it_only_when_pinned(
    sandbox: Sandbox, make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    answer = _session().put(f"{sandbox.url}/resources/accounts/acc_0", json={"traits": {"segment_nurture": True}})
    seed.account(0)
    legacy = make_sandbox(seed.build(), vitally_playbooks="in_put")  # the legacy shape, pinned
    inside = _session().put(f"{legacy.url}/resources/accounts/acc_0", json={"traits": {"segment_nurture": True}})

    assert _names(answer.json()) == [] and [p["accountId"] for p in sandbox.pending_playbooks()] == ["acc_0"]
    assert _names(inside.json()) == ["Nurture"]


def test_without_segment_links_a_playbook_removes_a_hand_set_segment(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    seed.account(0, segments=["Nurture"], traits={"segment_nurture": True})
    sb = make_sandbox(seed.build(), vitally_segment_links=False)
    session = _session()

    session.put(f"{sb.url}/resources/accounts/acc_0", json={"traits": {"segment_nurture": False}}).raise_for_status()
    sb.run_playbooks(everything=True)  # Playbooks run after the PUT (the default, as in Vitally)

    assert _names(session.get(f"{sb.url}/resources/accounts/acc_0").json()) == []
    assert "segment_links" not in sb.state()["vitally"]


# ------------------------------------------------------------------ headers and tasks


def test_rate_limit_headers_have_the_documented_format(make_sandbox: Callable[..., Sandbox]) -> None:
    recorded = real_fixture("vitally_ratelimit_headers.json")
    limited = real_fixture("vitally_429_headers.json")
    sb = make_sandbox(None, vitally_rate_limit=1000, vitally_rate_window_s=60)
    session = _session()

    ok = session.get(f"{sb.url}/resources/accounts")
    sb.add_fault("status", path_prefix="/resources/", status=429, reset_seconds=37)
    refused = session.get(f"{sb.url}/resources/accounts")

    assert {k: ok.headers[k] for k in recorded if k != "RateLimit-Reset"} == {
        "RateLimit-Limit": "1000, 1000;window=60",
        "RateLimit-Remaining": "999",
    }
    # The docs' example reads 59 one instant after the first request; ours rounds up (60), so a
    # client that waits what it is told never comes back a fraction of a second too early.
    assert ok.headers["RateLimit-Reset"] in ("59", "60")
    assert set(ok.headers) >= set(recorded)
    assert {k: refused.headers[k] for k in limited} == limited


def test_tasks_carry_the_documented_attributes(sandbox: Sandbox) -> None:
    request = {**real_fixture("vitally_task_upsert_request.json"), "accountId": "acc_0", "type": "call"}
    recorded = real_fixture("vitally_task.json")

    task = _session().post(f"{sandbox.url}/resources/tasks", json=request).json()

    assert set(task) == set(recorded)
    assert {k: task[k] for k in ("name", "description", "dueDate", "tags", "externalId", "assignedToId")} == {
        k: request[k] for k in ("name", "description", "dueDate", "tags", "externalId", "assignedToId")
    }
    assert (task["projects"], task["traits"], task["archivedAt"], task["completedById"]) == ([], {}, None, None)


def test_churned_accounts_leave_default_reads_and_stay_readable(
    make_sandbox: Callable[..., Sandbox], seed: SeedBuilder
) -> None:
    seed.accounts(2)
    seed.account(2, churned=True, updated_at=T0 + timedelta(minutes=1))
    sb = make_sandbox(seed.build())
    session = _session()

    default = [a["id"] for a in session.get(f"{sb.url}/resources/accounts").json()["results"]]
    churned = [a["id"] for a in session.get(f"{sb.url}/resources/accounts", params={"status": "churned"}).json()[
        "results"
    ]]  # fmt: skip
    by_id = session.get(f"{sb.url}/resources/accounts/acc_2")

    assert default == ["acc_0", "acc_1"] and churned == ["acc_2"]
    assert by_id.status_code == 200 and by_id.json()["churnedAt"] is not None
