"""The plan table for people (issue #16): it fits an 80-column terminal (reasons wrap, rows do not
break the width), names accounts and owners instead of ids, and shows a task on one line."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from state import Owner, PlannedWrite, StateDB
from sync.output import Names, describe_change, render_plan

LONG_REASON = (
    "mrr 812 in [500, 1,667]; employees 64 > 50; users 9 > 7; country DE is ICP; paying 5 months "
    "(since first_paid_at) ≥ 3; owner: TAM/EU: Lena Schmidt (weight 1; credit 1.00 highest of 2 eligible, "
    "tied with Tomas Garcia and listed first)"
)
LENA = "005000000000003AAA"
TOMAS = "005000000000004AAA"


def state_with_names() -> StateDB:
    state = StateDB.memory()
    account = {"id": "acc_7f3a", "name": "Müller Analytics GmbH", "traits": {}, "keyRoles": []}
    state.upsert_accounts([{"id": "acc_7f3a", "updated_at": "2026-11-20T09:00:00.000Z", "raw": json.dumps(account)}])
    state.upsert_sf(
        [
            {"object": "User", "id": user, "modstamp": "2026-11-20T09:00:00.000Z", "raw": json.dumps({"Name": name})}
            for user, name in ((LENA, "Lena Schmidt"), (TOMAS, "Tomas Garcia"))
        ]
        + [
            {
                "object": "Lead",
                "id": "00Q000000000001AAA",
                "modstamp": "2026-11-20T09:00:00.000Z",
                "raw": json.dumps(
                    {"FirstName": "Ada", "LastName": "Byron", "Company": "Engines Ltd", "OwnerId": TOMAS}
                ),
            }
        ]
    )
    return state


def plan() -> list[PlannedWrite]:
    task: dict[str, Any] = {
        "externalId": "crm-sync:onboarding.lead:acc_7f3a",
        "accountId": "acc_7f3a",
        "name": "Onboard Müller Analytics GmbH (Lena Schmidt)",
        "description": "a long description that a table should not show whole " * 3,
        "dueDate": "2026-11-29",
        "tags": ["crm-sync", "onboarding"],
    }
    return [
        PlannedWrite(
            "vitally", "set_traits", "acc_7f3a", {"lifecycle_stage": "Expansion lead"}, "lifecycle.stage",
            "open lead planned:product_led.mrr_band (source Product-led) → Expansion lead",
            {"lifecycle_stage": "Expansion lead"}, account="acc_7f3a", previous={"lifecycle_stage": None},
        ),
        PlannedWrite(
            "salesforce", "upsert_lead", "crm-sync-acc_7f3a-1",
            {"LastName": "Müller Analytics GmbH", "Company": "Müller Analytics GmbH", "LeadSource": "Product-led",
             "Lead_Score__c": 20, "OwnerId": LENA},
            "product_led.mrr_band", LONG_REASON, {}, account="acc_7f3a",
            owner=Owner("TAM/EU", LENA, "Lena Schmidt"),
        ),
        PlannedWrite(
            "salesforce", "update_lead", "00Q000000000001AAA", {"OwnerId": LENA}, "inbound.round_robin",
            LONG_REASON, {"OwnerId": LENA}, previous={"OwnerId": TOMAS},
        ),
        PlannedWrite("vitally", "create_task", task["externalId"], task, "onboarding.lead", LONG_REASON, task,
                     account="acc_7f3a"),
    ]  # fmt: skip


def column(table: str, header: str) -> str:
    """The text of one column of the table, its wrapped lines joined by spaces (cells too)."""
    lines = table.splitlines()
    head = next(line for line in lines if "rule · reason" in line)
    starts = sorted(head.index(name) for name in ("record", "change", "rule · reason"))
    start = head.index(header)
    end = next((s for s in starts if s > start), None)
    return " ".join(" ".join(line[start:end].split()) for line in lines[lines.index(head) + 2 :]).strip()


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")  # an 80-column terminal, whatever runs the tests
    out = io.StringIO()
    render_plan(plan(), "table", out, Names(state_with_names()))
    return out.getvalue()


def test_the_plan_table_fits_80_columns_and_wraps_the_reasons(table: str) -> None:
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 80, table
    # The long reason is all there, wrapped over several lines of its column.
    assert "tied with Tomas Garcia and listed first)" in column(table, "rule · reason")
    assert "Plan: 4 change(s)" in table


def test_the_plan_table_names_accounts_leads_and_owners(table: str) -> None:
    records, changes = column(table, "record"), " ".join(column(table, "change").split())
    assert records.count("Müller Analytics GmbH acc_7f3a") == 3
    assert "Ada Byron, Engines Ltd lead 00Q000000000001AAA" in records  # the lead whose owner changes
    assert "owner: Tomas Garcia → Lena Schmidt" in changes
    assert "owner Lena Schmidt (TAM/EU)" in changes  # the new lead's owner
    assert LENA not in table and TOMAS not in table


def test_a_task_is_one_readable_line(table: str) -> None:
    task = plan()[-1]
    assert describe_change(task, Names(state_with_names())) == [
        'task "Onboard Müller Analytics GmbH (Lena Schmidt)" due 2026-11-29'
    ]
    assert "externalId" not in table and "{" not in table  # no raw JSON in the table
