"""Demo-form triage, measured: which classifier labels sales / support / spam best, and at what cost.

Usage: .venv/bin/python bench/triage.py [--quick] [--errors corpus|heldout|fresh] [--method NAME]

Reads tests/data/triage/corpus.jsonl (tuning: 5-fold cross-validation, stratified by label) and
the two held-out files, tests/data/triage/heldout.jsonl and fresh.jsonl (never tuned on: every
method is fitted on the whole tuning corpus and then scored once on each). For each method it
prints accuracy, per-class precision and recall,
the confusion matrix, sales precision (the share of submissions given an owner that really are
sales: issue #15's "no support or spam submission given an owner" goal is >= 97 %) and support+spam
recall, then latency per classification and start-up cost.

Methods:
  keywords        today's `rules.demo.KeywordClassifier` (form text only; nothing to fit)
  rules           `RuleTriage()` with its shipped thresholds (nothing fitted)
  rules (tuned)   `RuleTriage`, thresholds chosen on the training folds
  nb              `rules.triage_model.NaiveBayes` alone, trained on the training folds
  rules+nb        `HybridTriage` with its shipped weight and thresholds, NB trained on the training
                  folds: the product's `rules.triage.offline_triage()`
  rules+nb, no gate the same without the owner gate (every submission weighed sales gets an owner)
  rules+nb (tuned) the same with weight and thresholds chosen on the training folds
  sk-logreg       scikit-learn TF-IDF (char 2-5 + word 1-2) + logistic regression   } only when
  sk-svm          the same features + a linear SVM                                    } installed

The rule patterns themselves were written while reading the tuning corpus, so cross-validation
measures the thresholds and the model, not the patterns: the held-out split is the estimate for
what the patterns have never seen (docs/triage.md also records a batch the patterns had not seen).

Thresholds and weights are chosen by the lowest error cost on the training folds, where a support
or spam submission given to sales, and a sales submission dropped as spam, cost 3, and any other
mistake costs 1 (a prospect labelled support still reaches a person through the ticket).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.triage import LABELS, Label, Submission, Triage
from rules.demo import KeywordClassifier
from rules.policy import DemoPolicy
from rules.triage_model import TRAINING_DATA, HybridTriage, NaiveBayes
from rules.triage_rules import RuleTriage, Scores

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "triage"
COST = {("support", "sales"): 3, ("spam", "sales"): 3, ("sales", "spam"): 3}
FOLDS = 5
# Never tuned on: `heldout` written with the tuning corpus, `fresh` later, in other voices, before any
# change it measures (docs/triage.md).
HELD_OUT = ("heldout", "fresh")


@dataclass(frozen=True)
class Example:
    id: str
    label: Label
    lang: str
    tags: tuple[str, ...]
    submission: Submission


def load(path: Path) -> list[Example]:
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        submission = Submission(row["text"], row["email"], row["company"], row["title"], row["employees"])
        examples.append(Example(row["id"], row["label"], row["lang"], tuple(row["tags"]), submission))
    return examples


def stratified_folds(examples: Sequence[Example], k: int = FOLDS) -> list[int]:
    """Fold of each example: the n-th example of each label (in file order) goes to fold n mod k."""
    seen: Counter[str] = Counter()
    folds = []
    for example in examples:
        folds.append(seen[example.label] % k)
        seen[example.label] += 1
    return folds


@dataclass(frozen=True)
class Metrics:
    confusion: Counter[tuple[str, str]]  # (truth, predicted) -> count

    @property
    def total(self) -> int:
        return sum(self.confusion.values())

    @property
    def accuracy(self) -> float:
        return sum(n for (t, p), n in self.confusion.items() if t == p) / max(self.total, 1)

    def precision(self, label: str) -> float:
        predicted = sum(n for (_, p), n in self.confusion.items() if p == label)
        return self.confusion[(label, label)] / predicted if predicted else 1.0

    def recall(self, label: str) -> float:
        actual = sum(n for (t, _), n in self.confusion.items() if t == label)
        return self.confusion[(label, label)] / actual if actual else 1.0

    @property
    def owners_wrongly_given(self) -> int:
        return self.confusion[("support", "sales")] + self.confusion[("spam", "sales")]

    @property
    def support_spam_recall(self) -> float:
        actual = sum(n for (t, _), n in self.confusion.items() if t != "sales")
        return sum(n for (t, p), n in self.confusion.items() if t != "sales" and p != "sales") / max(actual, 1)

    @property
    def cost(self) -> int:
        return sum(n * COST.get((t, p), 1) for (t, p), n in self.confusion.items() if t != p)


def metrics(truth: Sequence[str], predicted: Sequence[str]) -> Metrics:
    return Metrics(Counter(zip(truth, predicted, strict=True)))


# --------------------------------------------------------------------------- methods

Fitted = Callable[[Submission], Label]


def fit_keywords(_: Sequence[Example]) -> Fitted:
    classifier = KeywordClassifier.from_policy(DemoPolicy())
    return lambda s: classifier.classify(s.text)[0]


def fit_rules_default(_: Sequence[Example]) -> Fitted:
    classifier = RuleTriage()
    return lambda s: classifier.classify(s).label


GRID = {
    "spam_min": (1.0, 1.5, 2.0),
    "spam_over_sales": (0.4, 0.5, 0.75, 1.0),
    "support_min": (0.75, 1.0, 1.5),
    "support_over_sales": (0.4, 0.6, 0.8, 1.0),
}


def _grid() -> list[dict[str, float]]:
    return [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]


def _precomputed(examples: Sequence[Example]) -> list[tuple[Triage | None, Scores]]:
    rules = RuleTriage()
    return [(rules.hard(e.submission), rules.scores(e.submission)) for e in examples]


_CACHE: dict[int, tuple[Triage | None, Scores]] = {}


def _cached(example: Example) -> tuple[Triage | None, Scores]:
    key = id(example)
    if key not in _CACHE:
        _CACHE[key] = _precomputed([example])[0]
    return _CACHE[key]


def _by_rules(rules: RuleTriage) -> Callable[[Example], Label]:
    """The rules alone: a hard rule's label, else the weighed evidence's."""

    def predict(e: Example) -> Label:
        hard, scores = _cached(e)
        return hard.label if hard else rules.weigh(scores).label

    return predict


def choose_thresholds(
    examples: Sequence[Example], extra: Callable[[RuleTriage], Callable[[Example], Label]] | None = None
) -> RuleTriage:
    """The RuleTriage thresholds with the lowest error cost on `examples` (ties: the first in grid order)."""
    best: tuple[int, int, RuleTriage] | None = None
    for params in _grid():
        rules = RuleTriage(**params)
        predict = (extra or _by_rules)(rules)
        m = metrics([e.label for e in examples], [predict(e) for e in examples])
        key = (m.cost, -round(m.accuracy * 10_000))
        if best is None or key < best[:2]:
            best = (*key, rules)
    assert best is not None
    return best[2]


def fit_rules(examples: Sequence[Example]) -> Fitted:
    chosen = choose_thresholds(examples)
    return lambda s: chosen.classify(s).label


def fit_nb(examples: Sequence[Example]) -> Fitted:
    model = NaiveBayes.fit((e.submission, e.label) for e in examples)
    return lambda s: max(LABELS, key=model.probabilities(s).__getitem__)


HYBRID_WEIGHTS = (1.0, 2.0, 3.0, 4.0)


def fit_hybrid_default(examples: Sequence[Example]) -> Fitted:
    hybrid = HybridTriage(RuleTriage(), NaiveBayes.fit((e.submission, e.label) for e in examples))
    return lambda s: hybrid.classify(s).label


# No owner gate: every submission the weighing calls sales gets an owner (the offline triage before
# the gate; `RuleTriage.review`).
NO_GATE = {"owner_min_sales": 0.0, "owner_max_against": math.inf}


def fit_hybrid_no_gate(examples: Sequence[Example]) -> Fitted:
    hybrid = HybridTriage(RuleTriage(**NO_GATE), NaiveBayes.fit((e.submission, e.label) for e in examples))
    return lambda s: hybrid.classify(s).label


def choose_hybrid(examples: Sequence[Example]) -> HybridTriage:
    # The model judges each training example without having seen it (inner 5-fold), so the chosen
    # weight reflects how the model does on new text, not on text it memorised.
    inner = stratified_folds(examples)
    probabilities: dict[int, dict[Label, float]] = {}
    for fold in range(FOLDS):
        model = NaiveBayes.fit((e.submission, e.label) for e, f in zip(examples, inner, strict=True) if f != fold)
        for e, f in zip(examples, inner, strict=True):
            if f == fold:
                probabilities[id(e)] = model.probabilities(e.submission)
    best: tuple[int, int, HybridTriage] | None = None
    full = NaiveBayes.fit((e.submission, e.label) for e in examples)
    for weight in HYBRID_WEIGHTS:

        def extra(rules: RuleTriage, weight: float = weight) -> Callable[[Example], Label]:
            hybrid = HybridTriage(rules, full, weight)

            def predict(example: Example) -> Label:
                hard, scores = _cached(example)
                return hard.label if hard else hybrid.weigh(scores, probabilities[id(example)]).label

            return predict

        rules = choose_thresholds(examples, extra)
        chosen = extra(rules)
        m = metrics([e.label for e in examples], [chosen(e) for e in examples])
        key = (m.cost, -round(m.accuracy * 10_000))
        if best is None or key < best[:2]:
            best = (*key, HybridTriage(rules, full, weight))
    assert best is not None
    return best[2]


def fit_hybrid(examples: Sequence[Example]) -> Fitted:
    chosen = choose_hybrid(examples)
    return lambda s: chosen.classify(s).label


def _sklearn(kind: str) -> Callable[[Sequence[Example]], Fitted] | None:
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union
        from sklearn.svm import LinearSVC
    except ImportError:
        return None

    def render(s: Submission) -> str:
        return f"{s.text}\ntitle: {s.title}\ncompany: {s.company}\nemail: {s.email.rpartition('@')[2]}"

    def fit(examples: Sequence[Example]) -> Fitted:
        union = make_union(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
        )
        head = LogisticRegression(C=20.0, max_iter=2000) if kind == "logreg" else LinearSVC(C=1.0)
        pipeline = make_pipeline(union, head)
        pipeline.fit([render(e.submission) for e in examples], [e.label for e in examples])
        # scikit-learn answers with a numpy string: the one label it equals.
        return lambda s: next(label for label in LABELS if label == pipeline.predict([render(s)])[0])

    return fit


METHODS: dict[str, Callable[[Sequence[Example]], Fitted] | None] = {
    "keywords": fit_keywords,
    "rules": fit_rules_default,
    "rules (tuned)": fit_rules,
    "nb": fit_nb,
    "rules+nb, no gate": fit_hybrid_no_gate,
    "rules+nb": fit_hybrid_default,
    "rules+nb (tuned)": fit_hybrid,
    "sk-logreg": _sklearn("logreg"),
    "sk-svm": _sklearn("svm"),
}


def cross_validate(
    fit: Callable[[Sequence[Example]], Fitted], examples: Sequence[Example]
) -> tuple[Metrics, list[Label]]:
    folds = stratified_folds(examples)
    predicted: dict[int, Label] = {}
    for fold in range(FOLDS):
        train = [e for e, f in zip(examples, folds, strict=True) if f != fold]
        classify = fit(train)
        for i, (e, f) in enumerate(zip(examples, folds, strict=True)):
            if f == fold:
                predicted[i] = classify(e.submission)
    ordered = [predicted[i] for i in range(len(examples))]
    return metrics([e.label for e in examples], ordered), ordered


# --------------------------------------------------------------------------- printing


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def summary_table(rows: list[tuple[str, Metrics]]) -> str:
    head = (
        "| method | accuracy | sales P | sales R | support P | support R | spam P | spam R | support+spam R "
        "| owners given to support/spam |"
    )
    lines = [head, "|" + " --- |" * 10]
    for name, m in rows:
        cells = [pct(m.accuracy)]
        for label in LABELS:
            cells += [pct(m.precision(label)), pct(m.recall(label))]
        cells += [
            pct(m.support_spam_recall),
            f"{m.owners_wrongly_given} of {m.total - sum(n for (t, _), n in m.confusion.items() if t == 'sales')}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def confusion_table(m: Metrics) -> str:
    lines = ["| truth \\ predicted | sales | support | spam |", "| --- | --- | --- | --- |"]
    for truth in LABELS:
        lines.append(f"| {truth} | " + " | ".join(str(m.confusion[(truth, p)]) for p in LABELS) + " |")
    return "\n".join(lines)


def by_tag(examples: Sequence[Example], predicted: Sequence[str]) -> str:
    groups: dict[str, list[bool]] = {}
    for e, p in zip(examples, predicted, strict=True):
        keys = [f"tag:{t}" for t in e.tags] + [
            f"lang:{'en' if e.lang == 'en' else 'xx' if e.lang == 'xx' else 'non-en'}"
        ]
        for key in keys:
            groups.setdefault(key, []).append(e.label == p)
    cells = [f"{k} {sum(v)}/{len(v)}" for k, v in sorted(groups.items())]
    return ", ".join(cells)


def timing(examples: Sequence[Example]) -> list[str]:
    lines = ["| classifier | per classification (mean over the corpus) | start-up |", "| --- | --- | --- |"]
    code = "import time; t = time.perf_counter(); import rules.triage; print(time.perf_counter() - t)"
    started = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    submissions = [e.submission for e in examples]
    rules = RuleTriage()
    t = time.perf_counter()
    model = NaiveBayes.fit((e.submission, e.label) for e in examples)
    trained = time.perf_counter() - t
    hybrid = HybridTriage(rules, model)  # what offline_triage() builds
    keywords = KeywordClassifier.from_policy(DemoPolicy())
    for name, classify, startup in (
        ("keywords", lambda s: keywords.classify(s.text), "-"),
        ("rules", rules.classify, f"import {1000 * started:.0f} ms (compiles the patterns)"),
        ("nb", model.probabilities, f"training {1000 * trained:.0f} ms on {len(examples)} examples"),
        ("rules+nb", hybrid.classify, f"import + training {1000 * (started + trained):.0f} ms"),
    ):
        t = time.perf_counter()
        for s in submissions:
            classify(s)
        per = (time.perf_counter() - t) / len(submissions)
        lines.append(f"| {name} | {1000 * per:.2f} ms | {startup} |")
    return lines


def dependency_size() -> str:
    total = 0
    for dist in ("scikit-learn", "scipy", "numpy", "joblib", "threadpoolctl"):
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            return "scikit-learn not installed (pip install -e '.[bench]' to compare it)"
        total += sum(path.stat().st_size for path in (Path(f.locate()) for f in files) if path.exists())
    return f"scikit-learn with numpy, scipy, joblib, threadpoolctl: {total / 1e6:.0f} MB installed"


def training_rows(path: Path) -> list[str]:
    """The packaged copy of the tuning corpus: the fields the model reads, one JSON object a line."""
    keys = ("label", "text", "email", "company", "title")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [json.dumps({k: row[k] for k in keys}, ensure_ascii=False) for row in rows]


def write_training_data() -> None:
    target = ROOT / "rules" / TRAINING_DATA
    target.write_text("\n".join(training_rows(DATA / "corpus.jsonl")) + "\n", encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--errors", choices=("corpus", *HELD_OUT), help="list the chosen method's mistakes")
    parser.add_argument("--method", default="rules+nb", help="the method --errors lists (default: rules+nb)")
    parser.add_argument("--quick", action="store_true", help="skip cross-validation and the cost figures")
    parser.add_argument(
        "--write-training-data", action="store_true", help=f"copy the tuning corpus to rules/{TRAINING_DATA}"
    )
    args = parser.parse_args()
    if args.write_training_data:
        write_training_data()
        return
    corpus = load(DATA / "corpus.jsonl")
    held = {name: load(DATA / f"{name}.jsonl") for name in HELD_OUT}
    everything = corpus + [e for examples in held.values() for e in examples]
    non_en = sum(e.lang not in ("en", "xx") for e in everything)
    sizes = ", ".join(f"{len(examples)} in {name}" for name, examples in held.items())
    print(f"corpus: {len(corpus)} to tune on; held out: {sizes}; {pct(non_en / len(everything))} not English")
    print(f"labels (tuning): {dict(Counter(e.label for e in corpus))}")
    for name, examples in held.items():
        print(f"labels ({name}): {dict(Counter(e.label for e in examples))}")
    print()
    cv_rows: list[tuple[str, Metrics]] = []
    held_rows: dict[str, list[tuple[str, Metrics]]] = {name: [] for name in HELD_OUT}
    predictions: dict[str, dict[str, list[Label]]] = {}
    for method, fit in METHODS.items():
        if fit is None:
            continue
        predictions[method] = {}
        if not args.quick:
            cv, predictions[method]["corpus"] = cross_validate(fit, corpus)
            cv_rows.append((method, cv))
        classify = fit(corpus)
        for name, examples in held.items():
            predicted = [classify(e.submission) for e in examples]
            predictions[method][name] = predicted
            held_rows[name].append((method, metrics([e.label for e in examples], predicted)))
    if cv_rows:
        print(f"## Cross-validated ({FOLDS} folds over the {len(corpus)}-example tuning corpus)\n")
        print(summary_table(cv_rows) + "\n")
    for name, examples in held.items():
        print(f"## Held out: {name} ({len(examples)} examples never tuned on; methods fitted on the tuning corpus)\n")
        print(summary_table(held_rows[name]) + "\n")
    for method in ("keywords", "rules", "rules+nb, no gate", "rules+nb"):
        if method not in predictions:
            continue
        splits = (["cross-validated"] if cv_rows else []) + list(held)
        print(f"### Confusion, {method}: " + ", then ".join(splits) + "\n")
        if cv_rows:
            print(confusion_table(dict(cv_rows)[method]) + "\n")
        for name, examples in held.items():
            print(confusion_table(dict(held_rows[name])[method]) + "\n")
            print(f"{name} by tag: {by_tag(examples, predictions[method][name])}\n")
    if not args.quick:
        print("## Cost\n")
        print("\n".join(timing(corpus)) + "\n")
        print(dependency_size())
        print(f"rules (tuned) on the whole tuning corpus: {vars(choose_thresholds(corpus))}")
        hybrid = choose_hybrid(corpus)
        print(f"rules+nb (tuned) on the whole tuning corpus: weight {hybrid.weight}, {vars(hybrid.rules)}")
    if args.errors:
        examples = corpus if args.errors == "corpus" else held[args.errors]
        predicted = predictions[args.method].get(args.errors, [])
        print(f"\n## Mistakes of {args.method} ({args.errors})\n")
        for e, p in zip(examples, predicted, strict=True):
            if e.label != p:
                print(f"{e.id} {e.label} -> {p}: {e.submission.text[:140]!r}")


if __name__ == "__main__":
    main()
