"""The rule half of the offline demo-form triage: hard rules, then weighed evidence.

`RuleTriage` reads the evidence listed in `rules.triage_lexicon` in fourteen languages, plus the
shape of the text (empty, gibberish, a test, an attempt to dictate the label) and the lead fields
(a fake email, a placeholder company, a recruiter's title).

The labels follow tests/data/triage/GUIDE.md. The costs behind the decisions: a support request or
a pitch handed to a rep is the failure issue #15 measured, and a real prospect labelled support
still reaches a person through the support ticket, so on equal evidence support wins over sales;
a prospect labelled spam is dropped, so spam needs evidence of its own and outweighs sales only
when the pitch is plain.

It never raises on any text (Hypothesis checks huge, empty, control-character and lone-surrogate
input) and keeps no state between calls.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

with warnings.catch_warnings():
    # The standard library's own parser of regular expressions (`re._parser`, typed under its old
    # public name): it tells the strings every match of a lexicon pattern must contain.
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_constants as _sre
    import sre_parse

from core.triage import LABELS, Label, Submission, Triage
from rules.triage_lexicon import INJECTION, SIGNALS, Signal

__all__ = ["MAX_TEXT", "OWNER_MAX_AGAINST", "OWNER_MIN_SALES", "RuleTriage", "Scores", "fold"]

# Longer form texts are cut before matching: every signal shows in the first few thousand
# characters of a genuine submission, and the cut bounds the time a hostile one can cost.
MAX_TEXT = 8_000


# The owner gate (`RuleTriage.review`): a submission is given a sales owner only when its text shows
# at least this much sales evidence ("asks for a demo" alone is 1.5)...
OWNER_MIN_SALES = 1.0
# ...and its support and spam evidence in the text stays below this share of the sales evidence.
OWNER_MAX_AGAINST = 0.5


# --------------------------------------------------------------------------- text folding

_LATIN_EXTRA = str.maketrans({"ł": "l", "ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ı": "i", "ß": "ss", "’": "'"})


@functools.lru_cache(maxsize=16)
def fold(text: str) -> str:
    """Text as the patterns see it: NFKC (full-width letters become ASCII), casefolded, accents
    removed from Latin letters only (Japanese kana keep their marks), curly apostrophes straight.

    Remembered for the last few texts: a classification folds its submission's text four times
    (the hard rules, the weighed evidence, the terse check, the model's features), ~20 µs each
    for a paragraph with one accent."""
    text = text[:MAX_TEXT]
    if text.isascii():
        # Nothing in ASCII has a compatibility form or an accent, and its casefold is its lower.
        return text.lower()
    text = unicodedata.normalize("NFKC", text).casefold().translate(_LATIN_EXTRA)
    return _ACCENTED_LATIN.sub(_unaccented, text)


_ACCENTED_LATIN = re.compile("[\u00c0-\u024f]")  # Latin-1 Supplement to Latin Extended-B


def _unaccented(match: re.Match[str]) -> str:
    """The letter without its accent: the first character of its decomposition."""
    return unicodedata.normalize("NFKD", match.group())[0]


# `\b` in a lexicon pattern: a boundary between an ASCII letter or digit and anything else, so
# "seo" matches in "SEO対策" but not in "Seoul".
_BOUNDARY = r"(?:(?<![a-z0-9])(?=[a-z0-9])|(?<=[a-z0-9])(?![a-z0-9]))"


# The same boundary where one side is known to be a letter or digit: before a literal one (or a
# group each of whose branches starts with one) only the left side is left to test, after one (or
# a group each of whose branches ends with one) only the right side.
_BEFORE_ALNUM = r"(?<![a-z0-9])"
_AFTER_ALNUM = r"(?![a-z0-9])"
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_INLINE_FLAGS = re.compile(r"\(\?[aiLmsux-]+[:)]")
_OPTIONAL = ("?", "*", "{")  # what after an item can make it optional (`{` conservatively: `{0,2}`)
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}  # the digits after `\\x`, `\\u`, `\\U`


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(_with_boundaries(pattern))


def _with_boundaries(pattern: str) -> str:
    """`pattern` with each `\b` spelled as `_BOUNDARY`, or as the half of it that can still fail
    where the pattern itself puts a letter or digit on one side: `\bvirtual` is
    `(?<![a-z0-9])virtual`, `(sla|rbac)\b` is `(sla|rbac)(?![a-z0-9])`. The same matches (tests/
    test_triage.py compares both over the corpus and random text), ~3 times faster to search: the
    two-sided assertion, tried at every position of the text, was most of a lexicon search.

    Only what is certain is simplified: a literal (not an escape, not in a class, not optional),
    a plain or non-capturing group whose every branch qualifies, an optional literal or group
    after something that qualifies (never a lookaround or a named group); a pattern with an
    inline flag keeps every full boundary."""
    if _INLINE_FLAGS.search(pattern):  # `(?i)` would let `A` match an `a`: not analysed
        return pattern.replace(r"\b", _BOUNDARY)
    shape = _Shape(pattern)
    spelled: list[str] = []
    done = 0
    for at in shape.boundaries():
        spelled.append(pattern[done:at])
        spelled.append(_BEFORE_ALNUM if shape.starts(at + 2) else _AFTER_ALNUM if shape.ends(at - 1) else _BOUNDARY)
        done = at + 2
    spelled.append(pattern[done:])
    return "".join(spelled)


class _Shape:
    """What a regular expression's source says about its characters: whether each is the pattern's
    own syntax or a literal (`plain`; False for an escape, every character of `\\x41`, `\\u...`,
    `\\N{...}` or a back reference included, and for a character class whole) and where each group
    opens and closes."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.plain = [True] * len(pattern)
        self.closing: dict[int, int] = {}  # a group's closing index by its opening one
        opened: list[int] = []
        i, in_class = 0, False
        while i < len(pattern):
            c = pattern[i]
            if c == "\\":
                i = self._escape(i)
                continue
            if in_class:
                self.plain[i] = False
                in_class = c != "]"
            elif c == "[":
                i = self._class_start(i)
                in_class = True
                continue
            elif c == "(":
                opened.append(i)
            elif c == ")" and opened:
                self.closing[opened.pop()] = i
            i += 1
        self.opening = {close: start for start, close in self.closing.items()}

    def _escape(self, i: int) -> int:
        """Mark the escape at `i` not plain; the index after it."""
        pattern = self.pattern
        end, kind = i + 2, pattern[i + 1 : i + 2]
        if kind in _HEX_DIGITS:
            end += _HEX_DIGITS[kind]
        elif kind == "N":
            end = pattern.find("}", i) + 1 or len(pattern)
        elif kind.isdigit():
            while end < len(pattern) and pattern[end].isdigit():
                end += 1
        end = min(end, len(pattern))
        self.plain[i:end] = [False] * (end - i)
        return end

    def _class_start(self, i: int) -> int:
        """Mark the start of the class at `i` not plain: `[`, a `^`, and a `]` first in it (a
        member, not its end); the index after them."""
        end = i + 1
        for first in ("^", "]"):
            if self.pattern.startswith(first, end):
                end += 1
        self.plain[i:end] = [False] * (end - i)
        return end

    def boundaries(self) -> list[int]:
        """Where each `\b` starts (a backslash that escapes, then `b`)."""
        pattern = self.pattern
        found, at = [], pattern.find("\\b")
        while at >= 0:
            before = len(pattern[:at]) - len(pattern[:at].rstrip("\\"))
            if before % 2 == 0:
                found.append(at)
            at = pattern.find("\\b", at + 2)
        return found

    def _item_end(self, i: int) -> int:
        """The index after the item starting at `i` (a character or a group)."""
        return self.closing[i] + 1 if self.pattern[i] == "(" and i in self.closing else i + 1

    def _branches(self, start: int) -> list[tuple[int, int]] | None:
        """The (start, end) of each branch of the group `(...)` or `(?:...)` opening at `start`;
        None for any other group (a lookaround matches nothing itself, a named group is not
        analysed) and for one with an empty branch."""
        pattern, close = self.pattern, self.closing.get(start)
        if close is None or (pattern.startswith("?", start + 1) and not pattern.startswith("?:", start + 1)):
            return None
        body = start + 1 + (2 if pattern.startswith("?:", start + 1) else 0)
        cuts, depth = [body - 1], 0
        for j in range(body, close):
            if self.plain[j]:
                depth += (pattern[j] == "(") - (pattern[j] == ")")
                if depth == 0 and pattern[j] == "|":
                    cuts.append(j)
        cuts.append(close)
        parts = [(a + 1, b) for a, b in itertools.pairwise(cuts)]
        return None if any(a >= b for a, b in parts) else parts

    def starts(self, i: int) -> bool:
        """Whether whatever matches from index `i` begins with a letter or digit."""
        pattern = self.pattern
        if not (0 <= i < len(pattern) and self.plain[i]):
            return False
        if pattern[self._item_end(i) : self._item_end(i) + 1] in _OPTIONAL:
            return False
        if pattern[i] in _ALNUM:
            return True
        parts = self._branches(i) if pattern[i] == "(" else None
        return parts is not None and all(self.starts(a) for a, _ in parts)

    def ends(self, i: int) -> bool:
        """Whether whatever matches up to and including index `i` ends with a letter or digit."""
        pattern = self.pattern
        if not (0 <= i < len(pattern) and self.plain[i]):
            return False
        if pattern[i] in ("?", "*") and i >= 1:  # an optional item: it, or what comes before it
            item = self.opening.get(i - 1, i - 1) if pattern[i - 1] == ")" else i - 1
            return self.ends(i - 1) and self.ends(item - 1)
        if pattern[i] in _ALNUM:
            return True
        parts = self._branches(self.opening[i]) if pattern[i] == ")" and i in self.opening else None
        return parts is not None and all(self.ends(b - 1) for _, b in parts)


def _needs(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """Strings one of which every match of `pattern` contains (`("",)`: none known). Searching a text
    that holds none of them cannot match, so `_signal_evidence` skips it: a cheap substring test
    instead of a regex search for nearly every pattern (there are hundreds, and most start with a
    boundary assertion that keeps the regex engine from scanning for a literal prefix). Derived from
    the parsed pattern, never guessed; anything not understood here gives no requirement."""
    if pattern.flags & re.IGNORECASE:
        return ("",)
    try:
        parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    except (re.error, ValueError, TypeError):  # pragma: no cover - a compiled pattern parses
        return ("",)
    return _needs_in(parsed.data) or ("",)


def _needs_in(items: Sequence[tuple[Any, Any]]) -> tuple[str, ...] | None:
    """The most selective requirement of a sequence of parsed items: a run of literal characters,
    or the requirement of a group, an alternation (one per branch) or a repeat of at least one."""
    found: list[tuple[str, ...]] = []
    run: list[str] = []
    for op, value in items:
        if op is _sre.LITERAL:
            run.append(chr(value))
            continue
        if run:
            found.append(("".join(run),))
            run = []
        need = _needs_of(op, value)
        if need is not None:
            found.append(need)
    if run:
        found.append(("".join(run),))
    return max(found, key=lambda need: (min(map(len, need)), -len(need)), default=None)


def _needs_of(op: Any, value: Any) -> tuple[str, ...] | None:
    """The requirement of one parsed item that is not a literal character (None: none)."""
    if op is _sre.SUBPATTERN:
        _group, add_flags, _del_flags, inner = value
        return None if add_flags & re.IGNORECASE else _needs_in(inner.data)
    if op is _sre.BRANCH:
        branches = [_needs_in(branch.data) for branch in value[1]]
        if any(branch is None for branch in branches):
            return None
        return tuple(dict.fromkeys(need for branch in branches if branch is not None for need in branch))
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and value[0] >= 1:
        return _needs_in(value[2].data)
    return None


@dataclass(frozen=True)
class _Compiled:
    signal: Signal
    patterns: tuple[re.Pattern[str], ...]
    needs: tuple[tuple[str, ...], ...]  # per pattern: what a text must contain to match it (`_needs`)


def _compiled(signal: Signal) -> _Compiled:
    patterns = tuple(_compile(p) for p in signal.patterns)
    return _Compiled(signal, patterns, tuple(_needs(p) for p in patterns))


@functools.cache
def _signals() -> tuple[_Compiled, ...]:
    """The lexicon's patterns, compiled when a submission is first classified, not when the module
    is imported: a cycle with nothing to classify (its verdicts kept, `sync.verdicts`) never needs
    them, and compiling them is most of the import's cost."""
    return tuple(_compiled(s) for s in SIGNALS)


_GRAM = 3  # the length of the text's substrings the needs are looked up by (`_NeedIndex`)


@dataclass(frozen=True)
class _NeedIndex:
    """Every pattern's needs (`_needs`) by their first `_GRAM` characters, so that the patterns whose
    substring test passes are found from the text's own `_GRAM`-grams instead of by testing each
    of the lexicon's ~1,400 needs against the text: a need occurs in a text only if its first
    `_GRAM` characters are one of the text's `_GRAM`-grams, and each need found so is still tested
    with `in`, so the patterns found are exactly those with a need in the text. Patterns are
    numbered in the lexicon's order (signal by signal, pattern by pattern)."""

    by_gram: dict[str, tuple[tuple[str, int], ...]]
    short: tuple[tuple[str, int], ...]  # needs shorter than `_GRAM` characters, tested one by one
    patterns: tuple[tuple[int, re.Pattern[str]], ...]  # per number: its signal's place and the pattern

    def possible(self, folded: str) -> list[int]:
        """The numbers of the patterns one of whose needs `folded` contains, in ascending order."""
        found = {number for need, number in self.short if need in folded}
        grams = {folded[i : i + _GRAM] for i in range(len(folded) - _GRAM + 1)}
        by_gram = self.by_gram
        for gram in grams.intersection(by_gram):
            found.update(number for need, number in by_gram[gram] if number not in found and need in folded)
        return sorted(found)


def _index_needs(entries: Iterable[tuple[int, re.Pattern[str], tuple[str, ...]]]) -> _NeedIndex:
    """The `_NeedIndex` of (place, pattern, its `_needs`) entries, numbered in the order given."""
    by_gram: dict[str, list[tuple[str, int]]] = {}
    short: list[tuple[str, int]] = []
    patterns: list[tuple[int, re.Pattern[str]]] = []
    for place, pattern, needs in entries:
        number = len(patterns)
        patterns.append((place, pattern))
        for need in needs:
            if len(need) < _GRAM:
                short.append((need, number))
            else:
                by_gram.setdefault(need[:_GRAM], []).append((need, number))
    return _NeedIndex({g: tuple(n) for g, n in by_gram.items()}, tuple(short), tuple(patterns))


@functools.cache
def _need_index() -> _NeedIndex:
    """The lexicon's patterns by their needs; a pattern's place is its signal's in `_signals()`."""
    return _index_needs(
        (place, pattern, needs)
        for place, compiled in enumerate(_signals())
        for pattern, needs in zip(compiled.patterns, compiled.needs, strict=True)
    )


@functools.cache
def _injection() -> _NeedIndex:
    """The patterns of text that tries to dictate the label, by their needs (place 0 for all)."""
    return _index_needs((0, pattern, _needs(pattern)) for pattern in map(_compile, INJECTION))


# --------------------------------------------------------------------------- shape of the text


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W\d_]+")
_KEYBOARD_ROWS = (
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "azertyuiop",
    "qsdfghjklm",
    "wxcvbn",
    "qwertzuiop",
    "yxcvbnm",
    "йцукенгшщзх",
    "фывапролджэ",
    "ячсмитьбю",
)
_MASHED = frozenset(
    run[i : i + 3] for row in ("asdfghjkl", "zxcvbnm") for run in (row, row[::-1]) for i in range(len(run) - 2)
)
_CONSONANTS = re.compile(r"[bcdfghjklmnpqrstvwxz]{6}")
_VOWELS = set("aeiouyаеёиоуыэюя")
# Words that show a text is language, in the languages the lexicon reads; a text made only of
# unknown, unpronounceable tokens is gibberish.
_COMMON = _words(
    """
    a an the and or but to of in on at for with from by as is are was be been we our us you your i my me it this
    that they their he she his her can could would will should do does did have has had not no yes please thanks
    thank hi hello hey dear team demo call pricing price product app website site company business need want like
    looking interested info information about some more help question when what how why where who which new
    analytics data users events contact meeting trial plan account feature features flags tool platform software
    der die das und ist wir sie ein eine fur mit nicht bitte danke hallo guten tag unser unsere ich
    le la les et est nous vous un une des pour avec pas bonjour merci je notre votre
    el los las y es nosotros un una para con por favor hola gracias nuestro su
    o os e eu nos um uma para com obrigado ola nosso
    il lo gli e siamo un una per con grazie ciao buongiorno nostro
    de het en is wij een voor met niet graag hoi hallo onze
    i och vi en ett att och hej
    """
)
_NONSENSE = _words("blah bla blabla foo bar baz qux xxx nothing nada idk lol asdf")
_LOREM = re.compile(r"\blorem ipsum\b")
_TEST = re.compile(
    r"^\W*(test|testing|teste|tester|prueba|probe|essai|prova)\W*(\d+\W*)*$"
    r"|\b(please (ignore|disregard)|do not contact|don't contact|ignore this|this is (just )?a test|test (submission|"
    r"message|lead|entry)|testing (the|our) (demo )?form|checking the \w+ sync|verifying the form|form integration|"
    r"uptime monitor|hello test|test test|(form|integration|staging|sandbox) test|test from)\b"
    r"|\btest(ing)?\b[^.\n]{0,30}\b(ignore|disregard)\b|\b(ignore|disregard)\b[^.\n]{0,30}\btest(ing)?\b"
)
_GREETINGS = _words("hi hello hey hallo hola ola bonjour ciao hej yo ok okay hoi salut test testing")
_FAKE_DOMAINS = _words(
    "example.com example.org example.net test.com mailinator.com guerrillamail.com yopmail.com tempmail.com "
    "10minutemail.com sharklasers.com trashmail.com"
)
_FREE_MAIL = _words(
    "gmail.com googlemail.com hotmail.com outlook.com live.com yahoo.com icloud.com aol.com gmx.de gmx.net web.de "
    "mail.ru yandex.ru protonmail.com proton.me qq.com 163.com 126.com naver.com"
)
_PLACEHOLDER_COMPANY = _words(
    "- -- . n/a na none (none) null test tester testing company example example inc asdf x xx xxx abc self "
    "private personal individual"
)


def _has_vowel(token: str) -> bool:
    return any(c in _VOWELS for c in token)


def _junk_token(token: str) -> bool:
    """A token no language would write: keyboard runs, short repeated syllables, no vowels."""
    if len(token) >= 4 and not _has_vowel(token) and not _CJK.search(token):
        return True
    if _CONSONANTS.search(token):
        return True
    for size in range(1, 5):
        unit = token[:size]
        if len(token) >= max(4, 2 * size) and len(token) % size == 0 and unit * (len(token) // size) == token:
            return True
    for row in _KEYBOARD_ROWS:
        for run in (row, row[::-1]):
            if any(token[i : i + 4] in run for i in range(len(token) - 3)):
                return True
    # Three keys in a row on the home or bottom row: no word of the languages read has them.
    if any(token[i : i + 3] in _MASHED for i in range(len(token) - 2)):
        return True
    return len(token) >= 6 and set(token) <= set("asdfghjkl")


def _junk(folded: str) -> str | None:
    """Why the text is gibberish, or None when it reads as language."""
    stripped = folded.strip()
    if _LOREM.search(stripped):
        return "lorem ipsum"
    if not any(c.isalpha() for c in stripped):
        return "no words"
    if _CJK.search(stripped):
        chars = [c for c in stripped if not c.isspace()]
        top = max(chars.count(c) for c in set(chars))
        return "one character repeated" if len(chars) >= 3 and top / len(chars) >= 0.6 else None
    tokens = _WORD.findall(stripped)
    if sum(len(t) for t in tokens) <= 2:
        return "no words"
    if all(t in _NONSENSE for t in tokens):
        return "filler words"
    if any(t in _COMMON for t in tokens):
        return None
    junk = [t for t in tokens if _junk_token(t)]
    if junk and len(junk) * 2 >= len(tokens):
        return "keyboard mashing"
    return _odd_letters(stripped, tokens)


def _odd_letters(text: str, tokens: list[str]) -> str | None:
    """Character statistics no language shows, for a text with no common word: eight or more Latin
    letters and not one vowel, or most longer tokens made of a few letters over and over
    ("hfhfhfh jdjdjd", "ölkjölkj"). Scripts without Latin vowels (Cyrillic, Greek, ...) are left alone."""
    latin = [c for c in text if "a" <= c <= "z"]
    if len(latin) >= 8 and not any(c in "aeiouy" for c in latin):
        return "no vowels"
    longer = [t for t in tokens if len(t) >= 5]
    if longer and 2 * sum(1 for t in longer if len(set(t)) <= 0.4 * len(t)) > len(longer):
        return "a few letters repeated"
    return None


def _domain(email: str) -> str:
    return email.rpartition("@")[2].strip().casefold()


def _fake_identity(submission: Submission) -> str | None:
    """Why the lead fields look invented (a test address, a placeholder company), or None."""
    email = submission.email.strip().casefold()
    domain = _domain(email)
    local = email.partition("@")[0]
    company = submission.company.strip().casefold()
    if domain in _FAKE_DOMAINS or domain.endswith((".test", ".local", ".invalid", ".example")):
        return f"a test email domain ({domain})"
    stem = domain.partition(".")[0]
    if email and "@" in email and (len(stem) <= 1 or (len(local) >= 2 and local == stem)):
        return f"an invented email ({email})"
    if company in _PLACEHOLDER_COMPANY or (company and _junk(fold(company))):
        return f"a placeholder company ({submission.company.strip()!r})"
    return None


def _real_company(submission: Submission) -> bool:
    return bool(submission.company.strip()) and _fake_identity(submission) is None


# --------------------------------------------------------------------------- lead-field priors

_SPAMMY_TITLE = _compile(
    r"\b(recruit\w*|talent|seo|outreach|link|affiliate|sponsorship|booking agent|business develop\w*|bizdev|"
    r"bussiness|account executive|sales (director|manager|executive)|partnerships?|growth hacker|"
    r"social media|aso|funding advisor|ejecutivo comercial|vertrieb\w*|営業|商务|客服|accountmanager|"
    r"business developer)\b"
)
_STUDENT_TITLE = _compile(r"\b(student|phd|etudiant\w*|estudiante|studente|intern|学生)\b")
_SPAMMY_COMPANY = _compile(
    r"\b(agency|seo|leads?|lead ?gen|outsourc\w*|staffing|recruit\w*|talent\w*|web ?design|webdesign|"
    r"software house|devs|marketing|media|digital|contact lists?|data pros|experts|agence|agencia|agenzia)\b"
)
_STUDENT_EMAIL = re.compile(r"(\.edu|\.ac\.[a-z]{2}|[@.](student|students|etu|stud)[.])")


@dataclass(frozen=True)
class _Evidence:
    label: Label
    score: float
    says: str
    found: tuple[str, ...]
    from_fields: bool = False  # from the lead fields (title, company, email), not the text


def _field_evidence(submission: Submission) -> list[_Evidence]:
    found: list[_Evidence] = []
    title = fold(submission.title)
    company = fold(submission.company)
    email = submission.email.strip().casefold()
    if hit := _SPAMMY_TITLE.search(title):
        found.append(_Evidence("spam", 0.75, "sender's title", (hit.group(0),), True))
    if hit := _STUDENT_TITLE.search(title):
        found.append(_Evidence("spam", 1.5, "sender is a student", (hit.group(0),), True))
    if _STUDENT_EMAIL.search(email):
        found.append(_Evidence("spam", 1.0, "student email", (_domain(email),), True))
    if hit := _SPAMMY_COMPANY.search(company):
        found.append(_Evidence("spam", 0.5, "sender's company", (hit.group(0),), True))
    if not submission.company.strip() and _domain(email) in _FREE_MAIL:
        found.append(_Evidence("spam", 0.75, "free email and no company", (_domain(email),), True))
    return found


def _links(folded: str) -> int:
    return len(re.findall(r"https?://|www\.|\b[a-z0-9-]+\.(?:com|io|net|co|me|xyz|org|pro|agency|media)/\S", folded))


# --------------------------------------------------------------------------- the classifier


def _signal_evidence(folded: str) -> list[_Evidence]:
    # The substring test first (`_NeedIndex`): the search only where a match is possible.
    index = _need_index()
    hits_by_place: dict[int, list[str]] = {}
    for number in index.possible(folded):
        place, pattern = index.patterns[number]
        if match := pattern.search(folded):
            hits_by_place.setdefault(place, []).append(match.group(0).strip())
    found: list[_Evidence] = []
    signals = _signals()
    for place in sorted(hits_by_place):  # the lexicon's order, as the evidence has always come
        signal, hits = signals[place].signal, hits_by_place[place]
        # More distinct patterns of one kind add a little, up to double: "error", "since
        # yesterday" and "not loading" together are stronger than one, not three times.
        score = signal.weight * (1 + 0.25 * (min(len(hits), 5) - 1))
        found.append(_Evidence(signal.label, score, signal.says, tuple(dict.fromkeys(hits))))
    return found


def _quote(found: Iterable[str], limit: int = 3) -> str:
    shown = [f"'{_printable(f)[:40]}'" for f in list(found)[:limit]]
    return ", ".join(shown)


# Spelled with chr(): mypyc (`make compiled`) refuses surrogate code points in string literals.
_SURROGATE_LOW, _SURROGATE_HIGH = chr(0xD800), chr(0xDFFF)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() and not (_SURROGATE_LOW <= c <= _SURROGATE_HIGH) else "?" for c in text)


def _reason(label: Label, evidence: list[_Evidence], against: list[_Evidence]) -> str:
    mine = sorted((e for e in evidence if e.label == label), key=lambda e: -e.score)
    parts = [f"{e.says} ({_quote(e.found)})" for e in mine[:2]] or [f"no {label} phrase found, the model's reading"]
    text = f"{label}: " + "; ".join(parts)
    if against:
        strongest = max(against, key=lambda e: e.score)
        text += f"; outweighs {strongest.label} ({strongest.says})"
    return text


def _confidence(top: float, rest: float) -> float:
    """A heuristic in [0.5, 0.99]: the winner's share of the evidence, pulled towards 0.5 when there is little."""
    share = top / (top + rest + 1.0)
    return round(min(0.99, 0.5 + share / 2), 2)


@dataclass(frozen=True)
class Scores:
    """The summed evidence for each label, with the evidence itself (the bench and the hybrid read it)."""

    sales: float
    support: float
    spam: float
    evidence: tuple[_Evidence, ...]
    spam_in_text: float = 0.0  # the spam evidence in the text alone

    def of(self, label: Label) -> float:
        return {"sales": self.sales, "support": self.support, "spam": self.spam}[label]


class RuleTriage:
    """The built-in offline triage: hard rules for what never needs weighing, then weighed evidence.

    In order: text that tries to dictate the label is spam; an empty or greeting-only text is sales
    from a real company and spam otherwise; gibberish and test submissions are spam; then the
    evidence for each label is summed (`rules.triage_lexicon.SIGNALS` plus the lead fields) and
    spam wins with a plain pitch (at least `spam_min`, some of it in the text, and at least
    `spam_over_sales` times the sales evidence), support wins with at least `support_min` and at
    least `support_over_sales` times the sales evidence, and everything else is sales (the form
    exists to book demos) if it passes the owner gate (`review`): at least `owner_min_sales` of
    sales evidence in the text, and support and spam evidence in the text below
    `owner_max_against` times it; what fails the gate is support, "needs review".

    The defaults were chosen by measurement (bench/triage.py, docs/triage.md): both ratios below 1
    because a support request or a pitch given to a rep costs more than a prospect sent to support.
    """

    def __init__(
        self,
        spam_min: float = 1.5,
        spam_over_sales: float = 0.5,
        support_min: float = 1.0,
        support_over_sales: float = 0.6,
        owner_min_sales: float = OWNER_MIN_SALES,
        owner_max_against: float = OWNER_MAX_AGAINST,
    ) -> None:
        self.spam_min = spam_min
        self.spam_over_sales = spam_over_sales
        self.support_min = support_min
        self.support_over_sales = support_over_sales
        self.owner_min_sales = owner_min_sales
        self.owner_max_against = owner_max_against

    def hard(self, submission: Submission) -> Triage | None:
        """The verdicts no weighing can change (injection, empty, gibberish, test), or None."""
        text = submission.text[:MAX_TEXT]
        folded = fold(text)
        injection = _injection()
        for number in injection.possible(folded):  # the patterns in order, those that cannot match skipped
            if match := injection.patterns[number][1].search(folded):
                return Triage("spam", 0.97, f"spam: tries to dictate the label ({_quote([match.group(0)])})")
        tokens = _WORD.findall(folded)
        greeting_only = bool(tokens) and all(t in _GREETINGS for t in tokens) and len(tokens) <= 3
        if not folded.strip() or (greeting_only and not _TEST.search(folded)):
            what = "no form text" if not folded.strip() else "a greeting only"
            if _real_company(submission):
                return Triage("sales", 0.8, f"sales: {what}, from {_printable(submission.company.strip())[:60]}")
            fake = _fake_identity(submission) or "no company given"
            return Triage("spam", 0.8, f"spam: {what} and {fake}")
        if _TEST.search(folded):
            return Triage("spam", 0.9, f"spam: a test submission ({_quote([_TEST.search(folded).group(0)])})")  # type: ignore[union-attr]
        if why := _junk(folded):
            return Triage("spam", 0.9, f"spam: gibberish ({why})")
        return None

    def scores(self, submission: Submission) -> Scores:
        folded = fold(submission.text)
        evidence = _signal_evidence(folded) + _field_evidence(submission)
        links = _links(folded)
        if links >= 3:
            evidence.append(_Evidence("spam", 2.0, "many links", (f"{links} links",)))
        totals = {label: sum(e.score for e in evidence if e.label == label) for label in LABELS}
        in_text = sum(e.score for e in evidence if e.label == "spam" and not e.from_fields)
        return Scores(totals["sales"], totals["support"], totals["spam"], tuple(evidence), in_text)

    def classify(self, submission: Submission) -> Triage:
        if verdict := self.hard(submission):
            return verdict
        scores = self.scores(submission)
        return self.weigh(scores)

    def weigh(self, scores: Scores) -> Triage:
        evidence = list(scores.evidence)
        sales, support, spam = scores.sales, scores.support, scores.spam
        # The lead fields (a student's address, a recruiter's title) weigh against sales, never
        # against a support request the text makes: a student with a bug is a user.
        if spam >= self.spam_min and 0 < scores.spam_in_text >= support and spam >= self.spam_over_sales * sales:
            against = [e for e in evidence if e.label != "spam"]
            return Triage("spam", _confidence(spam, sales + support), _reason("spam", evidence, against))
        if support >= self.support_min and support >= self.support_over_sales * sales:
            against = [e for e in evidence if e.label == "sales"]
            return Triage("support", _confidence(support, sales + spam), _reason("support", evidence, against))
        if review := self.review(evidence):
            return review
        against = [e for e in evidence if e.label != "sales"]
        return Triage("sales", _confidence(sales, support + spam), _reason("sales", evidence, against))

    def review(self, evidence: list[_Evidence]) -> Triage | None:
        """The owner gate: a submission that would go to sales but whose text shows too little sales
        evidence, or sales evidence contested by support or spam evidence in the text, is labelled
        support and marked "needs review" (a person reads the ticket before anyone is given it).

        Only the text's own evidence counts here, never the model's probabilities (naive Bayes is
        sure of itself on words it has never seen) nor the lead fields: an owner is given for what
        the submitter wrote.
        """
        sales = [e for e in evidence if e.label == "sales"]
        against = [e for e in evidence if e.label != "sales" and not e.from_fields]
        for_sales = sum(e.score for e in sales)
        contested = sum(e.score for e in against)
        if for_sales < self.owner_min_sales:
            if against:
                weak = max(against, key=lambda e: e.score)
                found = f"only {weak.label} evidence ({weak.says}: {_quote(weak.found, 2)})"
            else:
                found = "no sales evidence in the text"
            return Triage("support", 0.5, f"support: needs review, {found}; no owner until a person has read it")
        if contested and contested >= self.owner_max_against * for_sales:
            strongest = max(against, key=lambda e: e.score)
            return Triage(
                "support",
                0.5,
                f"support: needs review, {_reason('sales', evidence, [])[7:]}, but also {strongest.label} evidence "
                f"({strongest.says}: {_quote(strongest.found, 2)}); no owner until a person has read it",
            )
        return None
