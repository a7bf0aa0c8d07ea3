"""Open, write and check an index on whichever store its manifest names.

Two backends implement the Store protocol (rag/store.py): IndexStore (FAISS + SQLite + bm25s in the
index folder, the default) and MilvusStore (rag/milvus_store.py: Milvus Lite in the folder, or a Milvus
server). Everything above the store stage opens and writes indexes through here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .store import ChunkRecord, DocumentRecord, IndexStore, Store, check_model, store_kind


def open_store(index_dir: str | Path, model: dict | None = None) -> Store:
    """Open and verify the index in `index_dir` on its store; `model` must match if given."""
    manifest = IndexStore.read_manifest(index_dir)
    if model is not None:
        check_model(manifest, model)
    if store_kind(manifest) == "milvus":
        from .milvus_store import MilvusStore

        return MilvusStore.open(Path(index_dir), manifest)
    return IndexStore.open(index_dir, model)


def write_generation(index_dir: str | Path, manifest: dict, docs: list[DocumentRecord], chunks: list[ChunkRecord],
                     vectors: np.ndarray, model_dir: str | Path | None = None, appended_to: dict | None = None) -> dict:
    """Write a complete new generation on the manifest's store and commit it. `appended_to` ({"data", "rows"}:
    the generation whose rows are these rows' first ones, unchanged) lets FAISS extend that generation's ANN
    index instead of building it again; Milvus writes every generation in full."""
    if store_kind(manifest) == "milvus":
        from .milvus_store import write_generation as write_milvus

        return write_milvus(index_dir, manifest, docs, chunks, vectors, model_dir)
    return IndexStore.write(index_dir, manifest, docs, chunks, vectors, model_dir, appended_to)


def check_store(index_dir: str | Path) -> dict:
    """Verify an index fully on its store (see IndexStore.check and MilvusStore.check)."""
    if store_kind(IndexStore.read_manifest(index_dir)) == "milvus":
        from .milvus_store import MilvusStore

        return MilvusStore.check(index_dir)
    return IndexStore.check(index_dir)
