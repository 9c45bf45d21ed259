"""`Routing_Reason__c` is read with every lead, so a reason already there is not written again.

Before, crm-sync wrote the field but never read it back: a lead that stays unrouted (its team has
no round-robin pool in the config, so nobody is drawn) had the same `Routing_Reason__c` planned
every cycle, shown in every plan and looked at again before each apply (where it was found
"already there"). State migration 13 forgets the Lead cursors, so an existing mirror is read once
more and gains the field. The field is one the operator's guide creates for crm-sync
(docs/salesforce-setup.md; `sync.preflight` checks it), a Text(255) in the sandbox's describe."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support import back_to_schema
from test_minicycle import DEMO_REQUEST, World, _web_to_lead, _world

from state import StateDB


@pytest.fixture(name="world")
def _no_tae_pool(tmp_path: Path) -> Iterator[World]:
    """The sandbox org with no TAE pool: a demo request is routed (rule and reason) but unowned."""
    for world in _world(tmp_path):
        world.config = replace(world.config, pools={k: v for k, v in world.config.pools.items() if k[0] != "TAE"})
        yield world


def _reason_writes(world: World, lead_id: str) -> list[object]:
    """The `Routing_Reason__c` values a cycle plans for the lead."""
    return [
        w.fields["Routing_Reason__c"]
        for w in world.cycle().plan
        if w.record == lead_id and "Routing_Reason__c" in w.fields
    ]


def test_an_unowned_lead_s_routing_reason_is_written_once_not_every_cycle(world: World) -> None:
    world.cycle()
    [lead_id] = _web_to_lead(world, DEMO_REQUEST)
    [reason] = _reason_writes(world, lead_id)
    assert str(reason).startswith("new_business.demo_request: ")
    assert [lead["Routing_Reason__c"] for lead in world.leads()] == [reason]
    assert _reason_writes(world, lead_id) == []  # before: the same reason planned again
    assert world.cycle().counts["planned"] == 0


def test_a_mirror_from_before_migration_13_is_read_again_and_stops_repeating(world: World) -> None:
    """A state whose mirrored leads lack the field (read by the build before): once migrated, the
    next cycle reads every lead again, and the one after plans nothing."""
    world.cycle()
    [lead_id] = _web_to_lead(world, DEMO_REQUEST)
    world.cycle()
    world.state.close()
    with sqlite3.connect(world.path) as conn:  # the old build's mirror and schema version
        [(raw,)] = conn.execute("SELECT raw FROM sf_records WHERE object = 'Lead' AND id = ?", [lead_id])
        old = {k: v for k, v in json.loads(raw).items() if k != "Routing_Reason__c"}
        text = json.dumps(old)
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        conn.execute("UPDATE sf_records SET raw = ?, digest = ? WHERE id = ?", [text, digest, lead_id])
        back_to_schema(conn, 12)  # before migration 13
        lead_cursors = "SELECT count(*) FROM cursors WHERE name IN ('salesforce.Lead', 'salesforce.Lead.queried_at')"
        assert conn.execute(lead_cursors).fetchone() == (2,)
    world.state = StateDB.open(world.path)
    assert world.state.cursor("salesforce.Lead") is None
    assert world.state.cursor("salesforce.Lead.queried_at") is None

    report = world.cycle()

    assert report.counts["sf_lead_read"] == 1
    assert "Routing_Reason__c" in (world.state.sf_raw("Lead", lead_id) or {})
    assert not any("Routing_Reason__c" in w.fields for w in report.plan)
    assert world.cycle().counts["planned"] == 0
