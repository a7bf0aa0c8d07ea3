"""BM25 over chunk texts with bm25s (English stemming + stopwords), saved beside the vectors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logging.getLogger("bm25s").setLevel(logging.ERROR)


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def _tokenize(texts: list[str], stemmer):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)


class LexicalIndex:
    """A BM25 index whose document ids are the chunk rows of the store."""

    def __init__(self, bm25, n_docs: int):
        self._bm25 = bm25
        self.n_docs = n_docs
        self._stemmer = _stemmer()

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        import bm25s

        bm25 = bm25s.BM25()
        tokens = _tokenize(texts, _stemmer()) if texts else []
        # bm25s cannot index an empty token list; give empty chunks a placeholder that never matches
        tokens = [t if t else ["\x00"] for t in tokens]
        if tokens:
            bm25.index(tokens, show_progress=False)
        return cls(bm25, len(texts))

    def save(self, folder: Path) -> None:
        if self.n_docs:
            self._bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, n_docs: int) -> LexicalIndex:
        import bm25s

        if n_docs == 0:
            return cls(bm25s.BM25(), 0)
        return cls(bm25s.BM25.load(str(folder), mmap=False, allow_pickle=False), n_docs)

    def query_tokens(self, query: str) -> list[str]:
        return _tokenize([query], self._stemmer)[0]

    def tokens_of(self, texts: list[str]) -> list[set[str]]:
        """The stemmed, stopword-free terms of each text (one tokenizer call for all of them)."""
        return [set(t) for t in _tokenize(list(texts), self._stemmer)] if texts else []

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk row for the query (zeros when no query term is known)."""
        if self.n_docs == 0:
            return np.zeros(0, dtype=np.float32)
        tokens = [t for t in self.query_tokens(query) if t in self._bm25.vocab_dict]
        if not tokens:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)


def idf_weights(index: LexicalIndex, tokens: list[str]) -> list[float]:
    """BM25-style IDF of each token over the chunks; unseen tokens get the highest weight."""
    bm25 = index._bm25
    n = max(index.n_docs, 1)
    vocab = getattr(bm25, "vocab_dict", None) or {}
    indptr = bm25.scores["indptr"] if getattr(bm25, "scores", None) else None
    out = []
    for t in tokens:
        tid = vocab.get(t)
        df = int(indptr[tid + 1] - indptr[tid]) if tid is not None and indptr is not None else 0
        out.append(float(np.log(1 + (n - df + 0.5) / (df + 0.5))))
    return out
