"""What the Salesforce mirror says, indexed for the rules: leads and opportunities per account."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, TypeVar

from core.decoding import decode_stored
from core.errors import RecordError
from core.model import Lead, Opportunity, SfUser
from core.records import parse_lead, parse_opportunity, parse_sf_account, parse_user
from core.triage import Remembered
from rules.context import EMPTY, AccountContext, closed_statuses, dropped_as_spam, folded_statuses
from rules.policy import DISQUALIFIED_STATUSES, Policy
from state import StateDB
from sync.wire import sync_key_prefix

__all__ = ["SalesforceFacts", "company_key", "mirrored_users"]

T = TypeVar("T")


def _parsed(state: StateDB, sobject: str, parse: Callable[[dict[str, Any]], T]) -> Iterator[tuple[T, dict[str, Any]]]:
    """The mirror's well-formed records of one object, parsed (malformed ones were reported when read)."""
    return _rows(state.iter_sf(sobject), parse)


# The legal forms a company name may end with, as Salesforce's free-text `Company` holds them
# ("Acme, Inc.", "Acme Inc", "ACME GmbH"): the same company for "had a lead disqualified".
_LEGAL_FORMS = frozenset(
    {
        *("inc", "incorporated", "llc", "llp", "ltd", "limited", "corp", "corporation", "co", "company", "plc"),
        *("gmbh", "ag", "kg", "ug", "sa", "sas", "sarl", "sl", "srl", "spa", "bv", "nv"),
        *("ab", "as", "asa", "oy", "oyj", "aps", "pty", "pte", "kk"),
    }
)


# Company names that name no company, as keys: Salesforce's Web-to-Lead fills a blank Company with
# "[not provided]" (Knowledge Article 000171026: Company is required on a Lead), and forms and
# imports put the others where a person has none. Such leads share no company: one disqualified
# must not hide the instant scheduler from every other lead that names none.
_NO_COMPANY = frozenset(
    {"not provided", "na", "none", "unknown", "null", "individual", "self employed", "freelance", "freelancer"}
)


def company_key(company: str) -> str:
    """The key a lead's `Company` is matched on: letters and digits only (NFKC-normalised, case
    folded), without a legal form at its end, and a trailing run of single letters read as one
    word, so "Acme, Inc.", "ACME Inc", "Acme" and "Acme S.A." are one company, and so are "I.B.M.
    Corp" and "IBM" (the demo scheduler's "had a lead disqualified within the last month"). A
    name that is nothing but a legal form ("Inc.") keeps it; one without a letter or digit ("—")
    is only case folded. A name that names no company ("[not provided]", "N/A": `_NO_COMPANY`)
    has the empty key, as no name has. Idempotent: the key of a key is itself (the state stores
    keys)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", company).casefold())
    words = re.findall(r"\w+", folded)
    if not words:
        return company.casefold().strip()
    while True:
        letters = 0
        while letters < len(words) and len(words[-1 - letters]) == 1:
            letters += 1
        if letters > 1:
            words[-letters:] = ["".join(words[-letters:])]
        elif len(words) > 1 and words[-1] in _LEGAL_FORMS:
            words.pop()
        else:
            key = " ".join(words)
            return "" if key in _NO_COMPANY else key


def mirrored_users(state: StateDB) -> dict[str, SfUser]:
    """The Salesforce users the mirror holds, by id (the well-formed ones)."""
    return {user.id: user for user, _ in _parsed(state, "User", parse_user)}


def _rows(
    rows: Iterable[tuple[str, str, str | None]], parse: Callable[[dict[str, Any]], T]
) -> Iterator[tuple[T, dict[str, Any]]]:
    """Mirrored `(id, raw, error)` rows, the well-formed ones parsed."""
    for _id, raw, error in rows:
        if error:
            continue
        record = decode_stored(raw)
        try:
            yield parse(record), record
        except RecordError:
            continue


def _each(state: StateDB, sobject: str, parse: Callable[[dict[str, Any]], T]) -> Iterator[tuple[T, bytes]]:
    """The mirror's well-formed records of one object, parsed, with their digests (stored with
    each record when it was mirrored: `StateDB.upsert_sf`)."""
    for _id, text, digest in state.iter_sf_digested(sobject):
        try:
            yield parse(decode_stored(text)), digest
        except RecordError:
            continue


def _link(record_id: str, raw_digest: bytes, parent: str = "") -> bytes:
    """One record's part of `SalesforceFacts.fingerprint`: its Id, its digest, its parent's Id."""
    return record_id.encode() + b"\0" + raw_digest + parent.encode() + b"\0"


def _digest(data: bytes) -> bytes:
    """An opportunity's part of the facts: the digest of its own digest and its Salesforce Account's."""
    return hashlib.blake2b(data, digest_size=16).digest()


def _lives_on(survivor: Lead, merged: Lead, account_id: str, *, linked: bool) -> Lead:
    """`survivor` as the account's context shows it once the account's lead `merged` was merged
    into it (`SalesforceFacts._through_merges`): the account's lead, in `merged`'s family when it
    has no routing rule of its own, dated by `merged`'s creation unless it names the account
    itself (`linked`); a `Sync_Key__c` of another account's left out."""
    own = survivor.sync_key if (survivor.sync_key or "").startswith(sync_key_prefix(account_id)) else None
    return replace(
        survivor,
        vitally_account_id=account_id,
        sync_key=own,
        routing_rule=survivor.routing_rule or merged.routing_rule,
        lead_source=survivor.lead_source or merged.lead_source,
        created_date=survivor.created_date if linked else merged.created_date or survivor.created_date,
        merged_from=merged.id,
    )


def _names(own: str | None, merged: Iterable[str]) -> list[str]:
    """The Vitally accounts a Salesforce Account joins: the one it names (`own`), then those of
    the Accounts merged into it, each once."""
    named = [own] if own else []
    named.extend(vitally_id for vitally_id in merged if vitally_id not in named)
    return named


def _parses(parse: Callable[[dict[str, Any]], object], raw: bytes | dict[str, Any]) -> bool:
    try:
        parse(json.loads(raw) if isinstance(raw, bytes) else raw)
    except RecordError:
        return False
    return True


@dataclass
class SalesforceFacts:
    """The Salesforce mirror joined to Vitally account ids, as the rules need it.

    Leads join on `Vitally_Account_Id__c`; opportunities through the Salesforce Account whose
    `Vitally_Account_Id__c` names the Vitally account. Only what joins is held in memory; every
    lead is streamed from the state by `iter_leads`.
    """

    state: StateDB
    # The lead statuses meaning disqualified (`[rules.episodes] disqualified_statuses`): a company's
    # lead in one of them is what `company_disqualified_at` answers from.
    disqualified_statuses: tuple[str, ...] = DISQUALIFIED_STATUSES
    # The lead statuses that close a lead (`rules.context.closed_statuses`), given to every context.
    closed: frozenset[str] = field(default_factory=lambda: closed_statuses(Policy()))
    # The open lead statuses nobody has moved a lead to (`[rules.episodes] new_statuses`, folded),
    # given to every context (`rules.context.support_request`).
    new: frozenset[str] = field(default_factory=lambda: folded_statuses(Policy().episodes.new_statuses))
    # `disqualified_statuses` as every status is compared (`rules.context.folded_statuses`).
    _disqualified_folded: frozenset[str] = field(init=False)
    users: dict[str, SfUser] = field(default_factory=dict)
    _leads_by_account: dict[str, list[Lead]] = field(default_factory=lambda: defaultdict(list))
    _opps_by_account: dict[str, list[Opportunity]] = field(default_factory=lambda: defaultdict(list))
    _disqualified_by_company: dict[str, date] = field(default_factory=dict)
    # Vitally account id -> {Id of a lead crm-sync created: the OwnerId crm-sync gave it}.
    _assigned_by_account: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    # `load_for`'s leads (linked to its accounts, or named), with their fields; None after `load`.
    _scoped: list[tuple[Lead, dict[str, Any]]] | None = None
    # Lead id -> the triage verdict remembered for its submission (the LLM's, `sync.triage`).
    _triage: dict[str, Remembered] = field(default_factory=dict)
    # Lead id -> the lead as `load` parsed it from the mirror (linked or disqualified leads), so
    # that `iter_leads` does not parse it again.
    _read: dict[str, Lead] = field(default_factory=dict)
    # Vitally account id -> the Ids of its linked leads a lazy `load` found, in id order, parsed
    # into `_leads_by_account` when first needed (`_materialize`).
    _linked: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # Vitally account id -> what `fingerprint` digests of its leads and of its opportunities: each
    # one's Id and the digest of its raw JSON (an opportunity's with its Salesforce Account's digest), in
    # id order, as one byte string (a cold cycle keeps one per account, not one per record).
    _lead_facts: dict[str, bytes] = field(default_factory=dict)
    _opp_facts: dict[str, bytes] = field(default_factory=dict)
    # Vitally account id -> {lead Id: the OwnerId crm-sync wrote under its Sync_Key__c} (raw).
    _owners_written: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    _written_owner: Callable[[str], Any] = field(default=lambda key: None)
    # Vitally account id -> its opportunities as `load` found them, (Id, digest of the raw JSON and
    # its Salesforce Account's, the Salesforce Account's Id) in id order; parsed into
    # `_opps_by_account` when first needed.
    # An opportunity joined through the lead converted into it has no Salesforce Account to check (None).
    _opp_links: dict[str, list[tuple[str, bytes, str | None]]] = field(default_factory=lambda: defaultdict(list))
    _lazy: bool = False  # `load(lazy=True)`: leads and opportunities parsed when first needed
    # Company key -> its disqualified leads a lazy `load` found, (Id, digest, raw JSON), not parsed yet;
    # and those parsed, (Id, digest of the raw JSON); and `disqualified_fingerprint`'s answers.
    _unparsed_disqualified: dict[str, list[tuple[str, bytes, bytes]]] = field(default_factory=lambda: defaultdict(list))
    _disqualified_rows: dict[str, bytes] = field(default_factory=dict)
    _disqualified_prints: dict[str, str] = field(default_factory=dict)
    # Vitally account id -> {lead Id: the fields this cycle's own writes give it}, shown to the
    # accounts' rules (`plan_lead_fields`).
    _planned: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    # Lead Id -> the lead it was merged into in Salesforce (`StateDB.lead_merges`), and the lead
    # each chain of merges ends on, as read from the mirror (None when it holds none).
    _merges: dict[str, str] = field(default_factory=dict)
    _survivors: dict[str, Lead | None] = field(default_factory=dict)
    # The Salesforce Accounts merged away that the state remembers (`_account_chains`).
    _merged_away: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._disqualified_folded = folded_statuses(self.disqualified_statuses)

    def _is_disqualified(self, status: object) -> bool:
        """Whether a lead in `status` is disqualified, compared as every lead status is
        (case-insensitively, spaces around it ignored)."""
        return isinstance(status, str) and status.strip().casefold() in self._disqualified_folded

    @classmethod
    def _of(cls, state: StateDB, policy: Policy | None, **more: Any) -> SalesforceFacts:
        """Empty facts that read `policy`'s lead statuses (the defaults' when None)."""
        policy = policy or Policy()
        new = folded_statuses(policy.episodes.new_statuses)
        return cls(state, policy.episodes.disqualified_statuses, closed_statuses(policy), new, **more)

    @classmethod
    def load(cls, state: StateDB, *, lazy: bool = False, policy: Policy | None = None) -> SalesforceFacts:
        """The facts of the whole mirror. The linked leads are found without parsing them (by the
        `Vitally_Account_Id__c` stored with each mirrored lead), each with the digest of its raw
        JSON stored beside it, for `fingerprint`; `lazy` parses an account's linked leads only when its context is first
        asked for (an incremental cycle judges few accounts), else all of them now (a cold or
        `--full` cycle judges every account: one streamed read beats a query per account).
        Disqualified leads (a status of `policy`'s `disqualified_statuses`) are parsed now either
        way (every lead's context may name their company)."""
        facts = cls._of(state, policy)
        facts.users.update(mirrored_users(state))
        facts._triage = {lead: verdict for lead, (_, verdict) in state.remembered_triage().items() if verdict}
        facts._lazy = lazy
        facts._load_opportunities(lazy=lazy)
        facts._load_leads(lazy=lazy)
        facts._merge_facts()
        return facts

    def _merge_facts(self, account_ids: Collection[str] | None = None) -> None:
        """Find the merges that matter to the accounts' contexts (all accounts', or those of
        `account_ids`): those of their linked leads merged away (crm-sync's own: a person's deleted
        lead leaves the mirror), followed to where each chain ends; an org's other merges are not
        read. Make the lead each one lives on in part of its account's facts (`fingerprint`: a
        person's change to that lead changes the account's context), and join the opportunity
        that lead was converted into."""
        linked = self.state.merged_leads(account_ids)
        frontier = sorted(linked)
        while frontier:
            found = self.state.lead_masters(frontier)
            self._merges.update(found)
            frontier = sorted({master for master in found.values() if master not in self._merges})
        if not linked:
            return
        finals = {victim: final for victim in linked if (final := self._final(victim)) is not None}
        survivors = sorted(set(finals.values()))
        digests = self.state.sf_digests("Lead", survivors)
        for victim, final in sorted(finals.items()):
            link = b"\4" + _link(final, digests.get(final, b""), victim)
            self._lead_facts[linked[victim]] = self._lead_facts.get(linked[victim], b"") + link
        converted = self.state.sf_stored("Lead", survivors, "converted_opp")
        self._join_converted(
            (linked[victim], converted[final]) for victim, final in sorted(finals.items()) if final in converted
        )

    def _final(self, lead_id: str) -> str | None:
        """The lead a chain of merges from `lead_id` ends on (a lead merged into one later merged
        into another lives on in the last one); None for a chain that comes back on itself (a
        record no merge can make: such a lead stays a deletion)."""
        seen = {lead_id}
        found = self._merges[lead_id]
        while found in self._merges:
            if found in seen:
                return None
            seen.add(found)
            found = self._merges[found]
        return None if found in seen else found

    def _survivor(self, lead_id: str) -> Lead | None:
        """The lead the merged lead `lead_id` lives on in, as the mirror holds it (parsed once), or
        None when it holds none (deleted since, or not shared with crm-sync)."""
        final = self._final(lead_id)
        if final is None:
            return None
        if final in self._survivors:
            return self._survivors[final]
        found = self._read.get(final)
        if found is None:
            raw = self.state.sf_raw("Lead", final)
            if raw is not None and _parses(parse_lead, raw):
                found = parse_lead(raw)
        self._survivors[final] = found
        return found

    def _through_merges(self, account_id: str, leads: list[Lead]) -> list[Lead]:
        """The account's leads with each one a person merged into another lead replaced by the
        lead it lives on in: that lead is the account's now (its status, owner and conversion
        are what people do with it; `Lead.merged_from` names the merged one), in the family of the
        merged one when it has no routing rule of its own. A lead it lives on in that names the
        account already is marked so in place; one crm-sync created for another account shows
        without that account's `Sync_Key__c` (a person's lead for this one, not this account's
        own). Merged into a lead the mirror does not hold, it stays a deletion."""
        survivors: dict[str, Lead] = {}
        for lead in leads:
            if lead.is_deleted and lead.id in self._merges:
                survivor = self._survivor(lead.id)
                if survivor is not None:
                    survivors[lead.id] = survivor
        if not survivors:
            return leads
        linked = {lead.id for lead in leads}
        first: dict[str, Lead] = {}  # the lead it lives on in -> the account's first lead merged into it
        for lead in leads:
            if lead.id in survivors:
                first.setdefault(survivors[lead.id].id, lead)
        kept: list[Lead] = []
        for lead in leads:
            survivor = survivors.get(lead.id)
            if survivor is None:
                merged = first.get(lead.id)
                kept.append(lead if merged is None else _lives_on(lead, merged, account_id, linked=True))
            elif survivor.id not in linked and first[survivor.id] is lead:
                kept.append(_lives_on(survivor, lead, account_id, linked=False))
        return kept

    def _load_opportunities(self, *, lazy: bool) -> None:
        """Each account's opportunities, through the Salesforce Accounts that name a Vitally
        account: parsed now, or (`lazy`) found by the fields SQLite reads and parsed when the
        account's context is first asked for (`_opportunities_of`). Each is kept with a digest
        of its raw JSON and of its Salesforce Account's."""
        opp_facts: dict[str, bytes] = {}
        if not lazy:
            accounts = ((a.id, a.vitally_account_id, d) for a, d in _each(self.state, "Account", parse_sf_account))
            joined = self._joined(accounts)
            for opportunity, digest in _each(self.state, "Opportunity", parse_opportunity):
                parent = opportunity.account_id or ""
                for vitally_id, parent_digest in joined.get(parent, ()):
                    link = _link(opportunity.id, _digest(digest + parent_digest), parent)
                    opp_facts[vitally_id] = opp_facts.get(vitally_id, b"") + link
                    self._opps_by_account[vitally_id].append(opportunity)
            self._opp_facts = opp_facts
            return
        joined = self._joined((sf_id, own, digest) for sf_id, digest, own, _ in self.state.iter_sf_links("Account"))
        for opportunity_id, digest, _, sf_account in self.state.iter_sf_links("Opportunity"):
            parent = sf_account or ""
            for vitally_id, parent_digest in joined.get(parent, ()):
                raw_digest = _digest(digest + parent_digest)
                self._opp_links[vitally_id].append((opportunity_id, raw_digest, parent))
                opp_facts[vitally_id] = opp_facts.get(vitally_id, b"") + _link(opportunity_id, raw_digest, parent)
        self._opp_facts = opp_facts

    def _joined(self, accounts: Iterable[tuple[str, str | None, bytes]]) -> dict[str, list[tuple[str, bytes]]]:
        """Salesforce Account Id -> [(Vitally account id, the Account's digest)] of the Accounts
        that join a Vitally account, from the mirror's `accounts` (Id, the Vitally account it
        names, digest): the one it names, then those of the Accounts merged into it; an Account
        merged away (out of the mirror) with an empty digest."""
        merged = self._merged_accounts()
        joined: dict[str, list[tuple[str, bytes]]] = {}
        for sf_id, own, digest in accounts:
            named = _names(own, merged.get(sf_id, ()))
            if named:
                joined[sf_id] = [(vitally_id, digest) for vitally_id in named]
        for gone in self._gone(merged, joined):
            joined[gone] = [(vitally_id, b"") for vitally_id in merged[gone]]
        return joined

    def _merged_accounts(self, account_ids: Collection[str] | None = None) -> dict[str, list[str]]:
        """Salesforce Account Id -> the Vitally accounts (of `account_ids`, when given) named by
        Accounts a person merged into it, or that it was itself, on chains of merges
        (`StateDB.account_merges`): a merge moves the merged Account's opportunities to the
        Account kept, which may name no Vitally account, or another one (two Vitally accounts of
        one company: that Account's opportunities are both accounts' then). Every Account of a
        chain joins: an opportunity the mirror still holds on an Account merged away (read before
        the merge, its move not read yet) is the account's too. A chain that comes back on itself,
        which no merge can make, joins nothing."""
        found: dict[str, list[str]] = defaultdict(list)
        for named, chain in self._account_chains(account_ids):
            for sf_id in chain:
                if named not in found[sf_id]:
                    found[sf_id].append(named)
        return found

    def _account_chains(self, account_ids: Collection[str] | None = None) -> list[tuple[str, list[str]]]:
        """(the Vitally account an Account merged away named, the Accounts of its chain of merges
        from it to the one it ends on) for each remembered merge of an Account that named one (of
        `account_ids`, when given), in the merged Account's id order."""
        merges = self.state.account_merges()
        self._merged_away = frozenset(merges)
        chains: list[tuple[str, list[str]]] = []
        for victim, (master, named) in sorted(merges.items()):
            if not named or (account_ids is not None and named not in account_ids):
                continue
            chain = [victim]
            while master in merges and master not in chain:
                chain.append(master)
                master = merges[master][0]
            if master not in chain:
                chains.append((named, [*chain, master]))
        return chains

    def _gone(self, merged: Mapping[str, list[str]], joined: Collection[str]) -> list[str]:
        """The Accounts of `merged` (`_merged_accounts`) merged away that `joined` (the mirror's
        Accounts that parse) does not hold: deleted by their merge, they join all the same."""
        return sorted(sf_id for sf_id in merged if sf_id in self._merged_away and sf_id not in joined)

    def merged_accounts(self, account_id: str) -> list[tuple[str, str]]:
        """(the Salesforce Account merged away, the Account its chain of merges ends on) for each
        Account naming `account_id` that a person merged into another (`explain` says so: the
        opportunities there are the account's)."""
        return [(chain[0], chain[-1]) for _, chain in self._account_chains([account_id])]

    def _opportunities_of(self, account_id: str) -> list[Opportunity] | None:
        """The account's opportunities, parsed (once) when `load` was lazy, as an eager `load`
        gives them: of the Salesforce Accounts that parse, in id order."""
        known = self._opps_by_account.get(account_id)
        links = self._opp_links.get(account_id)
        if known is not None or not links:
            return known
        sf_ids = sorted({sf_id for _, _, sf_id in links if sf_id is not None})
        sound = {
            sf_id
            for sf_id, record in self.state.sf_raw_many("Account", sf_ids).items()
            if _parses(parse_sf_account, record)
        } | (self._merged_away & set(sf_ids))  # deleted by their merge: joined all the same
        wanted = sorted({i for i, _, sf_id in links if sf_id is None or sf_id in sound})
        records = self.state.sf_raw_many("Opportunity", wanted)
        found = self._opps_by_account[account_id] = []
        for opportunity_id in wanted:  # each once, joined through its Account or its lead's conversion
            record = records.get(opportunity_id)
            if record is None:
                continue
            try:
                found.append(parse_opportunity(record))
            except RecordError:
                continue
        return found

    def _load_leads(self, *, lazy: bool) -> None:
        """The linked leads (each with a digest of its raw JSON) and the disqualified ones: all
        parsed now, or (`lazy`) found by the fields SQLite reads, only the disqualified parsed
        now and each account's linked leads when its context is first asked for (`_materialize`).
        Only a linked or a disqualified lead is a fact; the leads pass parses the others (once)."""
        lead_facts = self._lead_facts
        if lazy:
            # For `_materialize`, which parses few accounts' leads: one record's values at a time.
            last_written = self.state.last_written("salesforce")
            self._written_owner = lambda key: last_written.get((key, "OwnerId"))
            self._find_leads()
            return
        written = self.state.written_field("salesforce", "OwnerId").get  # one query, not one per lead
        converted: list[tuple[str, str]] = []
        for lead_id, text, digest in self.state.iter_sf_digested("Lead"):
            record = decode_stored(text)
            if not record.get("Vitally_Account_Id__c") and not self._is_disqualified(record.get("Status")):
                continue
            try:
                lead = parse_lead(record)
            except RecordError:
                continue
            self._read[lead_id] = lead
            self._disqualified(lead, digest)
            if lead.vitally_account_id:
                link = _link(lead_id, digest)
                lead_facts[lead.vitally_account_id] = lead_facts.get(lead.vitally_account_id, b"") + link
                self._leads_by_account[lead.vitally_account_id].append(lead)
                self._remember_assignment(lead, written)
                if lead.converted_opportunity_id:
                    converted.append((lead.vitally_account_id, lead.converted_opportunity_id))
        self._join_converted(converted)

    def _join_converted(self, converted: Iterable[tuple[str, str]]) -> None:
        """Join to each account the opportunities its linked leads were converted into (`(Vitally
        account id, ConvertedOpportunityId)`), whatever Salesforce Account they are on: converting
        a lead carries a custom field to the new Account only where an admin mapped it ("Map Lead
        Fields"), and a rep may convert into an existing Account that names no Vitally account.
        Parsed now, or (lazy) when the account's context is first asked for, each once in the
        account's opportunities (one its Account joins too is not repeated); part of the account's
        `fingerprint` either way, after the opportunities joined through its Account."""
        wanted = sorted(set(converted))
        if not wanted:
            return
        digests = self.state.sf_digests("Opportunity", sorted({i for _, i in wanted}), well_formed=True)
        unjoined: list[tuple[str, str]] = []  # (eager) not joined through its Account: parsed below
        for account_id, opportunity_id in wanted:
            digest = digests.get(opportunity_id)
            if digest is None:
                continue  # not in the mirror (not visible to crm-sync), or malformed
            raw_digest = _digest(digest)
            self._opp_facts[account_id] = self._opp_facts.get(account_id, b"") + _link(opportunity_id, raw_digest)
            if self._lazy:
                self._opp_links[account_id].append((opportunity_id, raw_digest, None))
            elif not any(known.id == opportunity_id for known in self._opps_by_account.get(account_id, ())):
                unjoined.append((account_id, opportunity_id))
        records = self.state.sf_raw_many("Opportunity", sorted({i for _, i in unjoined})) if unjoined else {}
        for account_id, opportunity_id in unjoined:
            try:
                opportunity = parse_opportunity(records[opportunity_id])
            except RecordError:
                continue
            joined = self._opps_by_account[account_id]
            joined.append(opportunity)
            joined.sort(key=lambda o: o.id)

    def _find_leads(self) -> None:
        """`_load_leads`, lazy: the linked and disqualified leads found by the fields stored with
        each mirrored lead, none parsed (a disqualified one when its company's day is first asked
        for: only its JSON is read now), with the OwnerId crm-sync wrote under each linked one's
        `Sync_Key__c` (for `fingerprint`)."""
        converted: list[tuple[str, str]] = []
        rows = self.state.iter_lead_links(self.disqualified_statuses)
        for lead_id, digest, linked, owner, company, raw, opportunity in rows:
            if linked:
                self._linked[linked].append(lead_id)
                self._lead_facts[linked] = self._lead_facts.get(linked, b"") + _link(lead_id, digest)
                if isinstance(owner, str) and owner:
                    self._owners_written[linked][lead_id] = owner
                if opportunity:
                    converted.append((linked, opportunity))
            key = company_key(company) if company else ""
            if raw is not None and key:  # disqualified, of a company
                self._unparsed_disqualified[key].append((lead_id, digest, raw))
        self._join_converted(converted)

    def _materialize(self, account_id: str) -> list[Lead]:
        """The account's linked leads, parsed (once: kept in `_leads_by_account`), in id order."""
        known = self._leads_by_account.get(account_id)
        if known is not None or account_id not in self._linked:
            return known if known is not None else []
        read = self._read
        ids = self._linked[account_id]
        missing = [lead_id for lead_id in ids if lead_id not in read]
        for lead_id, record in self.state.iter_sf_raw("Lead", missing):
            try:
                read[lead_id] = parse_lead(record)
            except RecordError:
                continue
        leads = self._leads_by_account[account_id] = [read[lead_id] for lead_id in ids if lead_id in read]
        for lead in leads:
            if lead.vitally_account_id == account_id:
                self._remember_assignment(lead, self._written_owner)
        return leads

    def fingerprint(self, account_id: str) -> str:
        """A digest of the Salesforce facts the account's context is made of ('' when there are
        none), for facts from `load`: each linked lead's id and raw JSON (and the fields this
        cycle's own writes will give it: `plan_lead_fields`), the opportunities, and the owners
        crm-sync gave its leads. Equal fingerprints mean equal contexts (`context_for` is a
        function of exactly these), and none of the linked leads is parsed to compute it."""
        leads, opportunities = self._lead_facts.get(account_id), self._opp_facts.get(account_id)
        if not leads and not opportunities:
            return ""
        digest = hashlib.blake2b(leads or b"", digest_size=16)
        planned = self._planned.get(account_id)
        if planned:
            for lead_id, fields in sorted(planned.items()):
                digest.update(b"\3" + lead_id.encode() + b"\0" + repr(sorted(fields.items())).encode())
        # The OwnerIds crm-sync wrote under the leads' keys: found with the raw rows (lazy), or
        # with the leads parsed (the same ones: a lead the mirror holds as well-formed parses).
        # Called for every account with facts at every cycle: one update, `[]` when there are none.
        owners = self._owners_written.get(account_id) if self._lazy else self._assigned_by_account.get(account_id)
        written = repr(sorted(owners.items())).encode() if owners else b"[]"
        digest.update(b"\1" + (opportunities or b"") + b"\2" + written)
        return digest.hexdigest()

    def with_facts(self) -> Iterator[str]:
        """The account ids Salesforce has facts on (a linked lead or an opportunity), for `load`."""
        yield from self._lead_facts
        yield from (account_id for account_id in self._opp_facts if account_id not in self._lead_facts)

    @classmethod
    def load_for(
        cls,
        state: StateDB,
        account_ids: Collection[str],
        lead_ids: Collection[str] = (),
        *,
        policy: Policy | None = None,
    ) -> SalesforceFacts:
        """The facts `load` would give about these accounts and leads, read from the mirror for
        them alone (an event's mini-cycle): `context_for` each of the accounts and
        `company_disqualified_at` each lead's company answer as after `load`, and `iter_leads`
        yields the accounts' linked leads and the leads named, in id order."""
        scoped: list[tuple[Lead, dict[str, Any]]] = []
        facts = cls._of(state, policy, _scoped=scoped)
        facts.users.update(mirrored_users(state))
        facts._scoped_opportunities(account_ids)
        linked = state.sf_where("Lead", "Vitally_Account_Id__c", account_ids)
        named = state.sf_where("Lead", "Id", lead_ids)
        last = state.last_written("salesforce")

        def written(key: str) -> Any:
            return last.get((key, "OwnerId"))

        converted: list[tuple[str, str]] = []
        for lead, raw in _rows(sorted({row[0]: row for row in [*linked, *named]}.values()), parse_lead):
            scoped.append((lead, raw))
            if lead.vitally_account_id:
                facts._leads_by_account[lead.vitally_account_id].append(lead)
                facts._remember_assignment(lead, written)
                if lead.vitally_account_id in account_ids and lead.converted_opportunity_id:
                    converted.append((lead.vitally_account_id, lead.converted_opportunity_id))
        facts._join_converted(converted)
        facts._merge_facts(account_ids)
        # The LLM's verdicts on these leads, as `load` gives them: without them the `llm`
        # classifier's demo requests would wait, unowned, in every mini-cycle.
        remembered = state.remembered_triage([lead.id for lead, _ in scoped])
        facts._triage = {lead: verdict for lead, (_, verdict) in remembered.items() if verdict}
        # The disqualified leads of these leads' companies: found by their stored Status and
        # Company, so only those are read and parsed, not every disqualified lead of the book.
        companies = {company_key(lead.company) for lead, _ in scoped if lead.company} - {""}
        disqualified = state.sf_companies("Lead", facts.disqualified_statuses)
        same = [i for i, company in disqualified if company_key(company) in companies]
        for lead, _ in _rows(state.sf_where("Lead", "Id", same), parse_lead):
            facts._disqualified(lead)
        return facts

    @classmethod
    def accounts_of_opportunities(cls, state: StateDB, opportunity_ids: Collection[str]) -> set[str]:
        """The Vitally accounts whose context (`context_for`, after `load`) holds one of these
        mirrored opportunities: those named by the opportunity's Salesforce Account, or by an
        Account a person merged into it (`_merged_accounts`), and those whose linked lead was
        converted into it (`_join_converted`). An opportunity's event (`sync.minicycle`) plans
        them; read from the fields the mirror stores beside each record, no whole-mirror pass."""
        wanted = sorted(set(opportunity_ids))
        if not wanted:
            return set()
        facts = cls._of(state, None)
        sf_accounts: set[str] = set()
        for opportunity, _ in _rows(state.sf_where("Opportunity", "Id", wanted), parse_opportunity):
            if opportunity.account_id:
                sf_accounts.add(opportunity.account_id)
        found: set[str] = set()
        for account, _ in _rows(state.sf_where("Account", "Id", sorted(sf_accounts)), parse_sf_account):
            if account.vitally_account_id:
                found.add(account.vitally_account_id)
        for sf_id, named in facts._merged_accounts().items():
            if sf_id in sf_accounts:
                found.update(named)
        for lead, _ in _rows(state.sf_where("Lead", "ConvertedOpportunityId", wanted), parse_lead):
            if lead.vitally_account_id:
                found.add(lead.vitally_account_id)
        return found

    @staticmethod
    def accounts_of_leads(state: StateDB, lead_ids: Collection[str]) -> set[str]:
        """The Vitally accounts these mirrored leads are linked to (`Vitally_Account_Id__c`, the
        join `context_for` reads): a Lead's event (`sync.minicycle`) plans them too, so a lead
        handed over, disqualified or created for an account moves the account's stage within
        seconds, as a whole plan moves it. Read from the mirror's rows of these leads alone."""
        wanted = sorted(set(lead_ids))
        if not wanted:
            return set()
        leads = _rows(state.sf_where("Lead", "Id", wanted), parse_lead)
        return {lead.vitally_account_id for lead, _ in leads if lead.vitally_account_id}

    def _scoped_opportunities(self, account_ids: Collection[str]) -> None:
        """`load_for`: the opportunities of the Salesforce Accounts that name these accounts, and
        of those Accounts naming them were merged into (`_merged_accounts`), read for them alone."""
        state = self.state
        merged = self._merged_accounts(account_ids)
        naming = state.sf_where("Account", "Vitally_Account_Id__c", account_ids)
        kept = state.sf_where("Account", "Id", sorted(merged))
        joins: dict[str, list[str]] = {}  # Salesforce Account Id -> the accounts it joins
        for account, _ in _rows(sorted({row[0]: row for row in [*naming, *kept]}.values()), parse_sf_account):
            own = account.vitally_account_id if account.vitally_account_id in account_ids else None
            named = _names(own, merged.get(account.id, ()))
            if named:
                joins[account.id] = named
        for gone in self._gone(merged, joins):
            joins[gone] = merged[gone]
        for opportunity, _ in _rows(state.sf_where("Opportunity", "AccountId", joins), parse_opportunity):
            for vitally_id in joins.get(opportunity.account_id or "", ()):
                self._opps_by_account[vitally_id].append(opportunity)

    def _disqualified(self, lead: Lead, digest: bytes | None = None) -> None:
        """Remember a disqualified lead's company (`company_disqualified_at`), and the digest of
        its raw JSON (`disqualified_fingerprint`) when given.

        A lead the demo triage dropped as spam (`rules.context.dropped_as_spam`: its status is the
        spam status, a disqualified one by default) was not disqualified by a person, as the
        cool-off reads it too: its day is not its company's. The mirror stores no classification
        beside a lead, so the searches by Status (`StateDB.iter_lead_links`, `sf_companies`) find
        it among the candidates, and it is left out here, where every path parses them: `load`,
        eager or lazy (`_parse_disqualified`), and `load_for`. Its digest still counts towards the
        company's fingerprint, as a lazy `load` finds the rows (a changed classification changes it)."""
        if not lead.company or not self._is_disqualified(lead.status):
            return
        key = company_key(lead.company)
        if not key:  # names no company
            return
        if digest is not None:
            self._disqualified_rows[key] = self._disqualified_rows.get(key, b"") + _link(lead.id, digest)
        if dropped_as_spam(lead):
            return
        # Salesforce keeps no disqualification date on a Lead: the first version crm-sync read with
        # this status is the best proxy (`Lead.status_since`), else its last change.
        day = (lead.status_since or lead.system_modstamp).date()
        self._disqualified_by_company[key] = max(day, self._disqualified_by_company.get(key, day))

    def _parse_disqualified(self, key: str) -> None:
        """Parse the disqualified leads of the company `key` that a lazy `load` found."""
        self.disqualified_fingerprint(key)  # of the rows as found, parseable or not
        for lead_id, _, raw in self._unparsed_disqualified.pop(key, ()):
            try:
                lead = parse_lead(json.loads(raw))
            except RecordError:
                continue
            self._read.setdefault(lead_id, lead)
            self._disqualified(lead)

    def disqualified_fingerprint(self, company: str | None) -> str:
        """A digest of the raw JSON of the company's disqualified leads ('' when none), for facts
        from `load`: equal fingerprints mean the same `company_disqualified_at`, and none of the
        leads is parsed to compute it."""
        key = company_key(company) if company else ""
        if not key:
            return ""
        known = self._disqualified_prints.get(key)
        if known is not None:
            return known
        found = b"".join(_link(i, digest) for i, digest, _ in self._unparsed_disqualified.get(key, ()))
        rows = found + self._disqualified_rows.get(key, b"")  # in id order: one of the two is empty
        known = self._disqualified_prints[key] = hashlib.blake2b(rows, digest_size=16).hexdigest() if rows else ""
        return known

    def _remember_assignment(self, lead: Lead, written: Callable[[str], Any]) -> None:
        """The owner crm-sync gave a lead it created (upserted on its Sync_Key__c; `written` gives
        the OwnerId crm-sync last wrote under a key), so a rule can tell a person's reassignment
        from our own choice."""
        if not lead.sync_key or not lead.vitally_account_id:
            return
        owner = written(lead.sync_key)
        if isinstance(owner, str) and owner:
            self._assigned_by_account[lead.vitally_account_id][lead.id] = owner

    def linked_leads(self, skip: Collection[str] = ()) -> Iterator[Lead]:
        """The leads joined to a Vitally account (they are part of that account's context), but
        those whose ids are in `skip` (not even parsed, unless an account's context needed them)."""
        if self._linked:
            wanted = [i for links in self._linked.values() for i in links if i not in skip and i not in self._read]
            for lead_id, record in self.state.iter_sf_raw("Lead", wanted):
                try:
                    self._read[lead_id] = parse_lead(record)
                except RecordError:
                    continue
            for account_id, links in list(self._linked.items()):
                if account_id in self._leads_by_account:
                    yield from (lead for lead in list(self._leads_by_account[account_id]) if lead.id not in skip)
                    continue
                yield from (self._read[i] for i in links if i not in skip and i in self._read)
            return
        for leads in list(self._leads_by_account.values()):
            yield from (lead for lead in list(leads) if lead.id not in skip)

    def plan_lead_fields(self, lead: Lead, fields: dict[str, Any]) -> None:
        """Show the accounts' rules a linked lead as this cycle's own writes will leave it (a lead
        disqualified now is not an open lead for the lifecycle stage), so the next cycle does not
        correct what this one decided."""
        raw = self.state.sf_raw("Lead", lead.id)
        if raw is None or not lead.vitally_account_id:
            return
        try:
            planned = parse_lead({**raw, **fields})
        except RecordError:
            return
        leads = self._materialize(lead.vitally_account_id) if self._linked else None
        if leads is None:
            leads = self._leads_by_account[lead.vitally_account_id]
        leads[:] = [planned if known.id == lead.id else known for known in leads]
        self._planned[lead.vitally_account_id][lead.id] = dict(fields)

    def iter_leads(self, skip: Collection[str] = ()) -> Iterator[tuple[Lead, dict[str, Any]]]:
        """Every well-formed lead of the mirror with its fields as Salesforce last showed them
        (for diffs), streamed, but those whose ids are in `skip` (not even read); a lead `load`
        parsed is not parsed again. For facts of `load_for`, the leads it read. A lead deleted in
        Salesforce (crm-sync's own, kept marked: `sync.ingest`) is not among them: nothing is
        judged, asked or written about it; the account's context still holds it."""
        if self._scoped is not None:
            return iter([(lead, raw) for lead, raw in self._scoped if lead.id not in skip and not lead.is_deleted])
        return (pair for pair in self._iter_mirrored_leads(skip) if not pair[0].is_deleted)

    def _iter_mirrored_leads(self, skip: Collection[str]) -> Iterator[tuple[Lead, dict[str, Any]]]:
        read = self._read
        rows: Iterable[tuple[str, str, str | None]] = self.state.iter_sf("Lead")
        if skip:
            ids = self.state.sf_ids("Lead")
            wanted = [i for i in ids if i not in skip]
            if len(wanted) * 2 < len(ids):  # most leads skipped (an idle cycle): their JSON is not even read
                rows = self.state.sf_rows("Lead", wanted)
        for lead_id, raw, error in rows:
            if error or lead_id in skip:
                continue
            record = decode_stored(raw)
            known = read.get(lead_id)
            if known is not None:
                yield known, record
                continue
            try:
                yield parse_lead(record), record
            except RecordError:
                continue

    def linked_to(self, account_id: str) -> list[Lead]:
        """The leads that name the account (`Vitally_Account_Id__c`), as mirrored: those merged
        away too, where its context shows the lead each lives on in."""
        leads = self._leads_by_account.get(account_id)
        if leads is None and account_id in self._linked:
            leads = self._materialize(account_id)
        return list(leads or ())

    def context_for(self, account_id: str) -> AccountContext:
        leads = self._leads_by_account.get(account_id)
        if leads is None and account_id in self._linked:
            leads = self._materialize(account_id)
        opportunities = self._opportunities_of(account_id)
        if not leads and not opportunities:
            return EMPTY
        if leads and self._merges:
            leads = self._through_merges(account_id, leads)
        return AccountContext(
            leads=tuple(leads or ()),
            opportunities=tuple(opportunities or ()),
            assigned_owners=self._assigned_by_account.get(account_id) or {},
            closed=self.closed,
            new=self.new,
        )

    def triage_of(self, lead_id: str) -> Remembered | None:
        """The triage verdict remembered for the lead's submission, if any (the rule checks that it
        is for the submission the lead carries now)."""
        return self._triage.get(lead_id)

    def linked_leads_digest(self, account_id: str) -> str:
        """A digest of the account's linked leads as the mirror holds them (each one's Id and raw
        JSON's digest, `load`'s), without this cycle's planned writes: equal digests, equal
        `account_disqualified_at` (a lead's context, `sync.incremental.LeadBook`)."""
        return hashlib.blake2b(self._lead_facts.get(account_id, b""), digest_size=16).hexdigest()

    def account_disqualified_at(self, account_id: str, but: str | None = None) -> date | None:
        """The latest day a lead linked to this Vitally account (other than `but`) was disqualified
        by a person (not one the demo triage dropped as spam), dated as `company_disqualified_at`
        dates a company's: the first version crm-sync read in that status, else its last change."""
        days = [
            (lead.status_since or lead.system_modstamp).date()
            for lead in self.context_for(account_id).leads
            if lead.id != but and self._is_disqualified(lead.status) and not dropped_as_spam(lead)
        ]
        return max(days, default=None)

    def company_disqualified_at(self, company: str | None) -> date | None:
        """The latest day a lead of this company was disqualified, when known (by a person: not one
        the demo triage dropped as spam)."""
        key = company_key(company) if company else ""
        if not key:
            return None
        if key in self._unparsed_disqualified:
            self._parse_disqualified(key)
        return self._disqualified_by_company.get(key)
