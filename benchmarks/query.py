"""Warm query latency on SciFact: our retrieval, our full extractive answer, and the LangChain peer.

    .venv/bin/python benchmarks/query.py [../shared/benchmarks/scifact]

All 300 test queries, after a warm-up pass over a few of them. Timed per query, interleaved
(ours retrieval, ours answer, peer) so that background load hits all three alike:

* ours, retrieval only: `Retriever.search(q)`: default settings (hybrid, convex fusion, top_k 8,
  100 candidates per retriever), query embedding included;
* ours, full answer: `Assistant.answer(q)`: retrieval plus the extractive answerer (it embeds the
  candidate sentences of the top passages), with citations or an abstention;
* the LangChain peer over the SAME chunks and vectors: `FAISS.from_embeddings` (our chunk texts and
  stored vectors, an Embeddings wrapper around our embedder for the query) + `BM25Retriever.from_texts`
  + `EnsembleRetriever` (weights 0.5/0.5), k = our top_k for both; timed `ensemble.invoke(q)`.

Wall-clock and process CPU time are both reported: on a shared 2-core machine the wall time of a
query grows with other processes' load (badly so with torch's default of one thread per core, whose
threads wait for each other), while the CPU time with `--threads 1` stays close to idle wall time.

The index is the one benchmarks/beir.py builds (.cache/bench/<dataset>-160); building it embeds
nothing when it is already there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_data import SCIFACT, cache_dir, materialise, read_beir
from bench_common import (
    EmbedderEmbeddings,
    cpu_count,
    load,
    markdown_table,
    percentiles,
    set_threads,
)

from rag.assistant import Assistant
from rag.config import Settings
from rag.indexer import build_index
from rag.store import IndexStore


def peer_ensemble(store: IndexStore, embedder, k: int):
    """The LangChain ensemble over our chunks and our stored vectors (nothing is re-embedded)."""
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS

    texts = [c.text for c in store.chunks]
    metas = [{"source": c.source, "chunk_id": c.id} for c in store.chunks]
    vectors = store.vectors.vectors()
    faiss_store = FAISS.from_embeddings(list(zip(texts, vectors.tolist(), strict=True)),
                                        EmbedderEmbeddings(embedder), metadatas=metas)
    bm25 = BM25Retriever.from_texts(texts, metadatas=metas, k=k)
    dense = faiss_store.as_retriever(search_kwargs={"k": k})
    return EnsembleRetriever(retrievers=[bm25, dense], weights=[0.5, 0.5])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", type=Path, default=SCIFACT)
    ap.add_argument("--warmup", type=int, default=10, help="queries run once, untimed, before timing")
    ap.add_argument("--limit", type=int, default=None, help="time only the first N queries")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's own choice, one per core)")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    corpus, queries, _ = read_beir(args.dataset, "test")
    # the index of benchmarks/beir.py: same chunking, so an existing one is reused as it is
    build_settings = Settings().replace(candidates=300)
    index_dir = cache_dir(f"{args.dataset.name}-{build_settings.chunk_tokens}")
    docs = materialise(corpus, cache_dir(args.dataset.name + "-docs"))
    summary = build_index([docs], index_dir, build_settings)
    print(f"index: {summary.documents} docs, {summary.chunks} chunks, embedded {summary.embedded}", file=sys.stderr)

    settings = Settings()  # the product defaults for querying
    store = IndexStore.open(index_dir)
    assistant = Assistant(store, settings)
    retriever = assistant.retriever
    ensemble = peer_ensemble(store, assistant.embedder, settings.top_k)

    texts = list(queries.values())[: args.limit]
    systems = {
        "ours: retrieval (`Retriever.search`, hybrid)": lambda q: retriever.search(q),
        "ours: full extractive answer (`Assistant.answer`)": lambda q: assistant.answer(q),
        "LangChain peer: BM25Retriever + FAISS + EnsembleRetriever": lambda q: ensemble.invoke(q),
    }
    for q in texts[: args.warmup]:
        for fn in systems.values():
            fn(q)
    load_before = load()
    times: dict[str, list[float]] = {name: [] for name in systems}
    cpu: dict[str, list[float]] = {name: [] for name in systems}
    abstained = 0
    for q in texts:
        for name, fn in systems.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(q)
            times[name].append((time.perf_counter() - t0) * 1000)
            cpu[name].append((time.process_time() - c0) * 1000)
            if name.startswith("ours: full"):
                abstained += out.abstained
    load_after = load()

    stats = {name: percentiles(ms) for name, ms in times.items()}
    peer = stats["LangChain peer: BM25Retriever + FAISS + EnsembleRetriever"]
    print(f"\n{args.dataset.name}: {len(texts)} queries, {summary.chunks} chunks, top_k={settings.top_k} "
          f"(peer k={settings.top_k} per retriever), warm-up {args.warmup} queries; "
          f"{cpu_count()} CPUs, torch threads {threads}; "
          f"load average {load_before} before, {load_after} after; {abstained} answers abstained\n")
    rows = [[name, f"{p50:.1f}", f"{p95:.1f}", f"{peer[0] / p50:.2f}x", f"{peer[1] / p95:.2f}x",
             *(f"{c:.1f}" for c in percentiles(cpu[name]))] for name, (p50, p95) in stats.items()]
    print(markdown_table(["system", "p50 ms", "p95 ms", "peer/this p50", "peer/this p95", "CPU p50 ms", "CPU p95 ms"],
                         rows))
    print("\np50/p95: wall-clock latency. CPU: process CPU time per query (all threads); with one torch thread it "
          "is close to the wall time on an idle machine, and it depends far less on other processes' load.")


if __name__ == "__main__":
    main()
