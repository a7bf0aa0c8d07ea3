"""rag/ann.py with real FAISS on synthetic clustered unit vectors: plans, builds, recall, filters, I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from rag import ann  # noqa: E402

DIM = 384
N = 3000
CLUSTERS = 64
NOISE = 0.6  # noise norm relative to the unit centroid: neighbours at cosine ~0.75, as with real chunks
# small IVF lists for 3000 rows (plan's 4*sqrt(n) rule would give 219 lists of ~14 rows)
SMALL_IVF = {"nlist": 32, "nprobe": 8}

SPECS = {
    "flat": ann.plan(N, DIM, "flat"),
    "hnsw": ann.plan(N, DIM, "hnsw"),
    "hnsw-sq8": ann.plan(N, DIM, "hnsw", "sq8"),
    "ivf": {**ann.plan(N, DIM, "ivf"), **SMALL_IVF},
    "ivf-sq8": {**ann.plan(N, DIM, "ivf", "sq8"), **SMALL_IVF},
    # PQ16 rather than plan's PQ48: the same code path, a third of the codebook training (seconds here)
    "ivf-pq": {**ann.plan(N, DIM, "ivf", "pq"), **SMALL_IVF, "pq_m": 16},
}


def _draw(rng: np.random.Generator, centroids: np.ndarray, n: int) -> np.ndarray:
    x = centroids[rng.integers(0, len(centroids), n)] + NOISE / np.sqrt(DIM) * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((CLUSTERS, DIM))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return _draw(rng, centroids, N), _draw(rng, centroids, 100)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # single-threaded FAISS: on a shared 2-core machine OpenMP's spinning threads make small builds 10x slower
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def built(data):
    x, _ = data
    return {name: ann.build(x, spec) for name, spec in SPECS.items()}


def _exact(x: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    scores = q @ x.T
    if allowed is not None:
        mask = np.zeros(len(x), bool)
        mask[allowed] = True
        scores = np.where(mask, scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)]))


def test_plan_is_flat_below_the_threshold_and_ann_from_it():
    assert ann.plan(0, DIM) == {"kind": "flat"}
    assert ann.plan(ann.ANN_THRESHOLD - 1, DIM) == {"kind": "flat"}
    big = ann.plan(ann.ANN_THRESHOLD, DIM)
    assert big["kind"] == "hnsw" and big["compression"] == "none"
    assert big["m"] == ann.HNSW_M and big["ef_construction"] == ann.HNSW_EF_CONSTRUCTION
    assert big["ef_search"] == ann.HNSW_EF_SEARCH
    assert ann.plan(5000, DIM, threshold=1000)["kind"] == "hnsw"
    assert ann.plan(5000, DIM, threshold=10_000)["kind"] == "flat"
    assert ann.plan(10**6, DIM, compression="sq8") == {**big, "compression": "sq8"}
    assert ann.plan(10**6, DIM, compression="pq")["kind"] == "ivf"  # pq is IVF only
    for spec in (big, ann.plan(10**6, DIM, "ivf", "pq"), ann.plan(10, DIM, "flat")):
        assert json.loads(json.dumps(spec)) == spec  # the manifest stores it as JSON


def test_plan_ivf_list_count_follows_the_sqrt_rule():
    spec = ann.plan(1_000_000, DIM, "ivf")
    assert spec["nlist"] == round(ann.IVF_NLIST_FACTOR * 1000)
    assert spec["nprobe"] == ann.IVF_NPROBE and spec["compression"] == "none" and "pq_m" not in spec
    assert ann.plan(50, DIM, "ivf")["nlist"] <= 50  # never more lists than vectors
    assert ann.plan(50, DIM, "ivf")["nprobe"] <= ann.plan(50, DIM, "ivf")["nlist"]
    assert ann.plan(10**6, DIM, "ivf", "pq")["pq_m"] == ann.PQ_M


@pytest.mark.parametrize(("kind", "compression"), [
    ("annoy", "none"), ("HNSW", "none"), ("hnsw", "zstd"), ("hnsw", "pq"), ("flat", "sq8"), ("auto", "pq"),
])
def test_plan_refuses_bad_or_unsupported_values(kind, compression):
    with pytest.raises(ValueError) as e:
        ann.plan(10**6 if kind != "auto" else 10, DIM, kind, compression)
    assert "\n" not in str(e.value) and str(e.value)


def test_bad_specs_and_sizes_are_refused(data):
    x, _ = data
    with pytest.raises(ValueError):
        ann.plan(-1, DIM)
    with pytest.raises(ValueError):
        ann.build(x, {"kind": "auto"})
    with pytest.raises(ValueError):
        ann.build(x, {"kind": "hnsw", "m": 16, "ef_construction": 40, "ef_search": 16, "compression": "pq"})
    with pytest.raises(ValueError):
        ann.build(x[:0], ann.plan(N, DIM, "hnsw"))  # nothing to train on
    with pytest.raises(ValueError):
        ann.build(x[:10], {**SPECS["ivf"], "nlist": 32})  # fewer rows than lists
    with pytest.raises(ValueError):
        ann.search_parameters(None, {"kind": "lsh"})
    with pytest.raises(ValueError):
        ann.build(x[0], SPECS["flat"])  # one vector, not a matrix


def test_empty_flat_index():
    index = ann.build(np.zeros((0, DIM), np.float32), ann.plan(0, DIM))
    assert index.ntotal == 0 and index.d == DIM
    _, rows = index.search(np.ones((1, DIM), np.float32), 5, params=ann.search_parameters(index, {"kind": "flat"}))
    assert (rows == -1).all()


@pytest.mark.parametrize("name", SPECS)
def test_recall_and_round_trip(name, data, built, tmp_path):
    x, q = data
    spec = SPECS[name]
    truth = _exact(x, q, 10)
    index = built[name]
    assert index.ntotal == N and index.metric_type == faiss.METRIC_INNER_PRODUCT
    _, rows = index.search(q, 100, params=ann.search_parameters(index, spec))
    if ann.exact_reconstruction(spec) or name != "ivf-pq":
        assert _recall(rows[:, :10], truth) >= 0.9
    else:  # PQ codes rank coarsely: the top 100 rescored with the float vectors, as the retriever's hybrid does
        assert _recall(rows[:, :10], truth) < 0.9  # (the reason for the rescoring; it can fail if PQ improves)
        rescored = np.array([r[np.argsort(-(x[r] @ v), kind="stable")][:10] for r, v in zip(rows, q, strict=True)])
        assert _recall(rescored, truth) >= 0.9

    path = tmp_path / "vectors.faiss"
    faiss.write_index(index, str(path))
    back = faiss.read_index(str(path))
    tuned = {**spec, "ef_search": 77} if spec["kind"] == "hnsw" else {**spec, "nprobe": 7} if spec["kind"] == "ivf" \
        else spec
    ann.configure(back, tuned)
    if spec["kind"] == "hnsw":
        assert faiss.downcast_index(back).hnsw.efSearch == 77
    elif spec["kind"] == "ivf":
        assert faiss.extract_index_ivf(back).nprobe == 7
    ann.configure(back, spec)
    _, again = back.search(q, 100, params=ann.search_parameters(back, spec))
    assert np.array_equal(again, rows)
    _, plain = back.search(q, 100)  # configure() alone sets the same query-time parameters
    assert np.array_equal(plain, rows)


@pytest.mark.parametrize("name", SPECS)
def test_filtered_search_returns_only_allowed_rows(name, data, built):
    x, q = data
    spec, index = SPECS[name], built[name]
    allowed = np.arange(0, N, 7)
    _, rows = index.search(q, 10, params=ann.search_parameters(index, spec, faiss.IDSelectorBatch(allowed)))
    found = rows[rows >= 0]
    assert found.size >= 0.95 * rows.size  # the filter still fills (almost) all 10 slots
    assert np.isin(found, allowed).all()
    truth = _exact(x, q, 10, allowed)
    assert _recall(rows, truth) >= (0.85 if name != "ivf-pq" else 0.4)
    _, unfiltered = index.search(q, 10, params=ann.search_parameters(index, spec))
    assert not np.isin(unfiltered, allowed).all()  # without the selector other rows do come back


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("every", [3, 300])  # 33% of the rows (ANN with a selector), 10 rows (scored exactly)
def test_ann_search_with_allowed_rows(name, every, data, built):
    x, q = data
    spec, index = SPECS[name], built[name]
    allowed = np.arange(0, N, every)
    scores, rows = ann.search(index, spec, q, 10, allowed)
    assert rows.shape == scores.shape == (len(q), 10)
    assert np.isin(rows, allowed).all()  # every slot filled, and only with allowed rows
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    assert _recall(rows, _exact(x, q, 10, allowed)) >= (0.9 if name != "ivf-pq" else 0.5)
    if every == 300 and name in ("flat", "hnsw", "ivf"):  # few rows: exact scores of the stored vectors
        truth = _exact(x, q, 10, allowed)
        assert np.array_equal(rows, truth)
        assert np.allclose(scores, np.take_along_axis(q @ x.T, truth, 1), atol=1e-5)


def test_ann_search_edge_cases(data, built):
    x, q = data
    index, spec = built["hnsw"], SPECS["hnsw"]
    scores, rows = ann.search(index, spec, q[:2], 5, np.array([], np.int64))
    assert (rows == -1).all() and rows.shape == (2, 5)
    scores, rows = ann.search(index, spec, q[0], 5, np.array([7, 7, 11, N + 5, -3]))  # duplicates, out of range
    assert rows.shape == (1, 5) and sorted(rows[0, :2].tolist()) == [7, 11] and (rows[0, 2:] == -1).all()
    _, plain = ann.search(index, spec, q, 10)
    _, direct = index.search(q, 10, params=ann.search_parameters(index, spec))
    assert np.array_equal(plain, direct)
    mask = np.zeros(N, bool)
    mask[::3] = True  # a boolean mask and the same rows as numbers give the same answer
    by_rows = ann.search(index, spec, q, 10, np.arange(0, N, 3))[1]
    assert np.array_equal(ann.search(index, spec, q, 10, mask)[1], by_rows)
    with pytest.raises(ValueError):
        ann.search(index, spec, q, 10, mask[:-1])


@pytest.mark.parametrize("name", SPECS)
def test_exact_reconstruction_matches_what_faiss_gives_back(name, data, built):
    x, _ = data
    spec = SPECS[name]
    back = built[name].reconstruct_n(0, N)
    assert back.shape == x.shape
    if ann.exact_reconstruction(spec):
        assert np.array_equal(back, x)
    else:
        assert not np.array_equal(back, x)
        # lossy, but the same rows in the same order: SQ8 keeps ~8 bits a dimension, PQ48 one byte per 8
        cosine = np.einsum("ij,ij->i", back, x) / np.linalg.norm(back, axis=1)
        assert cosine.min() > (0.99 if spec["compression"] == "sq8" else 0.7)


@pytest.mark.parametrize("name", ["flat", "hnsw", "ivf"])
def test_rows_keep_their_insertion_order(name, data, built):
    x, _ = data
    probe = np.array([0, 1, 1234, N - 1])
    _, rows = built[name].search(x[probe], 1, params=ann.search_parameters(built[name], SPECS[name]))
    assert rows[:, 0].tolist() == probe.tolist()


@pytest.mark.parametrize("name", ["hnsw", "hnsw-sq8", "ivf", "ivf-pq"])
def test_build_is_deterministic(name, data, built):
    x, _ = data
    if name == "ivf-pq":  # PQ codebooks take seconds to train: two builds of a cheaper PQ8 instead
        spec = {**SPECS[name], "pq_m": 8}
        first, again = ann.build(x, spec), ann.build(x, spec)
    else:
        first, again = built[name], ann.build(x, SPECS[name])
    assert np.array_equal(faiss.serialize_index(again), faiss.serialize_index(first))
