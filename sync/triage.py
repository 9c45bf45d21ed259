"""The LLM triage of demo-form submissions, asked once per submission, ever.

With `[rules.demo] classifier = "llm"`, the rules stay pure: `demo.classification` reads the verdict
the state remembers for a lead's submission (`StateDB.remembered_triage`, keyed by the lead and the
submission's digest) and waits, with no owner, while there is none. This step asks: after a real
cycle's writes, for every open demo request of the mirror whose submission has no verdict yet, up to
`[triage.llm] max_calls_per_cycle`, and at most `max_calls_per_hour` in any 60 minutes, cycles
and events together (each request counted in the commit that says it is being asked: table
`llm_calls`); a submission left unasked waits, unowned, and is counted and logged
(`triage_deferred`). The leads it answered are then routed at once, by the daemon's mini-cycle
for them (`sync.daemon`, with `[events]` on) or, otherwise, by the next cycle. An event's
mini-cycle (`sync.minicycle`) asks about the leads it read fresh before it plans them, so a new
demo request named by an Outbound Message is classified and routed within that mini-cycle.

At most one request per submission: that it is being asked is committed before the request goes
out, and the answer after it. A submission found asked but unanswered (the process died in between)
is never asked again: it gets the offline classifier's verdict, saying why. A failed request is not
retried either: `connectors.llm.LLMTriage` falls back to the offline classifier at once. A changed
submission (new form text, another email, company, title or head count) is a new submission. Dry
runs and `explain` never ask: they read what is remembered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta

from core.errors import RecordError
from core.model import Lead
from core.records import parse_lead
from core.triage import Submission, Triage, TriageClassifier
from rules.context import picklist_key
from rules.demo import awaits_triage, classifier_for
from rules.policy import Policy
from state import StateDB
from sync.config import Config
from sync.vocabulary import CycleReport, Hooks, iso

__all__ = ["ask_llm"]

_UNANSWERED = "[LLM not used: asked once before and no answer was recorded; it is never asked twice]"


def ask_llm(
    config: Config,
    state: StateDB,
    llm: TriageClassifier,
    report: CycleReport,
    *,
    clock: Callable[[], datetime],
    hooks: Hooks,
    leads: Iterable[Lead] | None = None,
) -> list[str]:
    """Ask `llm` about every open demo request of the mirror (or of `leads`, an event's mini-cycle's
    fresh ones) whose submission has no verdict (see the module docstring); counts `triage_asked`
    and `triage_recovered` in the report. Returns the ids of the leads whose submission got its
    verdict now (answered, or recovered), in the order asked."""
    policy = config.policy
    if leads is not None:
        leads = list(leads)  # an event's few leads: only their remembered verdicts are read
    remembered = state.remembered_triage(None if leads is None else [lead.id for lead in leads])
    settings = config.llm
    this_hour = state.llm_calls_since(iso(clock() - timedelta(hours=1)))
    hourly = settings.max_calls_per_hour - this_hour < settings.max_calls_per_cycle
    budget = min(settings.max_calls_per_cycle, settings.max_calls_per_hour - this_hour)
    answered: list[str] = []
    seen: set[str] = set()
    deferred = 0
    for lead in _demo_requests(state, policy) if leads is None else leads:
        if hooks.should_stop():
            break
        if lead.id in seen or not awaits_triage(lead, policy):
            continue
        seen.add(lead.id)  # a lead given twice (read as linked and as named) is asked about once
        submission = Submission.of_lead(lead)
        digest = submission.digest()
        known = remembered.get(lead.id)
        if known is not None and known[0] == digest:
            if known[1] is None:  # asked, and the answer was lost with the process that asked
                fallback = classifier_for(policy.demo).classify(submission)
                verdict = Triage(fallback.label, fallback.confidence, f"{fallback.reason} {_UNANSWERED}")
                _remember(state, lead.id, digest, verdict, clock)
                report.counts["triage_recovered"] += 1
                answered.append(lead.id)
            continue
        if budget <= 0:
            deferred += 1  # waits, unowned, for a later cycle's budget
            continue
        with state.atomic():
            state.triage_asked(lead.id, digest, iso(clock()))
        budget -= 1
        _remember(state, lead.id, digest, llm.classify(submission), clock)
        report.counts["triage_asked"] += 1
        answered.append(lead.id)
    if deferred:
        report.counts["triage_deferred"] += deferred
        limit = "max_calls_per_hour" if hourly else "max_calls_per_cycle"
        hooks.log("triage_deferred", {"submissions": deferred, "limit": f"triage.llm.{limit}"})
    return answered


def _demo_requests(state: StateDB, policy: Policy) -> Iterator[Lead]:
    """The mirror's well-formed leads of the demo form's lead source, in id order: SQLite finds them
    by their LeadSource, so a cycle does not parse every lead of the book to ask about a few (the
    caller checks that each still awaits its triage). The LeadSource compares as the rules compare
    it (`picklist_key`: any case, spaces ignored): a `demo request` lead the triage waits for is asked about."""
    for _id, raw, error in state.sf_where("Lead", "LeadSource", [policy.demo.lead_source], key=picklist_key):
        if error:
            continue
        try:
            lead = parse_lead(json.loads(raw))
        except RecordError:
            continue
        if not lead.is_deleted:
            yield lead


def _remember(state: StateDB, lead: str, digest: str, verdict: Triage, clock: Callable[[], datetime]) -> None:
    with state.atomic():
        state.triage_answered(lead, digest, verdict, iso(clock()))
