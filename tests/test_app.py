"""The web app's formatting (highlighting, escaping, citation badges, abstentions) and its chat and
upload logic, run in-process on a real index of corpus/ with the real embedder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.answering import NOT_IN_CORPUS, Answer, Citation, Passage, ShortAnswer
from rag.assistant import Assistant
from rag.render import (
    SOURCES_EMPTY,
    cited_context,
    escape_markdown,
    highlight,
    render_answer_markdown,
    render_empty_state,
    render_sources,
    render_status,
)
from rag.uploads import copy_uploads, resolve_upload_dir, safe_upload_name
from rag.webapp import WebApp

DOC = ("Harbour notes.\nThe Zorbulon harbour opened in 1987 and handles 40 ships a day. "
       "Its crane <script>alert(1)</script> is blue & tall.")
XSS = "<script>alert(1)</script>"


def _passage(text=DOC, start=0, chunk_id="c1", rank=1, source="notes/harbour.txt") -> Passage:
    return Passage(rank, source, "Harbour <b>notes</b>", chunk_id, start, start + len(text), text, 0.91)


def _citation(quote: str, doc=DOC, n=1, chunk_id="c1", source="notes/harbour.txt") -> Citation:
    start = doc.index(quote)
    return Citation(n, source, "Harbour <b>notes</b>", chunk_id, start, start + len(quote), quote, 0.8)


def _answer(citations, passages, text=None) -> Answer:
    text = text or " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return Answer("q?", text, citations, False, passages)


class FakeStore:
    def __init__(self, docs: dict[str, str]):
        self.docs = docs

    def document(self, source):
        if source not in self.docs:
            raise KeyError(source)
        return type("Doc", (), {"text": self.docs[source]})()


# ---- highlighting and escaping ---------------------------------------------------------------

def test_highlight_marks_exactly_the_span():
    text = "alpha beta gamma delta"
    out = highlight(text, [(6, 16, 1)])
    assert re.search(r'<mark data-cite="1">beta gamma</mark><sup class="cite"[^>]*>1</sup> delta$', out)
    assert out.startswith("alpha ")


def test_highlight_escapes_text_inside_and_outside_the_mark():
    text = f"before {XSS} after <img src=x onerror=alert(2)>"
    start = text.index("after")
    out = highlight(text, [(start, len(text), 2)])
    assert "<script>" not in out and "<img" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert '<mark data-cite="2">after &lt;img src=x onerror=alert(2)&gt;</mark>' in out


def test_highlight_clips_overlapping_and_out_of_range_spans():
    out = highlight("abcdefghij", [(2, 6, 1), (4, 8, 2), (8, 99, 3)])
    assert '<mark data-cite="1">cdef</mark>' in out
    assert '<mark data-cite="2">gh</mark>' in out
    assert '<mark data-cite="3">ij</mark>' in out


def test_sources_highlight_the_cited_span_inside_its_passage():
    passage = _passage(DOC, start=100)
    doc = " " * 100 + DOC
    cite = _citation("The Zorbulon harbour opened in 1987 and handles 40 ships a day.", doc)
    html = render_sources(_answer([cite], [passage, _passage("other text", 500, "c2", 2)]))
    marks = re.findall(r'<mark data-cite="1">(.*?)</mark>', html)
    assert marks == ["The Zorbulon harbour opened in 1987 and handles 40 ships a day."]
    # the mark sits inside the whole passage text, and the rest of it is escaped
    assert "Harbour notes.\n<mark" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; is blue &amp; tall." in html
    assert "<script>" not in html and "<b>notes</b>" not in html and "Harbour &lt;b&gt;notes&lt;/b&gt;" in html
    # uncited passages are listed below, collapsed
    other = html.index("<details")
    assert html.index("<mark") < other and "Other retrieved passages (1)" in html[other:]
    assert "other text" in html[other:]


def test_sources_fall_back_to_the_document_text_around_the_span():
    doc = "x" * 2000 + " " + DOC + " " + "y" * 2000
    cite = _citation("handles 40 ships a day.", doc, chunk_id="gone")
    html = render_sources(_answer([cite], []), FakeStore({"notes/harbour.txt": doc}))
    assert '<mark data-cite="1">handles 40 ships a day.</mark>' in html
    assert "The Zorbulon harbour opened in 1987 and" in html  # surrounding text is shown
    assert "&lt;script&gt;" in html and "<script>" not in html
    text, offset = cited_context(cite, [], doc)
    assert doc[offset:offset + len(text)] == text and len(text) < 1000


def test_sources_show_the_quote_when_nothing_else_is_known():
    cite = _citation("handles 40 ships a day.", chunk_id="gone")
    html = render_sources(_answer([cite], []), FakeStore({}))
    assert '<mark data-cite="1">handles 40 ships a day.</mark>' in html


def test_two_citations_in_one_passage_share_one_card():
    c1 = _citation("Harbour notes.")
    c2 = _citation("The Zorbulon harbour opened in 1987", n=2)
    html = render_sources(_answer([c1, c2], [_passage()]))
    assert html.count('class="src-card') == 1
    assert re.findall(r'<mark data-cite="(\d)">', html) == ["1", "2"]


def test_script_in_a_passage_is_rendered_escaped_everywhere():
    passage = _passage(f"Note: {XSS}", chunk_id="c9")
    abstained = Answer("q?", NOT_IN_CORPUS, [], True, [passage])
    cite = Citation(1, "x.txt", XSS, "c9", 6, 6 + len(XSS), XSS, 0.7)
    answered = Answer("q?", f"{XSS} [1]", [cite], False, [passage])
    for html in (render_sources(abstained), render_sources(answered), render_answer_markdown(answered)):
        assert "<script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# ---- answers in the chat -------------------------------------------------------------------------

def test_citation_markers_become_badges():
    c1, c2 = _citation("Harbour notes."), _citation("The Zorbulon harbour opened in 1987", n=2)
    ans = _answer([c1, c2], [_passage()], text="Harbour notes. [1] The Zorbulon harbour opened in 1987 [2]")
    md = render_answer_markdown(ans)
    assert "[1]" not in md and "[2]" not in md
    assert re.search(r'Harbour notes\.<sup class="cite" data-cite="1" title="Harbour &lt;b&gt;notes&lt;/b&gt; '
                     r'\(notes/harbour.txt\)">1</sup> The Zorbulon', md)
    assert md.count('class="cite"') == 4  # two in the text, two in the source list
    assert "Sources:" in md and "notes/harbour.txt" in md


def test_an_llm_sentence_shows_the_quote_that_verified_it_and_an_extractive_one_does_not():
    quote = "The Zorbulon harbour opened in 1987 <b>and</b> handles forty ships a day."
    c1 = Citation(1, "notes/harbour.txt", "Harbour notes", "c1", 0, len(quote), quote, 0.8)
    llm = _answer([c1], [_passage()], text="Zorbulon's harbour has been open since 1987. [1]")
    md = render_answer_markdown(llm)
    assert re.search(r'since 1987\.<sup class="cite" data-cite="1"[^>]*>1</sup> <small class="verified-quote">'
                     r"“The Zorbulon harbour opened in 1987 &lt;b&gt;and&lt;/b&gt; handles forty ships a day\.”"
                     r"</small>",
                     md), md
    extractive = _answer([c1], [_passage()], text=f"{quote} [1]")
    assert "verified-quote" not in render_answer_markdown(extractive)
    long = Citation(1, "notes/harbour.txt", "Harbour notes", "c1", 0, 1000, "word " * 200, 0.8)
    md = render_answer_markdown(_answer([long], [_passage()], text="A claim. [1]"))
    assert re.search(r"“(word ){40,}…”", md) and len(md) < 1000


def test_short_answer_leads_the_message_in_bold_with_its_badge():
    c1 = _citation("The Zorbulon harbour opened in 1987")
    ans = _answer([c1], [_passage()])
    start = c1.start + c1.quote.index("1987")
    ans.short_answer = ShortAnswer("1987", 1, c1.source, start, start + 4)
    md = render_answer_markdown(ans)
    assert md.startswith('**1987** <sup class="cite" data-cite="1">1</sup>\n\n')
    ans.short_answer = ShortAnswer("<b>x</b>", 1, c1.source, start, start + 4)
    assert render_answer_markdown(ans).startswith("**&lt;b&gt;x&lt;/b&gt;**")
    ans.short_answer = None
    assert not render_answer_markdown(ans).startswith("**")


def test_markdown_in_document_text_is_not_interpreted():
    assert escape_markdown("**bold** _x_ [link](y) $5 and $6") == r"\*\*bold\*\* \_x\_ \[link\](y) \$5 and \$6"
    assert escape_markdown("- a list item").startswith("\\-")
    assert escape_markdown("1. first") == "\\1. first"


def test_abstained_answer_says_so_and_still_shows_closest_passages():
    passages = [_passage(f"passage {i}", 100 * i, f"c{i}", i) for i in range(1, 6)]
    ans = Answer("What is the capital of Peru?", NOT_IN_CORPUS, [], True, passages)
    md = render_answer_markdown(ans)
    assert md.startswith(f"**{NOT_IN_CORPUS}**")
    html = render_sources(ans)
    assert NOT_IN_CORPUS in html and "Closest passages" in html
    assert "<mark" not in html
    for i in range(1, 6):
        assert f"passage {i}" in html
    assert html.index("passage 3") < html.index("<details") < html.index("passage 4")


def test_status_and_empty_state():
    line = render_status({"documents": 3, "chunks": 20, "model": "all-MiniLM-L6-v2",
                          "updated": "2026-01-02T03:04:05+0000", "index_dir": "index"})
    assert "3 documents" in line and "20 chunks" in line and "all-MiniLM-L6-v2" in line
    assert "2026-01-02 03:04:05" in line
    assert "No index" in render_status(None, "idx")
    empty = render_empty_state("idx", "corpus", "no index in <idx>")
    assert "rag index corpus --index-dir idx" in empty and "&lt;idx&gt;" in empty


# ---- upload folder -----------------------------------------------------------------------------

def test_upload_dir_setting():
    assert resolve_upload_dir(None, {}) == Path("uploads")
    assert resolve_upload_dir(None, {"RAG_UPLOAD_DIR": "up"}) == Path("up")
    assert resolve_upload_dir("flag", {"RAG_UPLOAD_DIR": "up"}) == Path("flag")


def test_safe_upload_names():
    assert safe_upload_name("../../etc/passwd.TXT") == "passwd.txt"
    assert safe_upload_name(".hidden.md") == "hidden.md"
    assert safe_upload_name("a b<c>.md") == "a b_c.md"


def test_copy_uploads_skips_bad_files_and_never_shadows_a_corpus_document(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.txt").write_text("The Zorbulon harbour opened in 1987.")
    (src / "empty.txt").write_text("")
    (src / "tool.exe").write_bytes(b"MZ")
    (src / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (src / "corpus-doc.md").write_text("# Title\n\nSome text about harbours.")
    files = sorted(src.iterdir())
    added, skipped = copy_uploads(files, tmp_path / "up", taken={"corpus-doc.md"})
    assert sorted(added) == ["good.txt", "upload-corpus-doc.md"]
    assert set(skipped) == {"empty.txt", "tool.exe", "broken.pdf"}
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["good.txt", "upload-corpus-doc.md"]


# ---- the chat and uploads on a real index ----------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_assistant(corpus_index, settings):
    return Assistant.load(corpus_index[0], settings)


def _run(app: WebApp, question: str, history: list, chat: list | None = None):
    steps = list(app.respond(question, chat or [], history, 8, "hybrid", "extractive"))
    return steps


def test_chat_streams_a_cited_answer_and_follow_ups_use_the_history(corpus_assistant, settings, tmp_path):
    app = WebApp(settings, tmp_path / "up", corpus_assistant)
    steps = _run(app, "Which minister toured AI hotspots in Shanghai and Beijing?", [])
    box, chat, sources, history = steps[-1]
    assert box == "" and len(steps) >= 2
    assert steps[0][2] != sources  # a "searching" panel first, then the sources
    assert "Li Lecheng" in chat[-1]["content"] and 'class="cite"' in chat[-1]["content"]
    assert re.search(r"<mark[^>]*>[^<]*Li Lecheng", sources)
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"] == "Which minister toured AI hotspots in Shanghai and Beijing?"

    follow_up = "What was the mission of his tour?"
    *_, (_, chat2, sources2, history2) = _run(app, follow_up, history, chat)
    assert len(chat2) == 4 and len(history2) == 4
    assert NOT_IN_CORPUS not in chat2[-1]["content"] and "<mark" in sources2
    # the history was used: the same words asked alone retrieve other passages
    *_, (_, alone, alone_sources, _) = _run(app, follow_up, [])
    assert len(alone) == 2 and alone_sources != sources2


def test_chat_reports_empty_questions_and_abstains_plainly(corpus_assistant, settings, tmp_path):
    app = WebApp(settings, tmp_path / "up", corpus_assistant)
    [(box, chat, sources, history)] = _run(app, "   ", [])
    assert chat == [] and sources == SOURCES_EMPTY and history == []
    *_, (_, chat, sources, _) = _run(app, "What is the capital of Peru?", [])
    assert NOT_IN_CORPUS in chat[-1]["content"] and NOT_IN_CORPUS in sources and "Closest passages" in sources


def test_upload_adds_documents_next_to_the_corpus(index_copy, settings, tmp_path):
    settings = settings.replace(index_dir=index_copy)
    app = WebApp(settings, tmp_path / "uploads")
    before = app.assistant.status()["documents"]
    src = tmp_path / "in"
    src.mkdir()
    (src / "zorbulon.txt").write_text("The Zorbulon harbour opened in 1987 and handles 40 ships a day.\n")
    (src / "broken.docx").write_bytes(b"PK not a docx")
    report, status = app.add_files([src / "zorbulon.txt", src / "broken.docx"])
    assert "Added 1 file" in report and "zorbulon.txt" in report
    assert "Skipped `broken.docx`" in report
    assert f"{before + 1} documents" in status
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["zorbulon.txt"]
    ans = app.assistant.answer("When did the Zorbulon harbour open?")
    assert not ans.abstained and ans.citations[0].source == "zorbulon.txt" and "1987" in ans.text
    # the corpus is still answerable
    assert "Li Lecheng" in app.assistant.answer("Which minister toured AI hotspots in Shanghai and Beijing?").text


def test_rag_serve_binds_localhost_by_default():
    from rag.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.index_dir, args.upload_dir) == ("127.0.0.1", 7860, None, None)
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--index-dir", "i",
                                      "--upload-dir", "u"])
    assert (args.host, args.port, str(args.index_dir), str(args.upload_dir)) == ("0.0.0.0", 9000, "i", "u")


def test_missing_index_gives_an_empty_state_and_the_corpus_can_be_built(settings, tmp_path):
    corpus = Path(__file__).resolve().parents[1] / "corpus"
    settings = settings.replace(index_dir=tmp_path / "index", corpus_dir=corpus)
    app = WebApp(settings, tmp_path / "uploads")
    assert app.assistant is None and "no index" in app.load_error
    assert "No index" in app.status_markdown()
    [(_, chat, sources, history)] = _run(app, "Which minister toured AI hotspots in Shanghai and Beijing?", [])
    assert "no index yet" in chat[-1]["content"] and "rag index" in sources and history == []
    message, status = app.build_from_corpus()
    assert "Indexed 2 documents" in message and "2 documents" in status
    *_, (_, chat, sources, _) = _run(app, "Which minister toured AI hotspots in Shanghai and Beijing?", [])
    assert "Li Lecheng" in chat[-1]["content"] and "<mark" in sources
