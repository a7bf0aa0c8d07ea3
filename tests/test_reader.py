"""The answer-sentence reader: shipped weights, loading checks, and the training data it was made from."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.config import default_model_path
from rag.reader import CONFIG, DELTA_U, DELTA_V, READER_DIR, WEIGHTS, Reader, ReaderError, get_reader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


@pytest.fixture(scope="module")
def reader() -> Reader:
    return get_reader(default_model_path())


def test_shipped_weights_are_small_and_recorded():
    weights = READER_DIR / WEIGHTS
    assert weights.is_file() and weights.stat().st_size < 5_000_000  # the project's limit for a file in git
    config = json.loads((READER_DIR / CONFIG).read_text())
    assert config["pooling"] == "mean" and 0 <= config["frozen"] < 6 and len(config["base_sha256"]) == 64
    from safetensors import safe_open

    with safe_open(str(weights), "np") as f:
        names = list(f.keys())
    # every trained matrix ships as a low-rank change; vectors and the head whole
    assert sum(n.endswith(DELTA_U) for n in names) == sum(n.endswith(DELTA_V) for n in names) > 0
    assert "head.weight" in names and config["delta_rank"] > 0


def test_reader_prefers_the_sentence_that_answers(reader):
    sentences = [
        "The bridge was painted red in the spring, after a long debate in the council.",
        "The bridge opened to traffic in 1937 and cost 35 million dollars to build.",
        "Many tourists walk across the bridge at sunset to take photographs of the bay.",
    ]
    probs = reader.scores("When did the bridge open to traffic?", sentences)
    assert probs.shape == (3,) and np.all((probs >= 0) & (probs <= 1))
    assert int(np.argmax(probs)) == 1
    probs = reader.scores("How much did it cost to build the bridge?", sentences)
    assert int(np.argmax(probs)) == 1
    probs = reader.scores("What colour was the bridge painted?", sentences)
    assert int(np.argmax(probs)) == 0


def test_scores_do_not_depend_on_batching(reader):
    sentences = [f"Sentence number {i} talks about {'rivers' if i % 2 else 'mountains and lakes'}." for i in range(7)]
    one = reader.scores("Which sentence mentions rivers?", sentences, batch_size=16)
    small = reader.scores("Which sentence mentions rivers?", sentences, batch_size=2)
    np.testing.assert_allclose(one, small, atol=1e-4)
    assert reader.scores("anything?", []).shape == (0,)


def test_weights_for_another_base_model_are_refused(tmp_path):
    shutil.copy(READER_DIR / WEIGHTS, tmp_path / WEIGHTS)
    config = json.loads((READER_DIR / CONFIG).read_text())
    config["base_sha256"] = "0" * 64
    (tmp_path / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ReaderError, match="another base model"):
        Reader.load(default_model_path(), tmp_path)


def test_missing_weights_name_the_folder(tmp_path):
    with pytest.raises(ReaderError, match="cannot read the reader"):
        Reader.load(default_model_path(), tmp_path)


@pytest.mark.parametrize("rank", [64, 0])
def test_save_and_load_keep_the_trained_layers(tmp_path, rank):
    import torch

    torch.manual_seed(1)
    fresh = Reader.untrained(default_model_path(), frozen=5)
    trained = {n for n, p in fresh.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("encoder.encoder.layer.5.", "head.")) for n in trained)
    layer = fresh.model.encoder.encoder.layer[5]
    with torch.no_grad():
        fresh.model.head.weight.add_(0.5)
        # a change of rank 3: kept exactly by the rank-64 factors
        layer.intermediate.dense.weight.add_(0.05 * torch.randn(1536, 3) @ torch.randn(3, 384))
        layer.output.LayerNorm.bias.add_(0.1)
    fresh.save(tmp_path, meta={"note": "test"}, rank=rank)
    loaded = Reader.load(default_model_path(), tmp_path)
    fresh.model.eval()
    for name, p in loaded.model.named_parameters():
        np.testing.assert_allclose(p.numpy(), dict(fresh.model.named_parameters())[name].detach().numpy(),
                                   atol=2e-3, err_msg=name)
    sentences = ["Water boils at 100 degrees Celsius at sea level.", "Paris is the capital of France."]
    np.testing.assert_allclose(fresh.scores("At what temperature does water boil?", sentences),
                               loaded.scores("At what temperature does water boil?", sentences), atol=2e-3)
    config = json.loads((tmp_path / CONFIG).read_text())
    assert config["note"] == "test" and config["delta_rank"] == rank


def test_a_change_without_its_second_factor_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(READER_DIR / WEIGHTS))
    name = next(k for k in weights if k.endswith(DELTA_V))
    del weights[name]
    save_file(weights, str(tmp_path / WEIGHTS))
    shutil.copy(READER_DIR / CONFIG, tmp_path / CONFIG)
    with pytest.raises(ReaderError, match="does not fit the base model"):
        Reader.load(default_model_path(), tmp_path)


def test_training_pairs_label_the_sentence_holding_the_answer():
    from train_reader import sentence_pairs

    context = "The river is long. It flows through three countries. Its source is in the Alps."
    article = {"title": "River", "paragraphs": [
        {"context": context, "qas": [{"id": "1", "question": "How many countries does the river flow through?",
                                      "answers": [{"text": "three", "answer_start": context.index("three")}]}]},
        {"context": "Fish live in it. Boats sail on it.", "qas": []},
    ]}
    pairs = sentence_pairs([article], negatives=3, far=1)
    positives = [s for _, s, y in pairs if y == 1.0]
    negatives = [s for _, s, y in pairs if y == 0.0]
    assert positives == ["It flows through three countries."]
    assert set(negatives[:2]) == {"The river is long.", "Its source is in the Alps."}
    assert negatives[2] in {"Fish live in it.", "Boats sail on it."} and len(pairs) == 4
