"""Chunking: offline tiktoken, exact offsets, size/overlap limits, and the embedder's 256-piece window.

The window check uses an independent tokenizer (transformers.AutoTokenizer on the model folder),
not the counter the chunker itself uses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import CORPUS, SCIFACT, subprocess_env

from rag.chunking import _CL100K_URL, chunk_text, encoding, ensure_tiktoken_cache, wordpiece_counter
from rag.loaders import load_paths

CACHE_NAME = hashlib.sha1(_CL100K_URL.encode()).hexdigest()


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail (instead of hanging the suite) when the block runs longer than `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

# Run in a child process: every way out to the network raises, then tiktoken is loaded.
OFFLINE_SCRIPT = textwrap.dedent("""
    import json, os, socket, sys

    class NetworkUsed(RuntimeError):
        pass

    def refuse(*args, **kwargs):
        raise NetworkUsed(f"network access attempted: {args[:2]}")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    import tiktoken

    # control: without the cache tiktoken goes to the network, and the guard stops it
    os.environ["TIKTOKEN_CACHE_DIR"] = sys.argv[1]
    try:
        tiktoken.get_encoding("cl100k_base")
        control = "loaded"
    except Exception as e:  # the guard's error, possibly wrapped by requests/urllib3
        control = []
        while e is not None:
            control.append(f"{type(e).__name__}: {e}")
            e = e.__cause__ or e.__context__
        control = " <- ".join(control)
    tiktoken.registry.ENCODINGS.clear()
    if sys.argv[2] == "unset":
        del os.environ["TIKTOKEN_CACHE_DIR"]

    import rag.chunking
    enc = rag.chunking.encoding()
    print(json.dumps({"control": control, "hello": enc.encode("hello"),
                      "cache_dir": os.environ["TIKTOKEN_CACHE_DIR"],
                      "roundtrip": enc.decode(enc.encode("Offline tokenizer works."))}))
""")


@pytest.mark.parametrize("mode", ["TIKTOKEN_CACHE_DIR", "unset"])
def test_tiktoken_encoding_loads_with_network_blocked_and_writes_cache_file(tmp_path, mode):
    cache = tmp_path / "tiktoken-cache"
    xdg = tmp_path / "xdg"
    env = subprocess_env(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
                         http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
                         XDG_CACHE_HOME=str(xdg))
    env.pop("TIKTOKEN_CACHE_DIR", None)
    result = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(cache), mode], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert "network access attempted" in out["control"]  # without the cache file, tiktoken is blocked
    assert out["hello"] == [15339]
    assert out["roundtrip"] == "Offline tokenizer works."
    expected_dir = cache if mode == "TIKTOKEN_CACHE_DIR" else xdg / "rag" / "tiktoken"
    assert out["cache_dir"] == str(expected_dir)
    assert (expected_dir / CACHE_NAME).is_file()


def test_ensure_tiktoken_cache_replaces_a_corrupt_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    (tmp_path / CACHE_NAME).write_bytes(b"not a tiktoken file")
    assert ensure_tiktoken_cache() == tmp_path
    data = (tmp_path / CACHE_NAME).read_bytes()
    assert hashlib.sha256(data).hexdigest() == "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    assert not list(tmp_path.glob("*.tmp*"))


# ---- exact offsets and limits ------------------------------------------------------------------

def _check_chunks(text: str, chunks, chunk_tokens: int, overlap: int) -> None:
    """Offsets exact, limits kept, order and ids right, and no non-space character lost."""
    enc = encoding()
    covered = bytearray(len(text))
    for n, c in enumerate(chunks):
        assert text[c.start:c.end] == c.text, (n, c.start, c.end)
        assert c.text == c.text.strip() and c.text
        assert c.position == n and c.id == f"{c.doc_id}:{n}"
        assert c.n_tokens == len(enc.encode_ordinary(c.text))
        assert c.n_tokens <= chunk_tokens, (n, c.n_tokens)
        covered[c.start:c.end] = b"\x01" * (c.end - c.start)
    lost = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not lost, f"{len(lost)} characters in no chunk, first at {lost[0]}"
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.start < b.start and a.end < b.end
        if b.start < a.end:  # shared text between neighbours stays within the overlap budget
            assert len(enc.encode_ordinary(text[b.start:a.end])) <= overlap


@pytest.fixture(scope="module")
def counter(model_dir):
    return wordpiece_counter(str(model_dir))


@pytest.fixture(scope="module")
def hf_tokenizer(model_dir):
    """The embedder's tokenizer loaded independently of rag.chunking."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def _wordpieces(tokenizer, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]]


def test_corpus_chunks_have_exact_offsets_respect_size_and_overlap_and_fit_the_window(
        settings, counter, hf_tokenizer):
    docs = load_paths([CORPUS]).documents
    assert len(docs) >= 2
    for doc in docs:
        chunks = chunk_text(doc.text, doc.source, settings.chunk_tokens, settings.chunk_overlap,
                            settings.max_wordpieces, counter)
        assert len(chunks) >= 2
        _check_chunks(doc.text, chunks, settings.chunk_tokens, settings.chunk_overlap)
        assert any(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False)), "no overlap at all"
        assert max(_wordpieces(hf_tokenizer, [c.text for c in chunks])) <= 256


def _tricky_texts() -> dict[str, str]:
    rng = random.Random(7)
    words = ["alpha", "river", "stone", "quietly", "eleven", "harbour", "of", "the"]
    return {
        "cjk": "人工智能产业发展迅速。" * 40
               + "工业和信息化部召开会议，研究部署推动人工智能赋能新型工业化的工作。" * 30,
        "long_sentence_without_punctuation": " ".join(rng.choice(words) for _ in range(3000)),
        "single_5000_char_word": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5000)),
        "windows_newlines": "\r\n".join(f"Line {i} of a Windows file. It has two sentences." for i in range(200)),
        "lists": "Shopping list:\n" + "\n".join(f"- item {i}: {rng.choice(words)}" for i in range(150))
                 + "\n\n" + "\n".join(f"{i}. Step {i} of the process." for i in range(1, 80)),
        "emoji": "Great 🙂👍🏽 work on the release. " * 200,
        "whitespace_runs": "Dr. Smith went to Washington. " * 50 + "\n\n\n\n" + "   \t  ".join(["Tabbed text."] * 80),
        "equals_rule": "Section one.\n\n" + "=" * 5000 + "\n\nSection two.",
        "dot_leaders": "".join(f"Chapter {i} " + "." * 120 + f" {i * 7}\n" for i in range(60)),
        "digits": "3.14159265358979" * 400,
    }


TRICKY = _tricky_texts()


@pytest.mark.parametrize("name", sorted(TRICKY))
@pytest.mark.parametrize(("chunk_tokens", "overlap"), [(160, 32), (48, 12), (8, 0)])
def test_tricky_text_chunks_have_exact_offsets_and_fit_size_and_window(name, chunk_tokens, overlap, counter,
                                                                         hf_tokenizer):
    text = TRICKY[name]
    with time_limit(60):  # a run of '=' once made the window fitting loop forever
        chunks = chunk_text(text, "doc", chunk_tokens, overlap, 256, counter)
    assert chunks
    _check_chunks(text, chunks, chunk_tokens, overlap)
    assert max(_wordpieces(hf_tokenizer, [c.text for c in chunks])) <= 256


def test_overlap_zero_gives_disjoint_chunks(counter):
    text = " ".join(f"Sentence number {i} says something short." for i in range(300))
    chunks = chunk_text(text, "d", 64, 0, 256, counter)
    assert len(chunks) > 5
    assert all(b.start >= a.end for a, b in zip(chunks, chunks[1:], strict=False))


def test_neighbouring_chunks_share_whole_sentences_when_overlap_is_set(counter):
    text = " ".join(f"Sentence number {i} says something short." for i in range(300))
    chunks = chunk_text(text, "d", 64, 24, 256, counter)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # every pair overlaps
        assert text[b.start:].startswith("Sentence number")  # and the next chunk starts at a sentence


def test_small_window_forces_extra_splits_measured_by_word_pieces(counter, hf_tokenizer):
    text = " ".join(["Electroencephalography of hyperparathyroidism patients."] * 40)
    chunks = chunk_text(text, "d", 160, 0, 24, counter)
    _check_chunks(text, chunks, 160, 0)
    assert max(_wordpieces(hf_tokenizer, [c.text for c in chunks])) <= 24


def test_empty_and_whitespace_texts_give_no_chunks(counter):
    assert chunk_text("", "d", 160, 32, 256, counter) == []
    assert chunk_text(" \n\t\r\n ", "d", 160, 32, 256, counter) == []


def test_invalid_chunk_settings_are_rejected():
    with pytest.raises(ValueError):
        chunk_text("text", "d", chunk_tokens=4)
    with pytest.raises(ValueError):
        chunk_text("text", "d", chunk_tokens=64, overlap=64)


def test_wordpiece_counter_agrees_with_transformers_tokenizer(counter, hf_tokenizer):
    texts = ["Hello world.", "Electroencephalography!", "人工智能", "=" * 300, "naïve café 🙂", TRICKY["lists"]]
    assert counter(texts) == _wordpieces(hf_tokenizer, texts)


# ---- SciFact: the whole benchmark corpus fits the embedder window ---------------------------------

@pytest.mark.slow
def test_every_scifact_chunk_fits_the_embedder_window_and_chunking_is_fast(settings, counter, hf_tokenizer):
    assert SCIFACT.is_file(), f"SciFact corpus missing: expected {SCIFACT} (see ../shared/benchmarks)"
    docs = [json.loads(line) for line in SCIFACT.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(docs) == 5183
    cpu_started = time.process_time()
    texts, chunk_texts = {}, []
    for d in docs:
        text = f"{d['title']}\n\n{d['text']}"
        chunks = chunk_text(text, d["_id"], settings.chunk_tokens, settings.chunk_overlap,
                            settings.max_wordpieces, counter)
        texts[d["_id"]] = (text, chunks)
        chunk_texts.extend(c.text for c in chunks)
    cpu_seconds = time.process_time() - cpu_started
    assert cpu_seconds < 60, f"chunking SciFact took {cpu_seconds:.1f} s of CPU"

    for text, chunks in texts.values():
        assert chunks
        for c in chunks:
            assert text[c.start:c.end] == c.text
            assert c.n_tokens <= settings.chunk_tokens
    counts = _wordpieces(hf_tokenizer, chunk_texts)
    too_long = [(n, t[:60]) for n, t in zip(counts, chunk_texts, strict=True) if n > 256]
    assert not too_long, too_long[:5]
