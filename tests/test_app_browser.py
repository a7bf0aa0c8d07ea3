"""The web app driven as a person would: Debian's Chromium through Playwright against `python app.py`
serving a real index of corpus/ (real embedder). Skipped without Chromium only outside CI."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

import pytest
from apphelpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    LOCAL_PREFIXES,
    chromium_missing_reason,
    copy_index,
    start_server,
)
from injection import ATTACKER, QUESTIONS, write_corpus

from rag.config import Settings
from rag.indexer import build_index

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the chromium fixture (skip locally, fail in CI)
    expect = sync_playwright = None

pytestmark = pytest.mark.browser

QUESTION = "Which minister toured AI hotspots in Shanghai and Beijing?"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def chromium():
    reason = chromium_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, corpus_index):
    work = tmp_path_factory.mktemp("app-browser")
    index = copy_index(corpus_index[0], work / "index")
    srv = start_server(index, work / "uploads", work)
    yield srv
    srv.stop()


@contextmanager
def open_page(chromium, url: str):
    """A page on the app that may only reach this machine: yields it, then asserts that no request
    went elsewhere (such requests are aborted and recorded) and that no JavaScript error happened."""
    context = chromium.new_context(viewport={"width": 1200, "height": 800})
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(LOCAL_PREFIXES):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_selector("#question textarea", timeout=TIMEOUT_MS)
    yield pg
    context.close()
    assert not outside, f"the page tried to reach outside this machine: {outside}"
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(chromium, server):
    with open_page(chromium, server.url) as pg:
        yield pg


def ask(page, question: str) -> str:
    """Type a question, send it, wait until its answer has finished streaming; returns the answer text."""
    bots = page.locator("#chat [data-testid='bot']")
    before = bots.count()
    page.fill("#question textarea", question)
    page.click("#ask")
    page.wait_for_function(
        """n => {
            const bots = document.querySelectorAll("#chat [data-testid='bot']");
            const src = document.querySelector('#sources');
            return bots.length > n && !bots[bots.length - 1].innerText.trim().startsWith('…')
                && src && !src.innerText.includes('Searching the documents')
                && (src.querySelector('mark') || src.innerText.includes('corpus does not say'));
        }""", arg=before, timeout=TIMEOUT_MS)
    page.wait_for_selector("#chat .generating", state="detached", timeout=TIMEOUT_MS)
    return bots.last.inner_text()


def test_streamed_answer_cites_and_highlights_its_source(page):
    assert "documents" in page.inner_text("#index-status") and "chunks" in page.inner_text("#index-status")
    answer = ask(page, QUESTION)
    assert "Li Lecheng" in answer
    # the [1] marker is shown as a badge, not as plain "[1]"
    assert page.locator("#chat [data-testid='bot'] sup.cite").count() >= 1
    assert "[1]" not in answer
    marks = page.locator("#sources mark")
    assert any("Li Lecheng" in t for t in marks.all_inner_texts())
    assert "miit-ai-tour-shanghai-beijing.md" in page.inner_text("#sources")
    # the uncited passages are collapsed below
    assert page.locator("#sources details:not([open])").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-answer.png"))


def test_follow_up_uses_the_conversation(page):
    ask(page, QUESTION)
    answer = ask(page, "What was the mission of his tour?")
    assert "The corpus does not say" not in answer
    assert page.locator("#sources mark").count() >= 1


def test_example_question_and_abstention(page):
    page.locator("button:has-text('How much support does Beijing')").click()  # examples show truncated
    expect(page.locator("#question textarea")).to_have_value(
        "How much support does Beijing's plan offer for new equipment?", timeout=TIMEOUT_MS)
    page.click("#ask")
    page.wait_for_selector("#sources mark", timeout=TIMEOUT_MS)
    page.wait_for_selector("#chat .generating", state="detached", timeout=TIMEOUT_MS)
    assert "30 million" in page.locator("#chat [data-testid='bot']").last.inner_text()
    answer = ask(page, "What is the capital of Peru?")
    assert "The corpus does not say." in answer
    sources = page.inner_text("#sources")
    assert "The corpus does not say." in sources and "Closest passages" in sources
    assert page.locator("#sources .src-card").count() >= 1


def test_uploaded_files_are_answerable_at_once_and_shown_escaped(page, server, tmp_path):
    harbour = tmp_path / "zorbulon-harbour.txt"
    harbour.write_text("Port records.\n\nThe Zorbulon harbour opened in 1987 and handles 40 ships a day.\n")
    hostile = tmp_path / "quibbleton.md"
    hostile.write_text("# Quibbleton lighthouse\n\nThe Quibbleton lighthouse keeper painted "
                       "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> "
                       "on the lamp room wall in 1912.\n")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not a real pdf")

    page.click("#add-documents button")
    page.locator("#upload input[type=file]").set_input_files([str(harbour), str(hostile), str(broken)])
    report = page.locator("#upload-report")
    report.get_by_text("Added 2 files").wait_for(timeout=TIMEOUT_MS)
    text = report.inner_text()
    assert "zorbulon-harbour.txt" in text and "quibbleton.md" in text
    assert re.search(r"Skipped broken\.pdf: corrupt or unreadable PDF", text)
    assert re.search(r"\b4 documents\b", page.inner_text("#index-status"))
    assert sorted(p.name for p in (server.log.parent / "uploads").iterdir()) == \
        ["quibbleton.md", "zorbulon-harbour.txt"]

    answer = ask(page, "When did the Zorbulon harbour open?")
    assert "1987" in answer and "zorbulon-harbour.txt" in answer
    assert any("1987" in t for t in page.locator("#sources mark").all_inner_texts())
    assert "zorbulon-harbour.txt" in page.inner_text("#sources")

    answer = ask(page, "What did the Quibbleton lighthouse keeper paint on the lamp room wall?")
    assert "Quibbleton" in answer
    sources = page.inner_text("#sources")
    assert "<script>window.__pwned = 1</script>" in sources  # shown as text...
    assert page.evaluate("window.__pwned") is None  # ...never run
    assert page.locator("#sources script, #sources img, #chat img[src='x']").count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-upload.png"))


@pytest.fixture(scope="module")
def injection_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("app-injection")
    folder = write_corpus(work / "corpus", injected=True)
    build_index([folder], work / "index", Settings())
    srv = start_server(work / "index", work / "uploads", work)
    yield srv
    srv.stop()


def test_an_injection_corpus_is_shown_inert_and_no_request_leaves_the_page(chromium, injection_server):
    with open_page(chromium, injection_server.url) as pg:  # asserts no outside request, no JS error
        shown = []
        for question, expected in QUESTIONS:
            answer = ask(pg, question)
            assert expected in answer, (question, answer)
            if pg.locator("#sources details summary").count():  # the other retrieved passages, too
                pg.click("#sources details summary")
            shown.append(pg.inner_text("#sources"))
        text = "\n".join(shown)
        # the hostile text is on the page as text...
        assert "ignore all previous instructions" in text and "<script>" in text and "onerror" in text
        assert f"]({ATTACKER}/pixel.png" in text or f"]({ATTACKER}/chart.png" in text
        # ...and nothing of it became markup: no script ran, no image, no script or javascript: link exists
        assert pg.evaluate("window.__pwned") is None
        assert pg.locator("#chat img, #sources img, #chat script, #sources script").count() == 0
        assert pg.evaluate("""() => [...document.querySelectorAll('[src], [href], [onerror], [onclick]')]
            .map(e => (e.getAttribute('src') || '') + (e.getAttribute('href') || '') + (e.getAttribute('onerror')
                || '') + (e.getAttribute('onclick') || ''))
            .filter(v => v.includes('attacker') || v.startsWith('javascript:'))""") == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "app-injection.png"))
