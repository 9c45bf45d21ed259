"""The Vitally accounts of the mirror, parsed into typed `Account`s.

A cycle parses each account once, here, as the planner streams the mirror (ordered by id); a
malformed account is reported with its id and the field at fault and skipped, then and in every
later cycle until Vitally sends it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from connectors.vitally import VitallySettings
from core.errors import RecordError
from core.model import Account
from core.records import account_json_parser, parse_account
from state import StateDB
from sync.config import Config
from sync.vocabulary import CycleReport, detached
from sync.wire import WRITTEN_TRAIT

__all__ = ["iter_accounts", "parse_mirrored", "written_keys"]


def written_keys(vitally: VitallySettings) -> tuple[str, ...]:
    """The trait keys crm-sync writes (its traits, then one per managed segment, then its record
    of what it wrote, `crm_sync_written`): an account keeps their values in `Account.written`, the
    side of the diff that is already there."""
    return tuple(vitally.written_traits.values()) + tuple(vitally.segment_traits.values()) + (WRITTEN_TRAIT,)


def parse_mirrored(raw: Mapping[str, Any], config: Config) -> Account:
    """One raw Vitally account, parsed with the configured trait keys; raises `RecordError`."""
    vitally = config.vitally
    return parse_account(raw, vitally.trait_keys, written_keys(vitally), vitally.key_roles, vitally.owner_fields)


def iter_accounts(
    state: StateDB,
    config: Config,
    report: CycleReport | None = None,
    ids: Sequence[str] | None = None,
    rows: Iterable[tuple[str, str, str | None, int | None]] | None = None,
) -> Iterator[Account]:
    """Every well-formed account of the mirror (of `ids` only, when given; or of `rows`, some of its
    `StateDB.iter_accounts` rows), parsed, streamed in the mirror's order. With a `report`, an account this
    cycle read that turns out malformed is reported (id and field) and remembered as such; one
    read earlier was reported then and is skipped quietly."""
    vitally = config.vitally
    # Each account decoded once, straight from its stored text into typed fields (the same Account
    # or RecordError as parse_account over the decoded text: core.records).
    parse = account_json_parser(vitally.trait_keys, written_keys(vitally), vitally.key_roles, vitally.owner_fields)
    bad: list[tuple[str, str]] = []
    for record_id, raw, error, read_run in state.iter_accounts(ids) if rows is None else rows:
        if error:
            continue
        try:
            yield parse(raw)
        except RecordError as problem:
            if report is not None and read_run == report.run_id:
                report.record_errors.append(detached(problem))
                bad.append((record_id, json.dumps({"field": problem.field, "message": problem.message})))
    for record_id, problem_json in bad:
        state.mark_account_error(record_id, problem_json)
