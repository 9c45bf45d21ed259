"""A state file restored from an older backup, through the CLI as an operator runs it: `run`, or
a reviewed plan (`run --dry-run --out`, then `apply`).

The restored state's record of a trait names a value crm-sync wrote before a later one it no
longer knows of; the account's `crm_sync_written` trait says, field by field, when crm-sync wrote
what (docs/data-model.md). A CSM who set the earlier value again since must stay a conflict, in
every cycle after, whichever command writes the account next. Found by a review: after `apply`
of a reviewed plan (whose planning learnt from the trait on a throw-away copy of the state), the
PUT rebuilt the trait from the stale record and the next `run` removed the CSM's segment. The
PUT now keeps, field by field, whichever of the state and the trait says it was written later
(`sync.apply._newest`).

Accounts as GET /resources/accounts returns them (tests/support.py)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests
from support import SANDBOX_ORG_UNROUTED, UNROUTED_DEFAULT, example_config_for, pool_users, run_cli, vitally_account

from sandbox import Sandbox
from sync.config import example_against

pytestmark = pytest.mark.e2e

NOW = "2026-11-22T09:00:00Z"
TRAIT = "segment_account_review"


def traits(sandbox: Sandbox) -> dict[str, Any]:
    return dict(next(a for a in sandbox.state()["vitally"]["accounts"] if a["id"] == "acc_0001")["traits"])


@pytest.mark.parametrize("workflow", ["run", "plan and apply"])
def test_a_persons_value_stays_theirs_after_a_restored_backup(workflow: str, tmp_path: Path) -> None:
    users = pool_users(example_against("http://127.0.0.1:1"))
    account = vitally_account(1, mrr=2500, traits={"country": "US", "users_by_country": {"US": 3}})
    with Sandbox({"vitally": {"accounts": [account]}, "salesforce": {"User": users}}) as sandbox:
        sandbox.configure(vitally_rate_limit=10_000_000)
        config = example_config_for(sandbox.url, tmp_path / "config.toml", {UNROUTED_DEFAULT: SANDBOX_ORG_UNROUTED})
        state = tmp_path / "state.db"
        assert run_cli(config, state, "run", "--now", NOW).returncode == 0
        assert traits(sandbox)[TRAIT] is True  # Account review
        backup = tmp_path / "backup.db"
        source, copy = sqlite3.connect(state), sqlite3.connect(backup)
        source.backup(copy)  # the nightly backup
        source.close()
        copy.close()
        with sandbox._lock:
            sandbox._vitally.change_mrr("acc_0001", 900)
        assert run_cli(config, state, "run", "--now", NOW).returncode == 0
        assert traits(sandbox).get(TRAIT) is None  # crm-sync took it out of review
        requests.put(
            f"{sandbox.url}/resources/accounts/acc_0001",
            json={"traits": {TRAIT: True}},
            auth=("a-csm", ""),
            timeout=10,
        ).raise_for_status()  # a CSM keeps it in review
        sandbox.set_segment("acc_0001", "AM referral")  # and another write to the account comes
        shutil.copy(backup, state)  # the state file is lost; last night's copy is restored
        if workflow == "run":
            first = run_cli(config, state, "run", "--now", NOW)
        else:
            plan = tmp_path / "plan.jsonl"
            assert run_cli(config, state, "run", "--dry-run", "--now", NOW, "--out", str(plan)).returncode == 0
            first = run_cli(config, state, "apply", str(plan))
        assert first.returncode == 0, first.stderr[-2000:]
        second = run_cli(config, state, "run", "--now", NOW)
        assert second.returncode == 0, second.stderr[-2000:]
        assert traits(sandbox)[TRAIT] is True, f"{workflow}: the CSM's value was overwritten"
