"""Salesforce record ids: the 15-character form (case-sensitive) and the 18-character form the
REST API answers with (case-insensitive: three checksum letters of the first 15's capitals).
Salesforce takes either on input; crm-sync keeps and compares the 18-character form everywhere
(the mirror holds what the API answers), so ids from elsewhere (a config, an Outbound Message)
are turned into it first."""

from __future__ import annotations

import re

__all__ = ["SF_ID", "case_safe_id"]

SF_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_CHECKSUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def case_safe_id(record_id: str) -> str:
    """A Salesforce id in its 18-character form: a 15-character id gains the three-letter
    checksum of its upper-case letters; any other is returned as it is."""
    if len(record_id) != 15:
        return record_id
    suffix = ""
    for chunk in range(3):
        part = record_id[chunk * 5 : chunk * 5 + 5]
        suffix += _CHECKSUM_CHARS[sum(1 << i for i, ch in enumerate(part) if "A" <= ch <= "Z")]
    return record_id + suffix
