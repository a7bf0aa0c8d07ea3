"""Ours against the LangChain way of building the same thing, on a BEIR dataset (SciFact), in one run.

    .venv/bin/python benchmarks/peer.py [../shared/benchmarks/scifact] [--limit-docs N]

The peer is what a user would otherwise write with LangChain: documents = title + "\\n\\n" + text,
`RecursiveCharacterTextSplitter` (chunk_size 1000, chunk_overlap 100 characters), `FAISS.from_documents`
with `HuggingFaceEmbeddings` on the same local model folder (normalize_embeddings=True),
`BM25Retriever.from_documents` (its default whitespace tokenizer), and `EnsembleRetriever`
(weights 0.5/0.5), both retrievers at k=100 so recall@100 is measurable.

Ours: `build_index` into a fresh temporary index folder (so every chunk is embedded; reading the
document files, chunking, embedding and writing the index with fsync are all timed), then
`Retriever.search(q, top_k=300)` in the default hybrid mode with 300 candidates per retriever.

For both, chunk hits are folded to document ids by first occurrence in rank order (ours: the same as
max fused score). Ingestion excludes loading the embedding model (both load it first). Query latency
is timed per query, interleaved, and includes embedding the query.
`--limit-docs N` indexes only the first N documents for a quick check (metrics are then not comparable).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_data import SCIFACT, cache_dir, doc_of, doc_text, materialise, read_beir
from bench_common import cpu_count, load, markdown_table, metric_rows, percentiles, set_threads

from rag.config import Settings, model_path
from rag.embeddings import get_embedder
from rag.indexer import build_index
from rag.retrieval import Retriever
from rag.store import IndexStore

DEPTH = 100
METRICS = ["ndcg@10", "recall@100", "mrr@10"]


def build_peer(corpus: dict, model_dir: Path, chunk_size: int, chunk_overlap: int):
    """(ensemble retriever, chunks, ingest seconds, ingest CPU seconds); the model loads before the clock starts."""
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    with warnings.catch_warnings():  # deprecated in favour of langchain-huggingface, which is not installed
        warnings.simplefilter("ignore")
        embeddings = HuggingFaceEmbeddings(model_name=str(model_dir), model_kwargs={"device": "cpu"},
                                           encode_kwargs={"normalize_embeddings": True})
    embeddings.embed_query("warm up")
    t0, c0 = time.perf_counter(), time.process_time()
    documents = [Document(page_content=doc_text(title, text) or "(empty)", metadata={"doc_id": doc_id})
                 for doc_id, (title, text) in corpus.items()]
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    chunks = splitter.split_documents(documents)
    vectorstore = FAISS.from_documents(chunks, embeddings)
    bm25 = BM25Retriever.from_documents(chunks, k=DEPTH)
    ensemble = EnsembleRetriever(retrievers=[bm25, vectorstore.as_retriever(search_kwargs={"k": DEPTH})],
                                 weights=[0.5, 0.5])
    return ensemble, len(chunks), time.perf_counter() - t0, time.process_time() - c0


def first_occurrence(doc_ids) -> list[str]:
    return list(dict.fromkeys(doc_ids))[:DEPTH]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", type=Path, default=SCIFACT)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit-docs", type=int, default=None, help="index only the first N documents (quick check)")
    ap.add_argument("--chunk-size", type=int, default=1000, help="peer splitter chunk size (characters)")
    ap.add_argument("--chunk-overlap", type=int, default=100, help="peer splitter overlap (characters)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's own choice, one per core)")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    corpus, queries, qrels = read_beir(args.dataset, args.split)
    folder = args.dataset.name + "-docs"
    if args.limit_docs:
        corpus = dict(list(corpus.items())[: args.limit_docs])
        folder += f"-first{args.limit_docs}"
    docs = materialise(corpus, cache_dir(folder))
    settings = Settings().replace(candidates=300)
    embedder = get_embedder(model_path(settings), settings.batch_size)
    embedder.embed_query("warm up")  # load the model before timing

    load_start = load()
    with tempfile.TemporaryDirectory(prefix="rag-peer-bench-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = build_index([docs], Path(tmp) / "index", settings)
        ours_ingest, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"ours: {summary.documents} docs, {summary.chunks} chunks, embedded {summary.embedded} "
              f"in {ours_ingest:.0f}s (load {load()})", file=sys.stderr)
        retriever = Retriever(IndexStore.open(Path(tmp) / "index"), embedder, settings)

        ensemble, peer_chunks, peer_ingest, peer_cpu = build_peer(corpus, model_path(settings), args.chunk_size,
                                                        args.chunk_overlap)
        print(f"peer: {peer_chunks} chunks in {peer_ingest:.0f}s (load {load()})", file=sys.stderr)

        texts = list(queries.items())
        for _, q in texts[:5]:  # warm-up, untimed
            retriever.search(q, top_k=3 * DEPTH)
            ensemble.invoke(q)
        load_queries = load()
        runs: dict[str, dict[str, list[str]]] = {"ours": {}, "peer": {}}
        times: dict[str, list[float]] = {"ours": [], "peer": []}
        cpu: dict[str, list[float]] = {"ours": [], "peer": []}
        for qid, q in texts:
            t, c = time.perf_counter(), time.process_time()
            hits = retriever.search(q, top_k=3 * DEPTH)
            times["ours"].append((time.perf_counter() - t) * 1000)
            cpu["ours"].append((time.process_time() - c) * 1000)
            runs["ours"][qid] = first_occurrence(doc_of(h.chunk.source) for h in hits)
            t, c = time.perf_counter(), time.process_time()
            found = ensemble.invoke(q)
            times["peer"].append((time.perf_counter() - t) * 1000)
            cpu["peer"].append((time.process_time() - c) * 1000)
            runs["peer"][qid] = first_occurrence(d.metadata["doc_id"] for d in found)
    load_end = load()

    rows = {
        f"ours (hybrid, {settings.chunk_tokens}-token chunks)": ("ours", ours_ingest, ours_cpu, summary.chunks),
        f"LangChain peer ({args.chunk_size}-char splitter, FAISS + BM25, Ensemble 0.5/0.5)":
            ("peer", peer_ingest, peer_cpu, peer_chunks),
    }
    print(f"\n{args.dataset.name} ({len(queries)} queries, {len(corpus)} docs; {cpu_count()} CPUs, "
          f"torch threads {threads}; load average {load_start} at start, "
          f"{load_queries} before queries, {load_end} at end)\n")
    quality = metric_rows(qrels, {name: runs[key] for name, (key, *_) in rows.items()}, METRICS)
    table = []
    for q, (key, ingest, ingest_cpu, n_chunks) in zip(quality, rows.values(), strict=True):
        p50, p95 = percentiles(times[key])
        c50, _ = percentiles(cpu[key])
        table.append([*q, n_chunks, *(f"{v:.1f}" for v in (ingest, ingest_cpu, p50, p95, c50))])
    print(markdown_table(["system", "nDCG@10", "recall@100", "MRR@10", "chunks", "ingest s", "ingest CPU s",
                          "query p50 ms", "query p95 ms", "query CPU p50 ms"], table))
    print("\ningest s / query ms: wall clock. CPU: process CPU time (all threads), which depends far less on "
          "other processes' load.")


if __name__ == "__main__":
    main()
