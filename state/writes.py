"""The vocabulary of writes: what the planner queues, the outbox holds and the applier sends."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["OutboxRow", "OutboxStatus", "PlannedWrite", "target_of", "write_key"]

OutboxStatus = Literal["pending", "done", "parked", "superseded"]


@dataclass(frozen=True)
class PlannedWrite:
    """One change the engine wants made, with the rule and the reason behind it.

    `payload` is what goes on the wire (Vitally traits, Lead fields); `fields` is what the plan
    shows (cli.md); `previous` holds the current values of those fields when known.
    """

    system: str
    op: str
    record: str
    fields: Mapping[str, Any]
    rule: str
    reason: str
    payload: Mapping[str, Any]
    account: str | None = None
    previous: Mapping[str, Any] | None = None
    owner: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The plan line of cli.md (keys that are unknown are left out)."""
        line: dict[str, Any] = {"system": self.system, "op": self.op, "record": self.record}
        if self.account is not None:
            line["account"] = self.account
        line["fields"] = dict(self.fields)
        if self.previous is not None:
            line["previous"] = dict(self.previous)
        line["rule"] = self.rule
        line["reason"] = self.reason
        if self.owner is not None:
            line["owner"] = dict(self.owner)
        return line


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    run_id: int
    write: PlannedWrite
    status: OutboxStatus
    attempts: int
    last_error: str | None


def write_key(write: PlannedWrite) -> str:
    """Identity of a write's target and content: the same change planned twice has the same key."""
    body = json.dumps([write.system, write.op, write.record, write.payload], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def target_of(system: str, record: str, payload: Mapping[str, Any]) -> str:
    """What a write touches: a newer pending write to the same target supersedes an older one."""
    body = json.dumps([system, record, sorted(payload)], default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]
