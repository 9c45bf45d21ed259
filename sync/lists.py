"""The commands that list or change what the state keeps, and `init`: `failed` (writes parked
after a permanent refusal), `errors` (malformed records the cycles skipped), `retry` (send parked
writes again) and `init` (a commented starter config).

Lists go to stdout as a table for people, json lines or csv (`sync.output.render_rows`, every
value through `sync.safe`); "nothing to list" goes to stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from state import StateDB, StateLock
from sync.config import Config
from sync.output import Column, Format, Names, render_rows
from sync.scope import UsageError
from sync.vocabulary import iso

__all__ = ["malformed_records", "parked_writes", "retry_parked", "write_starter_config"]

PARKED_KEYS = ("id", "system", "op", "record", "account", "name", "rule", "attempts", "last_attempt", "error")
PARKED_LAYOUT = (
    Column("id", ("id",), 6),
    Column("write", ("name", "record", "op"), 20),
    Column("rule", ("rule", "attempts_text", "last_attempt"), 24),
    Column("error", ("error",)),
)
MALFORMED_KEYS = ("system", "record", "field", "message", "first_seen", "last_seen", "first_run", "last_run")
MALFORMED_LAYOUT = (
    Column("record", ("system", "record"), 20),
    Column("field · message", ("field", "message")),
    Column("first / last seen", ("first_seen", "last_seen"), 17),
)


def parked_writes(config: Config, fmt: Format, out: TextIO, err: TextIO) -> int:
    """`failed`: every parked write with its error, the account's (or lead's) name and when it was
    last tried. Exit 0."""
    state = StateDB.snapshot(config.state_path)
    try:
        names = Names(state)
        rows = state.outbox("parked")
        tried = state.outbox_times(row.id for row in rows)
        listed: list[dict[str, Any]] = []
        for row in rows:
            write = row.write
            name = names.lead(write.record) if write.op == "update_lead" else names.account(write.account)
            listed.append(
                {
                    "id": row.id,
                    "system": write.system,
                    "op": write.op,
                    "record": write.record,
                    "account": write.account,
                    "name": name,
                    "rule": write.rule,
                    "attempts": row.attempts,
                    "attempts_text": f"tried {row.attempts} time(s)",
                    "last_attempt": tried.get(row.id),
                    "error": row.last_error,
                }
            )
    finally:
        state.close()
    if not listed:
        err.write("no parked writes\n")
        if fmt == "csv":  # a program reading the csv still gets its columns
            render_rows([], PARKED_KEYS, PARKED_LAYOUT, fmt, out, title="")
        return 0
    title = f"{len(listed)} parked write(s): fix the cause, then `crm-sync retry [ID]`"
    shown = listed if fmt == "table" else [{k: v for k, v in row.items() if k != "attempts_text"} for row in listed]
    render_rows(shown, PARKED_KEYS, PARKED_LAYOUT, fmt, out, title=title)
    return 0


def malformed_records(config: Config, fmt: Format, out: TextIO, err: TextIO) -> int:
    """`errors`: every malformed record the state keeps (id, field, message, first and last seen);
    a record leaves the list once a service sends it again well-formed. Exit 0."""
    state = StateDB.snapshot(config.state_path)
    try:
        rows = state.malformed()
    finally:
        state.close()
    if not rows:
        err.write("no malformed records kept (a dry run keeps none: its findings are on its stderr)\n")
        if fmt == "csv":  # a program reading the csv still gets its columns
            render_rows([], MALFORMED_KEYS, MALFORMED_LAYOUT, fmt, out, title="")
        return 0
    title = f"{len(rows)} malformed record(s), skipped until their service sends them fixed"
    render_rows(rows, MALFORMED_KEYS, MALFORMED_LAYOUT, fmt, out, title=title)
    return 0


def retry_parked(config: Config, row_id: int | None, out: TextIO, now: datetime) -> int:
    """`retry [ID]`: queue parked writes again (all, or one); exit 0. An id that names no write,
    or one that is not parked, is a `UsageError` (exit 2)."""
    with StateLock(config.state_path):
        state = StateDB.open(config.state_path)
        try:
            with state.atomic():
                if row_id is not None:
                    status = state.outbox_status(row_id)
                    if status is None:
                        raise UsageError(
                            f"retry {row_id}: no write has that id (`crm-sync failed` lists the parked ones)"
                        )
                    if status != "parked":
                        raise UsageError(f"retry {row_id}: that write is {status}, not parked: nothing to send again")
                count = state.unpark(row_id, iso(now))
        finally:
            state.close()
    if count == 0:
        out.write("no parked writes: nothing to retry\n")
    else:
        out.write(f"{count} parked write(s) queued again; the next cycle sends them if its plan still wants them\n")
    return 0


NEXT_STEPS = """\
wrote {path}: every setting at its default, each under a comment with its meaning and limits.
It works unchanged against the local sandbox (python -m sync sandbox). For your own services:
  1. set [vitally] base_url and [salesforce] instance_url;
  2. export VITALLY_API_KEY and SALESFORCE_TOKEN (or the client credentials), never in the file;
  3. replace the example [[pools]] with your sales team's Salesforce user ids (docs/round-robin.md);
  4. review what would change: crm-sync --config {path} run --dry-run --out plan.json
See docs/data-model.md for the fields both services need, and docs/operations.md for a Salesforce
sandbox org first, a staged rollout and how long the first sync takes.
"""


def write_starter_config(path: Path, out: TextIO) -> int:
    """`init [PATH]`: the commented example config written to `path`, never over an existing
    file (`UsageError`, exit 2)."""
    from sync.example import render_example

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError(
            f"{path} exists: not overwritten (move it away, or name another file: crm-sync init FILE)"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot write it ({exc.strerror or type(exc).__name__})") from None
    with open(fd, "w", encoding="utf-8") as starter:
        starter.write(render_example())
    out.write(NEXT_STEPS.format(path=path))
    return 0
