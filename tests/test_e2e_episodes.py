"""A lead's episode end to end (issue #15): the real CLI against the sandbox, with the sandbox clock
(`POST /_sandbox/clock`) moving time on and people changing crm-sync's leads through Salesforce's
sObject API as they would in Salesforce.

- A lead a person disqualifies is not followed by a second lead within the 90-day cool-off, and is
  after it (`crm-sync-<account>-2`).
- A lead converted without an opportunity does not re-route its account.
- A lead its owner sets to "Nurturing" gets exactly one follow-up task in Vitally, however many
  cycles run.

Each cycle runs with `--now` at the sandbox's time, so the rules and Salesforce's SystemModstamp
agree on what "today" is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from support import band_account, example_config_for, person_sets_lead, run_cli

from sandbox import Sandbox, generate_book
from sandbox.store import sf_timestamp

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SF = "/services/data/v59.0"
DAY = 86_400
pytestmark = pytest.mark.e2e


def _band_account(n: int) -> dict[str, Any]:
    """A self-serve account in the product-led MRR band (product_led.mrr_band fires)."""
    return band_account(f"acc_ep{n}", f"Episode {n} GmbH", f"episode{n}.de")


@dataclass
class World:
    sandbox: Sandbox
    config: Path
    state: Path

    def cycle(self) -> None:
        now = self.sandbox.now().isoformat()
        result = run_cli(self.config, self.state, "run", "--now", now, "--format", "json", timeout=120)
        assert result.returncode == 0, result.stderr

    def advance(self, seconds: float) -> None:
        reply = requests.post(f"{self.sandbox.url}/_sandbox/clock", json={"advance_seconds": seconds}, timeout=5)
        reply.raise_for_status()

    def leads_of(self, account: str) -> list[dict[str, Any]]:
        leads = self.sandbox.state()["salesforce"]["Lead"]
        return sorted(
            (lead for lead in leads if str(lead.get("Sync_Key__c") or "").startswith(f"crm-sync-{account}-")),
            key=lambda lead: lead["Sync_Key__c"],
        )

    def person_sets(self, lead_id: str, **fields: Any) -> None:
        """A person's edit through the sObject API (Salesforce stamps it with its own clock)."""
        person_sets_lead(self.sandbox.url, lead_id, **fields)

    def person_converts(self, lead: dict[str, Any]) -> None:
        """A conversion without an opportunity, as convertLead leaves the lead (IsConverted and
        ConvertedDate are read-only in the API: the sandbox's load control stands in)."""
        now = self.sandbox.now()
        converted = {
            **lead,
            "IsConverted": True,
            "Status": "Qualified",
            "ConvertedDate": now.date().isoformat(),
            "ConvertedOpportunityId": None,
            "SystemModstamp": sf_timestamp(now),
        }
        reply = requests.post(
            f"{self.sandbox.url}/_sandbox/load", json={"salesforce": {"Lead": [converted]}}, timeout=5
        )
        reply.raise_for_status()

    def tasks_of(self, account: str, rule: str) -> list[dict[str, Any]]:
        tasks = self.sandbox.state()["vitally"]["tasks"]
        prefix = f"crm-sync:{rule}:{account}:"
        return [task for task in tasks if str(task.get("externalId") or "").startswith(prefix)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("episodes")
    seed = generate_book(0, now=T0)  # the sales team (Salesforce users of the example pools), no accounts
    seed["vitally"]["accounts"] = [_band_account(n) for n in (1, 2, 3)]
    del seed["_cases"]
    with Sandbox(seed, now=T0) as sandbox:
        config = example_config_for(sandbox.url, tmp / "config.toml")
        world = World(sandbox, config, tmp / "state.db")
        world.cycle()  # routes all three: one lead each
        yield world


def test_e2e_episode_story(world: World) -> None:
    """One story, cycle by cycle, so the clock moves once for every account."""
    first = {account: world.leads_of(account) for account in ("acc_ep1", "acc_ep2", "acc_ep3")}
    assert {account: [lead["Sync_Key__c"] for lead in leads] for account, leads in first.items()} == {
        account: [f"crm-sync-{account}-1"] for account in first
    }
    assert all(leads[0]["Routing_Rule__c"] == "product_led.mrr_band" for leads in first.values())

    world.advance(3600)  # people work the leads an hour later
    world.person_sets(first["acc_ep1"][0]["Id"], Status="Disqualified")
    world.person_converts(first["acc_ep2"][0])
    world.person_sets(first["acc_ep3"][0]["Id"], Status="Nurturing")

    seen: dict[int, dict[str, int]] = {}
    previous = 0
    for day in (1, 30, 89, 91):  # days after the people's edits
        world.advance((day - previous) * DAY)
        previous = day
        world.cycle()
        seen[day] = {account: len(world.leads_of(account)) for account in ("acc_ep1", "acc_ep2", "acc_ep3")}
        seen[day]["nurture_tasks"] = len(world.tasks_of("acc_ep3", "episode.nurture_follow_up"))
    # Disqualified by a person: no second lead within the cool-off; a second one after it.
    assert [seen[day]["acc_ep1"] for day in (1, 30, 89, 91)] == [1, 1, 1, 2]
    second = world.leads_of("acc_ep1")[1]
    assert second["Sync_Key__c"] == "crm-sync-acc_ep1-2"
    assert second["Routing_Rule__c"] == "product_led.mrr_band"
    # Converted without an opportunity: never re-routed.
    assert [seen[day]["acc_ep2"] for day in (1, 30, 89, 91)] == [1, 1, 1, 1]
    # Nurturing: its lead stays the only one, and exactly one follow-up task, created once.
    assert [seen[day]["acc_ep3"] for day in (1, 30, 89, 91)] == [1, 1, 1, 1]
    assert [seen[day]["nurture_tasks"] for day in (1, 30, 89, 91)] == [1, 1, 1, 1]
    (task,) = world.tasks_of("acc_ep3", "episode.nurture_follow_up")
    assert task["accountId"] == "acc_ep3"
    assert task["externalId"] == f"crm-sync:episode.nurture_follow_up:acc_ep3:{first['acc_ep3'][0]['Id']}"
    assert task["dueDate"] == "2027-01-07"  # 45 days after the first cycle that saw the decision

    # explain says why the converted account is held; the report counts the leads per trigger once
    # the mirror has read the last cycle's lead.
    world.cycle()
    now = world.sandbox.now().isoformat()
    result = run_cli(world.config, world.state, "explain", "acc_ep2", "--now", now)
    assert result.returncode == 0, result.stderr
    assert "lead episodes:" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("product_led: converted"))
    assert "blocks a new lead" in line and "without an opportunity (hold 365 days)" in line, line
    report = run_cli(world.config, world.state, "report", "--format", "json", "--section", "rules")
    assert report.returncode == 0, report.stderr
    rules = {line["rule"]: line for line in json.loads(report.stdout)["rules"]}
    assert rules["product_led.mrr_band"]["created"] == 4
    assert rules["product_led.mrr_band"]["converted"] == 1
