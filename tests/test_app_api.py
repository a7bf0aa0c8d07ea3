"""The HTTP API of the web app (`/ask`) through gradio_client, against `python app.py` serving a real
index of corpus/: the JSON of `rag ask --json`, clear errors, and 8 concurrent clients."""

from __future__ import annotations

import threading

import pytest
from apphelpers import copy_index, start_server
from gradio_client import Client
from gradio_client.exceptions import AppError

from rag.assistant import Assistant

TOUR, MEETING = "miit-ai-tour-shanghai-beijing.md", "miit-ai-industry-meeting.md"
QUESTIONS = [  # question, words the answer must hold (any case), the document it must cite
    ("Which minister toured AI hotspots in Shanghai and Beijing?", "li lecheng", TOUR),
    ("What are the five points of the MIIT AI action plan?", "5-point", TOUR),
    ("How much support does Beijing's plan offer for new equipment?", "30 million", MEETING),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, corpus_index):
    work = tmp_path_factory.mktemp("app-api")
    index = copy_index(corpus_index[0], work / "index")
    srv = start_server(index, work / "uploads", work)
    srv.index_dir = index
    yield srv
    srv.stop()


def client(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


@pytest.fixture(scope="module")
def api(server):
    c = client(server.url)
    yield c
    c.close()


def test_ask_returns_the_json_of_rag_ask(api, server, settings):
    question = QUESTIONS[0][0]
    result = api.predict(question, 8, "hybrid", api_name="/ask")
    assert set(result) == {"question", "answer", "short_answer", "abstained", "citations", "passages"}
    assert result["question"] == question and result["abstained"] is False
    assert "Li Lecheng" in result["answer"] and "[1]" in result["answer"]
    cite = result["citations"][0]
    assert set(cite) == {"n", "source", "title", "start", "end", "quote", "score"}
    assert cite["source"] == "miit-ai-tour-shanghai-beijing.md" and "Li Lecheng" in cite["quote"]
    assert len(result["passages"]) == 8
    assert set(result["passages"][0]) == {"rank", "source", "title", "start", "end", "text", "score"}
    # exactly what the library (and so `rag ask --json`) gives for the same index
    expected = Assistant.load(server.index_dir, settings).answer(question, top_k=8, mode="hybrid").to_dict()
    assert result == expected


def test_ask_defaults_and_other_modes(api):
    result = api.predict(QUESTIONS[2][0], api_name="/ask")
    assert "30 million" in result["answer"] and result["citations"]
    bm25 = api.predict(QUESTIONS[0][0], 3, "bm25", api_name="/ask")
    assert len(bm25["passages"]) == 3 and bm25["citations"]


def test_ask_abstains_on_questions_the_corpus_does_not_answer(api):
    result = api.predict("What is the capital of Peru?", 8, "hybrid", api_name="/ask")
    assert result["abstained"] is True and result["answer"] == "The corpus does not say."
    assert result["citations"] == [] and result["passages"]


@pytest.mark.parametrize(("args", "message"), [
    (("   ", 8, "hybrid"), "the question is empty"),
    (("Who chaired the meeting?", 8, "fuzzy"), "unknown retrieval mode .fuzzy.; use one of hybrid, dense, bm25"),
    (("Who chaired the meeting?", 0, "hybrid"), "top_k must be between 1 and 50"),
])
def test_bad_requests_get_a_clear_error(api, args, message):
    with pytest.raises(AppError, match=message):
        api.predict(*args, api_name="/ask")


def test_eight_concurrent_clients(server):
    errors: list[str] = []
    answers: list[dict] = []
    lock = threading.Lock()

    def user(i: int) -> None:
        try:
            c = client(server.url)
            try:
                for j in range(3):
                    question, words, source = QUESTIONS[(i + j) % len(QUESTIONS)]
                    result = c.predict(question, 8, "hybrid", api_name="/ask")
                    with lock:
                        answers.append(result)
                    if result["abstained"] or words not in result["answer"].lower() \
                            or source not in {x["source"] for x in result["citations"]}:
                        raise AssertionError(f"client {i}: {question!r} got {result['answer'][:120]!r}")
            finally:
                c.close()
        except Exception as e:  # collected and reported below
            with lock:
                errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=user, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert errors == []
    assert len(answers) == 24 and all(a["citations"] for a in answers)


def test_requests_beyond_the_queue_bound_are_refused_at_once_as_busy(tmp_path, corpus_index):
    """max_queued=1: with 8 answers computed at once and one waiting, the rest of 16 simultaneous users are
    told the queue is full right away, while every request let in is answered."""
    index = copy_index(corpus_index[0], tmp_path / "index")
    srv = start_server(index, tmp_path / "uploads", tmp_path, RAG_MAX_QUEUED="1")
    answered, busy, other = [], [], []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def user(i: int) -> None:
        c = client(srv.url)
        try:
            start.wait()
            question, words, _ = QUESTIONS[i % len(QUESTIONS)]
            result = c.predict(question, 8, "hybrid", api_name="/ask")
            with lock:
                answered.append(words in result["answer"].lower())
        except Exception as e:  # sorted below: a busy refusal, or anything else (a failure)
            with lock:
                (busy if "queue is full" in str(e).lower() else other).append(f"{type(e).__name__}: {e}")
        finally:
            c.close()

    try:
        threads = [threading.Thread(target=user, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        srv.stop()
    assert not other, other
    assert busy and answered and all(answered), (len(busy), answered)
    assert len(busy) + len(answered) == 16
