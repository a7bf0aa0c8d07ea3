"""Find passages: dense (FAISS), lexical (BM25) and their fusion, with metadata filters.

Fusion comes two ways: `convex` mixes per-query min-max normalised scores (weight configurable);
`rrf` is reciprocal-rank fusion. A Reranker may reorder the fused hits; none is shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .anchors import about, anchors, cover
from .backends import open_store
from .config import FUSIONS, MODES, Settings, check_mode, check_top_k, model_path
from .embeddings import Embedder, get_embedder, model_info
from .store import ChunkRecord, Store

__all__ = ["FUSIONS", "MODES", "Hit", "NoReranker", "Reranker", "Retriever"]

ANCHOR_POOL = 4  # the fused top 4 × top_k are re-scored for anchors (32 chunks at top_k 8: their records are cheap)


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


class Retriever:
    """Dense + BM25 search over one opened index."""

    def __init__(self, store: Store, embedder: Embedder, settings: Settings | None = None,
                 reranker: Reranker | None = None):
        self.store = store
        self.embedder = embedder
        self.settings = settings or Settings()
        self.reranker = reranker or NoReranker()

    @classmethod
    def open(cls, index_dir: str | Path | None = None, settings: Settings | None = None,
             reranker: Reranker | None = None) -> Retriever:
        """A retriever over the index in `index_dir` (default: settings.index_dir); IndexStoreError if unusable."""
        settings = (settings or Settings.load()).replace(index_dir=Path(index_dir) if index_dir else None)
        embedder = get_embedder(model_path(settings), settings.batch_size)
        return cls(open_store(settings.index_dir, model_info(embedder)), embedder, settings, reranker)

    # what answering needs of the index, so it never reaches into the store
    def query_terms(self, text: str) -> list[str]:
        """The stemmed, stopword-free BM25 terms of a text, in order."""
        return self.store.query_terms(text)

    def terms_of(self, texts: list[str]) -> list[set[str]]:
        return self.store.terms_of(texts)

    def idf(self, terms: list[str]) -> list[float]:
        """BM25 IDF of each term over the indexed chunks."""
        return self.store.idf(terms)

    def text_spans(self, spans: list[tuple[str, int, int]]) -> list[str]:
        """Document text of each (source, start, end), clipped to the document."""
        return self.store.text_spans(spans)

    def dense_score(self, row: int, query_vector: np.ndarray) -> float:
        """Cosine similarity of one stored chunk to the query vector."""
        return float(self.store.dense_scores(np.array([row]), query_vector)[0])

    def dense_scores(self, rows, query_vector: np.ndarray) -> np.ndarray:
        return self.store.dense_scores(np.asarray(rows, dtype=np.int64), query_vector)

    def search(self, query: str, top_k: int | None = None, mode: str | None = None, fusion: str | None = None,
               filters: dict[str, Any] | None = None, query_vector: np.ndarray | None = None) -> list[Hit]:
        """The best `top_k` chunks for the query, best first. ValueError on a bad top_k, mode or fusion."""
        s = self.settings
        top_k = check_top_k(s.top_k if top_k is None else top_k, limit=None)
        mode = check_mode(mode or s.mode)
        fusion = fusion or s.fusion
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
        if self.store.size == 0 or (filters and not self.store.any_match(filters)):
            return []
        pool = max(s.candidates, top_k)
        dense_rows, dense_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
        if mode in ("hybrid", "dense"):
            qv = self.embedder.embed_query(query) if query_vector is None else query_vector
            dense_rows, dense_scores = self.store.dense_search(qv, pool, filters)
        lex_rows, lex_scores = (self.store.lexical_search(query, pool, filters) if mode in ("hybrid", "bm25")
                                else (np.zeros(0, np.int64), np.zeros(0, np.float32)))

        if mode == "dense":
            rows, fused = dense_rows, dense_scores
            dense_vals, lex_vals = dense_scores, np.zeros(len(rows))
        elif mode == "bm25":
            rows, fused = lex_rows, lex_scores
            dense_vals, lex_vals = np.zeros(len(rows)), fused
        else:
            rows = np.unique(np.concatenate([dense_rows, lex_rows]))
            # both scores of every pooled row: a row only one list found still has the other score
            dense_vals = self.store.dense_scores(rows, qv)
            lex_vals = self.store.lexical_scores(rows, query)
            if fusion == "convex":
                w = s.dense_weight
                fused = w * _minmax(dense_vals) + (1 - w) * _minmax(lex_vals)
            else:
                fused = np.zeros(len(rows))
                for ranked in (dense_rows, lex_rows):
                    rank_of = {int(r): i for i, r in enumerate(ranked)}
                    fused += np.array([1.0 / (s.rrf_k + rank_of[int(r)] + 1) if int(r) in rank_of else 0.0
                                       for r in rows])
        fused = np.array(fused, dtype=np.float64)  # a copy: in dense mode it is the store's score array
        order = np.lexsort((rows, -fused))
        named = anchors(query) if s.anchor_boost else []
        if named:
            # a question naming a version, year or numbered item prefers the passages about it (the
            # identifier in the chunk or its document's title) among the best ANCHOR_POOL × top_k
            order = order[: ANCHOR_POOL * top_k]
            pooled = self.store.records([int(rows[i]) for i in order])
            titled = any(cover(named, rec.title) == 1.0 for rec in pooled)
            for i, rec in zip(order, pooled, strict=True):
                fused[i] -= s.anchor_boost * (1.0 - about(named, rec.title, rec.text, titled=titled))
            keep = np.lexsort((rows[order], -fused[order]))[:top_k]
            order, records = order[keep], [pooled[k] for k in keep]
        else:
            order = order[:top_k]
            records = self.store.records([int(rows[i]) for i in order])
        hits = [Hit(rec, float(fused[i]), n + 1, float(dense_vals[i]), float(lex_vals[i]))
                for n, (i, rec) in enumerate(zip(order, records, strict=True))]
        hits = self.reranker.rerank(query, hits)
        return [Hit(h.chunk, h.score, n + 1, h.dense, h.lexical) for n, h in enumerate(hits)]

