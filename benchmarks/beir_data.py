"""Shared helpers for the BEIR-format benchmarks: read the data, write one file per document, index it."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "benchmarks" / "scifact"


def read_beir(folder: Path, split: str = "test"):
    """(corpus {id: (title, text)}, queries {id: text}, qrels {qid: {doc: grade}}) of one split."""
    corpus = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            corpus[str(row["_id"])] = (row.get("title") or "", row.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    queries = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return corpus, queries, qrels


def doc_text(title: str, text: str) -> str:
    """How a BEIR document is indexed: title, blank line, text."""
    return f"{title}\n\n{text}" if title else text


def materialise(corpus: dict, folder: Path) -> Path:
    """One .txt file per document (named by its id), written once and reused."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".complete"
    if marker.is_file() and marker.read_text() == str(len(corpus)):
        return folder
    for doc_id, (title, text) in corpus.items():
        (folder / f"{doc_id}.txt").write_text(doc_text(title, text) or "(empty)", encoding="utf-8")
    marker.write_text(str(len(corpus)))
    return folder


def cache_dir(name: str) -> Path:
    path = Path(os.environ.get("RAG_BENCH_CACHE", REPO / ".cache" / "bench")) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def doc_of(source: str) -> str:
    """The BEIR doc id of an indexed file name."""
    return source.rsplit("/", 1)[-1].removesuffix(".txt")
