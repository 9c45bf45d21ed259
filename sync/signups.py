"""Each company's first signup: the Vitally accounts of the mirror by the domain trait, for Big Fish's
"First signup from a company with 1000+ employees" (lead-routing-and-scoring.md).

A company is the account's `domain` trait (its configured key), case and a leading `www.` ignored;
a personal mail domain (`[rules.routing] big_fish_personal_domains`) names no company. The first
signup of a company is its account created first (the smaller id first on the same instant).

The index is kept in the state (`signups`, state migration 19): each mirrored account's company and
creation time, so that a question is one lookup. A trigger marks every account whose row is written
or removed (`signups_stale`); a cycle reads those accounts' companies again before it judges
anything (`catch_up`: its cost grows with what changed, none in an idle cycle), and forgets the
stored judgement of every account of a company whose first signup changed (a later org whose first
was deleted or given another domain, an older account given the domain of a company's first), so
that an incremental cycle judges them again. An index kept for another domain trait is dropped
(`catch_up`); the first index of a state is built on the first question, with one pass over the mirror in SQLite (the
accounts' JSON is not decoded in Python) and its rows stored: 1.3–1.8 s of CPU at 100,000 accounts
on a 2-core Intel Xeon, where catching up takes 0.1–0.6 ms in an idle cycle and ~20 ms after 1,000
accounts were written; a cycle that judges no Big Fish candidate never pays for it. What-if and
`explain` read the index and what changed since without writing (`persist=False`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.errors import RecordError
from core.model import Account
from core.records import parse_timestamp
from state import StateDB
from state.db import sqlite_text, sqlite_value

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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_BATCH = 10_000  # rows of a first index stored at a time

_Signup = tuple[str, int]  # (company, created: microseconds since the epoch)


def _micros(moment: datetime) -> int:
    """`moment` (naive: UTC) as whole microseconds since the epoch: exact, unlike a float's
    seconds, so two accounts created a microsecond apart are told apart."""
    return ((moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND


class Signups:
    """The first signup of each company in the mirror, looked up by `earlier`."""

    def __init__(
        self, state: StateDB, trait_keys: Mapping[str, str], personal: Collection[str], *, persist: bool = True
    ) -> None:
        self._state = state
        self._key = dict(trait_keys).get("domain", "domain")
        self._personal = frozenset(company_domain(d, ()) or "" for d in personal)
        self._persist = persist
        self._current = False  # the index answers for the mirror as it is (read again this cycle)
        # Not persisted: the accounts read again (None: no company), over the stored index, all of
        # them when it was kept for another trait (`_whole`), by company.
        self._read: dict[str, _Signup | None] = {}
        self._whole = False
        self._companies: dict[str, list[tuple[int, str]]] = {}

    @classmethod
    def of(cls, config: Config, state: StateDB, *, persist: bool = True) -> Signups:
        """The first signups of `state`'s mirror as `config` reads them (its domain trait's key, its
        personal mail domains); `persist=False` never writes to the state (what-if, `explain`)."""
        return cls(state, config.vitally.trait_keys, config.policy.routing.big_fish_personal_domains, persist=persist)

    def catch_up(self) -> int:
        """Before a cycle judges anything: bring a kept index up to the mirror (`refresh`), when
        one is kept for this domain trait; a first index waits for the first question, and the
        accounts listed as written meanwhile are forgotten (it reads them all: a state whose
        cycles never ask would list every write for ever), as is an index kept for another
        trait. Returns how many stored judgements were forgotten."""
        if self._current or not self._persist:
            return 0
        kept = self._kept_key()
        if kept == self._key:
            return self.refresh()
        conn = self._state.db.conn
        forgotten = 0
        if kept is not None:
            # An index kept for another domain trait is dropped with the list: none written meanwhile
            # would be in it, and a question under its trait again would trust it. So are the
            # judgements made with it: the index built again forgets none (found by two reviews).
            forgotten = conn.execute("DELETE FROM account_inputs WHERE id IN (SELECT id FROM signups)").rowcount
        for table in ("signups_key", "signups", "signups_stale"):
            conn.execute(f"DELETE FROM {table}")
        return forgotten

    def refresh(self) -> int:
        """Read again the company of every account written or removed since the index was (of
        every account, when it was kept for another domain trait or never), once per instance.
        Persisted, in the caller's transaction, the stored judgement (`account_inputs`) of every
        account of a company whose first signup changed is forgotten; returns how many."""
        if self._current:
            return 0
        self._current = True
        whole = self._kept_key() != self._key
        if not self._persist:
            self._read, self._whole = dict(self._signups_of(whole)), whole
            for account_id, signup in self._read.items():
                if signup is not None:
                    self._companies.setdefault(signup[0], []).append((signup[1], account_id))
            return 0
        if whole:
            self._build()
            return 0
        return self._catch_up_stale()

    def _build(self) -> None:
        """The first index, from the whole mirror. No index was kept, so no stored judgement reads
        one (one made with an index kept for another trait was forgotten with it, `catch_up`):
        none to forget."""
        conn = self._state.db.conn
        conn.execute("DELETE FROM signups")
        # Streamed, a batch at a time (each in the company index's order): the whole mirror's
        # rows held at once were 18 MiB of a cold dry run's peak at 100,000 accounts.
        batch: list[tuple[str, int, str]] = []
        for account_id, signup in self._signups_of(whole=True):
            if signup is not None:
                batch.append((signup[0], signup[1], account_id))
                if len(batch) >= _BATCH:
                    self._insert(batch)
        self._insert(batch)
        conn.execute("DELETE FROM signups_key")
        conn.execute("INSERT INTO signups_key VALUES (?)", [self._key])
        conn.execute("DELETE FROM signups_stale")

    def _catch_up_stale(self) -> int:
        """The accounts listed as written or removed read again; the judgements of every account of
        a company whose first signup moved forgotten (how many returned)."""
        conn = self._state.db.conn
        # Each stale account's signup as read now beside the one the index holds, one row at a
        # time: only those that differ are kept. After a cycle that wrote every account (a cold
        # run's traits), the two read whole were 50 MiB of the next cycle's peak at 100,000.
        changed: dict[str, tuple[_Signup | None, _Signup | None]] = {}
        for account_id, signup, (company, created) in self._read_signups(whole=False, held=True):
            held = None if company is None else (str(company), int(created))
            if held != signup:
                changed[account_id] = (held, signup)
        forgotten = 0
        if changed:
            companies = {s[0] for pair in changed.values() for s in pair if s}
            before = {company: self._stored_first(company) for company in companies - self._personal}
            conn.executemany("DELETE FROM signups WHERE id = ?", ((account_id,) for account_id in changed))
            self._insert([(s[0], s[1], account_id) for account_id, (_, s) in changed.items() if s is not None])
            for company in sorted(companies):
                # A personal mail domain's accounts read no first signup (`earlier`): none to forget.
                if company not in self._personal and self._stored_first(company) != before[company]:
                    forgotten += conn.execute(
                        "DELETE FROM account_inputs WHERE id IN (SELECT id FROM signups WHERE company = ?)", [company]
                    ).rowcount
        conn.execute("DELETE FROM signups_stale")
        return forgotten

    def earlier(self, account: Account) -> tuple[str, datetime] | None:
        """(the id, when it was created) of another account of `account`'s company created before
        it, the company's first; None when `account` is the first, or names no company, or its
        creation time is unknown."""
        company = _company(account.domain, self._personal)
        if company is None or account.created_at is None:
            return None
        self.refresh()
        first = self._first(company)
        if first is None or first[1] == account.id or first >= (_micros(account.created_at), account.id):
            return None
        return first[1], self._created(first[1], first[0])

    def _created(self, account_id: str, micros: int) -> datetime:
        """When `account_id` was created, as its record says it (in its own UTC offset, whose date
        the verdict shows), or from `micros` should the record no longer say the same."""
        row = self._state.db.conn.execute(
            "SELECT CAST(json_extract(raw, '$.createdAt') AS BLOB) FROM accounts "
            "WHERE id = ? AND (error IS NULL OR json_valid(raw))",
            [account_id],
        ).fetchone()
        if row is not None and isinstance(row[0], bytes):
            with contextlib.suppress(RecordError, ValueError, OverflowError):
                moment = _timestamp(sqlite_text(row[0]))
                if _micros(moment) == micros:
                    return moment
        try:
            return _EPOCH + micros * _MICROSECOND
        except OverflowError:  # an instant of the year 1 in an offset east of UTC
            return datetime.min.replace(tzinfo=UTC)

    def _first(self, company: str) -> tuple[int, str] | None:
        """(created, id) of `company`'s first signup."""
        if self._persist:
            return self._stored_first(company)
        known = list(self._companies.get(company, ()))
        if not self._whole:
            rows = self._state.db.conn.execute("SELECT created, id FROM signups WHERE company = ?", [company])
            known.extend((int(created), str(i)) for created, i in rows if str(i) not in self._read)
        return min(known, default=None)

    def _stored_first(self, company: str) -> tuple[int, str] | None:
        row = self._state.db.conn.execute(
            "SELECT created, id FROM signups WHERE company = ? ORDER BY created, id LIMIT 1", [company]
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _kept_key(self) -> str | None:
        row = self._state.db.conn.execute("SELECT key FROM signups_key").fetchone()
        return None if row is None else str(row[0])

    def _insert(self, rows: list[tuple[str, int, str]]) -> None:
        """Store these (company, created, id) rows, replacing an id's, and empty the list. Sorted
        first, in the company index's order (100,000 rows into an empty index: 0.38 s, against
        0.73 s in a random order)."""
        rows.sort()
        self._state.db.conn.executemany("INSERT OR REPLACE INTO signups (company, created, id) VALUES (?, ?, ?)", rows)
        rows.clear()

    def _signups_of(self, whole: bool) -> Iterator[tuple[str, _Signup | None]]:
        """(account id, (company, created)) read from its JSON in the mirror (None: it names no
        company, its creation time is unreadable, or it left the mirror): of every account when
        `whole`, else of those marked stale, streamed. After a text SQLite cannot hand back as
        UTF-8, every row comes again from the first (a reader keeps an id's last)."""
        for account_id, signup, _ in self._read_signups(whole=whole, held=False):
            yield account_id, signup

    def _read_signups(self, *, whole: bool, held: bool) -> Iterator[tuple[str, _Signup | None, tuple[Any, Any]]]:
        """`_signups_of`, each with the (company, created) the index holds for the account when
        `held` (only of the stale accounts; (None, None) when it holds none, or not `held`)."""
        key = self._key
        # The key as JSON spells it (a backslash, non-ASCII); SQLite 3.40 reads no quote in
        # a path, so a key holding one is read from the traits object in Python.
        path = "$.traits" if '"' in key else "$.traits." + json.dumps(key)
        # Not filtered by json_type in SQL: that parses each JSON once more (2.5 s against
        # 0.75 s over 100,000 accounts of 1.4 KB on a 2-core Intel Xeon). A malformed record
        # counts too (its company signed up, whatever field is wrong), unless SQLite cannot
        # read its JSON at all.
        readable = "a.error IS NULL OR json_valid(a.raw)"
        columns = (
            f"CASE WHEN {readable} THEN json_extract(a.raw, '$.createdAt') END, "
            f"CASE WHEN {readable} THEN json_extract(a.raw, ?) END"
        )
        source = (
            "FROM accounts a"
            if whole
            else "FROM (SELECT DISTINCT id FROM signups_stale) s LEFT JOIN accounts a ON a.id = s.id"
        )
        # The company a stored signup names was checked to be UTF-8 before it was stored (`_company`).
        index = ", NULL, NULL"
        if held and not whole:
            index, source = ", g.company, g.created", f"{source} LEFT JOIN signups g ON g.id = s.id"
        ids = "a.id" if whole else "s.id"
        try:
            yield from self._companies_of(
                self._state.db.conn.execute(f"SELECT {ids}, {columns}{index} {source}", [path])
            )
            return
        except sqlite3.OperationalError as error:
            if "decode" not in str(error):
                raise
        # A text SQLite hands back as no UTF-8 (an escaped lone surrogate, `\ud800`, which JSON
        # allows and Python's sqlite3 cannot decode): every text read as bytes, with its type.
        typed = (
            f"CASE WHEN {readable} THEN typeof(json_extract(a.raw, '$.createdAt')) END, "
            f"CASE WHEN {readable} THEN CAST(json_extract(a.raw, '$.createdAt') AS BLOB) END, "
            f"CASE WHEN {readable} THEN typeof(json_extract(a.raw, ?1)) END, "
            f"CASE WHEN {readable} THEN CAST(json_extract(a.raw, ?1) AS BLOB) END"
        )
        rows = self._state.db.conn.execute(f"SELECT {ids}, {typed}{index} {source}", [path])
        yield from self._companies_of(
            (account_id, sqlite_value(created_type, created), sqlite_value(found_type, found), company, stored)
            for account_id, created_type, created, found_type, found, company, stored in rows
        )

    def _companies_of(
        self, rows: Iterable[tuple[Any, Any, Any, Any, Any]]
    ) -> Iterator[tuple[str, _Signup | None, tuple[Any, Any]]]:
        key, quoted = self._key, '"' in self._key
        for account_id, created, found, company_held, created_held in rows:
            company = _company(_member(found, key) if quoted else found, ())
            signup = None
            if company is not None:
                with contextlib.suppress(RecordError, ValueError, OverflowError):
                    signup = (company, _micros(_timestamp(created)))
            yield str(account_id), signup, (company_held, created_held)


def _company(domain: object, personal: Collection[str]) -> str | None:
    """`company_domain` of a domain trait that is text; None too for one holding a lone surrogate
    (an escape JSON allows), which is no domain and which SQLite could not be given."""
    if not isinstance(domain, str):
        return None
    # What SQLite's `json_extract` reads of a domain escaping a NUL (`\u0000`): the text before it.
    company = company_domain(domain.partition("\x00")[0], personal)
    if company is None:
        return None
    try:
        company.encode()
    except UnicodeEncodeError:
        return None
    return company


def _timestamp(value: object) -> datetime:
    """`parse_timestamp`, the common case first: Vitally's `2026-11-10T10:00:00.000Z`, which
    Python 3.11 reads as it is (a third of the time at 100,000 accounts)."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment
    return parse_timestamp(value)


def _member(traits: object, key: str) -> object:
    """`key` of a traits object SQLite gave back as JSON text (None when it is not one)."""
    if not isinstance(traits, str):
        return None
    try:
        decoded = json.loads(traits)
    except ValueError:
        return None
    return decoded.get(key) if isinstance(decoded, dict) else None
