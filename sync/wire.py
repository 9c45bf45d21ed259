"""Where the rules' intents get the services' names: a lead intent's canonical fields become
Salesforce Lead fields, a task intent becomes the body of a Vitally task.

Rules speak canonical names (`score`, `routing_rule`, a task's key, title and due date) and never
a wire name; everything that writes what a rule wants, or shows it (the cycle, `explain`,
what-if), maps it here, so `SALESFORCE_LEAD_FIELDS` is the one table to change when a Salesforce
org names its fields differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rules.base import LeadField, LeadIntent, TaskIntent

__all__ = ["SALESFORCE_LEAD_FIELDS", "TASK_KEY_PREFIX", "TEXT_MAX", "lead_fields", "vitally_task"]

# Canonical lead field -> Salesforce Lead field (API name), data-model.md.
SALESFORCE_LEAD_FIELDS: Mapping[LeadField, str] = {
    "score": "Lead_Score__c",
    "classification": "Classification__c",
    "status": "Status",
    "lead_source": "LeadSource",
    "routing_rule": "Routing_Rule__c",
    "routing_reason": "Routing_Reason__c",
    "qualification": "Qualification__c",
    "qualification_reason": "Qualification_Reason__c",
}

# Canonical text fields held in a Salesforce text(255) field: longer values are cut there.
_TEXT_255: frozenset[LeadField] = frozenset({"routing_reason", "qualification_reason"})
TEXT_MAX = 255

# Our tasks' externalIds start with this, so they never collide with anyone else's.
TASK_KEY_PREFIX = "crm-sync:"


def lead_fields(intent: LeadIntent | None) -> dict[str, Any]:
    """The Salesforce Lead fields (API name -> value) a lead intent wants written, in the intent's
    order; none for no intent. Reasons are cut to the 255 characters their text fields hold."""
    if intent is None:
        return {}
    return {
        SALESFORCE_LEAD_FIELDS[name]: value[:TEXT_MAX] if name in _TEXT_255 and isinstance(value, str) else value
        for name, value in intent.wanted().items()
    }


def vitally_task(task: TaskIntent) -> dict[str, Any]:
    """The body of Vitally's `POST /resources/tasks` for a task intent. Vitally keeps tasks unique
    on `externalId`, so sending it again updates the task instead of adding one."""
    return {
        "externalId": f"{TASK_KEY_PREFIX}{task.key}",
        "accountId": task.account_id,
        "name": task.title,
        "description": task.description,
        "dueDate": task.due.isoformat(),
        "assignedToId": task.assignee,
        "tags": list(task.tags),
    }
