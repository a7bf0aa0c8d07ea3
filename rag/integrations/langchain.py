"""Everything that imports LangChain: a standard retriever, the answer Runnable and a chat-model adapter.

    from rag.integrations.langchain import RagRetriever
    retriever = RagRetriever.from_index("index", k=4)          # or Assistant.as_retriever(k=4)
    docs = retriever.invoke("Who chaired the meeting?", k=2)  # per-call override, as LangChain expects

The rest of the package never imports this module at import time: `Assistant.as_retriever()`,
`Assistant.as_runnable()` and an Assistant given a LangChain chat model import it when used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from ..config import MODES, Settings, check_top_k
from ..retrieval import Hit, Retriever

# LangChain's vector-store retrievers say "similarity" for dense search; it means our "dense" here
SEARCH_TYPES = (*MODES, "similarity")


def hit_to_document(hit: Hit) -> Document:
    """A LangChain Document for a hit, its metadata naming the exact span (document metadata such as
    front matter comes first, so a `source:` or `rank:` field cannot overwrite the span fields)."""
    c = hit.chunk
    return Document(page_content=c.text, id=c.id, metadata={
        **{k: v for k, v in c.metadata.items() if k != "page_starts"},
        "source": c.source, "title": c.title, "start": c.start, "end": c.end, "chunk_id": c.id,
        "score": hit.score, "rank": hit.rank})


class RagRetriever(BaseRetriever):
    """A LangChain retriever over the hybrid (dense + BM25) search of one index.

    Documents carry source, title, start/end (char offsets into the source document), chunk_id, score and
    rank. Like LangChain's vector-store retrievers it takes `k`, `search_type` ("hybrid", "dense" or
    "similarity", "bm25"), `search_kwargs` ({"k", "filter", "score_threshold"}) and a `filter` (`source`
    and `title` are globs, other keys match front-matter fields, a list means any of them); `invoke(q,
    k=..., filter=..., search_type=..., score_threshold=...)` overrides them for one call.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any = None  # a rag.retrieval.Retriever; opened from index_dir when not given
    index_dir: str | Path | None = None
    k: int | None = None  # None: Settings.top_k
    search_type: str = "hybrid"
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    filter: dict[str, Any] | None = None
    score_threshold: float | None = None  # drop documents whose fused score is below this

    @model_validator(mode="after")
    def _open(self) -> RagRetriever:
        _search_type(self.search_type)
        unknown = set(self.search_kwargs) - {"k", "filter", "score_threshold"}
        if unknown:
            raise ValueError(f"unknown search_kwargs {sorted(unknown)}; use k, filter, score_threshold")
        for value in (self.k, self.search_kwargs.get("k")):
            if value is not None:
                check_top_k(value)
        if self.retriever is None:
            self.retriever = Retriever.open(self.index_dir)
        return self

    @classmethod
    def from_index(cls, index_dir: str | Path = "index", settings: Settings | None = None, **kwargs) -> RagRetriever:
        """A retriever over the index in `index_dir`; IndexStoreError if it is missing or unusable."""
        return cls(retriever=Retriever.open(index_dir, settings), index_dir=index_dir, **kwargs)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, filter: dict | None = None,
                                search_type: str | None = None, score_threshold: float | None = None
                                ) -> list[Document]:
        kw = self.search_kwargs
        top_k = next((v for v in (k, kw.get("k"), self.k) if v is not None), None)
        filters = next((v for v in (filter, kw.get("filter"), self.filter) if v is not None), None)
        threshold = next((v for v in (score_threshold, kw.get("score_threshold"), self.score_threshold)
                          if v is not None), None)
        mode = _search_type(search_type or self.search_type)
        hits = self.retriever.search(query, top_k=top_k, mode=mode, filters=filters)
        if threshold is not None:
            hits = [h for h in hits if h.score >= threshold]
        return [hit_to_document(h) for h in hits]


def _search_type(search_type: str) -> str:
    if search_type not in SEARCH_TYPES:
        raise ValueError(f"unknown search_type {search_type!r}; use one of {', '.join(SEARCH_TYPES)}")
    return "dense" if search_type == "similarity" else search_type


# ---- the answer Runnable -----------------------------------------------------------------------

class ChatTurn(TypedDict):
    role: str  # "user" or "assistant"
    content: str


class AnswerRequest(BaseModel):
    """The Runnable's input: a question and, for a follow-up, the conversation so far."""

    question: str
    history: list[ChatTurn] | None = None


class CitationDict(TypedDict):
    n: int
    source: str
    title: str
    start: int
    end: int
    quote: str
    score: float


class ShortAnswerDict(TypedDict):
    text: str
    n: int
    source: str
    start: int
    end: int


class PassageDict(TypedDict):
    rank: int
    source: str
    title: str
    start: int
    end: int
    text: str
    score: float


class AnswerDict(TypedDict, total=False):
    """The Runnable's output: `Answer.to_dict()`, the JSON of `rag ask --json`."""

    question: str
    answer: str
    short_answer: ShortAnswerDict | None
    abstained: bool
    citations: list[CitationDict]
    passages: list[PassageDict]
    parts: list[dict]


def _request(value: Any) -> tuple[str, list | None]:
    if isinstance(value, str):
        return value, None
    if isinstance(value, AnswerRequest):
        return value.question, value.history
    if not isinstance(value, dict) or "question" not in value:
        raise ValueError('the runnable takes {"question": str, "history": [...]} or a question string')
    return value["question"], value.get("history")


class AnswerRunnable(Runnable[AnswerRequest, AnswerDict]):
    """`invoke` returns the answer dict; `stream` yields dicts whose "answer" grows, the last complete."""

    def __init__(self, assistant: Any, name: str = "rag_answer"):
        self.assistant = assistant
        self.name = name

    def invoke(self, input: AnswerRequest | dict | str, config: RunnableConfig | None = None,
               **kwargs: Any) -> AnswerDict:
        return self._call_with_config(self._answer, input, config)

    def stream(self, input: AnswerRequest | dict | str, config: RunnableConfig | None = None,
               **kwargs: Any) -> Iterator[AnswerDict]:
        yield from self._transform_stream_with_config(iter([input]), self._stream, config)

    async def astream(self, input: AnswerRequest | dict | str, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[AnswerDict]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream, config):
            yield chunk

    async def _astream(self, values: AsyncIterator[Any]) -> AsyncIterator[AnswerDict]:
        # answering is CPU work in the library's own threads: each step runs off the event loop
        async for value in values:
            steps = self._stream(iter([value]))
            while (chunk := await asyncio.to_thread(next, steps, None)) is not None:
                yield chunk

    def _answer(self, value: Any) -> AnswerDict:
        question, history = _request(value)
        return self.assistant.answer(question, history).to_dict()

    def _stream(self, values: Iterator[Any]) -> Iterator[AnswerDict]:
        for value in values:
            question, history = _request(value)
            for partial, _ in self.assistant.stream_answer(question, history):
                yield partial.to_dict()


# ---- a LangChain chat model as the LLM answerer's backend ---------------------------------------

_MESSAGE_TYPES = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}


class LangChainChat:
    """Wraps a LangChain chat model (ChatOpenAI, ChatOllama, a fake model in tests) as a chat backend:
    `stream(messages)` yields the reply's text pieces."""

    def __init__(self, model: Any):
        self.model = model
        self.name = str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)

    def stream(self, messages: list[dict]) -> Iterator[str]:
        lc: list[BaseMessage] = [_MESSAGE_TYPES[m["role"]](m["content"]) for m in messages]
        for chunk in self.model.stream(lc):
            text = chunk.content if isinstance(chunk.content, str) else str(chunk.content)
            if text:
                yield text


def openai_chat(settings: Settings) -> LangChainChat:
    """A backend for the OpenAI-compatible endpoint settings.llm_url (Ollama, llama.cpp server, vLLM...)."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:  # depends on the optional extra
        raise ValueError("the LLM answerer needs the `llm` extra: pip install 'rag[llm]'") from None
    return LangChainChat(ChatOpenAI(base_url=settings.llm_url, model=settings.llm_model, api_key=settings.llm_api_key,
                                    temperature=0, timeout=OPENAI_TIMEOUT_SECONDS, max_retries=1))


OPENAI_TIMEOUT_SECONDS = 120  # a slow local server on CPU answers a 6-passage prompt well inside this (not tuned)


def is_langchain_model(obj: Any) -> bool:
    return isinstance(obj, Runnable)
