"""End to end over the generated book: every rule id fires at least once and is explained."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import example_config_for, run_cli

from rules import ALL_RULE_IDS
from sandbox import Sandbox, generate_book
from sandbox.store import DEFAULT_OWNER_USER_ID

pytestmark = pytest.mark.e2e

NOW = "2026-11-22T09:00:00Z"
# Rules that only inform (they write nothing, so they never appear in a plan).
SILENT = {"demo.instant_scheduler"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(generate_book(300, seed=11, now=datetime(2026, 11, 22, 9, tzinfo=UTC))) as sb:
        yield sb


cli = run_cli


def test_cli_every_rule_fires_and_is_explained(sandbox: Sandbox, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    example_config_for(sandbox.url, config)
    state = tmp_path / "state.db"
    # Everything read and mirrored, one account written, the rest left pending: `explain` then
    # reads the leads as the rules saw them. After their writes it reads them as crm-sync's writes
    # left them (the mirror is shown its own writes), and a lead already routed, scored and
    # classified fires no routing, scoring or classification rule.
    run = cli(config, state, "run", "--max-writes", "1", "--format", "json", "--now", NOW)
    assert run.returncode == 0, run.stderr
    plan = [json.loads(line) for line in run.stdout.splitlines()]
    example: dict[str, str] = {}
    for line in plan:
        assert line["reason"], line
        example.setdefault(line["rule"], line["account"] if line["op"] == "create_task" else line["record"])
    missing = sorted(set(ALL_RULE_IDS) - SILENT - set(example))
    assert missing == [], f"rules that never planned a write over the generated book: {missing}"

    lead = next(
        record
        for record in {line["record"] for line in plan if line["record"].startswith("00Q")}
        if "demo.instant_scheduler: FIRED" in cli(config, state, "explain", record, "--now", NOW).stdout
    )
    example["demo.instant_scheduler"] = lead
    explained = cli(config, state, "explain", *example.values(), "--now", NOW)
    assert explained.returncode == 0, explained.stderr
    blocks = explained.stdout.split("\n\n")
    for rule in ALL_RULE_IDS:
        verdicts = [b for b in blocks if b.startswith(f"{rule}: ")]
        assert any("FIRED" in v.splitlines()[0] or "ALSO MATCHED" in v.splitlines()[0] for v in verdicts), rule
        assert all("reason: " in v for v in verdicts), rule


@pytest.fixture
def fresh() -> Iterator[Sandbox]:
    with Sandbox(generate_book(300, seed=11, now=datetime(2026, 11, 22, 9, tzinfo=UTC))) as sb:
        yield sb


def test_cli_inbound_leads_get_an_owner_from_the_tae_pool(fresh: Sandbox, tmp_path: Path) -> None:
    sandbox = fresh
    config = tmp_path / "config.toml"
    example_config_for(sandbox.url, config)
    before = {lead["Id"]: lead for lead in sandbox.state()["salesforce"]["Lead"]}
    run = cli(config, tmp_path / "state.db", "run", "--format", "json", "--now", NOW)
    assert run.returncode == 0, run.stderr
    owned = [json.loads(line) for line in run.stdout.splitlines() if '"update_lead"' in line and '"OwnerId"' in line]
    assert owned, "no inbound lead was given an owner"
    after = {lead["Id"]: lead for lead in sandbox.state()["salesforce"]["Lead"]}
    tae = {"005000000000010AAA", "005000000000011AAA", "005000000000012AAA", "005000000000013AAA"}
    for line in owned:
        # Waiting for routing as a real org holds it: in a queue or with the default lead owner.
        waiting = before[line["record"]]["OwnerId"]
        assert waiting == DEFAULT_OWNER_USER_ID or waiting.startswith("00G"), waiting
        assert line["owner"]["pool"].startswith("TAE/")
        assert after[line["record"]]["OwnerId"] == line["fields"]["OwnerId"] in tae
