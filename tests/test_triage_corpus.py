"""The labelled triage corpus (tests/data/triage/) is what the issue asks for, and the package ships
the tuning part of it unchanged for the model to train on."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.triage import LABELS
from rules.triage_model import packaged_examples

DATA = Path(__file__).resolve().parent / "data" / "triage"
KEYS = {"id", "label", "lang", "tags", "text", "email", "company", "title", "employees"}
TAG_LIST = (
    "empty terse polite_support agency_pitch injection gibberish test upgrade billing bug howto access privacy outage "
    "mixed partnership reseller student job_seeker recruiter link_building crypto security migration procurement "
    "typos long"
)
TAGS = set(TAG_LIST.split())


def rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


CORPUS = rows("corpus.jsonl")
HELDOUT = rows("heldout.jsonl")
# A second held-out set, written later in other voices and languages before any change it measures.
FRESH = rows("fresh.jsonl")
EVERYTHING = CORPUS + HELDOUT + FRESH


def test_triage_corpus_has_at_least_400_submissions_and_a_held_out_split() -> None:
    assert len(EVERYTHING) >= 400
    assert len(CORPUS) >= 300
    assert len(HELDOUT) >= 100
    assert len(FRESH) >= 100


@pytest.mark.parametrize("row", EVERYTHING, ids=lambda r: str(r["id"]))
def test_triage_corpus_rows_are_well_formed(row: dict[str, Any]) -> None:
    assert set(row) == KEYS
    assert row["label"] in LABELS
    assert isinstance(row["text"], str)
    assert all(isinstance(row[k], str) for k in ("email", "company", "title", "lang"))
    assert row["employees"] is None or isinstance(row["employees"], int)
    assert isinstance(row["tags"], list) and set(row["tags"]) <= TAGS


def test_triage_corpus_ids_are_unique_and_no_text_is_in_two_splits() -> None:
    assert len({r["id"] for r in EVERYTHING}) == len(EVERYTHING)
    splits = [{str(r["text"]) for r in split if str(r["text"]).strip()} for split in (CORPUS, HELDOUT, FRESH)]
    for i, one in enumerate(splits):
        for other in splits[i + 1 :]:
            assert one & other == set()


@pytest.mark.parametrize("split", [CORPUS, HELDOUT, FRESH], ids=["corpus", "heldout", "fresh"])
def test_triage_corpus_has_every_label_in_a_real_share(split: list[dict[str, object]]) -> None:
    counts = Counter(r["label"] for r in split)
    assert all(counts[label] >= 0.25 * len(split) for label in LABELS), counts


def test_triage_corpus_is_at_least_15_percent_not_english_in_the_languages_promised() -> None:
    languages = Counter(str(r["lang"]) for r in EVERYTHING)
    non_english = sum(n for lang, n in languages.items() if lang not in ("en", "xx"))
    assert non_english >= 0.15 * len(EVERYTHING)
    for lang in ("de", "fr", "es", "pt", "it", "nl", "ja", "zh"):
        assert languages[lang] >= 5, lang
    # Non-English text in every label, not only in one.
    for label in LABELS:
        assert sum(1 for r in EVERYTHING if r["label"] == label and r["lang"] not in ("en", "xx")) >= 15, label


@pytest.mark.parametrize(
    ("tag", "label"),
    [
        ("empty", "sales"),
        ("empty", "spam"),
        ("terse", "sales"),
        ("polite_support", "support"),
        ("agency_pitch", "spam"),
        ("injection", "spam"),
        ("gibberish", "spam"),
        ("test", "spam"),
        ("upgrade", "sales"),
        ("billing", "support"),
        ("mixed", "sales"),
        ("mixed", "support"),
        ("reseller", "sales"),
        ("partnership", "spam"),
        ("student", "spam"),
        ("job_seeker", "spam"),
        ("recruiter", "spam"),
        ("privacy", "support"),
        ("access", "support"),
        ("outage", "support"),
        ("security", "sales"),
    ],
)
def test_triage_corpus_holds_every_hard_case_several_times(tag: str, label: str) -> None:
    assert sum(1 for r in EVERYTHING if tag in r["tags"] and r["label"] == label) >= 3


def test_triage_corpus_injection_is_written_in_several_languages() -> None:
    languages = {r["lang"] for r in EVERYTHING if "injection" in r["tags"]}
    assert len(languages) >= 6


def test_triage_packaged_training_data_is_the_tuning_corpus() -> None:
    """`make triage-data` keeps rules/triage_train.jsonl equal to the corpus; the held-out split is never in it."""
    packaged = packaged_examples()
    assert [(s.text, s.email, s.company, s.title, label) for s, label in packaged] == [
        (r["text"], r["email"], r["company"], r["title"], r["label"]) for r in CORPUS
    ]
    assert not {s.text for s, _ in packaged if s.text.strip()} & {str(r["text"]) for r in HELDOUT + FRESH}
