"""The offline embedder: a sentence-transformers folder (all-MiniLM-L6-v2 by default), loaded lazily, once."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

# set (unless the user set them) only when a model is loaded, not on import: the model is a local
# folder, so the hub is never asked, and the tokenizers' fork warning stays quiet
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def offline_env() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


# the answerer embeds every candidate sentence of the passages it reads, and the same passages answer
# many questions (a chat about one folder, an eval run): their sentence and word-piece embeddings are
# kept, least recently used dropped first. 128 MB holds ~2,000 sentences of 40 word-pieces, i.e. the
# candidates of ~30 distinct answers; a repeat costs nothing instead of ~0.6 s (not tuned further).
TOKEN_CACHE_BYTES = 128 << 20


class EmbeddingError(Exception):
    """The embedding model cannot be used; the message says what to do."""


class Embedder:
    """Batched, L2-normalised float32 embeddings from a local sentence-transformers folder."""

    def __init__(self, model_dir: str | Path, batch_size: int = 32):
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        if not (self.model_dir / "config.json").is_file():
            raise EmbeddingError(f"no sentence-transformers model in {self.model_dir}; "
                                 "set RAG_MODEL_PATH to a model folder")
        self._model = None
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self._token_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._token_cache_bytes = 0
        self._token_cache_lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    offline_env()
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        return self._model

    @property
    def name(self) -> str:
        """A readable model name, e.g. all-MiniLM-L6-v2."""
        readme = self.model_dir / "README.md"
        if readme.is_file():
            for line in readme.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
        return self.model_dir.name

    @property
    def dimension(self) -> int:
        cfg = json.loads((self.model_dir / "config.json").read_text())
        return int(cfg.get("hidden_size") or self.model.get_sentence_embedding_dimension())

    @property
    def max_wordpieces(self) -> int:
        cfg_path = self.model_dir / "sentence_bert_config.json"
        if cfg_path.is_file():
            return int(json.loads(cfg_path.read_text()).get("max_seq_length", 256))
        return int(self.model.max_seq_length)

    @property
    def fingerprint(self) -> str:
        """A short hash of the model's config and weights, recorded in the index manifest."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for path in sorted(self.model_dir.rglob("*")):
                if path.is_file() and path.suffix in (".json", ".txt", ".safetensors", ".bin"):
                    h.update(path.relative_to(self.model_dir).as_posix().encode())
                    stat = path.stat()
                    h.update(str(stat.st_size).encode())
                    with path.open("rb") as f:  # head and tail: cheap, yet changes with the weights
                        h.update(f.read(1 << 20))
                        if stat.st_size > 1 << 21:
                            f.seek(-(1 << 20), os.SEEK_END)
                            h.update(f.read())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def embed(self, texts: list[str], progress: bool = False, batch_size: int | None = None) -> np.ndarray:
        """Embeddings of `texts` as a float32 [n, dim] array with unit-length rows. A small `batch_size`
        suits a few texts of mixed lengths: each batch is padded only to its own longest text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=batch_size or self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def embed_tokens(self, texts: list[str], batch_size: int | None = None, pieces: bool = True
                     ) -> tuple[np.ndarray, list[np.ndarray], list[list[str]]]:
        """Sentence embeddings (as `embed`) and, from the same forward pass, each text's contextual
        word-piece embeddings (unit rows, [CLS]/[SEP] dropped) with their word-piece strings (empty
        lists when `pieces` is False)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), [], []
        outs = self.model.encode(list(texts), batch_size=batch_size or self.batch_size, output_value=None,
                                 show_progress_bar=False)
        vectors = np.stack([o["sentence_embedding"].float().numpy() for o in outs]).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        tokens, strings = [], []
        for o in outs:
            n = int(o["attention_mask"].sum())  # a batch pads every text to its longest one
            t = o["token_embeddings"][1:n - 1].float().numpy()
            tokens.append(np.ascontiguousarray(t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12),
                                               dtype=np.float32))
            strings.append(self.model.tokenizer.convert_ids_to_tokens(o["input_ids"][1:n - 1].tolist())
                           if pieces else [])
        return np.ascontiguousarray(vectors), tokens, strings


    def embed_tokens_cached(self, texts: list[str], batch_size: int | None = None
                            ) -> tuple[np.ndarray, list[np.ndarray]]:
        """`embed_tokens` without word-piece strings, from a bounded cache of texts embedded before
        (TOKEN_CACHE_BYTES); only the texts not in it go through the model."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), []
        with self._token_cache_lock:
            found = {t: self._token_cache[t] for t in texts if t in self._token_cache}
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        # rows are copied: a view would keep its whole batch array alive, uncounted
        fresh = ({t: (v.copy(), tok) for t, v, tok in zip(todo, *self.embed_tokens(todo, batch_size, False)[:2],
                                                           strict=True)} if todo else {})
        found.update(fresh)
        with self._token_cache_lock:
            for t in found:
                if t in self._token_cache:
                    self._token_cache.move_to_end(t)
                else:
                    v, tok = self._token_cache[t] = found[t]
                    self._token_cache_bytes += v.nbytes + tok.nbytes
            while self._token_cache_bytes > TOKEN_CACHE_BYTES and self._token_cache:
                _, (v, tok) = self._token_cache.popitem(last=False)
                self._token_cache_bytes -= v.nbytes + tok.nbytes
        return np.stack([found[t][0] for t in texts]), [found[t][1] for t in texts]


def model_info(embedder: Embedder) -> dict:
    """What the index manifest records of the model, checked when the index is opened."""
    return {"name": embedder.name, "dimension": embedder.dimension, "fingerprint": embedder.fingerprint,
            "max_wordpieces": embedder.max_wordpieces}


_cache: dict[tuple[str, int], Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(model_dir: str | Path, batch_size: int = 32) -> Embedder:
    """One shared Embedder per model folder, so the model is loaded once per process."""
    key = (str(Path(model_dir).resolve()), batch_size)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Embedder(model_dir, batch_size)
        return _cache[key]
