"""Train the answer-sentence reader: a cross-encoder made from the shipped all-MiniLM-L6-v2.

    .venv/bin/python benchmarks/train_reader.py [--squad FILE] [--out rag/reader] [--epochs 1] [--limit N]

It reads (question, sentence) pairs and learns whether the sentence holds the answer. The data is the
SQuAD v1.1 dev set, but only its even-numbered articles (24 of 48, alphabetically by title). The odd
ones are held out, and `benchmarks/squad.py --held-out` reports on them. The embedding layer and the
first `--frozen` transformer layers stay as shipped. Only the upper layers and a one-unit head are
trained, and only their change is saved to `<out>/reader.safetensors` (each matrix's difference from the
shipped model as rank-`--rank` float16 factors, 3.6 MB at rank 64). `rag/reader.py` adds it to the
shipped model.

Pairs: for each question, the sentence holding its answer (label 1), up to 3 other sentences of the same
paragraph and 2 sentences of other paragraphs of the same article (label 0). Sentences are split with
`rag.chunking.sentence_spans`, as the answerer does.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_data import REPO
from bench_common import set_threads

from rag.chunking import sentence_spans

SQUAD_DEV = REPO.parent / "shared" / "benchmarks" / "squad-v1.1" / "dev-v1.1.json"


def split_articles(path: Path) -> tuple[list[dict], list[dict]]:
    """(training articles, held-out articles): even and odd positions in title order."""
    articles = sorted(json.loads(path.read_text(encoding="utf-8"))["data"], key=lambda a: a["title"])
    return articles[0::2], articles[1::2]


def held_out_titles(path: Path) -> set[str]:
    return {a["title"] for a in split_articles(path)[1]}


def sentence_pairs(articles: list[dict], seed: int = 0, negatives: int = 3, far: int = 2
                   ) -> list[tuple[str, str, float]]:
    """(question, sentence, label) for every question of the articles."""
    rng = random.Random(seed)
    pairs = []
    for article in articles:
        sentences = [[para["context"][s:e] for s, e, _ in sentence_spans(para["context"])]
                     for para in article["paragraphs"]]
        for p, para in enumerate(article["paragraphs"]):
            spans = sentence_spans(para["context"])
            for qa in para["qas"]:
                starts = {a["answer_start"] for a in qa["answers"]}
                gold = {i for i, (s, e, _) in enumerate(spans) if any(s <= a < e for a in starts)}
                if not gold:
                    continue
                for i in gold:
                    pairs.append((qa["question"], sentences[p][i], 1.0))
                others = [i for i in range(len(spans)) if i not in gold]
                for i in rng.sample(others, min(negatives, len(others))):
                    pairs.append((qa["question"], sentences[p][i], 0.0))
                pool = [s for q, ss in enumerate(sentences) if q != p for s in ss]
                for s in rng.sample(pool, min(far, len(pool))):
                    pairs.append((qa["question"], s, 0.0))
    return pairs


def training_args(doc: str, epochs: float, frozen: int, batch: int, lr: float) -> argparse.ArgumentParser:
    """The options both readers' training scripts take, with these defaults (`doc`: the script's docstring)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--squad", type=Path, default=SQUAD_DEV)
    ap.add_argument("--out", type=Path, default=REPO / "rag" / "reader")
    ap.add_argument("--epochs", type=float, default=epochs)
    ap.add_argument("--frozen", type=int, default=frozen, help="lower transformer layers left as shipped")
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N examples only (a smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rank", type=int, default=64, help="rank of each saved weight change (0: save whole)")
    return ap


class Trainer:
    """AdamW with a linear warm-up over the first tenth of the steps, then linear decay to 0; gradients
    clipped at norm 1; a smoothed loss and the rate printed every 20 steps."""

    def __init__(self, params, lr: float, steps: int, unit: str):
        import torch

        self.params, self.steps, self.unit = params, steps, unit
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        warm = max(1, steps // 10)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
        self.t0, self.seen, self.running, self.done = time.perf_counter(), 0, 0.0, 0

    def step(self, loss, examples: int) -> None:
        import torch

        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.seen += examples
        value = loss.item()
        self.running = 0.98 * self.running + 0.02 * value if self.done else value
        if self.done % 20 == 0 or self.done == self.steps - 1:
            rate = self.seen / (time.perf_counter() - self.t0)
            print(f"step {self.done + 1}/{self.steps} loss {self.running:.4f} {rate:.1f} {self.unit}/s", flush=True)
        self.done += 1


def main(argv: list[str] | None = None) -> int:
    args = training_args(__doc__, epochs=1.0, frozen=2, batch=32, lr=5e-5).parse_args(argv)
    print(f"torch threads: {set_threads(None)}")

    import torch

    from rag.config import default_model_path
    from rag.reader import Reader

    torch.manual_seed(args.seed)
    train, _ = split_articles(args.squad)
    pairs = sentence_pairs(train, seed=args.seed)
    random.Random(args.seed).shuffle(pairs)
    if args.limit:
        pairs = pairs[: args.limit]
    print(f"{len(pairs)} pairs from {len(train)} articles ({sum(p[2] for p in pairs):.0f} positive)", flush=True)

    reader = Reader.untrained(default_model_path(), frozen=args.frozen)
    model = reader.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    steps = max(1, int(len(pairs) * args.epochs) // args.batch)
    trainer = Trainer(params, args.lr, steps, "pairs")
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for step in range(steps):
        batch = [pairs[(step * args.batch + i) % len(pairs)] for i in range(args.batch)]
        logits = reader.logits([q for q, _, _ in batch], [s for _, s, _ in batch])
        trainer.step(loss_fn(logits, torch.tensor([y for _, _, y in batch])), len(batch))
    reader.save(args.out, meta={"trained_on": "SQuAD v1.1 dev, even-numbered articles by title",
                                "pairs": len(pairs), "epochs": args.epochs, "lr": args.lr,
                                "batch": args.batch, "seed": args.seed}, rank=args.rank)
    print(f"saved {args.out} in {time.perf_counter() - trainer.t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
