"""Document-aware index text (rag/context.py): headings, the title/heading prefix, its word-piece cap,
and retrieval that can tell near-identical sibling documents apart by their titles."""

from __future__ import annotations

import pytest
from conftest import CORPUS

from rag import Assistant, build_index
from rag.chunking import chunk_text, wordpiece_counter
from rag.context import PREFIX_WORDPIECES, context_prefix, headings, index_text
from rag.loaders import load_paths
from rag.store import IndexStore

MD = """# Release guide

Intro paragraph about the whole guide.

## Release schedule

The schedule is below.

```python
# not a heading: a comment inside a code block
print("x")
```

### Bugfix releases

Bugfix releases come every two months.

Setext heading
--------------

Body under a setext heading.
"""

LAW = """Shanghai Regulations on Public Data

Chapter I General Provisions

Article 1 Purpose
These regulations are formulated to promote the sharing and use of public data.
Article 2 Scope
They apply to the processing of public data within the administrative area of the city.

Chapter II Data Security
Article 12 Data security
Data processors shall take technical measures to protect personal data from leaks.
3.11 Lifespan
Python 3.11 will receive bugfix updates approximately every two months for about 18 months.
The ministry also said that the new
rules would apply from May, and the
department of industry will issue guidance soon.
Status: Active
Type: Informational
Created: 12-Jul-2021
This document describes the plan.
"""


def test_markdown_headings_with_levels_skip_code_blocks_and_include_setext():
    hs = headings(MD)
    assert [(h.level, h.text) for h in hs] == [
        (1, "Release guide"), (2, "Release schedule"), (3, "Bugfix releases"), (2, "Setext heading")]
    assert all(MD[h.start:h.end].rstrip("#").strip().endswith(h.text) for h in hs)


def test_plain_text_headings_numbered_articles_and_chapters_not_wrapped_lines_or_metadata():
    texts = [h.text for h in headings(LAW)]
    assert texts == ["Shanghai Regulations on Public Data", "Chapter I General Provisions", "Article 1 Purpose",
                     "Article 2 Scope", "Chapter II Data Security", "Article 12 Data security", "3.11 Lifespan"]
    # hard-wrapped sentence pieces ("The ministry also said that the new") and a block of
    # "Key: value" lines are not headings
    assert not any("ministry" in t or "Status" in t or "Type" in t for t in texts)


def test_markdown_corpus_without_hash_marks_gets_plain_headings():
    doc = next(d for d in load_paths([CORPUS]).documents if d.source == "miit-ai-tour-shanghai-beijing.md")
    texts = [h.text for h in headings(doc.text)]
    assert "Shanghai: The Hub for AI Innovation and Global Collabs" in texts
    assert "5. Balance Development with Security" in texts
    assert not any(t.startswith("- ") for t in texts)  # list items are not headings


def test_prefix_is_title_then_nearest_heading_above_the_chunk():
    start = LAW.index("Data processors shall")
    end = LAW.index("3.11 Lifespan")
    assert index_text("Shanghai Regulations", LAW, start, end) == (
        "Shanghai Regulations\nArticle 12 Data security\n" + LAW[start:end])
    start = MD.index("Bugfix releases come")
    assert context_prefix("Release guide", MD, start, start + 20) == "Release guide\nBugfix releases"


def test_a_chunk_opening_with_its_heading_gets_the_parent_heading_instead():
    start = MD.index("### Bugfix releases")
    assert context_prefix("PEP 664 – Python 3.11 Release Schedule", MD, start, start + 60) == (
        "PEP 664 – Python 3.11 Release Schedule\nRelease schedule")


def test_title_skipped_when_the_chunk_begins_with_it_and_heading_skipped_when_contained():
    # txt files whose title is their first line; SciFact documents indexed as "title\n\ntext"
    text = "Skerryvore lighthouse log\n\nThe keeper recorded forty-two gales in the winter of 1899."
    assert index_text("Skerryvore lighthouse log", text, 0, len(text)) == text
    sci = "Vitamin D and bone density\n\nWe measured bone density in 400 adults over ten years."
    assert context_prefix("Vitamin D and bone density", sci, 0, len(sci)) == ""
    # a later chunk of the same document does get the title
    later = sci.index("We measured")
    assert context_prefix("Vitamin D and bone density", sci, later, len(sci)) == "Vitamin D and bone density"
    # the chunk holds the heading line itself (and the Markdown H1 only repeats the title)
    start = LAW.index("Article 12")
    assert context_prefix("Shanghai Regulations", LAW, start, len(LAW)) == "Shanghai Regulations"
    md = "# PEP 664 – Python 3.11 Release Schedule\n\nPEP: 664\nStatus: Active\n\nThis PEP is a schedule."
    start = md.index("PEP: 664")
    assert context_prefix("PEP 664 – Python 3.11 Release Schedule", md, start, len(md)) == (
        "PEP 664 – Python 3.11 Release Schedule")
    # a title without words (a numeric file name) adds nothing
    plain = "We measured bone density in 400 adults. It rose by four per cent over ten years."
    assert context_prefix("4983", plain, 40, len(plain)) == ""


def test_prefix_is_capped_at_the_budget(model_dir):
    counter = wordpiece_counter(str(model_dir))
    title = "A very long title " + " ".join(f"word{i}" for i in range(80))
    text = "Intro.\n\n## " + "Heading " * 30 + "\n\nBody text under the heading goes here."
    start = text.index("Body")
    prefix = context_prefix(title, text, start, len(text))
    assert prefix.startswith("A very long title") and "\nHeading Heading" in prefix
    assert counter([prefix])[0] - 2 <= PREFIX_WORDPIECES  # without [CLS]/[SEP]
    assert counter([prefix])[0] - 2 >= PREFIX_WORDPIECES - 4  # and it used the budget


def test_every_indexed_chunk_fits_the_embedder_window(tmp_path, settings, model_dir):
    """Chunks are cut to 256 - PREFIX_WORDPIECES word-pieces, so chunk + prefix never exceeds 256."""
    docs = tmp_path / "docs"
    docs.mkdir()
    long_title = "Regulation on " + " ".join(f"Subject{i} Matter" for i in range(40))
    dense = " ".join(f"https://example.org/a{i}/b{i}?q={i * 7}&x=ZQ{i}" for i in range(300))  # word-piece heavy
    body = "\n\n".join(f"## Section {i} " + "with a rather long heading " * 6 + f"\n\n{dense[:3000 + 40 * i]}."
                       for i in range(6))
    (docs / "heavy.md").write_text(f"---\ntitle: \"{long_title}\"\n---\n{body}\n", encoding="utf-8")
    (docs / "law.txt").write_text(LAW * 8, encoding="utf-8")
    index_dir = tmp_path / "index"
    build_index([docs, CORPUS], index_dir, settings)
    store = IndexStore.open(index_dir)
    counter = wordpiece_counter(str(model_dir))
    texts = store.indexed_texts()
    counts = counter(texts)
    assert max(counts) <= settings.max_wordpieces, max(counts)
    assert max(counts) > settings.max_wordpieces - PREFIX_WORDPIECES  # the reserved room is really used
    prefixed = [t for t, c in zip(texts, store.chunks, strict=True) if t != c.text]
    assert len(prefixed) >= len(texts) // 2
    # stored chunk text and offsets are untouched: they still point into the document text
    for d in store.all_documents():
        for c in (c for c in store.chunks if c.doc_id == d.doc_id):
            assert d.text[c.start:c.end] == c.text
    # chunk_text itself, with the reserved budget, leaves room for any capped prefix
    doc = next(d for d in store.all_documents() if d.source.endswith("heavy.md"))
    window = settings.max_wordpieces - PREFIX_WORDPIECES
    for c in chunk_text(doc.text, "heavy", settings.chunk_tokens, settings.chunk_overlap, window, counter):
        assert counter([index_text(doc.title, doc.text, c.start, c.end, model_dir)])[0] <= settings.max_wordpieces


SIBLING_BODY = """Article 1 Purpose
These rules are made to promote the safe use of public data by government departments and companies.

Article 7 Entry into force
These rules take effect on {date}. Data held before that day must be reviewed within one year.

Article 9 Penalties
A company that leaks personal data may be fined up to {fine} yuan by the data authority.
"""
SIBLINGS = {
    "shanghai.md": ("Shanghai Public Data Rules", "1 March 2025", "500,000"),
    "shenzhen.md": ("Shenzhen Public Data Rules", "1 July 2024", "800,000"),
}
QUESTIONS = {
    "shanghai.md": "When do the Shanghai public data rules take effect?",
    "shenzhen.md": "When do the Shenzhen public data rules take effect?",
}


def _sibling_index(tmp_path, settings, name: str) -> Assistant:
    docs = tmp_path / f"docs-{name}"
    docs.mkdir()
    for file, (title, date, fine) in SIBLINGS.items():
        (docs / file).write_text(f"---\ntitle: {title}\n---\n" + SIBLING_BODY.format(date=date, fine=fine),
                                 encoding="utf-8")
    build_index([docs], tmp_path / f"index-{name}", settings)
    return Assistant.load(tmp_path / f"index-{name}", settings)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_a_question_naming_one_sibling_document_retrieves_that_document_first(tmp_path, settings, mode):
    assistant = _sibling_index(tmp_path, settings, "on")
    for source, question in QUESTIONS.items():
        hits = assistant.retriever.search(question, top_k=4, mode=mode)
        assert hits[0].chunk.source == source, (mode, question, [(h.chunk.source, h.score) for h in hits])
        assert hits[0].score > hits[1].score
    # the date question lands on the date: the fact of the named document is in its top chunk
    hit = assistant.retriever.search(QUESTIONS["shenzhen.md"], top_k=1, mode=mode)[0]
    if "take effect" in hit.chunk.text:
        assert "1 July 2024" in hit.chunk.text


def test_without_the_prefix_the_siblings_cannot_be_told_apart(tmp_path, settings):
    """The control: the same index built with chunk_context off ranks the same document first for
    both questions (the city is named only in the titles), so one of the two is always wrong."""
    assistant = _sibling_index(tmp_path, settings.replace(chunk_context=False), "off")
    tops = {source: assistant.retriever.search(q, top_k=2, mode="bm25")[0] for source, q in QUESTIONS.items()}
    assert tops["shanghai.md"].score == pytest.approx(tops["shenzhen.md"].score)
    assert sum(top.chunk.source == source for source, top in tops.items()) <= 1
