"""Find passages: dense (FAISS), lexical (BM25) and their fusion, with metadata filters.

Fusion comes two ways: `convex` mixes per-query min-max normalised scores (weight configurable);
`rrf` is reciprocal-rank fusion. A Reranker may reorder the fused hits; none is shipped.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import FUSIONS, MODES, Settings, check_mode, check_top_k, model_path
from .embeddings import Embedder, get_embedder, model_info
from .store import ChunkRecord, IndexStore

__all__ = ["FUSIONS", "MODES", "Hit", "NoReranker", "Reranker", "Retriever"]


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and 1-based rank."""

    chunk: ChunkRecord
    score: float
    rank: int
    dense: float = 0.0
    lexical: float = 0.0


class Reranker(Protocol):
    """Reorders hits, e.g. with a cross-encoder the user supplies."""

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


class NoReranker:
    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        return hits


def _minmax(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _top(scores: np.ndarray, n: int, allowed: np.ndarray | None) -> np.ndarray:
    """Rows of the n best scores (descending), only among allowed rows, ignoring zero BM25 scores."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    n = min(n, scores.size)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-scores, n - 1)[:n]
    idx = idx[np.lexsort((idx, -scores[idx]))]
    return idx[np.isfinite(scores[idx]) & (scores[idx] > 0)]


class Retriever:
    """Dense + BM25 search over one opened index."""

    def __init__(self, store: IndexStore, embedder: Embedder, settings: Settings | None = None,
                 reranker: Reranker | None = None):
        self.store = store
        self.embedder = embedder
        self.settings = settings or Settings()
        self.reranker = reranker or NoReranker()
        self._matrix = store.vectors.vectors()  # for exact dense scores of BM25-only candidates
        self._filter_cache: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, index_dir: str | Path | None = None, settings: Settings | None = None,
             reranker: Reranker | None = None) -> Retriever:
        """A retriever over the index in `index_dir` (default: settings.index_dir); IndexStoreError if unusable."""
        settings = (settings or Settings.load()).replace(index_dir=Path(index_dir) if index_dir else None)
        embedder = get_embedder(model_path(settings), settings.batch_size)
        return cls(IndexStore.open(settings.index_dir, model_info(embedder)), embedder, settings, reranker)

    # what answering needs of the index, so it never reaches into the store
    def query_terms(self, text: str) -> list[str]:
        """The stemmed, stopword-free BM25 terms of a text, in order."""
        return self.store.lexical.query_tokens(text)

    def terms_of(self, texts: list[str]) -> list[set[str]]:
        return self.store.lexical.tokens_of(texts)

    def idf(self, terms: list[str]) -> list[float]:
        """BM25 IDF of each term over the indexed chunks."""
        return self.store.lexical.idf(terms)

    def text_spans(self, spans: list[tuple[str, int, int]]) -> list[str]:
        """Document text of each (source, start, end), clipped to the document."""
        return self.store.text_spans(spans)

    def dense_score(self, row: int, query_vector: np.ndarray) -> float:
        """Cosine similarity of one stored chunk to the query vector."""
        return float(self._matrix[row] @ query_vector)

    def allowed_rows(self, filters: dict[str, Any] | None) -> np.ndarray | None:
        """A boolean row mask for filters: `source` is a glob on the file path; other keys must equal
        the document's metadata field (front matter, etc.); a list value means any of them."""
        if not filters:
            return None
        key = tuple(sorted((k, str(v)) for k, v in filters.items()))
        with self._lock:
            if key in self._filter_cache:
                return self._filter_cache[key]
        mask = np.fromiter((_matches(c, filters) for c in self.store.chunks), dtype=bool,
                           count=len(self.store.chunks))
        with self._lock:
            self._filter_cache[key] = mask
        return mask

    def search(self, query: str, top_k: int | None = None, mode: str | None = None, fusion: str | None = None,
               filters: dict[str, Any] | None = None, query_vector: np.ndarray | None = None) -> list[Hit]:
        """The best `top_k` chunks for the query, best first. ValueError on a bad top_k, mode or fusion."""
        s = self.settings
        top_k = check_top_k(s.top_k if top_k is None else top_k, limit=None)
        mode = check_mode(mode or s.mode)
        fusion = fusion or s.fusion
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
        n_rows = len(self.store.chunks)
        if n_rows == 0:
            return []
        allowed = self.allowed_rows(filters)
        if allowed is not None and not allowed.any():
            return []
        pool = max(s.candidates, top_k)
        dense_rows = np.zeros(0, np.int64)
        if mode in ("hybrid", "dense"):
            qv = self.embedder.embed_query(query) if query_vector is None else query_vector
            sel = None if allowed is None else np.flatnonzero(allowed)
            scores, rows = self.store.vectors.search(qv, pool, sel)
            dense_rows = rows[0][rows[0] >= 0]
            dense_scores = scores[0][: len(dense_rows)]
        lex_all = self.store.lexical.scores(query) if mode in ("hybrid", "bm25") else None
        lex_rows = _top(lex_all, pool, allowed) if lex_all is not None else np.zeros(0, np.int64)

        if mode == "dense":
            rows, fused = dense_rows, dense_scores
            dense_vals, lex_vals = dense_scores, np.zeros(len(rows))
        elif mode == "bm25":
            rows, fused = lex_rows, lex_all[lex_rows]
            dense_vals, lex_vals = np.zeros(len(rows)), fused
        else:
            rows = np.unique(np.concatenate([dense_rows, lex_rows]))
            # exact dense scores of the pooled rows only: a full-matrix product would wake BLAS threads
            # that keep spinning and slow the sentence embeddings that follow
            dense_vals, lex_vals = self._matrix[rows] @ qv, lex_all[rows]
            if fusion == "convex":
                w = s.dense_weight
                fused = w * _minmax(dense_vals) + (1 - w) * _minmax(lex_vals)
            else:
                fused = np.zeros(len(rows))
                for ranked in (dense_rows, lex_rows):
                    rank_of = {int(r): i for i, r in enumerate(ranked)}
                    fused += np.array([1.0 / (s.rrf_k + rank_of[int(r)] + 1) if int(r) in rank_of else 0.0
                                       for r in rows])
        order = np.lexsort((rows, -np.asarray(fused)))[:top_k]
        hits = [Hit(self.store.chunks[int(rows[i])], float(fused[i]), n + 1, float(dense_vals[i]),
                    float(lex_vals[i])) for n, i in enumerate(order)]
        hits = self.reranker.rerank(query, hits)
        return [Hit(h.chunk, h.score, n + 1, h.dense, h.lexical) for n, h in enumerate(hits)]


def _matches(chunk: ChunkRecord, filters: dict[str, Any]) -> bool:
    for key, want in filters.items():
        wants = want if isinstance(want, (list, tuple, set)) else [want]
        if key == "source":
            if not any(fnmatch.fnmatchcase(chunk.source, str(w)) for w in wants):
                return False
        elif key == "title":
            if not any(fnmatch.fnmatchcase(chunk.title, str(w)) for w in wants):
                return False
        else:
            have = chunk.metadata.get(key)
            if have is None or not any(str(have) == str(w) for w in wants):
                return False
    return True
