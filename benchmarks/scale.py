"""Retrieval at scale: FAISS flat vs FAISS ANN (rag/ann.py) vs Milvus Lite, on N synthetic chunks.

    .venv/bin/python benchmarks/scale.py --n 200000 [--json] [--queries 200] [--backends faiss-flat faiss-hnsw]

Why synthetic: embedding a million real chunks with the MiniLM model takes days on 2 cores, and
what this measures (index build, memory, query latency, ANN recall) depends on the number and the
geometry of the vectors, not on their meaning. The data imitates real chunk embeddings:

* vectors: 384-dim unit vectors, each a centroid (one of CENTROIDS, around a common mean direction)
  plus Gaussian noise whose variance decays as a power law over a random basis, then normalised.
  The decay, noise and mean were set so that the variance spectrum (top 1/5/10/20 principal
  directions: 0.19/0.44/0.56/0.66 of the variance), the cosine of random pairs (~0.35) and of
  nearest neighbours (~0.83-0.87) look like the all-MiniLM-L6-v2 chunk vectors of this repo's eval
  index (0.19/0.44/0.57/0.70, ~0.43, ~0.89). Isotropic noise would make all neighbours of a query
  almost equally far, which no embedding model does, and would make ANN look worse than it is.
* texts: ~40 words from a fixed vocabulary of VOCABULARY synthetic words, drawn from a Zipf
  distribution, a share of them from the chunk's centroid's own topic words, so BM25 and dense
  search agree somewhat. Queries are drawn the same way (3-6 words, mostly topic words).

Every backend runs in processes of its own (multiprocessing, spawn): one builds the index and saves
it, a second loads it and runs the queries, so that each figure of peak memory (VmHWM) belongs to
that backend alone. `rss_mb` is the peak of the query process (load + queries: what a server holds; it counts file pages
mapped in, e.g. of memory-mapped vectors; `rss_anon_end_mb` / `rss_file_end_mb` split the resident set
at the end), `build_rss_mb` the peak of the build process. Per backend and query, timed and interleaved:

* dense: the top CANDIDATES rows (what `Retriever.search` asks the vector store for), recall@10 of
  its first 10 against an exact flat search (the ground truth, computed once in chunks);
* filtered dense (top TOP_K), two filters: "filtered" keeps 10% of the rows, "narrow" 0.1%.
  `filtered`: index.search with `rag.ann.search_parameters(index, spec, IDSelectorBatch(rows))` (the
  selector built per query, as the retriever does; `narrow_selector` the same for the 0.1% filter);
  `filtered_search` and `narrow`: `rag.ann.search` with the allowed rows (exact over few rows, a
  widened efSearch / nprobe otherwise);
* BM25: `rag.lexical.LexicalIndex.scores` (dense scores over all rows) + the top CANDIDATES rows;
* hybrid: the retriever's convex fusion: dense top CANDIDATES + BM25 top CANDIDATES, union, exact
  dense scores of the union (`matrix[rows] @ q`), min-max of both, DENSE_WEIGHT * dense +
  (1 - DENSE_WEIGHT) * BM25, top TOP_K. `matrix` is a zero-copy view of the stored vectors for flat
  and HNSW-flat, and for IVF and the lossy codecs the float32 rows read from vectors.npy with pread
  (the project today keeps a `reconstruct_n` copy in memory instead: that would add n*384*4 bytes).
  `hybrid_overlap_with_flat` is the share of its top TOP_K that faiss-flat's hybrid also returns.

Milvus Lite (pymilvus MilvusClient on a local .db: an in-process gRPC server in pure Python) runs
the same dense and BM25 searches, the same client-side convex fusion (the union rows' vectors by
`get`, the BM25 scores of dense-only rows by a filtered BM25 search) and its own `hybrid_search`
with RRFRanker. Its searches cost Python time per stored row, so it is run with at most
--milvus-queries queries, and skipped above --milvus-max rows.

The BM25 folder is also loaded twice on its own with `LexicalIndex.load`: memory-mapped (bm25s mmap=True,
the project's default, rag.lexical.MMAP) and read into memory (mmap=False), for load time and memory.

Query vectors are given (no query embedding is timed). Check lines at the end compare the measured
figures with the targets: at N >= 200k, FAISS ANN recall@10 >= 0.95 at a dense p50 <= 0.3x flat's;
at 1M, ANN dense p50 < 20 ms, hybrid p50 < 50 ms and peak RSS < 2.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

DIM = 384  # all-MiniLM-L6-v2's dimension, the project's default embedder
CENTROIDS = 4096  # topic clusters: ~244 chunks each at 1M, ~5 at 20k
SPECTRUM_DECAY = 1.2  # noise variance of the i-th basis direction ~ i**-1.2: the MiniLM spectrum (see docstring)
NOISE = 0.6  # noise norm relative to the unit centroid: nearest-neighbour cosine ~0.83-0.87
MEAN_WEIGHT = 0.9  # weight of the common mean direction in each centroid: random-pair cosine ~0.35
VOCABULARY = 20_000  # synthetic words
ZIPF_EXPONENT = 1.0  # word frequency ~ 1 / rank**1.0
TOPIC_WORDS = 40  # words of each centroid's topic, drawn from the ranks past COMMON_WORDS
COMMON_WORDS = 500  # the most frequent ranks are never topic words (they act like function words)
TOPIC_SHARE = 0.35  # share of a chunk's words that come from its topic
QUERY_TOPIC_SHARE = 0.7  # share of a query's words that come from its topic
CHUNK_WORDS = (30, 50)  # words per chunk, uniform in this range (~40, a short chunk)
QUERY_WORDS = (3, 6)  # words per query, uniform in this range
GEN_BATCH = 50_000  # rows generated and written at a time
GT_BATCH = 65_536  # rows per block of the exact ground-truth search
INSERT_BATCH = 5_000  # rows per Milvus insert call
SEED = 20240611  # one seed for the data and queries: every run of a given N sees the same data
CANDIDATES = 100  # rows each retriever contributes (Settings.candidates)
TOP_K = 10  # rows a hybrid query returns, and the k of recall@k
DENSE_WEIGHT = 0.55  # convex fusion weight of the dense score (Settings.dense_weight)
# metadata filters: each keeps the rows whose number is a multiple of its value
FILTERS = {"filtered": 10, "narrow": 1000}  # 10% of the rows, and 0.1% (one document among a thousand)
WARMUP = 10  # queries run untimed before timing
RRF_K = 60  # Milvus RRFRanker's k (its default)
MILVUS_EF = 128  # Milvus HNSW ef at query time (>= CANDIDATES, as FAISS raises efSearch to k)
MILVUS_HNSW = {"M": 32, "efConstruction": 100}  # the Milvus HNSW build parameters of the brief
BM25_PARAMS = {"bm25_k1": 1.5, "bm25_b": 0.75}  # bm25s' defaults, so both BM25s rank alike
# FAISS threads per query: HNSW and IVF search one query on one thread anyway; flat's 2-thread scan
# was 5x slower than 1 thread (20 ms vs 4 ms at 20k) while another process held one of the 2 cores
QUERY_THREADS = 1
MB = 1024 * 1024

FAISS_BACKENDS = {  # name -> (ann kind, compression); faiss-flat is IndexFlatIP, the project's index today
    "faiss-flat": ("flat", "none"),
    "faiss-hnsw": ("hnsw", "none"),
    "faiss-hnsw-sq8": ("hnsw", "sq8"),
    "faiss-ivf": ("ivf", "none"),
    "faiss-ivf-sq8": ("ivf", "sq8"),
    "faiss-ivf-pq": ("ivf", "pq"),
}
MILVUS_BACKENDS = {"milvus-lite": "HNSW", "milvus-lite-flat": "FLAT"}
DEFAULT_BACKENDS = ["faiss-flat", "faiss-hnsw", "faiss-hnsw-sq8", "faiss-ivf", "milvus-lite"]


# ---------------------------------------------------------------- memory, timing


def _status_mb(key: str) -> float:
    """A /proc/self/status figure (VmRSS, VmHWM) in MB; ru_maxrss when /proc is not there."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _run(fn, *args):
    """fn(*args) in a fresh spawned process, so its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# ---------------------------------------------------------------- synthetic data


def _words(rng: np.random.Generator) -> np.ndarray:
    """VOCABULARY distinct pronounceable 3-syllable words (not English, so no stopwords)."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    picks = rng.choice(len(syllables) ** 3, size=VOCABULARY, replace=False)
    s = len(syllables)
    return np.array([syllables[p // (s * s)] + syllables[(p // s) % s] + syllables[p % s] for p in picks])


def _zipf(size: int) -> np.ndarray:
    p = 1.0 / np.arange(1, size + 1) ** ZIPF_EXPONENT
    return np.cumsum(p / p.sum())


class _Generator:
    """Draws rows (vector, text) around the shared centroids and topics; one instance per stream."""

    def __init__(self, seed: int):
        setup = np.random.default_rng(SEED)  # centroids, basis, vocabulary: the same for chunks and queries
        lam = np.arange(1, DIM + 1, dtype=np.float64) ** -SPECTRUM_DECAY
        rotation, _ = np.linalg.qr(setup.standard_normal((DIM, DIM)))
        self.basis = (rotation * np.sqrt(lam / lam.sum())).T.astype(np.float32)  # E|z @ basis|^2 = 1
        mean = setup.standard_normal(DIM)
        spread = setup.standard_normal((CENTROIDS, DIM)).astype(np.float32) @ self.basis
        centroids = MEAN_WEIGHT * mean / np.linalg.norm(mean) + spread / np.linalg.norm(spread, axis=1, keepdims=True)
        self.centroids = (centroids / np.linalg.norm(centroids, axis=1, keepdims=True)).astype(np.float32)
        self.vocab = _words(setup)
        self.topics = setup.integers(COMMON_WORDS, VOCABULARY, size=(CENTROIDS, TOPIC_WORDS))
        self.word_cdf, self.topic_cdf = _zipf(VOCABULARY), _zipf(TOPIC_WORDS)
        self.rng = np.random.default_rng(seed)

    def rows(self, n: int, words: tuple[int, int], topic_share: float) -> tuple[np.ndarray, list[str]]:
        rng = self.rng
        cluster = rng.integers(0, CENTROIDS, n)
        x = self.centroids[cluster] + NOISE * (rng.standard_normal((n, DIM), dtype=np.float32) @ self.basis)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        lengths = rng.integers(words[0], words[1] + 1, n)
        common = np.searchsorted(self.word_cdf, rng.random((n, words[1])))
        topical = self.topics[cluster[:, None], np.searchsorted(self.topic_cdf, rng.random((n, words[1])))]
        ids = np.where(rng.random((n, words[1])) < topic_share, topical, common)
        texts = [" ".join(row[:k]) for row, k in zip(self.vocab[ids].tolist(), lengths.tolist(), strict=True)]
        return x.astype(np.float32), texts


def generate(work: Path, n: int, queries: int) -> None:
    """vectors.npy [n, DIM] float32, texts.txt (one chunk a line), queries.npy and queries.txt."""
    from numpy.lib.format import open_memmap

    gen = _Generator(SEED + 1)
    vectors = open_memmap(work / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    with open(work / "texts.txt", "w", encoding="utf-8") as f:
        for start in range(0, n, GEN_BATCH):
            x, texts = gen.rows(min(GEN_BATCH, n - start), CHUNK_WORDS, TOPIC_SHARE)
            vectors[start:start + len(x)] = x
            f.write("\n".join(texts) + "\n")
    vectors.flush()
    del vectors
    q, qtexts = _Generator(SEED + 2).rows(queries, QUERY_WORDS, QUERY_TOPIC_SHARE)
    np.save(work / "queries.npy", q)
    (work / "queries.txt").write_text("\n".join(qtexts) + "\n", encoding="utf-8")


def ground_truth(work: Path) -> None:
    """gt.npz: the exact top TOP_K rows of each query (inner product) among all rows ("dense") and among
    the rows each filter keeps; computed block by block so that 1M rows never sit in memory twice."""
    x = np.load(work / "vectors.npy", mmap_mode="r")
    q = np.load(work / "queries.npy")
    keys = ["dense", *FILTERS]
    best = {k: np.full((len(q), 0), -np.inf, np.float32) for k in keys}
    rows = {k: np.zeros((len(q), 0), np.int64) for k in keys}
    for start in range(0, len(x), GT_BATCH):
        block = np.asarray(x[start:start + GT_BATCH])
        ids = np.arange(start, start + len(block))
        scores = q @ block.T
        for key in keys:
            keep = ids % FILTERS[key] == 0 if key in FILTERS else slice(None)
            s = np.concatenate([best[key], scores[:, keep]], axis=1)
            r = np.concatenate([rows[key], np.broadcast_to(ids[keep], (len(q), len(ids[keep])))], axis=1)
            top = np.argsort(-s, axis=1, kind="stable")[:, :TOP_K]
            best[key], rows[key] = np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1)
    np.savez(work / "gt.npz", **rows)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------- shared query helpers


def _minmax(x: np.ndarray) -> np.ndarray:
    """rag.retrieval._minmax (copied: importing rag.retrieval loads torch into the measured process)."""
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _top_rows(scores: np.ndarray, n: int) -> np.ndarray:
    """The rows of the n best positive scores, best first (the retriever's _top without a filter)."""
    n = min(n, scores.size)
    if n == 0:
        return np.zeros(0, np.int64)
    idx = np.argpartition(-scores, n - 1)[:n]
    idx = idx[np.lexsort((idx, -scores[idx]))]
    return idx[scores[idx] > 0]


def _fuse(rows: np.ndarray, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    fused = DENSE_WEIGHT * _minmax(dense) + (1 - DENSE_WEIGHT) * _minmax(lexical)
    return rows[np.lexsort((rows, -fused))[:TOP_K]]


def _pad(rows, k: int = TOP_K) -> list[int]:
    rows = [int(r) for r in rows][:k]
    return rows + [-1] * (k - len(rows))


# ---------------------------------------------------------------- BM25 (shared by the FAISS backends)


def child_bm25_build(work: str) -> dict:
    from rag.lexical import LexicalIndex

    texts = _lines(Path(work) / "texts.txt")
    t0 = time.perf_counter()
    lexical = LexicalIndex.build(texts)
    build_s = time.perf_counter() - t0
    folder = Path(work) / "bm25"
    folder.mkdir(exist_ok=True)
    lexical.save(folder)
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {"build_s": build_s, "build_rss_mb": _status_mb("VmHWM"), "bm25_mb": size / MB}


def _load_lexical(work: Path, n: int, mmap: bool):
    from rag import lexical

    lexical.MMAP = mmap  # the project's loader (memory-mapped by default) or the same with arrays read in
    return lexical.LexicalIndex.load(work / "bm25", n)


def child_bm25_load(work: str, n: int, mmap: bool) -> dict:
    work = Path(work)
    texts = _lines(work / "queries.txt")
    import bm25s  # noqa: F401  (imported before the baseline: only the load itself is measured)

    from rag.lexical import LexicalIndex  # noqa: F401

    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    lexical = _load_lexical(work, n, mmap)
    load_s = time.perf_counter() - t0
    after_load = _status_mb("VmRSS")
    times = []
    for i, text in enumerate(texts[:WARMUP] + texts):
        t0 = time.perf_counter()
        _top_rows(lexical.scores(text), CANDIDATES)
        if i >= WARMUP:
            times.append(_ms(t0))
    return {"load_s": load_s, "rss_before_mb": base, "rss_after_load_mb": after_load,
            "rss_after_queries_mb": _status_mb("VmRSS"), "peak_rss_mb": _status_mb("VmHWM"),
            "rss_file_mb": _status_mb("RssFile"), "times": times}


# ---------------------------------------------------------------- FAISS


def child_faiss_build(work: str, backend: str, spec: dict) -> dict:
    import faiss

    from rag import ann

    vectors = np.load(Path(work) / "vectors.npy", mmap_mode="r")
    t0 = time.perf_counter()
    if backend == "faiss-flat":
        index = faiss.IndexFlatIP(DIM)
        for start in range(0, len(vectors), GT_BATCH):
            index.add(np.ascontiguousarray(vectors[start:start + GT_BATCH]))
    else:
        index = ann.build(vectors, spec)
    build_s = time.perf_counter() - t0
    path = Path(work) / f"{backend}.faiss"
    t0 = time.perf_counter()
    faiss.write_index(index, str(path))
    return {"build_s": build_s, "save_s": time.perf_counter() - t0, "build_rss_mb": _status_mb("VmHWM"),
            "index_mb": path.stat().st_size / MB}


class _RowFile:
    """Rows of a float32 .npy file read on demand with pread: `rows_file[rows]` is an [len(rows), dim] array.

    Not a memory map: with np.load(mmap_mode="r") even under MADV_RANDOM the kernel maps the cached pages
    around every row read (fault-around), and at 1M rows 1.27 GB of the 1.46 GB file counted in the query
    process's RSS after 200 queries; pread leaves them in the page cache, outside the process."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
            self.offset = f.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{path} is not a C-ordered matrix")
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.row_bytes = shape[1] * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        out = bytearray(len(rows) * self.row_bytes)
        for i, r in enumerate(rows.tolist()):
            out[i * self.row_bytes:(i + 1) * self.row_bytes] = os.pread(self.fd, self.row_bytes,
                                                                       self.offset + r * self.row_bytes)
        return np.frombuffer(out, dtype=self.dtype).reshape(len(rows), self.shape[1])


def _stored_matrix(index, spec: dict, work: Path):
    """The float32 rows for exact rescoring: a zero-copy view of a flat or HNSW-flat index's storage
    (valid while `index` lives), else rows read from vectors.npy on demand."""
    import faiss

    from rag import ann

    if spec["kind"] in ("flat", "hnsw") and ann.exact_reconstruction(spec):
        flat = faiss.downcast_index(index.storage if spec["kind"] == "hnsw" else index)
        view = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
        return view, "zero-copy view of the index"
    return _RowFile(work / "vectors.npy"), "vectors.npy rows read with pread"


def child_faiss_query(work: str, backend: str, spec: dict, opts: dict) -> dict:
    import bm25s  # noqa: F401  (imported here so that bm25_load_s is the load alone)
    import faiss

    from rag import ann

    work = Path(work)
    all_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(opts["threads"] or all_threads)
    q = np.load(work / "queries.npy")
    texts = _lines(work / "queries.txt")
    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    index = faiss.read_index(str(work / f"{backend}.faiss"))
    ann.configure(index, spec)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lexical = _load_lexical(work, index.ntotal, not opts.get("bm25_in_memory", False))
    bm25_load_s = time.perf_counter() - t0
    matrix, matrix_kind = _stored_matrix(index, spec, work)
    after_load = _status_mb("VmRSS")
    allowed = {key: np.arange(0, index.ntotal, every, dtype=np.int64) for key, every in FILTERS.items()}
    params = ann.search_parameters(index, spec)
    lossy = not ann.exact_reconstruction(spec)

    def dense(qv):
        return index.search(qv[None], CANDIDATES, params=params)[1][0]

    def filtered(qv, key="filtered"):
        p = ann.search_parameters(index, spec, faiss.IDSelectorBatch(allowed[key]))
        return index.search(qv[None], TOP_K, params=p)[1][0]

    def filtered_search(qv, key="filtered"):
        return ann.search(index, spec, qv, TOP_K, allowed[key])[1][0]

    def bm25(text):
        return _top_rows(lexical.scores(text), CANDIDATES)

    def hybrid(qv, text):
        rows = dense(qv)
        dense_rows = rows[rows >= 0]
        lex_all = lexical.scores(text)
        rows = np.unique(np.concatenate([dense_rows, _top_rows(lex_all, CANDIDATES)]))
        return _fuse(rows, np.asarray(matrix[rows]) @ qv, lex_all[rows])

    runs = {"dense": dense, "filtered": filtered, "filtered_search": filtered_search,
            "narrow": lambda qv: filtered_search(qv, "narrow"), "narrow_selector": lambda qv: filtered(qv, "narrow"),
            "bm25": bm25, "hybrid": hybrid}
    times = {k: [] for k in runs}
    tops = {k: [] for k in (*runs, "rescored")}
    order = [(i, True) for i in range(min(WARMUP, len(q)))] + [(i, False) for i in range(len(q))]
    for i, warm in order:  # interleaved per query, so that background load hits all alike
        for key, fn in runs.items():
            t0 = time.perf_counter()
            rows = fn(texts[i]) if key == "bm25" else fn(q[i], texts[i]) if key == "hybrid" else fn(q[i])
            if not warm:
                times[key].append(_ms(t0))
                tops[key].append(_pad(rows))
            if key == "dense" and not warm:
                valid = rows[rows >= 0]
                tops["rescored"].append(_pad(valid[np.argsort(-(np.asarray(matrix[valid]) @ q[i]), kind="stable")]))
    faiss.omp_set_num_threads(all_threads)  # dense once more with FAISS's own thread count, for the record
    times["dense_all_threads"] = []
    for i in range(len(q)):
        t0 = time.perf_counter()
        dense(q[i])
        times["dense_all_threads"].append(_ms(t0))
    faiss.omp_set_num_threads(opts["threads"] or all_threads)
    sweep = []
    for key, values in (("ef_search", opts.get("ef_search", [])), ("nprobe", opts.get("nprobe", []))):
        if key not in spec:
            continue
        for value in values:
            p = ann.search_parameters(index, {**spec, key: value})
            ms, top = [], []
            for i in range(len(q)):
                t0 = time.perf_counter()
                rows = index.search(q[i][None], CANDIDATES, params=p)[1][0]
                ms.append(_ms(t0))
                top.append(_pad(rows))
            sweep.append({"param": key, "value": value, "times": ms, "top": top})
    return {"load_s": load_s, "bm25_load_s": bm25_load_s, "rss_before_mb": base, "rss_after_load_mb": after_load,
            "rss_mb": _status_mb("VmHWM"), "rss_anon_mb": _status_mb("RssAnon"), "rss_file_mb": _status_mb("RssFile"),
            "matrix": matrix_kind, "lossy": lossy, "times": times,
            "threads": opts["threads"] or all_threads, "all_threads": all_threads, "tops": tops, "sweep": sweep}


# ---------------------------------------------------------------- Milvus Lite

COLLECTION = "chunks"


def child_milvus_build(work: str, index_type: str) -> dict:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    work = Path(work)
    vectors = np.load(work / "vectors.npy", mmap_mode="r")
    texts = _lines(work / "texts.txt")
    db = work / f"milvus-{index_type.lower()}.db"
    shutil.rmtree(db, ignore_errors=True)
    t0 = time.perf_counter()
    c = MilvusClient(str(db))
    s = c.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("row", DataType.INT64, is_primary=True)
    s.add_field("part", DataType.INT64)  # row % FILTERS["filtered"]: the field of the filtered search
    s.add_field("terms", DataType.VARCHAR, max_length=65535, enable_analyzer=True,
                analyzer_params={"tokenizer": "standard"})
    s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    s.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                            output_field_names=["sparse"]))
    ip = c.prepare_index_params()
    ip.add_index("vector", index_type=index_type, metric_type="IP", params=MILVUS_HNSW if index_type == "HNSW" else {})
    ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=BM25_PARAMS)
    c.create_collection(COLLECTION, schema=s, index_params=ip)
    for start in range(0, len(texts), INSERT_BATCH):
        block = np.asarray(vectors[start:start + INSERT_BATCH]).tolist()
        c.insert(COLLECTION, [{"row": start + j, "part": (start + j) % FILTERS["filtered"], "terms": texts[start + j],
                               "vector": v} for j, v in enumerate(block)])
    insert_s = time.perf_counter() - t0
    c.flush(COLLECTION)
    c.release_collection(COLLECTION)  # a fresh load builds (and saves) every segment's indexes
    c.load_collection(COLLECTION)
    build_s = time.perf_counter() - t0
    c.close()
    size = sum(p.stat().st_size for p in db.rglob("*") if p.is_file())
    return {"build_s": build_s, "insert_s": insert_s, "build_rss_mb": _status_mb("VmHWM"), "index_mb": size / MB}


def child_milvus_query(work: str, index_type: str, queries: int) -> dict:
    from pymilvus import AnnSearchRequest, MilvusClient, RRFRanker

    work = Path(work)
    q = np.load(work / "queries.npy")[:queries]
    texts = _lines(work / "queries.txt")[:queries]
    base = _status_mb("VmRSS")
    t0 = time.perf_counter()
    c = MilvusClient(str(work / f"milvus-{index_type.lower()}.db"))
    c.load_collection(COLLECTION)
    load_s = time.perf_counter() - t0
    after_load = _status_mb("VmRSS")
    dense_params = {"metric_type": "IP", "params": {"ef": MILVUS_EF} if index_type == "HNSW" else {}}
    bm25_params = {"metric_type": "BM25"}

    def dense(qv, limit=CANDIDATES, flt=""):
        hits = c.search(COLLECTION, data=[qv.tolist()], anns_field="vector", limit=limit, output_fields=["row"],
                        search_params=dense_params, filter=flt)[0]
        return [h["entity"]["row"] for h in hits]

    def bm25(text, limit=CANDIDATES, flt=""):
        hits = c.search(COLLECTION, data=[text], anns_field="sparse", limit=limit, output_fields=["row"],
                        search_params=bm25_params, filter=flt)[0]
        return {h["entity"]["row"]: abs(h["distance"]) for h in hits}  # Lite returns BM25 as -score

    def hybrid(qv, text):
        dense_rows, lex = dense(qv), bm25(text)
        rows = sorted(set(dense_rows) | set(lex))
        got = {g["row"]: g["vector"] for g in c.get(COLLECTION, ids=rows, output_fields=["vector"])}
        missing = [r for r in dense_rows if r not in lex]
        if missing:
            lex.update(bm25(text, len(missing), f"row in [{','.join(map(str, missing))}]"))
        rows = np.asarray(rows, np.int64)
        vecs = np.asarray([got[int(r)] for r in rows], np.float32)
        return _fuse(rows, vecs @ qv, np.asarray([lex.get(int(r), 0.0) for r in rows], np.float32))

    def rrf(qv, text):
        reqs = [AnnSearchRequest(data=[qv.tolist()], anns_field="vector", param=dense_params, limit=CANDIDATES),
                AnnSearchRequest(data=[text], anns_field="sparse", param=bm25_params, limit=CANDIDATES)]
        hits = c.hybrid_search(COLLECTION, reqs, ranker=RRFRanker(RRF_K), limit=TOP_K, output_fields=["row"])[0]
        return [h["entity"]["row"] for h in hits]

    flt = "part == 0"  # Milvus Lite's filter language has no %
    times = {k: [] for k in ("dense", "filtered", "bm25", "hybrid", "rrf")}
    tops = {k: [] for k in ("dense", "filtered", "hybrid")}
    order = [(i, True) for i in range(min(WARMUP, len(q)))] + [(i, False) for i in range(len(q))]
    for i, warm in order:
        out = {}
        qv, text = q[i], texts[i]
        for key, fn, fn_args in (("dense", dense, (qv,)), ("filtered", dense, (qv, TOP_K, flt)),
                                 ("bm25", bm25, (text,)), ("hybrid", hybrid, (qv, text)), ("rrf", rrf, (qv, text))):
            t0 = time.perf_counter()
            out[key] = fn(*fn_args)
            if not warm:
                times[key].append(_ms(t0))
        if not warm:
            for key in tops:
                tops[key].append(_pad(out[key]))
    c.close()
    return {"load_s": load_s, "rss_before_mb": base, "rss_after_load_mb": after_load, "rss_mb": _status_mb("VmHWM"),
            "rss_anon_mb": _status_mb("RssAnon"), "rss_file_mb": _status_mb("RssFile"), "times": times, "tops": tops,
            "sweep": []}


# ---------------------------------------------------------------- report


def recall(top, gt) -> float:
    top, gt = np.asarray(top)[:, :TOP_K], np.asarray(gt)[: len(top), :TOP_K]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / TOP_K for a, b in zip(top, gt, strict=True)]))


def _spec_overrides(items: list[str], ap) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("m", "ef_construction", "ef_search", "nlist", "nprobe", "pq_m"):
            ap.error(f"--spec KEY=VALUE: KEY is one of m, ef_construction, ef_search, nlist, nprobe, pq_m; "
                     f"got {item!r}")
        out[key] = int(value)
    return out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _checks(rows: list[dict], n: int) -> list[dict]:
    out = []
    ann_rows = [r for r in rows if r["backend"].startswith("faiss-") and r["backend"] != "faiss-flat"
                and "p50_ratio_to_flat" in r]
    if n >= 200_000:
        for r in ann_rows:
            ok = r["recall_at_10"] >= 0.95 and r["p50_ratio_to_flat"] <= 0.3
            out.append({"check": "ann_recall_speed", "backend": r["backend"], "n": n, "pass": ok,
                        "text": f"{r['backend']}: recall@10 {r['recall_at_10']:.3f} (limit >= 0.95), dense p50 "
                                f"{r['p50_ratio_to_flat']:.3f}x flat's (limit <= 0.3x) = "
                                f"{r['p50_ratio_to_flat'] / 0.3:.2f} of the limit: {'pass' if ok else 'FAIL'}"})
    if n >= 1_000_000:
        for r in ann_rows:
            parts = [("ann p50", r["p50_ms"], 20.0, "ms"), ("hybrid p50", r["hybrid_p50_ms"], 50.0, "ms"),
                     ("peak RSS", r["rss_mb"], 2500.0, "MB")]
            for name, value, limit, unit in parts:
                ok = value < limit
                out.append({"check": name.replace(" ", "_"), "backend": r["backend"], "n": n, "value": round(value, 3),
                            "limit": limit, "ratio": round(value / limit, 3), "pass": ok,
                            "text": f"{r['backend']}: {name} {value:.1f} {unit} = {value / limit:.2f} of the "
                                    f"{limit:g} {unit} limit: {'pass' if ok else 'FAIL'}"})
    return out


def _row(backend: str, n: int, build: dict, res: dict, gt, flat_hybrid, spec) -> dict:
    from bench_common import percentiles

    t, tops = res["times"], res["tops"]
    p50, p95 = percentiles(t["dense"])
    row = {"backend": backend, "n": n, "build_s": round(build["build_s"], 2), "rss_mb": round(res["rss_mb"], 1),
           "p50_ms": round(p50, 3), "p95_ms": round(p95, 3),
           "recall_at_10": round(recall(tops["dense"], gt["dense"]), 4)}
    for key in ("bm25", "hybrid", "rrf", "filtered", "filtered_search", "narrow", "narrow_selector"):
        if key in t:
            a, b = percentiles(t[key])
            row[f"{key}_p50_ms"], row[f"{key}_p95_ms"] = round(a, 3), round(b, 3)
        if key in tops and key.startswith(("filtered", "narrow")):
            truth = gt["narrow" if key.startswith("narrow") else "filtered"]
            row[f"{key}_recall_at_10"] = round(recall(tops[key], truth), 4)
    if "dense_all_threads" in t:
        row["p50_ms_all_threads"] = round(percentiles(t["dense_all_threads"])[0], 3)
        row["threads"], row["all_threads"] = res["threads"], res["all_threads"]
    if res.get("lossy"):
        row["recall_at_10_rescored"] = round(recall(tops["rescored"], gt["dense"]), 4)
    if flat_hybrid is not None:
        row["hybrid_overlap_with_flat"] = round(recall(tops["hybrid"], flat_hybrid), 4)
    row.update({"queries": len(t["dense"]), "build_rss_mb": round(build["build_rss_mb"], 1),
                "rss_after_load_mb": round(res["rss_after_load_mb"], 1),
                "rss_before_load_mb": round(res["rss_before_mb"], 1), "rss_anon_end_mb": round(res["rss_anon_mb"], 1),
                "rss_file_end_mb": round(res["rss_file_mb"], 1),
                "load_s": round(res["load_s"], 3), "index_mb": round(build["index_mb"], 1)})
    for key in ("save_s", "insert_s"):
        if key in build:
            row[key] = round(build[key], 2)
    if "bm25_load_s" in res:
        row["bm25_load_s"] = round(res["bm25_load_s"], 3)
    if "matrix" in res:
        row["rescore_matrix"] = res["matrix"]
    if spec is not None:
        row["spec"] = spec
    row["sweep"] = [{"param": s["param"], "value": s["value"], "p50_ms": round(percentiles(s["times"])[0], 3),
                     "p95_ms": round(percentiles(s["times"])[1], 3),
                     "recall_at_10": round(recall(s["top"], gt["dense"]), 4)} for s in res["sweep"]]
    if not row["sweep"]:
        del row["sweep"]
    return row


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True, help="synthetic chunks")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per backend")
    ap.add_argument("--backends", nargs="+", default=DEFAULT_BACKENDS, choices=[*FAISS_BACKENDS, *MILVUS_BACKENDS])
    ap.add_argument("--json", action="store_true", help="one JSON object per backend per line, then check lines")
    ap.add_argument("--milvus-max", type=int, default=200_000, help="skip Milvus Lite above this many chunks")
    ap.add_argument("--milvus-queries", type=int, default=50,
                    help="timed queries for Milvus Lite (its searches cost Python time per stored row)")
    ap.add_argument("--spec", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the rag.ann.plan() spec of the ANN backends, e.g. --spec ef_search=128")
    ap.add_argument("--ef-search", type=_ints, default=[], metavar="A,B,..",
                    help="also time dense HNSW search at these efSearch values (no rebuild)")
    ap.add_argument("--nprobe", type=_ints, default=[], metavar="A,B,..",
                    help="also time dense IVF search at these nprobe values (no rebuild)")
    ap.add_argument("--threads", type=int, default=QUERY_THREADS,
                    help=f"FAISS OpenMP threads for the timed queries (default {QUERY_THREADS}; 0: FAISS's own count)")
    ap.add_argument("--bm25-in-memory", action="store_true",
                    help="FAISS query processes read BM25 into memory (default: memory-mapped, as the project does)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep data and indexes here (default: a temp dir)")
    args = ap.parse_args()
    overrides = _spec_overrides(args.spec, ap)

    from bench_common import cpu_count, load, markdown_table, percentiles

    from rag import ann

    work = args.workdir or Path(tempfile.mkdtemp(prefix="scale-"))
    work.mkdir(parents=True, exist_ok=True)
    n = args.n
    load_before = load()
    t0 = time.perf_counter()
    if not (work / "gt.npz").exists() or np.load(work / "vectors.npy", mmap_mode="r").shape[0] != n \
            or len(np.load(work / "queries.npy")) != args.queries:
        _log(f"generating {n} chunks and {args.queries} queries in {work}")
        generate(work, n, args.queries)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ground_truth(work)
        gt_s = time.perf_counter() - t0
        _log(f"data {gen_s:.1f} s, exact ground truth {gt_s:.1f} s")
    gt = dict(np.load(work / "gt.npz"))

    rows: list[dict] = []
    extra: list[dict] = []
    faiss_wanted = [b for b in args.backends if b in FAISS_BACKENDS]
    if faiss_wanted:
        _log("BM25 build (LexicalIndex.build)")
        bm25_build = _run(child_bm25_build, str(work))
        extra.append({"bm25_build": {"n": n, "build_s": round(bm25_build["build_s"], 2),
                                     "build_rss_mb": round(bm25_build["build_rss_mb"], 1),
                                     "folder_mb": round(bm25_build["bm25_mb"], 1)}})
        for mmap in (False, True):
            _log(f"BM25 load, mmap={mmap}")
            r = _run(child_bm25_load, str(work), n, mmap)
            p50, p95 = percentiles(r["times"])
            extra.append({"bm25_load": {"n": n, "mmap": mmap, "how": "LexicalIndex.load, bm25s mmap=True (default)"
                                        if mmap else "LexicalIndex.load, bm25s mmap=False",
                                        "load_s": round(r["load_s"], 3),
                                        "rss_before_mb": round(r["rss_before_mb"], 1),
                                        "rss_after_load_mb": round(r["rss_after_load_mb"], 1),
                                        "rss_after_queries_mb": round(r["rss_after_queries_mb"], 1),
                                        "peak_rss_mb": round(r["peak_rss_mb"], 1),
                                        "rss_file_after_queries_mb": round(r["rss_file_mb"], 1),
                                        "query_p50_ms": round(p50, 3), "query_p95_ms": round(p95, 3)}})
    opts = {"threads": args.threads, "bm25_in_memory": args.bm25_in_memory, "ef_search": args.ef_search,
            "nprobe": args.nprobe}
    flat_hybrid = None
    for backend in sorted(faiss_wanted, key=lambda b: b != "faiss-flat"):  # flat first: the others' reference
        kind, compression = FAISS_BACKENDS[backend]
        spec = ann.plan(n, DIM, kind, compression)
        spec.update({k: v for k, v in overrides.items() if k in spec})
        _log(f"{backend}: build {spec}")
        try:
            build = _run(child_faiss_build, str(work), backend, spec)
            _log(f"{backend}: built in {build['build_s']:.1f} s; queries")
            res = _run(child_faiss_query, str(work), backend, spec, opts)
        except Exception as e:  # one failing backend must not lose the others' figures
            extra.append({"failed": backend, "n": n, "error": f"{type(e).__name__}: {e}"[:500]})
            _log(f"{backend}: FAILED {type(e).__name__}: {e}")
            continue
        row = _row(backend, n, build, res, gt, flat_hybrid, None if backend == "faiss-flat" else spec)
        if backend == "faiss-flat":
            flat_hybrid = res["tops"]["hybrid"]
        (work / f"{backend}.faiss").unlink()
        rows.append(row)
        _log(f"{backend}: p50 {row['p50_ms']} ms, recall@10 {row['recall_at_10']}, "
             f"hybrid p50 {row['hybrid_p50_ms']} ms")
    flat = next((r for r in rows if r["backend"] == "faiss-flat"), None)
    # flat's reference p50: the better of its --threads and all-threads figures (the fairer comparison)
    flat_p50 = min(flat["p50_ms"], flat.get("p50_ms_all_threads", flat["p50_ms"])) if flat else None
    if flat:
        for r in rows:
            if r["backend"] != "faiss-flat":
                r["p50_ratio_to_flat"] = round(r["p50_ms"] / flat_p50, 4)
    for backend in [b for b in args.backends if b in MILVUS_BACKENDS]:
        if n > args.milvus_max:
            extra.append({"skipped": backend, "n": n, "reason": f"{n} chunks > --milvus-max {args.milvus_max}: Milvus "
                          "Lite inserts and searches in pure Python, with per-row work on every search"})
            _log(f"{backend}: skipped ({n} > --milvus-max {args.milvus_max})")
            continue
        index_type = MILVUS_BACKENDS[backend]
        _log(f"{backend}: build ({index_type})")
        try:
            build = _run(child_milvus_build, str(work), index_type)
            _log(f"{backend}: built in {build['build_s']:.1f} s; queries")
            res = _run(child_milvus_query, str(work), index_type, min(args.milvus_queries, args.queries))
        except Exception as e:
            extra.append({"failed": backend, "n": n, "error": f"{type(e).__name__}: {e}"[:500]})
            _log(f"{backend}: FAILED {type(e).__name__}: {e}")
            continue
        finally:
            shutil.rmtree(work / f"milvus-{index_type.lower()}.db", ignore_errors=True)
        row = _row(backend, n, build, res, gt, flat_hybrid, {"index_type": index_type})
        if flat:
            row["p50_ratio_to_flat"] = round(row["p50_ms"] / flat_p50, 4)
        rows.append(row)
        _log(f"{backend}: p50 {row['p50_ms']} ms, recall@10 {row['recall_at_10']}, "
             f"hybrid p50 {row['hybrid_p50_ms']} ms")
    checks = _checks(rows, n)
    header = {"run": {"n": n, "queries": args.queries, "dim": DIM, "centroids": CENTROIDS, "cpus": cpu_count(),
                      "faiss_query_threads": args.threads or "faiss default", "load_before": load_before,
                      "load_after": load(),
                      "workdir": str(work)}}
    if args.json:
        for obj in [header, *extra, *rows, *checks]:
            print(json.dumps(obj), flush=True)
    else:
        print(f"\n{n} synthetic chunks, {args.queries} queries ({args.milvus_queries} for Milvus), {cpu_count()} CPUs, "
              f"load average {load_before} before, {header['run']['load_after']} after\n")
        def cell(r, key, fmt):
            return format(r[key], fmt) if key in r else "-"

        columns = [("backend", "backend", "s"), ("build s", "build_s", ".1f"), ("peak RSS MB", "rss_mb", ".0f"),
                   ("dense p50", "p50_ms", ".2f"), ("dense p95", "p95_ms", ".2f"), ("recall@10", "recall_at_10", ".3f"),
                   ("x flat p50", "p50_ratio_to_flat", ".3f"), ("BM25 p50", "bm25_p50_ms", ".2f"),
                   ("hybrid p50", "hybrid_p50_ms", ".2f"), ("hybrid p95", "hybrid_p95_ms", ".2f"),
                   ("RRF p50", "rrf_p50_ms", ".2f"), ("10% filter p50", "filtered_p50_ms", ".2f"),
                   ("recall", "filtered_recall_at_10", ".3f"), ("ann.search 10% p50", "filtered_search_p50_ms", ".2f"),
                   ("recall", "filtered_search_recall_at_10", ".3f"), ("ann.search 0.1% p50", "narrow_p50_ms", ".2f"),
                   ("recall", "narrow_recall_at_10", ".3f")]
        cols = [c[0] for c in columns]
        table = [[cell(r, key, fmt) for _, key, fmt in columns] for r in rows]
        print(markdown_table(cols, table))
        print(f"\nms per query; dense = top {CANDIDATES} rows; recall@10 against exact flat search; "
              "peak RSS of the query process")
        for r in rows:
            notes = [f"load {r['load_s']:.2f} s", f"index {r['index_mb']:.0f} MB",
                     f"RSS after load {r['rss_after_load_mb']:.0f} MB", f"build peak RSS {r['build_rss_mb']:.0f} MB"]
            if "p50_ms_all_threads" in r:
                notes.append(f"dense p50 {r['p50_ms_all_threads']:.2f} ms on FAISS's {r['all_threads']} threads")
            if "recall_at_10_rescored" in r:
                notes.append(f"recall@10 after exact rescoring of the 100: {r['recall_at_10_rescored']:.3f}")
            if "hybrid_overlap_with_flat" in r:
                notes.append(f"hybrid top-10 overlap with flat's {r['hybrid_overlap_with_flat']:.3f}")
            if "spec" in r:
                notes.append(f"spec {json.dumps(r['spec'])}")
            print(f"  {r['backend']}: " + "; ".join(notes))
            for s in r.get("sweep", []):
                print(f"    {s['param']}={s['value']}: p50 {s['p50_ms']:.3f} ms, p95 {s['p95_ms']:.3f} ms, "
                      f"recall@10 {s['recall_at_10']:.3f}")
        for e in extra:
            print("  " + json.dumps(e))
        for c in checks:
            print("check: " + c["text"])
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
