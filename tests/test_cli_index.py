"""`rag index` as a user runs it: a real child process, real model, real index on disk."""

from __future__ import annotations

import json

import pytest

from rag.store import IndexStore

SUMMARY_KEYS = {"files", "chunks", "embedded", "new", "updated", "removed", "unchanged", "skipped", "seconds"}


def _small_folder(root):
    root.mkdir()
    (root / "kites.txt").write_text("Kites\n\nA box kite flies steadily in strong wind.", encoding="utf-8")
    (root / "notes").mkdir()
    (root / "notes" / "tides.md").write_text("---\ntitle: Tides\n---\nSpring tides follow a new moon.",
                                             encoding="utf-8")
    return root


def _json_line(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    summary = json.loads(lines[0])
    assert isinstance(summary, dict)
    return summary


def _assert_one_line_error(result) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rag index: error: ")


def test_index_json_prints_one_summary_object_and_second_run_embeds_nothing(tmp_path, run_rag):
    docs = _small_folder(tmp_path / "docs")
    index_dir = tmp_path / "index"

    first = run_rag("index", docs, "--index-dir", index_dir, "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    summary = _json_line(first.stdout)
    assert SUMMARY_KEYS <= summary.keys()
    assert (summary["files"], summary["new"], summary["unchanged"], summary["removed"]) == (2, 2, 0, 0)
    assert summary["embedded"] == summary["chunks"] == 2
    assert summary["skipped"] == {}
    assert summary["seconds"] > 0
    store = IndexStore.open(index_dir)
    assert sorted(store.documents()) == ["kites.txt", "notes/tides.md"]

    second = run_rag("index", docs, "--index-dir", index_dir, "--json")
    assert second.returncode == 0, second.stderr[-2000:]
    again = _json_line(second.stdout)
    assert (again["embedded"], again["new"], again["updated"], again["unchanged"]) == (0, 0, 0, 2)
    assert again["chunks"] == 2


def test_index_skips_one_bad_file_with_its_reason_and_exits_zero(tmp_path, run_rag):
    docs = _small_folder(tmp_path / "docs")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a real pdf")
    (docs / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 16)
    index_dir = tmp_path / "index"

    result = run_rag("index", docs, "--index-dir", index_dir, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = _json_line(result.stdout)
    assert list(summary["skipped"]) == ["broken.pdf"]
    assert "corrupt or unreadable PDF" in summary["skipped"]["broken.pdf"]
    assert summary["unsupported"] == ["photo.jpg"]
    assert summary["files"] == 4 and summary["new"] == 2
    assert sorted(IndexStore.open(index_dir).documents()) == ["kites.txt", "notes/tides.md"]

    human = run_rag("index", docs, "--index-dir", index_dir)
    assert human.returncode == 0, human.stderr[-2000:]
    assert "Indexed 2 documents" in human.stdout
    assert "skipped broken.pdf: corrupt or unreadable PDF" in human.stdout
    assert "photo.jpg" in human.stdout


def test_index_of_a_folder_with_only_bad_files_fails_with_one_line_and_writes_nothing(tmp_path, run_rag):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.txt").write_bytes(bytes(range(256)))
    (docs / "data.csv").write_text("a,b\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    result = run_rag("index", docs, "--index-dir", index_dir, "--json")
    _assert_one_line_error(result)
    assert result.returncode == 2
    assert "no readable documents" in result.stderr
    assert "empty file" in result.stderr and "binary content" in result.stderr
    assert not index_dir.exists()


@pytest.mark.parametrize("case", ["missing-path", "empty-folder"])
def test_index_of_a_missing_path_or_empty_folder_fails_with_one_line(tmp_path, run_rag, case):
    target = tmp_path / "nowhere"
    if case == "empty-folder":
        target.mkdir()
    index_dir = tmp_path / "index"
    result = run_rag("index", target, "--index-dir", index_dir)
    _assert_one_line_error(result)
    assert ("no such file or folder" if case == "missing-path" else "no readable documents") in result.stderr
    assert not index_dir.exists()
