"""Anchors: the identifiers a question names (a version, a year, a date, a numbered article or PEP),
and whether an answer unit is about them.

A question that names one thing among near-identical siblings ("Python 3.13", "the 2025 term
election", "Article 12", "the May 2024 draft") is answered by a unit about *that* thing: its
identifier is in the unit itself, in a heading above it or in its document's title. A unit about a
sibling ("3.11", "2024") is not an answer, however similar its wording, and when no unit read is
about the thing named the corpus most likely does not say (a "3.16" schedule that the corpus lacks).

Only identifiers are anchors: they are exact by nature (3.12 is not 3.13). Names and other words are
left to retrieval and the scores, which already weigh them and allow paraphrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# 3.12, 3.12.0, v2.1, 1.1.1 (a version or a numbered section); not a decimal inside a longer number
# (a decimal is not one: "0.05", "2.5%", "1.5 times")
_VERSION = re.compile(r"(?<![\w.,])v?((?!0\.)\d+(?:\.\d+)+)(?![\w%]|\.\d|\s*(?:%|percent|per cent|times|fold)\b)")
_ISO_DATE = re.compile(r"(?<![\w-])(\d{4}-\d\d(?:-\d\d)?)(?![\w-])")
_YEAR = re.compile(r"(?<![\w.,/-])(1[6-9]\d\d|20\d\d)(?![\w.,/]\d|\w)")
# a numbered part of a document or a numbered document: "Article 12", "Chapter 3", "PEP 570", "RFC 9110".
# Only these labels: elsewhere a name with a number is nomenclature that texts write many ways ("BRCA 1" is
# "BRCA1", "type 1 diabetes" is "T1D"), which cost SciFact queries their documents when it was an anchor
_LABELS = ("article|section|chapter|part|clause|rule|annex|appendix|schedule|table|figure|item|paragraph|"
           "title|volume|amendment|regulation|directive|order|decree|law|act|step|phase|stage|level|tier|"
           "version|release|pep|rfc|iso|no")
_LABELLED = re.compile(rf"\b({_LABELS})\.?\s+(?:No\.\s*)?(\d{{1,5}})(?![\w.,]\d|\w|-\d)", re.I)
# numbers in the text that an anchor can be matched by: versions, dates and plain integers
_NUMBERS = re.compile(r"(?<![\w.])\d+(?:[.-]\d+)*(?![\w])")


@dataclass(frozen=True)
class Anchor:
    text: str  # as the question writes it ("3.13", "2025", "PEP 570")
    kind: str  # "version", "date", "year" or "number" (a labelled number)
    value: str  # what is matched: "3.13", "2025-10-02", "2025", "570"


def anchors(question: str) -> list[Anchor]:
    """The identifiers the question names, in order, without repeats."""
    out: dict[str, Anchor] = {}
    taken: list[tuple[int, int]] = []

    def add(m: re.Match, kind: str, value: str) -> None:
        if any(s < m.end() and m.start() < e for s, e in taken):
            return
        taken.append((m.start(), m.end()))
        out.setdefault(f"{kind}:{value}", Anchor(m.group(0), kind, value))

    for m in _ISO_DATE.finditer(question):
        add(m, "date", m.group(1))
    for m in _VERSION.finditer(question):
        add(m, "version", m.group(1))
    for m in _YEAR.finditer(question):
        add(m, "year", m.group(1))
    for m in _LABELLED.finditer(question):
        add(m, "number", m.group(2))
    return sorted(out.values(), key=lambda a: question.find(a.text))


def _numbers(text: str) -> set[str]:
    return set(_NUMBERS.findall(text))


def matched(anchor: Anchor, numbers: set[str], text: str = "") -> bool:
    """Whether a text whose numbers are `numbers` (`_numbers`) names the anchor. A version matches the
    same version, a longer one it starts ("3.13" in "3.13.2") or a shorter one that starts it ("3.12" in a
    title for "3.12.0"); a year also matches inside a date ("2023-10-02"); a labelled number matches the
    same integer, a version it starts ("Python 3" in "3.12") or the integer written onto a word ("BRCA1")."""
    v = anchor.value
    if anchor.kind in ("date", "year"):
        return any(n == v or n.startswith(v + "-") for n in numbers)
    if anchor.kind == "version":
        return any(n == v or n.startswith(v + ".") or v.startswith(n + ".") and "." in n for n in numbers)
    # a labelled number may be written onto its label ("BRCA1" for "BRCA 1", "PGE2")
    return any(n == v or n.startswith(v + ".") for n in numbers) or \
        re.search(rf"[^\W\d_]{v}(?![\d]|\.\d)", text) is not None


def cover(found: list[Anchor], strong: str, weak: str = "") -> float:
    """How much of what the question names a unit is about, 0..1: each anchor counts 1 if it is in
    `strong` (the unit, its headings, its document's title) and WEAK_CREDIT if only in `weak` (the rest
    of its passage: "In 1893, ..." one sentence earlier); the mean over anchors (1 when there are none)."""
    if not found:
        return 1.0
    strong_n, weak_n = _numbers(strong), _numbers(weak)
    total = 0.0
    for a in found:
        if matched(a, strong_n, strong):
            total += 1.0
        elif weak and matched(a, weak_n, weak):
            total += WEAK_CREDIT
    return total / len(found)


def about(found: list[Anchor], title: str, text: str, weak: str = "", titled: bool = False) -> float:
    """`cover` of a unit or chunk of a document with this title. With `titled` (some document read has a
    title that names every anchor: the question names that document, "the 2020 term election"), what is
    named only in the text ("voting ends December 2020", in the 2021 term's) counts TEXT_ONLY_CREDIT."""
    in_text = cover(found, f"{title}\n{text}", weak)
    return max(cover(found, title), TEXT_ONLY_CREDIT * in_text) if titled else in_text


WEAK_CREDIT = 0.5  # an anchor named only elsewhere in the passage half counts (not tuned: between none and full)
TEXT_ONLY_CREDIT = 0.5  # not tuned: as WEAK_CREDIT, half of a title's
