"""The daemon's memory in SQLite: mirror, cursors, last-written values, outbox, run history.

Every method that changes several tables is meant to be called inside `with state.atomic():`
so that planned writes and the state that caused them commit together.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import sqlite3
import tempfile
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import sqlite_utils

from core.decoding import decode_stored
from core.errors import SyncError
from core.records import STATUS_SINCE
from core.safe_json import finite_json_line, json_encoder, json_line
from core.triage import LABELS, Remembered, Triage
from state.events import INBOX_SUFFIX, EventSource, QueuedEvents, connect_inbox, inbox_path
from state.migrations import MIGRATIONS, SF_LINK_FIELDS, SYNC_KEY_SQL, migrate, sf_link_sql
from state.writes import OutboxRow, OutboxStatus, Owner, OwnerChoice, PlannedWrite, target_of, write_key

__all__ = ["LastWritten", "PlanLog", "StateDB", "StateUnusableError", "sqlite_text", "sqlite_value"]


class StateUnusableError(SyncError):
    """The state file cannot be used: not an SQLite database, damaged (a failed integrity check,
    a truncated file), or not crm-sync's (another program's database, or a newer crm-sync's).
    Exit status 5; the file is left as it is (README: "Recovering the state file")."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"the state file {path} cannot be used: {problem}")


def _unreadable(error: sqlite3.DatabaseError) -> str:
    if "malformed" in str(error):
        return f"damaged ({error})"
    return f"not a readable SQLite database ({error})"


def _verify(conn: sqlite3.Connection, path: Path, *, pages: bool = True) -> None:
    """Raise `StateUnusableError` unless `conn` is a sound crm-sync state (or an empty file).

    `PRAGMA quick_check` reads every page (O(N), without the index cross-checks of
    `integrity_check`): a damaged or truncated file is found before anything is planned on it.
    Without `pages` (a file crm-sync closed cleanly and nobody changed since: `_closed_cleanly`)
    only the header, the schema and its version are read: a file that is not SQLite, not
    crm-sync's or a newer crm-sync's is still refused.
    """
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)")] if pages else ["ok"]
        tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone() if "schema_version" in tables else None
    except sqlite3.DatabaseError as error:  # "file is not a database", "database disk image is malformed"
        raise StateUnusableError(path, _unreadable(error)) from None
    if problems != ["ok"]:
        raise StateUnusableError(path, "damaged (integrity check: " + "; ".join(problems) + ")")
    if tables and "schema_version" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise StateUnusableError(path, f"not a crm-sync state file (an SQLite database with the tables {shown})")
    version = 0 if row is None or row[0] is None else int(row[0])
    if version > len(MIGRATIONS):
        raise StateUnusableError(
            path, f"written by a newer crm-sync (schema version {version}; this one knows up to {len(MIGRATIONS)})"
        )


CLOSED_SUFFIX = ".closed"  # beside the state file: what it was like when crm-sync last closed it cleanly


def _closed_path(path: Path) -> Path:
    return Path(f"{path}{CLOSED_SUFFIX}")


def _identity(path: Path) -> str:
    """What changes when anything writes or replaces the file: device, inode, size, mtime (ns)."""
    info = path.stat()
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def _closed_cleanly(path: Path) -> bool:
    """Whether the state file is, byte for byte as far as the file system can tell, the file a
    crm-sync process left when it closed it cleanly (`_mark_closed`): the mark beside it names
    this device, inode, size and modification time, and no `-wal` or `-shm` says a connection has
    it open or a crash left it. Such a file was checked when that process opened it and written
    since only through SQLite, so its pages need no second `quick_check`; a file copied, restored,
    edited, truncated or left by a crash has no matching mark and is checked in full."""
    try:
        mark = _closed_path(path).read_text(encoding="ascii").strip()
        return not _in_use(path) and mark == _identity(path)
    except (OSError, UnicodeDecodeError):
        return False


def _forget_closed(path: Path) -> None:
    """Remove the mark before anything could write to the file: a crash from here on leaves none."""
    with contextlib.suppress(FileNotFoundError):
        _closed_path(path).unlink()


def _mark_closed(path: Path) -> None:
    """Write the mark of a clean close (owner-only, replaced atomically), unless another
    connection still has the file open (its `-wal` or `-shm` remains)."""
    if _in_use(path) or not path.exists():
        return
    mark = _closed_path(path)
    partial = Path(f"{mark}.tmp")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(_identity(path) + "\n")
        if _in_use(path):  # a connection opened it meanwhile: no promise about what it will write
            partial.unlink()
            return
        os.replace(partial, mark)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()  # without a mark the next start checks every page: slower, never wrong


def _in_use(path: Path) -> bool:
    """A connection has (or a crash left) the database open in WAL mode."""
    return Path(f"{path}-wal").exists() or Path(f"{path}-shm").exists()


def _signature(path: Path) -> tuple[int, int, int]:
    """What changes when a writer changes the file (a checkpoint writes it in place)."""
    info = path.stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


def _copy(source: Path, target: Path) -> None:
    """A consistent copy of the state file `source` at `target`, without touching `source`: its
    bytes when no connection has it open (no `-wal`, no `-shm`: reading it through SQLite would
    leave those two files behind it), else SQLite's online backup from a read-only connection."""
    if not _in_use(source):
        before = _signature(source)
        shutil.copyfile(source, target)
        os.chmod(target, 0o600)
        if not _in_use(source) and _signature(source) == before:
            return  # nobody wrote meanwhile: the copy is the file (the caller's check judges it)
        target.unlink()  # a writer started meanwhile: copy it again through SQLite
    copy = sqlite3.connect(target)
    source_conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        source_conn.backup(copy)
    except sqlite3.DatabaseError as error:
        raise StateUnusableError(source, _unreadable(error)) from None
    finally:
        source_conn.close()
        copy.close()


# `json.dumps`'s text from an encoder made once (a planned write is a tree of JSON values).
_ENCODE = json_encoder()


def _encode(write: PlannedWrite) -> str:
    return _ENCODE(
        [
            write.system,
            write.op,
            write.record,
            write.fields,
            write.rule,
            write.reason,
            write.payload,
            write.account,
            write.previous,
            None if write.owner is None else write.owner.as_json(),
            write.expects,
        ]
    )


def _from_list(values: list[Any]) -> PlannedWrite:
    system, op, record, fields, rule, reason, payload, account, previous, owner, expects = values
    shown = None if owner is None else Owner.from_json(owner)
    return PlannedWrite(system, op, record, fields, rule, reason, payload, account, previous, shown, expects)


# A planned write in the plan log: its plan line as `--format json` prints it (`shown`: cli.md's
# keys, `sync.safe.json_line`'s text) and what else makes the write (`rest`, JSON: `[payload,
# expects]`, each 0 when it is the line's `fields` or `previous`, as it nearly always is). A write
# holding a non-finite number, whose printed line says "NaN" where the write holds NaN, has its
# whole `_encode` text as `rest` instead (eleven members, not two): decoding gives back the write
# exactly either way.
# The log's file holds a write as one line, `shown`, a tab, `rest`: neither JSON text holds a tab
# or a line break (inside strings they are escapes; the separators are ", " and ": ").
_SAME = 0

# How much of the plan log `PlanLog._rows` reads at a time.
_CHUNK = 1 << 20


def _plan_row(write: PlannedWrite) -> tuple[str, str]:
    """(`shown`, `rest`) of a write: see above."""
    line = write.as_json()
    shown = finite_json_line(line)
    if shown is None:
        return json_line(line), _encode(write)
    payload = _SAME if write.payload is write.fields else write.payload
    expects = _SAME if write.expects is write.previous else write.expects
    rest = "[0, 0]" if payload is _SAME and expects is _SAME else _ENCODE([payload, expects])
    return shown, rest


def _from_plan_row(shown: str, rest: str) -> PlannedWrite:
    """The write `_plan_row` stored."""
    more = decode_stored(rest)
    if len(more) != 2:
        return _from_list(more)
    line = decode_stored(shown)
    payload, expects = more
    fields, previous = line["fields"], line.get("previous")
    if payload == _SAME and type(payload) is int:
        payload = fields
    if expects == _SAME and type(expects) is int:
        expects = previous
    system, op, record, rule, reason = line["system"], line["op"], line["record"], line["rule"], line["reason"]
    return _from_list(
        [system, op, record, fields, rule, reason, payload, line.get("account"), previous, line.get("owner"), expects]
    )


def _field(path: str) -> str:
    """SQL for the member at `path` (SQL text: a quoted literal or `?`) of a mirrored record's raw
    JSON, NULL when SQLite cannot read that JSON: a record decoded with a number beyond a float
    (`1e400`, stored by Python as `Infinity`) is reported by the record parser, and must not make
    every query over the mirror fail with "malformed JSON"."""
    return f"CASE WHEN json_valid(raw) THEN json_extract(raw, {path}) END"


# `_field("'$.Sync_Key__c'")`, spelled as the index `sf_records_sync_key` holds it (SQLite uses an
# index on an expression only where a query writes the same expression).
_SYNC_KEY = SYNC_KEY_SQL

# The Salesforce fields stored beside each mirrored record (`SF_LINK_FIELDS`), field -> column.
_LINK_COLUMNS = {name: column for column, name in SF_LINK_FIELDS.items()}

# `StateDB.upsert_sf`: the record, its digest (`?6`) and the fields its facts are found by, read
# from its raw JSON (`?4`) by SQLite.
_UPSERT_SF = (
    f"INSERT INTO sf_records (object, id, modstamp, raw, error, digest, {', '.join(SF_LINK_FIELDS)}) "
    f"VALUES (?1, ?2, ?3, ?4, ?5, ?6, {', '.join(sf_link_sql('?4'))}) "
    "ON CONFLICT (object, id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ("modstamp", "raw", "error", "digest", *SF_LINK_FIELDS))
)


def _sf_row(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return row["object"], row["id"], row["modstamp"], row["raw"], row.get("error")


def _sf_digest(raw: str | bytes | None) -> bytes:
    """A mirrored record's digest: BLAKE2b (16 bytes) of its raw JSON as UTF-8, as SQLite holds it."""
    data = raw.encode() if isinstance(raw, str) else raw or b""
    return hashlib.blake2b(data, digest_size=16).digest()


# `StateDB.unknown_sync_keys`: read from the index `sf_records_sync_key`, not from every lead's JSON.
# `mirrored.key`, never a bare `key`: inside the outbox subquery a bare `key` is the outbox's own
# column of that name, which made the outbox condition a no-op.
UNKNOWN_SYNC_KEYS_SQL = (
    f"SELECT mirrored.key FROM (SELECT {_SYNC_KEY} AS key FROM sf_records "
    "WHERE object = 'Lead' AND error IS NULL) AS mirrored "
    "WHERE mirrored.key LIKE ? ESCAPE '\\' "
    "AND NOT EXISTS (SELECT 1 FROM last_written w WHERE w.system = 'salesforce' "
    "AND w.record = mirrored.key AND w.field = 'Sync_Key__c') "
    "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.system = 'salesforce' AND o.record = mirrored.key) "
    "ORDER BY mirrored.key"
)


def _json_value(text: str) -> Any:
    """`json.loads(text)`, with a shortcut for a JSON string without escapes (an id, an email): text
    between quotes with no backslash, quote or control character in it is the string itself."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" not in inner and '"' not in inner and inner.isprintable():
            return inner
    return json.loads(text)


def sqlite_text(value: bytes) -> str:
    """Text SQLite handed back as bytes (`CAST(... AS BLOB)`): UTF-8, a lone surrogate kept as one.
    `json_extract` of a JSON string escaping one (`"\\ud800"`, which JSON allows) gives bytes that
    are no UTF-8, which Python's sqlite3 refuses to decode as a column's text."""
    try:
        return value.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace")


def sqlite_value(kind: object, value: object) -> Any:
    """A value read as (`typeof(x)`, `CAST(x AS BLOB)`) back as the column would give it."""
    if not isinstance(value, bytes) or kind == "null":
        return None
    text = sqlite_text(value)
    if kind == "integer":
        return int(text)
    if kind == "real":
        return float(text)
    return text if kind == "text" else value


def _only(column: str, values: Sequence[str] | None) -> tuple[str, list[Any]]:
    """SQL restricting outbox rows to `values` of `record` (or of `column`): "" when None."""
    if values is None:
        return "", []
    return f" AND {column or 'record'} IN ({','.join('?' * len(values))})", list(values)


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# The SQL function `StateDB.sf_where` compares a field's values by, while it is given a `key`.
_KEY_FUNCTION = "crm_sync_key"


def _text_key(key: Callable[[str], str]) -> Callable[[object], str | None]:
    """`key` for SQLite: a text value's key, NULL for any other value (a number, NULL)."""
    return lambda value: key(value) if isinstance(value, str) else None


# A mirrored record's status as every lead status is compared (`rules.context.folded_statuses`:
# casefolded, whitespace around it ignored): SQLite's `lower(trim(…))` gives exactly that for a
# status of printable ASCII (the space to the tilde), the `_FOLD` function (Python's own) for any
# other (a tab, a no-break space, an "É"): both readers of the mirror, the eager one that parses
# every lead and the lazy and scoped ones that search by SQL, find the same disqualified leads.
_FOLD = "crm_sync_fold"
_STATUS = f"CASE WHEN s.status GLOB '*[^ -~]*' THEN {_FOLD}(s.status) ELSE lower(trim(s.status)) END"


def _fold(value: object) -> str | None:
    return value.strip().casefold() if isinstance(value, str) else None


def _folded(statuses: Collection[str]) -> list[str]:
    """`statuses` as `_STATUS` spells a mirrored status, in a stable order."""
    return sorted({status.strip().casefold() for status in statuses})


def _json_or_none(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else _ENCODE(value)


class PlanLog(Sequence[PlannedWrite]):
    """The writes one cycle planned, in order. They are kept in an unnamed temporary file (one
    line a write: see `_plan_row`), not in memory, so a cold cycle's 166,000 planned writes cost
    no more memory than ten. Each batch is queued in the outbox as it is flushed, inside the
    cycle's transaction (unless `queue` is False: a dry run's copy of the state is thrown away).
    Readable as long as the log is: the file is closed when it is dropped.

    A file, not a table: the writes are only ever appended and read back in order, and SQLite's
    B-tree cost a cold dry run at 100,000 accounts 0.3-0.4 s more to store them (measured on
    2026-12-05 with that run's 166,000 lines: 0.36-0.46 s into a temporary table, 0.10-0.25 s
    into the file)."""

    def __init__(self, state: StateDB, run_id: int, at: str, *, queue: bool = True, batch: int = 1000) -> None:
        self._state = state
        self._queue = queue
        self._run_id = run_id
        self._at = at
        self._batch = batch
        self._buffer: list[PlannedWrite] = []
        self._count = 0
        self._size = 0  # bytes in the file
        self.queued = 0
        # Readable by its owner only, and unlinked at once (O_TMPFILE where the system has it):
        # nothing else can open it, and it is gone when the process is.
        self._file = tempfile.TemporaryFile("wb", dir=state._temporary)  # noqa: SIM115 (closed by the finalizer)
        weakref.finalize(self, self._file.close)

    def append(self, write: PlannedWrite) -> None:
        self._buffer.append(write)
        self._count += 1
        if len(self._buffer) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Store the buffered writes and queue them in the outbox."""
        if not self._buffer:
            return
        write, size = self._file.write, 0
        for shown, rest in map(_plan_row, self._buffer):
            size += write(f"{shown}\t{rest}\n".encode())  # a line at a time: no batch held twice
        self._size += size
        if self._queue:
            self.queued += self._state.enqueue(self._buffer, self._run_id, self._at)
        self._buffer = []

    def _rows(self) -> Iterator[tuple[str, str]]:
        """(`shown`, `rest`) of each stored write, in order: read by position (`os.pread`), so a
        reader never moves the offset the log appends at, and sees the writes stored when it
        started."""
        self._file.flush()
        fd, end, offset, tail = self._file.fileno(), self._size, 0, b""
        while offset < end:
            chunk = os.pread(fd, min(_CHUNK, end - offset), offset)
            if not chunk:
                raise OSError(f"the plan log ended at byte {offset} of {end}")
            offset += len(chunk)
            *lines, tail = (tail + chunk).split(b"\n")
            for line in lines:
                shown, _, rest = line.decode().partition("\t")
                yield shown, rest

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[PlannedWrite]:
        buffered = list(self._buffer)
        for shown, rest in self._rows():
            yield _from_plan_row(shown, rest)
        yield from buffered

    def json_lines(self) -> Iterator[str]:
        """Each write's plan line, in order, as `sync.safe.json_line(write.as_json())` gives it:
        stored as it was planned, neither decoded nor encoded again (a cold cycle at 100,000
        accounts prints 166,000)."""
        buffered = list(self._buffer)
        for shown, _ in self._rows():
            yield shown
        for write in buffered:
            yield json_line(write.as_json())

    @overload
    def __getitem__(self, index: int) -> PlannedWrite: ...

    @overload
    def __getitem__(self, index: slice) -> list[PlannedWrite]: ...

    def __getitem__(self, index: int | slice) -> PlannedWrite | list[PlannedWrite]:
        """One write, or a slice of the plan (e.g. `plan[:15]` for a preview), read in order."""
        if isinstance(index, slice):
            return list(itertools.islice(self, index.start, index.stop, index.step))
        position = index + len(self) if index < 0 else index
        for write in itertools.islice(self, position, None):
            return write
        raise IndexError(index)


def _source(value: object) -> EventSource:
    return "salesforce" if value == "salesforce" else "vitally"


def _choice(row: Mapping[str, Any]) -> OwnerChoice:
    return OwnerChoice(
        key=row["key"],
        pool=row["pool"],
        user_id=row["user_id"],
        name=row["name"],
        fallback=bool(row["fallback"]),
        reason=row["reason"],
        run_id=row["run_id"],
        at=row["at"],
        candidates=tuple(json.loads(row["candidates"])),
        skipped=json.loads(row["skipped"]),
    )


class LastWritten(Mapping[tuple[str, str], Any]):
    """What crm-sync last wrote to one system, as a read-only mapping (record, field) → value.
    Lookups load one record's values and keep only the latest record's, so the memory it takes
    does not grow with the number of records (the planner asks record by record)."""

    def __init__(self, state: StateDB, system: str) -> None:
        self._state = state
        self._system = system
        self._record: str | None = None
        self._values: dict[str, Any] = {}
        self._times: dict[str, str] = {}
        query = "SELECT 1 FROM last_written WHERE system = ? LIMIT 1"
        self._none = state.db.execute(query, [system]).fetchone() is None  # a first sync asks nothing

    def _load(self, record: str) -> dict[str, Any]:
        if self._none:
            return self._values
        if record != self._record:
            rows = self._state.db.execute(
                "SELECT field, value, written_at FROM last_written WHERE system = ? AND record = ?",
                [self._system, record],
            ).fetchall()
            self._record = record
            self._values = {field: json.loads(value) for field, value, _ in rows}
            self._times = {field: at for field, _, at in rows}
        return self._values

    def forget(self, record: str) -> None:
        """Read `record` again at the next lookup (its values were just written)."""
        self._none = False
        if self._record == record:
            self._record = None

    def written_at(self, record: str, field: str) -> str | None:
        """When crm-sync last wrote `field` of `record` (`sync.vocabulary.iso`), as the state says."""
        self._load(record)
        return self._times.get(field)

    def __getitem__(self, key: tuple[str, str]) -> Any:
        record, field = key
        return self._load(record)[field]

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        return key[1] in self._load(str(key[0]))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        rows = self._state.db.execute("SELECT record, field FROM last_written WHERE system = ?", [self._system])
        return ((record, field) for record, field in rows)

    def __len__(self) -> int:
        query = "SELECT count(*) FROM last_written WHERE system = ?"
        return int(self._state.db.execute(query, [self._system]).fetchone()[0])


def _carry_events(db: sqlite_utils.Database, inbox: sqlite3.Connection) -> None:
    """Move the events a state file of schema 5 to 8 kept in its own `events` table into the
    inbox file, before migration 9 drops that table. The inbox commits first and ignores a
    delivery it holds, so a crash between the two steps only carries them again."""
    if not db["events"].exists():
        return
    columns = "delivery, source, record, received_at, status, attempts, run_id, processed_at, note"
    rows = db.execute(f"SELECT {columns} FROM events ORDER BY id").fetchall()
    if rows:
        inbox.execute("BEGIN IMMEDIATE")
        inbox.executemany(f"INSERT OR IGNORE INTO events ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        inbox.execute("COMMIT")


# The order a cycle reads the mirrored accounts in, and so plans them: the order crm-sync first
# mirrored them (Vitally's order on the first read, newest first; each account seen later after
# them). An upsert keeps a row's rowid, so an account keeps its place. Not id order: the ids
# arrive in Vitally's order, so reading 100,000 accounts by id sought each row through the id
# index, anywhere in the table (176,000 of a cold dry run's 277,000 page reads); in rowid order
# the table is read once, front to back: ~0.9 s less CPU in that run (README, "What issue 17
# changed").
# Owners are still drawn in account-id order, once every account was judged (`sync.plan`).
MIRROR_ORDER = "rowid"


# A lead crm-sync created (it carries a `Sync_Key__c`) that a person deleted, kept in the mirror
# marked deleted (`sync.ingest`): read as their "no".
_OWN_DELETED_LEAD = (
    "(coalesce(json_extract(raw, '$.IsDeleted'), 0) = 1 AND coalesce(json_extract(raw, '$.Sync_Key__c'), '') != '')"
)

# The state's clock, as SQLite reads it (UTC, ISO 8601, as every stamp of the state).
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
# How long a kept note waits for its lead: the cool-off it dates (`[rules.guards] cool_off_days`,
# 90 by default) is over by then; a lead restored from the recycle bin is back within 15 days.
_NOTES_KEPT = "-90 days"
# The notes of the mirrored leads a query's further conditions select, kept for when each is read
# again (`lead_status_notes`).
_KEEP_NOTES = (
    "INSERT OR REPLACE INTO lead_status_notes (id, status, since, kept_at) "
    f"SELECT id, json_extract(raw, '$.Status'), coalesce(json_extract(raw, '$.{STATUS_SINCE}'), modstamp), {_NOW} "
    f"FROM sf_records WHERE object = 'Lead' AND json_valid(raw) "
    f"AND coalesce(json_extract(raw, '$.{STATUS_SINCE}'), modstamp) IS NOT NULL"
)


class StateDB:
    """Typed access to the state tables. Construct with `open`, `snapshot` or `memory`."""

    def __init__(self, db: sqlite_utils.Database, inbox: sqlite3.Connection | None = None) -> None:
        self.db = db
        # The event inbox (`state.events`): a file of its own, so that storing an event never
        # waits for a cycle's transaction; in memory for a state in memory.
        self.inbox = inbox if inbox is not None else connect_inbox(None, timeout=30)
        self._temporary: Path | None = None  # a snapshot's private directory, removed on close
        self._path: Path | None = None  # the state file `open` opened: marked closed cleanly on close
        db.execute("PRAGMA temp_store=FILE")
        _carry_events(db, self.inbox)
        migrate(db)

    @classmethod
    def open(cls, path: Path) -> StateDB:
        """Open (creating if needed, readable by its owner only) the state file for a real run.

        WAL journal with `synchronous=FULL`: every commit is on disk before the call returns, and
        a cycle sends a write only after the commit that planned it (owner chosen, outbox
        row). With NORMAL a power loss could forget a committed plan whose write was already
        sent, and the next start would draw an owner again. FULL costs one fsync per commit; the
        cycle commits once for its plan plus once per write batch.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite's -wal/-shm inherit this mode
        clean = _closed_cleanly(path)
        _forget_closed(path)
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            _verify(conn, path, pages=not clean)  # before anything could write to it
            os.chmod(path, 0o600)  # a file left by an older build with looser permissions is tightened
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            inbox = connect_inbox(inbox_path(path), timeout=30)
        except sqlite3.DatabaseError as error:  # the state file or its inbox is not SQLite
            conn.close()
            raise StateUnusableError(path, f"not a crm-sync state file ({error})") from None
        except StateUnusableError:
            conn.close()
            raise
        try:
            state = cls(sqlite_utils.Database(conn), inbox)
        except sqlite3.DatabaseError as error:  # a schema the migrations cannot take
            conn.close()
            inbox.close()
            raise StateUnusableError(path, f"not a crm-sync state file ({error})") from None
        state._path = path
        return state

    @classmethod
    def snapshot(cls, path: Path) -> StateDB:
        """A private copy of the state file for dry runs and reports: the file is read and never
        written, so a dry run leaves it (and the files beside it) byte-for-byte as they were. The
        copy lives in a temporary directory only its owner can enter (not in memory: a
        100,000-account mirror would be hundreds of megabytes), removed with every file SQLite
        made in it on `close`, or at exit. A state file that cannot be used raises
        `StateUnusableError`, as `open` does."""
        directory = Path(tempfile.mkdtemp(prefix="crm-sync-copy-"))  # mode 0700
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        copy_path = directory / "state.db"
        try:
            if path.exists() and path.stat().st_size > 0:
                _copy(path, copy_path)
            clean = _closed_cleanly(path)  # `_copy` copied its bytes, or read it through SQLite
            copy = sqlite3.connect(copy_path)
            _verify(copy, path, pages=not clean)  # the copy's problems are the original's
            copy.execute("PRAGMA journal_mode=OFF")
            copy.execute("PRAGMA synchronous=OFF")
            events, events_copy = inbox_path(path), directory / ("state.db" + INBOX_SUFFIX)
            if events.exists() and events.stat().st_size > 0:
                _copy(events, events_copy)
            state = cls(sqlite_utils.Database(copy), connect_inbox(events_copy, timeout=30))
        except (StateUnusableError, sqlite3.DatabaseError) as error:
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(error, StateUnusableError):
                raise
            raise StateUnusableError(path, f"not a crm-sync state file ({error})") from None
        state._temporary = directory
        return state

    @classmethod
    def memory(cls) -> StateDB:
        return cls(sqlite_utils.Database(sqlite3.connect(":memory:")))

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite_utils.Database]:
        """A transaction, committed when the block ends and rolled back when it raises (a
        savepoint inside one already open). It takes the write lock as it begins (`BEGIN
        IMMEDIATE`), waiting for it up to the connection's busy timeout: the daemon's event
        receiver writes to the same file through a connection of its own (`state.events`), and
        a transaction that read first and wrote later would fail at once with "database is
        locked" had the receiver committed in between (SQLite cannot upgrade a stale snapshot)."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close both connections; a state file opened by `open` is then marked as closed cleanly
        (`_closed_cleanly`: the next start reads its header and schema, not every page)."""
        self.db.close()
        self.inbox.close()
        if self._path is not None:
            _mark_closed(self._path)
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)

    # -- mirror ---------------------------------------------------------------------------------

    def account_versions(self, ids: Iterable[str] | None = None) -> dict[str, str]:
        """Account id → the `updatedAt` we hold, for these ids (all when None): to drop boundary
        duplicates and unchanged records of an incremental read, a page at a time."""
        return self._versions("SELECT id, updated_at FROM accounts WHERE 1", [], ids)

    def _versions(self, sql: str, params: list[Any], ids: Iterable[str] | None) -> dict[str, str]:
        if ids is None:
            return dict(self.db.execute(sql, params).fetchall())
        wanted = list(ids)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update(self.db.execute(f"{sql} AND id IN ({','.join('?' * len(chunk))})", [*params, *chunk]))
        return found

    def upsert_accounts(self, rows: Iterable[Mapping[str, Any]], read_run: int | None = None) -> None:
        """Rows of {id, updated_at, raw (JSON text), error}; `read_run` marks them as read by that
        run (a parse error found later in the cycle is reported by that run only)."""
        self.db.conn.executemany(
            "INSERT INTO accounts (id, updated_at, raw, error, read_run) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, raw = excluded.raw, "
            "error = excluded.error, read_run = excluded.read_run",
            ((row["id"], row["updated_at"], row["raw"], row.get("error"), read_run) for row in rows),
        )

    def account_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM accounts").fetchone()[0])

    def pending_count(self, records: Sequence[str] | None = None, confirmed_run: int | None = None) -> int:
        """Outbox rows waiting to be sent (of these records only, and those a run queued or
        confirmed, when given)."""
        where, params = _only("", records)
        if confirmed_run is not None:
            where += " AND coalesce(confirmed_run, run_id) = ?"
            params.append(confirmed_run)
        query = f"SELECT count(*) FROM outbox WHERE status = 'pending'{where}"
        return int(self.db.execute(query, params).fetchone()[0])

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows waiting (pending) and refused for good (parked)."""
        rows = self.db.execute(
            "SELECT status, count(*) FROM outbox WHERE status IN ('pending', 'parked') GROUP BY status"
        ).fetchall()
        return {"pending": 0, "parked": 0, **{str(status): int(count) for status, count in rows}}

    def mark_account_error(self, account_id: str, error: str) -> None:
        self.db.execute("UPDATE accounts SET error = ? WHERE id = ?", [error, account_id])

    def recheck_malformed(self, parser: str) -> int:
        """Clear the marks of the accounts a plan found malformed under other parse settings than
        `parser` (`sync.accounts.parser_fingerprint`: a config edited since, another release) and
        forget their judgements, so the plan that follows parses them again: it judges those the
        change fixed and reports the others anew. A mark made at the read (no `parser`: a missing
        `updatedAt`) stays until Vitally sends the account again. Reads the malformed accounts
        only (a partial index); returns how many marks were cleared."""
        ids = [
            str(row[0])
            for row in self.db.conn.execute(
                "SELECT id FROM accounts WHERE coalesce(error, '') != '' AND json_valid(error) "
                "AND json_type(error, '$.parser') = 'text' AND json_extract(error, '$.parser') != ?",
                [parser],
            )
        ]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            self.db.conn.execute(f"UPDATE accounts SET error = NULL WHERE id IN ({marks})", chunk)
            self.db.conn.execute(f"DELETE FROM account_inputs WHERE id IN ({marks})", chunk)
        return len(ids)

    def iter_accounts(self, ids: Sequence[str] | None = None) -> Iterator[tuple[str, str, str | None, int | None]]:
        """(id, raw JSON, parse error or None, the run that last read it) for every mirrored
        account (of `ids` only, when given), streamed from the database in the mirror's order
        (`MIRROR_ORDER`)."""
        where, params = ("", []) if ids is None else (f" WHERE id IN ({','.join('?' * len(ids))})", list(ids))
        query = f"SELECT id, raw, error, read_run FROM accounts{where} ORDER BY {MIRROR_ORDER}"
        yield from self.db.conn.execute(query, params)

    # The stored judgements that do not hold at `:at` under `:rules`: made under other rules, the
    # clock outside their window (`valid_from` ≤ at < `valid_until` holds), a write of their account
    # pending, their Salesforce facts changed (`temp.facts_changed`). Each arm is a range of an index
    # (state migration 18), so an idle cycle reads what changed, not every judgement. Only that table
    # and indexes are read: an account's own row holds its raw JSON (overflow pages, read only for the
    # accounts judged). An account with a write still pending (queued by an event's mini-cycle, an
    # `apply`, an earlier cycle) never holds: the cycle must judge it again, or settling would drop
    # that write as no longer wanted.
    _STALE = (
        "SELECT id FROM account_inputs WHERE rules < :rules "
        "UNION SELECT id FROM account_inputs WHERE rules > :rules "
        "UNION SELECT id FROM account_inputs WHERE rules IS NULL "
        "UNION SELECT id FROM account_inputs WHERE rules = :rules AND valid_until <= :at "
        "UNION SELECT id FROM account_inputs WHERE rules = :rules AND valid_until IS NULL "
        "UNION SELECT id FROM account_inputs WHERE rules = :rules AND valid_from > :at "
        "UNION SELECT id FROM account_inputs WHERE rules = :rules AND valid_from IS NULL "
        "UNION SELECT account FROM outbox WHERE status = 'pending' AND account IS NOT NULL "
        "UNION SELECT id FROM temp.facts_changed"
    )

    def _facts_changed(self, ids: Iterable[str]) -> None:
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS facts_changed (id TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM temp.facts_changed")
        self.db.conn.executemany("INSERT OR IGNORE INTO temp.facts_changed VALUES (?)", ((i,) for i in ids))

    def stored_facts(self) -> dict[str, str]:
        """Account id → the Salesforce facts fingerprint stored with its judgement, for the
        judgements made on some facts (not '')."""
        rows = self.db.conn.execute("SELECT id, facts FROM account_inputs WHERE facts != ''")
        return {str(account_id): str(facts) for account_id, facts in rows}

    def _managers(self, where: str = "", params: Mapping[str, Any] | None = None) -> Counter[str | None]:
        rows = self.db.conn.execute(
            f"SELECT manager, count(*) FROM account_inputs {where} GROUP BY manager", params or {}
        )
        return Counter({manager: int(count) for manager, count in rows})

    def accounts_holding(self, rules: str, at: float, facts_changed: Iterable[str]) -> tuple[int, Counter[str]]:
        """How many mirrored accounts have a stored judgement that holds (made under these
        `rules`, the clock `at` inside its window, no write of theirs pending, their facts not
        in `facts_changed`), and how many of those each stored manager counts: every judgement's
        (an index's count) less those that do not hold (`_STALE`). Every stored judgement is of a
        mirrored, well-formed account (state migrations 8 and 18)."""
        self._facts_changed(facts_changed)
        every = self._managers()
        stale = self._managers(f"WHERE id IN ({self._STALE})", {"rules": rules, "at": at})
        every.subtract(stale)
        managers = Counter({str(manager): count for manager, count in every.items() if manager and count > 0})
        return sum(every.values()), managers

    def _every_account_judged(self) -> bool:
        """Whether every well-formed mirrored account has a stored judgement (holding or not): the
        judgements are a subset of those accounts (state migration 18), so equal counts say so
        without a join. Three counts of indexes, the malformed accounts' a partial one."""
        judged = self.db.conn.execute("SELECT count(*) FROM account_inputs").fetchone()[0]
        mirrored = self.db.conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
        malformed = self.db.conn.execute("SELECT count(*) FROM accounts WHERE coalesce(error, '') != ''").fetchone()[0]
        return int(judged) == int(mirrored) - int(malformed)

    def accounts_to_judge(
        self, rules: str, at: float, facts_changed: Iterable[str]
    ) -> Iterator[tuple[str, str, int | None]]:
        """(id, raw JSON, the run that last read it) of every well-formed mirrored account whose
        stored judgement does not hold (`accounts_holding`, `_STALE`) or that has none (read or
        changed since, or its last judgement planned something), in the mirror's order
        (`MIRROR_ORDER`)."""
        self._facts_changed(facts_changed)
        wanted = self._STALE
        if not self._every_account_judged():  # a scan of the accounts' index, only when some have none
            wanted += " UNION SELECT id FROM accounts WHERE id NOT IN (SELECT id FROM account_inputs)"
        # The accounts to judge are found in the index of `accounts` (id -> rowid) without reading
        # a row, and only their rows are read, in the mirror's order: ordered by rowid over the
        # whole table, SQLite would read every row, those that hold too (an idle cycle's ~140 MB
        # at 100,000 accounts); sorted after the read, it would hold every row read in memory.
        yield from self.db.conn.execute(
            f"SELECT a.id, a.raw, a.read_run FROM accounts a WHERE a.{MIRROR_ORDER} IN "
            f"(SELECT b.{MIRROR_ORDER} FROM accounts b WHERE b.id IN ({wanted})) AND coalesce(a.error, '') = '' "
            f"ORDER BY a.{MIRROR_ORDER}",
            {"rules": rules, "at": at},
        )

    def has_judgements(self) -> bool:
        """Whether any account's judgement is stored (`sync.incremental`)."""
        return bool(self.db.conn.execute("SELECT EXISTS (SELECT 1 FROM account_inputs)").fetchone()[0])

    def save_account_inputs(self, rows: Iterable[tuple[str, str, str, float, float, str | None]]) -> None:
        """Rows of (id, facts fingerprint, rules fingerprint, valid_from, valid_until, manager)."""
        self.db.conn.executemany("INSERT OR REPLACE INTO account_inputs VALUES (?, ?, ?, ?, ?, ?)", rows)

    def judged_accounts(self, ids: Collection[str], rules: str) -> set[str]:
        """Those of `ids` whose judgement the state keeps (`account_inputs`) under `rules`."""
        found: set[str] = set()
        listed = list(ids)
        for start in range(0, len(listed), 500):
            chunk = listed[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.conn.execute(
                f"SELECT id FROM account_inputs WHERE rules = ? AND id IN ({marks})", [rules, *chunk]
            )
            found.update(str(account_id) for (account_id,) in rows)
        return found

    def forget_account_inputs(self, ids: Iterable[str]) -> None:
        self.db.conn.executemany("DELETE FROM account_inputs WHERE id = ?", ((i,) for i in ids))

    def leads_judged(self, rules: str, at: float) -> dict[str, tuple[str, str]]:
        """Lead id → (company key, context fingerprint) of every stored lead judgement that holds:
        made under these `rules`, with the clock `at` (epoch seconds) inside its window, for a lead
        whose mirrored row did not change since (a trigger deletes the record when it does). A lead
        with a write still pending never holds: settling would drop that write as no longer wanted."""
        rows = self.db.conn.execute(
            "SELECT id, company, context FROM lead_inputs WHERE rules = ? AND ? >= valid_from AND ? < valid_until "
            "AND id NOT IN (SELECT record FROM outbox WHERE status = 'pending' AND system = 'salesforce')",
            [rules, at, at],
        )
        return {str(lead): (str(company), str(context)) for lead, company, context in rows}

    def lead_links(self, ids: Collection[str]) -> dict[str, tuple[str, Any]]:
        """Lead id → (the Vitally account it is linked to, its `LeadSource`) as the mirror holds it,
        for those of `ids` linked to one (read beside the record: `sf_records.vitally_id`)."""
        found: dict[str, tuple[str, Any]] = {}
        wanted = list(ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.db.conn.execute(
                "SELECT id, vitally_id, CASE WHEN json_valid(raw) THEN json_extract(raw, '$.LeadSource') END "
                f"FROM sf_records WHERE object = 'Lead' AND id IN ({','.join('?' * len(chunk))}) "
                "AND vitally_id IS NOT NULL AND vitally_id != ''",
                chunk,
            )
            found.update((str(lead), (str(account), source)) for lead, account, source in rows)
        return found

    def save_lead_inputs(self, rows: Iterable[tuple[str, str, str, str, float, float]]) -> None:
        """Rows of (id, company key, context fingerprint, rules fingerprint, valid_from, valid_until)."""
        self.db.conn.executemany("INSERT OR REPLACE INTO lead_inputs VALUES (?, ?, ?, ?, ?, ?)", rows)

    def forget_lead_inputs(self, ids: Iterable[str]) -> None:
        self.db.conn.executemany("DELETE FROM lead_inputs WHERE id = ?", ((i,) for i in ids))

    def triage_verdicts(self, version: str, keys: Sequence[str] | None = None) -> dict[str, Triage]:
        """Submission key → the verdict kept for it by the classifier `version` (`sync.verdicts`),
        for every submission, or for these `keys` only."""
        query = "SELECT key, label, confidence, reason FROM triage_verdicts WHERE version = ?"
        rows: Iterable[tuple[Any, ...]]
        if keys is None:
            rows = self.db.conn.execute(query, [version])
        else:
            rows = []
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows += self.db.conn.execute(f"{query} AND key IN ({','.join('?' * len(chunk))})", [version, *chunk])
        return {
            str(key): Triage(label, float(confidence), str(reason))
            for key, label, confidence, reason in rows
            if label in LABELS
        }

    def save_triage_verdicts(self, version: str, verdicts: Iterable[tuple[str, Triage]]) -> None:
        """Keep these verdicts of the classifier `version`, and forget every other version's."""
        self.db.conn.execute("DELETE FROM triage_verdicts WHERE version != ?", [version])
        self.db.conn.executemany(
            "INSERT OR REPLACE INTO triage_verdicts VALUES (?, ?, ?, ?, ?)",
            ((key, version, t.label, t.confidence, t.reason) for key, t in verdicts),
        )

    def account_traits(self, ids: Sequence[str], trait: str) -> dict[str, Any]:
        """Account id → its trait `trait` as the mirror holds it, for these accounts (those that
        have it): read in SQLite (`json_extract`), a query per 500, no account decoded."""
        found: dict[str, Any] = {}
        path = f'$.traits."{trait}"'
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            where = f"FROM accounts WHERE id IN ({','.join('?' * len(chunk))})"
            try:
                rows = self.db.execute(f"SELECT id, json_extract(raw, ?) {where}", [path, *chunk]).fetchall()
            except sqlite3.OperationalError as error:
                if "decode" not in str(error):
                    raise
                # A trait holding an escaped lone surrogate (`sqlite_text`): read as bytes.
                typed = self.db.execute(
                    f"SELECT id, typeof(json_extract(raw, ?1)), CAST(json_extract(raw, ?1) AS BLOB) {where}",
                    [path, *chunk],
                )
                rows = [(record, sqlite_value(kind, value)) for record, kind, value in typed]
            found.update((str(record), value) for record, value in rows if value is not None)
        return found

    def account_raw(self, account_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT raw FROM accounts WHERE id = ?", [account_id]).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def sf_versions(self, sobject: str, ids: Iterable[str] | None = None) -> dict[str, str]:
        """Record id → the SystemModstamp we hold, for these ids of `sobject` (all when None)."""
        return self._versions("SELECT id, modstamp FROM sf_records WHERE object = ?", [sobject], ids)

    def lead_statuses(self, ids: Iterable[str]) -> dict[str, tuple[Any, Any, str]]:
        """Lead id → (its `Status`, crm-sync's note of since when: `core.records.STATUS_SINCE`, the
        SystemModstamp of the version held) as the mirror holds it, for those of `ids` it holds
        readable."""
        found: dict[str, tuple[Any, Any, str]] = {}
        wanted = list(ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.db.conn.execute(
                "SELECT id, json_extract(raw, '$.Status'), json_extract(raw, '$.' || ?), modstamp FROM sf_records "
                f"WHERE object = 'Lead' AND id IN ({','.join('?' * len(chunk))}) AND json_valid(raw)",
                [STATUS_SINCE, *chunk],
            )
            found.update((str(record_id), (status, since, str(stamp))) for record_id, status, since, stamp in rows)
        return found

    def sf_holds(self, sobject: str, raws: Mapping[str, str]) -> set[str]:
        """The ids among `raws` (id → a record's raw JSON text) whose mirrored record is that very
        text (by its stored digest): read again unchanged."""
        digests = self.sf_digests(sobject, list(raws))
        return {record_id for record_id, raw in raws.items() if digests.get(record_id) == _sf_digest(raw)}

    def upsert_sf(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows of {object, id, modstamp, raw, error}. Each record's digest and the fields its
        facts are found by are stored beside it (state migration 12): the digest computed here,
        the fields read by SQLite from the JSON as it is written."""
        self.db.conn.executemany(_UPSERT_SF, ((*_sf_row(row), _sf_digest(row["raw"])) for row in rows))

    def remove_sf(self, sobject: str, ids: Sequence[str]) -> None:
        """Forget these mirrored `sobject` records (deleted in Salesforce, or out of sight). A
        lead's note of since when it holds its status waits in `lead_status_notes`, as after a
        `resync` (`reset_mirror`): a lead restored from the recycle bin, or back in sight, is
        mirrored again with the note it had when its status is the one it had."""
        if sobject == "Lead" and ids:
            self._prune_notes()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            if sobject == "Lead":
                self.db.conn.execute(
                    f"{_KEEP_NOTES} AND id IN ({','.join('?' * len(chunk))}) AND NOT {_OWN_DELETED_LEAD}", chunk
                )
            self.db.conn.execute(
                f"DELETE FROM sf_records WHERE object = ? AND id IN ({','.join('?' * len(chunk))})", [sobject, *chunk]
            )

    def record_merges(self, merged: Sequence[tuple[str, str, str, bool]], *, live: Sequence[str] = ()) -> None:
        """Remember leads merged away in Salesforce, `(Id, MasterRecordId, SystemModstamp, whether
        crm-sync created it)` (state migration 15): crm-sync's own, and a person's only when a
        remembered merge ends on it (a chain to follow: one that does not cannot start a chain
        later, a lead merged away being merged into no more), so the table grows with crm-sync's
        merges, not the org's. Forget any merge of the `live` leads (read again, not deleted:
        restored)."""
        if merged:
            self.db.conn.executemany(
                "INSERT INTO lead_merges (victim, master, merged_at) SELECT ?1, ?2, ?3 "
                "WHERE ?4 OR EXISTS (SELECT 1 FROM lead_merges WHERE master = ?1) "
                "ON CONFLICT (victim) DO UPDATE SET master = excluded.master, merged_at = excluded.merged_at",
                merged,
            )
            self._chained("lead_merges", "victim, master, merged_at", [row[:3] for row in merged])
        self._unmerge("lead_merges", live)

    def record_account_merges(self, merged: Sequence[tuple[str, str, str | None, str]]) -> None:
        """Remember Salesforce Accounts merged away, `(Id, MasterRecordId, the Vitally account it
        named or None, SystemModstamp)` (state migration 17): those that named a Vitally account,
        and another only when a remembered merge ends on it (a chain to follow), so the table grows
        with the merges of the Accounts crm-sync joins, not the org's. An Account restored from the
        recycle bin keeps its merge: "the child objects are reparented, which can't be undone"
        (SOAP API, `undelete()`), so its opportunities stay on the Account it was merged into."""
        if merged:
            self.db.conn.executemany(
                "INSERT INTO account_merges (victim, master, vitally_id, merged_at) SELECT ?1, ?2, ?3, ?4 "
                "WHERE ?3 IS NOT NULL OR EXISTS (SELECT 1 FROM account_merges WHERE master = ?1) "
                "ON CONFLICT (victim) DO UPDATE SET master = excluded.master, "
                "vitally_id = excluded.vitally_id, merged_at = excluded.merged_at",
                merged,
            )
            self._chained("account_merges", "victim, master, vitally_id, merged_at", merged)

    def _chained(self, table: str, columns: str, merged: Sequence[tuple[Any, ...]]) -> None:
        """The merges of `merged` (rows of `columns`, the victim first and the master second) that
        a remembered merge ends on, once more until none is added: a chain's later merge can come
        before its earlier one in a page (the same second, both read together)."""
        marks = ", ".join(f"?{i}" for i in range(1, len(columns.split(",")) + 1))
        sql = (
            f"INSERT OR IGNORE INTO {table} ({columns}) SELECT {marks} "
            f"WHERE EXISTS (SELECT 1 FROM {table} WHERE master = ?1)"
        )
        while True:
            before = self.db.conn.total_changes
            self.db.conn.executemany(sql, merged)
            if self.db.conn.total_changes == before:
                return

    def _unmerge(self, table: str, live: Sequence[str]) -> None:
        """Forget the merges (`table`: `lead_merges`) of the records `live`."""
        if live and self.db.conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            for start in range(0, len(live), 500):
                chunk = live[start : start + 500]
                self.db.conn.execute(f"DELETE FROM {table} WHERE victim IN ({','.join('?' * len(chunk))})", chunk)

    def account_merges(self) -> dict[str, tuple[str, str | None]]:
        """Every Salesforce Account merged away that the state remembers → (the Account it was
        merged into, the Vitally account it named or None)."""
        rows = self.db.execute("SELECT victim, master, vitally_id FROM account_merges")
        return {str(victim): (str(master), None if named is None else str(named)) for victim, master, named in rows}

    def lead_merges(self) -> dict[str, str]:
        """Every lead merged away that the state remembers → the lead it was merged into."""
        rows = self.db.execute("SELECT victim, master FROM lead_merges")
        return {str(victim): str(master) for victim, master in rows}

    def merged_leads(self, account_ids: Collection[str] | None = None) -> dict[str, str]:
        """The mirrored leads merged away that name a Vitally account (of `account_ids`, when
        given) → that account: where the account's chains of merges start."""
        sql = (
            "SELECT m.victim, s.vitally_id FROM lead_merges m JOIN sf_records s ON s.object = 'Lead' "
            "AND s.id = m.victim WHERE coalesce(s.error, '') = '' AND s.vitally_id != ''"
        )
        if account_ids is None:
            return {str(victim): str(account) for victim, account in self.db.conn.execute(sql)}
        found: dict[str, str] = {}
        wanted = sorted(account_ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.db.conn.execute(f"{sql} AND s.vitally_id IN ({','.join('?' * len(chunk))})", chunk)
            found.update((str(victim), str(account)) for victim, account in rows)
        return found

    def lead_masters(self, ids: Sequence[str]) -> dict[str, str]:
        """Lead id → the lead it was merged into, for those of `ids` merged away."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self.db.conn.execute(
                f"SELECT victim, master FROM lead_merges WHERE victim IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update((str(victim), str(master)) for victim, master in rows)
        return found

    def sf_stored(self, sobject: str, ids: Sequence[str], column: str) -> dict[str, str]:
        """Record id → the value of a field stored beside it (`column` of `SF_LINK_FIELDS`: no JSON
        is read), for these well-formed mirrored `sobject` records that have one."""
        if column not in SF_LINK_FIELDS:
            raise ValueError(f"not a stored field: {column!r}")
        rows = self._sf_by_ids(f"id, {column}", sobject, ids, f" AND coalesce(error, '') = '' AND {column} != ''")
        return {str(record_id): str(value) for record_id, value in rows}

    def sf_digests(self, sobject: str, ids: Sequence[str], *, well_formed: bool = False) -> dict[str, bytes]:
        """Record id → the digest of its raw JSON, for these mirrored `sobject` records (those held;
        `well_formed`: those held without a parse error)."""
        only = " AND coalesce(error, '') = ''" if well_formed else ""
        return {str(record_id): digest for record_id, digest in self._sf_by_ids("id, digest", sobject, ids, only)}

    def iter_lead_links(
        self, statuses: Sequence[str]
    ) -> Iterator[tuple[str, bytes, str | None, Any, str | None, bytes | None, str | None]]:
        """(id, digest, `Vitally_Account_Id__c`, the OwnerId crm-sync last wrote under its
        `Sync_Key__c` (None when none), `Company`, raw JSON as UTF-8 bytes when the status is one
        of `statuses`, else None, `ConvertedOpportunityId` (state migration 16)) of every
        well-formed mirrored lead that names a Vitally account or
        whose status is one of `statuses`, in id order. The fields and the digest were stored when
        the lead was mirrored (state migration 12): finding the leads that are Salesforce facts
        reads no lead's JSON, and copies out only the JSON of those of `statuses` (parsed later, if
        their company is asked about: a lead's `Classification__c`, not stored beside it, is read
        then, so the ones the demo triage dropped as spam are left out by `sync.facts`)."""
        folded = _folded(statuses)
        marks = ",".join("?" * len(folded))
        self.db.conn.create_function(_FOLD, 1, _fold, deterministic=True)
        rows = self.db.conn.execute(
            f"SELECT s.id, s.digest, s.vitally_id, w.value, s.company, "
            f"CASE WHEN {_STATUS} IN ({marks}) THEN CAST(s.raw AS BLOB) END, s.converted_opp FROM sf_records s "
            "LEFT JOIN last_written w ON w.system = 'salesforce' AND w.record = s.sync_key AND w.field = 'OwnerId' "
            "AND s.vitally_id != '' "
            "WHERE s.object = 'Lead' AND coalesce(s.error, '') = '' "
            f"AND (s.vitally_id != '' OR {_STATUS} IN ({marks})) "
            "ORDER BY s.id",
            [*folded, *folded],
        )
        for lead_id, digest, linked, owner, company, raw, converted in rows:
            yield lead_id, digest, linked, None if owner is None else _json_value(owner), company, raw, converted

    def iter_sf_links(self, sobject: str) -> Iterator[tuple[str, bytes, str | None, str | None]]:
        """(id, digest, `Vitally_Account_Id__c`, `AccountId`) of every well-formed mirrored
        `sobject` record, in id order: stored when the record was mirrored (state migration 12),
        so no record's JSON is read."""
        yield from self.db.conn.execute(
            "SELECT id, digest, vitally_id, account_id FROM sf_records "
            "WHERE object = ? AND coalesce(error, '') = '' ORDER BY id",
            [sobject],
        )

    def iter_sf_digested(self, sobject: str) -> Iterator[tuple[str, str, bytes]]:
        """(id, raw JSON, digest) of every well-formed mirrored `sobject` record, in id order."""
        yield from self.db.conn.execute(
            "SELECT id, raw, digest FROM sf_records WHERE object = ? AND coalesce(error, '') = '' ORDER BY id",
            [sobject],
        )

    def sf_raw_many(self, sobject: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Record id → fields of these mirrored `sobject` records (those the mirror holds)."""
        return dict(self.iter_sf_raw(sobject, ids))

    def iter_sf_raw(self, sobject: str, ids: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, fields) of these mirrored `sobject` records (those the mirror holds), 500 at a
        time: a caller that keeps something smaller than the fields (a parsed record) never holds
        every decoded record at once (at 100,000 accounts the linked leads' decoded JSON alone was
        44 MiB of a repeat cycle's peak)."""
        for record_id, raw in self._sf_by_ids("id, raw", sobject, ids):
            yield str(record_id), dict(json.loads(raw))

    def _sf_by_ids(self, columns: str, sobject: str, ids: Sequence[str], also: str = "") -> Iterator[tuple[Any, ...]]:
        """The `columns` of these mirrored `sobject` records, 500 ids a query (under SQLite's
        bound on a statement's parameters), each query's rows fetched whole before they are
        yielded (a caller may write between two); `also`: more of the WHERE clause."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            yield from self.db.conn.execute(
                f"SELECT {columns} FROM sf_records WHERE object = ? AND id IN ({','.join('?' * len(chunk))}){also}",
                [sobject, *chunk],
            ).fetchall()

    def has_sf(self, sobject: str) -> bool:
        """Whether the mirror holds any `sobject` record."""
        return (
            self.db.conn.execute("SELECT 1 FROM sf_records WHERE object = ? LIMIT 1", [sobject]).fetchone() is not None
        )

    def begin_id_comparison(self) -> None:
        """Start a comparison of the mirror with the Ids a service has (`add_present_ids`, then
        `compare_ids`): the Ids go to a temporary table, not to memory."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS present_ids (id TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM temp.present_ids")

    def add_present_ids(self, ids: Iterable[str]) -> None:
        self.db.conn.executemany("INSERT OR IGNORE INTO temp.present_ids VALUES (?)", ((i,) for i in ids))

    def compare_account_ids(self) -> tuple[int, list[str]]:
        """(how many accounts the mirror holds; those of them not among the present ids, in id
        order), after `add_present_ids` of Vitally's ids."""
        count = int(self.db.conn.execute("SELECT count(*) FROM accounts").fetchone()[0])
        vanished = [
            str(i)
            for (i,) in self.db.conn.execute(
                "SELECT id FROM accounts WHERE id NOT IN (SELECT id FROM temp.present_ids) ORDER BY id"
            )
        ]
        return count, vanished

    def remove_accounts(self, ids: Sequence[str], reason: str, at: str) -> int:
        """Forget these accounts (deleted in Vitally): out of the mirror, their judgements and kept
        malformed versions gone, and every pending or parked write for them (their traits, their
        tasks, their new leads; a PUT refused with 404 once it was deleted) dropped with `reason`.
        Left as they are: a new lead's upsert already sent once (it may have created the lead: the
        plan settles it, done if the lead is there, else dropped), and the announcement or ticket
        of a lead already written (its owner is told). Returns how many writes were dropped."""
        dropped = 0
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            self.db.conn.execute(f"DELETE FROM accounts WHERE id IN ({marks})", chunk)
            self.db.conn.execute(f"DELETE FROM account_inputs WHERE id IN ({marks})", chunk)
            self.db.conn.execute(f"DELETE FROM malformed WHERE system = 'vitally' AND record IN ({marks})", chunk)
            dropped += self.db.conn.execute(
                "UPDATE outbox SET status = 'superseded', last_error = ?, updated_at = ? "
                "WHERE status IN ('pending', 'parked') AND system IN ('vitally', 'salesforce') "
                "AND NOT (op = 'upsert_lead' AND attempts > 0) "
                f"AND (account IN ({marks}) OR (system = 'vitally' AND record IN ({marks})))",
                [reason, at, *chunk, *chunk],
            ).rowcount
        return dropped

    def compare_ids(self, sobject: str) -> tuple[int, list[str], list[str]]:
        """(how many `sobject` records the mirror holds that are not marked deleted; those of them
        not among the present Ids; the present Ids the mirror holds no such record for), the lists
        in id order. A record kept marked deleted (`IsDeleted` true: crm-sync's own lead a person
        deleted) is no longer expected among the present Ids; present again, it is unseen."""
        live = (
            "SELECT id FROM sf_records WHERE object = ? AND NOT coalesce("
            "CASE WHEN json_valid(raw) THEN json_extract(raw, '$.IsDeleted') = 1 END, 0)"
        )
        count = int(self.db.conn.execute(f"SELECT count(*) FROM ({live})", [sobject]).fetchone()[0])
        vanished = [
            str(i)
            for (i,) in self.db.conn.execute(
                f"SELECT id FROM ({live}) WHERE id NOT IN (SELECT id FROM temp.present_ids) ORDER BY id", [sobject]
            )
        ]
        unseen = [
            str(i)
            for (i,) in self.db.conn.execute(
                f"SELECT id FROM temp.present_ids WHERE id NOT IN ({live}) ORDER BY id", [sobject]
            )
        ]
        return count, vanished, unseen

    def sf_ids(self, sobject: str) -> list[str]:
        """The ids of the mirrored `sobject` records, in id order."""
        return [
            str(i) for (i,) in self.db.conn.execute("SELECT id FROM sf_records WHERE object = ? ORDER BY id", [sobject])
        ]

    def sf_rows(self, sobject: str, ids: Sequence[str]) -> Iterator[tuple[str, str, str | None]]:
        """`iter_sf`'s rows of these ids (given in id order), in id order."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            yield from self.db.conn.execute(
                f"SELECT id, raw, error FROM sf_records WHERE object = ? AND id IN ({','.join('?' * len(chunk))}) "
                "ORDER BY id",
                [sobject, *chunk],
            )

    def iter_sf(self, sobject: str) -> Iterator[tuple[str, str, str | None]]:
        yield from self.db.execute("SELECT id, raw, error FROM sf_records WHERE object = ? ORDER BY id", [sobject])

    def echo_sf_writes(self, sobject: str, written: Mapping[str, Mapping[str, Any]]) -> None:
        """Show the mirror the fields crm-sync just wrote to these records (record id -> fields, a
        Salesforce update's own success: its answer carries no record). Until the next read brings
        each record whole, an event's mini-cycle that plans from the mirror (a linked lead, an
        opportunity's or a lead's account) sees crm-sync's own values, not the ones they replaced,
        which it took for a person's and reported as conflicts. The version (`SystemModstamp`) is
        kept, so the next read replaces the row. A Lead's `Status` is not shown: the read that
        brings the new one dates it (`core.records.STATUS_SINCE`, the version it was first read
        in), which a status already there would date from the version before. A record the mirror
        does not hold, or holds as malformed, is left to that read."""
        rows: list[dict[str, Any]] = []
        held = self._sf_by_ids("id, modstamp, raw", sobject, list(written), " AND coalesce(error, '') = ''")
        for record_id, modstamp, raw_json in held:
            fields = {k: v for k, v in written[record_id].items() if not (sobject == "Lead" and k == "Status")}
            raw = {**json.loads(raw_json), **fields}
            rows.append({"object": sobject, "id": record_id, "modstamp": modstamp, "raw": json.dumps(raw)})
        self.upsert_sf(rows)

    def sf_raw(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT raw FROM sf_records WHERE object = ? AND id = ?", [sobject, record_id]).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def sf_where(
        self,
        sobject: str,
        field: str,
        values: Collection[str],
        *,
        key: Callable[[str], str] | None = None,
    ) -> list[tuple[str, str, str | None]]:
        """(id, raw JSON, parse error or None) of the mirrored `sobject` records whose `field`
        holds one of `values`, in id order, for the few records an event's mini-cycle needs (the
        whole-mirror passes stream `iter_sf`). By `Id`, and by a field the mirror stores beside
        each record (`SF_LINK_FIELDS`: the Vitally account, the Opportunity's Account, a Lead's
        Status and Company), the well-formed records only, found through the index
        `sf_records_links` (a scan of that object's entries in it, with no record's JSON decoded);
        by another field, one scan of that object's JSON (malformed records included, and those
        whose JSON SQLite cannot read, such as a number beyond a float stored as `Infinity`: the
        caller reads and checks them).

        With `key`, a text value matches when `key` gives it what it gives one of `values` (the
        rules' comparison of a picklist value, any case and spacing, `rules.context.picklist_key`:
        SQLite calls `key` on each record's value, so no index serves such a search)."""
        if not _NAME.fullmatch(field):
            raise ValueError(f"not a field name: {field!r}")
        column = _LINK_COLUMNS.get(field)
        path: list[str] = []
        guard = ""
        if field == "Id":
            value = "id"
        elif column is not None:
            guard, value = "coalesce(error, '') = '' AND ", column  # as the partial index is written
        else:
            guard, value, path = "NOT json_valid(raw) OR ", _field("?"), [f"$.{field}"]
        wanted = sorted(set(values) if key is None else {key(v) for v in values})
        if key is not None:
            value = f"{_KEY_FUNCTION}({value})"
            self.db.conn.create_function(_KEY_FUNCTION, 1, _text_key(key), deterministic=True)
        found: list[tuple[str, str, str | None]] = []
        try:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.extend(
                    self.db.execute(
                        f"SELECT id, raw, error FROM sf_records WHERE object = ? AND ({guard}{value} "
                        f"IN ({','.join('?' * len(chunk))}))",
                        [sobject, *path, *chunk],
                    )
                )
        finally:
            if key is not None:
                self.db.conn.create_function(_KEY_FUNCTION, 1, None)
        return sorted(found)

    def sf_companies(self, sobject: str, statuses: Collection[str]) -> list[tuple[str, str]]:
        """(id, Company) of the well-formed mirrored `sobject` records (Leads) whose Status is one
        of `statuses` and whose Company is text, from the index `sf_records_links` alone: which of
        them an event's mini-cycle needs is decided by their company, before any is read (and the
        caller leaves out, once read, those the demo triage dropped as spam: `sync.facts`)."""
        wanted = _folded(statuses)
        self.db.conn.create_function(_FOLD, 1, _fold, deterministic=True)
        rows = self.db.execute(
            f"SELECT id, company FROM sf_records s WHERE object = ? AND coalesce(error, '') = '' "
            f"AND {_STATUS} IN ({','.join('?' * len(wanted))}) AND company IS NOT NULL",
            [sobject, *wanted],
        )
        return [(str(record_id), str(company)) for record_id, company in rows]

    # -- cursors --------------------------------------------------------------------------------

    def cursors(self) -> dict[str, str]:
        """Every cursor, name → value."""
        rows = self.db.execute("SELECT name, value FROM cursors ORDER BY name")
        return {str(name): str(value) for name, value in rows}

    def reset_mirror(self) -> None:
        """Forget the mirror and its cursors (`resync`): the next read takes everything again from
        both services. What crm-sync wrote, its outbox, owners and history stay, and so does what
        it learnt from reading that no read can bring back:
        - since when each lead holds its status (`core.records.STATUS_SINCE`: Salesforce keeps no
          such date), kept in `lead_status_notes` until the read brings the lead back (90 days at most);
        - its own leads a person deleted (their "no", `rules.episodes`): QueryAll returns a deleted
          record only until the recycle bin is emptied (15 days at most);
        - which record each merged-away lead or account lives on in (`MasterRecordId`, read from
          those deleted records too)."""
        self._prune_notes()
        self.db.execute(f"{_KEEP_NOTES} AND NOT {_OWN_DELETED_LEAD}")
        self.db.execute(
            f"DELETE FROM sf_records WHERE NOT (object = 'Lead' AND json_valid(raw) AND {_OWN_DELETED_LEAD})"
        )
        for table in ("cursors", "accounts", "malformed"):
            self.db.execute(f"DELETE FROM {table}")

    def mark(self, name: str, value: str) -> str:
        """The value of the state's mark `name` (table `marks`, kept by a resync), set to `value`
        by the first caller."""
        self.db.conn.execute("INSERT OR IGNORE INTO marks (name, value) VALUES (?, ?)", [name, value])
        row = self.db.conn.execute("SELECT value FROM marks WHERE name = ?", [name]).fetchone()
        return str(row[0])

    def _prune_notes(self) -> None:
        """Forget the notes kept longer than 90 days (`_NOTES_KEPT`): a lead deleted for good, or
        purged from the recycle bin, never comes back for its note (found by a review: every lead
        deleted in Salesforce left one for good)."""
        self.db.conn.execute(
            "DELETE FROM lead_status_notes WHERE kept_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)", [_NOTES_KEPT]
        )

    def status_notes(self, ids: Sequence[str]) -> dict[str, tuple[Any, str]]:
        """Lead id → (its `Status`, since when) as the mirror held it before a `resync`, for those
        of `ids` whose note waits (`reset_mirror`)."""
        found: dict[str, tuple[Any, str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self.db.conn.execute(
                f"SELECT id, status, since FROM lead_status_notes WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update((str(record_id), (status, str(since))) for record_id, status, since in rows)
        return found

    def drop_status_notes(self, ids: Sequence[str]) -> None:
        """Forget the waiting notes of these leads (mirrored again)."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            self.db.conn.execute(f"DELETE FROM lead_status_notes WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def cursor(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM cursors WHERE name = ?", [name]).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, name: str, value: str) -> None:
        """Move a cursor forward (never back: an older value is ignored)."""
        current = self.cursor(name)
        if current is not None and current >= value:
            return
        self.db.table("cursors").upsert({"name": name, "value": value}, pk="name")

    # -- last written ---------------------------------------------------------------------------

    def last_written(self, system: str) -> LastWritten:
        """(record, field) → the value we last wrote there, read from the state a record at a time
        when asked (the planner asks only where a value differs), never all at once."""
        return LastWritten(self, system)

    def written_field(self, system: str, field: str) -> dict[str, Any]:
        """Record → the value crm-sync last wrote to `field` there, for every record of `system`
        (one query, for a pass that asks about every record)."""
        rows = self.db.execute("SELECT record, value FROM last_written WHERE system = ? AND field = ?", [system, field])
        return {record: _json_value(value) for record, value in rows}

    def written_values(self, system: str, record: str) -> dict[str, Any]:
        """Field → the value crm-sync last wrote there, for one record."""
        rows = self.db.execute(
            "SELECT field, value FROM last_written WHERE system = ? AND record = ?", [system, record]
        ).fetchall()
        return {field: json.loads(value) for field, value in rows}

    def written_values_of(
        self, system: str, records: Sequence[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
        """(record → field → the value crm-sync last wrote there, record → field → when), for these
        records (a query per 500; a record crm-sync never wrote is absent)."""
        found: dict[str, dict[str, Any]] = {}
        times: dict[str, dict[str, str]] = {}
        for start in range(0, len(records), 500):
            chunk = records[start : start + 500]
            rows = self.db.execute(
                f"SELECT record, field, value, written_at FROM last_written WHERE system = ? "
                f"AND record IN ({','.join('?' * len(chunk))})",
                [system, *chunk],
            )
            for record, field, value, at in rows:
                found.setdefault(record, {})[field] = json.loads(value)
                times.setdefault(record, {})[field] = at
        return found, times

    def set_last_written(self, system: str, record: str, values: Mapping[str, Any], run_id: int, at: str) -> None:
        # One statement, not sqlite-utils' upsert_all: that looks the table and its columns up on
        # every call, and this runs once for every record written (a third of the applier's CPU
        # on a cold run of 10,000 accounts, profiled).
        self.db.conn.executemany(
            "INSERT INTO last_written (system, record, field, value, run_id, written_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (system, record, field) DO UPDATE SET "
            "value = excluded.value, run_id = excluded.run_id, written_at = excluded.written_at",
            [(system, record, field, _ENCODE(value), run_id, at) for field, value in values.items()],
        )

    # -- outbox ---------------------------------------------------------------------------------

    def enqueue(self, writes: Iterable[PlannedWrite], run_id: int, at: str) -> int:
        """Queue writes; one already pending with the same content is kept (no duplicate) and
        confirmed by this run: it takes this plan's `previous` and `expects`, read this cycle. A
        pending write of an earlier run to the same target with other content is superseded. A
        write parked (refused for good) waits for `retry`: planning it again does not queue it.
        Returns how many rows were added."""
        batch = {write_key(write): write for write in writes}
        keys = list(batch)
        parked = self._keys_with_status("parked", keys)
        pending = self._keys_with_status("pending", keys)
        conn = self.db.conn
        conn.executemany(
            "UPDATE outbox SET previous = ?, expects = ?, confirmed_run = ? WHERE status = 'pending' AND key = ?",
            (
                (_json_or_none(write.previous), _json_or_none(write.expects), run_id, key)
                for key, write in batch.items()
                if key in pending
            ),
        )
        rows = [
            (
                key,
                target_of(write.system, write.record, write.payload),
                run_id,
                write.system,
                write.op,
                write.record,
                write.account,
                _ENCODE(write.fields),
                _json_or_none(write.previous),
                _json_or_none(write.expects),
                write.rule,
                write.reason,
                None if write.owner is None else _ENCODE(write.owner.as_json()),
                _ENCODE(write.payload),
                at,
                at,
            )
            for key, write in batch.items()
            if key not in parked and key not in pending
        ]
        conn.executemany(
            "UPDATE outbox SET status = 'superseded', updated_at = ?, last_error = 'planned again with other values' "
            "WHERE status = 'pending' AND target = ? AND key != ? AND run_id != ?",
            ((at, row[1], row[0], run_id) for row in rows),
        )
        conn.executemany(
            "INSERT INTO outbox (key, target, run_id, system, op, record, account, fields, previous, expects, rule, "
            "reason, owner, payload, status, attempts, last_error, created_at, updated_at, confirmed_run) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, NULL, ?, ?, {int(run_id)})",
            rows,
        )
        return len(rows)

    def sent_before(self, system: str, record: str) -> bool:
        """Whether any write to `record` was ever sent (attempted at least once), the rows planned
        again with other values (superseded) included: a send whose answer was lost may have
        created the record, though the row queued now for it has never been sent."""
        found = self.db.execute(
            "SELECT 1 FROM outbox WHERE status IN ('pending', 'superseded', 'parked', 'done') AND system = ? "
            "AND record = ? AND attempts > 0 LIMIT 1",
            [system, record],
        ).fetchone()
        return found is not None

    def values_sent(self, system: str, record: str, field: str) -> list[Any]:
        """The values of `field` that writes to `record` still pending, or superseded, carried when
        they were sent (attempted at least once) and whose answers never came: each may be there
        now, crm-sync's own, though the state has no record of it yet."""
        rows = self.db.execute(
            "SELECT payload FROM outbox WHERE status IN ('pending', 'superseded') AND system = ? AND record = ? "
            "AND attempts > 0",
            [system, record],
        ).fetchall()
        sent: list[Any] = []
        for (payload,) in rows:
            values = json.loads(payload)
            if isinstance(values, dict) and field in values:
                sent.append(values[field])
        return sent

    def _keys_with_status(self, status: str, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            found.update(
                row[0]
                for row in self.db.execute(
                    f"SELECT key FROM outbox WHERE status = ? AND key IN ({','.join('?' * len(chunk))})",
                    [status, *chunk],
                )
            )
        return found

    def unconfirmed(self, run_id: int) -> Iterator[OutboxRow]:
        """Pending writes that the plan of `run_id` did not want again (queued by an earlier
        cycle, then overtaken: by a person, by a change of the rules' inputs, or already applied
        by a send whose answer was lost)."""
        rows = self.db.query(
            "SELECT * FROM outbox WHERE status = 'pending' AND coalesce(confirmed_run, run_id) != ? ORDER BY id",
            [run_id],
        )
        yield from (self._row(row) for row in list(rows))

    def unconfirmed_for(self, run_id: int, records: Sequence[str]) -> list[OutboxRow]:
        """The pending writes `unconfirmed` yields, of these records only, or of the accounts
        among them (a write's `account`: its linked leads, new lead and tasks): what an event's
        mini-cycle, which planned only those records, settles."""
        marks = ",".join("?" * len(records))
        rows = self.db.query(
            "SELECT * FROM outbox WHERE status = 'pending' AND coalesce(confirmed_run, run_id) != ? "
            f"AND (record IN ({marks}) OR account IN ({marks})) ORDER BY id",
            [run_id, *records, *records],
        )
        return [self._row(row) for row in list(rows)]

    def pending_targets(self, records: Sequence[str]) -> list[str]:
        """The records with pending writes among `records`, or whose writes belong to one of the
        accounts among them: what an event's mini-cycle sends."""
        marks = ",".join("?" * len(records))
        rows = self.db.execute(
            f"SELECT DISTINCT record FROM outbox WHERE status = 'pending' AND (record IN ({marks}) "
            f"OR account IN ({marks})) ORDER BY record",
            [*records, *records],
        ).fetchall()
        return [str(record) for (record,) in rows]

    def supersede(self, row_ids: Iterable[int], reason: str, at: str) -> None:
        """Never send these pending writes: `reason` says why (kept in `last_error`)."""
        self.db.conn.executemany(
            "UPDATE outbox SET status = 'superseded', last_error = ?, updated_at = ? "
            "WHERE id = ? AND status = 'pending'",
            ((reason, at, row_id) for row_id in row_ids),
        )

    def pending_records(
        self,
        system: str,
        after: str = "",
        limit: int = 500,
        *,
        op: str | None = None,
        records: Sequence[str] | None = None,
        confirmed_run: int | None = None,
    ) -> list[list[OutboxRow]]:
        """The pending writes of `system` (and `op`, if given; of `records` only, and those
        `confirmed_run` queued or confirmed, if given), grouped by record, for up to `limit`
        records after `after` in record order: a page of the outbox, so sending 100,000 writes
        never holds them all in memory."""
        where = "status = 'pending' AND system = ?" + ("" if op is None else " AND op = ?")
        params: list[Any] = [system] if op is None else [system, op]
        only, values = _only("", records)
        where += only
        params += values
        if confirmed_run is not None:
            where += " AND coalesce(confirmed_run, run_id) = ?"
            params.append(confirmed_run)
        records = [
            row[0]
            for row in self.db.execute(
                f"SELECT DISTINCT record FROM outbox WHERE {where} AND record > ? ORDER BY record LIMIT ?",
                [*params, after, limit],
            )
        ]
        if not records:
            return []
        rows = self.db.query(
            f"SELECT * FROM outbox WHERE {where} AND record IN ({','.join('?' * len(records))}) ORDER BY record, id",
            [*params, *records],
        )
        return [list(group) for _, group in itertools.groupby(map(self._row, rows), key=lambda r: r.write.record)]

    def outbox_counts_of(self, system: str) -> int:
        """Pending writes of `system`."""
        row = self.db.execute("SELECT count(*) FROM outbox WHERE status = 'pending' AND system = ?", [system])
        return int(row.fetchone()[0])

    def queued_for(self, system: str, record: str) -> bool:
        """Whether a write to this record of `system` is queued, done or parked (an announcement or a
        ticket is queued once per lead, ever)."""
        row = self.db.execute(
            "SELECT 1 FROM outbox WHERE system = ? AND record = ? AND status IN ('pending', 'done', 'parked') LIMIT 1",
            [system, record],
        ).fetchone()
        return row is not None

    def outbox_status(self, row_id: int) -> str | None:
        """The status of one outbox row (None: no such row)."""
        row = self.db.execute("SELECT status FROM outbox WHERE id = ?", [row_id]).fetchone()
        return None if row is None else str(row[0])

    def outbox_times(self, row_ids: Iterable[int]) -> dict[int, str]:
        """Outbox row id → when it last changed (its last attempt, for a parked write)."""
        ids = list(row_ids)
        found: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = f"SELECT id, updated_at FROM outbox WHERE id IN ({','.join('?' * len(chunk))})"
            found.update((int(i), str(at)) for i, at in self.db.execute(query, chunk))
        return found

    def outbox(
        self, status: OutboxStatus, system: str | None = None, *, confirmed_run: int | None = None
    ) -> list[OutboxRow]:
        """The outbox rows of `status` (of `system`, and queued or confirmed by `confirmed_run`,
        if given), in id order."""
        sql = "SELECT * FROM outbox WHERE status = ?"
        params: list[Any] = [status]
        if system is not None:
            sql += " AND system = ?"
            params.append(system)
        if confirmed_run is not None:
            sql += " AND coalesce(confirmed_run, run_id) = ?"
            params.append(confirmed_run)
        return [self._row(row) for row in self.db.query(sql + " ORDER BY id", params)]

    @staticmethod
    def _row(row: Mapping[str, Any]) -> OutboxRow:
        write = PlannedWrite(
            system=row["system"],
            op=row["op"],
            record=row["record"],
            account=row["account"],
            fields=json.loads(row["fields"]),
            previous=None if row["previous"] is None else json.loads(row["previous"]),
            expects=None if row["expects"] is None else json.loads(row["expects"]),
            rule=row["rule"],
            reason=row["reason"],
            owner=None if row["owner"] is None else Owner.from_json(json.loads(row["owner"])),
            payload=json.loads(row["payload"]),
        )
        return OutboxRow(
            id=row["id"],
            key=row["key"],
            run_id=row["run_id"],
            write=write,
            status=row["status"],
            attempts=row["attempts"],
            last_error=row["last_error"],
        )

    def mark_done(self, row_ids: Iterable[int], at: str, *, counted: bool = False) -> None:
        """Record a successful attempt (`counted`: `begin_attempt` already counted it)."""
        ids = list(row_ids)
        more = "" if counted else ", attempts = attempts + 1"
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            self.db.execute(
                f"UPDATE outbox SET status = 'done'{more}, last_error = NULL, updated_at = ? "
                f"WHERE id IN ({','.join('?' * len(chunk))})",
                [at, *chunk],
            )

    def note_error(self, row_ids: Iterable[int], error: str) -> None:
        """Keep `error` on these pending rows without counting an attempt or moving `updated_at`
        (what a follow-up's look-back reads the channel from: the time of its last attempt)."""
        ids = list(row_ids)
        self.db.execute(
            f"UPDATE outbox SET last_error = ? WHERE status = 'pending' AND id IN ({','.join('?' * len(ids))})",
            [error, *ids],
        )

    def mark_failed(self, row_ids: Iterable[int], error: str, at: str, *, park: bool, counted: bool = False) -> None:
        """Record a failed attempt; a permanent failure parks the write until `retry`."""
        ids = list(row_ids)
        status = "parked" if park else "pending"
        more = "" if counted else ", attempts = attempts + 1"
        self.db.execute(
            f"UPDATE outbox SET status = ?{more}, last_error = ?, updated_at = ? "
            f"WHERE id IN ({','.join('?' * len(ids))})",
            [status, error, at, *ids],
        )

    def begin_attempt(self, row_ids: Iterable[int], at: str) -> None:
        """Count an attempt before it is made (committed by the caller before the request goes out):
        after a crash, a pending row whose `attempts` grew may have taken effect, and its write is
        looked up before it is sent again. `updated_at` says from when."""
        ids = list(row_ids)
        self.db.execute(
            f"UPDATE outbox SET attempts = attempts + 1, updated_at = ? WHERE id IN ({','.join('?' * len(ids))})",
            [at, *ids],
        )

    def outbox_updated_at(self, row_id: int) -> str | None:
        """When the row last changed (for a row `begin_attempt` counted: when it was last tried)."""
        row = self.db.execute("SELECT updated_at FROM outbox WHERE id = ?", [row_id]).fetchone()
        return None if row is None else str(row[0])

    def unpark(self, row_id: int | None, at: str) -> int:
        """Send parked writes again (one, or all when `row_id` is None); returns how many. A
        parked write with the same content as one already pending is superseded, not doubled."""
        self.db.execute(
            "UPDATE outbox SET status = 'superseded', updated_at = ? WHERE status = 'parked'"
            + ("" if row_id is None else " AND id = ?")
            + " AND key IN (SELECT key FROM outbox WHERE status = 'pending')",
            [at] if row_id is None else [at, row_id],
        )
        if row_id is None:
            cursor = self.db.execute(
                "UPDATE outbox SET status = 'pending', updated_at = ? WHERE status = 'parked'", [at]
            )
        else:
            cursor = self.db.execute(
                "UPDATE outbox SET status = 'pending', updated_at = ? WHERE status = 'parked' AND id = ?",
                [at, row_id],
            )
        return int(cursor.rowcount)

    # -- triage asked once per submission ---------------------------------------------------------

    def remembered_triage(self, leads: Collection[str] | None = None) -> dict[str, tuple[str, Remembered | None]]:
        """Lead id → (the digest of the submission asked about, its verdict; None while it was asked
        and no answer was recorded), for every lead asked about, or for these `leads` only."""
        query = "SELECT lead, digest, label, confidence, reason FROM triage"
        if leads is None:
            rows = self.db.execute(query).fetchall()
        else:
            wanted = sorted(set(leads))
            rows = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows += self.db.execute(f"{query} WHERE lead IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        found: dict[str, tuple[str, Remembered | None]] = {}
        for lead, digest, label, confidence, reason in rows:
            verdict = None
            if label in LABELS:
                verdict = Remembered(digest, Triage(label, float(confidence or 0.0), str(reason or "")))
            found[str(lead)] = (str(digest), verdict)
        return found

    def triage_asked(self, lead: str, digest: str, at: str) -> None:
        """About to ask about this submission: remembered before the request goes out, so that a
        crash before the answer is recorded never leads to asking again. The request is counted
        (`llm_calls_since`) in the same commit; counts older than a day are dropped."""
        self.db.execute(
            "INSERT INTO triage (lead, digest, label, confidence, reason, asked_at, answered_at) "
            "VALUES (?, ?, NULL, NULL, NULL, ?, NULL) ON CONFLICT (lead) DO UPDATE SET digest = excluded.digest, "
            "label = NULL, confidence = NULL, reason = NULL, asked_at = excluded.asked_at, answered_at = NULL",
            [lead, digest, at],
        )
        self.db.execute("INSERT INTO llm_calls (at) VALUES (?)", [at])
        self.db.execute("DELETE FROM llm_calls WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', ?, '-1 day')", [at])

    def llm_calls_since(self, at: str) -> int:
        """Requests made to the LLM triage endpoint at `at` or later (`triage_asked`)."""
        return int(self.db.execute("SELECT count(*) FROM llm_calls WHERE at >= ?", [at]).fetchone()[0])

    def triage_answered(self, lead: str, digest: str, verdict: Triage, at: str) -> None:
        self.db.execute(
            "UPDATE triage SET label = ?, confidence = ?, reason = ?, answered_at = ? WHERE lead = ? AND digest = ?",
            [verdict.label, verdict.confidence, verdict.reason, at, lead, digest],
        )

    # -- round robin ----------------------------------------------------------------------------

    def credits(self, pool: str) -> dict[str, float]:
        """The pool's smooth-weighted-round-robin credits (user id → credit)."""
        rows = self.db.execute("SELECT user_id, credit FROM rr_credits WHERE pool = ?", [pool]).fetchall()
        return {user: float(credit) for user, credit in rows}

    def save_credits(
        self, pool: str, credits: Mapping[str, float], charged: str | None, refunded: str | None = None
    ) -> None:
        """Store a pool's credits after a draw; `charged` (the chosen member) counts one more, and
        `refunded` (a member whose earlier draw was taken back, `rules.round_robin.refund`) one less."""
        # Members no longer in the pool leave its memory; the others keep their count (one more
        # for `charged`), a new one starts from 0: two statements a draw, not three.
        conn = self.db.conn
        conn.execute(
            f"DELETE FROM rr_credits WHERE pool = ? AND user_id NOT IN ({','.join('?' * len(credits))})",
            [pool, *credits],
        )
        conn.executemany(
            "INSERT INTO rr_credits (pool, user_id, credit, assigned) VALUES (?, ?, ?, ?) ON CONFLICT (pool, user_id) "
            "DO UPDATE SET credit = excluded.credit, assigned = assigned + excluded.assigned",
            ((pool, user, credit, (user == charged) - (user == refunded)) for user, credit in credits.items()),
        )

    def set_pool_memory(self, pool: str, memory: Mapping[str, tuple[float, int]]) -> None:
        """Replace a pool's memory: user id → (credit, leads assigned)."""
        conn = self.db.conn
        conn.execute("DELETE FROM rr_credits WHERE pool = ?", [pool])
        conn.executemany(
            "INSERT INTO rr_credits (pool, user_id, credit, assigned) VALUES (?, ?, ?, ?)",
            ((pool, user, credit, assigned) for user, (credit, assigned) in memory.items()),
        )

    def assignment(self, key: str) -> OwnerChoice | None:
        """The owner chosen earlier for this lead key, if any (an owner is chosen once)."""
        cursor = self.db.conn.execute("SELECT * FROM assignments WHERE key = ?", [key])
        row = cursor.fetchone()  # once per routed account a cycle: without sqlite-utils' dict rows
        return None if row is None else _choice(dict(zip([c[0] for c in cursor.description], row, strict=True)))

    def record_assignment(self, choice: OwnerChoice) -> None:
        """Remember an owner chosen for `choice.key` (once: a second choice for a key is an error)."""
        self.db.conn.execute(
            "INSERT INTO assignments (key, pool, user_id, name, fallback, candidates, skipped, reason, run_id, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                choice.key,
                choice.pool,
                choice.user_id,
                choice.name,
                int(choice.fallback),
                _ENCODE(list(choice.candidates)),
                _ENCODE(dict(choice.skipped)),
                choice.reason,
                choice.run_id,
                choice.at,
            ],
        )

    def forget_assignment(self, key: str) -> None:
        """Forget the owner chosen for `key`: that draw was taken back because its lead was never
        created with them (`sync.owners`), and the caller draws again."""
        self.db.conn.execute("DELETE FROM assignments WHERE key = ?", [key])

    def supersede_owned_by(self, record: str, owner: str, reason: str, at: str) -> int:
        """Never send the Salesforce writes to `record`, pending or parked, that make `owner` its
        owner: that owner's draw was taken back (`sync.owners`). Returns how many rows it set aside."""
        cursor = self.db.conn.execute(
            "UPDATE outbox SET status = 'superseded', last_error = ?, updated_at = ? WHERE system = 'salesforce' "
            "AND record = ? AND status IN ('pending', 'parked') AND json_extract(payload, '$.OwnerId') = ?",
            [reason, at, record, owner],
        )
        return cursor.rowcount

    def assignments_of_run(self, run_id: int) -> list[OwnerChoice]:
        """The owners a run drew, in key order."""
        rows = self.db.query("SELECT * FROM assignments WHERE run_id = ? ORDER BY key", [run_id])
        return [_choice(row) for row in rows]

    def assigned_to(self, user_ids: Collection[str]) -> set[str]:
        """The lead keys whose owner chosen earlier is one of these users (one query, however
        many users: an org's inactive users can be thousands)."""
        if not user_ids:
            return set()
        rows = self.db.execute(
            "SELECT key FROM assignments WHERE user_id IN (SELECT value FROM json_each(?))",
            [json.dumps(sorted(user_ids))],
        ).fetchall()
        return {str(key) for (key,) in rows}

    def assignments_like(self, prefix: str) -> list[OwnerChoice]:
        """Owners chosen for lead keys starting with `prefix` (all with ""), newest first."""
        rows = self.db.query(
            "SELECT * FROM assignments WHERE key LIKE ? ESCAPE '\\' ORDER BY at DESC, key DESC",
            [prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"],
        )
        return [_choice(row) for row in rows]

    def assignments_by_user(self, pool: str) -> dict[str | None, int]:
        """How many leads each owner (or the fallback) received from the pool."""
        rows = self.db.execute(
            "SELECT user_id, count(*) FROM assignments WHERE pool = ? GROUP BY user_id", [pool]
        ).fetchall()
        return {user: int(count) for user, count in rows}

    def save_member_load(self, counts: Mapping[str, int]) -> None:
        """Replace the managed-account count of each pool member's email (a whole plan's)."""
        self.db.execute("DELETE FROM member_load")
        self.db.conn.executemany("INSERT INTO member_load (email, accounts) VALUES (?, ?)", sorted(counts.items()))

    def member_load(self) -> Counter[str]:
        """Email → the accounts that member manages, as the last whole plan counted them."""
        return Counter({str(e): int(n) for e, n in self.db.execute("SELECT email, accounts FROM member_load")})

    # -- events (state.events) ----------------------------------------------------------------
    # On the inbox's own connection, each call a short transaction of its own (never part of a
    # state transaction: see `state.events`).

    @contextlib.contextmanager
    def _inbox_write(self) -> Iterator[sqlite3.Connection]:
        conn = self.inbox
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def pending_events(self, limit: int) -> list[QueuedEvents]:
        """The records with pending events, up to `limit`, the longest-waiting first."""
        rows = self.inbox.execute(
            "SELECT source, record, max(id), min(received_at), count(*), max(attempts) FROM events "
            "WHERE status = 'pending' GROUP BY source, record ORDER BY min(id) LIMIT ?",
            [limit],
        ).fetchall()
        return [QueuedEvents(_source(row[0]), str(row[1]), *row[2:]) for row in rows]

    def finish_events(
        self, queued: Iterable[QueuedEvents], status: str, run_id: int | None, at: str, note: str | None = None
    ) -> None:
        """Mark a record's pending events up to `last_id` `done` (or `failed`), with the run that
        processed them: events that arrived since stay pending."""
        with self._inbox_write() as conn:
            conn.executemany(
                "UPDATE events SET status = ?, run_id = ?, processed_at = ?, attempts = attempts + 1, note = ? "
                "WHERE status = 'pending' AND source = ? AND record = ? AND id <= ?",
                ((status, run_id, at, note, q.source, q.record, q.last_id) for q in queued),
            )

    def retry_events(self, queued: Iterable[QueuedEvents], note: str) -> None:
        """Count a failed attempt at these events; they stay pending."""
        with self._inbox_write() as conn:
            conn.executemany(
                "UPDATE events SET attempts = attempts + 1, note = ? WHERE status = 'pending' AND source = ? "
                "AND record = ? AND id <= ?",
                ((note, q.source, q.record, q.last_id) for q in queued),
            )

    def purge_events(self, before: str) -> int:
        """Forget finished events processed before `before` (a repeat delivery of one of them
        would be processed again: harmless, the mini-cycle reads the record fresh)."""
        with self._inbox_write() as conn:
            cursor = conn.execute("DELETE FROM events WHERE status != 'pending' AND processed_at < ?", [before])
        return int(cursor.rowcount)

    def event_statuses(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        """(id, status) of these events."""
        marks = ",".join("?" * len(ids))
        rows = self.inbox.execute(f"SELECT id, status FROM events WHERE id IN ({marks})", list(ids)).fetchall()
        return [(int(row_id), str(status)) for row_id, status in rows]

    def event_counts(self) -> dict[str, int]:
        """Events by status."""
        rows = self.inbox.execute("SELECT status, count(*) FROM events GROUP BY status").fetchall()
        return {str(status): int(count) for status, count in rows}

    # -- runs -----------------------------------------------------------------------------------

    def begin_run(self, started_at: str, mode: str, now: str) -> int:
        table = self.db.table("runs")
        table.insert({"started_at": started_at, "mode": mode, "status": "running", "now": now, "counts": "{}"})
        return int(str(table.last_pk))

    def finish_run(
        self, run_id: int, finished_at: str, status: str, counts: Mapping[str, int], error: str | None
    ) -> None:
        self.db.table("runs").update(
            run_id,
            {"finished_at": finished_at, "status": status, "counts": json.dumps(counts), "error": error},
        )

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", [limit])
        return [{**row, "counts": json.loads(row["counts"] or "{}")} for row in rows]

    def record_decisions(self, run_id: int, rows: Iterable[Mapping[str, Any]]) -> None:
        self.db.conn.executemany(
            "INSERT INTO decisions (run_id, record, rule, fired, reason, review, guarded_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((run_id, r["record"], r["rule"], r["fired"], r["reason"], r["review"], r["guarded_by"]) for r in rows),
        )

    def record_errors(self, run_id: int, rows: Iterable[Mapping[str, Any]]) -> None:
        self.db.table("record_errors").insert_all(({**row, "run_id": run_id} for row in rows), batch_size=500)

    # -- malformed records kept (`errors`) -------------------------------------------------------

    def remember_malformed(self, run_id: int, at: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Keep the malformed records a run found (rows of {system, record, field, message}): a
        record found before keeps its first sighting and takes this one's field and message."""
        self.db.conn.executemany(
            "INSERT INTO malformed (system, record, field, message, first_seen, last_seen, first_run, last_run) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (system, record) DO UPDATE SET field = excluded.field, "
            "message = excluded.message, last_seen = excluded.last_seen, last_run = excluded.last_run",
            ((r["system"], r["record"], r["field"], r["message"], at, at, run_id, run_id) for r in rows),
        )

    def forget_fixed(self, records: Sequence[str] | None = None) -> int:
        """Drop the kept malformed records that the mirror now holds well-formed (the service sent
        them again, fixed), of these `records` only when given (an event's); returns how many."""
        chunks: list[Sequence[str] | None] = [None]
        if records is not None:
            wanted = sorted(set(records))
            chunks = [wanted[start : start + 500] for start in range(0, len(wanted), 500)]
        fixed = 0
        for chunk in chunks:
            only, params = "", []
            if chunk is not None:
                only, params = f" AND record IN ({','.join('?' * len(chunk))})", list(chunk)
            fixed += self.db.execute(
                # EXISTS: one primary-key lookup per kept record, not a set of the whole mirror's ids.
                f"DELETE FROM malformed WHERE system = 'vitally'{only} AND EXISTS "
                "(SELECT 1 FROM accounts a WHERE a.id = malformed.record AND a.error IS NULL)",
                params,
            ).rowcount
            fixed += self.db.execute(
                f"DELETE FROM malformed WHERE system LIKE 'salesforce %'{only} AND EXISTS (SELECT 1 FROM sf_records s "
                "WHERE s.object = substr(malformed.system, 12) AND s.id = malformed.record AND s.error IS NULL)",
                params,
            ).rowcount
        return fixed

    def malformed(self) -> list[dict[str, Any]]:
        """Every malformed record kept: system, record, field, message, first and last seen (and
        their runs), the most recently seen first."""
        rows = self.db.query("SELECT * FROM malformed ORDER BY last_seen DESC, system, record")
        return [dict(row) for row in rows]

    def record_conflicts(self, run_id: int, rows: Iterable[Mapping[str, Any]]) -> None:
        self.db.table("conflicts").insert_all(({**row, "run_id": run_id} for row in rows), batch_size=500)

    # -- conflicts reported once ----------------------------------------------------------------

    def open_conflicts(self) -> dict[tuple[str, str, str], tuple[str, int]]:
        """(system, record, field) → (the person's value as JSON, the run that reported it), for
        every conflict reported and still standing: the next cycles leave it alone quietly."""
        rows = self.db.execute("SELECT system, record, field, theirs, run_id FROM open_conflicts").fetchall()
        return {(system, record, field): (theirs, int(run)) for system, record, field, theirs, run in rows}

    def open_conflict(self, system: str, record: str, field: str, theirs: str, run_id: int) -> None:
        self.db.execute(
            "INSERT INTO open_conflicts (system, record, field, theirs, run_id) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (system, record, field) DO UPDATE SET theirs = excluded.theirs, run_id = excluded.run_id",
            [system, record, field, theirs, run_id],
        )

    def close_conflicts(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Forget conflicts that no longer stand, so a new one on the same field is reported."""
        self.db.conn.executemany(
            "DELETE FROM open_conflicts WHERE system = ? AND record = ? AND field = ?", (tuple(k) for k in keys)
        )

    # -- what the state knows of crm-sync's own marks -------------------------------------------

    def has_history(self) -> bool:
        """Whether this state ever recorded a write, an owner drawn or a queued write (a new or
        emptied state file has none)."""
        for table in ("last_written", "assignments", "outbox"):
            if self.db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                return True
        return False

    def unknown_sync_keys(self, prefix: str) -> list[str]:
        """`Sync_Key__c` values starting with `prefix` on mirrored leads that this state neither
        recorded as written nor holds in the outbox: leads crm-sync created that it does not know."""
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.db.execute(UNKNOWN_SYNC_KEYS_SQL, [like]).fetchall()
        return [str(key) for (key,) in rows]

    def marked_accounts(self, trait: str) -> int:
        """Mirrored accounts carrying crm-sync's `trait` (its record of what it wrote there)."""
        path = "$.traits." + json.dumps(trait)
        query = f"SELECT count(*) FROM accounts WHERE {_field('?')} IS NOT NULL"
        return int(self.db.execute(query, [path]).fetchone()[0])

    def lead_by_sync_key(self, key: str) -> dict[str, Any] | None:
        """The mirrored lead upserted on this `Sync_Key__c`, if Salesforce has shown it to us."""
        row = self.db.execute(
            f"SELECT raw FROM sf_records WHERE object = 'Lead' AND {_SYNC_KEY} = ? LIMIT 1",
            [key],
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))
