"""What a demo-form triage reads and returns, and the protocol every triage classifier follows.

Shared by the offline classifier (`rules.triage`) and the LLM adapter (`connectors.llm`), so
neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from core.model import Lead

__all__ = ["LABELS", "Label", "Remembered", "Submission", "Triage", "TriageClassifier"]

Label = Literal["sales", "support", "spam"]
LABELS: tuple[Label, ...] = ("sales", "support", "spam")


@dataclass(frozen=True)
class Submission:
    """One demo-form submission: the form text and the lead fields the form asks for."""

    text: str = ""
    email: str = ""
    company: str = ""
    title: str = ""
    employees: int | None = None

    @classmethod
    def of_lead(cls, lead: Lead) -> Submission:
        """The submission a Salesforce demo-request lead carries (Form_Text__c and the lead fields)."""
        return cls(lead.form_text or "", lead.email or "", lead.company or "", lead.title or "", lead.employees)

    def digest(self) -> str:
        """What identifies this submission's content: a verdict remembered under it holds until the
        form text or a lead field the classifier reads changes."""
        body = json.dumps([self.text, self.email, self.company, self.title, self.employees], ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Triage:
    """A classifier's verdict: the label, how sure it is (0 to 1) and why, in words."""

    label: Label
    confidence: float
    reason: str


@dataclass(frozen=True)
class Remembered:
    """A verdict the state remembers for a lead's submission (`digest`, `Submission.digest`): the
    LLM is asked once per submission, and the rules read its answer from here."""

    digest: str
    triage: Triage


class TriageClassifier(Protocol):
    """Labels a demo-form submission sales, support or spam; never raises on any submission."""

    def classify(self, submission: Submission) -> Triage: ...
