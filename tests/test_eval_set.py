"""Checks the hand-written evaluation sets against their corpora: eval/qa.jsonl over corpus/ (news on
AI policy) and eval/qa2.jsonl over eval/corpus2/ (Python Enhancement Proposals, another genre).

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

REQUIRED = ("id", "question", "answers", "doc", "evidence", "type")
TYPES = {"fact", "paraphrase", "list", "number", "unanswerable"}
# (questions, corpus, minimum pairs, minimum pairs per type, minimum questions naming one of similar documents)
SETS = {
    "qa": (ROOT / "eval" / "qa.jsonl", ROOT / "corpus", 44,
           {"unanswerable": 6, "paraphrase": 10, "list": 6, "number": 6}, 0),
    "qa2": (ROOT / "eval" / "qa2.jsonl", ROOT / "eval" / "corpus2", 60,
            {"unanswerable": 12, "paraphrase": 10, "list": 10, "number": 8}, 10),
}
MAX_EVIDENCE_CHARS = 400  # one or two sentences / list lines, not a paragraph


def _load_records(qa_path: Path) -> list[dict]:
    records = []
    for lineno, line in enumerate(qa_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise AssertionError(f"{qa_path.name} line {lineno}: invalid JSON ({e})") from None
        assert isinstance(record, dict), f"{qa_path.name} line {lineno}: not a JSON object"
        record["_line"] = lineno
        record["_set"] = qa_path.stem
        records.append(record)
    return records


def _load_corpus(corpus: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(text by file name, file name by file name or stem): `doc` may be given with or without extension."""
    texts: dict[str, str] = {}
    names: dict[str, str] = {}
    for path in sorted(corpus.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            texts[path.name] = load_file(path).text
            names[path.name] = path.name
            names.setdefault(path.stem, path.name)
    return texts, names


RECORDS = {name: _load_records(qa) for name, (qa, *_) in SETS.items()}
CORPORA = {name: _load_corpus(corpus) for name, (_, corpus, *_) in SETS.items()}
ALL = [r for records in RECORDS.values() for r in records]


def _label(record: dict) -> str:
    return f"{record['_set']}.jsonl line {record['_line']} ({record.get('id', '?')})"


@pytest.mark.parametrize("name", SETS)
def test_file_is_not_empty(name):
    assert RECORDS[name], f"{SETS[name][0]} holds no pairs"


@pytest.mark.parametrize("record", ALL, ids=[f"{r['_set']}-{r.get('id', r['_line'])}" for r in ALL])
def test_record(record: dict):
    where = _label(record)
    DOCS, DOC_FILES = CORPORA[record["_set"]]
    corpus_name = SETS[record["_set"]][1].name
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
    assert isinstance(doc, str) and doc in DOC_FILES, f"{where}: doc {doc!r} is not a file in {corpus_name}/"
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


@pytest.mark.parametrize("name", SETS)
def test_ids_are_unique(name):
    counts = Counter(r.get("id") for r in RECORDS[name])
    duplicates = sorted(str(i) for i, n in counts.items() if n > 1)
    assert not duplicates, f"duplicate ids: {duplicates}"


@pytest.mark.parametrize("name", SETS)
def test_questions_are_unique(name):
    counts = Counter(" ".join(str(r.get("question", "")).lower().split()) for r in RECORDS[name])
    duplicates = sorted(q for q, n in counts.items() if n > 1)
    assert not duplicates, f"duplicate questions: {duplicates}"


@pytest.mark.parametrize("name", SETS)
def test_minimum_counts(name):
    _, _, min_total, min_per_type, min_sibling = SETS[name]
    records = RECORDS[name]
    assert len(records) >= min_total, f"{len(records)} pairs; need at least {min_total}"
    by_type = Counter(r.get("type") for r in records)
    short = {t: by_type[t] for t, n in min_per_type.items() if by_type[t] < n}
    assert not short, f"too few pairs of type {short}; minimums are {min_per_type}"
    siblings = sum(r.get("sibling") is True for r in records)
    assert siblings >= min_sibling, f"{siblings} questions name one of similar documents; need {min_sibling}"


@pytest.mark.parametrize("name", SETS)
def test_every_corpus_document_is_covered(name):
    DOCS, DOC_FILES = CORPORA[name]
    covered = {DOC_FILES.get(r.get("doc")) for r in RECORDS[name] if isinstance(r.get("doc"), str)}
    uncovered = sorted(set(DOCS) - covered)
    assert not uncovered, f"no question about {uncovered}"
