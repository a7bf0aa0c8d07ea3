"""SQuAD v1.1 dev as an open-corpus benchmark: find the gold paragraph, then answer from it.

    .venv/bin/python benchmarks/squad.py [../shared/benchmarks/squad-v1.1/dev-v1.1.json] [--limit N]

Each of the 2,067 dev paragraphs becomes one .txt document (named <article>-<paragraph number>,
written once under .cache/bench/squad-v1.1-dev-docs/) and is indexed with the product defaults.
Then the questions (all 10,570, or the first N in file order with --limit N) are asked:

* retrieval: hit@1 / hit@5 / MRR@10 of the gold paragraph for bm25, dense and hybrid (the default),
  all from ONE embedding of the question per query; chunk hits are folded to paragraphs by first
  occurrence;
* answers: `Assistant.answer(q)` in the default mode (hybrid + extractive answerer; it embeds the
  question again). Scored with `rag.evaluation`: answer-string recall (a gold answer occurs in the
  answer text), SQuAD token F1 and exact match, against all gold answers, the `[n]` citation markers
  removed first. An abstention scores 0. Also: abstention rate, and how often the first citation is
  in the gold paragraph.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_data import cache_dir, doc_of, materialise
from bench_common import add_set_option, apply_sets, cpu_count, load, markdown_table, metric_rows, set_threads
from train_reader import SQUAD_DEV, held_out_titles

from rag.assistant import Assistant
from rag.config import Settings
from rag.evaluation import answer_recall, exact_match, mean, token_f1
from rag.indexer import build_index
from rag.store import IndexStore

MODES = {"bm25": "bm25", "dense": "dense", "hybrid (default)": "hybrid"}
_MARKER = re.compile(r"\s*\[\d+\]")


def _slug(title: str) -> str:
    return re.sub(r"[^\w-]+", "_", title).strip("_") or "article"


def read_squad(path: Path):
    """({paragraph id: (title, text)}, [(question id, question, paragraph id, [gold answers])])."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paragraphs: dict[str, tuple[str, str]] = {}
    by_text: dict[str, str] = {}
    questions = []
    for article in data:
        slug = _slug(article["title"])
        for n, para in enumerate(article["paragraphs"]):
            pid = by_text.setdefault(para["context"], f"{slug}-{n:03d}")
            paragraphs.setdefault(pid, ("", para["context"]))
            for qa in para["qas"]:
                questions.append((qa["id"], qa["question"], pid, [a["text"] for a in qa["answers"]]))
    return paragraphs, questions


SHORT_MARGINS = [-99.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]


def squad_index(paragraphs: dict, settings: Settings, progress: bool = False):
    """(index folder, BuildSummary): the paragraphs as .txt files, indexed (incrementally) under
    .cache/bench/ with these settings' chunk size."""
    docs = materialise(paragraphs, cache_dir("squad-v1.1-dev-docs"))
    index_dir = cache_dir(f"squad-v1.1-dev-{settings.chunk_tokens}" + ("" if settings.chunk_context else "-noctx"))
    return index_dir, build_index([docs], index_dir, settings, progress=progress)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", type=Path, default=SQUAD_DEV)
    ap.add_argument("--limit", type=int, default=None, help="ask only the first N questions")
    ap.add_argument("--held-out", action="store_true",
                    help="ask only questions of the articles the reader was not trained on (see train_reader.py)")
    ap.add_argument("--every", type=int, default=1, help="ask every K-th question only (a spread-out sample)")
    ap.add_argument("--no-reader", action="store_true", help="answer without the reader (rag/reader.py)")
    ap.add_argument("--no-span-reader", action="store_true", help="answer without the span reader")
    add_set_option(ap)
    ap.add_argument("--depth", type=int, default=30, help="chunks retrieved per mode before folding")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's own choice, one per core)")
    ap.add_argument("--chunk-tokens", type=int, default=None, help="override the default chunk size (own index)")
    ap.add_argument("--dense-weight", type=float, default=None, help="override the convex fusion weight")
    ap.add_argument("--no-chunk-context", action="store_true",
                    help="index chunks without their title/heading prefix (rag/context.py; own cached index)")
    ap.add_argument("--retrieval-only", action="store_true", help="skip `Assistant.answer`: retrieval metrics only")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    paragraphs, questions = read_squad(args.dataset)
    if args.held_out:
        held = {_slug(title) for title in held_out_titles(args.dataset)}
        questions = [q for q in questions if q[2].rsplit("-", 1)[0] in held]
    questions = questions[:: args.every][: args.limit]
    settings = Settings().replace(chunk_tokens=args.chunk_tokens, dense_weight=args.dense_weight,
                                  reader=False if args.no_reader else None,
                                  span_reader=False if args.no_span_reader else None,
                                  chunk_context=False if args.no_chunk_context else None)
    settings = apply_sets(settings, args.set, ap)
    t0 = time.perf_counter()
    index_dir, summary = squad_index(paragraphs, settings, progress=sys.stderr.isatty())
    print(f"index: {summary.documents} paragraphs, {summary.chunks} chunks, embedded {summary.embedded} "
          f"in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    assistant = Assistant(IndexStore.open(index_dir), settings)
    retriever = assistant.retriever

    load_start = load()
    started = time.perf_counter()
    runs: dict[str, dict[str, list[str]]] = {name: {} for name in MODES}
    recall, f1, em, abstained, cited_gold = [], [], [], 0, 0
    short_f1, short_em, short_given = [], [], 0
    short_scored = []  # (margin of the short answer given or None, its F1, its EM): for the threshold sweep
    for i, (qid, question, gold_pid, golds) in enumerate(questions, start=1):
        qv = assistant.embedder.embed_query(question)
        for name, mode in MODES.items():
            hits = retriever.search(question, top_k=args.depth, mode=mode, query_vector=qv)
            runs[name][qid] = list(dict.fromkeys(doc_of(h.chunk.source) for h in hits))
        if args.retrieval_only:
            continue
        answer = assistant.answer(question)
        text = "" if answer.abstained else _MARKER.sub("", answer.text)
        recall.append(answer_recall(text, golds))
        f1.append(token_f1(text, golds))
        em.append(exact_match(text, golds))
        abstained += answer.abstained
        short = answer.short_answer.text if answer.short_answer is not None else ""
        short_given += bool(short)
        short_f1.append(token_f1(short, golds))
        short_em.append(exact_match(short, golds))
        short_scored.append((answer.short_answer.score if short else None, short_f1[-1], short_em[-1]))
        cited_gold += bool(answer.citations) and doc_of(answer.citations[0].source) == gold_pid
        if i % 500 == 0:
            print(f"{i}/{len(questions)} questions, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    seconds = time.perf_counter() - started
    qrels = {qid: {pid: 1} for qid, _, pid, _ in questions}

    n = len(questions)
    which = " (held-out articles)" if args.held_out else ""
    which += f" (every {args.every}th)" if args.every > 1 else ""
    which += " (no reader)" if args.no_reader else ""
    which += " (no span reader)" if not settings.span_reader else ""
    which += "".join(f" ({item})" for item in args.set)
    which += "" if settings.chunk_context else " (no chunk context)"
    print(f"\nSQuAD v1.1 dev{which}: {n} questions over {summary.documents} paragraphs ({summary.chunks} chunks, "
          f"chunk_tokens={settings.chunk_tokens}, dense_weight={settings.dense_weight}); "
          f"{seconds:.0f}s for the questions "
          f"({1000 * seconds / max(n, 1):.0f} ms each: 1 embedding + 3 searches"
          f"{'' if args.retrieval_only else ' + 1 full answer'}); "
          f"{cpu_count()} CPUs, torch threads {threads}; load average {load_start} at start, {load()} at end\n")
    print(markdown_table(["retrieval", "hit@1", "hit@5", "MRR@10"],
                         metric_rows(qrels, runs, ["hit@1", "hit@5", "mrr@10"])))
    if args.retrieval_only:
        return
    answers = [["short answer: token F1", mean(short_f1)], ["short answer: exact match", mean(short_em)],
               ["short answer given", short_given / max(n, 1)],
               ["answer-string recall", mean(recall)], ["token F1", mean(f1)], ["exact match", mean(em)],
               ["abstention rate", abstained / max(n, 1)],
               ["first citation in the gold paragraph", cited_gold / max(n, 1)]]
    answered = n - abstained
    if answered:
        answers += [[f"answer-string recall, answered questions only ({answered})", sum(recall) / answered],
                    ["token F1, answered questions only", sum(f1) / answered]]
    print("\n" + markdown_table(["extractive answer (`Assistant.answer`, hybrid)", "value"],
                               [[name, f"{v:.4f}"] for name, v in answers]))
    # what a stricter short_answer_margin would give (a withheld short answer scores 0)
    rows = []
    for m in SHORT_MARGINS:
        if m < settings.short_answer_margin:
            continue
        kept = [(f, e) for score, f, e in short_scored if score is not None and score >= m]
        rows.append([f"{m}" + (" (this run)" if m == settings.short_answer_margin else ""),
                     f"{sum(f for f, _ in kept) / max(n, 1):.4f}", f"{sum(e for _, e in kept) / max(n, 1):.4f}",
                     f"{len(kept) / max(n, 1):.4f}", f"{sum(f for f, _ in kept) / max(len(kept), 1):.4f}"])
    print("\n" + markdown_table(["short_answer_margin", "short F1", "short EM", "given", "F1 when given"], rows))


if __name__ == "__main__":
    main()
