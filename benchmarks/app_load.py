"""Load on the web app's HTTP API: N concurrent gradio_client users × M questions each over corpus/.

    python benchmarks/app_load.py                     # builds an index of corpus/ in a temp dir, starts app.py
    python benchmarks/app_load.py --url http://127.0.0.1:7860/   # an app that is already running

Prints the error count and p50/p95/max latency of one `/ask` call, and the throughput. Only talks to
127.0.0.1 (or the --url given); the run is bounded by the number of questions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

QUESTIONS = [
    "Which minister toured AI hotspots in Shanghai and Beijing?",
    "What are the five points of the MIIT AI action plan?",
    "How much support does Beijing's plan offer for new equipment?",
    "Who chaired the meeting on the AI industry?",
    "What did the minister say about humanoid robots?",
]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def run(url: str, users: int, per_user: int, top_k: int, mode: str) -> dict:
    from gradio_client import Client

    latencies: list[float] = []
    errors: list[str] = []
    uncited = 0
    lock = threading.Lock()
    start_line = threading.Barrier(users)

    def user(i: int) -> None:
        nonlocal uncited
        try:
            client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        except Exception as e:
            with lock:
                errors.append(f"user {i} could not connect: {e}")
            start_line.abort()
            return
        try:
            start_line.wait(timeout=120)
            for j in range(per_user):
                question = QUESTIONS[(i + j) % len(QUESTIONS)]
                t = time.perf_counter()
                try:
                    result = client.predict(question, top_k, mode, api_name="/ask")
                except Exception as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    continue
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    uncited += not result.get("citations")
        except threading.BrokenBarrierError:
            pass
        finally:
            client.close()

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - started
    return {"users": users, "questions_per_user": per_user, "requests": users * per_user,
            "ok": len(latencies), "errors": len(errors), "uncited": uncited,
            "p50_s": percentile(latencies, 0.5), "p95_s": percentile(latencies, 0.95),
            "max_s": max(latencies, default=float("nan")), "wall_s": wall,
            "throughput_rps": len(latencies) / wall if wall else 0.0, "error_samples": errors[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running app (default: start app.py on a free 127.0.0.1 port)")
    parser.add_argument("--index-dir", type=Path, help="with no --url: serve this index (default: build corpus/)")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--questions", type=int, default=5, help="questions per user")
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--mode", default="hybrid", choices=["hybrid", "dense", "bm25"])
    args = parser.parse_args(argv)

    server = None
    with tempfile.TemporaryDirectory(prefix="app-load-") as tmp:
        url = args.url
        if not url:
            from apphelpers import start_server

            from rag.config import Settings
            from rag.indexer import build_index

            index_dir = args.index_dir
            if index_dir is None:
                index_dir = Path(tmp) / "index"
                build_index([ROOT / "corpus"], index_dir, Settings())
            server = start_server(index_dir.resolve(), Path(tmp) / "uploads", Path(tmp))
            url = server.url
            print(f"started {url}", file=sys.stderr)
        try:
            r = run(url, args.users, args.questions, args.top_k, args.mode)
        finally:
            if server is not None:
                server.stop()
    print(f"{r['users']} users x {r['questions_per_user']} questions = {r['requests']} requests "
          f"({args.mode}, top-k {args.top_k})")
    print(f"ok {r['ok']}, errors {r['errors']}, answers without citations {r['uncited']}")
    print(f"latency p50 {r['p50_s']:.2f}s, p95 {r['p95_s']:.2f}s, max {r['max_s']:.2f}s; "
          f"wall {r['wall_s']:.1f}s, {r['throughput_rps']:.2f} answers/s")
    for e in r["error_samples"]:
        print(f"  error: {e}")
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
