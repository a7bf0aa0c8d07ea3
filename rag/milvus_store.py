"""The Milvus backend of the Store protocol (`pip install rag[milvus]`, `rag index --store milvus`).

An index on Milvus keeps everything in Milvus collections: chunk text, char offsets, source, title,
front-matter fields, the dense vectors and a BM25 sparse field (Milvus' built-in BM25 function), the
documents' full text (what citation spans point into) with their content hashes, and the BM25 document
frequencies answering weighs terms by. What stays in the index folder is manifest.json: the commit
record naming the store, its URI and the generation, as for the FAISS backend. Without `--milvus-uri`
the Milvus database is Milvus Lite, a folder `milvus.db` inside the index folder; with it, a Milvus
server or cluster (token: RAG_MILVUS_TOKEN, never written down).

A build writes a complete new generation of collections (`<prefix>_<generation>_chunks` and friends),
flushes it, checks its counts, and only then commits the manifest that names it; the previous generation
is kept for readers that still have it open, older ones are dropped. A build killed part way leaves
collections no manifest names: they never answer, and the next build drops them.

The BM25 field holds the chunk's terms as the FAISS backend's bm25s index has them (the same stemmer and
stopwords, joined by spaces), and queries are tokenized the same way, so lexical scores rank alike on
both backends. Hybrid fusion is computed here from both result lists (the retriever's convex fusion), so
quality does not depend on the backend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from . import context
from .lexical import tokenize
from .store import (
    REBUILD_HINT,
    ChunkRecord,
    DocumentRecord,
    IndexStoreError,
    commit_manifest,
    glob_any,
    manifest_stamp,
    next_generation,
    remove_stale,
)

LITE_FILE = "milvus.db"  # the Milvus Lite database inside the index folder (a folder itself)
# Milvus Lite serves gRPC inside this process: pymilvus' 10 s keepalive pings only make its server answer
# "too_many_pings" (GOAWAY, logged to stderr) and drop the channel, so they are off for it
LITE_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 24 * 3600 * 1000, "grpc.keepalive_permit_without_calls": 0}
TOKEN_ENV = "RAG_MILVUS_TOKEN"  # a Milvus server's token ("user:password" or an API key)
MAX_VARCHAR = 65535  # Milvus' largest VARCHAR, in bytes
PART_CHARS = 16000  # a document's text is stored in parts of this many characters (4 bytes each at most)
INSERT_BATCH = 500  # rows per insert call: ~2 MB of chunk text, vectors and terms, far below gRPC's 64 MB
QUERY_BATCH = 1000  # chunk rows per query when reading them all
GET_BATCH = 1000  # ids per get call (a server answers at most 16384)
RECORD_CACHE = 4096  # chunk records kept per opened store (they never change within a generation)
BM25_K1, BM25_B = 1.5, 0.75  # bm25s' defaults, so BM25 scores match the FAISS backend's
PARTS = ("chunks", "docs", "text", "terms")  # the collections of one generation

_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def lite_uri(index_dir: Path) -> str:
    return str((Path(index_dir) / LITE_FILE).resolve())


def store_entry(index_dir: Path, uri: str | None) -> dict:
    """The manifest's "store" record for a new Milvus index: Milvus Lite in the folder, or a server."""
    if not uri:
        return {"kind": "milvus", "uri": LITE_FILE, "prefix": "rag"}
    if "://" not in uri:
        raise ValueError(f"--milvus-uri must be a server address such as http://localhost:19530, not {uri!r}")
    # one server holds many indexes: name this one's collections after its folder
    digest = hashlib.sha1(str(Path(index_dir).resolve()).encode()).hexdigest()[:10]
    return {"kind": "milvus", "uri": uri, "prefix": f"rag_{digest}"}


def _resolve_uri(index_dir: Path, entry: dict) -> str:
    uri = entry.get("uri") or LITE_FILE
    return uri if "://" in uri else str((Path(index_dir) / uri).resolve())


def connect(index_dir: Path, entry: dict):
    """A (cached) MilvusClient for the store entry; IndexStoreError in one line when it cannot connect."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise IndexStoreError("this index is on Milvus, which needs `pip install rag[milvus]`") from None
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # set after its import: errors become one line here
    uri = _resolve_uri(index_dir, entry)
    token = os.environ.get(TOKEN_ENV, "")
    key = (uri, token)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        try:
            client = (MilvusClient(uri=uri, token=token, timeout=30) if "://" in uri
                      else MilvusClient(uri, grpc_options=LITE_GRPC_OPTIONS))
            client.list_collections()
        except Exception as e:  # grpc, pymilvus and Milvus Lite errors all mean "not reachable" here
            raise IndexStoreError(f"cannot open the Milvus store at {_shown(uri, index_dir)} ({_first_line(e)}); "
                                  + ("is another process using this Milvus Lite database? It allows one"
                                     if "://" not in uri else "is the server running and the token right?")
                                  ) from None
        _clients[key] = client
        return client


def _shown(uri: str, index_dir: Path) -> str:
    return uri if "://" in uri else f"{index_dir}/{LITE_FILE}"


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


def _collection(entry: dict, generation: str, part: str) -> str:
    return f"{entry['prefix']}_{generation.replace('-', '_')}_{part}"


def _expr_list(values) -> str:
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def filter_expression(filters: dict[str, Any] | None, documents: dict[str, dict]) -> str | None:
    """A Milvus filter expression with exactly `rag.store.matches` semantics. `source` and `title` globs
    are expanded against the manifest's documents to a list of sources; other keys compare the
    metadata field as text (`meta_text` holds every value as str()). None: no filter."""
    if not filters:
        return None
    clauses = []
    for key, want in filters.items():
        wants = [str(w) for w in (want if isinstance(want, (list, tuple, set)) else [want])]
        if key in ("source", "title"):
            sources = [s for s, d in documents.items()
                       if glob_any(s if key == "source" else d.get("title", ""), wants)]
            clauses.append(f"source in {_expr_list(sources)}")
        else:
            field = f"meta_text[{json.dumps(str(key), ensure_ascii=False)}]"  # Milvus Lite has no `in` on JSON paths
            clauses.append(" or ".join(f"{field} == {json.dumps(w, ensure_ascii=False)}" for w in wants) or "false")
    return " and ".join(f"({c})" for c in clauses)


def _and(*clauses: str | None) -> str:
    return " and ".join(f"({c})" for c in clauses if c) or ""


class MilvusStore:
    """An opened index on Milvus (Lite or a server): the Store protocol over one committed generation."""

    def __init__(self, index_dir: Path, manifest: dict, client):
        self.index_dir = Path(index_dir)
        self.manifest = manifest
        self.client = client
        self.entry = manifest["store"]
        self.names = {p: _collection(self.entry, manifest["data"], p) for p in PARTS}
        self.stamp: tuple | None = None
        self._records: OrderedDict[int, ChunkRecord] = OrderedDict()
        self._chunks: list[ChunkRecord] | None = None
        self._lock = threading.Lock()
        self._n = int(manifest["counts"]["chunks"])

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, index_dir: str | Path, manifest: dict) -> MilvusStore:
        index_dir = Path(index_dir)
        entry = manifest.get("store") or {}
        if not isinstance(entry.get("prefix"), str):
            raise IndexStoreError(f"the manifest in {index_dir} names a Milvus store without its collections; "
                                  f"{REBUILD_HINT}")
        store = cls(index_dir, manifest, connect(index_dir, entry))
        for name in store.names.values():
            if store._call("check a collection", store.client.has_collection, name):
                store._call("load a collection", store.client.load_collection, name)
        store._verify()
        store.stamp = manifest_stamp(index_dir)
        return store

    def _call(self, what: str, fn, *args, **kwargs):
        """A Milvus call whose failure (a dropped connection, a collection gone) is one IndexStoreError."""
        try:
            return fn(*args, **kwargs)
        except IndexStoreError:
            raise
        except Exception as e:
            raise IndexStoreError(f"Milvus failed to {what} ({_first_line(e)}); check the server, or "
                                  f"{REBUILD_HINT}") from None

    def _verify(self) -> None:
        have = set(self._call("list collections", self.client.list_collections))
        missing = [n for n in self.names.values() if n not in have]
        if missing:
            raise IndexStoreError(f"the Milvus collection {missing[0]} of this index is missing; {REBUILD_HINT}")
        info = self._call("describe a collection", self.client.describe_collection, self.names["chunks"])
        dims = [f.get("params", {}).get("dim") for f in info.get("fields", []) if f.get("name") == "vector"]
        want = self.manifest["model"]["dimension"]
        if not dims or int(dims[0]) != want:
            raise IndexStoreError(f"the Milvus collection {self.names['chunks']} holds vectors of dimension "
                                  f"{dims[0] if dims else '?'}, the manifest says {want}; {REBUILD_HINT}")
        for part, expected in (("chunks", self._n), ("docs", self.manifest["counts"]["documents"])):
            got = self._count(part)
            if got != expected:
                raise IndexStoreError(f"the Milvus collection {self.names[part]} holds {got} rows, the manifest "
                                      f"says {expected}; {REBUILD_HINT}")

    def _count(self, part: str, expr: str = "") -> int:
        rows = self._call("count rows", self.client.query, self.names[part], filter=expr,
                          output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def close(self) -> None:
        """Nothing to release: the client is shared per URI within the process."""

    def is_current(self) -> bool:
        return manifest_stamp(self.index_dir) == self.stamp

    # ---- the Store protocol --------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._n

    def _expr(self, filters: dict | None) -> str | None:
        return filter_expression(filters, self.manifest["documents"])

    def any_match(self, filters: dict) -> bool:
        expr = self._expr(filters)
        if not expr:
            return True
        return bool(self._call("filter", self.client.query, self.names["chunks"], filter=expr,
                               output_fields=["row"], limit=1))

    def _search(self, data, field: str, k: int, expr: str | None, params: dict):
        k = max(1, min(k, self._n, 16384))
        found = self._call("search", self.client.search, self.names["chunks"], data=[data], anns_field=field,
                           limit=k, filter=expr or "", output_fields=["row"], search_params=params)
        hits = found[0] if found else []
        rows = np.array([int(h["entity"].get("row", h.get("id"))) for h in hits], dtype=np.int64)
        return rows, np.array([float(h["distance"]) for h in hits], dtype=np.float32)

    def dense_search(self, query_vector, k, filters=None):
        if self._n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        _, _, search = milvus_index(self.manifest.get("vector_index") or {"kind": "flat"})
        if "ef" in search:
            search = {"ef": max(search["ef"], k)}  # HNSW needs a beam at least as wide as k
        params = {"metric_type": "IP", "params": search}
        return self._search(np.asarray(query_vector, dtype=np.float32).ravel().tolist(), "vector", k,
                            self._expr(filters), params)

    def _query_text(self, query: str) -> str:
        return " ".join(self.query_terms(query))

    def lexical_search(self, query, k, filters=None, expr: str | None = None):
        text = self._query_text(query)
        if self._n == 0 or not text:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows, scores = self._search(text, "sparse", k, _and(self._expr(filters), expr), {"metric_type": "BM25"})
        scores = np.abs(scores)  # BM25 scores are positive; Milvus Lite reports them negated, as distances
        keep = scores > 0
        order = np.lexsort((rows[keep], -scores[keep]))
        return rows[keep][order], scores[keep][order]

    def lexical_scores(self, rows, query):
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros(0, np.float32)
        found, scores = self.lexical_search(query, len(rows), expr=f"row in {_expr_list(rows.tolist())}")
        by_row = dict(zip(found.tolist(), scores.tolist(), strict=True))
        return np.array([by_row.get(int(r), 0.0) for r in rows], dtype=np.float32)

    def dense_scores(self, rows, query_vector):
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros(0, np.float32)
        return self.vectors_of(rows) @ np.asarray(query_vector, dtype=np.float32).ravel()

    def _get(self, part: str, ids: list, fields: list[str]) -> list[dict]:
        out = []
        for i in range(0, len(ids), GET_BATCH):
            out += self._call("read rows", self.client.get, self.names[part], ids=ids[i:i + GET_BATCH],
                              output_fields=fields)
        return out

    def vectors_of(self, rows=None) -> np.ndarray:
        dim = self.manifest["model"]["dimension"]
        if rows is None:
            got = self._chunk_rows(["row", "vector"])
            return (np.array([r["vector"] for r in got], dtype=np.float32) if got
                    else np.zeros((0, dim), np.float32))
        rows = [int(r) for r in rows]
        got = {int(r["row"]): r["vector"] for r in self._get("chunks", rows, ["row", "vector"])}
        missing = [r for r in rows if r not in got]
        if missing:
            raise IndexStoreError(f"Milvus has no chunk row {missing[0]}; {REBUILD_HINT}")
        return np.array([got[r] for r in rows], dtype=np.float32).reshape(len(rows), dim)

    _CHUNK_FIELDS = ["row", "chunk_id", "doc_id", "source", "title", "text", "start", "end", "n_tokens",
                     "position", "meta"]

    @staticmethod
    def _record(r: dict) -> ChunkRecord:
        return ChunkRecord(int(r["row"]), r["chunk_id"], r["doc_id"], r["source"], r["title"], r["text"],
                           int(r["start"]), int(r["end"]), int(r["n_tokens"]), int(r["position"]),
                           metadata=r.get("meta") or {})

    def records(self, rows) -> list[ChunkRecord]:
        rows = [int(r) for r in rows]
        with self._lock:
            want = [r for r in dict.fromkeys(rows) if r not in self._records]
        if want:
            fetched = {int(r["row"]): self._record(r) for r in self._get("chunks", want, self._CHUNK_FIELDS)}
            with self._lock:
                self._records.update(fetched)
                while len(self._records) > RECORD_CACHE:
                    self._records.popitem(last=False)
        with self._lock:
            found = {r: self._records.get(r) for r in rows}
        if any(v is None for v in found.values()):
            missing = [r for r, v in found.items() if v is None]
            found.update({int(r["row"]): self._record(r) for r in self._get("chunks", missing, self._CHUNK_FIELDS)})
        return [found[r] for r in rows]

    def _chunk_rows(self, fields: list[str]) -> list[dict]:
        """Every chunk row, in row order, read in pages of primary keys (Milvus Lite has no query iterator)."""
        out: list[dict] = []
        for start in range(0, self._n, QUERY_BATCH):
            out += self._call("read the chunks", self.client.query, self.names["chunks"],
                              filter=f"row >= {start} and row < {start + QUERY_BATCH}", output_fields=fields,
                              limit=QUERY_BATCH)
        out.sort(key=lambda r: int(r["row"]))
        return out

    def all_chunks(self) -> list[ChunkRecord]:
        if self._chunks is None:
            chunks = [self._record(r) for r in self._chunk_rows(self._CHUNK_FIELDS)]
            if [c.row for c in chunks] != list(range(len(chunks))):
                raise IndexStoreError(f"the Milvus chunk rows are not contiguous; {REBUILD_HINT}")
            self._chunks = chunks
        return self._chunks

    @property
    def chunks(self) -> list[ChunkRecord]:
        return self.all_chunks()

    def query_terms(self, text: str) -> list[str]:
        return tokenize([text])[0]

    def terms_of(self, texts: list[str]) -> list[set[str]]:
        return [set(t) for t in tokenize(list(texts))]

    def idf(self, terms: list[str]) -> list[float]:
        """BM25-style IDF over the chunks, from the document frequencies stored with the generation (the
        same formula as LexicalIndex.idf; unseen terms get the highest weight)."""
        n = max(self._n, 1)
        wanted = sorted(set(terms))
        df = {r["term"]: int(r["df"]) for r in self._get("terms", wanted, ["term", "df"])} if wanted else {}
        return [float(np.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5))) for t in terms]

    # ---- documents -----------------------------------------------------------------------
    def documents(self) -> dict[str, dict]:
        return self.manifest["documents"]

    _DOC_FIELDS = ["doc_id", "source", "title", "hash", "meta", "length", "parts"]

    def _doc_rows(self, sources: list[str]) -> list[dict]:
        docs = self.manifest["documents"]
        ids = [docs[s]["doc_id"] for s in sources if s in docs]
        return self._get("docs", ids, self._DOC_FIELDS) if ids else []

    def _text_of(self, rows: list[dict]) -> dict[str, str]:
        """The full text of each document row, from its parts."""
        keys = [f"{r['doc_id']}:{p}" for r in rows for p in range(int(r["parts"]))]
        parts = {r["key"]: r["text"] for r in self._get("text", keys, ["key", "text"])} if keys else {}
        return {r["doc_id"]: "".join(parts.get(f"{r['doc_id']}:{p}", "") for p in range(int(r["parts"])))
                for r in rows}

    def _document(self, r: dict, text: str) -> DocumentRecord:
        if len(text) != int(r["length"]):
            raise IndexStoreError(f"the stored text of {r['source']} is {len(text)} characters, not "
                                  f"{r['length']}; {REBUILD_HINT}")
        return DocumentRecord(r["doc_id"], r["source"], r["title"], r["hash"], r.get("meta") or {}, text)

    def document(self, source: str) -> DocumentRecord:
        rows = self._doc_rows([source])
        if not rows:
            raise KeyError(source)
        return self._document(rows[0], self._text_of(rows)[rows[0]["doc_id"]])

    def all_documents(self) -> list[DocumentRecord]:
        rows = self._doc_rows(list(self.manifest["documents"]))
        texts = self._text_of(rows)
        return [self._document(r, texts[r["doc_id"]]) for r in rows]

    def text_spans(self, spans: list[tuple[str, int, int]]) -> list[str]:
        """`document(source).text[start:end]` for each span, reading only the text parts it covers."""
        if not spans:
            return []
        docs = self.manifest["documents"]
        wanted: dict[str, set[int]] = {}
        for source, start, end in spans:
            if source not in docs:
                raise KeyError(source)
            first, last = max(start, 0) // PART_CHARS, max(end - 1, start, 0) // PART_CHARS
            wanted.setdefault(docs[source]["doc_id"], set()).update(range(first, last + 1))
        keys = [f"{d}:{p}" for d, ps in wanted.items() for p in sorted(ps)]
        found = {r["key"]: r["text"] for r in self._get("text", keys, ["key", "text"])}
        parts = {(k.rsplit(":", 1)[0], int(k.rsplit(":", 1)[1])): t for k, t in found.items()}
        out = []
        for source, start, end in spans:
            doc_id = docs[source]["doc_id"]
            start, end = max(start, 0), max(end, start, 0)
            first, last = start // PART_CHARS, max(end - 1, start) // PART_CHARS
            text = "".join(parts.get((doc_id, p), "") for p in range(first, last + 1))
            offset = first * PART_CHARS
            out.append(text[start - offset:end - offset])
        return out

    def indexed_texts(self, chunks: list[ChunkRecord] | None = None, model_dir=None) -> list[str]:
        chunks = self.all_chunks() if chunks is None else chunks
        if not context.enabled_in(self.manifest):
            return [c.text for c in chunks]
        docs = {d.doc_id: (d.title, d.text) for d in self.all_documents()}
        return context.index_texts(chunks, docs, True, model_dir)

    @classmethod
    def check(cls, index_dir: str | Path) -> dict:
        """Verify a Milvus index fully: counts, vector norms, every chunk's text against its document."""
        from .store import UNIT_NORM_TOLERANCE, IndexStore, check_texts

        store = cls.open(Path(index_dir), IndexStore.read_manifest(index_dir))
        chunks = store.all_chunks()
        norms = np.linalg.norm(store.vectors_of(), axis=1) if chunks else np.ones(0)
        if not np.all(np.abs(norms - 1.0) < UNIT_NORM_TOLERANCE):
            raise IndexStoreError(f"the Milvus collection {store.names['chunks']} holds vectors that are not "
                                  f"unit length (damaged); {REBUILD_HINT}")
        texts = check_texts(store, chunks)
        return {"index_dir": str(store.index_dir), "documents": len(texts), "chunks": len(chunks),
                "generation": store.manifest["data"], "store": "milvus"}


# ---- writing ---------------------------------------------------------------------------------
def milvus_index(spec: dict) -> tuple[str, dict, dict]:
    """(index type, build params, search params) of the Milvus vector index for a rag.ann spec: the same
    kind and parameters as FAISS would get. PQ is not offered (Milvus Lite has no IVF_PQ)."""
    kind, compression = spec.get("kind", "flat"), spec.get("compression", "none")
    if kind == "flat":
        return "FLAT", {}, {}
    if kind == "hnsw":
        return ("HNSW" if compression == "none" else "HNSW_SQ"), {
            "M": spec["m"], "efConstruction": spec["ef_construction"],
            **({"sq_type": "SQ8"} if compression == "sq8" else {})}, {"ef": spec["ef_search"]}
    if kind == "ivf" and compression in ("none", "sq8"):
        return ("IVF_FLAT" if compression == "none" else "IVF_SQ8"), {"nlist": spec["nlist"]}, {
            "nprobe": spec["nprobe"]}
    raise ValueError(f"the milvus store takes --ann flat, hnsw or ivf with sq8 or no compression, not {kind} "
                     f"with {compression}")


def _schemas(client, dimension: int, index_type: str, index_params: dict):
    from pymilvus import DataType, Function, FunctionType

    def schema():
        return client.create_schema(auto_id=False, enable_dynamic_field=False)

    chunks = schema()
    chunks.add_field("row", DataType.INT64, is_primary=True)
    for name in ("chunk_id", "doc_id", "source", "title", "text"):
        chunks.add_field(name, DataType.VARCHAR, max_length=MAX_VARCHAR)
    for name in ("start", "end", "n_tokens", "position"):
        chunks.add_field(name, DataType.INT64)
    chunks.add_field("meta", DataType.JSON)
    chunks.add_field("meta_text", DataType.JSON)
    chunks.add_field("terms", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True,
                     analyzer_params={"tokenizer": "standard"})  # already our terms: only split on spaces
    chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    chunks.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    chunks.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                 output_field_names=["sparse"]))
    chunk_index = client.prepare_index_params()
    chunk_index.add_index("vector", index_type=index_type, metric_type="IP", params=index_params)
    chunk_index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                          params={"bm25_k1": BM25_K1, "bm25_b": BM25_B})

    docs = schema()
    docs.add_field("doc_id", DataType.VARCHAR, max_length=64, is_primary=True)
    for name in ("source", "title", "hash"):
        docs.add_field(name, DataType.VARCHAR, max_length=MAX_VARCHAR)
    docs.add_field("meta", DataType.JSON)
    docs.add_field("length", DataType.INT64)
    docs.add_field("parts", DataType.INT64)

    text = schema()
    text.add_field("key", DataType.VARCHAR, max_length=96, is_primary=True)
    text.add_field("doc_id", DataType.VARCHAR, max_length=64)
    text.add_field("part", DataType.INT64)
    text.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)

    terms = schema()
    terms.add_field("term", DataType.VARCHAR, max_length=MAX_VARCHAR, is_primary=True)
    terms.add_field("df", DataType.INT64)

    def scalar_only(s):  # Milvus wants a vector field in every collection: a 2-dim placeholder
        s.add_field("_v", DataType.FLOAT_VECTOR, dim=2)
        ip = client.prepare_index_params()
        ip.add_index("_v", index_type="FLAT", metric_type="L2")
        return s, ip

    return {"chunks": (chunks, chunk_index), "docs": scalar_only(docs), "text": scalar_only(text),
            "terms": scalar_only(terms)}


def _fits(text: str) -> str:
    """Text cut to Milvus' VARCHAR limit (only a title or path could be that long)."""
    data = text.encode("utf-8")
    return text if len(data) <= MAX_VARCHAR else data[:MAX_VARCHAR].decode("utf-8", "ignore")


def write_generation(index_dir: str | Path, manifest: dict, docs: list[DocumentRecord], chunks: list[ChunkRecord],
                     vectors: np.ndarray, model_dir=None) -> dict:
    """Write a complete new generation into Milvus, then commit the manifest that names it."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    entry = manifest["store"]
    client = connect(index_dir, entry)
    names = set(client.list_collections())
    generation, name = next_generation(manifest, lambda n: _collection(entry, n, "chunks") in names)
    index_type, build_params, _ = milvus_index(manifest.get("vector_index") or {"kind": "flat"})
    collections = {p: _collection(entry, name, p) for p in PARTS}
    try:
        schemas = _schemas(client, int(manifest["model"]["dimension"]), index_type, build_params)
        for part, (schema, index_params) in schemas.items():
            if client.has_collection(collections[part]):
                client.drop_collection(collections[part])
            client.create_collection(collections[part], schema=schema, index_params=index_params)
        texts = context.index_texts(chunks, {d.doc_id: (d.title, d.text) for d in docs},
                                    context.enabled_in(manifest), model_dir)
        terms = tokenize(texts)
        df: dict[str, int] = {}
        for t in terms:
            for term in set(t):
                df[term] = df.get(term, 0) + 1
        _insert(client, collections["docs"], [
            {"doc_id": d.doc_id, "source": _fits(d.source), "title": _fits(d.title), "hash": d.hash,
             "meta": d.metadata, "length": len(d.text), "parts": max(1, math.ceil(len(d.text) / PART_CHARS)),
             "_v": [0.0, 0.0]} for d in docs])
        _insert(client, collections["text"], (
            {"key": f"{d.doc_id}:{p}", "doc_id": d.doc_id, "part": p,
             "text": d.text[p * PART_CHARS:(p + 1) * PART_CHARS], "_v": [0.0, 0.0]}
            for d in docs for p in range(max(1, math.ceil(len(d.text) / PART_CHARS)))))
        _insert(client, collections["terms"], ({"term": t, "df": n, "_v": [0.0, 0.0]} for t, n in df.items()))
        _insert(client, collections["chunks"], (
            {"row": i, "chunk_id": c.id, "doc_id": c.doc_id, "source": _fits(c.source), "title": _fits(c.title),
             "text": c.text, "start": c.start, "end": c.end, "n_tokens": c.n_tokens, "position": c.position,
             "meta": c.metadata, "meta_text": {str(k): str(v) for k, v in c.metadata.items()},
             "terms": " ".join(t), "vector": v.tolist()}
            for i, (c, t, v) in enumerate(zip(chunks, terms, np.asarray(vectors, dtype=np.float32), strict=True))))
        for part in PARTS:
            client.flush(collections[part])
        for part, expected in (("chunks", len(chunks)), ("docs", len(docs))):
            got = client.query(collections[part], filter="", output_fields=["count(*)"])
            if not got or int(got[0]["count(*)"]) != expected:
                raise IndexStoreError(f"Milvus holds {got[0]['count(*)'] if got else 0} rows of "
                                      f"{collections[part]} after writing {expected}")
    except IndexStoreError:
        raise
    except Exception as e:  # a dropped connection or a refused write: the previous generation stays committed
        raise IndexStoreError(f"Milvus failed while writing the index ({_first_line(e)}); the previous index "
                              "is unchanged") from None
    previous = manifest.get("data")
    manifest = commit_manifest(index_dir, manifest, generation, name, {}, len(docs), len(chunks))
    _drop_stale(client, entry, keep={name, previous})
    remove_stale(index_dir, keep="")  # FAISS generations of an index moved to Milvus
    return manifest


def _insert(client, collection: str, rows) -> None:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            client.insert(collection, batch)
            batch = []
    if batch:
        client.insert(collection, batch)


def _drop_stale(client, entry: dict, keep: set) -> None:
    """Drop this index's collections of generations other than `keep` (uncommitted or superseded)."""
    kept = {_collection(entry, g, p) for g in keep if g for p in PARTS}
    prefix = f"{entry['prefix']}_gen_"
    for name in client.list_collections():
        if name.startswith(prefix) and name not in kept:
            try:
                client.drop_collection(name)
            except Exception:  # another build dropped it first; the next build tries again
                pass
