"""Approximate nearest-neighbour (ANN) indexes for the FAISS vector store.

The store keeps L2-normalised float32 vectors, so cosine similarity is the inner product, and rows
are numbered 0..n-1 in insertion order (FAISS sequential ids). Every index built here keeps that:
metric inner product, vectors added in order, ids = rows.

    spec = plan(n, 384)                  # the manifest entry: {"kind": "flat"} or an ANN description
    index = build(vectors, spec)         # trains (IVF, SQ8, PQ) and adds all rows, deterministically
    faiss.write_index(index, path); index = faiss.read_index(path)
    configure(index, spec)               # efSearch / nprobe are not all kept by write_index
    index.search(q, k, params=search_parameters(index, spec, faiss.IDSelectorBatch(rows)))

Spec keys (a JSON-serialisable dict, stored in the manifest):

    {"kind": "flat"}
    {"kind": "hnsw", "m": int, "ef_construction": int, "ef_search": int, "compression": "none" | "sq8"}
    {"kind": "ivf", "nlist": int, "nprobe": int, "compression": "none" | "sq8" | "pq", "pq_m": int}
      ("pq_m" only with compression "pq")

The constants below were measured with benchmarks/scale.py (synthetic clustered 384-dim unit
vectors, 2 CPU cores, faiss-cpu 1.15.1); the figures quoted are from those runs.
"""

from __future__ import annotations

import math

import numpy as np

KINDS = ("auto", "flat", "hnsw", "ivf")
COMPRESSIONS = ("none", "sq8", "pq")

# below this many vectors "auto" keeps exact flat search: HNSW's dense p50 / flat's (recall@10 >= 0.97) was
# 0.40-0.50 at 5k, 0.24-0.30 at 10k, 0.13-0.21 at 20k (0.6 vs 3.0 ms), 0.09-0.10 at 50k, 0.05 at 100k;
# 20k is the smallest size where it was clearly (in every run) under 0.3x
ANN_THRESHOLD = 20_000
# HNSW graph degree: at 200k, efSearch 64 gave recall@10 0.981 with M=32 vs 0.970 with M=16, at about the
# same latency (0.46 vs 0.49 ms) and +5% memory (535 vs 510 MB peak RSS of the query process)
HNSW_M = 32
# HNSW build beam: at 200k, 40 gave recall@10 0.9805 (efSearch 64) built in 90 s, vs 0.981 in 119 s for 80
# and 0.9875 in 355 s for 200 (single-threaded builds)
HNSW_EF_CONSTRUCTION = 40
# HNSW query beam: recall@10 at efSearch 32 / 64 / 100 / 128 was 0.92 / 0.957 / 0.980 / 0.981 at 1M
# (p50 0.31 / 0.41 / 0.53 / 0.64 ms) and 0.963 / 0.981 / 0.982 at 32 / 64 / 100 at 200k: 100 keeps 0.98 at 1M
HNSW_EF_SEARCH = 100
# IVF lists = IVF_NLIST_FACTOR * sqrt(n), the usual rule of thumb (4000 lists at 1M); not tuned further
IVF_NLIST_FACTOR = 4
# at most this many lists: k-means training cost grows with nlist * training rows
IVF_NLIST_MAX = 65_536
# IVF lists probed per query: at 200k (1789 lists) recall@10 was 0.86 / 0.94 / 0.977 at 32 / 64 / 128
# (128: 3.3 ms, 0.13x flat's p50); at 100k (1265 lists) 128 gave 0.969
IVF_NPROBE = 128
# IVF k-means is trained on at most this many rows per list (FAISS warns below 39 a list; not tuned)
IVF_TRAIN_PER_LIST = 64
# PQ sub-quantizers for 384 dims: 48 (8 dims each, 48 bytes a vector, 1/32 of float32). PQ codes rank
# coarsely (recall@10 0.60 at 20k) but the exact rescoring of the top 100 brought it to IVF-flat's 0.87
PQ_M = 48
# bits per PQ code: 8 (256 centroids per sub-quantizer), the FAISS default
PQ_NBITS = 8
# SQ8 / PQ training sample (rows): enough for per-dimension ranges and 256 centroids per sub-space (not tuned)
CODEC_TRAIN_ROWS = 65_536
# the seed of every training sample and k-means, so a rebuild of the same rows gives the same index
SEED = 1234
# HNSW insertion is only deterministic single-threaded (parallel inserts race for graph links)
HNSW_BUILD_THREADS = 1
# filtered search() scores up to this many allowed rows exactly (HNSW: their stored vectors): FILTER_NOTE
FILTER_EXACT_MAX = 1024
# filtered ANN search widens efSearch / nprobe by sqrt(rows / allowed), at most this factor: WIDEN_NOTE
FILTER_WIDEN_MAX = 16


def _check(kind: str, compression: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown ANN kind {kind!r}; use one of {', '.join(KINDS)}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)}")
    if kind == "flat" and compression != "none":
        raise ValueError(f"compression {compression!r} needs an ANN kind (hnsw or ivf); flat is uncompressed")
    if kind == "hnsw" and compression == "pq":
        raise ValueError("compression 'pq' is supported with kind 'ivf' only; use 'sq8' with hnsw")


def nlist_for(n: int) -> int:
    """IVF list count for n vectors: IVF_NLIST_FACTOR * sqrt(n), within [1, IVF_NLIST_MAX] and <= n."""
    return max(1, min(IVF_NLIST_MAX, n, int(round(IVF_NLIST_FACTOR * math.sqrt(max(n, 1))))))


def plan(n: int, dimension: int, kind: str = "auto", compression: str = "none",
         threshold: int = ANN_THRESHOLD) -> dict:
    """The manifest entry describing the index to build for n vectors of `dimension`.

    "auto" is flat below `threshold` vectors and HNSW from it on. ValueError on a bad kind,
    compression, combination, n or dimension."""
    _check(kind, compression)
    if n < 0 or dimension <= 0:
        raise ValueError(f"need n >= 0 and dimension > 0, got n={n}, dimension={dimension}")
    if kind == "auto":
        if n < threshold:
            if compression != "none":
                raise ValueError(f"compression {compression!r} needs an ANN index; {n} vectors are below "
                                 f"the threshold {threshold}, so 'auto' plans flat")
            return {"kind": "flat"}
        kind = "ivf" if compression == "pq" else "hnsw"
    if kind == "flat":
        return {"kind": "flat"}
    if kind == "hnsw":
        return {"kind": "hnsw", "m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH,
                "compression": compression}
    nlist = nlist_for(n)
    spec = {"kind": "ivf", "nlist": nlist, "nprobe": min(IVF_NPROBE, nlist), "compression": compression}
    if compression == "pq":
        if dimension % PQ_M:
            raise ValueError(f"compression 'pq' needs the dimension ({dimension}) to be a multiple of {PQ_M}")
        spec["pq_m"] = PQ_M
    return spec


def _validate(spec: dict) -> tuple[str, str]:
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"an ANN spec is a dict with a 'kind', got {spec!r}")
    kind, compression = spec["kind"], spec.get("compression", "none")
    if kind == "auto":
        raise ValueError("a spec to build has a concrete kind (flat, hnsw or ivf); plan() resolves 'auto'")
    _check(kind, compression)
    return kind, compression


def _sample(vectors: np.ndarray, rows: int) -> np.ndarray:
    """At most `rows` rows, drawn without replacement with the fixed SEED (all rows when fewer)."""
    if len(vectors) <= rows:
        return vectors
    pick = np.sort(np.random.default_rng(SEED).choice(len(vectors), size=rows, replace=False))
    return np.ascontiguousarray(vectors[pick])


def _factory_string(spec: dict) -> str:
    kind, compression = _validate(spec)
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{int(spec['m'])}" + ("_SQ8" if compression == "sq8" else ",Flat")
    codec = {"none": "Flat", "sq8": "SQ8", "pq": f"PQ{int(spec.get('pq_m', PQ_M))}x{PQ_NBITS}"}[compression]
    return f"IVF{int(spec['nlist'])},{codec}"


def build(vectors: np.ndarray, spec: dict):
    """A FAISS index (inner product) holding all `vectors` as rows 0..n-1, built as `spec` says.

    Training (IVF k-means, SQ8 ranges, PQ codebooks) uses a seeded sample, and HNSW inserts run on
    HNSW_BUILD_THREADS threads, so the same rows and spec give the same index."""
    import faiss

    kind, compression = _validate(spec)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ValueError(f"vectors must be an [n, dimension] array with dimension > 0, got shape {vectors.shape}")
    n, d = vectors.shape
    if kind != "flat" and n == 0:
        raise ValueError(f"an empty {kind} index cannot be trained; plan() chooses flat for 0 vectors")
    if kind == "ivf" and n < spec["nlist"]:
        raise ValueError(f"IVF with {spec['nlist']} lists needs at least that many vectors, got {n}")
    index = faiss.index_factory(d, _factory_string(spec), faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index.hnsw.efConstruction = int(spec["ef_construction"])
        if compression == "sq8":
            index.train(_sample(vectors, CODEC_TRAIN_ROWS))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(HNSW_BUILD_THREADS)
        try:
            index.add(vectors)
        finally:
            faiss.omp_set_num_threads(threads)
    elif kind == "ivf":
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.seed = SEED
        ivf.cp.max_points_per_centroid = IVF_TRAIN_PER_LIST  # k-means itself samples no further
        rows = max(IVF_TRAIN_PER_LIST * int(spec["nlist"]), CODEC_TRAIN_ROWS if compression != "none" else 0)
        if compression == "pq":
            ivf.do_polysemous_training = False  # the factory's default; it took 200 s on 20k rows and is unused
        index.train(_sample(vectors, rows))
        index.add(vectors)
    elif n:
        index.add(vectors)
    configure(index, spec)
    return index


def extend(index, spec: dict, vectors: np.ndarray):
    """`index` (built by build() with this spec, rows 0..m-1) with `vectors` added as rows m.., the way
    build() adds them: an update that only appends rows reuses the trained quantizer and the HNSW graph
    instead of building both again (minutes at 1M rows). The result can differ from a fresh build of all
    rows (HNSW links depend on insertion history; IVF keeps its old centroids), not its row numbering."""
    import faiss

    kind, _ = _validate(spec)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != index.d:
        raise ValueError(f"vectors must be an [n, {index.d}] array, got shape {vectors.shape}")
    if len(vectors):
        threads = faiss.omp_get_max_threads()
        if kind == "hnsw":
            faiss.omp_set_num_threads(HNSW_BUILD_THREADS)
        try:
            index.add(vectors)
        finally:
            faiss.omp_set_num_threads(threads)
    configure(index, spec)
    return index


def configure(index, spec: dict) -> None:
    """Set the query-time parameters (HNSW efSearch, IVF nprobe) of a built or read index."""
    import faiss

    kind, _ = _validate(spec)
    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = int(spec["ef_search"])
    elif kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(spec["nprobe"])


def search_parameters(index, spec: dict, selector=None):
    """The faiss SearchParameters for `index.search(q, k, params=...)`: the spec's efSearch / nprobe,
    and `selector` (a faiss.IDSelector, e.g. IDSelectorBatch(allowed_rows)) when given.

    Note: with a selector HNSW and IVF only return allowed rows they meet on their usual path, so a
    very selective filter can return fewer than k rows; search a small allowed set exactly instead."""
    import faiss

    kind, _ = _validate(spec)
    extra = {} if selector is None else {"sel": selector}
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=int(spec["ef_search"]), **extra)
    if kind == "ivf":
        return faiss.SearchParametersIVF(nprobe=int(spec["nprobe"]), **extra)
    return faiss.SearchParameters(**extra)


def search(index, spec: dict, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """(scores, rows) of the k best rows per query, each [n_queries, k], best first; rows are -1 (and
    scores -FLT_MAX, as FAISS does) where fewer rows exist.

    `allowed` — the rows a metadata filter keeps, as row numbers or as a boolean mask over all rows —
    makes it a filtered search that stays accurate when the filter is selective: up to FILTER_EXACT_MAX
    allowed rows are scored exactly (HNSW: their stored vectors; IVF: every list probed; flat: always
    exact); more go through the ANN index with an IDSelectorBitmap and efSearch / nprobe widened by
    sqrt(rows / allowed), at most FILTER_WIDEN_MAX times."""
    import faiss

    kind, _ = _validate(spec)
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if allowed is None:
        return index.search(queries, k, params=search_parameters(index, spec))
    n = int(index.ntotal)
    allowed = np.asarray(allowed)
    if allowed.dtype == bool:
        if allowed.shape != (n,):
            raise ValueError(f"a boolean filter mask needs one entry per row ({n}), got shape {allowed.shape}")
        mask = allowed
    else:
        rows = allowed.astype(np.int64).ravel()
        mask = np.zeros(n, dtype=bool)
        mask[rows[(rows >= 0) & (rows < n)]] = True
    count = int(np.count_nonzero(mask))
    if count == 0:
        return (np.full((len(queries), k), -np.finfo(np.float32).max, np.float32),
                np.full((len(queries), k), -1, np.int64))
    if kind == "hnsw" and count <= FILTER_EXACT_MAX:
        rows = np.flatnonzero(mask)
        scores = queries @ index.reconstruct_batch(rows).T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out_s = np.full((len(queries), k), -np.finfo(np.float32).max, np.float32)
        out_r = np.full((len(queries), k), -1, np.int64)
        out_s[:, : top.shape[1]] = np.take_along_axis(scores, top, 1)
        out_r[:, : top.shape[1]] = rows[top]
        return out_s, out_r
    widen = min(FILTER_WIDEN_MAX, math.sqrt(n / count))
    if kind == "hnsw":
        spec = {**spec, "ef_search": int(math.ceil(spec["ef_search"] * widen))}
    elif kind == "ivf":
        nprobe = spec["nlist"] if count <= FILTER_EXACT_MAX else math.ceil(spec["nprobe"] * widen)
        spec = {**spec, "nprobe": int(min(spec["nlist"], nprobe))}
    # a bitmap selector: O(n / 8) bytes to build and O(1) a lookup (IDSelectorBatch hashes every allowed row:
    # 8.2 ms vs 0.5 ms for 100k of 1M rows)
    selector = faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))
    return index.search(queries, k, params=search_parameters(index, spec, selector))


def exact_reconstruction(spec: dict) -> bool:
    """Whether `index.reconstruct_n` gives back the added vectors bit for bit (no lossy codes)."""
    _, compression = _validate(spec)
    return compression == "none"
