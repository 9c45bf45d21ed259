"""Big Fish is a company's first signup (lead-routing-and-scoring.md: "First signup from a company
with 1000+ employees ('Big Fish')"): `sync.signups` finds each company's first account in the
mirror by its domain trait, and a later account of the same company is no Big Fish lead (found by a
handbook audit: two orgs of one company, created 12 and 2 days ago, each became a TAE lead)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from support import (
    SANDBOX_ORG_UNROUTED,
    UNROUTED_DEFAULT,
    back_to_schema,
    example_config_for,
    pool_users,
    run_cli,
    vitally_account,
)

from core.model import Account
from rules import Policy, evaluate_account
from rules.context import AccountContext
from rules.policy import PERSONAL_MAIL_DOMAINS
from sandbox import Sandbox
from state import StateDB
from sync.config import example_against
from sync.signups import Signups, company_domain
from sync.whatif import compare

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
BIG = 20_000
US = {"country": "US", "users_by_country": {"US": 3}}
FIRST_AT = datetime(2026, 11, 10, 10, tzinfo=UTC)


def _row(
    account_id: str, created: str, domain: object, *, error: str | None = None, key: str = "domain"
) -> dict[str, Any]:
    # json.dumps escapes non-ASCII (`\u00fc`), as the mirror may hold Vitally's own text.
    raw = {"id": account_id, "createdAt": created, "updatedAt": created, "traits": {key: domain}}
    return {"id": account_id, "updated_at": created, "raw": json.dumps(raw), "error": error}


def _account(account_id: str, created: str, domain: str | None) -> Account:
    return Account(
        id=account_id,
        name=account_id,
        updated_at=datetime.fromisoformat(created),
        created_at=datetime.fromisoformat(created),
        domain=domain,
        employee_count=BIG,
    )


def _signups(*rows: dict[str, Any], trait_keys: dict[str, str] | None = None) -> Signups:
    state = StateDB.memory()
    state.upsert_accounts(rows)
    return Signups(state, trait_keys or {}, PERSONAL_MAIL_DOMAINS)


def test_each_company_s_first_signup_is_its_account_created_first() -> None:
    signups = _signups(
        _row("acc_b", "2026-11-20T10:00:00.000Z", "bigcorp.com"),
        _row("acc_a", "2026-11-10T10:00:00.000Z", "BigCorp.com"),
        _row("acc_c", "2026-11-21T10:00:00.000Z", "www.bigcorp.com."),
        _row("acc_o", "2026-11-01T10:00:00.000Z", "othercorp.io"),
        _row("acc_n", "2026-11-01T10:00:00.000Z", 42),  # not text: no company
    )
    assert signups.earlier(_account("acc_a", "2026-11-10T10:00:00+00:00", "bigcorp.com")) is None
    assert signups.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == ("acc_a", FIRST_AT)
    assert signups.earlier(_account("acc_c", "2026-11-21T10:00:00+00:00", " BIGCORP.COM ")) == ("acc_a", FIRST_AT)
    assert signups.earlier(_account("acc_o", "2026-11-01T10:00:00+00:00", "othercorp.io")) is None
    assert signups.earlier(_account("acc_x", "2026-11-21T10:00:00+00:00", None)) is None


def test_a_personal_mail_domain_names_no_company_and_the_same_instant_goes_to_the_smaller_id() -> None:
    signups = _signups(
        _row("acc_1", "2026-11-10T10:00:00.000Z", "gmail.com"),
        _row("acc_2", "2026-11-12T10:00:00.000Z", "gmail.com"),
        _row("acc_4", "2026-11-12T10:00:00.000Z", "twin.dev"),
        _row("acc_3", "2026-11-12T10:00:00.000Z", "twin.dev"),
    )
    assert signups.earlier(_account("acc_2", "2026-11-12T10:00:00+00:00", "gmail.com")) is None
    assert company_domain("GMAIL.com", PERSONAL_MAIL_DOMAINS) is None
    assert signups.earlier(_account("acc_3", "2026-11-12T10:00:00+00:00", "twin.dev")) is None
    assert signups.earlier(_account("acc_4", "2026-11-12T10:00:00+00:00", "twin.dev")) == (
        "acc_3",
        datetime(2026, 11, 12, 10, tzinfo=UTC),
    )


@pytest.mark.parametrize("key", ["company_domain", "ünï", "co\\dom", 'co"dom'])
def test_the_configured_domain_trait_is_the_one_read_however_it_is_spelled(key: str) -> None:
    """A review: a key with a backslash, a quote, or a letter the mirror's JSON text escapes
    (`\\u00fc`) was missed, and every later org was taken for its company's first."""
    signups = _signups(_row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp.com", key=key), trait_keys={"domain": key})
    assert signups.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == ("acc_a", FIRST_AT)


def test_a_malformed_first_signup_still_counts_and_unreadable_json_is_left_out() -> None:
    """A review: the company's first org read malformed (one of its fields wrong) stopped counting,
    and the next org became the first and got a second lead. Its company signed up all the same."""
    unreadable = {"id": "acc_z", "updated_at": "2026-11-01T00:00:00Z", "raw": '{"traits": {', "error": "JSON"}
    signups = _signups(
        _row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp.com", error="field mrr: not a number"),
        _row("acc_b", "2026-11-20T10:00:00.000Z", "bigcorp.com"),
        unreadable,
    )
    assert signups.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == ("acc_a", FIRST_AT)


def _judged(state: StateDB, *ids: str) -> None:
    state.save_account_inputs([(i, "", "rules", 0.0, 1e12, None) for i in ids])


def _holding(state: StateDB) -> list[str]:
    return [str(i) for (i,) in state.db.execute("SELECT id FROM account_inputs ORDER BY id")]


def test_a_kept_index_catches_up_with_what_changed_and_forgets_the_judgements_of_a_company_whose_first_changed() -> (
    None
):
    """The index lives in the state (migration 19): a cycle reads again only the accounts written
    since (none in an idle cycle), and forgets the stored judgements of every account of a company
    whose first signup changed, and of no other (an MRR change moves no first)."""
    state = StateDB.memory()
    state.upsert_accounts(
        [
            _row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp.com"),
            _row("acc_b", "2026-11-20T10:00:00.000Z", "bigcorp.com"),
            _row("acc_o", "2026-11-01T10:00:00.000Z", "othercorp.io"),
            _row("acc_p", "2026-11-02T10:00:00.000Z", "othercorp.io"),
        ]
    )
    assert state.db.execute("SELECT count(*) FROM signups_stale").fetchone()[0] == 4
    first = Signups(state, {}, PERSONAL_MAIL_DOMAINS)
    # No index kept yet: built on the first question, from every account; the list is not kept.
    assert first.catch_up() == 0
    assert state.db.execute("SELECT count(*) FROM signups_stale").fetchone()[0] == 0
    assert first.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == ("acc_a", FIRST_AT)
    assert state.db.execute("SELECT count(*) FROM signups_stale").fetchone()[0] == 0
    _judged(state, "acc_a", "acc_b", "acc_o", "acc_p")

    idle = Signups(state, {}, PERSONAL_MAIL_DOMAINS)
    assert idle.catch_up() == 0 and _holding(state) == ["acc_a", "acc_b", "acc_o", "acc_p"]

    # acc_o's MRR changes (its row is written: its own judgement goes), and acc_a moves to another
    # company: bigcorp's first is acc_b now, and acc_b's judgement is forgotten; othercorp's stays.
    moved = _row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp-holdings.com")
    state.upsert_accounts([{**_row("acc_o", "2026-11-01T10:00:00.000Z", "othercorp.io"), "updated_at": "x"}, moved])
    assert _holding(state) == ["acc_b", "acc_p"]
    later = Signups(state, {}, PERSONAL_MAIL_DOMAINS)
    assert later.catch_up() == 1
    assert _holding(state) == ["acc_p"]
    assert later.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) is None
    assert state.db.execute("SELECT count(*) FROM signups_stale").fetchone()[0] == 0

    # acc_o leaves the mirror (deleted in Vitally): othercorp's first is acc_p now.
    _judged(state, "acc_p")
    state.remove_accounts(["acc_o"], "deleted", "2026-11-22T09:00:00Z")
    assert Signups(state, {}, PERSONAL_MAIL_DOMAINS).catch_up() == 1 and _holding(state) == []


def test_state_migration_19_keeps_the_mirror_and_the_next_question_builds_the_index(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = StateDB.open(path)
    with old.atomic():
        old.upsert_accounts(
            [
                _row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp.com"),
                _row("acc_b", "2026-11-20T10:00:00.000Z", "bigcorp.com"),
            ]
        )
    old.close()
    with sqlite3.connect(path) as conn:  # as the build before left it
        back_to_schema(conn, 18)

    upgraded = StateDB.open(path)
    with upgraded.atomic():
        signups = Signups(upgraded, {}, PERSONAL_MAIL_DOMAINS)
        assert signups.catch_up() == 0
        assert signups.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == ("acc_a", FIRST_AT)
    assert upgraded.db.execute("SELECT id, company FROM signups ORDER BY id").fetchall() == [
        ("acc_a", "bigcorp.com"),
        ("acc_b", "bigcorp.com"),
    ]
    upgraded.close()


def test_what_if_and_explain_read_what_changed_without_writing_and_another_domain_trait_rebuilds_the_index() -> None:
    state = StateDB.memory()
    state.upsert_accounts(
        [
            _row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp.com"),
            _row("acc_b", "2026-11-20T10:00:00.000Z", "bigcorp.com"),
        ]
    )
    Signups(state, {}, PERSONAL_MAIL_DOMAINS).refresh()
    state.upsert_accounts([_row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp-holdings.com")])
    stale = state.db.execute("SELECT count(*) FROM signups_stale").fetchone()[0]
    reader = Signups(state, {}, PERSONAL_MAIL_DOMAINS, persist=False)
    assert reader.catch_up() == 0
    assert reader.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) is None
    assert reader.earlier(_account("acc_c", "2026-11-21T10:00:00+00:00", "bigcorp-holdings.com")) == (
        "acc_a",
        FIRST_AT,
    )
    assert state.db.execute("SELECT count(*) FROM signups_stale").fetchone()[0] == stale == 1

    # The domain read from another trait: every account is read again, persisted or not.
    state.upsert_accounts([_row("acc_z", "2026-11-01T10:00:00.000Z", "bigcorp.com", key="website")])
    for persist in (False, True):
        other = Signups(state, {"domain": "website"}, PERSONAL_MAIL_DOMAINS, persist=persist)
        assert other.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == (
            "acc_z",
            datetime(2026, 11, 1, 10, tzinfo=UTC),
        )
    assert state.db.execute("SELECT key FROM signups_key").fetchall() == [("website",)]


def _two_orgs_indexed() -> tuple[StateDB, Account]:
    """A state whose index is kept: bigcorp.com's first org acc_a, and acc_b, its second."""
    state = StateDB.memory()
    state.upsert_accounts(
        [
            _row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp.com"),
            _row("acc_b", "2026-11-20T10:00:00.000Z", "bigcorp.com"),
        ]
    )
    later = _account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")
    assert Signups(state, {}, PERSONAL_MAIL_DOMAINS).earlier(later) == ("acc_a", FIRST_AT)
    return state, later


def test_an_index_kept_for_another_domain_trait_is_dropped_and_built_again_when_asked() -> None:
    """A review: cycles under another domain trait (a typo in `[vitally.traits] domain`: no account
    has a domain, no question is asked) threw the list of written accounts away but kept the index,
    which the right trait then trusted again: the first org deleted meanwhile still blocked the next."""
    state, later = _two_orgs_indexed()
    state.remove_accounts(["acc_a"], "deleted in Vitally", "2026-11-21T00:00:00Z")
    assert Signups(state, {"domain": "webiste"}, PERSONAL_MAIL_DOMAINS).catch_up() == 0
    again = Signups(state, {}, PERSONAL_MAIL_DOMAINS)
    again.catch_up()
    assert again.earlier(later) is None


def test_dropping_an_index_kept_for_another_trait_forgets_the_judgements_made_with_it() -> None:
    """A second review: an event's mini-cycle under a mistyped trait dropped the index, the full
    cycle under it was stopped (rolled back), and the index built again under the right trait forgot
    nothing: a later org kept its "not the first" judgement after its first moved to another domain."""
    state, later = _two_orgs_indexed()
    _judged(state, "acc_b")
    state.upsert_accounts([_row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp-holdings.com")])
    assert Signups(state, {"domain": "webiste"}, PERSONAL_MAIL_DOMAINS).catch_up() == 1
    assert _holding(state) == []
    back = Signups(state, {}, PERSONAL_MAIL_DOMAINS)
    assert back.catch_up() == 0
    assert back.earlier(later) is None


def test_a_domain_escaping_a_nul_is_read_as_sqlite_reads_it_on_both_sides() -> None:
    """A second review: SQLite reads `"bigcorp.com\\u0000x"` as `bigcorp.com`, Python as it is: the
    account created first was bigcorp.com's first for the index and a first of its own for itself."""
    odd = json.loads('"bigcorp.com\\u0000x"')
    signups = _signups(
        _row("acc_x", "2026-11-05T10:00:00.000Z", odd),
        _row("acc_y", "2026-11-06T10:00:00.000Z", odd),
        _row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp.com"),
    )
    first = ("acc_x", datetime(2026, 11, 5, 10, tzinfo=UTC))
    assert signups.earlier(_account("acc_x", "2026-11-05T10:00:00+00:00", odd)) is None
    assert signups.earlier(_account("acc_y", "2026-11-06T10:00:00+00:00", odd)) == first
    assert signups.earlier(_account("acc_a", "2026-11-10T10:00:00+00:00", "bigcorp.com")) == first


def test_a_lone_surrogate_in_a_domain_or_a_creation_time_names_no_company_and_stops_no_cycle() -> None:
    """A review: JSON may escape a lone surrogate (`\\ud800`), which SQLite hands back as no UTF-8:
    reading the stale accounts raised in every cycle until Vitally sent the account again."""
    state = StateDB.memory()
    state.upsert_accounts([_row("acc_a", "2026-11-10T10:00:00.000Z", "bigcorp.com")])
    Signups(state, {}, PERSONAL_MAIL_DOMAINS).refresh()
    odd = [
        ("acc_s", '{"id": "acc_s", "createdAt": "2026-11-01T10:00:00Z", "traits": {"domain": "big\\ud800corp.com"}}'),
        ("acc_t", '{"id": "acc_t", "createdAt": "2026-11-01T10:00:00\\ud800", "traits": {"domain": "bigcorp.com"}}'),
    ]
    state.upsert_accounts([{"id": i, "updated_at": "x", "raw": raw} for i, raw in odd])
    signups = Signups(state, {}, PERSONAL_MAIL_DOMAINS)
    assert signups.catch_up() == 0
    assert signups.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == ("acc_a", FIRST_AT)
    assert signups.earlier(_account("acc_c", "2026-11-20T10:00:00+00:00", "big\ud800corp.com")) is None
    assert state.db.execute("SELECT id FROM signups").fetchall() == [("acc_a",)]
    # The first index too, built from the whole mirror (its rows read again as bytes from the first).
    for persist in (True, False):
        state.db.execute("DELETE FROM signups_key")
        whole = Signups(state, {}, PERSONAL_MAIL_DOMAINS, persist=persist)
        assert whole.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == ("acc_a", FIRST_AT)
    assert state.db.execute("SELECT id FROM signups").fetchall() == [("acc_a",)]


def test_a_personal_mail_domain_s_first_signup_leaving_forgets_no_judgement() -> None:
    """A review: the first gmail.com account deleted forgot every gmail.com account's judgement,
    though none reads a first signup."""
    state = StateDB.memory()
    state.upsert_accounts([_row(f"acc_{i}", f"2026-11-1{i}T10:00:00.000Z", "gmail.com") for i in range(3)])
    Signups(state, {}, PERSONAL_MAIL_DOMAINS).refresh()
    _judged(state, "acc_1", "acc_2")
    state.remove_accounts(["acc_0"], "deleted in Vitally", "2026-11-21T00:00:00Z")
    assert Signups(state, {}, PERSONAL_MAIL_DOMAINS).catch_up() == 0
    assert _holding(state) == ["acc_1", "acc_2"]


@pytest.mark.parametrize("created", ["2026-11-10T22:00:00-05:00", "0001-01-01T00:30:00+01:00"])
def test_the_first_signup_is_told_as_its_record_says_it(created: str) -> None:
    """A review: the first's creation time was told in UTC (the verdict's date one day off for an
    evening signup in New York), and one in the year 1 east of UTC raised."""
    signups = _signups(_row("acc_a", created, "bigcorp.com"))
    assert signups.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) == (
        "acc_a",
        datetime.fromisoformat(created),
    )
    _, when = signups.earlier(_account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")) or ("", NOW)
    assert when.date() == datetime.fromisoformat(created).date()


@pytest.mark.parametrize("earlier", [None, ("acc_a", FIRST_AT)])
def test_big_fish_fires_only_for_the_first_signup(earlier: tuple[str, datetime] | None) -> None:
    account = _account("acc_b", "2026-11-20T10:00:00+00:00", "bigcorp.com")
    context = AccountContext(earlier_signup=earlier)
    for full in (True, False):
        decisions = {d.rule: d for d in evaluate_account(account, context, Policy(), NOW, full=full)}
        big_fish = decisions.get("new_business.big_fish")
        if earlier is None:
            assert big_fish is not None and big_fish.fired, big_fish
        elif full:
            assert big_fish is not None and not big_fish.fired
            assert "not the first signup of bigcorp.com: acc_a signed up 2026-11-10" in big_fish.reason
        else:
            assert big_fish is None or not big_fish.fired


def _big(index: int, created: str, domain: str) -> dict[str, Any]:
    return vitally_account(index, createdAt=created, traits={**US, "domain": domain, "employee_count": BIG})


def test_what_if_judges_big_fish_with_the_first_signups_as_the_cycle_does() -> None:
    """A review: `--compare-rules` judged without the index, so it showed a second org's Big Fish
    as firing now, and no difference for a config that makes its domain a personal one."""
    state = StateDB.memory()
    accounts = (_big(1, "2026-11-10T10:00:00.000Z", "bigcorp.com"), _big(2, "2026-11-20T10:00:00.000Z", "bigcorp.com"))
    state.upsert_accounts({"id": a["id"], "updated_at": a["updatedAt"], "raw": json.dumps(a)} for a in accounts)
    config = example_against("http://127.0.0.1:1")
    routing = config.policy.routing
    routing = replace(routing, big_fish_personal_domains=(*routing.big_fish_personal_domains, "bigcorp.com"))
    other = replace(config, policy=replace(config.policy, routing=routing))
    differences = [d for d in compare(state, config, other, NOW) if d.rule == "new_business.big_fish"]
    assert [(d.record, d.before["fired"], d.after["fired"]) for d in differences] == [("acc_0002", False, True)]


def _big_fish_leads(sandbox: Sandbox) -> list[str]:
    leads = sandbox.state()["salesforce"]["Lead"]
    return sorted(
        lead["Vitally_Account_Id__c"] for lead in leads if lead.get("Routing_Rule__c") == "new_business.big_fish"
    )


@pytest.mark.e2e
def test_a_cycle_routes_a_company_s_first_big_signup_and_not_its_second(tmp_path: Path) -> None:
    """Two orgs of one 20,000-employee company created 12 and 2 days ago, and one of another company
    on a personal mail domain: the real CLI against the sandbox creates two Big Fish leads, the
    first org's and the personal one's, and explains why not the second. Then a person gives the
    first org another domain, and the next (incremental) cycle routes the second: its judgement
    read the first's record, which no fingerprint of its own covers (a review found it kept)."""
    accounts = [
        _big(1, "2026-11-10T10:00:00.000Z", "bigcorp.com"),
        _big(2, "2026-11-20T10:00:00.000Z", "bigcorp.com"),
        _big(3, "2026-11-20T10:00:00.000Z", "gmail.com"),
    ]
    users = pool_users(example_against("http://127.0.0.1:1"))
    with Sandbox({"vitally": {"accounts": accounts}, "salesforce": {"User": users}}) as sandbox:
        sandbox.configure(vitally_rate_limit=10_000_000)
        config = example_config_for(sandbox.url, tmp_path / "config.toml", {UNROUTED_DEFAULT: SANDBOX_ORG_UNROUTED})
        state = tmp_path / "state.db"
        result = run_cli(config, state, "run", "--now", "2026-11-22T09:00:00Z")
        assert result.returncode == 0, result.stderr[-2000:]
        assert _big_fish_leads(sandbox) == ["acc_0001", "acc_0003"]
        explained = run_cli(config, state, "explain", "acc_0002", "--now", "2026-11-22T09:00:00Z")
        assert "not the first signup of bigcorp.com: acc_0001 signed up 2026-11-10" in explained.stdout, (
            explained.stdout
        )
        again = run_cli(config, state, "run", "--now", "2026-11-22T09:00:00Z")
        assert again.returncode == 0, again.stderr[-2000:]
        assert _big_fish_leads(sandbox) == ["acc_0001", "acc_0003"]  # no lead for the second org later either
        # The second org's judgement holds: an idle cycle does not judge it again (it did at every
        # cycle, with a pass over the whole mirror: 2026-12-07).
        with sqlite3.connect(state) as db:
            assert ("acc_0002",) in db.execute("SELECT id FROM account_inputs").fetchall()

        requests.put(  # a person's edit through Vitally's API
            f"{sandbox.url}/resources/accounts/acc_0001",
            json={"traits": {"domain": "bigcorp-holdings.com"}},
            auth=("a-person", ""),
            timeout=10,
        ).raise_for_status()
        third = run_cli(config, state, "run", "--now", "2026-11-22T10:00:00Z")
        assert third.returncode == 0, third.stderr[-2000:]
        assert _big_fish_leads(sandbox) == ["acc_0001", "acc_0002", "acc_0003"]
