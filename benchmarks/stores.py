"""The same questions on both stores: how many answers or citations differ between FAISS and Milvus Lite.

    .venv/bin/python benchmarks/stores.py --qa eval/qa2.jsonl --corpus eval/corpus2

Builds the corpus into a FAISS index and a Milvus Lite index (both embedded with the real model), answers
every question of the set on each, and prints one JSON object: the questions whose answer or citations
differ, and both stores' eval metrics. (`tests/test_backends.py` checks the same for eval/qa.jsonl.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = ("hit@5", "answer_recall", "citation_precision", "unanswerable_abstained", "answerable_wrongly_abstained")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, required=True, help="a question set (jsonl, the eval format)")
    ap.add_argument("--corpus", type=Path, required=True, help="the folder it asks about")
    args = ap.parse_args()
    if not args.qa.is_file() or not args.corpus.is_dir():
        sys.exit(f"stores.py: error: need an existing --qa file and --corpus folder, got {args.qa} and {args.corpus}")

    from rag import Assistant
    from rag.config import Settings
    from rag.evalsuite import evaluate_assistant, read_qa
    from rag.indexer import build_index

    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="rag-stores-"))
    try:
        items = read_qa(args.qa)
        results = {}
        for store in ("faiss", "milvus"):
            cfg = settings.replace(store=store)
            build_index([args.corpus], work / store, cfg)
            results[store] = evaluate_assistant(Assistant.load(work / store, settings), items, top_k=settings.top_k)
        differ = [a["question"] for a, b in zip(results["faiss"].per_question, results["milvus"].per_question,
                                                strict=True)
                  if (a["answer"], a["citations"]) != (b["answer"], b["citations"])]
        print(json.dumps({"questions": len(items), "differ": len(differ), "which": differ,
                          **{store: {m: round(r.overall[m], 4) for m in METRICS} for store, r in results.items()}}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
