"""Salesforce ids in their two forms (issue 17's review against the REST API's documentation:
"Input objects can use 15 character IDs or 18 character IDs"; every id the API answers with is
the 18-character one). The sandbox keeps and answers a reference given by its 15-character id in
its 18-character form, as an org does; crm-sync turns the ids its config names into that form,
so a pool member given by the 15-character id is the user the mirror holds (before, a deactivated
user given so was still drawn and the write parked with INACTIVE_OWNER_OR_USER)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import requests
from support import example_config_for, with_fallback_queues

from sandbox import Sandbox, SandboxConfig, generate_book
from sandbox.store import DEFAULT_OWNER_USER_ID
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import load_config
from sync.cycle import run_cycle

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def test_the_sandbox_answers_a_reference_written_by_its_15_character_id_with_the_18() -> None:
    book = with_fallback_queues(generate_book(50, seed=3, now=NOW, real_org=True))
    user = next(u["Id"] for u in book["salesforce"]["User"] if u.get("IsActive") is not False)
    with Sandbox(book, config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        headers = {"Authorization": "Bearer x", "Sforce-Auto-Assign": "FALSE"}
        base = f"{sandbox.url}/services/data/v59.0"
        made = requests.post(
            f"{base}/sobjects/Lead",
            json={"LastName": "N", "Company": "C", "OwnerId": user[:15]},
            headers=headers,
            timeout=10,
        )
        assert made.status_code == 201, made.text
        lead = requests.get(f"{base}/sobjects/Lead/{made.json()['id']}", headers=headers, timeout=10).json()
    assert len(user) == 18
    assert lead["OwnerId"] == user


def _config_with_15_character_members(url: str, path: Path) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    ids = sorted(set(re.findall(r'user_id = "(005[0-9A-Za-z]{15})"', text)))
    assert ids
    replacements = {f'user_id = "{i}"': f'user_id = "{i[:15]}"' for i in ids}
    replacements["unrouted_owners = []"] = f'unrouted_owners = ["{DEFAULT_OWNER_USER_ID}"]'
    return example_config_for(url, path, replacements)


def test_a_pool_member_given_by_the_15_character_id_is_skipped_once_deactivated(tmp_path: Path) -> None:
    book = with_fallback_queues(generate_book(300, seed=7, now=NOW, real_org=True))
    inactive = {u["Id"] for u in book["salesforce"]["User"] if u.get("IsActive") is False}
    with Sandbox(book, config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = load_config(_config_with_15_character_members(sandbox.url, tmp_path / "config.toml"))
        members = {m.user_id for pool in config.pools.values() for m in pool.members}
        assert members <= {u["Id"] for u in book["salesforce"]["User"]}  # the ids Salesforce answers with
        assert members & inactive, "the generated team has members Salesforce deactivated"
        report = run_cycle(
            config, StateDB.memory(), make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW
        )
    # Compared by the first 15 characters, which both forms share.
    drawn = {str(w.fields.get("OwnerId"))[:15] for w in report.plan if w.system == "salesforce" and w.fields}
    assert drawn & {m[:15] for m in members}, "the round robin drew the pools' members"
    assert not drawn & {i[:15] for i in inactive}
    assert report.counts["parked"] == 0
