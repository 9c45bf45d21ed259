"""Demo booking: triage of demo-request forms and instant-scheduler eligibility
(lead-routing-and-scoring.md, "Demo booking"; rules.md §3)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from core.model import Lead
from core.triage import Label, Submission, Triage, TriageClassifier
from rules import clock
from rules.base import Decision, LeadIntent, LeadRule, Rule, add_months, fmt_num
from rules.context import LeadContext, closed_statuses, is_closed, same_picklist
from rules.policy import DemoPolicy
from rules.scoring import score_components
from rules.triage import offline_triage

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = [
    "CLASSIFICATION",
    "CLASSIFIERS",
    "INSTANT_SCHEDULER",
    "Classifier",
    "KeywordClassifier",
    "Label",
    "awaits_scheduler",
    "awaits_triage",
    "classifier_for",
    "classify_demo",
    "scheduler_eligible",
]

CLASSIFICATION_RULE = "demo.classification"
SCHEDULER_RULE = "demo.instant_scheduler"

# The most of a classifier's reason the decision keeps: with its frame ("classified support (…);
# skips the round robin (…)") the reason stays within a 255-character Salesforce text field.
_TRIAGE_REASON_MAX = 150
_REASON_MAX = 255


class Classifier(Protocol):
    """Labels a demo-form text (the `keywords` classifier's interface); the reason is shown to people."""

    def classify(self, text: str) -> tuple[Label, str]: ...


def _words_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])" + re.escape(phrase.casefold()) + r"s?(?![a-z0-9])")


def _normalise(text: str) -> str:
    return text.casefold().replace("\u2019", "'")


class KeywordClassifier:
    """The `keywords` classifier: keyword and shape signals of the form text, no model.

    Spam wins when its signals (keywords, many links, all caps) outnumber the sales keywords;
    otherwise support wins when its keywords outnumber the sales keywords; everything else is sales.
    """

    def __init__(
        self,
        spam_keywords: tuple[str, ...],
        support_keywords: tuple[str, ...],
        sales_keywords: tuple[str, ...] = (),
        min_urls: int = 3,
        caps_ratio: float = 0.8,
        caps_min_letters: int = 20,
    ) -> None:
        self._spam = [(k, _words_pattern(k)) for k in spam_keywords]
        self._support = [(k, _words_pattern(k)) for k in support_keywords]
        self._sales = [(k, _words_pattern(k)) for k in sales_keywords]
        self._min_urls = min_urls
        self._caps_ratio = caps_ratio
        self._caps_min_letters = caps_min_letters

    @classmethod
    def from_policy(cls, policy: DemoPolicy) -> KeywordClassifier:
        return cls(
            policy.spam_keywords,
            policy.support_keywords,
            policy.sales_keywords,
            policy.spam_min_urls,
            policy.spam_caps_ratio,
            policy.spam_caps_min_letters,
        )

    def classify(self, text: str) -> tuple[Label, str]:
        if not text or not text.strip():
            return "sales", "no form text"
        folded = _normalise(text)
        spam = [k for k, pattern in self._spam if pattern.search(folded)]
        urls = len(re.findall(r"https?://|www\.", folded))
        if urls >= self._min_urls:
            spam.append(f"{urls} links")
        letters = [c for c in text if c.isalpha()]
        if len(letters) >= self._caps_min_letters:
            upper = sum(1 for c in letters if c.isupper())
            if upper / len(letters) >= self._caps_ratio:
                spam.append("all caps")
        support = [k for k, pattern in self._support if pattern.search(folded)]
        sales = [k for k, pattern in self._sales if pattern.search(folded)]
        if spam and len(spam) > len(sales):
            return "spam", _signals("spam", spam, sales)
        if support and len(support) > len(sales):
            return "support", _signals("support", support, sales)
        if sales:
            return "sales", _signals("sales", sales, spam + support)
        return "sales", "no spam or support signals"


class _TextTriage:
    """A text classifier (`Classifier`) as a `TriageClassifier`: it reads the form text only."""

    def __init__(self, classifier: Classifier) -> None:
        self._classifier = classifier

    def classify(self, submission: Submission) -> Triage:
        label, reason = self._classifier.classify(submission.text)
        return Triage(label, 1.0, reason)


def _signals(kind: str, found: list[str], against: list[str]) -> str:
    text = f"{kind} signals: {', '.join(found)}"
    if against:
        text += f" (outweighing {', '.join(against)})"
    return text


def _offline(policy: DemoPolicy) -> TriageClassifier:
    return _offline_cached()


@functools.cache
def _offline_cached() -> TriageClassifier:
    """One offline triage per process, remembering its last verdicts: a cycle sees every open demo
    request again, and a submission's label only changes when the submission does."""
    return _Remembering(offline_triage())


class _Remembering:
    """A triage classifier that remembers the verdicts on the last `size` distinct submissions."""

    def __init__(self, classifier: TriageClassifier, size: int = 65_536) -> None:
        self._classify = functools.lru_cache(maxsize=size)(classifier.classify)

    def classify(self, submission: Submission) -> Triage:
        return self._classify(submission)


# Classifier names the config may choose, to a factory from the policy: `offline` (the default,
# docs/triage.md) reads the whole submission; `keywords` the form text. `llm` is asked by `sync`
# (once per submission, before the rules run) and its verdict reaches the rule through the lead's
# context; its factory is the classifier `sync` falls back to when the endpoint fails.
CLASSIFIERS: Mapping[str, Callable[[DemoPolicy], TriageClassifier]] = {
    "offline": _offline,
    "keywords": lambda policy: _TextTriage(KeywordClassifier.from_policy(policy)),
    "llm": _offline,
}


def classifier_for(policy: DemoPolicy) -> TriageClassifier:
    """The classifier the policy names (for `llm`: its offline fallback); the config validates the
    name against `CLASSIFIERS`."""
    try:
        factory = CLASSIFIERS[policy.classifier]
    except KeyError:
        raise LookupError(f"unknown demo classifier {policy.classifier!r} (known: {', '.join(CLASSIFIERS)})") from None
    return factory(policy)


def _short(text: str, limit: int = _TRIAGE_REASON_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def awaits_triage(lead: Lead, policy: Policy) -> bool:
    """Whether demo.classification reads this lead's submission: an open demo request (the leads
    `sync` asks the LLM about, once per submission). Its LeadSource is the configured one compared
    as the routing triggers compare it (`rules.context.same_picklist`: any case, spaces ignored),
    so that no demo request the round robin would route skips its triage."""
    demo = policy.demo
    return (
        same_picklist(lead.lead_source, demo.lead_source)
        and not lead.is_converted
        and not is_closed(lead.status, closed_statuses(policy))  # spam and support statuses included
    )


def _verdict(lead: Lead, ctx: LeadContext, demo: DemoPolicy) -> Triage | None:
    """The submission's verdict: the one the context carries for this very submission (for `llm`
    the answer the state remembers, None until `sync` has asked; for another classifier its own
    verdict, kept by `sync` so that an unchanged submission is classified once), else the
    configured classifier's."""
    submission = Submission.of_lead(lead)
    remembered = ctx.triage
    if remembered is not None and remembered.digest == submission.digest():
        return remembered.triage
    if demo.classifier == "llm":
        return None
    return classifier_for(demo).classify(submission)


# The labels a person may set in `Classification__c`, read in any case.
_LABELS: Mapping[str, Label] = {"sales": "sales", "support": "support", "spam": "spam"}


def _triage_reason(label: Label, triage: Triage, demo: DemoPolicy) -> str:
    reason = f"classified {label} ({_short(triage.reason)})"
    if label == "support":
        status = f"status {_short(demo.support_status, 40)}, " if demo.support_status else ""
        reason += f"; skips the round robin (support ticket, {status}no sales owner)"
    elif label == "spam":
        reason += f"; skips the round robin (dropped: status {_short(demo.spam_status, 40)}, no owner)"
    return reason


def _status_for(label: Label, demo: DemoPolicy) -> str | None:
    if label == "spam":
        return demo.spam_status
    return demo.support_status if label == "support" else None


def classify_demo(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """Every open demo request is classified sales, support or spam (Classification__c); support and spam
    skip the round robin, spam is dropped by setting its status to Disqualified, and support gets the
    configured `support_status` (when set) and, through `sync`, a Zendesk ticket.

    The classifier is the one `policy.demo.classifier` names in `CLASSIFIERS` (the offline triage by
    default), and it reads the whole submission: the form text and the lead's email, company, title
    and employees (`Submission.of_lead`). With `llm` the verdict is the one the state remembers for
    this submission (`ctx.triage`); until `sync` has asked, the lead waits, unowned. Its reason is
    part of the decision's, which stays within 255 characters.
    """
    demo = policy.demo
    inputs: dict[str, object] = {
        "lead_source": lead.lead_source,
        "classification": lead.classification,
        "form_text": lead.form_text,
    }

    def no(reason: str, unknown: tuple[str, ...] = ()) -> Decision:
        return Decision(CLASSIFICATION_RULE, lead.id, False, reason, inputs, unknown)

    if lead.lead_source is None:
        return no("lead source unknown", ("lead_source",))
    if not same_picklist(lead.lead_source, demo.lead_source):
        return no(f"not a demo request (LeadSource {lead.lead_source})")
    if not awaits_triage(lead, policy):
        return no("lead converted" if lead.is_converted else f"lead closed (status {lead.status})")
    set_by_person = ctx.person_classification or ""
    person = _LABELS.get(set_by_person.strip().casefold())
    if person is not None:
        # A person's label is theirs: it decides the round robin, and crm-sync writes none over it.
        inputs |= {"label": person, "skip_round_robin": person != "sales", "by": "a person"}
        return no(f"classified {person} by a person (Classification__c {_short(set_by_person, 20)}): theirs")
    triage = _verdict(lead, ctx, demo)
    if triage is None:
        inputs |= {"label": None, "skip_round_robin": True}
        return no("awaiting the LLM triage (asked once per submission after this cycle's writes): no owner yet")
    label = triage.label
    inputs |= {"label": label, "skip_round_robin": label != "sales", "confidence": triage.confidence}
    reason = _triage_reason(label, triage, demo)
    if lead.classification == label:
        return no(_short(f"{reason}; Classification__c already {label}", _REASON_MAX))
    intent = LeadIntent(classification=label, status=_status_for(label, demo))
    was = f"; was {_short(lead.classification, 20)}" if lead.classification else ""
    return Decision(CLASSIFICATION_RULE, lead.id, True, _short(reason + was, _REASON_MAX), inputs, lead=intent)


CLASSIFICATION: LeadRule = Rule(CLASSIFICATION_RULE, classify_demo)


def _title_matches(title: str, keywords: tuple[str, ...]) -> list[str]:
    folded = _normalise(title)
    return [k for k in keywords if re.search(r"(?<![a-z0-9])" + re.escape(k.casefold()), folded)]


def awaits_scheduler(lead: Lead, policy: Policy) -> bool:
    """Whether the instant scheduler judges this lead (a demo request), so that `sync` gathers what
    it reads of the lead's account only for those."""
    return same_picklist(lead.lead_source, policy.demo.lead_source)


def scheduler_eligible(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """A demo request sees the instant scheduler when it shows a strong ICP fit (a lead score of at
    least 20 out of 70: "those <20 are for the TAE to manually review and schedule"), meets 2 of 3
    requirements (revenue, title, industry) and no lead of its company, or of the account it is
    linked to, was disqualified within the last month (`ctx`: "If an account has had a lead
    disqualified within the last month, we no longer show the scheduler").

    Informational: it writes nothing. An unknown requirement counts as not met and is named.
    "Within the last month" (lead-routing-and-scoring.md) is a calendar month: on or after the same
    day a month ago (2026-10-22 for 2026-11-22; the month's last day when it has no such day).
    """
    demo = policy.demo
    company_disqualified_at = ctx.company_disqualified_at
    inputs: dict[str, object] = {
        "annual_revenue": lead.annual_revenue,
        "title": lead.title,
        "industry": lead.industry,
        "company_disqualified_at": company_disqualified_at,
        "account_disqualified_at": ctx.account_disqualified_at,
    }
    if not same_picklist(lead.lead_source, demo.lead_source):
        return Decision(SCHEDULER_RULE, lead.id, False, f"not a demo request (LeadSource {lead.lead_source})", inputs)
    met: list[str] = []
    unknown: list[str] = []
    parts: list[str] = []
    bar = fmt_num(demo.min_annual_revenue)
    if lead.annual_revenue is None:
        unknown.append("annual_revenue")
        parts.append("revenue unknown")
    elif lead.annual_revenue >= demo.min_annual_revenue:
        met.append("revenue")
        parts.append(f"revenue {fmt_num(lead.annual_revenue)} ≥ {bar}")
    else:
        parts.append(f"revenue {fmt_num(lead.annual_revenue)} < {bar}")
    title = (lead.title or "").strip()
    if not title:
        unknown.append("title")
        parts.append("title unknown")
    else:
        hits = _title_matches(title, demo.title_keywords)
        if hits:
            met.append("title")
            parts.append(f"title {title!r} matches {', '.join(hits)}")
        else:
            parts.append(f"title {title!r} matches no keyword")
    industry = (lead.industry or "").strip()
    if not industry:
        unknown.append("industry")
        parts.append("industry unknown")
    elif industry.casefold() in {i.casefold() for i in demo.industries}:
        met.append("industry")
        parts.append(f"industry {industry!r} is listed")
    else:
        parts.append(f"industry {industry!r} not listed")
    enough = len(met) >= demo.scheduler_min_met
    parts.append(f"{len(met)} of 3 met (need {demo.scheduler_min_met})")
    # "Those <20 are for the TAE to manually review and schedule": the lead score out of 70
    # (scoring.lead_score's, an unknown component scoring 0) shows the "strong ICP fit".
    score = sum(component.points for component in score_components(lead, policy.scoring))
    strong = score >= demo.scheduler_min_score
    inputs["score"] = score
    parts.append(f"score {score} {'≥' if strong else '<'} {demo.scheduler_min_score}")
    blocked = False
    latest = max(
        ((day, who) for day, who in ((company_disqualified_at, "company"), (ctx.account_disqualified_at, "account"))
         if day is not None),
        default=None,
    )  # fmt: skip
    if latest is not None:
        blocked, text = _blocked(latest[0], demo, now, inputs, latest[1])
        parts.append(text)
    inputs |= {"met": tuple(met), "blocked": blocked}
    eligible = enough and strong and not blocked
    verdict = "instant scheduler shown" if eligible else "no instant scheduler: manual review"
    reason = "; ".join(parts) + f"; {verdict}"
    return Decision(SCHEDULER_RULE, lead.id, eligible, reason, inputs, tuple(unknown))


def _blocked(
    disqualified: date, demo: DemoPolicy, now: datetime, inputs: dict[str, object], who: str = "company"
) -> tuple[bool, str]:
    """Whether a lead of the company (or of the account, `who`) was disqualified within the last
    `disqualified_block_months` ("within the last month": on or after the same day that many
    months ago), and why."""
    days = (now.date() - disqualified).days
    inputs["days_since_disqualified"] = days
    since = add_months(now.date(), -demo.disqualified_block_months)
    blocked = disqualified >= since
    if blocked and disqualified < date.max:  # no longer once `since` passes it
        clock.changes_when_month_shift_reaches(disqualified + timedelta(days=1), -demo.disqualified_block_months)
    months = f"{demo.disqualified_block_months} month{'s' if demo.disqualified_block_months != 1 else ''}"
    if blocked:
        return (
            True,
            f"a{'n' if who == 'account' else ''} {who} lead was disqualified {disqualified} ({days} days ago), "
            f"within {months} (since {since})",
        )
    return False, f"last {who} disqualification {disqualified} ({days} days ago), over {months} ago (before {since})"


# Informational: it fires when the scheduler is shown, and writes nothing.
INSTANT_SCHEDULER: LeadRule = Rule(SCHEDULER_RULE, scheduler_eligible)
