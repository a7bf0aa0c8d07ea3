"""The web app (`rag serve`, `python app.py`): a chat with streamed, cited answers, a sources panel
that highlights each cited span inside its passage, uploads that are indexed at once, and an HTTP API
(`/ask`, the JSON of `rag ask --json`).

This module is the layout and the event wiring only: what is shown comes from `rag.render` (plain
functions, HTML-escaped), and uploads, index builds and input checks are the library's
(`Assistant.add_files`, `Assistant.update`, `config.check_top_k`). Gradio is imported only by
`build_app`, `launch` and `WebApp.ask`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from .answering import Answer
from .config import (
    ANSWERERS,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EXTENSIONS,
    LOCAL_HOSTS,
    MAX_TOP_K,
    MODES,
    Settings,
    check_mode,
    check_top_k,
)
from .render import (
    SOURCES_EMPTY,
    SOURCES_SEARCHING,
    escape,
    escape_markdown,
    render_answer_markdown,
    render_empty_state,
    render_sources,
    render_status,
    render_upload_report,
)
from .uploads import resolve_upload_dir

__all__ = ["CSS", "EXAMPLES", "WebApp", "build_app", "launch", "serve"]

EXAMPLES = [
    "Which minister toured AI hotspots in Shanghai and Beijing?",
    "What are the five points of the MIIT AI action plan?",
    "How much support does Beijing's plan offer for new equipment?",
]

CSS = """
.cite { display: inline-block; font-size: 0.7em; line-height: 1.2; vertical-align: super; margin-left: 1px;
        padding: 0 4px; border-radius: 6px; background: #e0e7ff; color: #3730a3; font-weight: 600; }
.verified-quote { display: block; color: #4b5563; font-style: italic; border-left: 3px solid #c7d2fe;
                  padding-left: 6px; margin: 2px 0 6px; }
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
            return False
        self._index_pending_uploads()
        return True

    def _index_pending_uploads(self) -> None:
        """Uploads saved but not indexed (the server stopped in between) are indexed now: none is lost."""
        from .loaders import LoaderError
        from .store import IndexStoreError

        if not self.upload_dir.is_dir():
            return
        indexed = self.assistant.store.documents()
        if any(p.is_file() and p.name not in indexed for p in self.upload_dir.iterdir()):
            try:
                self.assistant.update([self.upload_dir])
            except (LoaderError, IndexStoreError, OSError, ValueError) as e:
                logging.getLogger(__name__).warning("could not index the pending uploads: %s", e)

    def empty_state_html(self) -> str:
        return render_empty_state(self.settings.index_dir, self.settings.corpus_dir, self.load_error)

    def status_markdown(self) -> str:
        return render_status(self.assistant.status() if self.assistant else None, self.settings.index_dir)

    def answerers(self) -> list[str]:
        return list(ANSWERERS) if self.assistant is not None and self.assistant.llm is not None \
            else [ANSWERERS[0]]

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
            yield "", chat, self.empty_state_html(), history
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

        assistant = self.assistant
        if assistant is None:
            raise gr.Error(f"no index in {self.settings.index_dir}; build one with `rag index`")
        try:
            return assistant.answer(question, top_k=check_top_k(top_k), mode=check_mode(mode)).to_dict()
        except ValueError as e:  # QuestionError too: a bad question, top_k or mode, said in one line
            raise gr.Error(str(e)) from None
        except Exception:  # the caller gets a message, never internal exception text; the log keeps it
            logging.getLogger(__name__).exception("answering %r failed", question)
            raise gr.Error("the question could not be answered (an internal error; see the server log)") from None

    # -- uploads and building (the library does the work: Assistant.add_files / update / build) ----
    def add_files(self, files: list | None, progress=None) -> tuple[str, str]:
        """Index uploaded files next to what is indexed. Returns (report Markdown, status Markdown).
        Unreadable files are reported, not fatal."""
        files = [f for f in (files or []) if f]
        if not files:
            return "No files were uploaded.", self.status_markdown()
        if progress is not None:
            progress(0.1, desc=f"Checking and indexing {len(files)} file(s)")
        report, error = self._write(lambda: self._index_uploads(files, progress is not None))
        if error is not None:
            return render_upload_report([], {}, error=error), self.status_markdown()
        return render_upload_report(report.added, report.skipped, report.summary), self.status_markdown()

    def build_from_corpus(self, progress=None) -> tuple[str, str]:
        """Index the corpus folder (keeping anything already indexed); returns (message, status)."""
        corpus = self.settings.corpus_dir
        if progress is not None:
            progress(0.1, desc=f"Indexing {corpus}")
        summary, error = self._write(lambda: self._index_corpus(corpus, progress is not None))
        if error is not None:
            return f"Building the index failed: {escape(error)}", self.status_markdown()
        return (f"Indexed {summary.documents} documents ({summary.chunks} chunks) from "
                f"`{escape(str(corpus))}`."), self.status_markdown()

    def _write(self, work):
        """Run one index write at a time: (its result, None), or (None, the one-line error)."""
        from .loaders import LoaderError
        from .store import IndexStoreError

        with self._write_lock:
            try:
                return work(), None
            except (LoaderError, IndexStoreError, OSError, ValueError) as e:
                return None, str(e)

    def _index_uploads(self, files: list, progress: bool):
        from .uploads import add_files

        if self.assistant is not None:
            return self.assistant.add_files(files, self.upload_dir, progress=progress)
        report = add_files(files, self.upload_dir, self.settings, progress=progress)
        self.try_load()
        return report

    def _index_corpus(self, corpus: Path, progress: bool):
        from .assistant import Assistant

        if self.assistant is not None:
            return self.assistant.update([corpus], progress=progress)
        self.assistant, summary = Assistant.build([corpus], self.settings, prune=False, progress=progress)
        self.load_error = None
        return summary


_NO_CHANGE = object()


CONCURRENT_ANSWERS = 8  # answers computed at once (Gradio queue); more only queue inside the model (not tuned)


def build_app(settings: Settings | None = None, upload_dir: str | Path | None = None, assistant=None,
              webapp: WebApp | None = None):
    """The Gradio Blocks app (queued). Launch with `launch(demo)` for the CSS."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    app = webapp or WebApp(settings, upload_dir, assistant)
    with gr.Blocks(title="Cited Q&A over your documents") as demo:
        ui = _layout(gr, app)
        _wire(gr, demo, ui, app)
    demo.queue(default_concurrency_limit=CONCURRENT_ANSWERS, max_size=max(1, app.settings.max_queued))
    demo.rag_webapp = app  # the shared state, for embedding and tests
    return demo


def _layout(gr, app: WebApp) -> SimpleNamespace:
    """The components, in page order."""
    s = app.settings
    missing = app.assistant is None
    ui = SimpleNamespace()
    gr.Markdown("## Ask your documents\nEvery answer sentence quotes a document; the numbered badges "
                "point to the sources panel, where the quoted span is highlighted.")
    ui.status = gr.Markdown(app.status_markdown(), elem_id="index-status")
    ui.empty = gr.HTML(app.empty_state_html() if missing else "", visible=missing, elem_id="empty-state")
    ui.build_button = gr.Button(f"Build index from {s.corpus_dir}", visible=missing, elem_id="build-index")
    ui.build_message = gr.Markdown()
    ui.history = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            ui.chatbot = gr.Chatbot(label="Chat", elem_id="chat", height=460, latex_delimiters=[],
                                    feedback_options=None, buttons=["copy"],
                                    placeholder="Ask about the documents, or pick an example below.")
            with gr.Row():
                ui.question = gr.Textbox(placeholder="Ask a question about the documents…", show_label=False,
                                         scale=5, elem_id="question", max_lines=4)
                ui.send = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="ask")
            gr.Examples(EXAMPLES, inputs=ui.question, label="Example questions")
            ui.clear = gr.Button("New conversation", size="sm", elem_id="clear")
        with gr.Column(scale=2):
            gr.Markdown("### Sources")
            ui.sources = gr.HTML(SOURCES_EMPTY, elem_id="sources")
    with gr.Row():
        with gr.Accordion("Settings", open=False, elem_id="settings"):
            ui.top_k = gr.Slider(1, MAX_TOP_K, value=min(s.top_k, MAX_TOP_K), step=1,
                                 label="Passages retrieved (top-k)")
            ui.mode = gr.Radio(list(MODES), value=s.mode if s.mode in MODES else MODES[0], label="Retrieval mode")
            ui.answerer = gr.Radio(app.answerers(), value=ANSWERERS[0], label="Answerer",
                                   info="extractive quotes the documents; llm needs RAG_LLM_GGUF or RAG_LLM_URL")
        with gr.Accordion("Add documents", open=False, elem_id="add-documents"):
            ui.files = gr.File(file_count="multiple", file_types=list(EXTENSIONS), label="Upload txt, md, html, "
                               "pdf or docx files: they are indexed next to the existing documents",
                               elem_id="upload")
            ui.upload_report = gr.Markdown(elem_id="upload-report")
    return ui


def _wire(gr, demo, ui: SimpleNamespace, app: WebApp) -> None:
    """The events: chat, clearing, uploads, building, page load, and the /ask API."""

    def respond(message, chat, history, top_k, mode, answerer):
        for box, messages, sources, hist in app.respond(message, chat, history, top_k, mode, answerer):
            yield box, messages, gr.skip() if sources is _NO_CHANGE else sources, hist

    def empty_update():
        missing = app.assistant is None
        return gr.update(value=app.empty_state_html() if missing else "", visible=missing)

    def add_files(files, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (Gradio's idiom)
        report, status = app.add_files([getattr(f, "name", f) for f in files or []], progress)
        return report, status, empty_update()

    def build(progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        message, status = app.build_from_corpus(progress)
        return message, status, empty_update()

    def refresh():
        return (app.status_markdown(), empty_update(), gr.update(visible=app.assistant is None),
                gr.update(choices=app.answerers()))

    def ask(question: str, top_k: int = 8, mode: str = "hybrid") -> dict:
        """Answer a question over the indexed documents; returns the JSON object of `rag ask --json`:
        question, answer, abstained, citations (n, source, title, start, end, quote, score), passages."""
        return app.ask(question, top_k, mode)

    private = {"api_visibility": "private"}
    chat_inputs = [ui.question, ui.chatbot, ui.history, ui.top_k, ui.mode, ui.answerer]
    chat_outputs = [ui.question, ui.chatbot, ui.sources, ui.history]
    ui.question.submit(respond, chat_inputs, chat_outputs, **private)
    ui.send.click(respond, chat_inputs, chat_outputs, **private)
    ui.clear.click(lambda: ("", [], SOURCES_EMPTY, []), None, chat_outputs, queue=False, **private)
    ui.chatbot.clear(lambda: (SOURCES_EMPTY, []), None, [ui.sources, ui.history], queue=False, **private)
    ui.files.upload(add_files, ui.files, [ui.upload_report, ui.status, ui.empty], **private)
    page = [ui.status, ui.empty, ui.build_button, ui.answerer]
    ui.build_button.click(build, None, [ui.build_message, ui.status, ui.empty], **private).then(
        refresh, None, page, **private)
    demo.load(refresh, None, page, **private)
    gr.api(ask, api_name="ask")


def launch(demo, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, block: bool = True,
           auth: tuple[str, str] | None = None):
    """Serve `demo` on host:port (no share link, no analytics; a login when `auth`); returns the local URL."""
    import gradio as gr

    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                            quiet=True, show_error=True, auth=auth, ssr_mode=False, css=CSS, theme=gr.themes.Default(),
                            footer_links=["api"], max_file_size="50mb", mcp_server=False)
    if block:
        demo.block_thread()
    return url


# ---- serving --------------------------------------------------------------------------------------

def serve(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          upload_dir: str | Path | None = None, auth: tuple[str, str] | None = None) -> int:
    """`rag serve`: build the app over settings.index_dir and serve it until Ctrl-C (behind a login when
    `auth` is given; the CLI requires one for any address but this machine's)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_app(settings, resolve_upload_dir(upload_dir))
    app: WebApp = demo.rag_webapp
    if app.assistant is None:
        print(f"no index in {settings.index_dir}: the page explains how to build one", file=sys.stderr, flush=True)
    url = launch(demo, host, port, block=False, auth=auth)
    if host not in LOCAL_HOSTS:
        url = f"http://{host}:{port}/"
    print(f"Serving on {url} (uploads go to {app.upload_dir}; Ctrl-C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    return 0
