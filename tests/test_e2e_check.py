"""`python -m sync check` through the real CLI (a subprocess) against the sandbox in "real org"
mode (issue #14): a correct org is ready (exit 0); an org with a missing field, a missing picklist
value, a `Sync_Key__c` that is no unique external id and an inactive pool member gets one line per
problem (exit 2); a service that does not answer gets exit 3.

The org's differences are the sandbox's schema overrides (`sandbox.schema`), so `describe`
answers from the same field definitions the sandbox holds writes to."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import example_config_for, run_cli

from sandbox import Sandbox, SandboxConfig
from sync.config import load_config

pytestmark = pytest.mark.e2e

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
INACTIVE = "005000000000004AAA"  # Tomas Garcia, TAM EU


def _org(inactive: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The example config's people and queues as the org holds them: every pool member a user,
    every fallback owner a queue."""
    pools = load_config(Path("config.example.toml")).pools.values()
    users = {m.user_id: m.name for pool in pools for m in pool.members}
    queues = sorted({pool.fallback_owner for pool in pools if pool.fallback_owner})
    return {"vitally": {"accounts": []}, "salesforce": {
        "User": [{"Id": uid, "FirstName": name.split()[0], "LastName": name.split()[-1],
                  "IsActive": uid not in inactive} for uid, name in users.items()],
        "Group": [{"Id": qid, "Name": f"Queue {i}", "DeveloperName": f"Queue_{i}", "Type": "Queue"}
                  for i, qid in enumerate(queues)]}}  # fmt: skip


def _check(tmp_path: Path, sandbox_url: str, replacements: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    config = example_config_for(sandbox_url, tmp_path / "config.toml", replacements)
    done = run_cli(config, tmp_path / "state.db", "check", timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_a_correct_real_org_is_ready(tmp_path: Path) -> None:
    with Sandbox(_org(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        code, out, err = _check(tmp_path, sandbox.url)
    assert (code, out) == (0, ""), err
    assert err.startswith("ready: Vitally answers; Salesforce answers; Lead, Opportunity, Account described")


def test_four_broken_things_are_four_lines(tmp_path: Path) -> None:
    broken = {"Lead": {"Role__c": None, "LeadSource": {"removePicklistValues": ["Product-led"]},
                       "Sync_Key__c": {"unique": False}}}  # fmt: skip
    config = SandboxConfig(real_org=True, sf_schema=broken)
    with Sandbox(_org(inactive=frozenset({INACTIVE})), config=config, now=NOW) as sandbox:
        code, out, err = _check(tmp_path, sandbox.url)
    assert code == 2, err
    assert out.splitlines() == [
        "Lead.Role__c: missing: create it as docs/salesforce-setup.md says, or name the org's field in "
        "[salesforce.fields] role",
        "Lead.Sync_Key__c: not a unique external id: tick 'Unique' and 'External ID' on the field (crm-sync "
        "upserts on it; without them a retried create can make a second lead)",
        "Lead.LeadSource: value 'Product-led' is not in the picklist: add it to Lead Source's values, or set "
        "rules.routing.product_led_source to one of them",
        f"pools[TAM/EU].members: user {INACTIVE} is inactive in Salesforce: reactivate them or remove them",
    ]
    assert err == "not ready: 0 service(s) unreachable, 4 problem(s)\n"


def test_the_picklist_setting_must_match_the_org(tmp_path: Path) -> None:
    with Sandbox(_org(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        # The example config says picklists are on (a new org's default); an operator turned them off.
        turned_off = {"state_country_picklists = true": "state_country_picklists = false"}
        code, out, _ = _check(tmp_path, sandbox.url, turned_off)
    assert code == 2
    assert out.splitlines() == [
        "salesforce.state_country_picklists: the org has State and Country/Territory picklists (Lead.CountryCode "
        "exists): set it to true, or every new lead's country is refused"
    ]


def test_an_unreachable_service_exits_3(tmp_path: Path) -> None:
    with Sandbox(_org(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        url = sandbox.url
    fast = {"max_attempts = 5": "max_attempts = 1"}
    code, out, err = _check(tmp_path, url, fast)  # the sandbox is gone: nothing listens there
    assert code == 3, err
    assert [line.split(":")[0] for line in out.splitlines()] == ["vitally", "salesforce"]
