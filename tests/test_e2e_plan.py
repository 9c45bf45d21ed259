"""End to end, through the real CLI against the sandbox: a plan saved by `run --dry-run --out`,
reviewed and applied exactly by `apply`; a person's edit between the two refused by name; a canary
run with `--max-writes`; `resync` planning only real differences (issue #16)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests
import test_e2e_cli
from support import example_config_for, run_cli
from test_e2e_cli import NOW, SEED, cli, person_sets_new_owner, vitally_account

from sandbox import Sandbox

pytestmark = pytest.mark.e2e

UPSERT = "/services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"


# The fixtures (the sandbox holding SEED, the example config pointed at it) are those of test_e2e_cli.
sandbox, config = test_e2e_cli.sandbox, test_e2e_cli.config


def writes(sandbox: Sandbox) -> list[tuple[str, str]]:
    return [(call["method"], call["path"]) for call in sandbox.calls() if call["method"] != "GET"]


def plan_file(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[0], lines[1:-1], lines[-1]


def vitally(sandbox: Sandbox, account: str) -> dict[str, Any]:
    response = requests.get(f"{sandbox.url}/resources/accounts/{account}", auth=("k", ""), timeout=5)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def holds(sandbox: Sandbox, write: dict[str, Any]) -> bool:
    """Whether the services hold what a plan line writes."""
    if write["system"] == "salesforce":
        leads = [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c") == write["record"]]
        return len(leads) == 1 and all(leads[0].get(key) == value for key, value in write["fields"].items())
    account = vitally(sandbox, write["record"])
    if write["op"] == "add_segment":
        return write["fields"]["segment"] in {segment["name"] for segment in account["segments"]}
    assert write["op"] == "set_traits", write
    return all(account["traits"].get(key) == value for key, value in write["fields"].items())


def assignments(state: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(state) as conn:
        rows = conn.execute("SELECT key, pool, user_id FROM assignments ORDER BY key").fetchall()
    return [(str(key), str(pool), str(user)) for key, pool, user in rows]


def test_a_reviewed_plan_is_applied_exactly(sandbox: Sandbox, config: Path, tmp_path: Path) -> None:
    state, plan = tmp_path / "state.db", tmp_path / "plan.json"

    dry = cli(config, state, "run", "--dry-run", "--out", str(plan), "--format", "json", "--now", NOW)

    assert dry.returncode == 0, dry.stderr
    assert writes(sandbox) == []
    header, planned, trailer = plan_file(plan)
    assert {"crm_sync_plan", "crm_sync_version", "created_at", "config", "state"} <= set(header)
    assert len(header["config"]["sha256"]) == 64 and trailer["end"] == len(planned) == 9
    lead = next(line for line in planned if line["op"] == "upsert_lead")
    drawn = lead["fields"]["OwnerId"]

    applied = cli(config, state, "apply", str(plan), "--format", "json")

    assert applied.returncode == 0, applied.stderr
    assert "applied 9, refused 0" in applied.stderr
    # Vitally moves a segment when its Playbook runs, after the PUT (the sandbox is a real org).
    sandbox.run_playbooks(everything=True)
    assert all(holds(sandbox, write) for write in planned)
    assert sorted(writes(sandbox)) == [
        ("PATCH", UPSERT),
        ("PUT", "/resources/accounts/acc_alloc"),
        ("PUT", "/resources/accounts/acc_pl"),
        ("PUT", "/resources/accounts/acc_quiet"),
    ]
    # The owner of the plan, recorded once, never drawn again.
    assert assignments(state) == [("crm-sync-acc_pl-1", "TAM/EU", drawn)]
    sandbox.reset()
    after = cli(config, state, "run", "--format", "json", "--now", NOW)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "" and writes(sandbox) == []


def test_apply_refuses_the_write_a_person_overtook_and_applies_the_others(
    sandbox: Sandbox, config: Path, tmp_path: Path
) -> None:
    state, plan = tmp_path / "state.db", tmp_path / "plan.json"
    assert cli(config, state, "run", "--dry-run", "--out", str(plan), "--now", NOW).returncode == 0
    _, planned, _ = plan_file(plan)
    drawn = next(line for line in planned if line["op"] == "upsert_lead")["fields"]["OwnerId"]
    # A person sets New Owner on acc_alloc in the Vitally app after the review.
    person_sets_new_owner(sandbox)
    sandbox.reset()

    applied = cli(config, state, "apply", str(plan), "--format", "json")

    assert applied.returncode == 2, applied.stderr
    refused = [line for line in applied.stderr.splitlines() if line.startswith("refused:")]
    # The plan lists the accounts in the order Vitally first listed them (`state.db.MIRROR_ORDER`):
    # newest change first, the sandbox's ties by id descending: acc_quiet, acc_pl, then acc_alloc.
    assert refused == [
        "refused: write 5: vitally set_traits acc_alloc (allocation.new_owner): changed since the plan "
        '(new_owner: the plan saw null, Vitally holds "US TAM" now)'
    ]
    assert vitally(sandbox, "acc_alloc")["traits"]["new_owner"] == "US TAM"  # the person's value stays
    others = [write for write in planned if not (write["record"] == "acc_alloc" and "new_owner" in write["fields"])]
    sandbox.run_playbooks(everything=True)  # segments follow their traits when the Playbook runs
    assert len(others) == 8 and all(holds(sandbox, write) for write in others)
    assert assignments(state) == [("crm-sync-acc_pl-1", "TAM/EU", drawn)]

    # Applied again: everything is already there, the refusal stands, nothing is sent or drawn.
    sandbox.reset()
    again = cli(config, state, "apply", str(plan), "--format", "json")
    assert again.returncode == 2
    assert "already there 8" in again.stderr and "0 owner(s) recorded" in again.stderr
    assert writes(sandbox) == []
    assert assignments(state) == [("crm-sync-acc_pl-1", "TAM/EU", drawn)]
    leads = sandbox.state()["salesforce"]["Lead"]
    assert [(lead["Sync_Key__c"], lead["OwnerId"]) for lead in leads] == [("crm-sync-acc_pl-1", drawn)]


def test_apply_refuses_a_plan_made_under_another_config(sandbox: Sandbox, config: Path, tmp_path: Path) -> None:
    state, plan = tmp_path / "state.db", tmp_path / "plan.json"
    assert cli(config, state, "run", "--dry-run", "--out", str(plan), "--now", NOW).returncode == 0
    config.write_text(config.read_text().replace("mrr_min = 500", "mrr_min = 900"))  # the rules changed

    applied = cli(config, state, "apply", str(plan))

    assert applied.returncode == 2
    assert f"{plan}: not applied: made with another config" in applied.stderr
    assert writes(sandbox) == []


def test_max_writes_stops_cleanly_and_leaves_the_rest_pending(sandbox: Sandbox, config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"

    canary = cli(config, state, "run", "--max-writes", "2", "--format", "json", "--now", NOW)

    assert canary.returncode == 0, canary.stderr
    # Two records: an account's trait changes travel in one PUT.
    # (in flight together: the order they arrive in is not fixed)
    assert sorted(writes(sandbox)) == [("PUT", "/resources/accounts/acc_alloc"), ("PUT", "/resources/accounts/acc_pl")]
    assert "--max-writes: stopped after 2 record(s) (7 write(s)); 2 write(s) stay pending" in canary.stderr
    with sqlite3.connect(state) as conn:
        pending = conn.execute("SELECT record FROM outbox WHERE status = 'pending' ORDER BY record").fetchall()
    assert pending == [("acc_quiet",), ("crm-sync-acc_pl-1",)]
    assert "lifecycle_stage" not in vitally(sandbox, "acc_quiet")["traits"]

    sandbox.reset()
    rest = cli(config, state, "run", "--format", "json", "--now", NOW)
    assert rest.returncode == 0, rest.stderr
    assert sorted(writes(sandbox)) == [("PATCH", UPSERT), ("PUT", "/resources/accounts/acc_quiet")]
    assert vitally(sandbox, "acc_quiet")["traits"]["lifecycle_stage"] == "Self serve"
    assert len(sandbox.state()["salesforce"]["Lead"]) == 1


def test_resync_plans_only_real_differences(sandbox: Sandbox, config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    assert cli(config, state, "run", "--now", NOW).returncode == 0
    sandbox.reset()

    nothing = cli(config, state, "resync", "--dry-run", "--format", "json", "--now", NOW)

    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stdout.strip() == "" and writes(sandbox) == []

    # An account the incremental read cannot see: its updatedAt is older than the cursor (an
    # import, or a record restored from the recycle bin).
    sandbox.load(
        {
            "vitally": {
                "accounts": [{**vitally_account("acc_late", 30, country="US"), "updatedAt": "2026-01-01T00:00:00.000Z"}]
            }
        }
    )
    missed = cli(config, state, "run", "--dry-run", "--format", "json", "--now", NOW)
    assert missed.returncode == 0 and missed.stdout.strip() == ""

    planned = cli(config, state, "resync", "--dry-run", "--format", "json", "--now", NOW)

    assert planned.returncode == 0, planned.stderr
    lines = [json.loads(line) for line in planned.stdout.splitlines()]
    assert [(line["record"], line["rule"], line["fields"]) for line in lines] == [
        ("acc_late", "lifecycle.stage", {"lifecycle_stage": "Self serve"})
    ]
    assert writes(sandbox) == []

    resync = cli(config, state, "resync", "--format", "json", "--now", NOW)
    assert resync.returncode == 0, resync.stderr
    assert writes(sandbox) == [("PUT", "/resources/accounts/acc_late")]
    assert vitally(sandbox, "acc_late")["traits"]["lifecycle_stage"] == "Self serve"


def test_a_dry_run_and_apply_limited_to_accounts_and_rules(sandbox: Sandbox, config: Path, tmp_path: Path) -> None:
    state, plan = tmp_path / "state.db", tmp_path / "plan.json"

    sliced = cli(
        config, state, "run", "--dry-run", "--rule", "lifecycle.*", "--account", "acc_pl", "acc_quiet",
        "--format", "json", "--now", NOW,
    )  # fmt: skip

    assert sliced.returncode == 0, sliced.stderr
    lines = [json.loads(line) for line in sliced.stdout.splitlines()]
    assert [(line["record"], line["rule"]) for line in lines] == [  # in the mirror's order
        ("acc_quiet", "lifecycle.stage"),
        ("acc_pl", "lifecycle.stage"),
    ]
    assert "only account(s) acc_pl, acc_quiet; rule(s) lifecycle.*" in sliced.stderr
    unknown = cli(config, state, "run", "--dry-run", "--rule", "lifecycle.stag")
    assert unknown.returncode == 2 and "--rule lifecycle.stag: no such rule" in unknown.stderr

    assert cli(config, state, "run", "--dry-run", "--out", str(plan), "--now", NOW).returncode == 0
    one = cli(config, state, "apply", str(plan), "--account", "acc_quiet", "--format", "json")
    assert one.returncode == 0, one.stderr
    assert writes(sandbox) == [("PUT", "/resources/accounts/acc_quiet")]
    assert sandbox.state()["salesforce"]["Lead"] == []


def test_a_rule_switched_off_writes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    config = example_config_for(
        sandbox.url, tmp_path / "config.toml", {'# "lifecycle.stage" = false': '"lifecycle.stage" = false'}
    )

    result = cli(config, tmp_path / "state.db", "run", "--format", "json", "--now", NOW)

    assert result.returncode == 0, result.stderr
    rules = {json.loads(line)["rule"] for line in result.stdout.splitlines()}
    assert "lifecycle.stage" not in rules and "allocation.new_owner" in rules
    assert "lifecycle_stage" not in vitally(sandbox, "acc_quiet")["traits"]
    assert "lifecycle_stage" not in vitally(sandbox, "acc_alloc")["traits"]


def test_the_plan_table_of_the_cli_fits_80_columns(sandbox: Sandbox, config: Path, tmp_path: Path) -> None:
    result = run_cli(
        config, tmp_path / "state.db", "run", "--dry-run", "--format", "table", "--now", NOW, env={"COLUMNS": "80"}
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Plan: 9 change(s)" in result.stdout
    assert max(len(line) for line in lines) <= 80, result.stdout
    assert "Company acc_alloc" in result.stdout and "owner Lena Schmidt" in result.stdout
    assert "005000000000003AAA" not in result.stdout  # the owner by name, not id


def test_apply_refuses_the_writes_whose_inputs_changed_and_draws_no_owner(
    sandbox: Sandbox, config: Path, tmp_path: Path
) -> None:
    state, plan = tmp_path / "state.db", tmp_path / "plan.json"
    assert cli(config, state, "run", "--dry-run", "--out", str(plan), "--now", NOW).returncode == 0
    # acc_pl's MRR falls out of the product-led band after the review (a later updatedAt).
    account = next(a for a in SEED["vitally"]["accounts"] if a["id"] == "acc_pl")
    sandbox.load({"vitally": {"accounts": [{**account, "mrr": 100, "updatedAt": "2026-11-21T09:00:00.000Z"}]}})

    applied = cli(config, state, "apply", str(plan), "--format", "json")

    assert applied.returncode == 2, applied.stderr
    refused = [line for line in applied.stderr.splitlines() if line.startswith("refused:")]
    # acc_pl's three account writes follow acc_quiet's one (the mirror's order); its lead is last.
    assert [line.split(":")[1].strip() for line in refused] == ["write 2", "write 3", "write 4", "write 9"]
    assert all(" acc_pl " in line or "crm-sync-acc_pl-1" in line for line in refused)
    assert "refused: write 9: salesforce upsert_lead crm-sync-acc_pl-1 (product_led.mrr_band): its inputs changed" in (
        applied.stderr
    )
    assert sorted(writes(sandbox)) == [
        ("PUT", "/resources/accounts/acc_alloc"),
        ("PUT", "/resources/accounts/acc_quiet"),
    ]
    assert sandbox.state()["salesforce"]["Lead"] == []
    assert assignments(state) == []  # the plan's owner was not recorded, and none was drawn
