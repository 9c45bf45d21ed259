"""Demo-form triage: is a "book a demo" submission for sales, for support, or spam?
(lead-routing-and-scoring.md, "Demo booking": "an AI qualifier step to classify submissions as
sales/support/spam. If 'support' or 'spam', it'll skip round robin").

A `TriageClassifier` turns a `Submission` (the form text and the lead fields the form carries:
email, company, title, employees) into a `Triage`: the label, a confidence in [0, 1] and a
reason a person can read ("support: reports a problem ('stopped working', 'since yesterday')").
The labels follow the labelling guide in tests/data/triage/GUIDE.md.

`offline_triage()` is the built-in classifier: pure, offline, deterministic. Its hard rules
decide what never needs weighing (text that tries to dictate the label, empty forms, gibberish,
test submissions); then the evidence of `rules.triage_lexicon` (fourteen languages) is summed per
label together with a naive Bayes model's probabilities, trained at first use on the examples
shipped with the package; last, the owner gate (`RuleTriage.review`) lets a submission reach sales
only when its own text asks for something a rep sells and nothing in it contests that, and labels
the rest support, "needs review". docs/triage.md has the benchmark that chose this design.

The costs behind the thresholds: a support request or a pitch handed to a rep is the failure
issue #15 measured, and a real prospect labelled support still reaches a person through the
support ticket, so support wins on less evidence than sales; a prospect labelled spam is dropped,
so spam needs evidence of its own. No classifier here raises on any text.
"""

from __future__ import annotations

from core.triage import LABELS, Label, Submission, Triage, TriageClassifier
from rules.triage_model import HybridTriage, packaged_model
from rules.triage_rules import RuleTriage

__all__ = [
    "LABELS",
    "Label",
    "Submission",
    "Triage",
    "TriageClassifier",
    "offline_triage",
]


def offline_triage() -> TriageClassifier:
    """The built-in offline classifier: `RuleTriage`'s hard rules and evidence plus the packaged model."""
    return HybridTriage(RuleTriage(), packaged_model())
