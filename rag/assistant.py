"""The Assistant: one opened index, its retriever and answerer, shared safely across threads."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from .answering import (
    NOT_IN_CORPUS,
    Answer,
    ExtractiveAnswerer,
    combine_answers,
    resolve_follow_up,
    split_question,
    stream_text,
)
from .backends import open_store
from .config import ANSWERERS, Settings, model_path
from .embeddings import get_embedder, model_info
from .indexer import BuildSummary, build_index
from .llm import ChatBackend, llm_answer, stream_llm_answer
from .retrieval import Reranker, Retriever
from .store import IndexStoreError, Store
from .uploads import UploadReport, add_files

MAX_QUESTION_CHARS = 2000


class QuestionError(ValueError):
    """The question cannot be asked as given (empty, too long)."""


def check_question(question: Any) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("the question is empty; ask something about the documents")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:  # a command-line argument that was not UTF-8 arrives with lone surrogates
        raise QuestionError("the question is not valid UTF-8 text") from None
    question = question.strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError(f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}")
    return question


class Assistant:
    """Answers questions over one index. Models and index load once; `answer` is thread-safe."""

    def __init__(self, store: Store, settings: Settings, reranker: Reranker | None = None, llm=None):
        self.settings = settings
        self.embedder = get_embedder(model_path(settings), settings.batch_size)
        self.reranker = reranker
        self.llm: ChatBackend | None = chat_backend(llm)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one upload or rebuild at a time in this process
        self._install(store)

    @classmethod
    def load(cls, index_dir: str | Path | None = None, settings: Settings | None = None,
             reranker: Reranker | None = None, llm=None) -> Assistant:
        """Open the index in `index_dir` (default: settings.index_dir); raises IndexStoreError if unusable.

        `llm` is a chat backend (`rag.llm.ChatBackend`) or a LangChain chat model. Without one, an LLM
        answers only when configured: settings.llm_gguf (a local GGUF file, in process) or
        settings.llm_url (an OpenAI-compatible server).
        """
        settings = (settings or Settings.load()).replace(index_dir=Path(index_dir) if index_dir else None)
        embedder = get_embedder(model_path(settings), settings.batch_size)
        store = open_store(settings.index_dir, model_info(embedder))
        return cls(store, settings, reranker, llm if llm is not None else configured_llm(settings))

    @classmethod
    def build(cls, paths: list[str | Path] | None = None, settings: Settings | None = None, prune: bool = True,
              progress: bool = False, **load_kw) -> tuple[Assistant, BuildSummary]:
        """Index `paths` (default: settings.corpus_dir) into settings.index_dir, then open it."""
        settings = settings or Settings.load()
        summary = build_index(paths or [settings.corpus_dir], settings.index_dir, settings, prune=prune,
                              progress=progress)
        return cls.load(settings.index_dir, settings, **load_kw), summary

    def _install(self, store: Store) -> None:
        retriever = Retriever(store, self.embedder, self.settings, self.reranker)
        extractive = ExtractiveAnswerer(self.embedder, retriever, self.settings)
        with self._lock:
            self.store, self.retriever, self.extractive = store, retriever, extractive

    def reload(self) -> None:
        """Pick up a rebuilt index (e.g. after uploads); answers in flight finish on the old one."""
        self._install(open_store(self.settings.index_dir, model_info(self.embedder)))

    def update(self, paths: list[str | Path], prune: bool = False, progress: bool = False) -> BuildSummary:
        """Index `paths` into this assistant's index (keeping other documents unless `prune`), then reload."""
        with self._write_lock:
            summary = build_index(paths, self.settings.index_dir, self.settings, prune=prune, progress=progress)
            self.reload()
            return summary

    def add_files(self, files: list[str | Path], upload_dir: str | Path, progress: bool = False) -> UploadReport:
        """Check and copy files into `upload_dir`, index them next to what is indexed, and reload.
        Unreadable files are reported in the result, not raised; a failing build raises."""
        with self._write_lock:
            report = add_files(files, upload_dir, self.settings, self.store.documents(), progress)
            if report.summary is not None:
                self.reload()
            return report

    def answer(self, question: str, history: list | None = None, top_k: int | None = None,
               mode: str | None = None, filters: dict | None = None, answerer: str | None = None) -> Answer:
        """Answer a question (resolving a follow-up against `history`), with citations or an abstention.

        `answerer` is "extractive" (default) or "llm" (needs a configured chat model). A question that
        coordinates several asks ("Who chaired it and what are the five points?") is answered part by
        part (`Answer.parts`); each part is cited or abstains on its own.
        """
        question = check_question(question)
        parts = split_question(question)
        if len(parts) > 1:
            # later parts often refer back to the first ("... and who managed it?"): resolved like a follow-up
            answers = [self._answer_one(p, history if i == 0 else [{"role": "user", "content": parts[0]}],
                                        top_k, mode, filters, answerer) for i, p in enumerate(parts)]
            return combine_answers(question, answers, resolve_follow_up(question, history))
        return self._answer_one(question, history, top_k, mode, filters, answerer)

    def _current(self) -> tuple[Retriever, ExtractiveAnswerer]:
        """The retriever and answerer of the index's current generation: a build by another process (or
        `rag index` while `rag serve` runs) is picked up at the next question, without a restart."""
        with self._lock:
            store = self.store
        if not store.is_current():
            try:
                self.reload()
            except IndexStoreError:  # a build half-way or a damaged new index: keep answering from the old one
                pass
        with self._lock:
            return self.retriever, self.extractive

    def _answer_one(self, question: str, history: list | None, top_k: int | None, mode: str | None,
                    filters: dict | None, answerer: str | None) -> Answer:
        retriever, extractive = self._current()
        query = resolve_follow_up(question, history)
        # one forward pass gives the query vector and the word-piece embeddings the answerer aligns
        vectors, tokens, pieces = self.embedder.embed_tokens([query])
        qv = vectors[0]
        hits = retriever.search(query, top_k=top_k, mode=mode, filters=filters, query_vector=qv)
        if self._use_llm(answerer):
            return llm_answer(self.llm, question, query, hits, self.embedder)
        return extractive.answer(question, hits, qv, query, query_tokens=(tokens[0], pieces[0]))

    def _use_llm(self, answerer: str | None) -> bool:
        if answerer not in ANSWERERS + (None,):
            raise ValueError(f"unknown answerer {answerer!r}; use one of {', '.join(ANSWERERS)}")
        if answerer == "llm" and self.llm is None:
            raise ValueError("no LLM is configured; set RAG_LLM_GGUF to a GGUF model file or RAG_LLM_URL "
                             "to an OpenAI-compatible endpoint")
        return answerer == "llm" or (answerer is None and self.llm is not None)

    def stream(self, question: str, history: list | None = None, **kw) -> Iterator[str]:
        """The answer text, piece by piece (sentence by sentence for the extractive answerer)."""
        for partial in self.stream_answer(question, history, **kw):
            yield partial[1]

    def stream_answer(self, question: str, history: list | None = None, **kw) -> Iterator[tuple[Answer, str]]:
        """(answer so far, new text) pairs; the last answer is complete. The new texts join into its text.

        The LLM answerer streams as the model generates (each sentence once verified); the extractive
        one answers, then yields the answer sentence by sentence."""
        question = check_question(question)
        if self._use_llm(kw.get("answerer")) and len(split_question(question)) == 1:
            query = resolve_follow_up(question, history)
            retriever, _ = self._current()
            hits = retriever.search(query, top_k=kw.get("top_k"), mode=kw.get("mode"),
                                         filters=kw.get("filters"))
            yield from stream_llm_answer(self.llm, question, query, hits, self.embedder)
            return
        final = self.answer(question, history, **kw)
        text = ""
        shown = 0
        for piece in stream_text(final):
            text += piece
            shown += 1
            partial = replace(final, text=text, citations=final.citations[:shown]) if final.citations else final
            yield partial, piece
        if text != final.text:
            yield final, ""

    def as_retriever(self, **kw):
        """A LangChain retriever over this index (`rag.integrations.langchain.RagRetriever`): k,
        search_type, search_kwargs, filter."""
        from .integrations.langchain import RagRetriever

        return RagRetriever(retriever=self.retriever, index_dir=self.settings.index_dir, **kw)

    def as_runnable(self):
        """A LangChain Runnable: {"question", "history"?} → the answer dict of `Answer.to_dict()`; streams."""
        from .integrations.langchain import AnswerRunnable

        return AnswerRunnable(self)

    def status(self) -> dict:
        self._current()
        m = self.store.manifest
        return {"documents": m["counts"]["documents"], "chunks": m["counts"]["chunks"],
                "model": m["model"]["name"], "updated": m.get("updated", ""), "index_dir": str(self.settings.index_dir)}


def chat_backend(llm: Any) -> ChatBackend | None:
    """`llm` as a chat backend: a LangChain chat model is wrapped, a backend is kept as it is."""
    runnables = sys.modules.get("langchain_core.runnables")  # a LangChain model means LangChain is loaded
    if llm is not None and runnables is not None and isinstance(llm, runnables.Runnable):
        from .integrations.langchain import LangChainChat

        return LangChainChat(llm)
    return llm


def configured_llm(settings: Settings) -> ChatBackend | None:
    """The LLM the settings name: a local GGUF file (first), an OpenAI-compatible URL, or none."""
    if settings.llm_gguf:
        from .local_llm import LocalGGUF

        return LocalGGUF(settings.llm_gguf)
    if settings.llm_url:
        from .integrations.langchain import openai_chat

        return openai_chat(settings)
    return None


_shared: dict[str, Assistant] = {}
_shared_lock = threading.Lock()


def shared_assistant(index_dir: str | Path = "index") -> Assistant:
    key = str(Path(index_dir).resolve())
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Assistant.load(index_dir)
        return _shared[key]


def answer(question: str, index_dir: str | Path = "index", history: list | None = None) -> Answer:
    """Answer one question over the index in `index_dir` (loaded once per process and reused)."""
    return shared_assistant(index_dir).answer(question, history)


__all__ = ["ANSWERERS", "Assistant", "answer", "NOT_IN_CORPUS", "QuestionError"]
