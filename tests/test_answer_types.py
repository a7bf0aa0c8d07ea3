"""What kind of answer a question asks for, whether a sentence holds one, and word-by-word alignment."""

from __future__ import annotations

import numpy as np
import pytest

from rag import Assistant
from rag.answering import alignment, answer_type, has_type


@pytest.mark.parametrize("question, kind", [
    ("On which day of the week did the ministry publish its report?", "weekday"),
    ("On what exact date did the minister chair the meeting?", "calendar date"),
    ("In what year was Nikola Tesla born?", "year"),
    ("When was the conference held?", "date"),
    ("How much money is in the national investment funds?", "money"),
    ("How much did the earthquake cost?", "money"),
    ("How many people work at the laboratory?", "count"),
    ("How long has free movement been central to Europe?", "number"),
    ("Who chaired the meeting?", "name"),
    ("What is the mission of the tour?", None),
])
def test_answer_type(question, kind):
    assert answer_type(question) == kind


@pytest.mark.parametrize("question, text, holds", [
    ("On which day of the week was it published?", "It was published on Wednesday.", True),
    ("On what exact date did he chair the meeting?", "He chaired it, the ministry said on Wednesday.", False),
    ("On what date was series two first shown?", "It was first shown on 9 October 2006.", True),
    ("In which year was the gallery closed?", "The gallery closed in 2010, after a fire.", True),
    ("In which year was the gallery closed?", "The gallery closed after a fire.", False),
    ("How much money is in the funds?", "The funds, set up in 2025, back start-ups.", False),
    ("How much money is in the funds?", "The funds hold RMB 30 million.", True),
    ("How many people work at the lab?", "The lab was founded in 2019.", False),
    ("How many people work at the lab?", "The lab employs 300 people.", True),
    ("How many people work at the lab?", "The lab employs thousands of people.", True),
    ("How long has trade been central to Europe?", "Trade has been central since 1957.", True),
    ("How many of the 16 measures target equipment?", "The plan has 16 measures.", False),  # restates the question
    ("Who chaired the meeting?", "the meeting was chaired by the minister.", False),
    ("Who chaired the meeting?", "Jin Zhuanglong chaired the meeting.", True),
    ("What is the mission?", "anything at all", True),
    # numbers in link targets, URLs and addresses are not answers
    ("How many votes did Emily Morehouse receive?", "Nominees: - [Barry Warsaw](https://discuss.example/t/71732/)",
     False),
    ("How many votes did Emily Morehouse receive?", "See https://votes.example/2025/52 for details.", False),
    ("How many votes did Emily Morehouse receive?", "| Emily Morehouse | 52 |", True),
])
def test_has_type(question, text, holds):
    assert has_type(text, answer_type(question), question) is holds


def test_alignment_is_mean_of_best_matches():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    s = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    assert alignment(q, s) == pytest.approx((1.0 + 0.8) / 2)
    assert alignment(q, s, np.array([3.0, 1.0])) == pytest.approx((3 * 1.0 + 1 * 0.8) / 4)
    assert alignment(q, np.zeros((0, 2), dtype=np.float32)) == 0.0


@pytest.fixture(scope="module")
def assistant(corpus_index, settings) -> Assistant:
    return Assistant.load(corpus_index[0], settings)


def test_alignment_with_the_real_model_prefers_the_sentence_that_answers(assistant: Assistant):
    """A paraphrase that covers every part of the question aligns better than one sharing a topic word."""
    extractive = assistant.extractive
    q, weights = extractive._question_tokens("Which chipmaker did the minister visit in the capital?")
    assert len(q) == len(weights) and (weights > 0).all()
    _, tokens, pieces = assistant.embedder.embed_tokens([
        "In Beijing, the minister called on the AI processor maker Cambricon.",
        "Chips are getting faster every year, analysts say.",
    ])
    assert pieces[0][:2] == ["in", "beijing"]
    assert alignment(q, tokens[0], weights) > alignment(q, tokens[1], weights)
