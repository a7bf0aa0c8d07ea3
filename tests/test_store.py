"""The on-disk index: incremental updates, crash safety, refusing unusable indexes, no pickle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import subprocess_env

from rag.embeddings import model_info
from rag.indexer import build_index
from rag.store import MANIFEST, IndexStore, IndexStoreError

EDITED = "miit-ai-industry-meeting.md"
OTHER = "miit-ai-tour-shanghai-beijing.md"


def _vectors_by_id(store: IndexStore) -> dict[str, np.ndarray]:
    vectors = store.vectors.vectors()
    return {c.id: vectors[c.row] for c in store.chunks}


def _snapshot(index_dir: Path) -> tuple[dict, list, np.ndarray]:
    store = IndexStore.open(index_dir)
    return store.manifest, store.chunks, store.vectors.vectors()


def _index_entries(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir())


def _assert_clean(index_dir: Path) -> None:
    """Only the committed generation, the manifest and the lock file are left."""
    data = IndexStore.read_manifest(index_dir)["data"]
    assert _index_entries(index_dir) == sorted([".lock", MANIFEST, data])


# ---- incremental updates ------------------------------------------------------------------------

def test_reindexing_an_unchanged_corpus_embeds_nothing_and_keeps_the_generation(
        settings, corpus_copy, index_copy):
    before = IndexStore.read_manifest(index_copy)
    os.utime(corpus_copy / EDITED)  # a newer mtime alone is not a change
    summary = build_index([corpus_copy], index_copy, settings)
    assert (summary.embedded, summary.new, summary.updated, summary.removed) == (0, 0, 0, 0)
    assert summary.unchanged == 2 and summary.documents == 2
    assert summary.chunks == before["counts"]["chunks"]
    assert IndexStore.read_manifest(index_copy)["data"] == before["data"]


def test_editing_one_file_reembeds_only_that_documents_chunks(settings, embedder, corpus_copy, index_copy):
    old = IndexStore.open(index_copy)
    old_vectors = _vectors_by_id(old)
    path = corpus_copy / EDITED
    path.write_text(path.read_text(encoding="utf-8") + "\n\nThe ministry also opened a pilot zone for "
                    "robot bakeries in Harbin.\n", encoding="utf-8")

    summary = build_index([corpus_copy], index_copy, settings)

    store = IndexStore.open(index_copy, model=model_info(embedder))
    edited_chunks = [c for c in store.chunks if c.source == EDITED]
    assert (summary.updated, summary.unchanged, summary.new, summary.removed) == (1, 1, 0, 0)
    assert summary.embedded == len(edited_chunks) == store.documents()[EDITED]["chunks"]
    assert any("robot bakeries in Harbin" in c.text for c in edited_chunks)
    # the other document's chunks and vectors were carried over untouched
    other = [c for c in store.chunks if c.source == OTHER]
    assert [c.id for c in other] == [c.id for c in old.chunks if c.source == OTHER]
    new_vectors = _vectors_by_id(store)
    for c in other:
        assert np.array_equal(new_vectors[c.id], old_vectors[c.id])
    # and every stored row's vector belongs to that row's indexed text (chunk text + title/heading prefix)
    fresh = embedder.embed(store.indexed_texts())
    cosines = np.sum(fresh * store.vectors.vectors(), axis=1)
    assert cosines.min() > 0.999, cosines.min()


def test_deleting_a_file_removes_its_chunks_from_the_store_and_from_faiss(
        settings, embedder, corpus_copy, index_copy):
    old = IndexStore.open(index_copy)
    victim = next(c for c in old.chunks if c.source == EDITED)
    query = embedder.embed(old.indexed_texts([victim]))
    scores, rows = old.vectors.search(query, 3)
    assert old.chunks[rows[0][0]].id == victim.id and scores[0][0] > 0.999  # found before deletion

    (corpus_copy / EDITED).unlink()
    # the index was built from corpus/, this is a copy of it: dropping a document needs `replace`
    summary = build_index([corpus_copy], index_copy, settings, replace=True)
    assert (summary.removed, summary.unchanged, summary.embedded, summary.documents) == (1, 1, 0, 1)

    store = IndexStore.open(index_copy)
    assert EDITED not in store.documents()
    assert not [c for c in store.chunks if c.source == EDITED]
    assert store.vectors.size == len(store.chunks) == store.manifest["counts"]["chunks"]
    with pytest.raises(KeyError):
        store.document(EDITED)
    scores, rows = store.vectors.search(query, 3)
    assert all(store.chunks[r].source == OTHER for r in rows[0] if r >= 0)
    assert scores[0][0] < 0.99, "the deleted chunk's vector is still in FAISS"


def test_adding_a_file_embeds_only_the_new_document(settings, corpus_copy, index_copy):
    (corpus_copy / "sub").mkdir()
    (corpus_copy / "sub" / "owls.txt").write_text("Owls\n\nBarn owls hunt voles at night over rough "
                                                  "grassland.", encoding="utf-8")
    summary = build_index([corpus_copy], index_copy, settings)
    assert (summary.new, summary.unchanged, summary.updated, summary.removed) == (1, 2, 0, 0)
    store = IndexStore.open(index_copy)
    assert summary.embedded == len([c for c in store.chunks if c.source == "sub/owls.txt"]) == 1


def test_changing_chunk_settings_reembeds_every_document(settings, corpus_copy, index_copy):
    summary = build_index([corpus_copy], index_copy, settings.replace(chunk_tokens=96, chunk_overlap=16))
    store = IndexStore.open(index_copy)
    assert summary.embedded == summary.chunks == len(store.chunks)
    assert store.manifest["chunking"]["chunk_tokens"] == 96
    assert max(c.n_tokens for c in store.chunks) <= 96


def test_rebuild_twice_in_one_process_within_a_second_works(settings, tmp_path, monkeypatch):
    """A rebuild restarts at generation 1; the new folder must not collide with the live one."""
    import rag.store

    monkeypatch.setattr(rag.store.time, "time", lambda: 1_700_000_000.0)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Hedgehogs hibernate from November to March.", encoding="utf-8")
    build_index([docs], tmp_path / "idx", settings)
    summary = build_index([docs], tmp_path / "idx", settings, rebuild=True)
    assert summary.embedded == 1
    assert IndexStore.open(tmp_path / "idx").chunks[0].text.startswith("Hedgehogs")
    _assert_clean(tmp_path / "idx")


# ---- crash safety -------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_during_embedding_leaves_the_previous_index_intact(tmp_path, index_copy):
    before = _snapshot(index_copy)
    big = tmp_path / "big"
    big.mkdir()
    # enough text that embedding it takes tens of seconds: the kill must land mid-embedding, not after
    for i in range(1500):
        (big / f"note-{i:04d}.txt").write_text(" ".join(
            f"Field note {i}.{j}: observer {(i + j) % 17} counted {(i * j) % 41} swifts over marsh {j % 11} "
            f"at dawn, wind {(i + 3 * j) % 9} knots." for j in range(8)), encoding="utf-8")
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "index", str(big), "--index-dir", str(index_copy),
                                 "--progress", "--replace"], cwd=tmp_path, env=subprocess_env(),
                                stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 180
            while b"Batches" not in stderr_path.read_bytes() and proc.poll() is None:
                assert time.monotonic() < deadline, "the build never started embedding"
                time.sleep(0.1)
            time.sleep(0.5)
            assert proc.poll() is None, f"the build ended before it could be killed: {stderr_path.read_bytes()!r}"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    manifest, chunks, vectors = _snapshot(index_copy)
    assert manifest == before[0]
    assert chunks == before[1]
    assert np.array_equal(vectors, before[2])


CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from rag.store import IndexStore

    index_dir, point = Path(sys.argv[1]), sys.argv[2]
    store = IndexStore.open(index_dir)
    docs = store.all_documents()
    doc = max(docs, key=lambda d: store.manifest["documents"][d.source]["chunks"])  # keep the biggest
    chunks = [c for c in store.chunks if c.doc_id == doc.doc_id]
    vectors = store.vectors.vectors()[[c.row for c in chunks]]
    manifest = dict(store.manifest)
    manifest["documents"] = {doc.source: manifest["documents"][doc.source]}

    real_replace = os.replace

    def replace(src, dst):
        committing = Path(dst).name == "manifest.json"
        if point == "before-generation-rename" and Path(src).name.startswith(".gen-"):
            os.kill(os.getpid(), signal.SIGKILL)
        if point == "before-manifest-replace" and committing:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if point == "after-manifest-replace" and committing:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    IndexStore.write(index_dir, manifest, [doc], chunks, vectors)
    print("write finished without being killed")
""")


@pytest.mark.parametrize("point", ["before-generation-rename", "before-manifest-replace", "after-manifest-replace"])
@pytest.mark.slow
def test_kill_9_at_each_step_of_a_save_leaves_a_valid_index_and_next_build_cleans_up(
        settings, tmp_path, corpus_copy, index_copy, point):
    before = _snapshot(index_copy)
    result = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(index_copy), point], cwd=tmp_path,
                            env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr[-2000:]
    assert len(_index_entries(index_copy)) > 3  # the crash left something behind

    manifest, chunks, vectors = _snapshot(index_copy)
    if point == "after-manifest-replace":  # committed: the new, smaller index is complete
        assert manifest["generation"] == before[0]["generation"] + 1
        assert len(manifest["documents"]) == 1
        assert [(c.id, c.text) for c in chunks] == [(c.id, c.text) for c in before[1]
                                                    if c.source in manifest["documents"]]
        assert len(chunks) == len(vectors) == manifest["counts"]["chunks"] > 0
    else:  # not committed: exactly the previous index
        assert manifest == before[0]
        assert chunks == before[1]
        assert np.array_equal(vectors, before[2])

    path = corpus_copy / EDITED  # the smaller document: dropped by the committed crash, edited otherwise
    path.write_text(path.read_text(encoding="utf-8") + "\n\nA closing remark.\n", encoding="utf-8")
    summary = build_index([corpus_copy], index_copy, settings)
    assert summary.embedded > 0
    _assert_clean(index_copy)
    assert len(IndexStore.open(index_copy).documents()) == 2


def test_stale_generation_and_temp_files_are_removed_by_the_next_build(settings, corpus_copy, index_copy):
    (index_copy / ".gen-000009-1-1.tmp").mkdir()
    (index_copy / ".gen-000009-1-1.tmp" / "vectors.faiss").write_bytes(b"partial")
    (index_copy / "gen-000000-1-1").mkdir()
    (index_copy / f".{MANIFEST}.12345.tmp").write_text("{", encoding="utf-8")
    (corpus_copy / "extra.txt").write_text("Extra\n\nSnow leopards live in the mountains of Asia.",
                                           encoding="utf-8")
    build_index([corpus_copy], index_copy, settings)
    _assert_clean(index_copy)


# ---- unusable indexes ---------------------------------------------------------------------------

def _edit_manifest(index_dir: Path, **model_changes) -> None:
    path = index_dir / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["model"].update(model_changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_index_built_with_another_model_fingerprint_is_refused_with_rebuild_hint(
        settings, embedder, corpus_copy, index_copy):
    _edit_manifest(index_copy, fingerprint="0123456789abcdef", name="some-other-model")
    with pytest.raises(IndexStoreError, match="--rebuild") as info:
        IndexStore.open(index_copy, model=model_info(embedder))
    assert "some-other-model" in str(info.value)
    with pytest.raises(IndexStoreError, match="--rebuild"):
        build_index([corpus_copy], index_copy, settings)

    summary = build_index([corpus_copy], index_copy, settings, rebuild=True)
    store = IndexStore.open(index_copy, model=model_info(embedder))
    assert summary.embedded == len(store.chunks) > 0
    assert store.manifest["model"]["fingerprint"] == embedder.fingerprint


def test_index_with_another_dimension_is_refused_with_rebuild_hint(settings, embedder, corpus_copy, index_copy):
    _edit_manifest(index_copy, dimension=768)
    with pytest.raises(IndexStoreError, match="dimension.*--rebuild"):
        IndexStore.open(index_copy)
    with pytest.raises(IndexStoreError, match="--rebuild"):
        IndexStore.open(index_copy, model=model_info(embedder))
    with pytest.raises(IndexStoreError, match="--rebuild"):
        build_index([corpus_copy], index_copy, settings)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _data(index_dir: Path) -> Path:
    return index_dir / IndexStore.read_manifest(index_dir)["data"]


CORRUPTIONS = {
    "truncated-vectors": lambda d: _truncate(_data(d) / "vectors.faiss"),
    "truncated-chunk-table": lambda d: _truncate(_data(d) / "chunks.sqlite"),
    "missing-bm25-file": lambda d: (_data(d) / "bm25" / "vocab.index.json").unlink(),
    "corrupt-manifest": lambda d: (d / MANIFEST).write_bytes(b'{"format": 1, "generation": '),
    "manifest-not-json": lambda d: (d / MANIFEST).write_bytes(b"\x00\xff garbage"),
    "future-format": lambda d: (d / MANIFEST).write_text(json.dumps({"format": 99}), encoding="utf-8"),
}


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_damaged_index_is_refused_and_rebuild_fixes_it(settings, embedder, corpus_copy, index_copy, damage):
    CORRUPTIONS[damage](index_copy)
    with pytest.raises(IndexStoreError, match="--rebuild"):
        IndexStore.open(index_copy)
    with pytest.raises(IndexStoreError, match="--rebuild"):
        build_index([corpus_copy], index_copy, settings)

    build_index([corpus_copy], index_copy, settings, rebuild=True)
    store = IndexStore.open(index_copy, model=model_info(embedder))
    assert sorted(store.documents()) == [EDITED, OTHER]
    assert store.vectors.size == len(store.chunks) > 0
    _assert_clean(index_copy)


@pytest.mark.slow
def test_rag_index_cli_refuses_a_corrupt_index_then_rebuild_flag_fixes_it(settings, embedder, tmp_path, run_rag):
    docs, index_dir = tmp_path / "small", tmp_path / "small-index"
    docs.mkdir()
    (docs / "tea.txt").write_text("Green tea is steamed or pan-fired soon after picking.", encoding="utf-8")
    build_index([docs], index_dir, settings)
    _truncate(_data(index_dir) / "vectors.faiss")
    refused = run_rag("index", docs, "--index-dir", index_dir, "--json")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("rag index: error:") and "--rebuild" in refused.stderr

    rebuilt = run_rag("index", docs, "--index-dir", index_dir, "--json", "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    summary = json.loads(rebuilt.stdout)
    store = IndexStore.open(index_dir, model=model_info(embedder))
    assert summary["embedded"] == summary["chunks"] == len(store.chunks) == 1
    _assert_clean(index_dir)


def test_opening_a_folder_without_an_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexStoreError, match="rag index"):
        IndexStore.open(tmp_path)


# ---- no pickle ----------------------------------------------------------------------------------

def test_index_folder_contains_no_pickle(corpus_index):
    index_dir = corpus_index[0]
    files = [p for p in index_dir.rglob("*") if p.is_file()]
    assert any(p.name == "vectors.faiss" for p in files) and any(p.suffix == ".npy" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not data.startswith(b"\x80"), f"{path.name} looks like a pickle"
        assert path.suffix not in (".pkl", ".pickle", ".joblib")
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)  # raises on object arrays, which are pickles inside
