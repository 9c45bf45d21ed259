"""Rendering for people (a table that fits the terminal, 80 columns when it is not one) and for
programs (json lines, csv), per docs/cli.md: the plan, and the lists of `failed` and `errors`.

The plan table names accounts, leads and owners (from the state's mirror: `Names`), shows each
change on a line of its own (`lifecycle_stage: ∅ → Self serve`, `+ segment Onboarding`, `task
"Onboard Acme" due 2026-12-01`, `new lead … owner Avery Collins (TAM/US)`) and wraps long reasons
instead of widening the table; json and csv keep every value whole and unchanged.

Every value comes from the services and is printed through `sync.safe`: the table shows it as
plain text (never markup) with control characters escaped, a CSV cell never runs as a formula, and
every JSON line is valid JSON."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:  # imported where a table is drawn: a JSON or CSV run never loads rich (25-30 ms)
    from rich.console import Console
    from rich.table import Table

from state import PlanLog, PlannedWrite, StateDB
from sync.safe import csv_cell, json_line, printable

__all__ = ["CSV_COLUMNS", "Column", "Format", "Names", "describe_change", "render_plan", "render_rows"]

Format = Literal["table", "json", "csv"]
CSV_COLUMNS = ("system", "op", "record", "account", "fields", "previous", "rule", "reason", "owner")

_VALUE = 60  # characters of one value shown in a table cell (json and csv keep it whole)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json_line(value, sort_keys=True)
    return str(value)


def _short(value: Any, width: int = _VALUE) -> str:
    """A value as a table shows it: `∅` for nothing, JSON for a structure, cut to `width`."""
    text = "∅" if value is None else value if isinstance(value, str) else _cell(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class Names:
    """Names a person recognises for the ids of a plan, read from the state's mirror: accounts
    (their Vitally name), leads (name and company) and Salesforce users (owners). Unknown ids are
    shown as they are."""

    def __init__(self, state: StateDB | None) -> None:
        self._state = state
        self._users: dict[str, str] | None = None

    def account(self, account_id: str | None) -> str | None:
        if self._state is None or account_id is None:
            return None
        raw = self._state.account_raw(account_id)
        name = None if raw is None else raw.get("name")
        return name if isinstance(name, str) and name else None

    def vitally_user(self, account_id: str | None, user_id: str) -> str:
        """A Vitally user's name, from the key roles of the account (the task's assignee is one of
        its people); the id when it is not among them."""
        raw = None if self._state is None or account_id is None else self._state.account_raw(account_id)
        roles = raw.get("keyRoles") if isinstance(raw, dict) else None
        for role in roles if isinstance(roles, list) else []:
            person = role.get("vitallyUser") if isinstance(role, dict) else None
            if isinstance(person, dict) and person.get("id") == user_id and isinstance(person.get("name"), str):
                return str(person["name"])
        return user_id

    def lead(self, lead_id: str) -> str | None:
        if self._state is None:
            return None
        raw = self._state.sf_raw("Lead", lead_id) or {}
        person = " ".join(str(raw[k]) for k in ("FirstName", "LastName") if raw.get(k))
        company = raw.get("Company")
        parts = [p for p in (person, company if isinstance(company, str) else None) if p]
        return ", ".join(parts) or None

    def user(self, user_id: Any) -> str:
        """A Salesforce user's name (a queue or an unknown id as it is)."""
        if not isinstance(user_id, str):
            return _short(user_id)
        if self._users is None:
            self._users = {}
            if self._state is not None:
                for record_id, raw, error in self._state.iter_sf("User"):
                    name = None if error else json.loads(raw).get("Name")
                    if isinstance(name, str):
                        self._users[record_id] = name
        return self._users.get(user_id, user_id)


# -- one change in words -----------------------------------------------------------------------------


def _owner(write: PlannedWrite) -> str:
    owner = write.owner
    return "" if owner is None else f"{owner.name} ({owner.pool})"


def _traits(write: PlannedWrite, names: Names) -> list[str]:
    previous = write.previous or {}
    return [f"{key}: {_short(previous.get(key))} → {_short(value)}" for key, value in write.fields.items()]


def _task(write: PlannedWrite, names: Names) -> list[str]:
    task = write.fields
    line = f'task "{_short(task.get("name"))}"'
    if task.get("dueDate"):
        line += f" due {task['dueDate']}"
    if task.get("assignedToId"):
        line += f", for {names.vitally_user(write.account, str(task['assignedToId']))}"
    return [line]


def _new_lead(write: PlannedWrite, names: Names) -> list[str]:
    fields = write.fields
    line = f'new lead "{_short(fields.get("Company"))}", {fields.get("LeadSource") or "no LeadSource"}'
    if fields.get("Lead_Score__c") is not None:
        line += f", score {fields['Lead_Score__c']}"
    owner = _owner(write)
    return [line, f"owner {owner}" if owner else "owner: Salesforce's default"]


def _lead_update(write: PlannedWrite, names: Names) -> list[str]:
    previous = write.previous or {}
    lines = []
    for key, value in write.fields.items():
        if key == "OwnerId":
            shown = _owner(write) or names.user(value)
            lines.append(f"owner: {names.user(previous.get(key)) if previous.get(key) else '∅'} → {shown}")
        else:
            lines.append(f"{key}: {_short(previous.get(key))} → {_short(value)}")
    return lines


_CHANGES: Mapping[str, Callable[[PlannedWrite, Names], list[str]]] = {
    "set_traits": _traits,
    "add_segment": lambda write, names: [f"+ segment {write.fields.get('segment')}"],
    "remove_segment": lambda write, names: [f"− segment {write.fields.get('segment')}"],
    "create_task": _task,
    "upsert_lead": _new_lead,
    "update_lead": _lead_update,
}


def describe_change(write: PlannedWrite, names: Names) -> list[str]:
    """The change a write makes, one line per field (a task or a new lead on one line or two)."""
    describe = _CHANGES.get(write.op)
    if describe is None:
        return [f"{write.op}: {_cell(write.fields)}"]
    return describe(write, names)


def _target(write: PlannedWrite, names: Names) -> str:
    """Whom a write is about: the account's or lead's name, then its id."""
    if write.op == "update_lead":
        name = names.lead(write.record) or names.account(write.account)
        return f"{name}\nlead {write.record}" if name else f"lead {write.record}"
    account = write.account or write.record
    name = names.account(account)
    return f"{name}\n{account}" if name else account


# -- the plan ------------------------------------------------------------------------------------------


def _console(out: TextIO) -> Console:
    """A console as wide as the terminal (80 columns when `out` is not one), never interpreting
    what it prints: every cell is a `Text`."""
    from rich.console import Console

    return Console(file=out, soft_wrap=False, highlight=False, emoji=False, markup=False)


def _plan_table(writes: Iterable[PlannedWrite], names: Names) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_lines=True, expand=True, pad_edge=False)
    table.add_column("record", width=18, overflow="fold")  # a Salesforce id is 18 characters
    table.add_column("change", ratio=3, overflow="fold")
    table.add_column("rule · reason", ratio=4, overflow="fold")
    count = 0
    for write in writes:
        count += 1
        change = "\n".join(describe_change(write, names))
        why = f"{write.rule}\n{write.reason}"
        table.add_row(*(Text(printable(text, keep_lines=True)) for text in (_target(write, names), change, why)))
    table.title = f"Plan: {count} change(s)"
    return table


_LINES_A_WRITE = 256


def render_plan(plan: Iterable[PlannedWrite], fmt: Format, out: TextIO, names: Names | None = None) -> None:
    """Write one line per planned write (json, csv) or a table for people (`names` puts names on
    the ids; without it, ids only)."""
    if fmt == "json":
        # A few hundred lines a write: a cold cycle prints 166,000 at 100,000 accounts, and a
        # stream that writes through (PYTHONUNBUFFERED, as containers set it) pays a system call
        # for every write.
        lines: list[str] = []
        # A plan log has each write's line as it was planned: printed without decoding it.
        shown = plan.json_lines() if isinstance(plan, PlanLog) else (json_line(w.as_json()) for w in plan)
        for text in shown:
            lines.append(text)
            if len(lines) == _LINES_A_WRITE:
                lines.append("")
                out.write("\n".join(lines))
                lines = []
        if lines:
            lines.append("")
            out.write("\n".join(lines))
        return
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for write in plan:
            line = write.as_json()
            writer.writerow({column: csv_cell(_cell(line.get(column))) for column in CSV_COLUMNS})
        return
    _console(out).print(_plan_table(plan, names or Names(None)))


# -- lists of rows (failed, errors) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a list's table: its header, the keys of a row shown in it (one line each)
    and its width (None: a share of what is left)."""

    header: str
    keys: tuple[str, ...]
    width: int | None = None


def _moment(value: Any) -> str:
    """A stored timestamp as a table shows it: `2026-12-03 22:30` (json and csv keep it whole)."""
    text = _cell(value)
    return text[:16].replace("T", " ") if len(text) >= 16 and text[10:11] == "T" else text


def render_rows(
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    layout: Sequence[Column],
    fmt: Format,
    out: TextIO,
    *,
    title: str,
) -> None:
    """Rows as json lines (every key of the row), csv (`keys`, with a header) or a table for people
    laid out by `layout` that fits the terminal (80 columns when it is not one)."""
    if fmt == "json":
        for row in rows:
            out.write(json_line(dict(row)) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(keys)
        for row in rows:
            writer.writerow([csv_cell(_cell(row.get(key))) for key in keys])
        return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, box=box.SIMPLE_HEAD, show_lines=True, expand=True, pad_edge=False)
    for column in layout:
        table.add_column(column.header, width=column.width, ratio=None if column.width else 1, overflow="fold")
    for row in rows:
        cells = (
            "\n".join(_moment(row.get(key)) for key in column.keys if row.get(key) is not None) for column in layout
        )
        table.add_row(*(Text(printable(text, keep_lines=True)) for text in cells))
    _console(out).print(table)
