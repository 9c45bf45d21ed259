"""The plan file: what `run --dry-run --out FILE` saves for review and `apply FILE` applies exactly.

JSON Lines, self-describing (docs/cli.md, "The plan file", has the whole format):

    {"crm_sync_plan": 1, "crm_sync_version": …, "created_at": …, "now": …, "config": {…},
     "state": {…, "cursors": {…}}, "scope": {…}}                              the header
    {"write": 1, "system": …, "op": …, "record": …, …, "payload": …, "expects": …, "draw": {…}}
    … one line per planned write, in the plan's order …
    {"end": N, "owners": M, "sha256": "<hex>"}                                   the trailer

Each write line is the plan line of `--format json` plus what `apply` needs: `payload` (what goes
on the wire), `expects` (the values it replaces, as the dry run read them) and, for a write whose
owner the dry run drew from a round-robin pool, `draw` (the whole draw: key, pool, member,
candidates, who was skipped and why). The trailer's hash covers every line before it: a plan
edited after it was written, or cut short, is refused (select writes with `apply --account` and
`--rule` instead). The config hash covers what changes a plan (every table but `[state]`,
`[daemon]`, `[alerts]` and `[report]`), read from the parsed file, so comments and layout do not
count.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from state import Owner, OwnerChoice, PlannedWrite
from sync.config import Config
from sync.scope import Scope, UsageError

__all__ = ["FORMAT_VERSION", "Plan", "PlannedDraw", "config_hash", "draw_keys", "read_plan", "write_plan"]

FORMAT_VERSION = 1
# Tables that change nothing a cycle plans: a plan stays valid when they change.
_NOT_PLANNING = frozenset({"state", "daemon", "alerts", "report"})


def config_hash(config: Config) -> str:
    """The sha256 of what in the config file changes a plan (every table but [state], [daemon],
    [alerts], [report]), as parsed: the same settings in another layout hash the same."""
    data: dict[str, Any] = {}
    if config.source is not None:
        data = tomllib.loads(Path(config.source).read_text(encoding="utf-8"))
    kept = {key: value for key, value in data.items() if key not in _NOT_PLANNING}
    text = json.dumps(kept, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def draw_keys(write: PlannedWrite) -> tuple[str, ...]:
    """The keys under which the planner records the owner a write carries (`sync.plan`): a new
    lead's `Sync_Key__c`, an inbound lead's Id, `onboarding-<account>` for a specialist."""
    keys = [write.record]
    if write.account is not None:
        keys.append(f"onboarding-{write.account}")
    return tuple(keys)


@dataclass(frozen=True)
class PlannedDraw:
    """A planned write and the round-robin draw that chose its owner, if the dry run drew one."""

    number: int
    write: PlannedWrite
    draw: OwnerChoice | None


@dataclass(frozen=True)
class Plan:
    """A plan file read back: its header and its writes, checked whole."""

    header: Mapping[str, Any]
    writes: tuple[PlannedDraw, ...]
    path: Path

    @property
    def now(self) -> datetime:
        """The rules' clock the plan was made at (`apply` judges again at the same moment)."""
        return datetime.fromisoformat(str(self.header["now"]).replace("Z", "+00:00"))

    @property
    def scope(self) -> Scope:
        scope = self.header.get("scope") or {}
        accounts, rules = scope.get("accounts"), scope.get("rules")
        return Scope(None if accounts is None else frozenset(accounts), None if rules is None else tuple(rules))


# -- writing --------------------------------------------------------------------------------------------


def _write_line(write: PlannedWrite, number: int, draw: OwnerChoice | None) -> dict[str, Any]:
    line: dict[str, Any] = {"write": number, **write.as_json()}
    line["payload"] = dict(write.payload)
    line["expects"] = None if write.expects is None else dict(write.expects)
    if draw is not None:
        line["draw"] = {
            "key": draw.key,
            "pool": draw.pool,
            "user_id": draw.user_id,
            "name": draw.name,
            "fallback": draw.fallback,
            "reason": draw.reason,
            "candidates": list(draw.candidates),
            "skipped": dict(draw.skipped),
        }
    return line


def _draw_of(write: PlannedWrite, draws: Mapping[str, OwnerChoice]) -> OwnerChoice | None:
    if write.owner is None:
        return None
    for key in draw_keys(write):
        draw = draws.get(key)
        if draw is not None and draw.user_id == write.owner.user_id:
            return draw
    return None


def write_plan(
    path: Path,
    writes: Iterable[PlannedWrite],
    draws: Iterable[OwnerChoice],
    header: Mapping[str, Any],
) -> int:
    """Write the plan file at `path` (owner-only, replaced atomically only once complete), a line
    at a time; `header` is its first line. Returns how many writes it holds."""
    by_key = {draw.key: draw for draw in draws}
    temporary = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    count = owners = 0
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as out:

        def put(line: Mapping[str, Any]) -> None:
            text = json.dumps(line, ensure_ascii=False, allow_nan=False, default=str) + "\n"
            out.write(text)
            digest.update(text.encode())

        put({"crm_sync_plan": FORMAT_VERSION, **header})
        for number, write in enumerate(writes, start=1):
            draw = _draw_of(write, by_key)
            put(_write_line(write, number, draw))
            count, owners = number, owners + (draw is not None)
        out.write(json.dumps({"end": count, "owners": owners, "sha256": digest.hexdigest()}) + "\n")
    os.replace(temporary, path)
    return count


# -- reading --------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8") as source:
            return source.read().splitlines(keepends=True)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it ({type(exc).__name__})") from None


def _checked(path: Path, lines: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the write lines, after the format, the count and the hash are checked."""
    try:
        parsed = [json.loads(line) for line in lines]
    except ValueError:
        raise UsageError(f"{path}: not a crm-sync plan file (not JSON lines)") from None
    if not parsed or not isinstance(parsed[0], dict) or "crm_sync_plan" not in parsed[0]:
        raise UsageError(f"{path}: not a crm-sync plan file (no header)")
    header, trailer = parsed[0], parsed[-1]
    if header["crm_sync_plan"] != FORMAT_VERSION:
        raise UsageError(f"{path}: plan format {header['crm_sync_plan']!r}; this crm-sync reads {FORMAT_VERSION}")
    digest = hashlib.sha256("".join(lines[:-1]).encode()).hexdigest()
    complete = isinstance(trailer, dict) and trailer.get("end") == len(parsed) - 2
    if not complete or trailer.get("sha256") != digest:
        raise UsageError(
            f"{path}: the plan file was changed or cut short after it was written (its hash does not match); "
            "make the plan again, or choose writes with --account and --rule"
        )
    return header, parsed[1:-1]


def _draw(value: Mapping[str, Any]) -> OwnerChoice:
    return OwnerChoice(
        key=value["key"],
        pool=value["pool"],
        user_id=value["user_id"],
        name=value["name"],
        fallback=bool(value["fallback"]),
        reason=value["reason"],
        run_id=0,
        at="",
        candidates=tuple(value["candidates"]),
        skipped=dict(value["skipped"]),
    )


def _planned(line: Mapping[str, Any]) -> PlannedDraw:
    owner = line.get("owner")
    write = PlannedWrite(
        system=line["system"],
        op=line["op"],
        record=line["record"],
        fields=line["fields"],
        rule=line["rule"],
        reason=line["reason"],
        payload=line["payload"],
        account=line.get("account"),
        previous=line.get("previous"),
        owner=None if owner is None else Owner.from_json(owner),
        expects=line.get("expects"),
    )
    draw = line.get("draw")
    return PlannedDraw(int(line["write"]), write, None if draw is None else _draw(draw))


def read_plan(path: Path) -> Plan:
    """The plan file at `path`, checked whole (format, count, hash); `UsageError` otherwise."""
    header, lines = _checked(path, _lines(path))
    try:
        writes = tuple(_planned(line) for line in lines)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: a write line lacks {exc}") from None
    return Plan(header, writes, path)
