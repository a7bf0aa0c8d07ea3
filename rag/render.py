"""What the web app shows, as plain functions (no Gradio): answers as chat Markdown with citation badges,
the sources panel with each cited span highlighted in its passage, status and upload reports.

All document and user text is HTML-escaped before any markup is added, so a document containing
`<script>` is shown, never run.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .answering import NOT_IN_CORPUS, Answer, Citation, Passage, one_line

CONTEXT_CHARS = 300  # document text shown either side of a cited span when no passage holds it
WORD_SLACK_CHARS = 40  # ... widened by up to this to end on whole words (longer than most words; not tuned)
SOURCES_EMPTY = '<div class="src-empty">Ask a question: the passages behind the answer appear here.</div>'
SOURCES_SEARCHING = '<div class="src-empty">Searching the documents…</div>'


def escape(text: str) -> str:
    """HTML-escape document or user text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(text), quote=True)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#$])")
_MARKER = re.compile(r"\[(\d+)\]")


def escape_markdown(text: str) -> str:
    """Text for a Markdown message: Markdown specials backslash-escaped, then HTML-escaped."""
    text = _MD_SPECIAL.sub(r"\\\1", str(text))
    if re.match(r"\s*(?:[-+>]|\d+[.)])\s", text):  # would start a list or a quote
        text = "\\" + text.lstrip()
    return html.escape(text, quote=False)


QUOTE_CHARS = 240  # a verified quote shown beside an LLM sentence is cut to about this (two lines; not tuned)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _clip(text: str, limit: int = QUOTE_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit] + " …"


def cite_badge(n: int | str, tooltip: str = "") -> str:
    title = f' title="{escape(tooltip)}"' if tooltip else ""
    return f'<sup class="cite" data-cite="{escape(str(n))}"{title}>{escape(str(n))}</sup>'


def render_answer_markdown(answer: Answer) -> str:
    """The chat message for an answer: escaped text, `[n]` markers as badges, then the source list."""
    if answer.abstained:
        return (f"**{escape_markdown(NOT_IN_CORPUS)}** None of the retrieved passages supports an answer; "
                "the closest ones are in the sources panel.")
    by_n = {c.n: c for c in answer.citations}
    parts: list[str] = []
    pos = 0
    for m in _MARKER.finditer(answer.text):
        sentence = answer.text[pos:m.start()]
        parts.append(escape_markdown(sentence).rstrip(" "))
        n = int(m.group(1))
        c = by_n.get(n)
        parts.append(cite_badge(n, f"{c.title} ({c.source})" if c else ""))
        if c is not None and _words(c.quote) != _words(sentence):
            # a sentence in the model's words (an LLM answer): the quote that verified it goes beside it
            parts.append(f' <small class="verified-quote">“{escape_markdown(_clip(one_line(c.quote)))}”</small>')
        pos = m.end()
    parts.append(escape_markdown(answer.text[pos:]))
    body = "".join(parts)
    short = answer.short_answer
    if short is not None and short.n in by_n:
        body = f"**{escape_markdown(short.text)}** {cite_badge(short.n)}\n\n{body}"
    if answer.citations:
        listed = " · ".join(f"{cite_badge(c.n)} {escape_markdown(c.title)} — {escape_markdown(c.source)}"
                            for c in answer.citations)
        body += f"\n\n<small>Sources: {listed}</small>"
    return body


def highlight(text: str, spans: Iterable[tuple[int, int, int]]) -> str:
    """`text` HTML-escaped, with each (start, end, n) span (offsets into `text`) wrapped in <mark>
    and followed by its citation badge. Overlapping or out-of-range spans are clipped."""
    out: list[str] = []
    pos = 0
    for start, end, n in sorted(spans):
        start, end = max(start, pos, 0), min(end, len(text))
        if end <= start:
            continue
        out.append(escape(text[pos:start]))
        out.append(f'<mark data-cite="{int(n)}">{escape(text[start:end])}</mark>{cite_badge(n)}')
        pos = end
    out.append(escape(text[pos:]))
    return "".join(out)


def cited_context(citation: Citation, passages: list[Passage], document_text: str | None = None) -> tuple[str, int]:
    """(text around the cited span, that text's offset in the document): the retrieved passage that
    holds the citation, else a window of the stored document text, else the quote alone."""
    for p in passages:
        if p.chunk_id == citation.chunk_id and p.source == citation.source \
                and p.start <= citation.start and citation.end <= p.end \
                and p.text[citation.start - p.start:citation.end - p.start] == citation.quote:
            return p.text, p.start
    if document_text is not None and document_text[citation.start:citation.end] == citation.quote:
        a = max(0, citation.start - CONTEXT_CHARS)
        b = min(len(document_text), citation.end + CONTEXT_CHARS)
        reach = CONTEXT_CHARS + WORD_SLACK_CHARS
        while a > 0 and not document_text[a - 1].isspace() and citation.start - a < reach:
            a -= 1
        while b < len(document_text) and not document_text[b].isspace() and b - citation.end < reach:
            b += 1
        return document_text[a:b], a
    return citation.quote, citation.start


def _document_text(store: Any, source: str) -> str | None:
    if store is None:
        return None
    try:
        return store.document(source).text
    except Exception:  # a document gone after a reload, or an unreadable store: show the quote alone
        return None


def _passage_card(p: Passage, body_html: str, badges: str = "", muted: bool = False) -> str:
    return (f'<div class="src-card{" src-muted" if muted else ""}" data-source="{escape(p.source)}">'
            f'<div class="src-head">{badges}<b>{escape(p.title)}</b> '
            f'<span class="src-file">{escape(p.source)}</span> '
            f'<span class="src-meta">#{p.rank} · chars {p.start}–{p.end} · score {p.score:.3f}</span></div>'
            f'<div class="src-text">{body_html}</div></div>')


def render_sources(answer: Answer, store: Any = None) -> str:
    """The sources panel: each cited passage with the cited span highlighted, then the other
    retrieved passages collapsed; an abstention says so and still lists the closest passages."""
    if answer.abstained or not answer.citations:
        head = (f'<div class="abstained"><b>{escape(NOT_IN_CORPUS)}</b> None of the retrieved passages '
                "supports an answer to this question.</div>")
        if not answer.passages:
            return head + '<div class="src-empty">No passages were retrieved.</div>'
        shown, rest = answer.passages[:3], answer.passages[3:]
        cards = "".join(_passage_card(p, escape(p.text)) for p in shown)
        more = _collapsed(rest, "More retrieved passages")
        return f'{head}<div class="src-title">Closest passages</div>{cards}{more}'

    # group the citations by the passage (context) that holds them, in citation order
    groups: dict[tuple[str, int, int], dict] = {}
    cited_chunks: set[str] = set()
    for c in answer.citations:
        cited_chunks.add(c.chunk_id)
        passage = next((p for p in answer.passages if p.chunk_id == c.chunk_id), None)
        doc_text = None if passage is not None else _document_text(store, c.source)
        text, offset = cited_context(c, answer.passages, doc_text)
        if (text, offset) == (c.quote, c.start) and passage is not None:
            doc_text = _document_text(store, c.source)  # the passage did not hold it: try the document
            text, offset = cited_context(c, [], doc_text)
        key = (c.source, offset, offset + len(text))
        group = groups.setdefault(key, {"text": text, "offset": offset, "citations": [],
                                        "passage": passage, "source": c.source, "title": c.title})
        group["citations"].append(c)
    cards = []
    for (source, start, end), g in groups.items():
        spans = [(c.start - g["offset"], c.end - g["offset"], c.n) for c in g["citations"]]
        badges = "".join(cite_badge(c.n) for c in g["citations"]) + " "
        p = g["passage"] or Passage(0, source, g["title"], "", start, end, g["text"], 0.0)
        cards.append(_passage_card(p, highlight(g["text"], spans), badges))
    others = [p for p in answer.passages if p.chunk_id not in cited_chunks]
    return (f'<div class="src-title">Cited passages ({len(cards)})</div>{"".join(cards)}'
            f'{_collapsed(others, "Other retrieved passages")}')


def _collapsed(passages: list[Passage], label: str) -> str:
    if not passages:
        return ""
    cards = "".join(_passage_card(p, escape(p.text), muted=True) for p in passages)
    return f'<details class="src-more"><summary>{escape(label)} ({len(passages)})</summary>{cards}</details>'


def render_status(status: dict | None, index_dir: str | Path | None = None) -> str:
    """One line: documents, chunks, model and last update of the index (Markdown)."""
    if not status:
        return f"**No index** in `{escape(str(index_dir or 'index'))}` yet."
    updated = str(status.get("updated", "")).replace("T", " ")
    return (f"**Index:** {status['documents']} documents · {status['chunks']} chunks · "
            f"model {escape(str(status['model']))} · updated {escape(updated) or 'unknown'}")


def render_empty_state(index_dir: str | Path, corpus_dir: str | Path, error: str | None = None) -> str:
    """What to do when there is no usable index."""
    reason = f"<p>{escape(error)}</p>" if error else ""
    return (f'<div class="empty-state"><b>No index to answer from yet.</b>{reason}'
            f"<p>Build it from the command line with <code>rag index {escape(str(corpus_dir))} --index-dir "
            f"{escape(str(index_dir))}</code>, click <i>Build index from {escape(str(corpus_dir))}</i> below, "
            "or upload documents under <i>Add documents</i>.</p></div>")


def render_upload_report(added: list[str], skipped: dict[str, str], summary: Any = None,
                         error: str | None = None) -> str:
    """What an upload did (Markdown): files added, files skipped and why."""
    lines = []
    if added:
        lines.append(f"Added {len(added)} file{'s' if len(added) != 1 else ''}: "
                     + ", ".join(f"`{escape(a)}`" for a in added)
                     + (f" ({summary.embedded} new chunks embedded)" if summary is not None else "")
                     + ". They can be asked about now.")
    for name, reason in skipped.items():
        lines.append(f"Skipped `{escape(name)}`: {escape(reason)}")
    if error:
        lines.append(f"Indexing failed: {escape(error)}")
    return "\n\n".join(lines) or "No files were uploaded."
