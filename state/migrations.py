"""Schema migrations, applied in order at start; the schema changes only here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import sqlite_utils

from state.writes import target_of

__all__ = ["MIGRATIONS", "migrate"]


def _v1(db: sqlite_utils.Database) -> None:
    db.table("accounts").create(
        {"id": str, "updated_at": str, "raw": str, "error": str},
        pk="id",
    )
    db.table("sf_records").create(
        {"object": str, "id": str, "modstamp": str, "raw": str, "error": str},
        pk=("object", "id"),
    )
    db.table("cursors").create({"name": str, "value": str}, pk="name")
    db.table("last_written").create(
        {"system": str, "record": str, "field": str, "value": str, "run_id": int, "written_at": str},
        pk=("system", "record", "field"),
    )
    db.table("runs").create(
        {
            "id": int,
            "started_at": str,
            "finished_at": str,
            "mode": str,
            "status": str,
            "now": str,
            "counts": str,
            "error": str,
        },
        pk="id",
    )
    db.table("outbox").create(
        {
            "id": int,
            "key": str,
            "run_id": int,
            "system": str,
            "op": str,
            "record": str,
            "account": str,
            "fields": str,
            "previous": str,
            "rule": str,
            "reason": str,
            "owner": str,
            "payload": str,
            "status": str,
            "attempts": int,
            "last_error": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
    )
    # The same change may be planned again after it was done, but never queued twice at once.
    db.execute("CREATE UNIQUE INDEX outbox_pending_key ON outbox (key) WHERE status = 'pending'")
    db.table("outbox").create_index(["status"])
    db.table("decisions").create(
        {
            "run_id": int,
            "record": str,
            "rule": str,
            "fired": int,
            "reason": str,
            "review": int,
            "guarded_by": str,
        },
    )
    db.table("decisions").create_index(["run_id"])
    db.table("decisions").create_index(["record"])
    db.table("record_errors").create(
        {"run_id": int, "system": str, "record": str, "field": str, "message": str, "seen": str},
    )
    db.table("record_errors").create_index(["run_id"])
    db.table("conflicts").create(
        {"run_id": int, "system": str, "record": str, "field": str, "ours": str, "theirs": str, "rule": str},
    )
    db.table("conflicts").create_index(["run_id"])


def _v2(db: sqlite_utils.Database) -> None:
    """Round-robin memory: each pool member's SWRR credit and count, and every owner chosen."""
    db.table("rr_credits").create(
        {"pool": str, "user_id": str, "credit": float, "assigned": int},
        pk=("pool", "user_id"),
    )
    db.table("assignments").create(
        {
            "key": str,
            "pool": str,
            "user_id": str,
            "name": str,
            "fallback": int,
            "candidates": str,
            "skipped": str,
            "reason": str,
            "run_id": int,
            "at": str,
        },
        pk="key",
    )


def _v3(db: sqlite_utils.Database) -> None:
    """Streaming cycles: which run last read an account (its parse errors are reported by that run
    only), and each outbox row's target, so superseding a pending write is one indexed update."""
    import json

    db.execute("ALTER TABLE accounts ADD COLUMN read_run INTEGER")
    db.execute("ALTER TABLE outbox ADD COLUMN target TEXT")
    rows = db.execute("SELECT id, system, record, payload FROM outbox WHERE status = 'pending'").fetchall()
    for row_id, system, record, payload in rows:
        target = target_of(system, record, json.loads(payload))
        db.execute("UPDATE outbox SET target = ? WHERE id = ?", [target, row_id])
    db.execute("CREATE INDEX outbox_pending_target ON outbox (target) WHERE status = 'pending'")
    db.execute("CREATE INDEX outbox_status_system_record ON outbox (status, system, record, id)")


def _v4(db: sqlite_utils.Database) -> None:
    """People win: what each queued write expects to replace and the latest run whose plan still
    wanted it (a pending write no later plan wanted is not sent), and the conflicts already
    reported, so that each is reported once until the person's value changes again."""
    db.execute("ALTER TABLE outbox ADD COLUMN expects TEXT")
    db.execute("ALTER TABLE outbox ADD COLUMN confirmed_run INTEGER")
    db.execute("UPDATE outbox SET confirmed_run = run_id")
    # A trait or lead update expects exactly the values it showed as `previous`.
    db.execute("UPDATE outbox SET expects = previous WHERE op IN ('set_traits', 'update_lead')")
    db.table("open_conflicts").create(
        {"system": str, "record": str, "field": str, "theirs": str, "run_id": int},
        pk=("system", "record", "field"),
    )


def _v5(db: sqlite_utils.Database) -> None:
    """Event-driven routing (issue 17): the inbox of webhook events, each stored before it is
    acknowledged (`delivery` identifies one delivery, so a repeat is stored once), and the
    managed-account count of each pool member's email as the last whole plan found it (the
    capacity an event's mini-cycle draws owners against)."""
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, delivery TEXT NOT NULL UNIQUE, source TEXT NOT NULL, "
        "record TEXT NOT NULL, received_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', "
        "attempts INTEGER NOT NULL DEFAULT 0, run_id INTEGER, processed_at TEXT, note TEXT)"
    )
    db.execute("CREATE INDEX events_status ON events (status, id)")
    db.execute("CREATE TABLE member_load (email TEXT PRIMARY KEY, accounts INTEGER NOT NULL)")


def _v6(db: sqlite_utils.Database) -> None:
    """Demo-form triage by an LLM, asked once per submission: per lead, the submission's digest, when
    it was asked, and its answer (label, confidence, reason; NULL while asked and unanswered)."""
    db.table("triage").create(
        {
            "lead": str,
            "digest": str,
            "label": str,
            "confidence": float,
            "reason": str,
            "asked_at": str,
            "answered_at": str,
        },
        pk="lead",
    )


def _v7(db: sqlite_utils.Database) -> None:
    """Malformed records kept (`errors`): one row per record a cycle found malformed, with the field
    and message of the latest finding and when it was first and last found; dropped once the
    record is read again well-formed. Filled from the reports of earlier runs."""
    db.table("malformed").create(
        {
            "system": str,
            "record": str,
            "field": str,
            "message": str,
            "first_seen": str,
            "last_seen": str,
            "first_run": int,
            "last_run": int,
        },
        pk=("system", "record"),
    )
    # The field and message of each record's latest finding, chosen by run explicitly: with both
    # min() and max() in one GROUP BY, SQLite takes bare columns from an arbitrary row.
    db.execute(
        "INSERT INTO malformed (system, record, field, message, first_seen, last_seen, first_run, last_run) "
        "SELECT system, record, field, message, first_seen, last_seen, first_run, last_run FROM ("
        "SELECT e.system, e.record, e.field, e.message, min(r.started_at) OVER w AS first_seen, "
        "max(r.started_at) OVER w AS last_seen, min(e.run_id) OVER w AS first_run, max(e.run_id) OVER w AS last_run, "
        "row_number() OVER (PARTITION BY e.system, e.record ORDER BY e.run_id DESC, e.rowid DESC) AS latest "
        "FROM record_errors e JOIN runs r ON r.id = e.run_id WINDOW w AS (PARTITION BY e.system, e.record)) "
        "WHERE latest = 1"
    )


def _v8(db: sqlite_utils.Database) -> None:
    """Incremental decisions (`sync.incremental`): per account, what its last judgement read (the
    Salesforce facts' fingerprint, the rules and config's fingerprint), the window of the rules'
    clock in which that judgement holds (`valid_from` ≤ now < `valid_until`, epoch seconds), and
    the TAM it counts for in a pool member's capacity. Any change to the account's row in the
    mirror (its raw JSON read again, the row removed or inserted) deletes its record, so that
    a stored judgement can never outlive the input it was made from."""
    db.table("account_inputs").create(
        {"id": str, "facts": str, "rules": str, "valid_from": float, "valid_until": float, "manager": str},
        pk="id",
    )
    for event in ("INSERT", "UPDATE OF raw, error", "DELETE"):
        name = event.split()[0].lower()
        row = "OLD" if event == "DELETE" else "NEW"
        db.execute(
            f"CREATE TRIGGER account_inputs_on_{name} AFTER {event} ON accounts "
            f"BEGIN DELETE FROM account_inputs WHERE id = {row}.id; END"
        )


def _v9(db: sqlite_utils.Database) -> None:
    """The event inbox moves to a file of its own beside the state (`state.events`): storing a
    webhook's event must never wait for a cycle's transaction on the state. `StateDB` carried
    the table's rows into that file before this step runs."""
    db.execute("DROP TABLE IF EXISTS events")


def _v10(db: sqlite_utils.Database) -> None:
    """Incremental lead decisions (`sync.incremental.LeadBook`): per lead, what its last judgement
    read besides its own record (the company's key and the fingerprint of its lead context, the
    rules and config's fingerprint) and the window of the rules' clock in which it holds. Any
    change to the lead's row in the mirror deletes its record, as `account_inputs` for accounts.

    And the offline triage's verdicts (`sync.verdicts`), kept between cycles: one row per
    submission digest and classifier version, so an unchanged demo request is classified once."""
    db.table("lead_inputs").create(
        {"id": str, "company": str, "context": str, "rules": str, "valid_from": float, "valid_until": float},
        pk="id",
    )
    for event in ("INSERT", "UPDATE OF raw, error", "DELETE"):
        name = event.split()[0].lower()
        row = "OLD" if event == "DELETE" else "NEW"
        db.execute(
            f"CREATE TRIGGER lead_inputs_on_{name} AFTER {event} ON sf_records WHEN {row}.object = 'Lead' "
            f"BEGIN DELETE FROM lead_inputs WHERE id = {row}.id; END"
        )
    db.table("triage_verdicts").create(
        {"key": str, "version": str, "label": str, "confidence": float, "reason": str},
        pk="key",
    )


# A mirrored record's `Sync_Key__c`, written exactly as `state.db`'s queries write it (SQLite uses
# an index on an expression only for the same expression): NULL when SQLite cannot read the JSON.
SYNC_KEY_SQL = "CASE WHEN json_valid(raw) THEN json_extract(raw, '$.Sync_Key__c') END"


def _v11(db: sqlite_utils.Database) -> None:
    """The mirrored leads' `Sync_Key__c` in an index, so that the check every cycle makes for leads
    under crm-sync's keys that the state does not know (`StateDB.unknown_sync_keys`) reads the
    index instead of every lead's JSON."""
    db.execute(f"CREATE INDEX sf_records_sync_key ON sf_records (object, {SYNC_KEY_SQL}) WHERE error IS NULL")


# What the Salesforce facts are found by (`sync.facts`), read from a mirrored record once, when it is
# written (`StateDB.upsert_sf`), instead of from every record's JSON at every cycle: each field's
# value when it is text, else NULL (and NULL for JSON SQLite cannot read). `?4` is the raw JSON.
_V12_LINK_FIELDS = {
    "vitally_id": "Vitally_Account_Id__c",  # a Lead's or an Account's Vitally account
    "account_id": "AccountId",  # an Opportunity's Salesforce Account
    "status": "Status",  # a Lead's
    "company": "Company",  # a Lead's
    "sync_key": "Sync_Key__c",  # a Lead's, under which crm-sync created it
}
SF_LINK_FIELDS = {
    **_V12_LINK_FIELDS,
    "converted_opp": "ConvertedOpportunityId",  # a Lead's (migration 16)
}


def sf_link_sql(raw: str, fields: Mapping[str, str] = SF_LINK_FIELDS) -> list[str]:
    """SQL for each of `fields` (`SF_LINK_FIELDS`) of the raw JSON `raw` (a column or a parameter),
    in order."""
    text = (
        "CASE WHEN json_valid({raw}) AND json_type({raw}, '$.{name}') = 'text' THEN json_extract({raw}, '$.{name}') END"
    )
    return [text.format(raw=raw, name=name) for name in fields.values()]


def _links_index(db: sqlite_utils.Database, fields: Mapping[str, str]) -> None:
    """The index every cycle reads the stored fields from, for every well-formed lead, Salesforce
    Account and opportunity, instead of the records' rows (each with its JSON)."""
    db.execute(
        f"CREATE INDEX sf_records_links ON sf_records (object, id, digest, {', '.join(fields)}) "
        "WHERE coalesce(error, '') = ''"
    )


def _v12(db: sqlite_utils.Database) -> None:
    """Each mirrored Salesforce record's digest (BLAKE2b, 16 bytes, of its raw JSON as UTF-8) and
    the fields its facts are found by (`SF_LINK_FIELDS`), stored when the record is written, so
    that the cycles that judge few accounts neither read nor digest every lead's JSON to find the
    linked ones (at 100,000 accounts an idle cycle had SQLite parse the JSON of each of the
    31,752 mirrored leads, and digested the 22,468 linked or disqualified ones in Python). Filled
    here for the records already mirrored; an index holds them, so a cycle reads none of the rows."""
    fields = _V12_LINK_FIELDS
    for column in ("digest", *fields):
        db.execute(f"ALTER TABLE sf_records ADD COLUMN {column} {'BLOB' if column == 'digest' else 'TEXT'}")
    assignments = ", ".join(f"{column} = {sql}" for column, sql in zip(fields, sf_link_sql("raw", fields), strict=True))
    db.execute(f"UPDATE sf_records SET {assignments}")
    _links_index(db, fields)
    last = 0
    while rows := db.conn.execute(
        "SELECT rowid, CAST(raw AS BLOB) FROM sf_records WHERE rowid > ? ORDER BY rowid LIMIT 5000", [last]
    ).fetchall():
        db.conn.executemany(
            "UPDATE sf_records SET digest = ? WHERE rowid = ?",
            ((hashlib.blake2b(raw or b"", digest_size=16).digest(), rowid) for rowid, raw in rows),
        )
        last = rows[-1][0]


def _v13(db: sqlite_utils.Database) -> None:
    """Leads are read with `Routing_Reason__c` too (`sync.ingest.SF_OBJECTS`): without it in the
    mirror, a lead that stays unrouted (no pool for its team) had the same reason planned every
    cycle. The Lead cursors are forgotten, so the next cycle reads every lead once more and the
    mirror holds the field (a lead read again under the same SystemModstamp is stored when its
    content differs: `StateDB.sf_holds`)."""
    db.execute("DELETE FROM cursors WHERE name IN ('salesforce.Lead', 'salesforce.Lead.queried_at')")


def _v14(db: sqlite_utils.Database) -> None:
    """Each request made to the LLM triage endpoint, by when it was made (`[triage.llm]
    max_calls_per_hour` counts them, cycles and events together), recorded with the commit that
    says a submission is being asked. Filled from the asks the `triage` table remembers (its latest
    per lead)."""
    db.execute("CREATE TABLE llm_calls (at TEXT NOT NULL)")
    db.execute("CREATE INDEX llm_calls_at ON llm_calls (at)")
    db.execute("INSERT INTO llm_calls (at) SELECT asked_at FROM triage WHERE asked_at IS NOT NULL")


def _v15(db: sqlite_utils.Database) -> None:
    """Leads merged in Salesforce (`MasterRecordId` on the lead merged away, read through QueryAll):
    which lead each one lives on in (`sync.facts`), so that crm-sync's lead a person merged into
    their own is read as that lead, not as a deletion (their "no"). The Lead cursors are forgotten,
    as by migration 13: the next cycle reads every lead once more with the new field, so the merges
    still in the Recycle Bin (15 days) are found; older ones stay read as deletions."""
    db.execute("CREATE TABLE lead_merges (victim TEXT PRIMARY KEY, master TEXT NOT NULL, merged_at TEXT)")
    db.execute("DELETE FROM cursors WHERE name IN ('salesforce.Lead', 'salesforce.Lead.queried_at')")


def _v16(db: sqlite_utils.Database) -> None:
    """Each mirrored lead's `ConvertedOpportunityId` stored beside it (`SF_LINK_FIELDS`), in the
    index every cycle reads: the opportunity a lead linked to a Vitally account was converted into
    is that account's too (`sync.facts`), whatever Salesforce Account it is on (an org that does
    not map the lead's `Vitally_Account_Id__c` to the new Account's on conversion, or a rep who
    converts into an existing Account, leaves it on one that names no Vitally account)."""
    db.execute("ALTER TABLE sf_records ADD COLUMN converted_opp TEXT")
    (sql,) = sf_link_sql("raw", {"converted_opp": SF_LINK_FIELDS["converted_opp"]})
    db.execute(f"UPDATE sf_records SET converted_opp = {sql} WHERE object = 'Lead'")
    db.execute("DROP INDEX sf_records_links")
    _links_index(db, SF_LINK_FIELDS)
    # A person's merge is remembered only when a remembered one ends on its lead (`record_merges`).
    db.execute("CREATE INDEX lead_merges_master ON lead_merges (master)")


def _v17(db: sqlite_utils.Database) -> None:
    """Salesforce Accounts merged (`MasterRecordId` on the Account merged away, read through
    QueryAll), each with the Vitally account it named: a merge moves the Account's opportunities
    to the Account kept, which may name no Vitally account, and `sync.facts` joins them to the
    Vitally account all the same. The Account cursors are forgotten: the next cycle reads every
    Account once more with the new field, so the merges still in the Recycle Bin (15 days) are
    found; older ones are not."""
    db.execute(
        "CREATE TABLE account_merges (victim TEXT PRIMARY KEY, master TEXT NOT NULL, vitally_id TEXT, merged_at TEXT)"
    )
    db.execute("CREATE INDEX account_merges_master ON account_merges (master)")
    db.execute("DELETE FROM cursors WHERE name IN ('salesforce.Account', 'salesforce.Account.queried_at')")


def _v18(db: sqlite_utils.Database) -> None:
    """The accounts an incremental cycle must judge found through indexes (`StateDB.accounts_to_judge`,
    `StateDB.accounts_holding`), in time that grows with what changed, not with the book: the stored
    judgements by rules and by each end of their clock window, by the TAM they count for, and the
    malformed accounts (a partial index: few rows). Before this, every cycle evaluated each stored
    judgement twice, 0.28 s of an idle cycle's ~1 s of CPU at 100,000 accounts (2026-12-06).

    The triggers of migration 8 keep every judgement one of a mirrored, well-formed account (`accounts`
    rows and judgements are also only ever written in that order): a judgement left by an earlier
    version without one is removed here, so the judgements' count can stand for that of the accounts
    they hold for."""
    db.execute("CREATE INDEX account_inputs_until ON account_inputs (rules, valid_until)")
    db.execute("CREATE INDEX account_inputs_from ON account_inputs (rules, valid_from)")
    db.execute("CREATE INDEX account_inputs_manager ON account_inputs (manager)")
    db.execute("CREATE INDEX accounts_malformed ON accounts (id) WHERE coalesce(error, '') != ''")
    db.execute("DELETE FROM account_inputs WHERE id NOT IN (SELECT id FROM accounts WHERE coalesce(error, '') = '')")


def _v19(db: sqlite_utils.Database) -> None:
    """Each company's signups kept as an index (`sync.signups`): the mirrored accounts by the company
    their domain trait names (`company`), with when each was created (`created`, microseconds since
    the epoch), so that Big Fish's "is this the company's first signup?" is one lookup, not a pass
    over the whole mirror at every cycle that judges a later org of a company (0.8–1.4 s of CPU at
    100,000 accounts, in idle cycles too: 2026-12-07). Which domain trait the rows were read with is
    kept in `signups_key`. A trigger marks every account whose row is written or removed as stale
    (`signups_stale`): its company is read again from its JSON by the next cycle, before it judges
    anything. No key is kept at first: the first cycle that asks builds the index from the whole
    mirror."""
    db.execute("CREATE TABLE signups (id TEXT PRIMARY KEY, company TEXT NOT NULL, created INTEGER NOT NULL)")
    db.execute("CREATE INDEX signups_company ON signups (company, created, id)")
    # No key: an account written twice is listed twice (until the next cycle reads the list), as an
    # `INSERT OR IGNORE` in a trigger takes the conflict clause of the mirror's upsert (it fails).
    db.execute("CREATE TABLE signups_stale (id TEXT NOT NULL)")
    db.execute("CREATE TABLE signups_key (key TEXT NOT NULL)")
    for event in ("INSERT", "UPDATE OF raw", "DELETE"):
        name = event.split()[0].lower()
        row = "OLD" if event == "DELETE" else "NEW"
        db.execute(
            f"CREATE TRIGGER signups_on_{name} AFTER {event} ON accounts "
            f"BEGIN INSERT INTO signups_stale VALUES ({row}.id); END"
        )


def _v20(db: sqlite_utils.Database) -> None:
    """Since when each lead held its status, kept across `resync` (`StateDB.reset_mirror`): the
    note lives in the mirrored lead (`core.records.STATUS_SINCE`) and Salesforce keeps no such
    date, so a resync that forgot it dated every lead by its current SystemModstamp, and a lead
    disqualified months ago but touched since started its account's cool-off again. The notes of
    the mirror a resync forgets, and of the leads that leave it, wait here until the read brings
    each lead back (`sync.ingest`), for 90 days at most from `kept_at` (`StateDB.remove_sf`)."""
    db.execute(
        "CREATE TABLE lead_status_notes (id TEXT PRIMARY KEY, status TEXT, since TEXT NOT NULL, kept_at TEXT NOT NULL)"
    )
    # Facts of the state's own history a resync keeps (`StateDB.mark`): the first cycle that dated
    # nurture spells (`sync.plan.Planner._task`).
    db.execute("CREATE TABLE marks (name TEXT PRIMARY KEY, value TEXT NOT NULL)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
    _v7,
    _v8,
    _v9,
    _v10,
    _v11,
    _v12,
    _v13,
    _v14,
    _v15,
    _v16,
    _v17,
    _v18,
    _v19,
    _v20,
]


def migrate(db: sqlite_utils.Database) -> int:
    """Apply the migrations the database has not seen yet; returns the schema version."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    version = int(row[0]) if row else 0
    if version >= len(MIGRATIONS):
        return version
    with db.atomic():
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            step(db)
            version = number
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
    return version
