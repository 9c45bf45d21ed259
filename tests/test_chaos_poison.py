"""Poison in, report out (issue #13, item 3): records a service can send that the standard JSON
decoder or the record parser could not hold (a trait nested 1,500 levels deep, numbers too large
for a float, `NaN`, a number of 5,000 digits, a record of 9 MB) among 2,000 accounts. Each poison
record is reported once with its id and field and skipped; the others sync exactly as they do in
a book without the poison; every cycle (`--dry-run`, `run`, `run` again) exits as usual.

The poison values are what real JSON can carry (RFC 8259 puts no limit on nesting or on the
digits of a number); `{"$raw_json": ...}` makes the sandbox send them verbatim, because Python's
own encoder cannot write them.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import example_config_for, run_cli, written_unstamped

from core.decoding import MAX_DEPTH
from sandbox import Sandbox, SandboxConfig, generate_book

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
NOW_TEXT = "2026-11-22T09:00:00Z"
BOOK = 2_000
DEEP = "[" * 1500 + "]" * 1500
RECORD_ERROR = re.compile(r"^record error: (vitally|salesforce \w+) record (\S+): field (\S+): (.+)$")

# Poison account id -> (what it carries, the field reported, words of the message).
POISON_ACCOUNTS: dict[str, tuple[dict[str, Any], str, str]] = {
    "acc_poison_deep": ({"traits": {"nested": {"$raw_json": DEEP}}}, "traits.nested", f"more than {MAX_DEPTH} levels"),
    "acc_poison_1e400": ({"traits": {"employee_count": {"$raw_json": "1e400"}}}, "traits.employee_count", "finite"),
    "acc_poison_int400": ({"mrr": 10**400}, "mrr", "finite"),  # OverflowError in float()
    "acc_poison_int5000": ({"traits": {"icp_score": {"$raw_json": "9" * 5000}}}, "traits.icp_score", "4,300 digits"),
    "acc_poison_nan": ({"traits": {"forecasted_mrr": {"$raw_json": "NaN"}}}, "traits.forecasted_mrr", "NaN"),
    "acc_poison_big": ({"traits": {"notes": "x" * 9_000_000}}, "traits.notes", "characters of JSON"),
    "acc_poison_owner": ({"traits": {"new_owner": {"$raw_json": "-1e400"}}}, "traits.new_owner", "finite"),
}
# Poison lead Id -> (fields, the field reported, words of the message).
POISON_LEADS: dict[str, tuple[dict[str, Any], str, str]] = {
    "00Q0000000POISON1": ({"Company": {"$raw_json": f'{{"a":{DEEP}}}'}}, "Company.a", "levels"),
    "00Q0000000POISON2": ({"AnnualRevenue": 10**400}, "AnnualRevenue", "finite"),
}


def _poisoned(book: dict[str, Any]) -> dict[str, Any]:
    """`book` plus the poison accounts and leads, each a copy of a real record of the book with
    one poison value, stamped like its neighbours so that it arrives in the middle of a page."""
    book = copy.deepcopy(book)
    accounts = book["vitally"]["accounts"]
    for n, (account_id, (change, _, _)) in enumerate(POISON_ACCOUNTS.items()):
        template = accounts[100 + 37 * n]
        poison = {**copy.deepcopy(template), "id": account_id, "externalId": f"org_{account_id}", "name": account_id}
        traits = {**poison.get("traits", {}), **change.get("traits", {})}
        poison.update({**change, "traits": traits})
        accounts.append(poison)
    leads = book["salesforce"]["Lead"]
    for n, (lead_id, (fields, _, _)) in enumerate(POISON_LEADS.items()):
        template = leads[10 + 5 * n]
        leads.append({**copy.deepcopy(template), "Id": lead_id, "Email": f"poison{n}@example.com", **fields})
    return book


def _business_state(sandbox: Sandbox) -> dict[str, Any]:
    """What crm-sync writes, without what the sandbox stamps: traits and segments of every
    account, tasks, leads (ours by Sync_Key__c, the others by Id)."""
    stamps = {"CreatedDate", "LastModifiedDate", "SystemModstamp", "Id", "createdAt", "updatedAt", "id"}
    state = sandbox.state()
    accounts = state["vitally"]["accounts"]
    tasks = [{k: v for k, v in task.items() if k not in stamps} for task in state["vitally"]["tasks"]]
    return {
        "accounts": {
            a["id"]: (written_unstamped(a["traits"]), sorted(s["name"] for s in a["segments"])) for a in accounts
        },
        "tasks": sorted(json.dumps(task, sort_keys=True) for task in tasks),
        "leads": {
            lead.get("Sync_Key__c") or lead["Id"]: {k: v for k, v in lead.items() if k not in stamps}
            for lead in state["salesforce"]["Lead"]
        },
    }


def _cycles(book: dict[str, Any], directory: Path) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """A dry run, a run and a second run of the real CLI against `book`; their results and the
    services' state before and after."""
    directory.mkdir()
    config = SandboxConfig().updated({"vitally_rate_limit": 10_000_000})
    with Sandbox(book, config=config, now=NOW) as sandbox:
        settings = example_config_for(sandbox.url, directory / "config.toml")
        state = directory / "state.db"
        before = _business_state(sandbox)
        results = [
            run_cli(settings, state, "run", "--dry-run", "--format", "json", "--now", NOW_TEXT),
            run_cli(settings, state, "run", "--format", "json", "--now", NOW_TEXT),
            run_cli(settings, state, "run", "--format", "json", "--now", NOW_TEXT),
        ]
        return results, before, _business_state(sandbox)


def _reported(stderr: str) -> dict[str, tuple[str, str]]:
    lines = [RECORD_ERROR.match(line) for line in stderr.splitlines() if line.startswith("record error: ")]
    return {m.group(2): (m.group(3), m.group(4)) for m in lines if m}


@pytest.mark.timeout(600)
def test_chaos_poison_records_among_2000_are_reported_and_the_rest_sync_as_without_them(tmp_path: Path) -> None:
    clean = generate_book(BOOK - len(POISON_ACCOUNTS), seed=13, now=NOW)
    reference, _, expected = _cycles(clean, tmp_path / "clean")
    poisoned, seeded, got = _cycles(_poisoned(clean), tmp_path / "poisoned")

    for before, after in zip(reference, poisoned, strict=True):  # every cycle exits as it does without poison
        assert after.returncode == before.returncode, after.stderr[-3000:]
        assert "Traceback" not in after.stderr, after.stderr[-3000:]
    dry_run, first, second = poisoned
    for result, without in zip((dry_run, first), reference, strict=False):
        reported = _reported(result.stderr)
        for record, (_, field, words) in {**POISON_ACCOUNTS, **POISON_LEADS}.items():
            assert record in reported, (record, result.stderr[-3000:])
            assert reported[record][0] == field and words in reported[record][1], (record, reported[record])
        assert set(reported) - set(_reported(without.stderr)) == set(POISON_ACCOUNTS) | set(POISON_LEADS)
    assert not set(_reported(second.stderr)) & (set(POISON_ACCOUNTS) | set(POISON_LEADS))  # reported once
    for result in poisoned:  # nothing planned for a poison record
        planned = [json.loads(line) for line in result.stdout.splitlines()]
        assert not {w["record"] for w in planned} & (set(POISON_ACCOUNTS) | set(POISON_LEADS))
    # The other 1,993 accounts and their leads synced exactly as in the book without the poison;
    # nothing was written to a poison record.
    for record in POISON_ACCOUNTS:
        assert got["accounts"].pop(record) == seeded["accounts"][record]
    assert got["accounts"] == expected["accounts"]
    assert got["tasks"] == expected["tasks"]
    for record in POISON_LEADS:
        assert got["leads"].pop(record) == seeded["leads"][record]
    assert got["leads"] == expected["leads"]


# -- hostile custom triggers (issue #13, item 4) -------------------------------------------------------

HOSTILE_AT_LOAD = {  # refused when the config is read: exit 2, the trigger's line, nothing read
    "{mrr:999999999}": "width 999,999,999 is more than 100",
    "{arr:,.999999999f}": "precision 999,999,999 is more than 20",
}
HOSTILE_AT_RUN = {  # bounded when evaluated: the trigger is skipped for the account and reported
    "'ab' * 1000000000 == ''": "repetition longer than 10,000",
    "'%0999999999d' % 1 == ''": "% on text (string formatting) is not allowed",
    "round(mrr, -1000000000) > 0": "round() to more than 20 digits",
}


def _custom(when: str, reason: str, n: int) -> str:
    return f'\n[[rules.custom]]\nid = "custom.hostile_{n}"\nteam = "TAM"\nwhen = "{when}"\nreason = "{reason}"\n'


@pytest.mark.parametrize("reason", sorted(HOSTILE_AT_LOAD))
def test_chaos_hostile_reason_template_is_refused_at_load_with_exit_2(reason: str, tmp_path: Path) -> None:
    settings = example_config_for("http://127.0.0.1:9", tmp_path / "config.toml")
    settings.write_text(settings.read_text() + _custom("mrr > 1", reason, 0))
    result = run_cli(settings, tmp_path / "state.db", "--dry-run", "--now", NOW_TEXT, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"rules.custom[0]: custom.hostile_0: reason: position 0: '{reason}': {HOSTILE_AT_LOAD[reason]}" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state.db").exists()


@pytest.mark.timeout(120)
def test_chaos_hostile_expressions_are_bounded_at_run_time_and_the_cycle_goes_on(tmp_path: Path) -> None:
    with Sandbox(generate_book(200, seed=4, now=NOW), now=NOW) as sandbox:
        settings = example_config_for(sandbox.url, tmp_path / "config.toml")
        hostile = "".join(_custom(when.replace('"', '\\"'), "x", n) for n, when in enumerate(HOSTILE_AT_RUN))
        settings.write_text(settings.read_text() + hostile)
        result = run_cli(
            settings, tmp_path / "state.db", "--dry-run", "--format", "json", "--now", NOW_TEXT, timeout=90
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    shown = Counter(
        line.split(" for account ")[0] for line in result.stderr.splitlines() if line.startswith("rule error: ")
    )
    for n, message in enumerate(HOSTILE_AT_RUN.values()):
        assert shown[f"rule error: custom.hostile_{n}"] == 20  # the first 20 accounts of each, the rest counted
        assert f"ExpressionLimitError: {message} (skipped for it)" in result.stderr
    evaluated = int(re.search(r"evaluated (\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) rule error\(s\)", result.stderr).group(1))  # type: ignore[union-attr]
    # The two constant ones fail for every account; round() for every account whose MRR is known.
    assert 2 * evaluated < total <= 3 * evaluated
    assert result.stdout.strip()  # the built-in rules still planned their writes
