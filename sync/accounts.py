"""The Vitally accounts of the mirror, parsed into typed `Account`s.

A cycle parses each account once, here, as the planner streams the mirror (ordered by id); a
malformed account is reported with its id and the field at fault and skipped, then and in every
later cycle until Vitally sends it again or the settings it is parsed with change
(`parser_fingerprint`): an account read well-formed that a changed config (a trait mapped to a key
holding text where a number is read) or a stricter release cannot parse is reported then, not
skipped quietly; once the settings change again, the accounts marked under the old ones are parsed
again (`StateDB.recheck_malformed`): those the change fixed are judged again, the others reported
again under the new settings.
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
from sync.incremental import code_digest, digest_of, product_version
from sync.vocabulary import CycleReport, detached
from sync.wire import WRITTEN_TRAIT

__all__ = ["iter_accounts", "malformed_mark", "parse_mirrored", "parser_fingerprint", "written_keys"]


def written_keys(vitally: VitallySettings) -> tuple[str, ...]:
    """The trait keys crm-sync writes (its traits, then one per managed segment, then its record
    of what it wrote, `crm_sync_written`): an account keeps their values in `Account.written`, the
    side of the diff that is already there."""
    return tuple(vitally.written_traits.values()) + tuple(vitally.segment_traits.values()) + (WRITTEN_TRAIT,)


def parser_fingerprint(config: Config) -> str:
    """What parsing an account depends on besides its JSON: the trait keys it is read with, the
    keys crm-sync writes, the key roles and owner fields, and the product's release and code. A
    plan that finds an account malformed marks it with this; `StateDB.recheck_malformed` parses
    again the accounts marked under another one."""
    vitally = config.vitally
    return digest_of(
        (
            vitally.trait_keys,
            written_keys(vitally),
            vitally.key_roles,
            vitally.owner_fields,
            product_version(),
            code_digest(),
        )
    )


def malformed_mark(problem: RecordError, parser: str) -> str:
    """What the mirror keeps of an account found malformed under the settings `parser`
    (`parser_fingerprint`): the field at fault and why, as JSON."""
    return json.dumps({"field": problem.field, "message": problem.message, "parser": parser})


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
    `StateDB.iter_accounts` rows), parsed, streamed in the mirror's order. With a `report`, an
    account that turns out malformed is reported (id and field) and marked so in the mirror with
    the settings it was parsed under (`parser_fingerprint`): later cycles skip it quietly, until
    Vitally sends it again or those settings change. That is an account this cycle read, or one
    read well-formed earlier that these settings cannot parse (a config edited since)."""
    vitally = config.vitally
    # Each account decoded once, straight from its stored text into typed fields (the same Account
    # or RecordError as parse_account over the decoded text: core.records).
    parse = account_json_parser(vitally.trait_keys, written_keys(vitally), vitally.key_roles, vitally.owner_fields)
    tag = parser_fingerprint(config) if report is not None else ""
    bad: list[tuple[str, str]] = []
    for record_id, raw, error, _ in state.iter_accounts(ids) if rows is None else rows:
        if error:
            continue
        try:
            yield parse(raw)
        except RecordError as problem:
            if report is not None:
                report.record_errors.append(detached(problem))
                bad.append((record_id, malformed_mark(problem, tag)))
    for record_id, problem_json in bad:
        state.mark_account_error(record_id, problem_json)
