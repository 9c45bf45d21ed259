"""The real CLI (a subprocess) against the sandbox in "real org" mode (issue #14's Show): the
default lead owner is a user, State and Country/Territory picklists are on, Playbooks run later
than the PUT, owners sit in Vitally's `accountOwnerId` / `csmId` / `accountExecutiveId`, and a
share of accounts is churned (`sandbox.generator` with `real_org=True`).

After `check` says the org is ready: inbound leads waiting in the queue or with the default
owner get a round-robin owner; no lead ends with the integration user; no account owned
through Vitally's owner fields gets a lead; a churned account gets no write; once the Playbooks
ran and the next cycle read, the mirror's segments are Vitally's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import example_config_for, run_cli, with_fallback_queues

from sandbox import Sandbox, SandboxConfig, generate_book
from sandbox.generator import MIN_FULL_COVERAGE_REAL_ORG
from sandbox.store import API_USER_ID, DEFAULT_OWNER_USER_ID, INBOUND_QUEUE_ID
from state import StateDB
from sync.config import load_config

pytestmark = pytest.mark.e2e

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
OWNED_CASES = {"guard.owned_account_owner_id", "guard.owned_csm_id", "guard.owned_account_executive_id"}
INBOUND_CASES = {"inbound.queue_owned", "inbound.default_owner_user"}


def _book() -> dict[str, Any]:
    """A real-org book, with the queues the example config's pools fall back to (the operator
    creates them: docs/salesforce-setup.md)."""
    return with_fallback_queues(generate_book(MIN_FULL_COVERAGE_REAL_ORG, seed=5, now=NOW, real_org=True))


def _inactive_members(book: dict[str, Any], config: Path) -> set[str]:
    members = {m.user_id for pool in load_config(config).pools.values() for m in pool.members}
    return {u["Id"] for u in book["salesforce"]["User"] if u["Id"] in members and u.get("IsActive") is False}


def _segments(accounts: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {a["id"]: sorted(s["name"] for s in a.get("segments") or []) for a in accounts}


def test_a_real_org_end_to_end(tmp_path: Path) -> None:
    book = _book()
    cases = book["_cases"]
    owned = {a for a, names in cases["accounts"].items() if OWNED_CASES & set(names)}
    inbound = {lead for lead, names in cases["leads"].items() if INBOUND_CASES & set(names)}
    churned = set(cases["churned"])
    assert owned and inbound and churned
    with Sandbox(book, config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        # The example config already says picklists are on (a new org's default); the operator adds
        # the org's default lead owner to the unrouted owners.
        config = example_config_for(sandbox.url, tmp_path / "config.toml", {
            "unrouted_owners = []": f'unrouted_owners = ["{DEFAULT_OWNER_USER_ID}"]'})  # fmt: skip
        state_path = tmp_path / "state.db"
        # The generated team has members Salesforce deactivated (the round robin skips them): the one
        # thing `check` finds in this org, a line each; everything else is ready.
        check = run_cli(config, state_path, "check")
        assert (check.returncode, sorted(line.split(" user ")[1].split()[0] for line in check.stdout.splitlines())) == (
            2, sorted(_inactive_members(book, config))), check.stdout + check.stderr  # fmt: skip
        before = {lead["Id"]: lead["OwnerId"] for lead in sandbox.state()["salesforce"]["Lead"]}

        first = run_cli(config, state_path, "run", "--now", NOW.isoformat(), "--format", "json")
        assert first.returncode == 0, first.stderr
        leads = sandbox.state()["salesforce"]["Lead"]
        calls = sandbox.calls()
        sandbox.run_playbooks(everything=True)
        second = run_cli(config, state_path, "run", "--now", NOW.isoformat(), "--format", "json")
        assert second.returncode == 0, second.stderr
        vitally = _segments(sandbox.state()["vitally"]["accounts"])

    members = {m.user_id for pool in load_config(config).pools.values() for m in pool.members}
    owners = {lead["Id"]: lead["OwnerId"] for lead in leads}
    waiting = {lead for lead in inbound if before[lead] in (INBOUND_QUEUE_ID, DEFAULT_OWNER_USER_ID)}
    assert waiting == inbound  # the book's inbound leads wait as web-to-lead leaves them
    assert all(owners[lead] in members for lead in inbound), {lead: owners[lead] for lead in inbound}
    assert API_USER_ID not in owners.values()
    created = [lead for lead in leads if lead.get("Sync_Key__c")]
    assert created and all(lead["CountryCode"] for lead in created if lead.get("Country"))
    assert not {lead.get("Vitally_Account_Id__c") for lead in created} & (owned | churned)
    written = {c["path"].rsplit("/", 1)[-1] for c in calls if c["method"] == "PUT" and "/accounts/" in c["path"]}
    assert written and not written & churned
    state = StateDB.open(state_path)
    try:
        mirrored = _segments([json.loads(raw) for _, raw, error, _ in state.iter_accounts() if not error])
    finally:
        state.close()
    assert mirrored == {a: vitally[a] for a in mirrored}
