"""Each company's first signup: the Vitally accounts of the mirror by the domain trait, for Big Fish's
"First signup from a company with 1000+ employees" (lead-routing-and-scoring.md).

A company is the account's `domain` trait (its configured key), case and a leading `www.` ignored;
a personal mail domain (`[rules.routing] big_fish_personal_domains`) names no company. The first
signup of a company is its account created first (the smaller id first on the same instant). The
index is built on the first question of a cycle, with one pass over the mirror's well-formed
accounts in SQLite (their JSON is not decoded in Python: 0.5–1.4 s of CPU at 100,000 accounts, ~0.1 s
at 10,000), and only a cycle that judges a Big Fish candidate asks one (a cold or `--full` cycle,
or one that reads a new large account; an idle cycle judges none).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from core.errors import RecordError
from core.model import Account
from core.records import parse_timestamp
from state import StateDB

if TYPE_CHECKING:
    from sync.config import Config

__all__ = ["Signups", "company_domain"]


def company_domain(domain: str | None, personal: Collection[str]) -> str | None:
    """The company a domain trait names: lower case, without a leading `www.` or a trailing dot;
    None for none, an empty one or a personal mail domain (`personal`, compared the same way)."""
    if not domain:
        return None
    name = domain.strip().casefold().rstrip(".").removeprefix("www.")
    if not name or name in personal:
        return None
    return name


class Signups:
    """The first signup of each company in the mirror, looked up by `earlier`."""

    def __init__(self, state: StateDB, trait_keys: Mapping[str, str], personal: Collection[str]) -> None:
        self._state = state
        self._key = dict(trait_keys).get("domain", "domain")
        self._personal = frozenset(company_domain(d, ()) or "" for d in personal)
        self._first: dict[str, tuple[datetime, str]] | None = None

    @classmethod
    def of(cls, config: Config, state: StateDB) -> Signups:
        """The first signups of `state`'s mirror as `config` reads them (its domain trait's key, its
        personal mail domains)."""
        return cls(state, config.vitally.trait_keys, config.policy.routing.big_fish_personal_domains)

    def earlier(self, account: Account) -> tuple[str, datetime] | None:
        """(the id, when it was created) of another account of `account`'s company created before
        it, the company's first; None when `account` is the first, or names no company, or its
        creation time is unknown."""
        domain = company_domain(account.domain, self._personal)
        if domain is None or account.created_at is None:
            return None
        first = self._index().get(domain)
        if first is None or first[1] == account.id or (first[0], first[1]) >= (account.created_at, account.id):
            return None
        return first[1], first[0]

    def _index(self) -> dict[str, tuple[datetime, str]]:
        if self._first is None:
            self._first = {}
            key = self._key
            # The key as JSON spells it (a backslash, non-ASCII); SQLite 3.40 reads no quote in
            # a path, so a key holding one is read from the traits object in Python.
            quoted = '"' in key
            path = "$.traits" if quoted else "$.traits." + json.dumps(key)
            # Not filtered by json_type in SQL: that parses each JSON once more (2.5 s against
            # 0.75 s over 100,000 accounts of 1.4 KB on a 2-core Intel Xeon). A malformed record
            # counts too (its company signed up, whatever field is wrong), unless SQLite cannot
            # read its JSON at all.
            rows = self._state.db.execute(
                "SELECT id, json_extract(raw, '$.createdAt'), json_extract(raw, ?) FROM accounts "
                "WHERE error IS NULL OR json_valid(raw)",
                [path],
            )
            for account_id, created, found in rows:
                domain = _member(found, key) if quoted else found
                company = company_domain(domain, self._personal) if isinstance(domain, str) else None
                if company is None:
                    continue
                try:
                    when = parse_timestamp(created)
                except (RecordError, ValueError):
                    continue
                known = self._first.get(company)
                if known is None or (when, account_id) < known:
                    self._first[company] = (when, account_id)
        return self._first


def _member(traits: object, key: str) -> object:
    """`key` of a traits object SQLite gave back as JSON text (None when it is not one)."""
    if not isinstance(traits, str):
        return None
    try:
        decoded = json.loads(traits)
    except ValueError:
        return None
    return decoded.get(key) if isinstance(decoded, dict) else None
