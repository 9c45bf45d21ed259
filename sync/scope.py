"""Which part of the book a command works on: `--account ID…` and `--rule ID…` (a staged rollout,
a canary), and the usage errors of the command line.

A scope narrows what is *planned* (a dry run, `apply`), never what is read: every record is still
read and mirrored, and the planner still sees every account (a TAM's capacity counts the accounts
they manage, in or out of scope). Outside the scope nothing is written, no owner is drawn and no
conflict is reported.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import SyncError
from state import PlannedWrite

__all__ = ["EVERYTHING", "Scope", "UsageError"]


class UsageError(SyncError):
    """The command line asked for something that cannot be done as asked (an unknown rule id, an
    option without the one it needs, a plan file that cannot be applied): exit 2."""


@dataclass(frozen=True)
class Scope:
    """`accounts`: Vitally account ids (a Salesforce Lead Id selects that lead); `rules`: rule ids
    or shell patterns (`product_led.*`). None: no limit."""

    accounts: frozenset[str] | None = None
    rules: tuple[str, ...] | None = None

    @classmethod
    def of(cls, accounts: Iterable[str] | None, rules: Iterable[str] | None, known_rules: Iterable[str]) -> Scope:
        """The scope of `--account` and `--rule`; a pattern that names no known rule is a
        `UsageError` (with the closest id), so a typo never silently selects nothing."""
        known = list(known_rules)
        patterns = None if rules is None else tuple(rules)
        for pattern in patterns or ():
            if not fnmatch.filter(known, pattern):
                close = difflib.get_close_matches(pattern, known, n=1)
                hint = f"did you mean {close[0]}?" if close else "docs/rules.md lists every id"
                raise UsageError(f"--rule {pattern}: no such rule ({hint})")
        return cls(None if accounts is None else frozenset(accounts), patterns)

    @property
    def limited(self) -> bool:
        return self.accounts is not None or self.rules is not None

    def has_account(self, account: str | None, lead: str | None = None) -> bool:
        """Whether the account (or, for a lead, the lead itself or its account) is in scope."""
        if self.accounts is None:
            return True
        return (account is not None and account in self.accounts) or (lead is not None and lead in self.accounts)

    def has_rule(self, rule: str) -> bool:
        if self.rules is None:
            return True
        return any(rule == pattern or fnmatch.fnmatchcase(rule, pattern) for pattern in self.rules)

    def wants(self, write: PlannedWrite) -> bool:
        """Whether a planned write is in scope: its rule, and its account (or lead)."""
        account = write.account if write.account is not None else write.record
        return self.has_rule(write.rule) and self.has_account(account, write.record)

    def describe(self) -> str:
        """The scope in words, for summaries ("" when unlimited)."""
        parts = []
        if self.accounts is not None:
            parts.append(f"account(s) {', '.join(sorted(self.accounts))}")
        if self.rules is not None:
            parts.append(f"rule(s) {', '.join(self.rules)}")
        return "; ".join(parts)


EVERYTHING = Scope()
