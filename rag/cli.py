"""`rag index | ask | eval | serve`: the command line. Errors are one line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import ANSWERERS, DEFAULT_HOST, DEFAULT_PORT, LOCAL_HOSTS, MODES, Settings, check_top_k
from .store import STORES


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def _settings(args) -> Settings:
    """Settings.load() with the flags the command was given (a flag left out keeps the setting)."""
    settings = Settings.load().replace(index_dir=getattr(args, "index_dir", None),
                                       llm_gguf=getattr(args, "llm_gguf", None), store=getattr(args, "store", None),
                                       milvus_uri=getattr(args, "milvus_uri", None), ann=getattr(args, "ann", None),
                                       ann_compression=getattr(args, "ann_compression", None))
    if getattr(args, "top_k", None) is not None:
        settings = settings.replace(top_k=check_top_k(args.top_k))
    return settings.replace(mode=getattr(args, "mode", None))


def cmd_index(args) -> int:
    from .indexer import build_index

    settings = _settings(args)
    if args.check:
        from .backends import check_store

        if args.paths:
            raise CliError("--check verifies an index and takes no paths; use --index-dir DIR")
        found = check_store(settings.index_dir)
        print(json.dumps(found) if args.json else
              f"index {found['index_dir']} is sound: {found['documents']} documents, {found['chunks']} chunks "
              f"({found['generation']})")
        return 0
    paths = args.paths or [settings.corpus_dir]
    summary = build_index(paths, settings.index_dir, settings, rebuild=args.rebuild,
                          progress=not args.json and sys.stderr.isatty() or args.progress, replace=args.replace,
                          notify=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        print(f"Indexed {summary.documents} documents into {summary.index_dir}: {summary.chunks} chunks "
              f"({summary.new} new, {summary.updated} updated, {summary.removed} removed, "
              f"{summary.unchanged} unchanged); embedded {summary.embedded} chunks in {summary.seconds:.1f}s"
              + (f" ({summary.chunks_per_second:.1f} chunks/s)" if summary.embedded else ""))
        for source, reason in summary.skipped.items():
            print(f"  skipped {source}: {reason}")
        if summary.unsupported:
            print(f"  unsupported file types ({len(summary.unsupported)}): {', '.join(summary.unsupported[:10])}"
                  + (" ..." if len(summary.unsupported) > 10 else ""))
    return 0


def _print_answer(ans) -> None:
    print(ans.text)
    if ans.short_answer is not None:
        print(f"\nShort answer: {ans.short_answer.text} [{ans.short_answer.n}]")
    if ans.abstained and ans.passages:
        print("\nClosest passages:")
        for p in ans.passages[:3]:
            print(f"  - {p.title} ({p.source}, chars {p.start}-{p.end}): {_short(p.text)}")
    if ans.citations:
        print("\nSources:")
        for c in ans.citations:
            print(f"  [{c.n}] {c.title} — {c.source}, chars {c.start}-{c.end}\n      \"{_short(c.quote, 300)}\"")


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def cmd_ask(args) -> int:
    from .assistant import Assistant, check_question

    settings = _settings(args)
    if args.question is not None:
        check_question(args.question)
    assistant = Assistant.load(settings.index_dir, settings)
    if args.question is not None:
        ans = assistant.answer(args.question, answerer=args.answerer)
        if args.json:
            print(json.dumps(ans.to_dict(), ensure_ascii=False))
        else:
            _print_answer(ans)
        return 0
    history: list[dict] = []
    print("Ask a question about the documents (empty line or Ctrl-D to quit).", file=sys.stderr)
    while True:
        print("? ", end="", file=sys.stderr, flush=True)  # the prompt never mixes into --json output
        try:
            question = input().strip()
        except EOFError:
            return 0
        if not question:
            return 0
        try:
            ans = assistant.answer(question, history, answerer=args.answerer)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            continue
        print(json.dumps(ans.to_dict(), ensure_ascii=False) if args.json else "")
        if not args.json:
            _print_answer(ans)
            print()
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": ans.text}]


def _thresholds(pairs: list[str] | None) -> dict[str, float]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise CliError(f"bad threshold {pair!r}; use METRIC=VALUE, e.g. hit@5=0.9") from None
        if not sep:
            raise CliError(f"bad threshold {pair!r}; use METRIC=VALUE, e.g. hit@5=0.9")
    return out


def cmd_eval(args) -> int:
    from .assistant import Assistant
    from .evalsuite import check_thresholds, evaluate_assistant, read_qa, table, write_report
    from .indexer import build_index

    settings = _settings(args)
    minimums, maximums = _thresholds(args.min), _thresholds(args.max)
    items = read_qa(args.qa)
    quiet = args.json or not sys.stderr.isatty()
    if args.corpus:
        summary = build_index([args.corpus], settings.index_dir, settings, progress=not quiet)
        print(f"indexed {args.corpus}: {summary.documents} documents, {summary.chunks} chunks, "
              f"embedded {summary.embedded}", file=sys.stderr)
    assistant = Assistant.load(settings.index_dir, settings)
    result = evaluate_assistant(assistant, items, top_k=settings.top_k, mode=settings.mode, progress=not quiet)
    if args.report:
        folder = write_report(result, args.report, str(args.qa))
        print(f"report written to {folder}/report.md (results.json, plot.png)", file=sys.stderr)
    if args.json:
        print(json.dumps(result.overall))
    else:
        print(table(result.overall))
    failures = check_thresholds(result.overall, minimums, maximums)
    for f in failures:
        print(f"threshold missed: {f}", file=sys.stderr)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Offline, cited question answering over your documents.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index a folder (default: corpus/) into an index folder (default: index/)")
    p.add_argument("paths", nargs="*", type=Path, help="folders or files to index")
    p.add_argument("--index-dir", type=Path)
    p.add_argument("--rebuild", action="store_true", help="ignore the existing index and build from scratch")
    p.add_argument("--replace", action="store_true",
                   help="index other folders than the index was built from, removing its other documents")
    p.add_argument("--check", action="store_true",
                   help="verify the index (checksums, vectors, SQLite, chunk offsets) instead of building")
    _store_flags(p)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("ask", help="answer a question with citations (no question: interactive)")
    p.add_argument("question", nargs="?")
    p.add_argument("--index-dir", type=Path)
    p.add_argument("--top-k", type=int, help="passages to retrieve (default: Settings.top_k)")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--answerer", choices=ANSWERERS)
    p.add_argument("--llm-gguf", type=Path, help="answer with this local GGUF model, in process (RAG_LLM_GGUF)")
    p.add_argument("--json", action="store_true", help="print one JSON object (schema in README)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("eval", help="measure retrieval, answer, citation and abstention quality on a Q&A file")
    p.add_argument("--qa", type=Path, default=Path("eval/qa.jsonl"))
    p.add_argument("--index-dir", type=Path)
    p.add_argument("--corpus", type=Path, help="index this folder into --index-dir first (incrementally)")
    p.add_argument("--top-k", type=int, help="passages to retrieve (default: Settings.top_k)")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--json", action="store_true", help="print the overall metrics as one JSON object")
    p.add_argument("--report", type=Path, help="write report.md, results.json and plot.png here")
    _store_flags(p)
    p.add_argument("--min", action="append", metavar="METRIC=VALUE", help="fail when a metric is below VALUE")
    p.add_argument("--max", action="append", metavar="METRIC=VALUE", help="fail when a metric is above VALUE")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("serve", help="serve the web app (chat, sources, uploads) and the /ask HTTP API")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 exposes the app to your network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--index-dir", type=Path, help="the index to answer from (default: index/)")
    p.add_argument("--corpus-dir", type=Path,
                   help="the folder the 'Build index' button indexes (default: corpus/)")
    p.add_argument("--upload-dir", type=Path,
                   help="where uploaded files are kept (default: RAG_UPLOAD_DIR or uploads/)")
    p.add_argument("--llm-gguf", type=Path, help="offer a local GGUF model as the llm answerer (RAG_LLM_GGUF)")
    p.add_argument("--auth", metavar="USER:PASSWORD",
                   help="require this login (or set RAG_AUTH); needed to bind an address other than this machine's")
    p.set_defaults(func=cmd_serve)
    return parser


def _store_flags(p) -> None:
    p.add_argument("--store", choices=STORES,
                   help="where a new index is kept: faiss (default) or milvus (Milvus Lite in --index-dir)")
    p.add_argument("--milvus-uri", metavar="URI",
                   help="keep the index on this Milvus server or cluster, e.g. http://localhost:19530 "
                        "(token: RAG_MILVUS_TOKEN)")
    p.add_argument("--ann", choices=("auto", "flat", "hnsw", "ivf"),
                   help="vector index: auto (exact below Settings.ann_threshold chunks, else HNSW), flat, hnsw, ivf")
    p.add_argument("--ann-compression", choices=("none", "sq8", "pq"),
                   help="compress ANN vectors: sq8 (hnsw or ivf) or pq (ivf); costs some recall")


def cmd_serve(args) -> int:
    from .webapp import serve  # Gradio is imported only when serving

    settings = _settings(args).replace(corpus_dir=args.corpus_dir)
    auth = _auth(args.auth or os.environ.get("RAG_AUTH"))
    if args.host not in LOCAL_HOSTS and auth is None:
        raise CliError(f"binding {args.host} would let anyone who can reach this machine ask questions and upload "
                       "files; pass --auth USER:PASSWORD (or set RAG_AUTH), or bind 127.0.0.1")
    return serve(settings, args.host, args.port, args.upload_dir, auth)



def _auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise CliError("--auth takes USER:PASSWORD, both non-empty")
    return user, password


def main(argv: list[str] | None = None) -> int:
    from .embeddings import EmbeddingError
    from .loaders import LoaderError
    from .reader import ReaderError
    from .store import IndexStoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `rag ask ... | head`: the reader left, nothing to report
        _silence_stdout()
        return 0
    except (CliError, LoaderError, IndexStoreError, EmbeddingError, ReaderError, ValueError, OSError) as e:
        print(f"rag {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rag {args.command}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
