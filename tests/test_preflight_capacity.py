"""`check` names a pool member whose capacity cannot be counted.

A TAM's managed accounts are counted by the email in their TAM key role (`[[pools]] members`'
`email`); a member with a capacity and no email was drawn past the handbook's "soft cap of 15
managed accounts" (plg-lead-qualification.md) with nothing said (found by a review, 2026-12-06).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sync.config import load_config
from sync.preflight import capacity_problems

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_config_has_no_uncountable_capacity() -> None:
    assert capacity_problems(load_config(ROOT / "config.example.toml")) == []


def test_a_member_with_a_capacity_and_no_email_is_a_problem() -> None:
    config = load_config(ROOT / "config.example.toml")
    pools = dict(config.pools)
    key, pool = next((k, p) for k, p in pools.items() if p.members[0].capacity is not None)
    first = pool.members[0]
    pools[key] = replace(pool, members=(replace(first, email=None), *pool.members[1:]))
    assert capacity_problems(replace(config, pools=pools)) == [
        f"pools[{pool.key}].members: {first.name} ({first.user_id}) has a capacity of {first.capacity} but no "
        "email: their managed accounts cannot be counted, so the cap never applies: add the email their TAM "
        "key role has in Vitally"
    ]
