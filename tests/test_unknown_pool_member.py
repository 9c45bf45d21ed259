"""A pool member whose user id the Salesforce org does not have is skipped by the round robin.

Salesforce refuses such an id as a lead's OwnerId (`INVALID_CROSS_REFERENCE_KEY: invalid cross
reference id`), and a drawn owner is remembered and re-sent: a lead drawn for a mistyped id was
parked for good, even after the id was fixed in the config, and never created (found by a review,
2026-12-06). docs/round-robin.md promised the skip; only users with `IsActive = false` were.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from support import dry_cycle, sandbox_org_config

from rules.round_robin import Member
from sandbox import Sandbox, generate_book

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
MISSING = "005000000000999AAA"  # no user of the sandbox's org


def test_a_member_the_org_has_no_user_for_is_never_drawn() -> None:
    book = generate_book(300, seed=11, now=NOW)
    assert MISSING not in {user["Id"] for user in book["salesforce"]["User"]}
    with Sandbox(book, now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        pools = dict(config.pools)
        for key, pool in pools.items():
            # The unknown member first, with the highest weight: it would win most draws.
            pools[key] = replace(pool, members=(Member(MISSING, "Xan Missing", weight=10), *pool.members))
        config = replace(config, pools=pools)
        report = dry_cycle(config, NOW)
    owners = [w.owner.user_id for w in report.plan if w.owner is not None]
    assert len(owners) > 10
    assert MISSING not in owners
