"""Where the rules' intents get the services' names: a lead intent's canonical fields become
Salesforce Lead fields, a task intent becomes the body of a Vitally task.

Rules speak canonical names (`score`, `routing_rule`, a task's key, title and due date) and never
a wire name; everything that writes what a rule wants, or shows it (the cycle, `explain`,
what-if), maps it here, so `SALESFORCE_LEAD_FIELDS` is the one table to change when a Salesforce
org names its fields differently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.base import LeadField, LeadIntent, TaskIntent

__all__ = [
    "SALESFORCE_FIELD_LENGTHS",
    "SALESFORCE_LEAD_FIELDS",
    "SALESFORCE_NUMBER_DIGITS",
    "SYNC_KEY_PREFIX",
    "TASK_KEY_PREFIX",
    "WRITTEN_TRAIT",
    "Truncation",
    "fit_lead_fields",
    "lead_fields",
    "read_written_trait",
    "sync_key",
    "sync_key_prefix",
    "utf16_length",
    "vitally_task",
    "written_trait",
]

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

# The most characters each text field of a Lead crm-sync writes can hold (data-model.md and the
# operator's guide: standard Lead fields at Salesforce's lengths, our custom fields as the guide
# creates them). A longer value is cut to fit and the cut is reported; a real org would refuse the
# whole record (STRING_TOO_LONG). One table, so it can later be filled from Lead's describe.
SALESFORCE_FIELD_LENGTHS: Mapping[str, int] = {
    "LastName": 80,
    "Company": 255,
    "Country": 80,
    "Industry": 255,
    "LeadSource": 255,
    "Status": 255,
    "Routing_Rule__c": 80,
    "Routing_Reason__c": 255,
    "Qualification__c": 255,
    "Qualification_Reason__c": 255,
    "Classification__c": 255,
    "Vitally_Account_Id__c": 64,
    "Sync_Key__c": 80,
}

# Lead number fields -> the digits before the point they hold (describe: an int's `digits`, a
# double's or currency's `precision - scale`); a larger value fails the record with
# NUMBER_OUTSIDE_VALID_RANGE ("Employees: value outside of valid range on numeric field: …").
SALESFORCE_NUMBER_DIGITS: Mapping[str, int] = {
    "NumberOfEmployees": 8,
    "AnnualRevenue": 18,
    "Lead_Score__c": 3,
}

# Our tasks' externalIds start with this, so they never collide with anyone else's.
TASK_KEY_PREFIX = "crm-sync:"

# The leads crm-sync creates are upserted on `Sync_Key__c` = this prefix, the account, the episode.
SYNC_KEY_PREFIX = "crm-sync-"

# The Vitally trait in which crm-sync keeps, on each account it writes, the values it last wrote
# there (sent in the same PUT, so it costs no request): what a lost state file re-learns from.
# A JSON text, because text is the one trait type every Vitally workspace takes as it is.
WRITTEN_TRAIT = "crm_sync_written"

_EPISODE_ROOM = 6  # "-" and up to five digits of episode


@dataclass(frozen=True)
class Truncation:
    """A value cut to the length its Salesforce field holds (`length` and `limit` in characters as
    Salesforce counts them), or a number beyond the digits its field holds, left out (`number`)."""

    record: str
    field: str
    length: int
    limit: int
    number: float | None = None

    def __str__(self) -> str:
        if self.number is not None:
            shown = f"{int(self.number):,}" if self.number.is_integer() else f"{self.number:,}"
            return (
                f"salesforce {self.record} {self.field}: {shown} is beyond the field's {self.limit} digits, "
                "left out (Salesforce refuses the whole lead for it)"
            )
        return f"salesforce {self.record} {self.field}: {self.length} characters, cut to the field's {self.limit}"


def utf16_length(text: str) -> int:
    """A text's length as Salesforce counts it: UTF-16 code units, so a character outside the Basic
    Multilingual Plane (an emoji, a rare CJK ideograph) counts twice (Salesforce Help, "Surrogate
    Pair Characters Are Treated as Two Characters", 005166849)."""
    if text.isascii():
        return len(text)
    # Two bytes a unit (a lone surrogate, which only a hostile record holds, is one): encoded in C
    # instead of a character at a time in Python (every reason holds "→" or "≥").
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _cut(text: str, limit: int) -> str:
    """The longest start of `text` within `limit` UTF-16 units, never half a character."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text


def _stored(text: str) -> str | None:
    """A text as Salesforce stores it: a text field "can never be empty (only null), and [...] never
    include leading and trailing whitespace" (Apex Developer Guide, Primitive Data Types: "the same
    rules as in the SOAP API"). Sent as it is, an account name ending in a space, or a reason cut
    on a space, would read back different from what crm-sync wrote: a person's change to the
    ownership check, or a write planned again every cycle."""
    return text.strip(_TRIMMED) or None


# What Salesforce trims from the ends of a text: the characters up to and including the space (Java's
# `String.trim`), not every Unicode space: a no-break space (U+00A0) stays.
_TRIMMED = "".join(chr(code) for code in range(0x21))


def fit_lead_fields(record: str, fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[Truncation]]:
    """`fields` with every text value stored as Salesforce stores it (trimmed, empty as null) and
    cut to its field's length (SALESFORCE_FIELD_LENGTHS, counted as Salesforce counts it), every
    number beyond its field's digits (SALESFORCE_NUMBER_DIGITS) left out, and what was cut or left
    out: a lead created without an employee count a Vitally trait got wrong is better than one
    Salesforce refuses (and crm-sync parks). `record` names the lead in the report."""
    fitted = dict(fields)
    cut: list[Truncation] = []
    for name, value in fields.items():
        limit = SALESFORCE_FIELD_LENGTHS.get(name)
        if limit is not None and isinstance(value, str):
            # Stored as Salesforce stores a text: trimmed, an empty one as null (see `_stored`).
            value = fitted[name] = _stored(value)
            if value is not None and len(value) > limit // 2:
                length = utf16_length(value)
                if length > limit:
                    fitted[name] = _stored(_cut(value, limit))
                    cut.append(Truncation(record, name, length, limit))
            continue
        digits = SALESFORCE_NUMBER_DIGITS.get(name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if digits is not None and number and abs(value) >= 10**digits:
            del fitted[name]
            cut.append(Truncation(record, name, 0, digits, float(value)))
    return fitted, cut


WRITTEN_AT = "@"  # the `crm_sync_written` trait's key for when each value was written (no trait is named so)


def written_trait(values: Mapping[str, Any], at: Mapping[str, str] | None = None) -> str:
    """The `crm_sync_written` trait's value for these trait values crm-sync wrote, and `at`, when
    each was written (field → `sync.vocabulary.iso`, as the state's `written_at`): a state file
    older than the trait (a backup restored) is then told, field by field, from one that knows
    better (`sync.ownership.ours_in`)."""
    stamped = dict(values) if not at else {**values, WRITTEN_AT: {name: at[name] for name in sorted(at)}}
    return json.dumps(stamped, sort_keys=True, separators=(",", ":"), default=str)


def _decoded(value: object) -> dict[str, Any]:
    if not isinstance(value, str):
        return {}
    try:
        decoded = json.loads(value)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def read_written_trait(value: object) -> dict[str, Any]:
    """What a `crm_sync_written` trait says crm-sync wrote (nothing when it is absent or was
    edited into something else)."""
    return {name: written for name, written in _decoded(value).items() if name != WRITTEN_AT}


def written_trait_at(value: object) -> dict[str, str]:
    """When a `crm_sync_written` trait says each of its values was written (field → time; none
    for a trait written before it said so, or edited into something else)."""
    at = _decoded(value).get(WRITTEN_AT)
    if not isinstance(at, dict):
        return {}
    return {name: when for name, when in at.items() if isinstance(name, str) and isinstance(when, str)}


def sync_key_prefix(account_id: str) -> str:
    """What every `Sync_Key__c` of this account's leads starts with: `crm-sync-<account>-`, or,
    when the account id is too long for the field, its first characters and a hash of the whole
    (so the key stays unique and the same from one cycle to the next)."""
    prefix = f"{SYNC_KEY_PREFIX}{account_id}-"
    limit = SALESFORCE_FIELD_LENGTHS["Sync_Key__c"]
    if len(prefix) + _EPISODE_ROOM <= limit:
        return prefix
    digest = hashlib.sha256(account_id.encode()).hexdigest()[:16]
    keep = limit - _EPISODE_ROOM - len(SYNC_KEY_PREFIX) - len(digest) - 2
    return f"{SYNC_KEY_PREFIX}{account_id[:keep]}~{digest}-"


def sync_key(account_id: str, episode: int) -> str:
    """The `Sync_Key__c` of the account's lead for this routing episode (1, 2, …)."""
    return f"{sync_key_prefix(account_id)}{episode}"


def lead_fields(intent: LeadIntent | None) -> dict[str, Any]:
    """The Salesforce Lead fields (API name -> value) a lead intent wants written, in the intent's
    order; none for no intent. A text too long for its field is cut, and reported, by
    `fit_lead_fields` where the write is planned."""
    if intent is None:
        return {}
    return {SALESFORCE_LEAD_FIELDS[name]: value for name, value in intent.wanted().items()}


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
