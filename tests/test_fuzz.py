"""Fuzzed input (Hypothesis, derandomized and bounded so it fits the test budget): random bytes under
every file type, hostile questions, out-of-range top_k and mode, the HTTP API with wrong types. Every case
ends in a document, an answer, or one clear error: never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.assistant import Assistant, QuestionError
from rag.config import EXTENSIONS, MAX_TOP_K, MODES, check_mode, check_top_k
from rag.loaders import LoaderError, load_file

FUZZ = settings(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def assistant(corpus_index, settings) -> Assistant:
    return Assistant.load(corpus_index[0], settings)


@pytest.mark.parametrize("ext", EXTENSIONS)
@settings(FUZZ, max_examples=30)
@given(data=st.one_of(st.binary(max_size=4096), st.text(max_size=2000).map(lambda t: t.encode("utf-8", "replace"))))
def test_random_bytes_under_each_file_type_load_or_fail_with_one_line(tmp_path_factory, ext, data):
    path = tmp_path_factory.mktemp("fuzz") / f"file{ext}"
    path.write_bytes(data)
    try:
        doc = load_file(path)
    except LoaderError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert isinstance(doc.text, str) and doc.text.strip()


# questions: control characters, right-to-left text, emoji, lone surrogates, NULs, long runs
QUESTION_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)


@settings(FUZZ, max_examples=25)
@given(question=st.one_of(QUESTION_TEXT, st.sampled_from(["\u202eWho chaired the meeting?", "🤖 minister?",
                                                          "\x00\x01\x02", "\udcff minister", " " * 50])))
def test_hostile_questions_are_answered_or_refused_in_one_line(assistant, question):
    try:
        ans = assistant.answer(question)
    except QuestionError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert ans.abstained or ans.citations
    for c in ans.citations:
        assert assistant.store.document(c.source).text[c.start:c.end] == c.quote


def test_a_one_megabyte_question_is_refused(assistant):
    with pytest.raises(QuestionError, match="limit is"):
        assistant.answer("minister " * 120_000)


@settings(FUZZ, max_examples=200)
@given(value=st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                       st.none(), st.booleans(), st.lists(st.integers(), max_size=2)))
def test_top_k_is_a_whole_number_in_range_or_a_value_error(value):
    try:
        k = check_top_k(value)
    except ValueError as e:
        assert "top_k" in str(e)
        return
    assert isinstance(k, int) and 1 <= k <= MAX_TOP_K


@settings(FUZZ, max_examples=100)
@given(value=st.one_of(st.text(max_size=12), st.integers(), st.none()))
def test_mode_is_one_of_the_modes_or_a_value_error(value):
    try:
        assert check_mode(value) in MODES
    except ValueError as e:
        assert "hybrid, dense, bm25" in str(e)


@settings(FUZZ, max_examples=20)
@given(question=st.one_of(st.text(max_size=60), st.integers(), st.none(), st.lists(st.text(), max_size=2)),
       top_k=st.one_of(st.integers(-5, 80), st.floats(), st.text(max_size=4), st.none()),
       mode=st.one_of(st.sampled_from(MODES), st.text(max_size=6), st.none(), st.integers()))
def test_the_http_api_with_wrong_types_answers_or_gives_a_message(corpus_index, settings, question, top_k, mode):
    import gradio as gr

    from rag.webapp import WebApp

    app = _app(corpus_index, settings)
    try:
        result = app.ask(question, top_k, mode)
    except gr.Error as e:
        message = str(e.message if hasattr(e, "message") else e)
        assert message and "Traceback" not in message and "\n" not in message
        return
    assert isinstance(result, dict) and "answer" in result
    assert isinstance(app, WebApp)


_APPS: dict = {}


def _app(corpus_index, settings):
    from rag.webapp import WebApp

    key = str(corpus_index[0])
    if key not in _APPS:
        _APPS[key] = WebApp(settings.replace(index_dir=corpus_index[0]), upload_dir=corpus_index[0].parent / "up")
    return _APPS[key]
