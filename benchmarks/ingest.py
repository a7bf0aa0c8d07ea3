"""Ingest throughput: `build_index` chunks/s against the embedder's raw `encode` chunks/s.

    .venv/bin/python benchmarks/ingest.py            # 5000 files
    .venv/bin/python benchmarks/ingest.py --n 500    # a quick run

What it does, in one run:
1. writes N short text files into a temporary folder, one SciFact abstract per file (title, a blank
   line, the abstract) taken from ../shared/benchmarks/scifact/corpus.jsonl; when that file is not
   there, synthetic paragraphs are used instead (the output says which);
2. loads the embedding model and the tokenizers, then warms them up on a few texts (not timed);
3. times `rag.indexer.build_index` into a fresh index folder. This INCLUDES reading and decoding the
   files, chunking (tiktoken + the word-piece window check), embedding, and writing the index
   (SQLite chunk table, FAISS vectors, BM25, manifest, fsync). It EXCLUDES model loading;
4. reads the chunk texts back from the built store (`IndexStore.open(dir).chunks`) and times the
   embedder's raw `SentenceTransformer.encode` on exactly those texts, same batch size, in the
   same order;
5. prints both rates and their ratio ingest/raw (target: >= 0.90).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.chunking import encoding, wordpiece_counter  # noqa: E402
from rag.config import Settings, model_path  # noqa: E402
from rag.embeddings import get_embedder  # noqa: E402
from rag.indexer import build_index  # noqa: E402
from rag.store import IndexStore  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "benchmarks" / "scifact" / "corpus.jsonl"

_WORDS = ("the model index retrieval document answer question chunk vector search result local offline "
          "folder file report study patient cell protein effect trial data analysis method increase "
          "decrease risk level response group control significant measured observed").split()


def _synthetic(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        sentences = []
        for _ in range(rng.randint(3, 12)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 24))]
            sentences.append(" ".join(words).capitalize() + ".")
        texts.append(f"Note {i}\n\n" + " ".join(sentences))
    return texts


def source_texts(n: int, source: Path) -> tuple[list[str], str]:
    """N document texts and a description of where they came from."""
    if source.is_file():
        texts = []
        with source.open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.append(f"{row['title']}\n\n{row['text']}")
                if len(texts) == n:
                    break
        if len(texts) < n:  # more files than abstracts: cycle, numbering the copies so no two are equal
            base = list(texts)
            texts += [f"(copy {i // len(base)}) {base[i % len(base)]}" for i in range(len(base), n)]
        return texts, f"SciFact abstracts from {source.name}"
    return _synthetic(n), "synthetic paragraphs (SciFact corpus not found)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="number of files (default 5000)")
    parser.add_argument("--source", type=Path, default=SCIFACT, help="a BEIR corpus.jsonl to take texts from")
    parser.add_argument("--profile", type=Path, help="write a cProfile of build_index to this file")
    args = parser.parse_args(argv)

    settings = Settings()
    texts, origin = source_texts(args.n, args.source)
    with tempfile.TemporaryDirectory(prefix="rag-ingest-") as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        for i, text in enumerate(texts):
            (folder / f"doc-{i:05d}.txt").write_text(text, encoding="utf-8")
        index_dir = Path(tmp) / "index"

        # Not timed: model load, tokenizer loads, and one warm-up batch.
        embedder = get_embedder(model_path(settings), settings.batch_size)
        encoding()
        wordpiece_counter(str(model_path(settings)))
        embedder.model.encode(texts[: settings.batch_size], batch_size=settings.batch_size,
                              normalize_embeddings=True, convert_to_numpy=True)

        started, cpu_started = time.perf_counter(), time.process_time()
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            summary = profiler.runcall(build_index, [folder], index_dir, settings)
            profiler.dump_stats(str(args.profile))
        else:
            summary = build_index([folder], index_dir, settings)
        ingest_seconds = time.perf_counter() - started
        ingest_cpu = time.process_time() - cpu_started

        # what build_index embedded: each chunk with its title/heading prefix (rag/context.py)
        chunk_texts = IndexStore.open(index_dir).indexed_texts()
        assert len(chunk_texts) == summary.embedded, (len(chunk_texts), summary.embedded)
        started, cpu_started = time.perf_counter(), time.process_time()
        embedder.model.encode(chunk_texts, batch_size=settings.batch_size, normalize_embeddings=True,
                              convert_to_numpy=True)
        raw_seconds = time.perf_counter() - started
        raw_cpu = time.process_time() - cpu_started

    n_chunks = len(chunk_texts)
    ingest_rate = n_chunks / ingest_seconds
    raw_rate = n_chunks / raw_seconds
    import torch

    print(f"files: {summary.files} ({origin}); chunks: {n_chunks}; model: {embedder.name}; "
          f"batch size {settings.batch_size}; torch threads {torch.get_num_threads()}")
    print(f"ingest (build_index: load + chunk + embed + write, model preloaded): {ingest_seconds:.1f} s, "
          f"{ingest_rate:.1f} chunks/s (embedding step alone: {summary.chunks_per_second:.1f} chunks/s)")
    print(f"raw encode (same {n_chunks} chunk texts): {raw_seconds:.1f} s, {raw_rate:.1f} chunks/s")
    ratio = ingest_rate / raw_rate
    print(f"ratio ingest/raw: {ratio:.3f} (target >= 0.90: {'met' if ratio >= 0.90 else 'NOT met'})")
    # Wall time suffers when other processes share the CPU; process CPU time (all threads) much less so.
    print(f"CPU time: ingest {ingest_cpu:.1f} s, raw {raw_cpu:.1f} s; "
          f"CPU-time ratio ingest/raw: {raw_cpu / ingest_cpu:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
