"""Checks the hand-written evaluation set eval/qa.jsonl against the default corpus in corpus/.

Every answerable pair must point at a corpus document, quote its evidence verbatim from that
document's text (front matter stripped, as the index sees it), and have every answer inside that
evidence; unanswerable pairs carry no answers, doc or evidence. The set must also keep a minimum
number of pairs of each type.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rag.loaders import load_file

ROOT = Path(__file__).resolve().parents[1]
QA_PATH = ROOT / "eval" / "qa.jsonl"
CORPUS = ROOT / "corpus"

REQUIRED = ("id", "question", "answers", "doc", "evidence", "type")
TYPES = {"fact", "paraphrase", "list", "number", "unanswerable"}
MIN_TOTAL = 44
MIN_PER_TYPE = {"unanswerable": 6, "paraphrase": 10, "list": 6, "number": 6}
MAX_EVIDENCE_CHARS = 400  # one or two sentences / list lines, not a paragraph


def _load_records() -> list[dict]:
    records = []
    for lineno, line in enumerate(QA_PATH.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise AssertionError(f"{QA_PATH.name} line {lineno}: invalid JSON ({e})") from None
        assert isinstance(record, dict), f"{QA_PATH.name} line {lineno}: not a JSON object"
        record["_line"] = lineno
        records.append(record)
    return records


def _load_corpus() -> tuple[dict[str, str], dict[str, str]]:
    """(text by file name, file name by file name or stem): `doc` may be given with or without extension."""
    texts: dict[str, str] = {}
    names: dict[str, str] = {}
    for path in sorted(CORPUS.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            texts[path.name] = load_file(path).text
            names[path.name] = path.name
            names.setdefault(path.stem, path.name)
    return texts, names


RECORDS = _load_records()
DOCS, DOC_FILES = _load_corpus()


def _label(record: dict) -> str:
    return f"line {record['_line']} ({record.get('id', '?')})"


def test_file_is_not_empty():
    assert RECORDS, f"{QA_PATH} holds no pairs"


@pytest.mark.parametrize("record", RECORDS, ids=[str(r.get("id", r["_line"])) for r in RECORDS])
def test_record(record: dict):
    where = _label(record)
    missing = [key for key in REQUIRED if key not in record]
    assert not missing, f"{where}: missing fields {missing}"
    assert isinstance(record["id"], str) and record["id"].strip(), f"{where}: id must be a non-empty string"
    assert isinstance(record["question"], str) and record["question"].strip(), f"{where}: empty question"
    assert record["type"] in TYPES, f"{where}: type {record['type']!r} is not one of {sorted(TYPES)}"
    answers = record["answers"]
    assert isinstance(answers, list), f"{where}: answers must be a list"
    assert all(isinstance(a, str) and a.strip() for a in answers), (
        f"{where}: answers must be non-empty strings")

    if record["type"] == "unanswerable":
        assert answers == [], f"{where}: an unanswerable question has answers []"
        assert record["doc"] is None, f"{where}: an unanswerable question has doc null"
        assert record["evidence"] is None, f"{where}: an unanswerable question has evidence null"
        assert not record.get("list"), f"{where}: an unanswerable question is not a list question"
        return

    assert answers, f"{where}: an answerable question needs at least one answer"
    doc, evidence = record["doc"], record["evidence"]
    assert isinstance(doc, str) and doc in DOC_FILES, f"{where}: doc {doc!r} is not a file in {CORPUS.name}/"
    text = DOCS[DOC_FILES[doc]]
    assert isinstance(evidence, str) and evidence.strip(), f"{where}: evidence must be a non-empty string"
    assert len(evidence) <= MAX_EVIDENCE_CHARS, (
        f"{where}: evidence is {len(evidence)} characters; keep it to one or two sentences")
    assert evidence in text, f"{where}: evidence is not an exact substring of {doc}: {evidence!r}"
    lowered = evidence.casefold()
    absent = [a for a in answers if a.casefold() not in lowered]
    assert not absent, f"{where}: answers {absent} do not occur in the evidence"

    if record["type"] == "list":
        assert record.get("list") is True, f"{where}: a list question needs \"list\": true"
        assert len(answers) >= 2, f"{where}: a list question needs at least two members in answers"
    else:
        assert not record.get("list"), f"{where}: \"list\": true is only for type \"list\""


def test_ids_are_unique():
    counts = Counter(r.get("id") for r in RECORDS)
    duplicates = sorted(str(i) for i, n in counts.items() if n > 1)
    assert not duplicates, f"duplicate ids: {duplicates}"


def test_questions_are_unique():
    counts = Counter(" ".join(str(r.get("question", "")).lower().split()) for r in RECORDS)
    duplicates = sorted(q for q, n in counts.items() if n > 1)
    assert not duplicates, f"duplicate questions: {duplicates}"


def test_minimum_counts():
    assert len(RECORDS) >= MIN_TOTAL, f"{len(RECORDS)} pairs; need at least {MIN_TOTAL}"
    by_type = Counter(r.get("type") for r in RECORDS)
    short = {t: by_type[t] for t, n in MIN_PER_TYPE.items() if by_type[t] < n}
    assert not short, f"too few pairs of type {short}; minimums are {MIN_PER_TYPE}"


def test_every_corpus_document_is_covered():
    covered = {DOC_FILES.get(r.get("doc")) for r in RECORDS if isinstance(r.get("doc"), str)}
    uncovered = sorted(set(DOCS) - covered)
    assert not uncovered, f"no question about {uncovered}"
