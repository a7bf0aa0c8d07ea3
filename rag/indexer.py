"""Build or update an index from folders of files: only new and changed documents are embedded."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import context
from .chunking import chunk_text, wordpiece_counter
from .config import Settings, model_path
from .embeddings import Embedder, get_embedder
from .loaders import Document, LoaderError, load_paths
from .store import ChunkRecord, DocumentRecord, IndexStore, IndexStoreError, check_model, write_lock


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


def model_info(embedder: Embedder) -> dict:
    return {"name": embedder.name, "dimension": embedder.dimension, "fingerprint": embedder.fingerprint,
            "max_wordpieces": embedder.max_wordpieces}


def _doc_id(doc: Document) -> str:
    return hashlib.sha1(f"{doc.source}\x00{doc.content_hash}".encode()).hexdigest()[:16]


def build_index(
    paths: list[str | Path] | None = None,
    index_dir: str | Path | None = None,
    settings: Settings | None = None,
    rebuild: bool = False,
    prune: bool = True,
    progress: bool = False,
) -> BuildSummary:
    """Index the files under `paths` into `index_dir`, embedding only what changed.

    With `prune` (the default) documents no longer found under `paths` are removed; without it the
    index keeps them (used to add uploaded files). Raises LoaderError when nothing could be loaded
    and IndexStoreError when the existing index is unusable and `rebuild` is not set.
    """
    settings = settings or Settings()
    paths = [Path(p) for p in (paths or [settings.corpus_dir])]
    index_dir = Path(index_dir or settings.index_dir)
    started = time.perf_counter()
    report = load_paths(paths, progress=progress)
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
    with write_lock(index_dir):
        old = None
        if IndexStore.exists(index_dir) and not rebuild:
            manifest = IndexStore.read_manifest(index_dir)
            check_model(manifest, model)
            old = IndexStore.open(index_dir)
        reuse = old is not None and old.manifest.get("chunking") == chunking
        old_docs = old.documents() if old else {}
        seen = {d.source for d in report.documents}

        docs: list[DocumentRecord] = []
        chunks: list[ChunkRecord] = []
        vectors: list[np.ndarray] = []
        fresh: list[tuple[Document, str]] = []
        if old is not None:
            old_vectors = old.vectors.vectors()
            by_doc: dict[str, list[ChunkRecord]] = {}
            for c in old.chunks:
                by_doc.setdefault(c.doc_id, []).append(c)
            kept = {d.source: d for d in old.all_documents()}
        for doc in report.documents:
            entry = old_docs.get(doc.source)
            if entry and reuse and entry["hash"] == doc.content_hash:
                summary.unchanged += 1
                rows = by_doc.get(entry["doc_id"], [])
                docs.append(kept[doc.source])
                chunks.extend(rows)
                vectors.append(old_vectors[[c.row for c in rows]] if rows else old_vectors[:0])
            else:
                if entry:
                    summary.updated += 1
                else:
                    summary.new += 1
                fresh.append((doc, _doc_id(doc)))
        if not prune and old is not None:
            for source, entry in old_docs.items():
                if source not in seen:
                    rows = by_doc.get(entry["doc_id"], [])
                    docs.append(kept[source])
                    chunks.extend(rows)
                    vectors.append(old_vectors[[c.row for c in rows]] if rows else old_vectors[:0])
        summary.removed = sum(1 for s in old_docs if s not in seen) if prune else 0

        counter = wordpiece_counter(str(model_path(settings)))
        new_chunks: list[ChunkRecord] = []
        for doc, doc_id in fresh:
            docs.append(DocumentRecord(doc_id, doc.source, doc.title, doc.content_hash, doc.metadata, doc.text))
            for c in chunk_text(doc.text, doc_id, settings.chunk_tokens, settings.chunk_overlap, window, counter):
                new_chunks.append(ChunkRecord(0, c.id, doc_id, doc.source, doc.title, c.text, c.start, c.end,
                                              c.n_tokens, c.position, doc.metadata))
        if new_chunks:
            _ = embedder.model  # load before timing, so chunks/s measures embedding alone
        embed_started = time.perf_counter()
        if new_chunks:
            # embedded with its title/heading prefix; the stored chunk text stays the document's own span
            texts = context.index_texts(new_chunks, {doc_id: (doc.title, doc.text) for doc, doc_id in fresh},
                                        settings.chunk_context, model_path(settings))
            vectors.append(embedder.embed(texts, progress=progress))
            chunks.extend(new_chunks)
        summary.embedded = len(new_chunks)
        embed_seconds = time.perf_counter() - embed_started
        changed = bool(fresh) or summary.removed > 0 or rebuild or old is None or not reuse
        if changed:
            all_vectors = np.concatenate(vectors) if vectors else np.zeros((0, model["dimension"]), np.float32)
            base = dict(old.manifest) if old is not None and not rebuild else {}
            base.update(model=model, chunking=chunking, roots=[str(p) for p in paths])
            per_doc = Counter(c.doc_id for c in chunks)  # one pass: a count per document was quadratic
            base["documents"] = {d.source: {"doc_id": d.doc_id, "hash": d.hash, "title": d.title,
                                            "chunks": per_doc[d.doc_id]}
                                 for d in docs}
            IndexStore.write(index_dir, base, docs, chunks, all_vectors, model_dir=model_path(settings))
    summary.documents = len(docs)
    summary.chunks = len(chunks)
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.chunks_per_second = round(summary.embedded / embed_seconds, 1) if summary.embedded else 0.0
    return summary


__all__ = ["BuildSummary", "build_index", "IndexStoreError", "LoaderError"]
