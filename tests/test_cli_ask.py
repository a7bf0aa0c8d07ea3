"""`rag ask` as a user runs it: a child process over a real index, JSON and human output, errors, interactive."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import subprocess_env

from rag import Assistant
from rag.store import IndexStore

TOUR_Q = "Which minister toured AI hotspots in Shanghai and Beijing?"
SHANGHAI_Q = "What was the focus of the visit in Shanghai?"
BANANA_Q = "What is the price of bananas at the market?"


INTERACTIVE_INPUT = f"Who chaired the meeting?\n{SHANGHAI_Q}\nAnd what about Beijing?\n\n"


@pytest.fixture(scope="module")
def assistant(corpus_index, settings) -> Assistant:
    return Assistant.load(corpus_index[0], settings)


@pytest.fixture(scope="module")
def answered(corpus_index, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """The four runs that load the model, started together (each child loads it once, ~3-5 s)."""
    cwd = tmp_path_factory.mktemp("cli-ask")
    index = str(corpus_index[0])
    runs = {
        "json": (["ask", SHANGHAI_Q, "--index-dir", index, "--json"], None),
        "human": (["ask", TOUR_Q, "--index-dir", index], None),
        "banana": (["ask", BANANA_Q, "--index-dir", index, "--json"], None),
        "interactive": (["ask", "--index-dir", index], INTERACTIVE_INPUT),
    }
    procs = {name: (subprocess.Popen([sys.executable, "-m", "rag.cli", *args], cwd=cwd, env=subprocess_env(),
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), stdin)
             for name, (args, stdin) in runs.items()}
    results = {}
    for name, (proc, stdin) in procs.items():
        out, err = proc.communicate(stdin, timeout=300)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def assert_schema(d: dict) -> None:
    assert set(d) == {"question", "answer", "short_answer", "abstained", "citations", "passages"}
    for c in d["citations"]:
        assert set(c) == {"n", "source", "title", "start", "end", "quote", "score"}
    for p in d["passages"]:
        assert set(p) == {"rank", "source", "title", "start", "end", "text", "score"}


def assert_failed_cleanly(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rag ask: error: ")
    for w in words:
        assert w in lines[0]


def test_ask_json_prints_exactly_one_answer_object_with_exact_citations(answered, corpus_index, assistant):
    result = answered["json"]
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert result.stdout.count("\n") == 1
    assert_schema(d)
    assert d["question"] == SHANGHAI_Q
    assert d["abstained"] is False
    assert d["citations"] and d["passages"]
    store = IndexStore.open(corpus_index[0])
    for c in d["citations"]:
        assert store.document(c["source"]).text[c["start"]:c["end"]] == c["quote"]
        assert f"[{c['n']}]" in d["answer"]
    assert any("Shanghai" in c["quote"] for c in d["citations"])
    assert d == assistant.answer(SHANGHAI_Q).to_dict()  # the CLI answers exactly as the library


def test_ask_prints_the_answer_then_its_sources_with_file_names_and_quotes(answered, assistant):
    result = answered["human"]
    assert result.returncode == 0, result.stderr
    expected = assistant.answer(TOUR_Q)
    assert not expected.abstained
    lines = result.stdout.splitlines()
    assert lines[0] == expected.text
    assert "Li Lecheng" in lines[0]
    assert expected.short_answer is not None and "Li Lecheng" in expected.short_answer.text
    assert f"Short answer: {expected.short_answer.text} [{expected.short_answer.n}]" in lines
    sources = lines.index("Sources:")
    assert sources > 0
    rest = "\n".join(lines[sources + 1:])
    for c in expected.citations:
        assert f"[{c.n}] {c.title} — {c.source}, chars {c.start}-{c.end}" in rest
        assert f'"{" ".join(c.quote.split())[:200]}' in rest
    assert "miit-ai-tour-shanghai-beijing.md" in rest


def test_off_topic_question_gives_abstained_true(answered):
    result = answered["banana"]
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)
    assert_schema(d)
    assert d["abstained"] is True
    assert d["answer"] == "The corpus does not say."
    assert d["citations"] == [] and d["passages"]


@pytest.mark.parametrize("question, words", [("", ["empty"]), ("   ", ["empty"]),
                                             ("x" * 10_000, ["10000", "2000"])])
def test_bad_question_fails_with_a_one_line_error(run_rag, corpus_index, question, words):
    assert_failed_cleanly(run_rag("ask", question, "--index-dir", corpus_index[0]), *words)


def test_missing_index_dir_fails_with_a_one_line_error_saying_how_to_build_one(run_rag, tmp_path):
    assert_failed_cleanly(run_rag("ask", TOUR_Q, "--index-dir", tmp_path / "no-index", "--json"),
                          "no index", "rag index")


def test_index_built_with_another_model_fails_with_a_one_line_error(run_rag, index_copy):
    manifest_path = index_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["model"]["fingerprint"] = "0123456789abcdef"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert_failed_cleanly(run_rag("ask", TOUR_Q, "--index-dir", index_copy), "0123456789abcdef", "--rebuild")


def test_interactive_mode_answers_each_line_and_resolves_follow_ups(answered, assistant):
    result = answered["interactive"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    first = assistant.answer("Who chaired the meeting?")
    second = assistant.answer(SHANGHAI_Q)
    history = [{"role": "user", "content": "Who chaired the meeting?"}, {"role": "assistant", "content": first.text},
               {"role": "user", "content": SHANGHAI_Q}, {"role": "assistant", "content": second.text}]
    third = assistant.answer("And what about Beijing?", history)
    assert "Beijing" in third.query and not third.abstained
    positions = [out.find(a.text) for a in (first, second, third)]
    assert all(p >= 0 for p in positions), out
    assert positions == sorted(positions)
