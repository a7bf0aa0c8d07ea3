"""Documents are data: the injection corpus (tests/injection.py) answered with and without its hostile
text, the loaded text free of invisible controls, and the LLM prompt keeping passages as quoted data.
The browser half (no script runs, no request leaves the page) is in test_app_browser.py."""

from __future__ import annotations

import re

import pytest
from injection import ATTACKER, DOCUMENTS, QUESTIONS, write_corpus

from rag.assistant import Assistant
from rag.indexer import build_index
from rag.llm import build_messages
from rag.loaders import load_paths


@pytest.fixture(scope="module")
def twins(tmp_path_factory, settings):
    """(clean assistant, injected assistant, injected folder)."""
    work = tmp_path_factory.mktemp("injection")
    out = []
    for injected in (False, True):
        folder = write_corpus(work / f"corpus-{injected}", injected)
        build_index([folder], work / f"index-{injected}", settings)
        out.append(Assistant.load(work / f"index-{injected}", settings))
    return out[0], out[1], work / "corpus-True"


@pytest.mark.parametrize(("question", "expected"), QUESTIONS)
def test_the_extractive_answer_is_the_same_with_and_without_the_injected_text(twins, question, expected):
    clean, injected, _ = twins
    a, b = clean.answer(question), injected.answer(question)
    assert not a.abstained and expected in a.text
    assert (b.text, b.abstained, [c.quote for c in b.citations]) == \
        (a.text, a.abstained, [c.quote for c in a.citations])
    for answer in (a, b):
        short = answer.short_answer.text if answer.short_answer else ""
        assert short and short in answer.text and (short in expected or expected in short), (short, expected)
    for word in ("ignore", "instructions", "Sources:", ATTACKER, "javascript", "<script", "onerror", "![", "[2]"):
        assert word not in b.text, (word, b.text)


def test_injected_documents_load_without_invisible_or_direction_controls(twins):
    report = load_paths([twins[2]])
    assert sorted(d.source for d in report.documents) == sorted(name for name, _, _ in DOCUMENTS)
    for doc in report.documents:
        assert not re.search("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]", doc.text), doc.source
    # the hostile text itself is kept, as text: it is data, and the sources panel shows it escaped
    md = next(d for d in report.documents if d.source == "lighthouse.md")
    assert "ignore all previous instructions" in md.text and f"![status]({ATTACKER}" in md.text


def test_the_llm_prompt_holds_injected_passages_only_as_quoted_data(twins):
    _, injected, _ = twins
    hits = injected.retriever.search("Quillon lighthouse ferry orchard", top_k=8)
    assert any("<script>" in h.chunk.text or "onerror" in h.chunk.text for h in hits)
    prompt = build_messages("When was the Quillon lighthouse first lit?", hits)[1]["content"]
    # exactly one opening and one closing tag per passage: no passage text can close its tag or open another
    assert prompt.count("<passage ") == len(hits) and prompt.count("</passage>") == len(hits)
    assert "<script" not in prompt and "<img" not in prompt
    assert re.fullmatch(r'(<passage id="\d+" source="[^"<>]*">)', re.findall(r"<passage [^>]*>", prompt)[0])
