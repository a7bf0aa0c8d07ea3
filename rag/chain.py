"""LangChain wiring: a Runnable that takes {"question", "history"} and returns the answer dict."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.runnables import RunnableGenerator, RunnableLambda


def answer_runnable(assistant) -> Any:
    """`invoke` returns `Answer.to_dict()`; `stream` yields dicts whose "answer" grows, the last complete."""

    def _args(inp: Any) -> tuple[str, list | None]:
        if isinstance(inp, str):
            return inp, None
        if not isinstance(inp, dict) or "question" not in inp:
            raise ValueError('the runnable takes {"question": str, "history": [...]}')
        return inp["question"], inp.get("history")

    def invoke(inp: Any) -> dict:
        question, history = _args(inp)
        return assistant.answer(question, history).to_dict()

    def stream(inputs: Iterator[Any]) -> Iterator[dict]:
        for inp in inputs:
            question, history = _args(inp)
            for partial, _ in assistant.stream_answer(question, history):
                yield partial.to_dict()

    return RunnableLambda(invoke, name="rag_answer").with_types(input_type=dict, output_type=dict) \
        if False else _StreamingRunnable(invoke, stream)


class _StreamingRunnable(RunnableLambda):
    """RunnableLambda for invoke/batch, a generator for stream."""

    def __init__(self, invoke, stream):
        super().__init__(invoke, name="rag_answer")
        self._gen = RunnableGenerator(stream, name="rag_answer_stream")

    def stream(self, input: Any, config=None, **kwargs) -> Iterator[dict]:  # noqa: A002
        yield from self._gen.stream(input, config, **kwargs)
