"""`explain ID`: every rule's verdict on one account, fired or not, with the inputs it used."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TextIO

from connectors.errors import RecordError
from connectors.records import parse_account
from state import StateDB
from sync.config import Config
from sync.engine import Engine

__all__ = ["explain"]


def _show(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, tuple | list | dict | frozenset | set):
        return json.dumps(value if not isinstance(value, frozenset | set) else sorted(value), default=str)
    return str(value)


def explain(config: Config, state: StateDB, record_id: str, now: datetime, out: TextIO, err: TextIO) -> int:
    """Explain from the mirror, or from Vitally itself when the account is not mirrored yet."""
    from sync.app import make_vitally

    raw = state.account_raw(record_id)
    source = "state mirror"
    if raw is None:
        raw = make_vitally(config).get_account(record_id)
        source = "Vitally"
    if raw is None:
        err.write(f"error: no account {record_id!r} in the mirror or in Vitally\n")
        return 1
    engine = Engine(config, state, make_vitally(config), None, clock=lambda: now, now=now, dry_run=True)
    try:
        account = parse_account(raw, config.vitally.trait_keys, engine._written_keys)
    except RecordError as bad:
        out.write(f"{record_id}: malformed: field {bad.field}: {bad.message}\n")
        return 1
    out.write(f"account {account.id} ({account.name}) from the {source}, rules' clock {now.isoformat()}\n")
    for decision in engine.decide(account, now):
        verdict = "FIRED" if decision.fired else ("GUARDED" if decision.guarded_by else "no")
        out.write(f"\n{decision.rule}: {verdict}{' (review)' if decision.review else ''}\n")
        out.write(f"  reason: {decision.reason}\n")
        if decision.unknown:
            out.write(f"  unknown inputs: {', '.join(decision.unknown)}\n")
        for name, value in decision.inputs.items():
            out.write(f"  input {name} = {_show(value)}\n")
        if decision.fired:
            for key, value in decision.traits.items():
                out.write(f"  wants trait {key} = {_show(value)}\n")
            for segment in sorted(decision.segments):
                out.write(f"  wants segment {segment}\n")
            if decision.team:
                out.write(f"  team {decision.team}{' in ' + decision.region if decision.region else ''}\n")
    return 0
