"""The Vitally half of the sandbox: accounts, users, tasks and notes under `/resources/`.

Imitates what the connectors rely on (Vitally's REST docs, cited in
tests/fixtures/real/SOURCES.md): keyset pagination newest-first with opaque cursors,
`status` filtering churned accounts out of default reads, traits merged by PUT with
`null` deleting, read-only segments driven by emulated Playbooks (inside the PUT, or
later on the sandbox clock as Vitally's hourly runs, with each membership remembering
who added it), tasks and notes upserted on `externalId`, Basic auth with the key as user
name, and a sliding window rate limit whose state every response reports in `RateLimit-*`
headers, `RateLimit-Limit` in Vitally's own format (`1000, 1000;window=60`).

Not thread-safe: the server calls `handle` and the other methods under its lock,
except `admit`, which guards the rate limiter with its own lock.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import heapq
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from sandbox.store import (
    Clock,
    Reply,
    Request,
    SandboxConfig,
    parse_timestamp,
    raw_json_tokens,
    vitally_timestamp,
)

__all__ = ["VitallyService", "rate_limit_value", "segment_id"]

_MAX_LIMIT = 100
_STATUSES = ("active", "churned", "activeOrChurned")
_SORTS = ("updatedAt", "createdAt")
# The documented writable task attributes (V-tasks); anything else in a POST is ignored.
_TASK_FIELDS = (
    "name", "description", "dueDate", "assignedToId", "completedById", "completedAt", "categoryId", "tags",
    "traits", "organizationId",
)  # fmt: skip
# What every task answer carries (V-tasks' object table), null or empty until set.
_TASK_DEFAULTS: Mapping[str, Any] = {
    "organizationId": None, "description": None, "createdById": None, "assignedToId": None,
    "completedById": None, "categoryId": None, "dueDate": None, "completedAt": None, "projects": [],
    "tags": [], "archivedAt": None, "traits": {},
}  # fmt: skip
_NOTE_FIELDS = ("note", "noteDate", "subject", "authorId", "categoryId", "tags")
# Owner attributes of an account (V-accounts): Vitally user ids, edited in the app only.
_OWNER_FIELDS = ("accountOwnerId", "csmId", "accountExecutiveId")


def rate_limit_value(limit: int, window_s: float) -> str:
    """`RateLimit-Limit` as Vitally sends it (V-overview): `1000, 1000;window=60`."""
    window = int(window_s) if float(window_s).is_integer() else window_s
    return f"{limit}, {limit};window={window}"


def segment_id(name: str) -> str:
    """The stable id the sandbox gives a segment: `seg_` + a slug of its name."""
    return "seg_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class _VitallyError(Exception):
    """Ends a request with Vitally's error body `{"statusCode", "message"}`."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class _Collection:
    """Records keyed by `id`, with an `externalId` index and cached ascending orderings.

    An ordering is built once, on the first list by its field, and then kept current: a change
    moves only the records it names (`put`, `remove`, `touched(id)`), a bisect and a list insert
    each, so a list after every few writes (crm-sync's last look before writing) costs
    O(changed × log N), not a sort of the whole collection (quadratic over a cold run)."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_external: dict[str, str] = {}
        # sort field → ((sort value, id) ascending, id → its pair there)
        self._orders: dict[str, tuple[list[tuple[str, str]], dict[str, tuple[str, str]]]] = {}
        self._moved: set[str] = set()  # ids changed since the orderings were brought up to date

    def put(self, record: dict[str, Any]) -> None:
        old = self.by_id.get(record["id"])
        if old is not None and old.get("externalId") is not None:
            self.by_external.pop(str(old["externalId"]), None)
        self.by_id[record["id"]] = record
        if record.get("externalId") is not None:
            self.by_external[str(record["externalId"])] = record["id"]
        self._moved.add(record["id"])

    def touched(self, record_id: str | None = None) -> None:
        """A record changed in place (its sort keys may have moved); without an id, any of them."""
        if record_id is None:
            self._orders.clear()
            self._moved.clear()
        else:
            self._moved.add(record_id)

    def remove(self, record_id: str) -> None:
        """Delete a record for good (no tombstone: the lists never show it again)."""
        old = self.by_id.pop(record_id, None)
        if old is not None and old.get("externalId") is not None:
            self.by_external.pop(str(old["externalId"]), None)
        self._moved.add(record_id)

    def find(self, key: str) -> dict[str, Any] | None:
        """By Vitally id first, then by externalId (the API accepts either)."""
        record = self.by_id.get(key)
        if record is None and key in self.by_external:
            record = self.by_id.get(self.by_external[key])
        return record

    def ascending(self, sort_by: str) -> list[tuple[str, str]]:
        """(sort value, id) pairs in ascending order (the list is kept current in place: read it
        before the next change)."""
        if self._moved:
            self._settle()
        built = self._orders.get(sort_by)
        if built is None:
            keys = sorted((_sort_value(r.get(sort_by)), r["id"]) for r in self.by_id.values())
            built = (keys, {key[1]: key for key in keys})
            self._orders[sort_by] = built
        return built[0]

    def _settle(self) -> None:
        """Move the changed records to their places in every ordering built; rebuild instead when
        so many changed that a sort is cheaper."""
        moved, self._moved = self._moved, set()
        if len(moved) * 8 > len(self.by_id):
            self._orders.clear()
            return
        for sort_by, (keys, at) in self._orders.items():
            for record_id in moved:
                old = at.pop(record_id, None)
                if old is not None:
                    del keys[bisect.bisect_left(keys, old)]
                record = self.by_id.get(record_id)
                if record is not None:
                    key = at[record_id] = (_sort_value(record.get(sort_by)), record_id)
                    bisect.insort(keys, key)


def _sort_value(value: Any) -> str:
    # Canonical timestamps sort as strings; anything malformed sorts as its text (or first).
    return value if isinstance(value, str) else ""


class VitallyService:
    """State and wire behaviour of the imitated Vitally REST API."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.accounts = _Collection()
        self.users = _Collection()
        self.tasks = _Collection()
        self.notes = _Collection()
        self._next_id = 1
        self._rate_lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        # Delayed Playbook runs: (when, account id), and the earliest pending run per account.
        self._runs: list[tuple[datetime, str]] = []
        self._due: dict[str, datetime] = {}
        # Segment memberships by who added them: account id → segment names.
        self._by_playbook: dict[str, set[str]] = {}
        self._by_person: dict[str, set[str]] = {}
        # Segments a person took an account out of while a Playbook held it there: that Playbook
        # does not add it back until the account stops matching it (account id → segment names).
        self._withheld: dict[str, set[str]] = {}
        # Called with (account id, segment name) when an account enters a segment (the webhooks
        # of `sandbox.events`); it only queues, so it may run under the sandbox's lock.
        self.segment_added: Callable[[str, str], None] | None = None

    # ----------------------------------------------------------------- seeding

    def load(self, seed: Mapping[str, Any]) -> None:
        """Add the records of a seed's `vitally` section, then run the Playbooks (a seed is a
        settled workspace: its Playbooks have run, whatever their delay).

        Timestamps that parse are rewritten in Vitally's canonical spelling (so they
        sort correctly); ones that do not are kept verbatim, as a malformed record.
        With segment links on, a seeded segment was added by a person unless the seed's
        `segment_links` (as `snapshot` writes it) says a Playbook added it; `segments_removed`
        names the segments a person took accounts out of while their Playbooks matched.
        """
        links = _seed_links(seed.get("segment_links") or [])
        for item in seed.get("segments_removed") or []:
            if (
                isinstance(item, dict)
                and isinstance(item.get("accountId"), str)
                and isinstance(item.get("segment"), str)
            ):
                self._withheld.setdefault(item["accountId"], set()).add(item["segment"])
        now = vitally_timestamp(self.clock.now())
        for name, coll in (
            ("accounts", self.accounts),
            ("users", self.users),
            ("tasks", self.tasks),
            ("notes", self.notes),
        ):
            for raw in seed.get(name) or []:
                coll.put(self._seeded(name, raw, now, links))
        members: dict[str, int] | None = None
        for account in self.accounts.by_id.values():
            if "usersCount" not in account:
                members = self._members() if members is None else members
                account["usersCount"] = members.get(account["id"], 0)
            self._run_playbooks(account)
        self.accounts.touched()

    def _seeded(
        self, name: str, raw: Mapping[str, Any], now: str, links: Mapping[str, Mapping[str, set[str]]]
    ) -> dict[str, Any]:
        """A seed record of collection `name` as stored: an id, both timestamps, and an account's
        traits, segments, key roles, churn date and owner ids when the seed leaves them out (its
        segments linked to who added them, from `links`)."""
        record: dict[str, Any] = raw_json_tokens(copy.deepcopy(dict(raw)))
        record["id"] = str(record["id"]) if record.get("id") else self._new_id(name[:-1])
        for key in ("createdAt", "updatedAt"):
            parsed = parse_timestamp(record.get(key))
            if parsed is not None:
                record[key] = vitally_timestamp(parsed)
            elif record.get(key) is None:
                record[key] = record.get("createdAt") or now
        if name == "accounts":
            record.setdefault("traits", {})
            record.setdefault("segments", [])
            record.setdefault("keyRoles", [])
            record.setdefault("churnedAt", None)
            for key in _OWNER_FIELDS:
                record.setdefault(key, None)
            self._link_seeded(record, links)
        return record

    def _members(self) -> dict[str, int]:
        """How many users each account has, by account id."""
        members: dict[str, int] = {}
        for user in self.users.by_id.values():
            for account_id in user.get("accountIds") or []:
                members[account_id] = members.get(account_id, 0) + 1
        return members

    def _new_id(self, kind: str) -> str:
        while True:
            candidate = f"{kind}_{self._next_id:08d}"
            self._next_id += 1
            if not any(candidate in c.by_id for c in (self.accounts, self.users, self.tasks, self.notes)):
                return candidate

    def _link_seeded(self, record: dict[str, Any], links: Mapping[str, Mapping[str, set[str]]]) -> None:
        """Who added each segment of a seeded account (replacing what was known of it)."""
        segments = record.get("segments")
        items = segments if isinstance(segments, list) else []  # a malformed seed keeps its shape
        names = {s["name"] for s in items if isinstance(s, dict) and isinstance(s.get("name"), str)}
        given = links.get(record["id"])
        if given is not None:
            self._by_playbook[record["id"]] = set(given.get("playbook", set())) & names
            self._by_person[record["id"]] = set(given.get("person", set())) & names
            self._by_person[record["id"]] |= names - self._by_playbook[record["id"]]
            return
        self._by_playbook.pop(record["id"], None)
        self._by_person[record["id"]] = names

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every record, in the seed format (deep copies); with segment links on, also
        `segment_links`: `{accountId, segment, addedBy: "playbook" | "person"}` per membership; and,
        when there are any, `segments_removed`: `{accountId, segment}` for each segment a person
        took an account out of while its Playbook matched (the Playbook does not add it back)."""
        self.run_due_playbooks()
        out = {
            "accounts": copy.deepcopy(list(self.accounts.by_id.values())),
            "users": copy.deepcopy(list(self.users.by_id.values())),
            "tasks": copy.deepcopy(list(self.tasks.by_id.values())),
            "notes": copy.deepcopy(list(self.notes.by_id.values())),
        }
        if self.config.segment_links:
            out["segment_links"] = [
                {"accountId": account_id, "segment": name, "addedBy": by}
                for by, held in (("playbook", self._by_playbook), ("person", self._by_person))
                for account_id, names in sorted(held.items())
                for name in sorted(names)
            ]
        removed = [
            {"accountId": account_id, "segment": name}
            for account_id, names in sorted(self._withheld.items())
            for name in sorted(names)
        ]
        if removed:
            out["segments_removed"] = removed
        return out

    # --------------------------------------------------------------- playbooks

    def _run_playbooks(self, account: dict[str, Any]) -> bool:
        """Segment S holds the account while its Playbook trait is exactly `true`; returns whether
        the segments changed.

        Legacy (segment links off): only the Playbook-managed segments move, by name, whoever
        added them. With links (V-segments): a Playbook adds its own link and removes only that
        link; a segment stays while a person's link holds it. Either way, a segment a person took
        the account out of is not added back while the account still matches ("The Playbook that
        originally added the account to the segment will not add it back": Vitally's docs,
        Segmentation, "Manually Assign Segments"); once it stops matching, a later match adds it.
        """
        traits = account.get("traits") or {}
        current = account.get("segments")
        if not isinstance(traits, dict) or not isinstance(current, list | None):
            return False  # a malformed seed record keeps its shape (the reader must report it)
        segments: list[dict[str, Any]] = list(current or [])
        before = [s.get("name") if isinstance(s, dict) else s for s in segments]
        links = self.config.segment_links
        ours = self._by_playbook.setdefault(account["id"], set()) if links else set()
        people = self._by_person.get(account["id"], set())
        withheld = self._withheld.get(account["id"], set())
        for name, trait in self.config.playbooks:
            present = any(isinstance(s, dict) and s.get("name") == name for s in segments)
            wanted = traits.get(trait) is True
            if not wanted:
                withheld.discard(name)  # it left the Playbook's match: a later match adds it again
            elif name in withheld:
                wanted = False  # a person took it out: this Playbook does not add it back
            if links:
                if wanted:
                    ours.add(name)
                else:
                    ours.discard(name)
                wanted = wanted or name in people
            if wanted and not present:
                segments.append({"id": segment_id(name), "name": name})
                if self.segment_added is not None:
                    self.segment_added(account["id"], name)
            elif present and not wanted:
                segments = [s for s in segments if not (isinstance(s, dict) and s.get("name") == name)]
        account["segments"] = segments
        return before != [s.get("name") if isinstance(s, dict) else s for s in segments]

    def _schedule_playbooks(self, account: dict[str, Any]) -> None:
        """After a trait write: run the Playbooks now (legacy) or once the delay has passed."""
        if not self.config.playbooks_delayed:
            self._run_playbooks(account)
            return
        account_id = account["id"]
        if account_id in self._due:
            return  # the pending run will read the traits as they are then
        when = self.clock.now() + timedelta(seconds=self.config.vitally_playbook_delay_s)
        self._due[account_id] = when
        heapq.heappush(self._runs, (when, account_id))

    def run_due_playbooks(self, *, everything: bool = False) -> int:
        """Run the delayed Playbook runs whose time has come on the sandbox clock (all of them with
        `everything`); an account whose segments change gets a new `updatedAt`, so an incremental
        reader sees the change. Returns how many accounts were processed."""
        if not self._runs:
            return 0
        now = self.clock.now()
        done = 0
        while self._runs and (everything or self._runs[0][0] <= now):
            when, account_id = heapq.heappop(self._runs)
            if self._due.get(account_id) != when:
                continue
            del self._due[account_id]
            account = self.accounts.by_id.get(account_id)
            if account is None:
                continue
            done += 1
            if self._run_playbooks(account):
                account["updatedAt"] = vitally_timestamp(self.clock.stamp())
                self.accounts.touched(account_id)
        return done

    def pending_playbooks(self) -> list[dict[str, str]]:
        """The delayed runs not yet due: `{accountId, due}`, earliest first."""
        return [
            {"accountId": account_id, "due": vitally_timestamp(when)}
            for account_id, when in sorted(self._due.items(), key=lambda item: (item[1], item[0]))
        ]

    def set_segment(self, key: str, name: str, *, present: bool) -> dict[str, Any]:
        """A person adds or removes a segment in the app (by account id or externalId); the
        account's `updatedAt` moves. A segment a person removes goes, whoever added it, and a
        Playbook that held it does not add it back while the account still matches (Vitally's
        docs, Segmentation, "Manually Assign Segments": a manual assignment overrides the
        Playbooks)."""
        account = self.accounts.find(key)
        if account is None:
            raise KeyError(key)
        current = account.get("segments")
        segments = [s for s in current if isinstance(s, dict)] if isinstance(current, list) else []
        people = self._by_person.setdefault(account["id"], set())
        withheld = self._withheld.setdefault(account["id"], set())
        held = any(s.get("name") == name for s in segments)
        if present:
            people.add(name)
            withheld.discard(name)
            if not held:
                segments.append({"id": segment_id(name), "name": name})
                if self.segment_added is not None:
                    self.segment_added(account["id"], name)
        else:
            people.discard(name)
            self._by_playbook.get(account["id"], set()).discard(name)
            if held:
                segments = [s for s in segments if s.get("name") != name]
            traits = account.get("traits")
            matching = isinstance(traits, dict) and any(
                segment == name and traits.get(trait) is True for segment, trait in self.config.playbooks
            )
            if matching:
                withheld.add(name)
        account["segments"] = segments
        account["updatedAt"] = vitally_timestamp(self.clock.stamp())
        self.accounts.touched(account["id"])
        return account

    # ------------------------------------------------------------ simulation

    def add_generated(self, section: Mapping[str, Any]) -> tuple[int, int]:
        """Add generated accounts and users as brand-new signups; return (accounts, users) added.

        Records whose id is taken are skipped; the rest get `createdAt` = `updatedAt` = now.
        """
        fresh: dict[str, list[dict[str, Any]]] = {}
        for name, coll in (("accounts", self.accounts), ("users", self.users)):
            fresh[name] = []
            for raw in section.get(name) or []:
                if str(raw.get("id")) in coll.by_id:
                    continue
                stamp = vitally_timestamp(self.clock.stamp())
                fresh[name].append({**raw, "createdAt": stamp, "updatedAt": stamp})
        self.load(fresh)
        return len(fresh["accounts"]), len(fresh["users"])

    def change_mrr(self, account_id: str, mrr: float) -> None:
        """Set an account's MRR as the product's billing sync would, bumping `updatedAt`."""
        account = self.accounts.by_id[account_id]
        account["mrr"] = mrr
        account["updatedAt"] = vitally_timestamp(self.clock.stamp())
        self.accounts.touched(account_id)

    # ------------------------------------------------------------ rate limit

    def admit(self, key: str) -> tuple[bool, dict[str, str]]:
        """Count one request against `key`'s sliding window.

        Returns (admitted, RateLimit-* headers). A refused request does not take a slot.
        Real time (monotonic), not the sandbox clock: clients really wait `RateLimit-Reset`.
        """
        limit = self.config.vitally_rate_limit
        window = self.config.vitally_rate_window_s
        now = time.monotonic()
        with self._rate_lock:
            stamps = self._windows.setdefault(key, deque())
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            admitted = len(stamps) < limit
            if admitted:
                stamps.append(now)
            # To the microsecond first: `stamps[0] + window - now` for the request just admitted
            # can come out a hair over `window` in floating point, and the ceiling a second over.
            reset = math.ceil(round(window - (now - stamps[0]), 6)) if stamps else 0
            headers = {
                "RateLimit-Limit": rate_limit_value(limit, window),
                "RateLimit-Remaining": str(max(0, limit - len(stamps))),
                "RateLimit-Reset": str(max(0, reset)),
            }
        return admitted, headers

    # ------------------------------------------------------------- dispatch

    @staticmethod
    def template(path: str) -> str:
        """The path with ids replaced by `:id`, for the call counters."""
        parts = path.rstrip("/").split("/")
        # /resources/<collection>/<id>/<sub>: position 3 is always an id.
        if len(parts) > 3:
            parts[3] = ":id"
        return "/".join(parts)

    def handle(self, request: Request) -> Reply:
        """Answer one `/resources/...` request (auth, rate limit, routing)."""
        self.run_due_playbooks()
        key = _basic_user(request.headers.get("authorization"))
        admitted, headers = self.admit(key or "")
        try:
            if not key or (self.config.vitally_api_key is not None and key != self.config.vitally_api_key):
                raise _VitallyError(401, "Unauthorized")
            if not admitted:
                raise _VitallyError(429, "Too Many Requests")
            status, body = self._route(request)
        except _VitallyError as exc:
            status, body = exc.status, {"statusCode": exc.status, "message": exc.message}
        return Reply(status, body, headers)

    def _route(self, request: Request) -> tuple[int, Any]:
        parts = [p for p in request.path.split("/") if p][1:]  # drop "resources"
        method, depth = request.method, len(parts)
        if not parts or parts[0] not in ("accounts", "users", "tasks", "notes"):
            raise _VitallyError(404, "Not Found")
        name = parts[0]
        coll: _Collection = getattr(self, name)
        if depth == 1 and method == "GET":
            return 200, self._list(request, coll, name)
        if depth == 1 and method == "POST" and name in ("tasks", "notes"):
            return self._upsert_activity(request, name)
        if depth == 2 and method == "GET":
            return 200, self._get(coll, parts[1], name)
        if depth == 2 and method == "PUT" and name == "accounts":
            return 200, self._put_account(parts[1], request)
        if depth == 2 and method == "DELETE" and name == "accounts":
            return 200, self._delete_account(parts[1])
        if depth == 3 and method == "GET" and name == "accounts" and parts[2] in ("users", "tasks", "notes"):
            return 200, self._account_children(request, parts[1], parts[2])
        if depth <= 2:
            raise _VitallyError(405, "Method Not Allowed")
        raise _VitallyError(404, "Not Found")

    # -------------------------------------------------------------- handlers

    def _get(self, coll: _Collection, key: str, name: str) -> dict[str, Any]:
        record = coll.find(key)
        if record is None:
            raise _VitallyError(404, f"{name[:-1].capitalize()} not found")
        return record

    def _put_account(self, key: str, request: Request) -> dict[str, Any]:
        account = self.accounts.find(key)
        if account is None:
            raise _VitallyError(404, "Account not found")
        body = _json_object(request.body)
        traits = body.get("traits", {})
        if not isinstance(traits, dict):
            raise _VitallyError(400, "traits must be an object")
        if "name" in body:
            if not isinstance(body["name"], str) or not body["name"]:
                raise _VitallyError(400, "name must be a non-empty string")
            account["name"] = body["name"]
        # `segments`, `keyRoles` and the owner ids are edited in the app: ignored over REST, except
        # that `accountOwnerId` "can be set to null" (V-accounts).
        if "accountOwnerId" in body and body["accountOwnerId"] is None:
            account["accountOwnerId"] = None
        merged = dict(account.get("traits") or {})
        for trait, value in traits.items():
            if value is None:
                merged.pop(trait, None)
            else:
                merged[trait] = copy.deepcopy(value)
        account["traits"] = merged
        account["updatedAt"] = vitally_timestamp(self.clock.stamp())
        self._schedule_playbooks(account)
        self.accounts.touched(account["id"])
        return account

    def _delete_account(self, key: str) -> dict[str, Any]:
        """ "Permanently deletes an Account in Vitally [...] and all data that exclusively belongs to
        that Account (e.g., notes, tasks, traits)" (Vitally's "Delete an Account", as summarised by
        withone.ai: tests/fixtures/real/SOURCES.md). No tombstone: the accounts list never shows it
        again, and a GET or PUT of it is 404. The answer's body is not documented: `{}`."""
        account = self.accounts.find(key)
        if account is None:
            raise _VitallyError(404, "Account not found")
        for coll in (self.tasks, self.notes):
            for child in [c for c in coll.by_id.values() if c.get("accountId") == account["id"]]:
                coll.remove(child["id"])
        self.accounts.remove(account["id"])
        return {}

    def _account_children(self, request: Request, key: str, sub: str) -> dict[str, Any]:
        account = self.accounts.find(key)
        if account is None:
            raise _VitallyError(404, "Account not found")
        account_id = account["id"]
        if sub == "users":
            return self._list(request, self.users, sub, lambda u: account_id in (u.get("accountIds") or []))
        return self._list(request, getattr(self, sub), sub, lambda r: r.get("accountId") == account_id)

    def _upsert_activity(self, request: Request, name: str) -> tuple[int, dict[str, Any]]:
        """POST a task or note; a known `externalId` updates that record instead of adding one."""
        body = _json_object(request.body)
        coll: _Collection = getattr(self, name)
        required = "name" if name == "tasks" else "note"
        fields = _TASK_FIELDS if name == "tasks" else _NOTE_FIELDS
        external = body.get("externalId")
        if external is not None and not isinstance(external, str):
            raise _VitallyError(400, "externalId must be a string")
        existing = coll.by_id.get(coll.by_external.get(external, "")) if external is not None else None
        record: dict[str, Any] = copy.deepcopy(existing) if existing is not None else {}
        if "accountId" in body or existing is None:
            record["accountId"] = self._activity_account(body)
        for key in fields:
            if key in body:
                record[key] = copy.deepcopy(body[key])
        if not record.get(required):
            raise _VitallyError(400, f"{required} is required")
        stamp = vitally_timestamp(self.clock.stamp())
        if existing is None:
            record["id"] = self._new_id(name[:-1])
            record["externalId"] = external
            record["createdAt"] = stamp
            if name == "tasks":
                for key, default in _TASK_DEFAULTS.items():
                    record.setdefault(key, copy.deepcopy(default))
        record["updatedAt"] = stamp
        coll.put(record)
        return 200, record

    def _activity_account(self, body: Mapping[str, Any]) -> str:
        """The id of the account a task or note body names (by id or externalId)."""
        if not isinstance(body.get("accountId"), str) or not body["accountId"]:
            raise _VitallyError(400, "accountId is required")
        account = self.accounts.find(body["accountId"])
        if account is None:
            raise _VitallyError(404, "Account not found")
        return str(account["id"])

    def _list(
        self,
        request: Request,
        coll: _Collection,
        name: str,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """One page newest-first; the cursor is the (sort value, id) of the page's last record."""
        limit = _page_limit(request)
        sort_by = request.param("sortBy") or "updatedAt"
        if sort_by not in _SORTS:
            raise _VitallyError(400, "sortBy must be updatedAt or createdAt")
        filters: list[Callable[[dict[str, Any]], bool]] = [keep] if keep is not None else []
        if name == "accounts":
            filters += _status_filter(request)
        keys = coll.ascending(sort_by)
        cursor = request.param("from")
        position = len(keys) if not cursor else bisect.bisect_left(keys, _decode_cursor(cursor, sort_by))
        results: list[dict[str, Any]] = []
        last: tuple[str, str] | None = None
        more = False
        for key in _descending(keys, position):
            record = coll.by_id[key[1]]
            if not all(f(record) for f in filters):
                continue
            if len(results) == limit:
                more = True
                break
            results.append(record)
            last = key
        next_cursor = _encode_cursor(last, sort_by) if more and last is not None else None
        return {"results": results, "next": next_cursor}


def _page_limit(request: Request) -> int:
    """The `limit` parameter: 1 to 100, 100 when absent."""
    limit_text = request.param("limit")
    try:
        limit = _MAX_LIMIT if limit_text is None else int(limit_text)
    except ValueError:
        raise _VitallyError(400, "limit must be an integer") from None
    if not 1 <= limit <= _MAX_LIMIT:
        raise _VitallyError(400, f"limit must be between 1 and {_MAX_LIMIT}")
    return limit


def _status_filter(request: Request) -> list[Callable[[dict[str, Any]], bool]]:
    """The accounts' `status` parameter as a filter: active ones by default, churned ones, or both."""
    status = request.param("status") or "active"
    if status not in _STATUSES:
        raise _VitallyError(400, "status must be active, churned or activeOrChurned")
    if status == "active":
        return [lambda a: a.get("churnedAt") is None]
    if status == "churned":
        return [lambda a: a.get("churnedAt") is not None]
    return []


def _descending(keys: list[tuple[str, str]], position: int) -> Iterator[tuple[str, str]]:
    for index in range(position - 1, -1, -1):
        yield keys[index]


def _encode_cursor(key: tuple[str, str], sort_by: str) -> str:
    raw = json.dumps([sort_by, key[0], key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort_by: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sort, value, record_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise _VitallyError(400, "Invalid cursor") from None
    if sort != sort_by or not isinstance(value, str) or not isinstance(record_id, str):
        raise _VitallyError(400, "Invalid cursor for this sortBy")
    return value, record_id


def _seed_links(items: list[Any]) -> dict[str, dict[str, set[str]]]:
    """A seed's `segment_links` → account id → {"playbook": names, "person": names}."""
    links: dict[str, dict[str, set[str]]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        account, name, by = item.get("accountId"), item.get("segment"), item.get("addedBy")
        if isinstance(account, str) and isinstance(name, str) and by in ("playbook", "person"):
            links.setdefault(account, {}).setdefault(by, set()).add(name)
    return links


def _basic_user(header: str | None) -> str | None:
    """The user-name part of a Basic credential (Vitally's secret key), or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise _VitallyError(400, "Invalid JSON body") from None
    if not isinstance(value, dict):
        raise _VitallyError(400, "Body must be a JSON object")
    return value
