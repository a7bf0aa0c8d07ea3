"""The span reader: where in this passage is the answer to this question, if anywhere?

Question and passage are read together ([CLS] question [SEP] passage [SEP]) by the shipped
all-MiniLM-L6-v2 with its upper layers fine-tuned and a two-unit head giving each token a start and
an end logit. The [CLS] position stands for "no answer here" (as in SQuAD 2.0 readers): its start
plus end logit is the passage's no-answer score. Trained by `benchmarks/train_span_reader.py` on the
24 even-numbered SQuAD v1.1 dev articles, with on-topic "no answer" examples made from the same
articles' other paragraphs. Only the change from the base model ships (`rag/reader/span.safetensors`),
as rank-64 float16 factors per matrix, like the sentence reader (`rag.reader`).

`read()` gives, per passage, the best answer span (char offsets into the passage), its margin over
"no answer" (span logit − no-answer logit; > 0 means the reader prefers the span), and for each char
range asked for (e.g. each sentence) the probability mass of answer starts inside it and its best spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .reader import Reader, head_class

MAX_ANSWER_TOKENS = 30  # the longest span considered, in word-pieces (SQuAD answers: 99% are shorter)
TOP_STARTS = 20  # start and end candidates per passage searched for the best span (the usual n-best of 20)
# logit taken off a span per word-piece past its first, a prior for short answers: the best of 0, 0.1,
# 0.2 and 0.4 on 300 questions of the training articles (exact match 0.60 -> 0.65, F1 0.72 -> 0.74)
LENGTH_COST = 0.1
N_BEST = 5  # spans kept per asked range: enough to find one of the kind asked for below the best
SPAN_WEIGHTS = "span.safetensors"
SPAN_CONFIG = "span.json"


@dataclass
class Span:
    """A candidate answer span in one passage."""

    start: int  # char offsets into the passage
    end: int
    text: str
    score: float  # start logit + end logit - LENGTH_COST per word-piece past the first


@dataclass
class Reading:
    """What the reader found in one passage."""

    null: float  # the no-answer logit ([CLS] start + end)
    best: Span | None  # the best span anywhere in the passage
    mass: list[float] = field(default_factory=list)  # per asked range: the answer-start probability inside it
    spans: list[list[Span]] = field(default_factory=list)  # per asked range: its best spans, best first

    @property
    def margin(self) -> float:
        """How much the reader prefers its best span to "no answer here" (> 0: it prefers the span)."""
        return (self.best.score if self.best else float("-inf")) - self.null


class SpanReader(Reader):
    """Start/end logits over question + passage, and a no-answer score."""

    weights_file = SPAN_WEIGHTS
    config_file = SPAN_CONFIG
    config_extra = {"head": "start/end per token, [CLS] = no answer"}

    def __init__(self, *args, **kw):
        kw.setdefault("max_length", 384)
        super().__init__(*args, **kw)

    @staticmethod
    def _module(encoder):
        return head_class(2, pooled=False)(encoder)

    def encode(self, questions: list[str], passages: list[str], stride: int = 0):
        """Tokenized pairs with char offsets; the passage is truncated (or windowed when stride > 0)."""
        with self._tokenize_lock:
            return self.tokenizer(questions, passages, padding=True, truncation="only_second",
                                  max_length=self.max_length, stride=stride,
                                  return_overflowing_tokens=stride > 0, return_offsets_mapping=True,
                                  return_tensors="pt")

    def forward(self, batch):
        """(start logits, end logits) with every position outside the passage except [CLS] masked."""
        import torch

        start, end = self.model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        allowed = _passage_mask(batch)
        allowed[:, 0] = True
        neg = torch.finfo(start.dtype).min / 2
        return start.masked_fill(~allowed, neg), end.masked_fill(~allowed, neg)

    def read(self, question: str, passages: list[str], ranges: list[list[tuple[int, int]]] | None = None,
             n_best: int = N_BEST, batch_size: int = 8) -> list[Reading]:
        """One Reading per passage; `ranges[i]`: char ranges of passage i (e.g. its sentences) to report on."""
        import torch

        out: list[Reading] = []
        with torch.inference_mode():
            for i in range(0, len(passages), batch_size):
                chunk = passages[i:i + batch_size]
                batch = self.encode([question] * len(chunk), chunk)
                start, end = self.forward(batch)
                offsets = batch["offset_mapping"].numpy()
                passage = _passage_mask(batch).numpy()
                p_start = torch.softmax(start, dim=-1).numpy()
                start, end = start.numpy(), end.numpy()
                for b, text in enumerate(chunk):
                    asked = ranges[i + b] if ranges is not None else []
                    out.append(_reading(text, start[b], end[b], offsets[b], passage[b], p_start[b], asked, n_best))
        return out


def _passage_mask(batch):
    """True at the passage's word-pieces (sequence id 1, not special tokens)."""
    types = batch.get("token_type_ids")
    if types is None:
        raise ValueError("the span reader needs token_type_ids to tell question from passage")
    special = batch["offset_mapping"][..., 1] == 0
    return (types == 1) & batch["attention_mask"].bool() & ~special


def _top_spans(text: str, start: np.ndarray, end: np.ndarray, offsets: np.ndarray, idx: np.ndarray,
               n: int) -> list[Span]:
    """The n best spans (start <= end, at most MAX_ANSWER_TOKENS long) over the token positions idx."""
    if not len(idx):
        return []
    starts = idx[np.argsort(-start[idx])[:TOP_STARTS]]
    ends = idx[np.argsort(-end[idx])[:TOP_STARTS]]
    pairs = sorted(((float(start[s] + end[e]) - LENGTH_COST * (e - s), int(s), int(e)) for s in starts for e in ends
                    if s <= e < s + MAX_ANSWER_TOKENS), reverse=True)
    out, taken = [], set()
    for score, s, e in pairs:
        cs, ce = _snap(text, int(offsets[s, 0]), int(offsets[e, 1]))
        if ce > cs and (cs, ce) not in taken:
            taken.add((cs, ce))
            out.append(Span(cs, ce, text[cs:ce], score))
            if len(out) >= n:
                break
    return out


def _snap(text: str, s: int, e: int) -> tuple[int, int]:
    """A span widened to whole words (a word-piece answer "Zhu" becomes "Zhuanglong") and without the
    punctuation that ends a clause after it ("Beijing." becomes "Beijing")."""
    while s > 0 and text[s - 1].isalnum() and text[s].isalnum():
        s -= 1
    while e < len(text) and text[e - 1].isalnum() and text[e].isalnum():
        e += 1
    while e > s and (text[e - 1] in ",;:，；：" or (text[e - 1] == "." and "." not in text[s:e - 1])):
        e -= 1
    return s, e


def _reading(text: str, start: np.ndarray, end: np.ndarray, offsets: np.ndarray, passage: np.ndarray,
             p_start: np.ndarray, ranges: list[tuple[int, int]], n_best: int) -> Reading:
    idx = np.flatnonzero(passage)
    best = _top_spans(text, start, end, offsets, idx, 1)
    reading = Reading(float(start[0] + end[0]), best[0] if best else None)
    for s, e in ranges:
        inside = idx[(offsets[idx, 0] >= s) & (offsets[idx, 1] <= e)]
        reading.mass.append(float(p_start[inside].sum()))
        reading.spans.append(_top_spans(text, start, end, offsets, inside, n_best))
    return reading
