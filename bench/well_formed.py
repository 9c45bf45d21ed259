"""The well-formed records of a book, parsed, the malformed ones skipped as a cycle skips them:
shared by the benches. It imports only `core.errors.RecordError`, which every tree bench/goals.py
measures has (bench/rule_set.py runs against the tree before issue 17)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from core.errors import RecordError

R = TypeVar("R")
T = TypeVar("T")


def well_formed(records: Iterable[R], parse: Callable[[R], T]) -> list[T]:
    """`parse` of each record that parses; a record it rejects (`RecordError`) is skipped."""
    out = []
    for record in records:
        try:
            out.append(parse(record))
        except RecordError:
            continue
    return out
