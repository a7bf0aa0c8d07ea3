"""The LangChain integration: LangChain's own standard retriever tests, k/search_type/filter overrides,
the Runnable's typed schemas and streaming, and a package that does not import LangChain until asked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, subprocess_env
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.assistant import Assistant
from rag.integrations.langchain import AnswerRequest, RagRetriever
from rag.store import IndexStoreError

TOUR_Q = "Which minister toured AI hotspots in Shanghai and Beijing?"


@pytest.fixture(scope="module")
def assistant(corpus_index, settings) -> Assistant:
    return Assistant.load(corpus_index[0], settings)


class TestRagRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's standard retriever tests against a retriever built straight from an index folder."""

    @pytest.fixture(autouse=True)
    def _index(self, corpus_index):
        self.index_dir = corpus_index[0]

    @property
    def retriever_constructor(self) -> type[RagRetriever]:
        return RagRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index_dir": self.index_dir, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return TOUR_Q


def test_retriever_from_index_takes_k_and_an_invoke_override(corpus_index):
    retriever = RagRetriever.from_index(corpus_index[0], k=2)
    assert len(retriever.invoke(TOUR_Q)) == 2
    assert len(retriever.invoke(TOUR_Q, k=5)) == 5
    assert len(retriever.invoke(TOUR_Q)) == 2  # the override was for one call
    docs = retriever.invoke(TOUR_Q, k=3, search_type="bm25", filter={"source": "*meeting*"})
    assert len(docs) == 3 and all(d.metadata["source"].endswith("meeting.md") or "meeting" in d.metadata["source"]
                                  for d in docs)
    assert all(isinstance(d, Document) for d in docs)


def test_search_kwargs_and_score_threshold_work_like_a_vector_store_retriever(corpus_index):
    base = RagRetriever.from_index(corpus_index[0], search_type="similarity", search_kwargs={"k": 6})
    docs = base.invoke(TOUR_Q)
    assert len(docs) == 6
    dense = RagRetriever.from_index(corpus_index[0], search_type="dense", k=6).invoke(TOUR_Q)
    assert [d.id for d in docs] == [d.id for d in dense]  # "similarity" is dense search
    cut = sorted(d.metadata["score"] for d in docs)[3]
    kept = RagRetriever.from_index(corpus_index[0], search_type="dense", k=6, score_threshold=cut).invoke(TOUR_Q)
    assert [d.id for d in kept] == [d.id for d in docs if d.metadata["score"] >= cut]
    assert len(kept) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "top_k"), ({"k": 51}, "between 1 and 50"), ({"search_type": "mmr"}, "search_type"),
    ({"search_kwargs": {"fetch_k": 20}}, "search_kwargs"),
])
def test_bad_retriever_arguments_are_one_line_value_errors(corpus_index, kwargs, message):
    with pytest.raises(ValueError, match=message):
        RagRetriever.from_index(corpus_index[0], **kwargs)


def test_retriever_over_a_missing_index_names_the_problem(tmp_path):
    with pytest.raises(IndexStoreError):
        RagRetriever(index_dir=tmp_path / "nothing-here", k=2)


def test_runnable_has_typed_input_and_output_schemas(assistant):
    runnable = assistant.as_runnable()
    inp = runnable.get_input_schema().model_json_schema()
    assert inp["required"] == ["question"] and "history" in inp["properties"]
    out = runnable.get_output_schema().model_json_schema()
    text = json.dumps(out)
    for field in ("answer", "abstained", "citations", "short_answer", "passages", "start", "end", "quote"):
        assert f'"{field}"' in text, field
    typed = runnable.invoke(AnswerRequest(question=TOUR_Q))
    assert typed == runnable.invoke({"question": TOUR_Q}) == runnable.invoke(TOUR_Q)


async def test_runnable_streams_growing_answers_through_langchain_callbacks(assistant):
    runnable = assistant.as_runnable()
    events = [e async for e in runnable.astream_events({"question": TOUR_Q}, version="v2")]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "on_chain_start" and kinds[-1] == "on_chain_end"
    streamed = [e["data"]["chunk"]["answer"] for e in events if e["event"] == "on_chain_stream"]
    assert streamed == [c["answer"] for c in runnable.stream(TOUR_Q)]  # each step, as the sync stream has it
    assert [len(a) for a in streamed] == sorted(len(a) for a in streamed)
    final = runnable.invoke({"question": TOUR_Q})
    assert streamed[-1] == final["answer"]
    assert [c async for c in runnable.astream(TOUR_Q)][-1] == final


@pytest.mark.slow
def test_the_library_answers_without_importing_langchain_or_gradio(corpus_index):
    code = ("import sys, rag; a = rag.Assistant.load(sys.argv[1]); ans = a.answer(sys.argv[2]); "
            "assert not ans.abstained; "
            "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
            "('langchain', 'langchain_core', 'langchain_community', 'gradio')}))")
    out = subprocess.run([sys.executable, "-c", code, str(corpus_index[0]), TOUR_Q], capture_output=True, text=True,
                         env=subprocess_env(), cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
