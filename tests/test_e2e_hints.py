"""End to end, as a new user meets them (issue #16): a service that cannot be reached or that
refuses the credentials is named with its URL, the setting or the secret's variable (never its
value) and the likely fix; global options are accepted after the command; `retry` and `explain`
of an id that does not exist are usage errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support import ROOT, example_config_for, run_cli
from test_e2e_cli import NOW, SEED

from sandbox import Sandbox

pytestmark = pytest.mark.e2e

TOKEN = "00Dxx0000001gPL!AQ4AQFake.Token.Value"  # a made-up token: it must never be printed


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(json.loads(json.dumps(SEED))) as sb:
        yield sb


def test_an_unreachable_service_is_named_with_its_url_and_the_fix(tmp_path: Path) -> None:
    config = example_config_for("http://127.0.0.1:9", tmp_path / "c.toml", {"max_attempts = 5": "max_attempts = 1"})

    result = run_cli(config, tmp_path / "s.db", "run", "--dry-run", timeout=120)

    assert result.returncode == 3
    assert "error: cannot reach Vitally at http://127.0.0.1:9: connection refused" in result.stderr
    assert f"[vitally] base_url in {config}" in result.stderr
    assert "start it with: python -m sync sandbox --port 9" in result.stderr


def test_a_refused_salesforce_token_names_its_variable_never_its_value(sandbox: Sandbox, tmp_path: Path) -> None:
    config = example_config_for(sandbox.url, tmp_path / "c.toml")
    # Salesforce answers 401 to every call, as it does to an expired or revoked token.
    sandbox.add_fault("status", path_prefix="/services/", status=401, count=10**6)

    result = run_cli(config, tmp_path / "s.db", "run", "--dry-run", env={"SALESFORCE_TOKEN": TOKEN}, timeout=120)

    assert result.returncode == 3, result.stderr
    assert f"error: Salesforce refused the credentials at {sandbox.url}" in result.stderr
    assert (
        f"the access token came from the environment variable SALESFORCE_TOKEN "
        f"([salesforce] token_env / token_file in {config})"
    ) in result.stderr
    assert "access tokens expire" in result.stderr
    assert TOKEN not in result.stderr + result.stdout


def test_global_options_are_accepted_after_the_command(sandbox: Sandbox, tmp_path: Path) -> None:
    config = example_config_for(sandbox.url, tmp_path / "c.toml")
    state = tmp_path / "s.db"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("VITALLY_", "SALESFORCE_", "CRM_SYNC_"))}

    result = subprocess.run(
        [sys.executable, "-m", "sync", "run", "--dry-run", "--format", "json", "--now", NOW,
         "--config", str(config), "--state", str(state)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=environment,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 9  # the sandbox's plan, so the --config after the command was read


def test_retry_and_explain_of_an_unknown_id_are_usage_errors(sandbox: Sandbox, tmp_path: Path) -> None:
    config = example_config_for(sandbox.url, tmp_path / "c.toml")
    state = tmp_path / "s.db"
    assert run_cli(config, state, "run", "--now", NOW, timeout=120).returncode == 0

    retry = run_cli(config, state, "retry", "99999", timeout=120)
    explain = run_cli(config, state, "explain", "acc_nope", "--now", NOW, timeout=120)

    assert retry.returncode == 2
    assert "retry 99999: no write has that id (`crm-sync failed` lists the parked ones)" in retry.stderr
    assert explain.returncode == 2, explain.stderr
    assert "error: no account or lead 'acc_nope' in the mirror, and no such account in Vitally" in explain.stderr


def test_malformed_records_are_kept_and_listed_until_fixed(sandbox: Sandbox, tmp_path: Path) -> None:
    config = example_config_for(sandbox.url, tmp_path / "c.toml")
    state = tmp_path / "s.db"
    assert run_cli(config, state, "run", "--now", NOW, timeout=120).returncode == 0
    assert run_cli(config, state, "run", "--now", NOW, timeout=120).returncode == 0  # reported once, kept

    listed = run_cli(config, state, "errors", "--format", "json", timeout=120)

    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["system"], r["record"], r["field"], r["message"]) for r in rows] == [
        ("vitally", "acc_bad", "traits.employee_count", "expected a number, got 'many'")
    ]
    assert (rows[0]["first_run"], rows[0]["last_run"]) == (1, 1)
    table = run_cli(config, state, "errors", "--format", "table", env={"COLUMNS": "80"}, timeout=120)
    assert "acc_bad" in table.stdout and max(len(line) for line in table.stdout.splitlines()) <= 80

    # A person fixes the record in Vitally: the next cycle reads it and it leaves the list.
    requests.put(
        f"{sandbox.url}/resources/accounts/acc_bad",
        json={"traits": {"employee_count": 40}},
        auth=("person", ""),
        timeout=5,
    ).raise_for_status()
    assert run_cli(config, state, "run", "--now", NOW, timeout=120).returncode == 0
    fixed = run_cli(config, state, "errors", "--format", "json", timeout=120)
    assert fixed.returncode == 0 and fixed.stdout == ""
    header = run_cli(config, state, "errors", "--format", "csv", timeout=120)
    assert header.stdout == "system,record,field,message,first_seen,last_seen,first_run,last_run\n"
    parked = run_cli(config, state, "failed", "--format", "csv", timeout=120)
    assert parked.stdout == "id,system,op,record,account,name,rule,attempts,last_attempt,error\n"
