"""Train the span reader: start/end logits over question + passage, made from the shipped all-MiniLM-L6-v2.

    .venv/bin/python benchmarks/train_span_reader.py [--squad FILE] [--out rag/reader] [--epochs 2]
                                                     [--eval N] [--limit N]

Data: the SQuAD v1.1 dev set's even-numbered articles (24 of 48, alphabetically by title); the odd ones
are held out (`benchmarks/squad.py --held-out`, and `--eval N` here: the reader alone on N held-out
questions with their gold paragraph, and N with another paragraph of the same article, to say no).

Examples: every question with its paragraph (the first gold answer is the target span), and for
`--negatives` of them also the question with the other paragraph of the same article that shares the
most of its words and holds none of its answers: on-topic, answer absent, target [CLS]. A paragraph
longer than the window is read in overlapping windows; a window without the answer targets [CLS].
The embedding layer and the first `--frozen` transformer layers stay as shipped; only the change of
the others and the head is saved (`rag/reader/span.safetensors`, rank-`--rank` float16 factors).
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import set_threads
from train_reader import Trainer, split_articles, training_args

REPO = Path(__file__).resolve().parent.parent
_WORD = re.compile(r"\w+")
_STOP = {"the", "a", "an", "of", "in", "on", "at", "to", "for", "by", "with", "from", "and", "or", "is", "are",
         "was", "were", "what", "which", "who", "when", "where", "why", "how", "did", "does", "do", "that",
         "this", "it", "its", "as", "be", "been", "many", "much"}


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def examples(articles: list[dict], negatives: float, seed: int = 0) -> list[tuple[str, str, int, str]]:
    """(question, passage, answer char start or -1, answer text or '')."""
    rng = random.Random(seed)
    out = []
    for article in articles:
        paras = article["paragraphs"]
        words = [_words(p["context"]) for p in paras]
        for i, para in enumerate(paras):
            for qa in para["qas"]:
                gold = qa["answers"][0]
                out.append((qa["question"], para["context"], gold["answer_start"], gold["text"]))
                if rng.random() >= negatives:
                    continue
                qw = _words(qa["question"])
                answers = {a["text"].lower() for a in qa["answers"]}
                others = [j for j in range(len(paras)) if j != i
                          and not any(a in paras[j]["context"].lower() for a in answers)]
                if others:
                    j = max(others, key=lambda j: (len(qw & words[j]), rng.random()))
                    out.append((qa["question"], paras[j]["context"], -1, ""))
    return out


def featurize(reader, data, stride: int) -> list[dict]:
    """Tokenized windows with their start/end targets (0 = [CLS], no answer in this window)."""
    feats = []
    for k in range(0, len(data), 64):
        part = data[k:k + 64]
        with reader._tokenize_lock:
            enc = reader.tokenizer([q for q, _, _, _ in part], [p for _, p, _, _ in part], truncation="only_second",
                                   max_length=reader.max_length, stride=stride, return_overflowing_tokens=True,
                                   return_offsets_mapping=True)
        for w, src in enumerate(enc["overflow_to_sample_mapping"]):
            _, _, a_start, a_text = part[src]
            seq = enc.sequence_ids(w)
            offsets = enc["offset_mapping"][w]
            s_tok = e_tok = 0
            if a_start >= 0:
                a_end = a_start + len(a_text)
                ctx = [t for t, sid in enumerate(seq) if sid == 1]
                if offsets[ctx[0]][0] <= a_start and offsets[ctx[-1]][1] >= a_end:
                    s_tok = next(t for t in ctx if offsets[t][1] > a_start)
                    e_tok = next(t for t in reversed(ctx) if offsets[t][0] < a_end)
            feats.append({"input_ids": enc["input_ids"][w], "token_type_ids": enc["token_type_ids"][w],
                          "offsets": offsets, "seq": seq, "start": s_tok, "end": e_tok})
    return feats


def batches(feats: list[dict], size: int, rng: random.Random) -> list[list[dict]]:
    """Batches of similar length (little padding), in random order."""
    order = sorted(range(len(feats)), key=lambda i: (len(feats[i]["input_ids"]), rng.random()))
    out = [[feats[i] for i in order[k:k + size]] for k in range(0, len(order), size)]
    rng.shuffle(out)
    return out


def collate(batch: list[dict]):
    import torch

    n = max(len(f["input_ids"]) for f in batch)
    ids = torch.zeros(len(batch), n, dtype=torch.long)
    types = torch.zeros(len(batch), n, dtype=torch.long)
    mask = torch.zeros(len(batch), n, dtype=torch.long)
    offsets = torch.zeros(len(batch), n, 2, dtype=torch.long)
    for b, f in enumerate(batch):
        m = len(f["input_ids"])
        ids[b, :m] = torch.tensor(f["input_ids"])
        types[b, :m] = torch.tensor(f["token_type_ids"])
        mask[b, :m] = 1
        offsets[b, :m] = torch.tensor(f["offsets"])
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "offset_mapping": offsets}


def evaluate_reader(reader, articles: list[dict], n: int, seed: int = 0) -> dict:
    """The reader alone on held-out questions: EM/F1 with the gold paragraph, and how often it says
    "no answer" (margin <= 0) there and with the most similar other paragraph of the article."""
    from rag.evaluation import exact_match, token_f1

    rng = random.Random(seed)
    data = examples(articles, negatives=1.0, seed=seed)
    pos = [d for d in data if d[2] >= 0]
    neg = [d for d in data if d[2] < 0]
    pos, neg = rng.sample(pos, min(n, len(pos))), rng.sample(neg, min(n, len(neg)))
    golds = {}
    for article in articles:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                golds[(qa["question"], para["context"])] = [a["text"] for a in qa["answers"]]
    reader.model.eval()
    em = f1 = pos_null = 0.0
    for q, p, _, _ in pos:
        reading = reader.read(q, [p])[0]
        text = reading.best.text if reading.best else ""
        em += exact_match(text, golds[(q, p)])
        f1 += token_f1(text, golds[(q, p)])
        pos_null += reading.margin <= 0
    neg_null = 0.0
    for q, p, _, _ in neg:
        neg_null += reader.read(q, [p])[0].margin <= 0
    return {"questions": len(pos), "exact_match": round(em / len(pos), 4), "f1": round(f1 / len(pos), 4),
            "said_no_answer_with_gold_paragraph": round(pos_null / len(pos), 4),
            "said_no_answer_with_other_paragraph": round(neg_null / max(len(neg), 1), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = training_args(__doc__, epochs=2.0, frozen=1, batch=16, lr=1e-4)
    ap.add_argument("--negatives", type=float, default=0.5, help="share of questions also given a no-answer paragraph")
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--eval", type=int, default=300, help="held-out questions to measure the reader alone on")
    args = ap.parse_args(argv)
    print(f"torch threads: {set_threads(None)}")

    import torch

    from rag.config import default_model_path
    from rag.span_reader import SpanReader

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train, held_out = split_articles(args.squad)
    data = examples(train, args.negatives, seed=args.seed)
    rng.shuffle(data)
    if args.limit:
        data = data[: args.limit]
    reader = SpanReader.untrained(default_model_path(), frozen=args.frozen)
    reader.max_length = args.max_length
    feats = featurize(reader, data, args.stride)
    print(f"{len(data)} examples ({sum(d[2] < 0 for d in data)} no-answer) from {len(train)} articles, "
          f"{len(feats)} windows ({sum(f['start'] == 0 for f in feats)} without the answer)", flush=True)

    model = reader.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    per_epoch = (len(feats) + args.batch - 1) // args.batch
    steps = max(1, int(per_epoch * args.epochs))
    trainer = Trainer(params, args.lr, steps, "windows")
    loss_fn = torch.nn.CrossEntropyLoss()
    while trainer.done < steps:
        for batch in batches(feats, args.batch, rng):
            if trainer.done >= steps:
                break
            start, end = reader.forward(collate(batch))
            trainer.step((loss_fn(start, torch.tensor([f["start"] for f in batch]))
                          + loss_fn(end, torch.tensor([f["end"] for f in batch]))) / 2, len(batch))
    train_s = time.perf_counter() - trainer.t0
    reader.save(args.out, meta={"trained_on": "SQuAD v1.1 dev, even-numbered articles by title",
                                "examples": len(data), "windows": len(feats), "negatives": args.negatives,
                                "epochs": args.epochs, "lr": args.lr, "batch": args.batch, "stride": args.stride,
                                "seed": args.seed}, rank=args.rank)
    print(f"saved {args.out} after {train_s:.0f} s of training", flush=True)
    if args.eval:
        print("whole weights:", json.dumps(evaluate_reader(reader, held_out, args.eval)), flush=True)
        shipped = SpanReader.load(default_model_path(), args.out)
        print("as saved:", json.dumps(evaluate_reader(shipped, held_out, args.eval)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
