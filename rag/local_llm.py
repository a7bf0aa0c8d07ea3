"""In-process local LLM chat backend: a GGUF model run by llama.cpp through `xllamacpp` (the `llm` extra).

`LocalGGUF` loads the model in `__init__` (so a bad path or file fails at start-up, not at the first question)
and serves OpenAI-style chat messages through llama.cpp's own chat-completions handler, which applies the chat
template stored in the GGUF (llama.cpp falls back to ChatML when the file has none). Decoding is greedy
(temperature 0). `xllamacpp.Server.handle_chat_completions` blocks and calls back once per streamed chunk; a
worker thread runs it and `stream()` yields the text as it arrives. Returning True from the callback stops the
stream and cancels the request, which is how the timeout and an abandoned `stream()` stop generation.
One model, one slot: a lock serialises concurrent calls.

xllamacpp also starts llama.cpp's HTTP server on a random 127.0.0.1 port; it gets a random API key (and no web
UI), so only this process can use the model. The in-process handlers bypass that key.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_N_CTX = 4096  # not tuned: 6 passages of ~150 words + system prompt measured ~1,440 tokens (llm_speed.py)
DEFAULT_MAX_TOKENS = 256  # not tuned: a few cited sentences, well above what a three-sentence answer needs
DEFAULT_TIMEOUT = 120.0  # seconds; not tuned, same as the remote LLM client's timeout in rag/llm.py
PROMPT_CACHE_MIB = 0  # no extra host-RAM prompt cache: the single slot already reuses its prefix with the last call
_DONE = object()


class LLMError(ValueError):
    """A local-LLM failure, with a one-line message fit to show the user."""


class LocalGGUF:
    """A GGUF chat model in this process. `stream()` yields text pieces; `complete()` returns the whole text."""

    def __init__(self, path, n_ctx: int = DEFAULT_N_CTX, max_tokens: int = DEFAULT_MAX_TOKENS,
                 timeout: float = DEFAULT_TIMEOUT, threads: int | None = None):
        self.path = Path(path)
        self.name = self.path.name
        self.n_ctx, self.max_tokens, self.timeout = n_ctx, max_tokens, timeout
        self.last_timings: dict = {}  # llama.cpp's timings of the last finished call (prompt_n, prompt_ms, ...)
        self._lock = threading.Lock()
        if not self.path.is_file():
            raise LLMError(f"no GGUF model at {self.path}")
        try:
            with self.path.open("rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise LLMError(f"cannot load the GGUF model {self.path}: {exc.strerror or exc}") from None
        if magic != b"GGUF":
            raise LLMError(f"cannot load the GGUF model {self.path}: not a GGUF file")
        try:
            import xllamacpp
        except ImportError:
            raise LLMError("the local LLM needs the `llm` extra: pip install 'rag[llm]'") from None
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = n_ctx
        params.n_predict = max_tokens
        params.n_parallel = 1  # one slot: calls are serialised anyway, and the slot gets the whole context
        params.warmup = False  # measured: warm-up did not make the first answer faster, only the load slower
        params.cache_ram_mib = PROMPT_CACHE_MIB
        params.verbosity = 0  # llama.cpp logs errors only
        params.api_keys = [secrets.token_urlsafe(32)]  # lock the loopback HTTP listener xllamacpp always starts
        params.ui = False
        params.endpoint_metrics = True  # for the start-up handshake below
        if threads:
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
        try:
            self._server = xllamacpp.Server(params)
            # Server() returns before its task loop starts, and freeing it before then hangs for ever (measured);
            # a metrics request is answered by that loop, so once it returns the Server is safe to free.
            self._server.handle_metrics()
        except Exception as exc:  # xllamacpp raises RuntimeError("Failed to init server, ...")
            raise LLMError(f"cannot load the GGUF model {self.path}: {_one_line(exc)}") from None

    def stream(self, messages: list[dict]) -> Iterator[str]:
        """Yield the reply to `messages` ({"role": "system"|"user"|"assistant", "content": str}) piece by piece."""
        request = {"messages": messages, "stream": True, "temperature": 0, "max_tokens": self.max_tokens,
                   "return_progress": True}  # progress chunks during prompt processing let the timeout act there too
        with self._lock:
            server = self._server
            if server is None:
                raise LLMError(f"the local model {self.name} is closed")
            chunks: queue.SimpleQueue = queue.SimpleQueue()
            stop = threading.Event()
            deadline = time.monotonic() + self.timeout

            def on_chunk(chunk: dict) -> bool:
                chunks.put(chunk)
                return stop.is_set() or time.monotonic() > deadline  # True stops the stream and cancels the request

            def run() -> None:
                try:
                    server.handle_chat_completions(request, on_chunk)
                except Exception as exc:
                    chunks.put(exc)
                finally:
                    chunks.put(_DONE)

            worker = threading.Thread(target=run, name=f"llm-{self.name}", daemon=True)
            worker.start()
            try:
                while True:
                    try:
                        chunk = chunks.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        chunk = None
                    if chunk is _DONE:
                        return
                    if chunk is None or time.monotonic() > deadline:
                        raise LLMError(f"the local model took longer than {self.timeout:g} s")
                    if isinstance(chunk, Exception):
                        raise LLMError(f"the local model failed: {_one_line(chunk)}")
                    if "error" in chunk:
                        raise _error(chunk["error"])
                    if "timings" in chunk:
                        self.last_timings = chunk["timings"]
                    for choice in chunk.get("choices", []):
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
            finally:
                stop.set()
                worker.join()

    def complete(self, messages: list[dict]) -> str:
        """The whole reply to `messages`."""
        return "".join(self.stream(messages))

    def close(self) -> None:
        """Free the model (its llama.cpp server loop and memory); later calls raise LLMError."""
        with self._lock:
            self._server = None


def _error(error) -> LLMError:
    if not isinstance(error, dict):
        return LLMError(f"the local model failed: {_one_line(error)}")
    if error.get("type") == "exceed_context_size_error":
        n, limit = error.get("n_prompt_tokens"), error.get("n_ctx")
        if n and limit:
            return LLMError(f"the prompt is {n} tokens, more than the local model's context of {limit} tokens")
        return LLMError("the prompt is longer than the local model's context")
    return LLMError(f"the local model failed: {_one_line(error.get('message', error))}")


def _one_line(value) -> str:
    return " ".join(str(value).split()) or type(value).__name__
