"""nDCG@10 and recall@100 on a BEIR-format dataset for bm25, dense and hybrid side by side.

    python benchmarks/beir.py ../shared/benchmarks/scifact

Documents are indexed as title + text with the product's own chunking; a document's score is the
best score of its chunks. The index is cached under .cache/bench/ (re-runs embed nothing).

    python benchmarks/beir.py ../shared/benchmarks/scifact --store milvus

runs the same on the Milvus backend (Milvus Lite): the cached index's documents, chunks and vectors are
written into a fresh Milvus Lite database through the store's own write path (nothing is re-embedded, so
any difference is the store's), and retrieval then goes through rag.milvus_store.MilvusStore.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_data import SCIFACT, cache_dir, doc_of, materialise, read_beir
from bench_common import add_set_option, apply_sets, markdown_table, metric_rows

from rag.backends import open_store, write_generation
from rag.config import Settings, model_path
from rag.embeddings import get_embedder
from rag.indexer import build_index
from rag.retrieval import Retriever
from rag.store import STORES, IndexStore


def copy_to_milvus(store: IndexStore, target: Path):
    """The same documents, chunks and vectors written as a Milvus Lite index in `target` (rebuilt each run)."""
    shutil.rmtree(target, ignore_errors=True)
    manifest = {k: v for k, v in store.manifest.items() if k not in ("data", "files", "generation")}
    manifest["store"] = {"kind": "milvus", "uri": "milvus.db", "prefix": "rag"}
    t0 = time.perf_counter()
    write_generation(target, manifest, store.all_documents(), store.all_chunks(), store.vectors_of())
    print(f"milvus: wrote {store.size} chunks in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return open_store(target)


def doc_run(retriever: Retriever, queries: dict, configs: dict, depth: int = 100) -> dict:
    """{config: {qid: {doc: score}}}, chunk hits folded to documents by max score."""
    runs = {name: {} for name in configs}
    for qid, text in queries.items():
        qv = retriever.embedder.embed_query(text)
        for name, kw in configs.items():
            hits = retriever.search(text, top_k=depth * 3, query_vector=qv, **kw)
            docs: dict[str, float] = {}
            for h in hits:
                d = doc_of(h.chunk.source)
                docs[d] = max(docs.get(d, float("-inf")), h.score)
            best = sorted(docs.items(), key=lambda kv: -kv[1])[:depth]
            runs[name][qid] = dict(best)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", type=Path, default=SCIFACT)
    ap.add_argument("--split", default="test")
    ap.add_argument("--sweep", action="store_true", help="also print convex weights and RRF k variants")
    ap.add_argument("--chunk-tokens", type=int, default=None)
    ap.add_argument("--store", choices=STORES, default="faiss",
                    help="milvus: copy the cached index into Milvus Lite and retrieve from there")
    ap.add_argument("--no-chunk-context", action="store_true",
                    help="index chunks without their title/heading prefix (rag/context.py; own cached index)")
    add_set_option(ap)
    args = ap.parse_args()
    corpus, queries, qrels = read_beir(args.dataset, args.split)
    settings = apply_sets(Settings().replace(chunk_tokens=args.chunk_tokens, candidates=300,
                                             chunk_context=False if args.no_chunk_context else None), args.set, ap)
    name = f"{args.dataset.name}-{settings.chunk_tokens}" + ("" if settings.chunk_context else "-noctx")
    docs = materialise(corpus, cache_dir(args.dataset.name + "-docs"))
    t0 = time.perf_counter()
    summary = build_index([docs], cache_dir(name), settings, progress=sys.stderr.isatty())
    print(f"index: {summary.documents} docs, {summary.chunks} chunks, embedded {summary.embedded} "
          f"in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    store = IndexStore.open(cache_dir(name))
    if args.store == "milvus":
        store = copy_to_milvus(store, cache_dir(name + "-milvus"))
    retriever = Retriever(store, get_embedder(model_path(settings)), settings)
    configs = {"bm25": {"mode": "bm25"}, "dense": {"mode": "dense"},
               "hybrid (default)": {"mode": "hybrid"},
               "hybrid rrf k=60": {"mode": "hybrid", "fusion": "rrf"}}
    if args.sweep:
        import dataclasses

        for w in (0.3, 0.4, 0.5, 0.6, 0.7):
            configs[f"convex w={w}"] = {"mode": "hybrid", "fusion": "convex", "_w": w}
        runs = {}
        for cname, kw in configs.items():
            w = kw.pop("_w", None)
            retriever.settings = dataclasses.replace(settings, dense_weight=w) if w else settings
            runs.update(doc_run(retriever, queries, {cname: kw}))
        retriever.settings = settings
    else:
        runs = doc_run(retriever, queries, configs)
    print(f"\n{args.dataset.name} ({len(queries)} queries, {summary.documents} docs, {summary.chunks} chunks, "
          f"chunk_tokens={settings.chunk_tokens}, chunk_context={settings.chunk_context})\n")
    print(markdown_table(["retrieval", "nDCG@10", "recall@100", "MRR@10"],
                         metric_rows(qrels, runs, ["ndcg@10", "recall@100", "mrr@10"])))


if __name__ == "__main__":
    main()
