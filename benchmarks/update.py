"""What an incremental update of a large index costs: `rag index` after adding, editing or removing a file.

    .venv/bin/python benchmarks/update.py --n 200000 [--ann auto|flat|hnsw] [--json]

Setup (timed, but not an update): a folder of text files of synthetic words (benchmarks/scale.py's
vocabulary and Zipf draws, FILE_WORDS words a file), indexed by the project's own `build_index` with one
change: chunk vectors are synthetic unit vectors instead of MiniLM embeddings, because embedding N real
chunks takes hours on 2 cores (~40 chunks/s). That build ("full write") is what any update would cost if
it rewrote everything but the embeddings. Then each step is one real `build_index` call on the folder,
exactly as `rag index` runs it: every file loaded and hashed, the plan made, what changed chunked and
embedded with the real model, and a new generation written and committed:

* unchanged: nothing changed (nothing is written);
* add: one new file (kept rows stay first: an ANN index is extended, not rebuilt);
* edit: one file's text changed (its rows leave the middle: the ANN index is rebuilt);
* remove: one file deleted (likewise).

It prints, per step, seconds, chunks embedded and whether the vector index was extended or built anew,
and the ratio of each step's seconds to the full write.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

FILE_WORDS = 3000  # words a file: ~20 chunks of the default 200 tokens, a long report or a book chapter
SEED = 7  # the synthetic vectors' seed


def _texts(n_files: int) -> list[str]:
    """n_files texts of FILE_WORDS words, sentences of 8-20 words, drawn like scale.py's chunk texts."""
    import scale

    gen = scale._Generator(scale.SEED + 3)
    rng = np.random.default_rng(SEED)
    out = []
    for _ in range(n_files):
        _, lines = gen.rows(FILE_WORDS // 40 + 1, scale.CHUNK_WORDS, scale.TOPIC_SHARE)
        words = " ".join(lines).split()[:FILE_WORDS]
        cuts = np.cumsum(rng.integers(8, 21, size=len(words)))
        sentences, start = [], 0
        for cut in cuts:
            if start >= len(words):
                break
            part = words[start:cut]
            sentences.append(" ".join(part).capitalize() + ".")
            start = cut
        out.append(" ".join(sentences) + "\n")
    return out


def _synthetic_embed(chunks, fresh, embedder, settings, progress=False) -> np.ndarray:
    x = np.random.default_rng(SEED + len(chunks)).standard_normal((len(chunks), 384)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _step(name: str, docs: Path, index: Path, settings, builds: list) -> dict:
    from rag.indexer import build_index
    from rag.store import IndexStore

    builds.clear()
    t0 = time.perf_counter()
    summary = build_index([docs], index, settings)
    seconds = time.perf_counter() - t0
    manifest = IndexStore.read_manifest(index)
    kind = manifest["vector_index"]["kind"]
    how = "flat (no ANN)" if kind == "flat" else ("built anew" if builds else "extended")
    if not (summary.new or summary.updated or summary.removed):
        how = "nothing written"
    return {"step": name, "seconds": round(seconds, 2), "embedded": summary.embedded, "chunks": summary.chunks,
            "vector_index": kind, "ann": how}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True, help="about this many chunks in the index")
    ap.add_argument("--ann", default="auto", choices=["auto", "flat", "hnsw", "ivf"],
                    help="the vector index (default auto: HNSW from rag.ann.ANN_THRESHOLD chunks on)")
    ap.add_argument("--json", action="store_true", help="one JSON object per step")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the folder and index here (default: temp)")
    args = ap.parse_args()

    from rag import ann, indexer
    from rag.config import Settings, model_path
    from rag.embeddings import get_embedder
    from rag.indexer import build_index

    settings = Settings().replace(ann=args.ann)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rag-update-"))
    docs, index = work / "docs", work / "index"
    shutil.rmtree(work, ignore_errors=True)
    docs.mkdir(parents=True)
    probe = _texts(1)[0]
    (docs / "probe.txt").write_text(probe, encoding="utf-8")
    per_file = max(1, build_index([docs], work / "probe", settings.replace(ann="flat")).chunks)
    shutil.rmtree(work / "probe")
    (docs / "probe.txt").unlink()
    n_files = max(2, round(args.n / per_file))
    t0 = time.perf_counter()
    for i, text in enumerate(_texts(n_files + 1)):
        (docs if i < n_files else work).joinpath(f"f{i:06d}.txt").write_text(text, encoding="utf-8")
    print(f"{n_files} files of ~{per_file} chunks written in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

    builds: list[int] = []
    real_build = ann.build
    ann.build = lambda vectors, spec: builds.append(len(vectors)) or real_build(vectors, spec)
    real_embed = indexer.embed_chunks
    indexer.embed_chunks = _synthetic_embed
    t0 = time.perf_counter()
    summary = build_index([docs], index, settings)
    full = time.perf_counter() - t0
    indexer.embed_chunks = real_embed
    _ = get_embedder(model_path(settings), settings.batch_size).model  # loaded once, untimed
    rows = [{"step": "full write (synthetic vectors)", "seconds": round(full, 2), "embedded": 0,
             "chunks": summary.chunks, "vector_index": indexer.vector_index(summary.chunks, 384, settings)["kind"],
             "ann": "built" if builds else "flat (no ANN)"}]
    rows.append(_step("unchanged", docs, index, settings, builds))
    shutil.move(str(work / f"f{n_files:06d}.txt"), docs / f"f{n_files:06d}.txt")
    rows.append(_step("add one file", docs, index, settings, builds))
    middle = docs / f"f{n_files // 2:06d}.txt"
    middle.write_text(middle.read_text(encoding="utf-8").replace(".", " again.", 1), encoding="utf-8")
    rows.append(_step("edit one file", docs, index, settings, builds))
    (docs / f"f{n_files // 3:06d}.txt").unlink()
    rows.append(_step("remove one file", docs, index, settings, builds))
    for r in rows:
        r["n"] = summary.chunks
        r["ratio_to_full_write"] = round(r["seconds"] / full, 3)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"\nincremental updates of an index of {summary.chunks} chunks ({n_files} files), "
              f"vector index {rows[0]['vector_index']}\n")
        print("| step | seconds | / full write | chunks embedded | ANN index |\n|---|---:|---:|---:|---|")
        for r in rows:
            print(f"| {r['step']} | {r['seconds']:.1f} | {r['ratio_to_full_write']:.2f} | {r['embedded']} | "
                  f"{r['ann']} |")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
