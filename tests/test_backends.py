"""The same behaviour on both stores: FAISS + SQLite + bm25s (the default) and Milvus (Milvus Lite here).

Indexing, incremental updates, deletes, filters, citations, abstention and crash safety are checked on
each backend with the same assertions; the eval set is answered the same way on both.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import CORPUS, ROOT

from rag import Assistant
from rag.backends import check_store, open_store
from rag.cli import main
from rag.evalsuite import evaluate_assistant, read_qa
from rag.indexer import build_index
from rag.store import MANIFEST, IndexStore, IndexStoreError

BACKENDS = ("faiss", "milvus")

DOCS = {
    "birds/owls.md": "---\nregion: north\nyear: 2021\n---\n# Owls\n\nBarn owls hunt voles at night over rough "
                     "grassland. A barn owl swallows a vole whole and coughs up a pellet.\n",
    "birds/geese.md": "---\nregion: south\nyear: 2022\n---\n# Geese\n\nGreylag geese graze on wet meadows and "
                      "fly south in October in a V formation.\n",
    "trees/oaks.txt": "Oaks\n\nAn English oak can live for a thousand years. Its acorns feed jays, which bury "
                      "them and so plant new oaks.\n",
}


def _write(folder, docs=DOCS):
    for name, text in docs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def small(tmp_path, settings, backend):
    """(docs folder, index dir, settings) of a small index on `backend`."""
    docs = _write(tmp_path / "docs")
    cfg = settings.replace(store=backend)
    build_index([docs], tmp_path / "index", cfg)
    return docs, tmp_path / "index", cfg


def test_the_manifest_records_the_store_and_the_index_opens_on_it(small, backend):
    _, index, _ = small
    manifest = IndexStore.read_manifest(index)
    assert manifest["store"]["kind"] == backend
    store = open_store(index)
    assert type(store).__name__ == ("IndexStore" if backend == "faiss" else "MilvusStore")
    assert store.size == manifest["counts"]["chunks"] == len(store.all_chunks()) == 3
    found = check_store(index)
    assert (found["documents"], found["chunks"]) == (3, 3)
    if backend == "milvus":  # nothing of FAISS or SQLite is written: the data lives in Milvus
        assert sorted(p.name for p in index.iterdir()) == [".lock", MANIFEST, "milvus.db"]


def test_answers_cite_spans_of_the_stored_document_text(small):
    _, index, cfg = small
    assistant = Assistant.load(index, cfg)
    ans = assistant.answer("What do barn owls hunt?")
    assert not ans.abstained and "voles" in ans.text
    assert ans.citations and ans.citations[0].source == "birds/owls.md"
    for c in ans.citations:
        assert assistant.store.document(c.source).text[c.start:c.end] == c.quote
    for p in ans.passages:
        assert assistant.store.text_spans([(p.source, p.start, p.end)])[0] == p.text


def test_an_off_topic_question_abstains(small):
    _, index, cfg = small
    ans = Assistant.load(index, cfg).answer("What is the boiling point of mercury in kelvin?")
    assert ans.abstained and not ans.citations


def test_filters_select_by_source_glob_title_and_front_matter(small):
    _, index, cfg = small
    retriever = Assistant.load(index, cfg).retriever
    for mode in ("hybrid", "dense", "bm25"):
        def sources(filters, mode=mode):
            return sorted({h.chunk.source for h in retriever.search("birds and trees", mode=mode, filters=filters)})

        if mode != "bm25":  # every chunk is a dense hit; BM25 only finds chunks holding a query term
            assert sources(None) == sorted(DOCS)
        assert set(sources({"source": "birds/*"})) <= {"birds/owls.md", "birds/geese.md"}
        assert sources({"source": "trees/oaks.txt"}) in ([], ["trees/oaks.txt"])
        assert sources({"region": "south"}) in ([], ["birds/geese.md"])
        assert sources({"year": 2021}) in ([], ["birds/owls.md"])  # metadata compares as text
        assert sources({"title": "Oaks"}) in ([], ["trees/oaks.txt"])
        assert sources({"region": "east"}) == []
        assert sources({"source": "birds/*", "region": "north"}) in ([], ["birds/owls.md"])
    hits = retriever.search("geese owls", mode="dense", filters={"region": ["north", "south"]})
    assert sorted({h.chunk.source for h in hits}) == ["birds/geese.md", "birds/owls.md"]
    assert [h.chunk.source for h in retriever.search("geese", mode="bm25", filters={"region": "south"})] == [
        "birds/geese.md"]


def test_hybrid_scores_fuse_both_lists(small):
    _, index, cfg = small
    retriever = Assistant.load(index, cfg).retriever
    hits = retriever.search("acorns jays", mode="hybrid")
    assert hits[0].chunk.source == "trees/oaks.txt" and hits[0].lexical > 0 and hits[0].dense > 0
    bm25 = retriever.search("acorns jays", mode="bm25")
    assert [h.chunk.source for h in bm25] == ["trees/oaks.txt"]  # only that chunk holds the terms
    assert retriever.idf(["acorn"])[0] > retriever.idf(["owl", "acorn"])[0] - 1e-9


def test_edits_additions_and_deletions_reembed_only_what_changed(small, embedder):
    docs, index, cfg = small
    before = open_store(index)
    kept_vector = before.vectors_of([c.row for c in before.all_chunks() if c.source == "birds/geese.md"])
    (docs / "trees/oaks.txt").unlink()
    (docs / "birds/owls.md").write_text(DOCS["birds/owls.md"] + "\nTawny owls call at dusk.\n", encoding="utf-8")
    (docs / "birds/swifts.md").write_text("# Swifts\n\nCommon swifts sleep on the wing.\n", encoding="utf-8")

    summary = build_index([docs], index, cfg)

    assert (summary.new, summary.updated, summary.removed, summary.unchanged, summary.embedded) == (1, 1, 1, 1, 2)
    store = open_store(index)
    assert sorted(store.documents()) == ["birds/geese.md", "birds/owls.md", "birds/swifts.md"]
    chunks = store.all_chunks()
    assert sorted(c.source for c in chunks) == sorted(store.documents())
    assert [c.row for c in chunks] == list(range(len(chunks)))
    assert any("Tawny owls" in c.text for c in chunks)
    with pytest.raises(KeyError):
        store.document("trees/oaks.txt")
    geese = [c.row for c in chunks if c.source == "birds/geese.md"]
    assert np.array_equal(store.vectors_of(geese), kept_vector)  # carried over, not re-embedded
    fresh = embedder.embed(store.indexed_texts())
    assert np.sum(fresh * store.vectors_of(), axis=1).min() > 0.999  # each row's vector is its own text's
    assistant = Assistant.load(index, cfg)
    assert all(h.chunk.source != "trees/oaks.txt" for h in assistant.retriever.search("acorns jays oak"))
    assert "Tawny" in assistant.answer("Which owls call at dusk?").text


def test_a_build_that_dies_part_way_leaves_the_previous_index_answering(small, backend, monkeypatch):
    docs, index, cfg = small
    before = IndexStore.read_manifest(index)
    (docs / "birds/swifts.md").write_text("# Swifts\n\nCommon swifts sleep on the wing.\n", encoding="utf-8")
    if backend == "faiss":  # the BM25 index is written after the vectors and the chunk table
        import rag.store

        def die(*args, **kwargs):
            raise RuntimeError("killed")

        monkeypatch.setattr(rag.store.LexicalIndex, "build", die)
    else:  # the chunks are written after the documents, their text and the term counts
        import rag.milvus_store

        real = rag.milvus_store._insert

        def insert_then_die(client, collection, rows):
            if collection.endswith("_chunks"):
                raise RuntimeError("killed")
            real(client, collection, rows)

        monkeypatch.setattr(rag.milvus_store, "_insert", insert_then_die)
    with pytest.raises((RuntimeError, IndexStoreError)):
        build_index([docs], index, cfg)
    monkeypatch.undo()

    assert IndexStore.read_manifest(index)["data"] == before["data"]
    assistant = Assistant.load(index, cfg)
    assert "birds/swifts.md" not in assistant.store.documents()
    assert "voles" in assistant.answer("What do barn owls hunt?").text
    summary = build_index([docs], index, cfg)  # the next build succeeds and cleans up
    assert summary.new == 1
    if backend == "milvus":
        store = open_store(index)
        gens = {n.rsplit("_", 1)[0] for n in store.client.list_collections() if n.startswith("rag_gen_")}
        assert len(gens) <= 2  # the committed generation and the one before it; the dead one is gone


def test_moving_an_index_to_another_store_needs_a_rebuild(small, backend, settings):
    docs, index, _ = small
    other = "milvus" if backend == "faiss" else "faiss"
    with pytest.raises(IndexStoreError, match="--rebuild"):
        build_index([docs], index, settings.replace(store=other))
    summary = build_index([docs], index, settings.replace(store=other), rebuild=True)
    assert summary.embedded == 3 and IndexStore.read_manifest(index)["store"]["kind"] == other
    assert open_store(index).size == 3


def test_an_index_built_with_another_model_is_refused_in_one_line(small):
    _, index, cfg = small
    manifest = json.loads((index / MANIFEST).read_text())
    manifest["model"]["fingerprint"] = "another-model"
    (index / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="another-model.*--rebuild"):
        Assistant.load(index, cfg)


def test_a_milvus_collection_gone_or_a_server_down_is_one_line_not_a_traceback(tmp_path, settings, capsys):
    docs = _write(tmp_path / "docs")
    index = tmp_path / "index"
    assert main(["index", str(docs), "--index-dir", str(index), "--store", "milvus"]) == 0
    store = open_store(index)
    store.client.drop_collection(store.names["text"])
    capsys.readouterr()
    assert main(["ask", "What do barn owls hunt?", "--index-dir", str(index)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rag ask: error:") and "missing" in err and "--rebuild" in err and "\n" not in err

    assert main(["index", str(docs), "--index-dir", str(tmp_path / "remote"),
                 "--milvus-uri", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rag index: error: cannot open the Milvus store at http://127.0.0.1:9") and "\n" not in err
    assert not (tmp_path / "remote" / MANIFEST).exists()


@pytest.mark.slow  # about two minutes: the whole eval set answered on both stores
def test_both_backends_answer_the_eval_set_alike(corpus_index, settings, tmp_path):
    """The bar: the same answers and citations on both stores, within one question, so the eval gate's
    metrics on Milvus are FAISS's to within one question."""
    shutil.copytree(CORPUS, tmp_path / "corpus")
    build_index([tmp_path / "corpus"], tmp_path / "milvus", settings.replace(store="milvus"))
    items = read_qa(ROOT / "eval" / "qa.jsonl")
    on_faiss = evaluate_assistant(Assistant.load(corpus_index[0], settings), items, top_k=settings.top_k)
    on_milvus = evaluate_assistant(Assistant.load(tmp_path / "milvus", settings), items, top_k=settings.top_k)
    differ = [a["question"] for a, b in zip(on_faiss.per_question, on_milvus.per_question, strict=True)
              if (a["answer"], a["citations"]) != (b["answer"], b["citations"])]
    assert len(differ) <= 1, differ
    one = 1 / on_faiss.overall["unanswerable"]  # the largest change one question can make to a metric
    for metric in ("hit@5", "answer_recall", "citation_precision", "unanswerable_abstained",
                   "answerable_wrongly_abstained"):
        assert abs(on_faiss.overall[metric] - on_milvus.overall[metric]) <= one + 1e-9, metric


@pytest.mark.parametrize(("kind", "compression"), [("hnsw", "none"), ("ivf", "sq8")])
def test_an_ann_vector_index_is_recorded_and_finds_what_exact_search_finds(tmp_path, settings, backend, kind,
                                                                           compression):
    docs = _write(tmp_path / "docs")
    build_index([docs], tmp_path / "flat", settings.replace(store=backend))
    cfg = settings.replace(store=backend, ann=kind, ann_compression=compression)
    build_index([docs], tmp_path / "ann", cfg)
    spec = IndexStore.read_manifest(tmp_path / "ann")["vector_index"]
    assert (spec["kind"], spec["compression"]) == (kind, compression)
    exact, approx = Assistant.load(tmp_path / "flat", settings), Assistant.load(tmp_path / "ann", cfg)
    for q in ("What do barn owls hunt?", "When do geese fly south?", "Who plants oaks?"):
        assert [h.chunk.id for h in approx.retriever.search(q, mode="dense")] == [
            h.chunk.id for h in exact.retriever.search(q, mode="dense")]
        assert approx.answer(q).text == exact.answer(q).text
    hits = approx.retriever.search("birds", mode="dense", filters={"region": "south"})
    assert [h.chunk.source for h in hits] == ["birds/geese.md"]
    # "auto" stays exact below the threshold and builds the ANN index from it on
    assert IndexStore.read_manifest(tmp_path / "flat")["vector_index"] == {"kind": "flat"}
    build_index([docs], tmp_path / "auto", settings.replace(store=backend, ann_threshold=3))
    assert IndexStore.read_manifest(tmp_path / "auto")["vector_index"]["kind"] == "hnsw"


def test_adding_documents_extends_the_hnsw_graph_and_other_updates_rebuild_it(tmp_path, settings, monkeypatch):
    """An update that only adds documents keeps the old rows first and extends the old HNSW index (single-
    threaded inserts in row order: the same graph as a fresh build); an edit or a removal builds it anew."""
    import faiss

    from rag import ann

    docs = _write(tmp_path / "docs", {"birds/owls.md": DOCS["birds/owls.md"], "trees/oaks.txt": DOCS["trees/oaks.txt"]})
    cfg = settings.replace(ann="hnsw")
    index = tmp_path / "index"
    build_index([docs], index, cfg)
    before = {c.id: c.row for c in open_store(index).all_chunks()}
    builds = []
    real_build = ann.build
    monkeypatch.setattr(ann, "build", lambda vectors, spec: builds.append(len(vectors)) or real_build(vectors, spec))

    _write(docs, {"birds/geese.md": DOCS["birds/geese.md"]})  # sorts between the two: still appended as rows 2..
    summary = build_index([docs], index, cfg)
    assert (summary.new, summary.embedded, builds) == (1, 1, [])  # extended, not built
    store = open_store(index)
    assert {c.id: c.row for c in store.all_chunks() if c.id in before} == before
    fresh = real_build(store.vectors_of(), store.manifest["vector_index"])  # the same rows built in one go
    assert np.array_equal(faiss.serialize_index(store.vectors.index), faiss.serialize_index(fresh))
    builds.clear()
    ans = Assistant.load(index, cfg).answer("When do geese fly south?")
    assert not ans.abstained and ans.citations[0].source == "birds/geese.md"

    (docs / "birds/owls.md").write_text(DOCS["birds/owls.md"].replace("voles", "mice"), encoding="utf-8")
    build_index([docs], index, cfg)
    assert builds == [3]  # an edit renumbers rows: the graph is built again
    (docs / "trees/oaks.txt").unlink()
    build_index([docs], index, cfg)
    assert builds == [3, 2]
    assert sorted(c.source for c in open_store(index).all_chunks()) == ["birds/geese.md", "birds/owls.md"]
