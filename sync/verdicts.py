"""The demo triage's verdicts kept between cycles: an unchanged demo request is classified once.

The offline triage (and the `keywords` classifier) is a pure function of a submission
(`core.triage.Submission`: the form text and the lead fields the classifier reads), the classifier's
code and model, and `[rules.demo]`. A cycle sees every open demo request again, so `Verdicts` keeps
each verdict in the state (`StateDB.triage_verdicts`) under the submission's digest and the
classifier's `version` (a digest of its name, `[rules.demo]`, the product version and the source and
training data of the triage), and hands it to the rule through the lead's context
(`LeadContext.triage`), which `rules.demo.classify_demo` reads in place of classifying again. A new
version (an upgrade, another classifier, changed keywords) forgets every kept verdict.

The `llm` classifier keeps its own verdicts (`sync.triage`, asked once per submission, ever); this
module does not serve it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from core.model import Lead
from core.triage import Remembered, Submission, Triage
from rules.demo import classifier_for
from rules.policy import DemoPolicy
from state import StateDB
from sync.incremental import digest_of, product_version

__all__ = ["Verdicts", "triage_version"]

_ROOT = Path(__file__).resolve().parent.parent
# What the offline and keyword classifiers are made of: their code, and the model's training data.
_TRIAGE_FILES = ("core/triage.py", "rules/demo.py", "rules/triage.py", "rules/triage_lexicon.py",
                 "rules/triage_model.py", "rules/triage_rules.py", "rules/triage_train.jsonl")  # fmt: skip


@cache
def _triage_source() -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in _TRIAGE_FILES:
        digest.update(name.encode())
        digest.update((_ROOT / name).read_bytes())
    return digest.hexdigest()


def triage_version(demo: DemoPolicy) -> str:
    """The identity of the configured classifier: its verdict on a submission changes only with it."""
    return digest_of((demo.classifier, demo, product_version(), _triage_source()))


@dataclass
class Verdicts:
    """The configured (non-LLM) classifier's verdicts, kept in the state: `of` answers from the state
    when it can and classifies otherwise; `save` keeps the new ones (in the cycle's transaction)."""

    state: StateDB
    demo: DemoPolicy
    version: str
    classified: int = 0
    _known: dict[str, Triage] | None = None
    _new: list[tuple[str, Triage]] = field(default_factory=list)
    few: bool = False  # for an event's few leads: each verdict read on its own, not all at once

    @classmethod
    def of(cls, state: StateDB, demo: DemoPolicy, *, few: bool = False) -> Verdicts:
        return cls(state, demo, triage_version(demo), few=few)

    def verdict(self, lead: Lead) -> Remembered:
        """The classifier's verdict on the lead's submission, with the submission's digest."""
        if self._known is None:  # read when the first demo request needs it
            self._known = {} if self.few else self.state.triage_verdicts(self.version)
        submission = Submission.of_lead(lead)
        digest = submission.digest()
        triage = self._known.get(digest)
        if triage is None and self.few:
            triage = self.state.triage_verdicts(self.version, [digest]).get(digest)
            if triage is not None:
                self._known[digest] = triage
        if triage is None:
            triage = classifier_for(self.demo).classify(submission)
            self._known[digest] = triage
            self._new.append((digest, triage))
            self.classified += 1
        return Remembered(digest, triage)

    def save(self) -> None:
        if self._new:
            self.state.save_triage_verdicts(self.version, self._new)
            self._new.clear()
