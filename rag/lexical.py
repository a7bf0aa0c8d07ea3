"""BM25 over chunk texts with bm25s (English stemming + stopwords), saved beside the vectors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logging.getLogger("bm25s").setLevel(logging.ERROR)

# load BM25 indexes memory-mapped: benchmarks/scale.py measures load time and resident memory both ways
MMAP = True


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


_STEMMER = None


def stem(words: list[str]) -> list[str]:
    """The BM25 index's English stems of lower-case words ("chaired" -> "chair")."""
    global _STEMMER
    if _STEMMER is None:
        _STEMMER = _stemmer()
    return _STEMMER.stemWords(words)


def _tokenize(texts: list[str], stemmer):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)


def tokenize(texts: list[str]) -> list[list[str]]:
    """The BM25 terms of each text (stemmed, stopword-free), as every backend indexes and queries them."""
    return _tokenize(list(texts), _stemmer()) if texts else []


class LexicalIndex:
    """A BM25 index whose document ids are the chunk rows of the store."""

    def __init__(self, bm25, n_docs: int):
        self._bm25 = bm25
        self.n_docs = n_docs
        self._stemmer = _stemmer()
        self._df: np.ndarray | None = None

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
        # memory-mapped: the score matrix (the bulk of the folder: ~1 GB at 1M chunks) stays in the page cache
        # and is read where a query's terms point, instead of being copied into the process at open
        return cls(bm25s.BM25.load(str(folder), mmap=MMAP, allow_pickle=False, show_progress=False), n_docs)

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

    def document_frequencies(self) -> np.ndarray:
        """How many chunks hold each vocabulary term (indexed by term id), counted once from the score
        matrix bm25s stores per term (a CSC matrix: a term's chunks are one column)."""
        if self._df is None:
            matrix = getattr(self._bm25, "scores", None) or {}
            indptr = matrix.get("indptr")
            self._df = np.diff(np.asarray(indptr)) if indptr is not None else np.zeros(0, np.int64)
        return self._df

    def idf(self, tokens: list[str]) -> list[float]:
        """BM25-style IDF of each (stemmed) token over the chunks; unseen tokens get the highest weight."""
        n = max(self.n_docs, 1)
        vocab = getattr(self._bm25, "vocab_dict", None) or {}
        df = self.document_frequencies()
        out = []
        for t in tokens:
            tid = vocab.get(t)
            count = int(df[tid]) if tid is not None and tid < len(df) else 0
            out.append(float(np.log(1 + (n - count + 0.5) / (count + 0.5))))
        return out
