"""Build or update an index from folders of files: only new and changed documents are embedded."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import context
from .backends import open_store, write_generation
from .chunking import ChunkLimitError, chunk_text, wordpiece_counter
from .config import Settings, model_path
from .embeddings import Embedder, get_embedder, model_info
from .loaders import Document, Limits, LoaderError, load_paths
from .store import (
    STORES,
    ChunkRecord,
    DocumentRecord,
    IndexStore,
    IndexStoreError,
    Store,
    check_model,
    store_kind,
    write_lock,
)


@dataclass
class BuildSummary:
    """What an index build did; `to_dict()` is what `rag index --json` prints."""

    files: int = 0
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    new: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chunks_per_second: float = 0.0
    index_dir: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _doc_id(doc: Document) -> str:
    return hashlib.sha1(f"{doc.source}\x00{doc.content_hash}".encode()).hexdigest()[:16]


@dataclass
class BuildPlan:
    """What a build keeps from the old index and what it must chunk and embed anew."""

    docs: list[DocumentRecord] = field(default_factory=list)  # kept documents (then the fresh ones)
    chunks: list[ChunkRecord] = field(default_factory=list)  # their chunks, in the same order as `vectors`
    vectors: list[np.ndarray] = field(default_factory=list)
    fresh: list[tuple[Document, str]] = field(default_factory=list)  # (document, doc_id) to chunk and embed
    kept_chunks: int = 0  # how many of `chunks` (the first ones) are kept from the old index
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0


def plan_build(documents: list[Document], old: Store | None, reuse: bool, prune: bool) -> BuildPlan:
    """Keep unchanged documents (with their chunks and vectors) when `reuse`; the rest are fresh. Without
    `prune`, indexed documents missing from `documents` are kept too. Kept documents stay in their old row
    order, so an update that only adds documents keeps the old rows as the new index's first rows."""
    plan = BuildPlan()
    old_docs = old.documents() if old else {}
    if old is not None:
        old_vectors = old.vectors_of()
        by_doc: dict[str, list[ChunkRecord]] = {}
        for c in old.all_chunks():
            by_doc.setdefault(c.doc_id, []).append(c)
        records = {d.source: d for d in old.all_documents()}

    kept: list[str] = []

    def keep(source: str) -> None:
        kept.append(source)

    for doc in documents:
        entry = old_docs.get(doc.source)
        if entry and reuse and entry["hash"] == doc.content_hash:
            plan.unchanged += 1
            keep(doc.source)
        else:
            plan.updated += bool(entry)
            plan.new += not entry
            plan.fresh.append((doc, _doc_id(doc)))
    seen = {d.source for d in documents}
    gone = [source for source in old_docs if source not in seen]
    if prune:
        plan.removed = len(gone)
    else:
        for source in gone:
            keep(source)
    chunks_of = {source: by_doc.get(old_docs[source]["doc_id"], []) for source in kept}
    for source in sorted(kept, key=lambda s: chunks_of[s][0].row if chunks_of[s] else -1):
        rows = chunks_of[source]
        plan.docs.append(records[source])
        plan.chunks.extend(rows)
        plan.vectors.append(old_vectors[[c.row for c in rows]] if rows else old_vectors[:0])
    plan.kept_chunks = len(plan.chunks)
    return plan


def chunk_documents(fresh: list[tuple[Document, str]], settings: Settings, window: int
                    ) -> tuple[list[DocumentRecord], list[ChunkRecord], dict[str, str]]:
    """The records of the fresh documents, their chunks (each fits `window` word-pieces), and the
    documents skipped for chunking into more than settings.max_chunks_per_file ({source: reason})."""
    counter = wordpiece_counter(str(model_path(settings)))
    docs, chunks, skipped = [], [], {}
    for doc, doc_id in fresh:
        try:
            pieces = chunk_text(doc.text, doc_id, settings.chunk_tokens, settings.chunk_overlap, window, counter,
                                max_chunks=settings.max_chunks_per_file)
        except ChunkLimitError:
            skipped[doc.source] = (f"more than {settings.max_chunks_per_file} chunks, over the per file limit "
                                   "(max_chunks_per_file)")
            continue
        docs.append(DocumentRecord(doc_id, doc.source, doc.title, doc.content_hash, doc.metadata, doc.text))
        chunks.extend(ChunkRecord(0, c.id, doc_id, doc.source, doc.title, c.text, c.start, c.end, c.n_tokens,
                                  c.position, doc.metadata) for c in pieces)
    return docs, chunks, skipped


def embed_chunks(chunks: list[ChunkRecord], fresh: list[tuple[Document, str]], embedder: Embedder,
                 settings: Settings, progress: bool = False) -> np.ndarray:
    """Chunk vectors, each embedded with its title/heading prefix (the stored text stays the document's span)."""
    texts = context.index_texts(chunks, {doc_id: (doc.title, doc.text) for doc, doc_id in fresh},
                                settings.chunk_context, model_path(settings))
    return embedder.embed(texts, progress=progress)


def _same_roots(manifest: dict, paths: list[Path]) -> bool:
    """Whether `paths` are the folders the index was built from (as resolved from here)."""
    return sorted(str(Path(r).resolve()) for r in manifest.get("roots") or []) == sorted(
        str(p.resolve()) for p in paths)


def store_entry(index_dir: Path, settings: Settings, existing: dict | None) -> dict:
    """The manifest's "store" record: the existing index's, unless settings ask for another store (which
    needs a rebuild, `existing` None), else a new one as settings say (FAISS by default)."""
    kind = settings.store
    if kind is not None and kind not in STORES:
        raise ValueError(f"unknown store {kind!r}; use one of {', '.join(STORES)}")
    if existing is not None:
        have = store_kind(existing)
        if kind is not None and kind != have:
            raise IndexStoreError(f"{index_dir} is stored on {have}; to move it to {kind}, add --rebuild")
        if settings.milvus_uri and (existing.get("store") or {}).get("uri") != settings.milvus_uri:
            raise IndexStoreError(f"{index_dir} is stored at {(existing.get('store') or {}).get('uri')}; to move it "
                                  f"to {settings.milvus_uri}, add --rebuild")
        return existing.get("store") or {"kind": "faiss"}
    if settings.milvus_uri and kind in (None, "milvus"):
        kind = "milvus"
    if kind == "milvus":
        from .milvus_store import store_entry as milvus_entry

        return milvus_entry(index_dir, settings.milvus_uri)
    return {"kind": "faiss"}


def vector_index(n: int, dimension: int, settings: Settings) -> dict:
    """The vector index a build of n chunks gets (rag/ann.py): settings.ann, with "auto" exact below the
    threshold (compression then does not apply) and an empty index always flat."""
    from . import ann

    threshold = settings.ann_threshold if settings.ann_threshold is not None else ann.ANN_THRESHOLD
    kind, compression = settings.ann, settings.ann_compression
    ann.plan(max(n, 1), dimension, kind, compression, threshold=0)  # a bad kind or combination: ValueError now
    if n == 0 or (kind == "auto" and n < threshold):
        return {"kind": "flat"}
    return ann.plan(n, dimension, kind, compression, threshold)


def write_index(index_dir: Path, old: Store | None, plan: BuildPlan, model: dict, chunking: dict,
                paths: list[Path], settings: Settings, store: dict | None = None) -> None:
    """Write the planned documents, chunks and vectors as the index's new generation."""
    vectors = np.concatenate(plan.vectors) if plan.vectors else np.zeros((0, model["dimension"]), np.float32)
    manifest = dict(old.manifest) if old is not None else {}
    manifest.update(model=model, chunking=chunking, roots=[str(p.resolve()) for p in paths])
    manifest["store"] = store or manifest.get("store") or {"kind": "faiss"}
    manifest["vector_index"] = vector_index(len(plan.chunks), model["dimension"], settings)
    per_doc = Counter(c.doc_id for c in plan.chunks)  # one pass: a count per document was quadratic
    manifest["documents"] = {d.source: {"doc_id": d.doc_id, "hash": d.hash, "title": d.title,
                                        "chunks": per_doc[d.doc_id]} for d in plan.docs}
    write_generation(index_dir, manifest, plan.docs, plan.chunks, vectors, model_dir=model_path(settings),
                     appended_to=_appended_to(old, plan, manifest))


def _appended_to(old: Store | None, plan: BuildPlan, manifest: dict) -> dict | None:
    """{"data", "rows"} when the planned rows start with all of the old index's rows, unchanged and in
    order, and the vector index keeps its kind and parameters: the write may then extend the old ANN
    index with the new rows instead of building it again (rag.ann.extend)."""
    if old is None or store_kind(old.manifest) != "faiss" or "data" not in old.manifest:
        return None
    if old.manifest.get("vector_index", {"kind": "flat"}) != manifest["vector_index"]:
        return None
    rows = int(old.manifest.get("counts", {}).get("chunks", -1))
    if rows <= 0 or plan.kept_chunks != rows or any(c.row != i for i, c in enumerate(plan.chunks[:rows])):
        return None
    return {"data": old.manifest["data"], "rows": rows}


def build_index(
    paths: list[str | Path] | None = None,
    index_dir: str | Path | None = None,
    settings: Settings | None = None,
    rebuild: bool = False,
    prune: bool = True,
    progress: bool = False,
    replace: bool = False,
    notify=None,
) -> BuildSummary:
    """Index the files under `paths` into `index_dir`, embedding only what changed.

    With `prune` (the default) documents no longer found under `paths` are removed; without it the
    index keeps them (used to add uploaded files). Indexing other folders than the index was built from
    would remove its documents: that needs `replace` (else IndexStoreError says so). Raises LoaderError
    when nothing could be loaded and IndexStoreError when the existing index is unusable and `rebuild`
    is not set. `notify(message)` hears that the build waits for another one.
    """
    settings = settings or Settings()
    paths = [Path(p) for p in (paths or [settings.corpus_dir])]
    index_dir = Path(index_dir or settings.index_dir)
    started = time.perf_counter()
    report = load_paths(paths, progress=progress, limits=Limits.of(settings))
    summary = BuildSummary(files=len(report.documents) + len(report.skipped) + len(report.unsupported),
                           skipped=report.skipped, unsupported=report.unsupported, index_dir=str(index_dir))
    if not report.documents:
        reasons = "; ".join(f"{s}: {r}" for s, r in list(report.skipped.items())[:3])
        raise LoaderError(f"no readable documents under {', '.join(map(str, paths))}"
                          + (f" ({reasons})" if reasons else ""))
    embedder = get_embedder(model_path(settings), settings.batch_size)
    model = model_info(embedder)
    chunking = {"tokenizer": "cl100k_base", "chunk_tokens": settings.chunk_tokens,
                "chunk_overlap": settings.chunk_overlap, "max_wordpieces": settings.max_wordpieces}
    window = min(settings.max_wordpieces, embedder.max_wordpieces)
    if settings.chunk_context:
        # an index built without the prefix (no "context" key) differs, so it is re-embedded
        chunking["context"] = context.manifest_entry()
        window -= context.PREFIX_WORDPIECES  # room for the prefix: chunk + prefix fit the window
    with write_lock(index_dir, notify):
        old = None
        existing = IndexStore.read_manifest(index_dir) if IndexStore.exists(index_dir) and not rebuild else None
        store = store_entry(index_dir, settings, existing)
        if existing is not None:
            check_model(existing, model)
            old = open_store(index_dir)
        reuse = old is not None and old.manifest.get("chunking") == chunking
        plan = plan_build(report.documents, old, reuse, prune)
        if old is not None and plan.removed and not replace and not _same_roots(old.manifest, paths):
            old.close()
            raise IndexStoreError(
                f"{index_dir} was built from {', '.join(old.manifest.get('roots') or ['other folders'])}; "
                f"indexing {', '.join(map(str, paths))} would remove {plan.removed} of its documents. Use "
                "--replace to replace them (or another --index-dir)")
        docs, new_chunks, too_long = chunk_documents(plan.fresh, settings, window)
        summary.skipped.update(too_long)
        plan.fresh = [(d, i) for d, i in plan.fresh if d.source not in too_long]
        plan.docs.extend(docs)
        if new_chunks:
            _ = embedder.model  # load before timing, so chunks/s measures embedding alone
        embed_started = time.perf_counter()
        if new_chunks:
            plan.vectors.append(embed_chunks(new_chunks, plan.fresh, embedder, settings, progress))
            plan.chunks.extend(new_chunks)
        embed_seconds = time.perf_counter() - embed_started
        if old is not None:
            old.close()  # what the plan keeps is in memory: let the write delete the old generation
        wanted_index = vector_index(len(plan.chunks), model["dimension"], settings)
        moved = old is not None and old.manifest.get("vector_index", {"kind": "flat"}) != wanted_index
        if plan.fresh or plan.removed or rebuild or old is None or not reuse or moved:
            # the folders it follows: these, or (when adding uploads, not pruning) these and the earlier ones
            roots = [p.resolve() for p in paths]
            if not prune and old is not None:
                roots = sorted({*map(str, roots), *(old.manifest.get("roots") or [])})
            write_index(index_dir, old, plan, model, chunking, [Path(r) for r in roots], settings, store)
    summary.new, summary.updated, summary.unchanged, summary.removed = (plan.new, plan.updated, plan.unchanged,
                                                                         plan.removed)
    summary.embedded = len(new_chunks)
    summary.documents = len(plan.docs)
    summary.chunks = len(plan.chunks)
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.chunks_per_second = round(summary.embedded / embed_seconds, 1) if summary.embedded else 0.0
    return summary


__all__ = ["BuildPlan", "BuildSummary", "build_index", "chunk_documents", "embed_chunks", "plan_build",
           "write_index", "IndexStoreError", "LoaderError"]
