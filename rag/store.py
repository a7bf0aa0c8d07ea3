"""The on-disk index: FAISS vectors + a SQLite chunk table + BM25 + manifest.json.

Layout of an index folder:

    manifest.json        the commit record: format, model, chunking, documents, counts, and which
                         generation folder holds the data (with sizes and hashes of its files)
    gen-000007/          vectors.faiss, chunks.sqlite, bm25/
    .lock                held while a build writes

A save writes a new generation folder, fsyncs it, then atomically replaces manifest.json. A build
killed at any moment therefore leaves the previous manifest pointing at the previous, untouched
generation. No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import context
from .hashing import file_sha256
from .lexical import LexicalIndex

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class IndexStoreError(Exception):
    """The index cannot be used as it is; the message says what to do."""


REBUILD_HINT = "rebuild it with `rag index --rebuild`"
UNIT_NORM_TOLERANCE = 1e-3  # float32 unit vectors are within ~1e-6 of length 1; a flipped byte moves far more


@dataclass(frozen=True)
class ChunkRecord:
    """One stored chunk, with its document's source and title."""

    row: int
    id: str
    doc_id: str
    source: str
    title: str
    text: str
    start: int
    end: int
    n_tokens: int
    position: int
    metadata: dict = field(default_factory=dict, compare=False, hash=False)


class _IndexRows(np.ndarray):
    """A read-only view of a FAISS flat index's rows that keeps the index (their memory) alive."""

    owner = None


EXACT_FILTER_ROWS = 20_000  # a filter allowing at most this many rows is searched exactly, even on an ANN
# index: HNSW/IVF with a selector may miss allowed rows off their usual path, and 20k dot products cost ~2 ms


class FaissVectorStore:
    """Inner-product search over unit vectors (cosine), rows numbered 0..n-1: exact (flat) by default, or an
    ANN index (rag/ann.py: HNSW or IVF, optionally SQ8/PQ-compressed) as the manifest's "vector_index"
    records. An ANN index keeps the original vectors beside it (vectors.npy, memory-mapped) for exact
    scores of pooled rows, exact filtered search and rebuilds."""

    def __init__(self, dimension: int, index=None, spec: dict | None = None, matrix: np.ndarray | None = None):
        import faiss

        self.dimension = dimension
        self.spec = spec or {"kind": "flat"}
        self.index = index if index is not None else faiss.IndexFlatIP(dimension)
        self._matrix: np.ndarray | None = matrix  # the rows: reconstructed once (flat) or vectors.npy (ANN)

    @property
    def exact(self) -> bool:
        return self.spec.get("kind", "flat") == "flat"

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self._matrix = None

    def vectors(self) -> np.ndarray:
        """All rows as a read-only [n, dim] float32 array (shared: reconstructed once per change)."""
        if self._matrix is None:
            import faiss

            if not self.size:
                matrix = np.zeros((0, self.dimension), dtype=np.float32)
            elif isinstance(self.index, faiss.IndexFlat):  # a view of the index's own rows: no second copy
                matrix = faiss.rev_swig_ptr(self.index.get_xb(), self.size * self.dimension).reshape(
                    self.size, self.dimension).view(_IndexRows)
                matrix.owner = self.index  # the memory is the index's: it lives as long as any view of it
            else:
                matrix = self.index.reconstruct_n(0, self.size)
            matrix.setflags(write=False)
            self._matrix = matrix
        return self._matrix

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
        """(scores, rows) arrays of shape [n_queries, k]; rows are -1 where fewer hits exist."""
        import faiss

        from . import ann

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.size))
        if self.size == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if not self.exact and allowed is not None and len(allowed) <= EXACT_FILTER_ROWS:
            return _exact_among(self.vectors(), queries, k, np.asarray(allowed, dtype=np.int64))
        selector = None if allowed is None else faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        if self.exact:
            if selector is None:
                return self.index.search(queries, k)
            return self.index.search(queries, k, params=faiss.SearchParameters(sel=selector))
        return self.index.search(queries, k, params=ann.search_parameters(self.index, self.spec, selector))

    def save(self, folder: Path) -> None:
        """vectors.faiss (and, for an ANN index, vectors.npy with the original rows)."""
        import faiss

        faiss.write_index(self.index, str(folder / "vectors.faiss"))
        if not self.exact:
            np.save(folder / "vectors.npy", np.ascontiguousarray(self.vectors(), dtype=np.float32),
                    allow_pickle=False)

    @classmethod
    def build(cls, vectors: np.ndarray, dimension: int, spec: dict | None,
              base: tuple[Path, int] | None = None) -> FaissVectorStore:
        """The index of `vectors` as `spec` says. `base` (a generation folder whose ANN index of the same spec
        holds exactly the first m of these rows) is extended with the rest instead of building anew."""
        import faiss

        from . import ann

        spec = spec or {"kind": "flat"}
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(vectors), dimension)
        if spec.get("kind", "flat") == "flat":
            store = cls(dimension)
            store.add(vectors)
            return store
        vectors.setflags(write=False)
        if base is not None:
            folder, rows = base
            try:
                index = faiss.read_index(str(folder / "vectors.faiss"))
            except RuntimeError:
                index = None  # unreadable: build anew
            if index is not None and index.d == dimension and index.ntotal == rows <= len(vectors):
                return cls(dimension, ann.extend(index, spec, vectors[rows:]), spec, vectors)
        return cls(dimension, ann.build(vectors, spec), spec, vectors)

    @classmethod
    def load(cls, folder: Path, dimension: int, spec: dict | None = None) -> FaissVectorStore:
        import faiss

        from . import ann

        spec = spec or {"kind": "flat"}
        path = folder / "vectors.faiss"
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise IndexStoreError(f"the vector file {path.name} is unreadable ({str(e).splitlines()[0][:80]}); "
                                  f"{REBUILD_HINT}") from None
        if index.d != dimension:
            raise IndexStoreError(f"the vectors have dimension {index.d}, the manifest says {dimension}; "
                                  f"{REBUILD_HINT}")
        if spec.get("kind", "flat") == "flat":
            return cls(dimension, index)
        try:
            ann.configure(index, spec)
            matrix = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, RuntimeError) as e:
            raise IndexStoreError(f"the ANN index of this generation is unusable ({str(e).splitlines()[0][:80]}); "
                                  f"{REBUILD_HINT}") from None
        if matrix.shape != (index.ntotal, dimension) or matrix.dtype != np.float32:
            raise IndexStoreError(f"vectors.npy holds {matrix.shape} {matrix.dtype}, not the index's "
                                  f"{index.ntotal} rows of {dimension}; {REBUILD_HINT}")
        return cls(dimension, index, spec, matrix)


def _exact_among(matrix: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray):
    """Exact top-k inner products among the given rows, shaped like faiss' (scores, rows), -1 padded."""
    scores = queries @ matrix[rows].T if len(rows) else np.zeros((len(queries), 0), np.float32)
    out_s = np.full((len(queries), k), -np.inf, np.float32)
    out_r = np.full((len(queries), k), -1, np.int64)
    for i, row_scores in enumerate(scores):
        n = min(k, len(rows))
        if n == 0:
            continue
        top = np.argpartition(-row_scores, n - 1)[:n]
        top = top[np.lexsort((rows[top], -row_scores[top]))]
        out_s[i, :n], out_r[i, :n] = row_scores[top], rows[top]
    return out_s, out_r


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def write_lock(index_dir: Path, notify=None) -> Iterator[None]:
    """One writer at a time per index folder (readers never need the lock). When another writer holds it,
    `notify(message)` is told before this one waits."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if notify is not None:
                notify(f"another build of {index_dir} is running; waiting for it to finish")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class DocumentRecord:
    doc_id: str
    source: str
    title: str
    hash: str
    metadata: dict
    text: str


STORES = ("faiss", "milvus")  # the backends an index can be built on (manifest["store"]["kind"])


class Store(Protocol):
    """What retrieval, answering, the eval suite, the CLI and the app use of an opened index. Two backends
    implement it: IndexStore (FAISS + SQLite + bm25s in the index folder, the default) and
    rag.milvus_store.MilvusStore (Milvus Lite in the folder, or a Milvus server). Rows are the chunks'
    numbers 0..n-1 in the generation; `filters` are {key: value or list} as Retriever.search takes them."""

    index_dir: Path
    manifest: dict
    stamp: tuple | None

    @property
    def size(self) -> int: ...  # chunks in the index
    def dense_search(self, query_vector: np.ndarray, k: int, filters: dict | None = None
                     ) -> tuple[np.ndarray, np.ndarray]: ...  # (rows, cosine scores), best first
    def lexical_search(self, query: str, k: int, filters: dict | None = None
                       ) -> tuple[np.ndarray, np.ndarray]: ...  # (rows, BM25 scores > 0), best first
    def dense_scores(self, rows: np.ndarray, query_vector: np.ndarray) -> np.ndarray: ...
    def lexical_scores(self, rows: np.ndarray, query: str) -> np.ndarray: ...  # 0 where no term matches
    def any_match(self, filters: dict) -> bool: ...
    def records(self, rows) -> list[ChunkRecord]: ...
    def vectors_of(self, rows=None) -> np.ndarray: ...  # None: all rows
    def all_chunks(self) -> list[ChunkRecord]: ...  # every chunk, in row order (eval, builds, checks)
    def query_terms(self, text: str) -> list[str]: ...
    def terms_of(self, texts: list[str]) -> list[set[str]]: ...
    def idf(self, terms: list[str]) -> list[float]: ...
    def documents(self) -> dict[str, dict]: ...
    def document(self, source: str) -> DocumentRecord: ...
    def all_documents(self) -> list[DocumentRecord]: ...
    def text_spans(self, spans: list[tuple[str, int, int]]) -> list[str]: ...
    def indexed_texts(self, chunks: list[ChunkRecord] | None = None, model_dir=None) -> list[str]: ...
    def is_current(self) -> bool: ...
    def close(self) -> None: ...


def store_kind(manifest: dict) -> str:
    """The backend an index was built on (indexes from before there was a choice are FAISS)."""
    return (manifest.get("store") or {}).get("kind", "faiss")


def glob_any(value: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(value, str(p)) for p in patterns)


def matches(chunk: ChunkRecord, filters: dict[str, Any]) -> bool:
    """Whether a chunk passes metadata filters: `source` and `title` are globs; other keys must equal the
    document's metadata field as text (front matter, etc.); a list value means any of them."""
    for key, want in filters.items():
        wants = want if isinstance(want, (list, tuple, set)) else [want]
        if key in ("source", "title"):
            if not glob_any(chunk.source if key == "source" else chunk.title, wants):
                return False
        else:
            have = chunk.metadata.get(key)
            if have is None or not any(str(have) == str(w) for w in wants):
                return False
    return True


LEXICAL_CACHE = 8  # BM25 score arrays kept per store: a question asks for one query's scores 2-3 times


class IndexStore:
    """An opened index: chunk records in memory, vectors in FAISS, BM25, and the manifest."""

    def __init__(self, index_dir: Path, manifest: dict, chunks: list[ChunkRecord],
                 vectors: FaissVectorStore, lexical: LexicalIndex):
        self.index_dir = Path(index_dir)
        self.manifest = manifest
        self.chunks = chunks
        self.vectors = vectors
        self.lexical = lexical
        self._pin = None  # a shared lock on the open generation: writers do not delete it under a reader
        self.stamp: tuple | None = None  # the manifest this store was opened from (see is_current)
        self._masks: dict[tuple, np.ndarray] = {}
        self._lexical_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # ---- the Store protocol --------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.chunks)

    def allowed(self, filters: dict[str, Any] | None) -> np.ndarray | None:
        """A boolean row mask for filters (None: every row), cached per filter."""
        if not filters:
            return None
        key = tuple(sorted((k, str(v)) for k, v in filters.items()))
        with self._lock:
            if key in self._masks:
                return self._masks[key]
        mask = np.fromiter((matches(c, filters) for c in self.chunks), dtype=bool, count=len(self.chunks))
        with self._lock:
            self._masks[key] = mask
        return mask

    def any_match(self, filters: dict) -> bool:
        mask = self.allowed(filters)
        return mask is None or bool(mask.any())

    def dense_search(self, query_vector, k, filters=None):
        mask = self.allowed(filters)
        sel = None if mask is None else np.flatnonzero(mask)
        scores, rows = self.vectors.search(query_vector, k, sel)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    def _lexical_all(self, query: str) -> np.ndarray:
        with self._lock:
            if query in self._lexical_cache:
                self._lexical_cache.move_to_end(query)
                return self._lexical_cache[query]
        scores = self.lexical.scores(query)
        with self._lock:
            self._lexical_cache[query] = scores
            while len(self._lexical_cache) > LEXICAL_CACHE:
                self._lexical_cache.popitem(last=False)
        return scores

    def lexical_search(self, query, k, filters=None):
        scores = self._lexical_all(query)
        mask = self.allowed(filters)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        n = min(k, scores.size)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        idx = np.argpartition(-scores, n - 1)[:n]
        idx = idx[np.lexsort((idx, -scores[idx]))]
        idx = idx[np.isfinite(scores[idx]) & (scores[idx] > 0)]
        return idx.astype(np.int64), scores[idx]

    def dense_scores(self, rows, query_vector):
        # exact scores of the given rows only: a full-matrix product would wake BLAS threads that keep
        # spinning and slow the sentence embeddings that follow
        return self.vectors.vectors()[np.asarray(rows, dtype=np.int64)] @ query_vector

    def lexical_scores(self, rows, query):
        return self._lexical_all(query)[np.asarray(rows, dtype=np.int64)]

    def records(self, rows) -> list[ChunkRecord]:
        return [self.chunks[int(r)] for r in rows]

    def vectors_of(self, rows=None) -> np.ndarray:
        """The stored vectors of these rows (None: all rows, in order, without a copy)."""
        matrix = self.vectors.vectors()
        return matrix if rows is None else matrix[np.asarray(rows, dtype=np.int64)]

    def all_chunks(self) -> list[ChunkRecord]:
        return self.chunks

    def query_terms(self, text: str) -> list[str]:
        return self.lexical.query_tokens(text)

    def terms_of(self, texts: list[str]) -> list[set[str]]:
        return self.lexical.tokens_of(texts)

    def idf(self, terms: list[str]) -> list[float]:
        return self.lexical.idf(terms)

    def close(self) -> None:
        """Release this store's hold on its generation (a later build may then delete it)."""
        if self._pin is not None:
            self._pin.close()
            self._pin = None

    # ---- reading -------------------------------------------------------------------------
    @staticmethod
    def exists(index_dir: str | Path) -> bool:
        return (Path(index_dir) / MANIFEST).is_file()

    @staticmethod
    def read_manifest(index_dir: str | Path) -> dict:
        path = Path(index_dir) / MANIFEST
        if not path.is_file():
            raise IndexStoreError(f"no index in {index_dir}; build one with `rag index [FOLDER] "
                                  f"--index-dir {index_dir}`")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise IndexStoreError(f"{path} is corrupt; {REBUILD_HINT}") from None
        if not isinstance(manifest, dict):
            raise IndexStoreError(f"{path} is not an index manifest (a JSON {type(manifest).__name__}); "
                                  f"{REBUILD_HINT}")
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexStoreError(f"the index in {index_dir} has format {manifest.get('format')!r} "
                                  f"(this version reads {FORMAT_VERSION}); {REBUILD_HINT}")
        problem = _shape_problem(manifest)
        if problem:
            raise IndexStoreError(f"{path} has the wrong shape ({problem}); {REBUILD_HINT}")
        return manifest

    @classmethod
    def open(cls, index_dir: str | Path, model: dict | None = None) -> IndexStore:
        """Open and verify a FAISS index; `model` (name, dimension, fingerprint) must match if given. Any
        store: rag.backends.open_store."""
        index_dir = Path(index_dir)
        manifest = cls.read_manifest(index_dir)
        if model is not None:
            check_model(manifest, model)
        if store_kind(manifest) != "faiss":
            raise IndexStoreError(f"the index in {index_dir} is on {store_kind(manifest)}; open it with "
                                  "rag.backends.open_store")
        data = index_dir / manifest["data"]
        for name, info in manifest["files"].items():
            path = data / name
            if not path.is_file() or path.stat().st_size != info["size"] or file_sha256(path) != info["sha256"]:
                raise IndexStoreError(f"index file {manifest['data']}/{name} is missing, truncated or "
                                      f"changed; {REBUILD_HINT}")
        try:
            chunks = _read_chunks(data / "chunks.sqlite")
        except sqlite3.DatabaseError as e:
            raise IndexStoreError(f"the chunk table is unreadable ({e}); {REBUILD_HINT}") from None
        vectors = FaissVectorStore.load(data, manifest["model"]["dimension"], manifest.get("vector_index"))
        if not (vectors.size == len(chunks) == manifest["counts"]["chunks"]):
            raise IndexStoreError(f"the index holds {vectors.size} vectors for {len(chunks)} chunks; "
                                  f"{REBUILD_HINT}")
        norms = np.linalg.norm(vectors.vectors(), axis=1) if vectors.size else np.ones(0)
        if not np.all(np.abs(norms - 1.0) < UNIT_NORM_TOLERANCE):  # every stored vector is L2-normalised
            raise IndexStoreError(f"the vector file {manifest['data']}/vectors.faiss holds vectors that are not "
                                  f"unit length (damaged); {REBUILD_HINT}")
        lexical = LexicalIndex.load(data / "bm25", len(chunks))
        store = cls(index_dir, manifest, chunks, vectors, lexical)
        store._pin = _pin_generation(data)
        tidy(index_dir, manifest["data"])
        store.stamp = manifest_stamp(index_dir)
        return store

    def is_current(self) -> bool:
        """Whether the index folder still has the generation this store opened (no build since)."""
        return manifest_stamp(self.index_dir) == self.stamp

    @classmethod
    def check(cls, index_dir: str | Path) -> dict:
        """Verify an index fully: the manifest's shape and checksums, vector norms, the SQLite file's own
        integrity check, every chunk's text against its document's text at its offsets, the BM25 index.
        Returns counts; raises IndexStoreError naming the first problem."""
        store = cls.open(index_dir)
        path = store.index_dir / store.manifest["data"] / "chunks.sqlite"
        with _reading(path) as con:
            verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise IndexStoreError(f"{store.manifest['data']}/chunks.sqlite fails SQLite's integrity check "
                                  f"({verdict}); {REBUILD_HINT}")
        texts = check_texts(store, store.chunks)
        if store.lexical.n_docs and len(store.lexical.scores(store.chunks[0].text)) != len(store.chunks):
            raise IndexStoreError(f"the BM25 index does not cover the {len(store.chunks)} chunks; {REBUILD_HINT}")
        return {"index_dir": str(store.index_dir), "documents": len(texts), "chunks": len(store.chunks),
                "generation": store.manifest["data"]}

    def documents(self) -> dict[str, dict]:
        return self.manifest["documents"]

    def document(self, source: str) -> DocumentRecord:
        """A stored document with its full text (what chunk offsets point into)."""
        with _reading(self.index_dir / self.manifest["data"] / "chunks.sqlite") as con:
            row = con.execute("SELECT doc_id, source, title, hash, metadata, text FROM docs WHERE source=?",
                              (source,)).fetchone()
        if row is None:
            raise KeyError(source)
        return DocumentRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])

    def text_spans(self, spans: list[tuple[str, int, int]]) -> list[str]:
        """`document(source).text[start:end]` for each (source, start, end), read in one connection
        without loading whole documents."""
        with _reading(self.index_dir / self.manifest["data"] / "chunks.sqlite") as con:
            out = []
            for source, start, end in spans:
                row = con.execute("SELECT substr(text, ?, ?) FROM docs WHERE source=?",
                                  (start + 1, max(0, end - start), source)).fetchone()
                if row is None:
                    raise KeyError(source)
                out.append(row[0])
        return out

    # ---- writing -------------------------------------------------------------------------
    @staticmethod
    def write(index_dir: str | Path, manifest: dict, docs: list[DocumentRecord],
              chunks: list[ChunkRecord], vectors: np.ndarray, model_dir: str | Path | None = None,
              appended_to: dict | None = None) -> dict:
        """Write a complete new generation and commit it by replacing manifest.json atomically. With
        `appended_to` ({"data": generation, "rows": m}: the first m rows are that generation's, unchanged)
        an ANN index of the same spec is that generation's, extended by the new rows (FaissVectorStore.build).

        BM25 indexes each chunk's text with its title/heading prefix when the manifest's chunking
        records "context" (rag/context.py, capped with the tokenizer in `model_dir`, default: the
        shipped model), so chunks carried over from an old generation get the same prefix."""
        if store_kind(manifest) != "faiss":
            raise ValueError(f"IndexStore.write writes FAISS indexes, not {store_kind(manifest)}; use "
                             "rag.backends.write_generation")
        index_dir = Path(index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        generation, name = next_generation(manifest, lambda n: (index_dir / n).exists())
        tmp = index_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_chunks(tmp / "chunks.sqlite", docs, chunks)
        base = None
        if appended_to and (index_dir / appended_to["data"]).is_dir():
            base = (index_dir / appended_to["data"], int(appended_to["rows"]))
        FaissVectorStore.build(vectors, manifest["model"]["dimension"], manifest.get("vector_index"), base).save(tmp)
        (tmp / "bm25").mkdir()
        texts = context.index_texts(chunks, {d.doc_id: (d.title, d.text) for d in docs},
                                    context.enabled_in(manifest), model_dir)
        LexicalIndex.build(texts).save(tmp / "bm25")
        files = {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        _fsync_tree(tmp)
        final = index_dir / name
        os.replace(tmp, final)
        manifest = commit_manifest(index_dir, manifest, generation, name, files, len(docs), len(chunks))
        remove_stale(index_dir, keep=name)
        return manifest

    def indexed_texts(self, chunks: list[ChunkRecord] | None = None, model_dir: str | Path | None = None
                      ) -> list[str]:
        """What was embedded and BM25-indexed for these chunks (all by default): the chunk text, with
        its title/heading prefix when the index was built with chunk_context."""
        chunks = self.chunks if chunks is None else chunks
        if not context.enabled_in(self.manifest):
            return [c.text for c in chunks]
        docs = {d.doc_id: (d.title, d.text) for d in self.all_documents()}
        return context.index_texts(chunks, docs, True, model_dir)

    def all_documents(self) -> list[DocumentRecord]:
        with _reading(self.index_dir / self.manifest["data"] / "chunks.sqlite") as con:
            rows = con.execute("SELECT doc_id, source, title, hash, metadata, text FROM docs").fetchall()
        return [DocumentRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]


def check_texts(store: Store, chunks: list[ChunkRecord]) -> dict[str, str]:
    """Every chunk's text is its document's text at its offsets, and the documents are as many as the
    manifest counts (a full check on any store); returns {doc_id: text}, else IndexStoreError."""
    texts = {d.doc_id: d.text for d in store.all_documents()}
    for c in chunks:
        if texts.get(c.doc_id, "")[c.start:c.end] != c.text:
            raise IndexStoreError(f"chunk {c.id} of {c.source} does not match its document's text at "
                                  f"{c.start}-{c.end}; {REBUILD_HINT}")
    if len(texts) != store.manifest["counts"]["documents"]:
        raise IndexStoreError(f"the index holds {len(texts)} documents, the manifest says "
                              f"{store.manifest['counts']['documents']}; {REBUILD_HINT}")
    return texts


def next_generation(manifest: dict, taken) -> tuple[int, str]:
    """The next generation number and a fresh name for its data (`taken(name)`: already in use)."""
    generation = manifest.get("generation", 0) + 1
    stamp = int(time.time())
    name = f"gen-{generation:06d}-{os.getpid()}-{stamp}"
    while taken(name):  # a rebuild restarts at generation 1: never reuse live data
        stamp += 1
        name = f"gen-{generation:06d}-{os.getpid()}-{stamp}"
    return generation, name


def commit_manifest(index_dir: Path, manifest: dict, generation: int, name: str, files: dict,
                    n_docs: int, n_chunks: int) -> dict:
    """Make generation `name` the index's data by replacing manifest.json atomically (fsynced)."""
    manifest = {**manifest, "format": FORMAT_VERSION, "generation": generation, "data": name,
                "files": files, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    manifest.setdefault("created", manifest["updated"])
    manifest.setdefault("store", {"kind": "faiss"})
    manifest["counts"] = {"documents": n_docs, "chunks": n_chunks}
    mtmp = index_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    with mtmp.open("w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(mtmp, index_dir / MANIFEST)
    fd = os.open(index_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return manifest


# what each manifest key must hold: a build writes all of them
_MANIFEST_SHAPE = {"data": str, "files": dict, "model": dict, "counts": dict, "documents": dict}


def _shape_problem(manifest: dict) -> str | None:
    """What is wrong with a manifest's shape, or None."""
    for key, kind in _MANIFEST_SHAPE.items():
        if not isinstance(manifest.get(key), kind):
            return f"{key!r} is missing or not a {kind.__name__}"
    data = manifest["data"]
    if not data.startswith("gen-") or "/" in data or "\\" in data or data in (".", ".."):
        return f"'data' names no generation folder of the index: {data!r}"
    for name, info in manifest["files"].items():
        if not isinstance(info, dict) or not isinstance(info.get("size"), int) \
                or not isinstance(info.get("sha256"), str) or ".." in Path(name).parts or Path(name).is_absolute():
            return f"file entry {name!r} is malformed"
    if not isinstance(manifest["model"].get("dimension"), int) or not isinstance(manifest["model"].get("name"), str):
        return "'model' lacks its name or dimension"
    counts = manifest["counts"]
    if not all(isinstance(counts.get(k), int) for k in ("documents", "chunks")):
        return "'counts' lacks documents or chunks"
    for source, entry in manifest["documents"].items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("doc_id", "hash")):
            return f"document entry {source!r} is malformed"
    return None


def check_model(manifest: dict, model: dict) -> None:
    """Refuse an index built with another embedding model or dimension."""
    have = manifest.get("model", {})
    for key in ("dimension", "fingerprint"):
        if have.get(key) != model.get(key):
            raise IndexStoreError(
                f"the index was built with model {have.get('name')!r} ({key} {have.get(key)!r}) but "
                f"the configured model is {model.get('name')!r} ({key} {model.get(key)!r}); {REBUILD_HINT}")


def manifest_stamp(index_dir: Path) -> tuple | None:
    """What changes when a build commits a new manifest (it is replaced, never edited in place)."""
    try:
        st = (Path(index_dir) / MANIFEST).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _pin_generation(data: Path):
    """Hold a shared flock on a generation's chunk table for as long as the returned file stays open
    (SQLite's own locks are fcntl locks, which flock does not touch)."""
    f = (data / "chunks.sqlite").open("rb")
    fcntl.flock(f, fcntl.LOCK_SH)
    return f


def _in_use(folder: Path) -> bool:
    """Whether some open IndexStore (any process) holds this generation."""
    table = folder / "chunks.sqlite"
    if not table.is_file():
        return False
    with table.open("rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def tidy(index_dir: Path, keep: str) -> None:
    """Remove what a killed build left behind (temp folders, old generations no reader holds), unless a
    build is running now: opening an index cleans up after a crash without waiting for the next build."""
    try:
        f = (index_dir / ".lock").open("a")
    except OSError:  # a read-only index folder: nothing to tidy
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            remove_stale(index_dir, keep)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_stale(index_dir: Path, keep: str) -> None:
    """Delete old generations and temp files, except a generation a reader still has open (the next build
    deletes it once the reader has moved on)."""
    for path in index_dir.iterdir():
        name = path.name
        if path.is_dir() and name != keep and (name.startswith("gen-") or name.startswith(".gen-")):
            if not _in_use(path):
                shutil.rmtree(path, ignore_errors=True)
        elif name.startswith(f".{MANIFEST}.") and name.endswith(".tmp"):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the chunk table; a damaged file is an IndexStoreError, not a traceback."""
    if not path.is_file():
        raise IndexStoreError(f"missing chunk table {path.name}; {REBUILD_HINT}")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            yield con
    except sqlite3.DatabaseError as e:  # OperationalError too: undecodable text, a malformed page
        raise IndexStoreError(f"{path.parent.name}/{path.name} is damaged ({str(e).splitlines()[0][:80]}); "
                              f"{REBUILD_HINT}") from None


_SCHEMA = """
CREATE TABLE docs (doc_id TEXT PRIMARY KEY, source TEXT UNIQUE NOT NULL, title TEXT NOT NULL,
                   hash TEXT NOT NULL, metadata TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE chunks (row INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, doc_id TEXT NOT NULL REFERENCES docs,
                     start INTEGER NOT NULL, "end" INTEGER NOT NULL, n_tokens INTEGER NOT NULL,
                     position INTEGER NOT NULL, text TEXT NOT NULL);
"""


def _write_chunks(path: Path, docs: list[DocumentRecord], chunks: list[ChunkRecord]) -> None:
    con = sqlite3.connect(path)
    try:
        with con:
            con.executescript(_SCHEMA)
            con.executemany("INSERT INTO docs VALUES (?,?,?,?,?,?)",
                            [(d.doc_id, d.source, d.title, d.hash, json.dumps(d.metadata, ensure_ascii=False),
                              d.text) for d in docs])
            con.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?)",
                            [(i, c.id, c.doc_id, c.start, c.end, c.n_tokens, c.position, c.text)
                             for i, c in enumerate(chunks)])
    finally:
        con.close()


def _read_chunks(path: Path) -> list[ChunkRecord]:
    with _reading(path) as con:
        rows = con.execute(
            'SELECT c.row, c.id, c.doc_id, d.source, d.title, c.text, c.start, c."end", c.n_tokens, '
            "c.position, d.metadata FROM chunks c JOIN docs d USING (doc_id) ORDER BY c.row").fetchall()
    metas: dict[str, dict] = {}
    out = []
    for r in rows:
        meta = metas.setdefault(r[2], json.loads(r[10]))
        out.append(ChunkRecord(*r[:10], metadata=meta))
    if [c.row for c in out] != list(range(len(out))):
        raise IndexStoreError(f"the chunk table rows are not contiguous; {REBUILD_HINT}")
    return out
