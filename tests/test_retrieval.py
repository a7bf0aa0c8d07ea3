"""Retrieval over a real FAISS + BM25 index: modes, fusions, filters, rerankers, the LangChain retriever."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from rag import Assistant, Hit, build_index
from rag.store import ChunkRecord

TOUR = "miit-ai-tour-shanghai-beijing.md"
MEETING = "miit-ai-industry-meeting.md"
TOUR_Q = "Which minister toured AI hotspots in Shanghai and Beijing?"
MEETING_Q = "Who chaired the meeting on developing the AI industry?"

TINY_DOCS = {
    "notes/lighthouse.txt": "Skerryvore lighthouse log\n\nThe Skerryvore lighthouse keeper recorded forty-two gales "
                            "in the winter of 1899. The lamp burned paraffin oil until 1950.\n",
    "notes/bees.md": "---\ntitle: Beekeeping notes\nsource: Reuters\nrank: 99\npublisher: Apiary Weekly\n---\n"
                     "Honey bees forage up to five kilometres from the hive. A strong colony in summer holds "
                     "about fifty thousand workers.\n",
    "garden.md": "---\ntitle: Garden diary\npublisher: Green Thumb\n---\nTomatoes need six to eight hours of "
                 "sun a day. Water them deeply twice a week rather than a little every day.\n",
}


@pytest.fixture(scope="module")
def assistant(corpus_index, settings) -> Assistant:
    return Assistant.load(corpus_index[0], settings)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, settings, embedder) -> Assistant:
    """An index of three tiny documents (one of them with front matter that reuses span field names)."""
    root = tmp_path_factory.mktemp("tiny")
    docs = root / "docs"
    for name, text in TINY_DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    build_index([docs], root / "index", settings)
    return Assistant.load(root / "index", settings)


def assert_ranked_hits(hits: list[Hit], store) -> None:
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    for h in hits:
        assert isinstance(h.chunk, ChunkRecord)
        assert h.chunk.text.strip()
        assert store.document(h.chunk.source).text[h.chunk.start:h.chunk.end] == h.chunk.text


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_each_mode_returns_hits_ranked_one_to_n_best_first_with_their_chunks(assistant, mode):
    hits = assistant.retriever.search(TOUR_Q, top_k=5, mode=mode)
    assert 1 <= len(hits) <= 5
    assert_ranked_hits(hits, assistant.store)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[0].chunk.source == TOUR
    assert any("tour of AI hotspots" in h.chunk.text for h in hits)


def test_dense_scores_are_cosine_similarities_and_bm25_scores_are_lexical(assistant, embedder):
    qv = embedder.embed_query(TOUR_Q)
    dense = assistant.retriever.search(TOUR_Q, top_k=5, mode="dense")
    vectors = embedder.embed(assistant.store.indexed_texts([h.chunk for h in dense]))
    assert np.allclose([h.score for h in dense], vectors @ qv, atol=1e-3)
    assert all(h.lexical == 0.0 and h.dense == h.score for h in dense)

    bm25 = assistant.retriever.search(TOUR_Q, top_k=5, mode="bm25")
    assert all(h.score == h.lexical > 0 and h.dense == 0.0 for h in bm25)


def test_convex_and_rrf_fusion_both_rank_hits_but_score_them_differently(assistant, settings):
    r = assistant.retriever
    convex = r.search(TOUR_Q, top_k=6, mode="hybrid", fusion="convex")
    rrf = r.search(TOUR_Q, top_k=6, mode="hybrid", fusion="rrf")
    for hits in (convex, rrf):
        assert len(hits) == 6
        assert_ranked_hits(hits, assistant.store)
        assert hits[0].chunk.source == TOUR
    assert [h.score for h in convex] != [h.score for h in rrf]
    # convex: a weighted mix of min-max normalised scores, in [0, 1]
    assert all(0.0 <= h.score <= 1.0 for h in convex)
    # rrf: the sum of 1/(k + rank) over the dense and the BM25 rankings
    pool = settings.candidates
    dense_rank = {h.chunk.id: h.rank for h in r.search(TOUR_Q, top_k=pool, mode="dense")}
    lex_rank = {h.chunk.id: h.rank for h in r.search(TOUR_Q, top_k=pool, mode="bm25")}
    for h in rrf:
        expected = sum(1.0 / (settings.rrf_k + ranks[h.chunk.id]) for ranks in (dense_rank, lex_rank)
                       if h.chunk.id in ranks)
        assert h.score == pytest.approx(expected, rel=1e-6)
    assert rrf[0].score <= 2.0 / (settings.rrf_k + 1) + 1e-9


def test_bm25_finds_the_only_tiny_document_containing_the_query_words(tiny):
    hits = tiny.retriever.search("Skerryvore paraffin", top_k=5, mode="bm25")
    assert hits, "BM25 found nothing for words that occur in one document"
    assert {h.chunk.source for h in hits} == {"notes/lighthouse.txt"}
    assert "Skerryvore" in hits[0].chunk.text
    assert_ranked_hits(hits, tiny.store)


def test_bm25_returns_nothing_for_words_absent_from_every_document(tiny):
    assert tiny.retriever.search("xylophone quasar", mode="bm25") == []


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_source_glob_filter_keeps_only_matching_files(assistant, mode):
    hits = assistant.retriever.search(TOUR_Q, top_k=5, mode=mode, filters={"source": "*meeting*"})
    assert hits
    assert {h.chunk.source for h in hits} == {MEETING}


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_front_matter_field_filter_keeps_only_documents_with_that_value(assistant, mode):
    hits = assistant.retriever.search(MEETING_Q, top_k=5, mode=mode, filters={"publisher": "FreshFromChina"})
    assert hits
    assert {h.chunk.source for h in hits} == {TOUR}
    hits = assistant.retriever.search(TOUR_Q, top_k=5, mode=mode, filters={"minister": "Jin Zhuanglong"})
    assert hits
    assert {h.chunk.source for h in hits} == {MEETING}


def test_a_list_of_filter_values_matches_any_of_them_and_filters_combine(assistant, tiny):
    hits = assistant.retriever.search(TOUR_Q, top_k=20, filters={"source": ["*meeting*", "*tour*"]})
    assert {h.chunk.source for h in hits} == {MEETING, TOUR}
    hits = tiny.retriever.search("notes", top_k=10, mode="dense",
                                 filters={"source": "notes/*", "publisher": ["Apiary Weekly", "Green Thumb"]})
    assert {h.chunk.source for h in hits} == {"notes/bees.md"}


@pytest.mark.parametrize("filters", [{"source": "*nothing-like-this*"}, {"publisher": "Nobody"},
                                     {"no_such_field": "x"}, {"source": "*meeting*", "publisher": "FreshFromChina"}])
@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_a_filter_that_matches_no_document_returns_no_hits(assistant, filters, mode):
    assert assistant.retriever.search(TOUR_Q, mode=mode, filters=filters) == []


def test_filtered_answer_only_cites_and_lists_matching_documents(assistant):
    ans = assistant.answer(TOUR_Q, filters={"source": "*meeting*"})
    assert ans.passages
    assert {p.source for p in ans.passages} == {MEETING}
    assert all(fnmatch.fnmatch(c.source, "*meeting*") for c in ans.citations)


class ReverseReranker:
    """Reverses the fused order and records what it was given."""

    def __init__(self):
        self.calls: list[tuple[str, list[Hit]]] = []

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        self.calls.append((query, list(hits)))
        return list(reversed(hits))


def test_a_custom_reranker_reorders_hits_and_ranks_are_renumbered(assistant, corpus_index, settings):
    reranker = ReverseReranker()
    reranked = Assistant.load(corpus_index[0], settings, reranker=reranker)
    plain = assistant.retriever.search(TOUR_Q, top_k=5)
    hits = reranked.retriever.search(TOUR_Q, top_k=5)
    assert len(reranker.calls) == 1
    query, given = reranker.calls[0]
    assert query == TOUR_Q
    assert [h.chunk.id for h in given] == [h.chunk.id for h in plain]
    assert [h.chunk.id for h in hits] == [h.chunk.id for h in reversed(plain)]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert [h.score for h in hits] == [h.score for h in reversed(plain)]

    ans = reranked.answer(TOUR_Q, top_k=5)
    assert [p.chunk_id for p in ans.passages] == [h.chunk.id for h in reversed(plain)]
    assert [p.rank for p in ans.passages] == [1, 2, 3, 4, 5]


def test_langchain_retriever_returns_documents_naming_their_exact_source_span(assistant):
    retriever = assistant.as_retriever()
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke(TOUR_Q)
    assert len(docs) == assistant.settings.top_k
    assert all(isinstance(d, Document) for d in docs)
    assert [d.metadata["rank"] for d in docs] == list(range(1, len(docs) + 1))
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    for d in docs:
        for key in ("source", "title", "start", "end", "chunk_id", "score", "rank"):
            assert key in d.metadata, key
        text = assistant.store.document(d.metadata["source"]).text
        assert text[d.metadata["start"]:d.metadata["end"]] == d.page_content
        assert d.id == d.metadata["chunk_id"]
    assert docs[0].metadata["source"] == TOUR
    assert docs[0].metadata["title"].startswith("China's MIIT Minister Li Lecheng")
    assert docs[0].metadata["publisher"] == "FreshFromChina"  # front matter travels along


def test_langchain_retriever_honours_top_k_mode_and_filters(assistant):
    docs = assistant.as_retriever(k=2, search_type="bm25", filter={"source": "*meeting*"}).invoke(TOUR_Q)
    assert len(docs) == 2
    assert {d.metadata["source"] for d in docs} == {MEETING}
    expected = assistant.retriever.search(TOUR_Q, top_k=2, mode="bm25", filters={"source": "*meeting*"})
    assert [d.metadata["chunk_id"] for d in docs] == [h.chunk.id for h in expected]


def test_front_matter_keys_cannot_overwrite_the_span_metadata_of_langchain_documents(tiny):
    # bees.md declares `source: Reuters` and `rank: 99` in its front matter
    docs = tiny.as_retriever(k=1, search_type="bm25").invoke("honey bees colony")
    assert len(docs) == 1
    d = docs[0]
    assert d.metadata["source"] == "notes/bees.md"
    assert d.metadata["rank"] == 1
    assert d.metadata["publisher"] == "Apiary Weekly"
    assert tiny.store.document(d.metadata["source"]).text[d.metadata["start"]:d.metadata["end"]] == d.page_content


def test_invalid_mode_or_fusion_is_a_value_error_naming_the_choices(assistant):
    with pytest.raises(ValueError, match="hybrid, dense, bm25"):
        assistant.retriever.search(TOUR_Q, mode="fuzzy")
    with pytest.raises(ValueError, match="convex, rrf"):
        assistant.retriever.search(TOUR_Q, fusion="borda")
    with pytest.raises(ValueError):
        assistant.answer(TOUR_Q, mode="fuzzy")
    with pytest.raises(ValueError):
        assistant.as_retriever(search_type="fuzzy").invoke(TOUR_Q)
