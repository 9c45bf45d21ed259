"""The vocabulary of writes: what the planner queues, the outbox holds and the applier sends, and
the owners the round robin chose for them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["OutboxRow", "OutboxStatus", "Owner", "OwnerChoice", "PlannedWrite", "target_of", "write_key"]

OutboxStatus = Literal["pending", "done", "parked", "superseded"]


@dataclass(frozen=True)
class Owner:
    """Who a write gives a record to: the pool drawn from, the Salesforce user (or, on fallback,
    queue) id, and a name a person recognises."""

    pool: str
    user_id: str | None
    name: str

    def as_json(self) -> dict[str, Any]:
        """The `owner` of a plan line (cli.md): pool, user_id, name (`asdict`'s answer, spelled out:
        every planned write with an owner pays this twice, once stored and once rendered)."""
        return {"pool": self.pool, "user_id": self.user_id, "name": self.name}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Owner:
        return cls(pool=value["pool"], user_id=value["user_id"], name=value["name"])


@dataclass(frozen=True)
class OwnerChoice:
    """The owner chosen once for a lead key (a routed account's lead, an inbound lead, an
    onboarding specialist), as the state remembers it: who, from which pool, who else could have
    had it (`candidates`), who was passed over and why (`skipped`: user id → reason), whether the
    pool fell back to its queue, and the run that drew it."""

    key: str
    pool: str
    user_id: str | None
    name: str
    fallback: bool
    reason: str
    run_id: int
    at: str
    candidates: tuple[str, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> Owner:
        return Owner(pool=self.pool, user_id=self.user_id, name=self.name)


@dataclass(frozen=True)
class PlannedWrite:
    """One change a cycle wants made, with the rule and the reason behind it.

    `payload` is what goes on the wire (Vitally traits, Lead fields); `fields` is what the plan
    shows (cli.md); `previous` holds the current values of those fields when known. `expects`
    holds, for the payload's keys, the values the write replaces as the cycle that planned it read
    them: a write whose target no longer holds them was overtaken by a person and is not sent
    (`sync.apply`). None for a write that replaces nothing (a new lead, a task).
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
    owner: Owner | None = None
    expects: Mapping[str, Any] | None = None

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
            line["owner"] = self.owner.as_json()
        return line


@dataclass(frozen=True)
class OutboxRow:
    """One queued write. `attempts` counts the sends already tried: one that timed out or lost
    its answer may have taken effect."""

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
