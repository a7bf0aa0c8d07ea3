"""The web app (`rag serve`, `python app.py`): a chat with streamed, cited answers, a sources panel
that highlights each cited span inside its passage, uploads that are indexed at once, and an HTTP API
(`/ask`, the JSON of `rag ask --json`).

The formatting functions (`render_*`, `highlight`) are plain Python and import no Gradio; Gradio is
imported only by `build_app` and `serve`. All document text is HTML-escaped before any markup is
added, so a document containing `<script>` is shown, never run.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .answering import NOT_IN_CORPUS, Answer, Citation, Passage
from .config import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
UPLOAD_TYPES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
MODES = ("hybrid", "dense", "bm25")
MAX_TOP_K = 50
CONTEXT_CHARS = 300  # document text shown either side of a cited span when no passage holds it
EXAMPLES = [
    "Which minister toured AI hotspots in Shanghai and Beijing?",
    "What are the five points of the MIIT AI action plan?",
    "How much support does Beijing's plan offer for new equipment?",
]
SOURCES_EMPTY = '<div class="src-empty">Ask a question: the passages behind the answer appear here.</div>'
SOURCES_SEARCHING = '<div class="src-empty">Searching the documents…</div>'

CSS = """
.cite { display: inline-block; font-size: 0.7em; line-height: 1.2; vertical-align: super; margin-left: 1px;
        padding: 0 4px; border-radius: 6px; background: #e0e7ff; color: #3730a3; font-weight: 600; }
#sources .src-card { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 10px; margin-bottom: 10px; }
#sources .src-head { font-size: 0.9em; margin-bottom: 4px; }
#sources .src-file { color: #6b7280; font-family: ui-monospace, monospace; font-size: 0.9em; }
#sources .src-meta { color: #9ca3af; font-size: 0.8em; }
#sources .src-text { white-space: pre-wrap; font-size: 0.88em; line-height: 1.45; max-height: 260px;
                     overflow-y: auto; }
#sources mark { background: #fde68a; color: inherit; padding: 0 1px; border-radius: 2px; }
#sources details > summary { cursor: pointer; color: #4b5563; margin: 6px 0; }
#sources .src-muted { opacity: 0.85; }
#sources .abstained { border-left: 4px solid #f59e0b; background: #fffbeb; padding: 8px 10px;
                      margin-bottom: 10px; border-radius: 4px; color: #1f2937; }
#sources .src-title { margin: 4px 0 8px; font-weight: 600; }
.src-empty { color: #6b7280; padding: 8px; }
.empty-state { border: 1px dashed #f59e0b; background: #fffbeb; color: #1f2937; padding: 10px 14px;
               border-radius: 8px; }
"""


# ---- formatting (pure functions) ---------------------------------------------------------------

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
        parts.append(escape_markdown(answer.text[pos:m.start()]).rstrip(" "))
        n = int(m.group(1))
        c = by_n.get(n)
        parts.append(cite_badge(n, f"{c.title} ({c.source})" if c else ""))
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
        while a > 0 and not document_text[a - 1].isspace() and citation.start - a < CONTEXT_CHARS + 40:
            a -= 1
        while b < len(document_text) and not document_text[b].isspace() and b - citation.end < CONTEXT_CHARS + 40:
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


# ---- uploads -----------------------------------------------------------------------------------

def resolve_upload_dir(flag: str | Path | None = None, env: dict | None = None) -> Path:
    """`--upload-dir`, else RAG_UPLOAD_DIR, else `uploads/` in the working directory."""
    env = os.environ if env is None else env
    return Path(flag or env.get("RAG_UPLOAD_DIR") or "uploads")


def safe_upload_name(name: str) -> str:
    """A plain file name: no folders, no leading dot (hidden files are not indexed), no odd characters."""
    base = Path(str(name).replace("\\", "/")).name
    stem, suffix = os.path.splitext(base)
    stem = re.sub(r"[^\w\- ]+", "_", stem).strip(" ._") or "upload"
    return f"{stem[:100]}{suffix.lower()}"


def copy_uploads(files: Iterable[str | Path], upload_dir: Path, taken: set[str]) -> tuple[list[str], dict[str, str]]:
    """Copy the readable uploaded files into `upload_dir`; returns (names added, {name: reason} skipped).

    Each file is loaded first, so an unreadable one never lands in the folder. A name already used by
    a document that is not an upload (in `taken`) gets an `upload-` prefix: an upload never replaces
    a corpus document. Uploading a file under an existing upload's name replaces that upload.
    """
    from .loaders import LoaderError, load_file

    upload_dir.mkdir(parents=True, exist_ok=True)
    added: list[str] = []
    skipped: dict[str, str] = {}
    for f in files:
        src = Path(f)
        name = safe_upload_name(src.name)
        if Path(name).suffix not in UPLOAD_TYPES:
            skipped[src.name] = f"unsupported file type; use one of {', '.join(UPLOAD_TYPES)}"
            continue
        try:
            load_file(src, name)
        except LoaderError as e:
            skipped[src.name] = str(e)
            continue
        if name in taken and not (upload_dir / name).exists():
            name = f"upload-{name}"
        try:
            shutil.copyfile(src, upload_dir / name)
        except OSError as e:
            skipped[src.name] = f"cannot copy: {e.strerror or e}"
            continue
        added.append(name)
    return added, skipped


# ---- the app -----------------------------------------------------------------------------------

class WebApp:
    """One shared Assistant for every browser session and API call; uploads are serialised."""

    def __init__(self, settings: Settings | None = None, upload_dir: str | Path | None = None, assistant=None):
        self.settings = settings or Settings.load()
        self.upload_dir = Path(upload_dir) if upload_dir else resolve_upload_dir()
        self.assistant = assistant
        self.load_error: str | None = None
        self._write_lock = threading.Lock()
        if self.assistant is None:
            self.try_load()

    def try_load(self) -> bool:
        from .assistant import Assistant
        from .store import IndexStoreError

        try:
            assistant = Assistant.load(self.settings.index_dir, self.settings)
            assistant.embedder.embed_query("warm up")  # load the model now, not on the first question
            self.assistant, self.load_error = assistant, None
        except IndexStoreError as e:
            self.load_error = str(e)
        return self.assistant is not None

    def _refresh(self) -> None:
        if self.assistant is None:
            self.try_load()
        else:
            self.assistant.reload()

    def status_markdown(self) -> str:
        return render_status(self.assistant.status() if self.assistant else None, self.settings.index_dir)

    def answerers(self) -> list[str]:
        return ["extractive", "llm"] if self.assistant is not None and self.assistant.llm is not None \
            else ["extractive"]

    # -- chat ---------------------------------------------------------------------------------
    def respond(self, message: str, chat: list | None, history: list | None, top_k: float = 8,
                mode: str = "hybrid", answerer: str = "extractive") -> Iterator[tuple[str, list, str, list]]:
        """Stream one answer: yields (textbox, chat messages, sources HTML, assistant history)."""
        from .assistant import QuestionError

        chat = list(chat or [])
        history = list(history or [])
        message = (message or "").strip()
        if not message:
            yield "", chat, SOURCES_EMPTY if not chat else _NO_CHANGE, history
            return
        chat.append({"role": "user", "content": escape_markdown(message)})
        assistant = self.assistant
        if assistant is None:
            chat.append({"role": "assistant", "content": "There is no index yet: build it or upload documents "
                                                         "first (see the note above)."})
            yield "", chat, render_empty_state(self.settings.index_dir, self.settings.corpus_dir,
                                               self.load_error), history
            return
        chat.append({"role": "assistant", "content": "…"})
        yield "", chat, SOURCES_SEARCHING, history
        final: Answer | None = None
        try:
            for partial, _ in assistant.stream_answer(message, history, top_k=int(top_k), mode=mode,
                                                      answerer=answerer or None):
                final = partial
                chat[-1] = {"role": "assistant", "content": render_answer_markdown(partial)}
                yield "", chat, render_sources(partial, assistant.store), history
        except (QuestionError, ValueError) as e:
            chat[-1] = {"role": "assistant", "content": f"⚠️ {escape_markdown(str(e))}"}
            yield "", chat, SOURCES_EMPTY, history
            return
        if final is not None:
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": final.text}]
            yield "", chat, render_sources(final, assistant.store), history

    # -- API ----------------------------------------------------------------------------------
    def ask(self, question: str, top_k: int = 8, mode: str = "hybrid") -> dict:
        """Answer one question with citations; returns the JSON object of `rag ask --json`."""
        import gradio as gr

        from .assistant import QuestionError

        assistant = self.assistant
        if assistant is None:
            raise gr.Error(f"no index in {self.settings.index_dir}; build one with `rag index`")
        if mode not in MODES:
            raise gr.Error(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        try:
            top_k = int(top_k)
        except (TypeError, ValueError):
            raise gr.Error(f"top_k must be a whole number, not {top_k!r}") from None
        if not 1 <= top_k <= MAX_TOP_K:
            raise gr.Error(f"top_k must be between 1 and {MAX_TOP_K}")
        try:
            return assistant.answer(question, top_k=top_k, mode=mode).to_dict()
        except QuestionError as e:
            raise gr.Error(str(e)) from None

    # -- uploads and building -------------------------------------------------------------------
    def add_files(self, files: list | None, progress=None) -> tuple[str, str]:
        """Copy uploads into the upload folder, index that folder next to what is indexed, reload.
        Returns (report Markdown, status Markdown). Unreadable files are reported, not fatal."""
        from .indexer import build_index
        from .loaders import LoaderError
        from .store import IndexStoreError

        files = [f for f in (files or []) if f]
        if not files:
            return "No files were uploaded.", self.status_markdown()
        with self._write_lock:
            if progress is not None:
                progress(0.05, desc="Checking and copying files")
            taken: set[str] = set()
            if self.assistant is not None:
                uploaded = {p.name for p in self.upload_dir.iterdir()} if self.upload_dir.is_dir() else set()
                taken = set(self.assistant.store.documents()) - uploaded
            added, skipped = copy_uploads(files, self.upload_dir, taken)
            if not added:
                return render_upload_report([], skipped), self.status_markdown()
            if progress is not None:
                progress(0.2, desc=f"Indexing {len(added)} file(s)")
            try:
                summary = build_index([self.upload_dir], self.settings.index_dir, self.settings, prune=False,
                                      progress=progress is not None)
            except (LoaderError, IndexStoreError, OSError, ValueError) as e:
                return render_upload_report([], skipped, error=str(e)), self.status_markdown()
            for name in [a for a in added if a in summary.skipped]:
                skipped[name] = summary.skipped[name]
                added.remove(name)
                (self.upload_dir / name).unlink(missing_ok=True)
            if progress is not None:
                progress(0.9, desc="Reloading the index")
            self._refresh()
            return render_upload_report(added, skipped, summary), self.status_markdown()

    def build_from_corpus(self, progress=None) -> tuple[str, str]:
        """Index the corpus folder (keeping anything already indexed); returns (message, status)."""
        from .indexer import build_index
        from .loaders import LoaderError
        from .store import IndexStoreError

        with self._write_lock:
            if progress is not None:
                progress(0.1, desc=f"Indexing {self.settings.corpus_dir}")
            try:
                summary = build_index([self.settings.corpus_dir], self.settings.index_dir, self.settings,
                                      prune=False, progress=progress is not None)
            except (LoaderError, IndexStoreError, OSError, ValueError) as e:
                return f"Building the index failed: {escape(str(e))}", self.status_markdown()
            self._refresh()
            return (f"Indexed {summary.documents} documents ({summary.chunks} chunks) from "
                    f"`{escape(str(self.settings.corpus_dir))}`."), self.status_markdown()


_NO_CHANGE = object()


def build_app(settings: Settings | None = None, upload_dir: str | Path | None = None, assistant=None,
              webapp: WebApp | None = None):
    """The Gradio Blocks app (queued: 8 concurrent answers). Launch with `launch(demo)` for the CSS."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    app = webapp or WebApp(settings, upload_dir, assistant)
    s = app.settings

    def respond(message, chat, history, top_k, mode, answerer):
        for box, messages, sources, hist in app.respond(message, chat, history, top_k, mode, answerer):
            yield box, messages, gr.skip() if sources is _NO_CHANGE else sources, hist

    def add_files(files, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (Gradio's idiom)
        report, status = app.add_files([getattr(f, "name", f) for f in files or []], progress)
        return report, status, _empty_update()

    def build(progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        message, status = app.build_from_corpus(progress)
        return message, status, _empty_update()

    def _empty_update():
        missing = app.assistant is None
        return gr.update(value=render_empty_state(s.index_dir, s.corpus_dir, app.load_error) if missing else "",
                         visible=missing)

    def refresh():
        missing = app.assistant is None
        return (app.status_markdown(), _empty_update(), gr.update(visible=missing),
                gr.update(choices=app.answerers()))

    def ask(question: str, top_k: int = 8, mode: str = "hybrid") -> dict:
        """Answer a question over the indexed documents; returns the JSON object of `rag ask --json`:
        question, answer, abstained, citations (n, source, title, start, end, quote, score), passages."""
        return app.ask(question, top_k, mode)

    missing = app.assistant is None
    with gr.Blocks(title="Cited Q&A over your documents") as demo:
        gr.Markdown("## Ask your documents\nEvery answer sentence quotes a document; the numbered badges "
                    "point to the sources panel, where the quoted span is highlighted.")
        status = gr.Markdown(app.status_markdown(), elem_id="index-status")
        empty = gr.HTML(render_empty_state(s.index_dir, s.corpus_dir, app.load_error) if missing else "",
                        visible=missing, elem_id="empty-state")
        build_button = gr.Button(f"Build index from {s.corpus_dir}", visible=missing, elem_id="build-index")
        build_message = gr.Markdown()
        history = gr.State([])
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", elem_id="chat", height=460, latex_delimiters=[],
                                     feedback_options=None, buttons=["copy"],
                                     placeholder="Ask about the documents, or pick an example below.")
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a question about the documents…", show_label=False,
                                          scale=5, elem_id="question", max_lines=4)
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="ask")
                gr.Examples(EXAMPLES, inputs=question, label="Example questions")
                clear = gr.Button("New conversation", size="sm", elem_id="clear")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML(SOURCES_EMPTY, elem_id="sources")
        with gr.Row():
            with gr.Accordion("Settings", open=False, elem_id="settings"):
                top_k = gr.Slider(1, MAX_TOP_K, value=min(s.top_k, MAX_TOP_K), step=1,
                                  label="Passages retrieved (top-k)")
                mode = gr.Radio(list(MODES), value=s.mode if s.mode in MODES else "hybrid", label="Retrieval mode")
                answerer = gr.Radio(app.answerers(), value="extractive", label="Answerer",
                                    info="extractive quotes the documents; llm needs RAG_LLM_URL")
            with gr.Accordion("Add documents", open=False, elem_id="add-documents"):
                files = gr.File(file_count="multiple", file_types=list(UPLOAD_TYPES), label="Upload txt, md, html, "
                                "pdf or docx files: they are indexed next to the existing documents",
                                elem_id="upload")
                upload_report = gr.Markdown(elem_id="upload-report")

        chat_inputs = [question, chatbot, history, top_k, mode, answerer]
        chat_outputs = [question, chatbot, sources, history]
        question.submit(respond, chat_inputs, chat_outputs, api_visibility="private")
        send.click(respond, chat_inputs, chat_outputs, api_visibility="private")
        clear.click(lambda: ("", [], SOURCES_EMPTY, []), None, chat_outputs, api_visibility="private",
                    queue=False)
        chatbot.clear(lambda: (SOURCES_EMPTY, []), None, [sources, history], api_visibility="private",
                      queue=False)
        files.upload(add_files, files, [upload_report, status, empty], api_visibility="private")
        build_button.click(build, None, [build_message, status, empty], api_visibility="private").then(
            refresh, None, [status, empty, build_button, answerer], api_visibility="private")
        demo.load(refresh, None, [status, empty, build_button, answerer], api_visibility="private")
        gr.api(ask, api_name="ask")
    demo.queue(default_concurrency_limit=8)
    demo.rag_webapp = app  # the shared state, for embedding and tests
    return demo


def launch(demo, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, block: bool = True):
    """Serve `demo` on host:port (no share link, no analytics); returns the local URL."""
    import gradio as gr

    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                            quiet=True, show_error=True, ssr_mode=False, css=CSS, theme=gr.themes.Default(),
                            footer_links=["api"], max_file_size="50mb", mcp_server=False)
    if block:
        demo.block_thread()
    return url


# ---- command line --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 exposes the app to your network)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--index-dir", type=Path, help="the index to answer from (default: index/)")
    parser.add_argument("--corpus-dir", type=Path,
                        help="the folder the 'Build index' button indexes (default: corpus/)")
    parser.add_argument("--upload-dir", type=Path,
                        help="where uploaded files are kept (default: RAG_UPLOAD_DIR or uploads/)")
    return parser


def register_serve_command(sub) -> None:
    """Add `rag serve` to the `rag` command line (called through cli._EXTRA_COMMANDS)."""
    p = sub.add_parser("serve", help="serve the web app (chat, sources, uploads) and the /ask HTTP API")
    add_arguments(p)
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings.load().replace(index_dir=args.index_dir, corpus_dir=args.corpus_dir)
    if args.host not in LOCAL_HOSTS:
        print(f"warning: binding {args.host}: anyone who can reach this machine on port {args.port} can ask "
              "questions and upload files (there is no login)", file=sys.stderr, flush=True)
    demo = build_app(settings, resolve_upload_dir(args.upload_dir))
    app: WebApp = demo.rag_webapp
    if app.assistant is None:
        print(f"no index in {settings.index_dir}: the page explains how to build one", file=sys.stderr, flush=True)
    url = launch(demo, args.host, args.port, block=False)
    if args.host not in LOCAL_HOSTS:
        url = f"http://{args.host}:{args.port}/"
    print(f"Serving on {url} (uploads go to {app.upload_dir}; Ctrl-C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python app.py [--host H] [--port P] [--index-dir D] [--upload-dir U]`: same as `rag serve`."""
    from .cli import main as cli_main

    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])
