"""The span reader: shipped weights, the spans it finds (char offsets into the passage), its "no answer"
score, and the training examples it was made from."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rag.config import default_model_path
from rag.reader import DELTA_U, DELTA_V, READER_DIR, get_reader
from rag.span_reader import SPAN_CONFIG, SPAN_WEIGHTS, SpanReader, _snap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

PASSAGE = ("The Harbour Bridge was designed by the engineer Margaret Olsen. Construction began in 1931 and the "
           "bridge opened to traffic in 1937. It cost 35 million dollars to build, twice the first estimate.")
OTHER = "Many tourists walk along the old harbour wall at sunset to take photographs of the fishing boats."


@pytest.fixture(scope="module")
def reader() -> SpanReader:
    return get_reader(default_model_path(), kind=SpanReader)


def test_shipped_weights_are_small_and_recorded():
    weights = READER_DIR / SPAN_WEIGHTS
    assert weights.is_file() and weights.stat().st_size < 5_000_000  # the project's limit for a file in git
    config = json.loads((READER_DIR / SPAN_CONFIG).read_text())
    assert config["trained_on"].startswith("SQuAD v1.1 dev, even-numbered")
    assert config["examples"] > 5000 and 0 < config["negatives"] < 1  # the whole training set, not a smoke run
    assert len(config["base_sha256"]) == 64 and config["max_length"] == 384
    from safetensors import safe_open

    with safe_open(str(weights), "np") as f:
        names = list(f.keys())
    assert sum(n.endswith(DELTA_U) for n in names) == sum(n.endswith(DELTA_V) for n in names) > 0
    assert "head.weight" in names and "head.bias" in names


@pytest.mark.parametrize(("question", "answer"), [
    ("Who designed the Harbour Bridge?", "Margaret Olsen"),
    ("When did the bridge open to traffic?", "1937"),
    ("When did construction begin?", "1931"),
    ("How much did the bridge cost to build?", "35 million dollars"),
])
def test_reader_finds_the_answer_span_with_offsets_into_the_passage(reader, question, answer):
    reading = reader.read(question, [PASSAGE])[0]
    best = reading.best
    assert answer in best.text and len(best.text) <= len(answer) + 12, (question, best.text)
    assert PASSAGE[best.start:best.end] == best.text
    assert reading.margin > 0  # it prefers the span to "no answer"


def test_no_answer_scores_higher_on_a_passage_without_the_answer(reader):
    question = "Who designed the Harbour Bridge?"
    with_answer, without = reader.read(question, [PASSAGE, OTHER])
    assert without.margin < with_answer.margin - 2
    assert without.margin < 0  # the harbour wall passage is on-topic but does not say


def test_ranges_report_start_mass_and_best_spans_per_sentence(reader):
    first = PASSAGE.index("Construction")
    second = PASSAGE.index("It cost")
    ranges = [(0, first - 1), (first, second - 1), (second, len(PASSAGE))]
    reading = reader.read("When did the bridge open to traffic?", [PASSAGE], [ranges])[0]
    assert len(reading.mass) == len(reading.spans) == 3
    assert max(range(3), key=lambda i: reading.mass[i]) == 1  # the answer starts in the second sentence
    assert 0.5 < sum(reading.mass) <= 1.0 + 1e-6
    for (s, e), spans in zip(ranges, reading.spans, strict=True):
        assert spans and all(s <= sp.start < sp.end <= e and PASSAGE[sp.start:sp.end] == sp.text for sp in spans)
        assert [sp.score for sp in spans] == sorted((sp.score for sp in spans), reverse=True)


def test_reading_does_not_depend_on_batching(reader):
    passages = [PASSAGE, OTHER, PASSAGE.replace("1937", "1938")]
    one = reader.read("When did the bridge open?", passages, batch_size=8)
    small = reader.read("When did the bridge open?", passages, batch_size=1)
    for a, b in zip(one, small, strict=True):
        assert a.best.text == b.best.text and a.margin == pytest.approx(b.margin, abs=1e-3)
    assert one[2].best.text == "1938"


def test_snap_widens_to_whole_words_and_drops_clause_punctuation():
    text = "The minister, Jin Zhuanglong, chaired it in Beijing."
    s = text.index("Zhuang")
    assert text[slice(*_snap(text, s, s + 3))] == "Zhuanglong"  # a word-piece widened to its word
    assert text[slice(*_snap(text, s - 4, s + 11))] == "Jin Zhuanglong"  # the comma after it dropped
    e = text.index("Beijing.") + len("Beijing.")
    assert text[slice(*_snap(text, text.index("Beijing"), e))] == "Beijing"
    abbreviated = "It was built in the U.S. by them."
    s = abbreviated.index("U.S.")
    assert abbreviated[slice(*_snap(abbreviated, s, s + 4))] == "U.S."  # a period inside keeps the last one


def test_training_examples_pair_each_question_with_its_paragraph_and_an_on_topic_one_without_it():
    from train_span_reader import examples

    article = {"title": "Bridge", "paragraphs": [
        {"context": PASSAGE, "qas": [{"id": "1", "question": "When did the bridge open to traffic?",
                                      "answers": [{"text": "1937", "answer_start": PASSAGE.index("1937")}]}]},
        {"context": "The bridge is painted grey and is repainted every ten years.", "qas": []},
        {"context": "The bridge opened to traffic in 1937 after six years of work.", "qas": []},
    ]}
    data = examples([article], negatives=1.0)
    positive = [d for d in data if d[2] >= 0]
    negative = [d for d in data if d[2] < 0]
    assert positive == [("When did the bridge open to traffic?", PASSAGE, PASSAGE.index("1937"), "1937")]
    # the no-answer paragraph is the most similar one that does not hold the answer
    assert [d[1] for d in negative] == ["The bridge is painted grey and is repainted every ten years."]
    assert negative[0][3] == ""
