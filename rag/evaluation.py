"""Evaluation metrics for retrieval and answers (stdlib only, no heavy dependencies).

Why a home-grown module: the RAG tool must evaluate offline, inside its own
venv, without pulling in numba (``ranx``) or a C extension (``pytrec_eval``).
The implementations below follow the conventions of ``trec_eval`` (as exposed by
``pytrec_eval``) and of the official SQuAD v1.1 evaluation script, and
``tests/test_evaluation.py`` checks them against ``pytrec_eval`` and ``ranx`` on
randomised runs so that numbers reported by this project are comparable with
the literature.

Retrieval metrics
-----------------
Inputs use the usual TREC-style dictionaries:

* ``qrels: dict[qid, dict[doc_id, grade]]`` - graded relevance judgements.
  A document is *relevant* when its grade is ``>= 1``; grade ``0`` (or a
  negative grade, or no judgement at all) means not relevant.
* ``run: dict[qid, dict[doc_id, score]]`` - retrieval scores; higher is better.

Ranking and ties: documents are ranked by score descending and **ties are
broken by doc id descending** (plain string comparison, i.e. reverse code-point
order).  That is what ``trec_eval`` / ``pytrec_eval`` do (``qsort`` on
``(sim desc, docno desc)``), and it was verified empirically with
pytrec_eval-terrier 0.5.11: for three docs ``a``, ``b``, ``c`` with equal
scores, ``c`` is ranked first.  ``ranx`` sorts with numba's (unstable)
``argsort`` on the negated scores, so its order of tied documents is
unspecified; there is no tie convention to match there.  Using trec_eval's
convention makes results reproducible and identical to pytrec_eval even on
runs with tied scores (common with BM25 or quantised similarities).

Metric definitions at cutoff ``k`` (``k=None`` means the whole ranking):

* ``hit@k`` - 1 if any relevant doc is in the top k (trec_eval ``success.k``,
  ranx ``hit_rate@k``).
* ``mrr@k`` - 1 / rank of the first relevant doc within the top k, else 0
  (ranx ``mrr@k``; trec_eval ``recip_rank`` on the run cut at k).
* ``recall@k`` - relevant docs in the top k / all relevant docs in the qrels.
* ``precision@k`` - relevant docs in the top k / k; the denominator is k even
  when fewer than k docs were retrieved (trec_eval ``P.k``, ranx
  ``precision@k``).  With ``k=None`` the denominator is the ranking length.
* ``ndcg@k`` - trec_eval ``ndcg_cut.k`` (= ranx ``ndcg@k``): gain is the
  grade itself (linear, not ``2**grade - 1``), discount ``log2(rank + 1)``,
  normalised by the DCG of the *ideal* ranking of **all judged relevant docs
  of the query** (from the qrels, not from the retrieved list), cut at k.

Answer metrics
--------------
``normalize_answer``, ``exact_match`` and ``token_f1`` reproduce the official
SQuAD v1.1 ``evaluate-v1.1.py`` script exactly (including its quirks: an empty
normalised prediction scores F1 = 0 even against an empty gold), except that
scores are floats in ``[0, 1]`` rather than percentages.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "METRIC_NAMES",
    "Qrels",
    "Ranking",
    "Run",
    "answer_recall",
    "evaluate",
    "evaluate_per_query",
    "exact_match",
    "hit_at_k",
    "list_recall",
    "mean",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_answer",
    "parse_metric",
    "precision_at_k",
    "rank_documents",
    "ranked_metrics",
    "recall_at_k",
    "spans_overlap",
    "token_f1",
]

Qrels = dict[str, dict[str, int]]
"""``{query_id: {doc_id: relevance_grade}}``; grade >= 1 means relevant."""

Run = dict[str, dict[str, float]]
"""``{query_id: {doc_id: score}}``; higher score = ranked earlier."""

Ranking = Mapping[str, float] | Sequence[str]
"""One query's results: either ``{doc_id: score}`` or doc ids already in rank order."""

METRIC_NAMES: tuple[str, ...] = ("hit", "mrr", "recall", "precision", "ndcg")
"""Canonical metric names understood by :func:`evaluate` (as ``name@k`` or ``name``)."""

_METRIC_ALIASES: dict[str, str] = {"hit_rate": "hit", "success": "hit", "p": "precision", "rr": "mrr"}


# --------------------------------------------------------------------------- generic helpers


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean that returns ``0.0`` for an empty input.

    Aggregates over possibly-empty query or question sets should not raise or
    produce NaN (which would silently poison later comparisons/JSON output).
    """
    total = 0.0
    n = 0
    for v in values:
        total += float(v)
        n += 1
    return total / n if n else 0.0


def spans_overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """Whether half-open spans ``[a_start, a_end)`` and ``[b_start, b_end)`` overlap.

    Spans use Python slice conventions (end exclusive), e.g. character offsets of
    a cited chunk and of the gold evidence.  Merely touching spans
    (``a_end == b_start``) and empty spans never overlap.
    """
    if a_end <= a_start or b_end <= b_start:
        return False
    return a_start < b_end and b_start < a_end


# --------------------------------------------------------------------------- ranking


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Doc ids ordered by score descending, ties broken by doc id descending.

    This is trec_eval's (and hence pytrec_eval's) ordering, so metrics computed
    here match pytrec_eval exactly even when scores are tied.

    Raises:
        ValueError: if a score is NaN (the order would be undefined).
    """
    for doc_id, score in scores.items():
        if score != score:  # NaN
            raise ValueError(f"NaN score for document {doc_id!r}")
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


def _as_ranking(ranking: Ranking) -> list[str]:
    """Normalise a score mapping or an already-ranked sequence into a list of unique doc ids."""
    if isinstance(ranking, Mapping):
        return rank_documents(ranking)
    if isinstance(ranking, str):
        raise TypeError("ranking must be a mapping doc_id -> score or a sequence of doc ids, not a str")
    # Keep the first occurrence of duplicated ids: a doc can only be retrieved once.
    return list(dict.fromkeys(ranking))


def _check_k(k: int | None) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"cutoff k must be a positive int or None, got {k!r}")


def _dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain with trec_eval's discount ``log2(rank + 1)`` (rank from 1)."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g)


def ranked_metrics(grades: Sequence[int], relevant_grades: Sequence[int], k: int | None) -> dict[str, float]:
    """All retrieval metrics for one query from relevance grades already in rank order.

    Use this when you have already mapped retrieved items to relevance grades
    (e.g. chunks judged by span overlap) and do not want to build qrels/run dicts.

    Args:
        grades: grade of each retrieved item, in rank order (0 for non-relevant or
            unjudged items). Must not list the same document twice.
        relevant_grades: grades of **all** judged relevant documents of the query,
            retrieved or not (order irrelevant; values < 1 are ignored). This is
            the recall denominator and defines the ideal DCG.
        k: cutoff; ``None`` evaluates the whole ranking.

    Returns:
        ``{"hit", "mrr", "recall", "precision", "ndcg"}`` -> value in ``[0, 1]``.
        All are 0.0 when the query has no relevant document.
    """
    _check_k(k)
    ideal = sorted((g for g in relevant_grades if g >= 1), reverse=True)
    top = [max(int(g), 0) for g in (grades if k is None else grades[:k])]
    n_rel = len(ideal)
    hits = sum(1 for g in top if g >= 1)
    first = next((i for i, g in enumerate(top) if g >= 1), None)
    denom_p = k if k is not None else len(top)
    idcg = _dcg(ideal if k is None else ideal[:k])
    return {
        "hit": 1.0 if hits else 0.0,
        "mrr": 1.0 / (first + 1) if first is not None else 0.0,
        "recall": hits / n_rel if n_rel else 0.0,
        "precision": hits / denom_p if denom_p else 0.0,
        "ndcg": _dcg(top) / idcg if idcg > 0 else 0.0,
    }


def _grades(query_qrels: Mapping[str, int], ranking: Ranking, k: int | None) -> list[int]:
    docs = _as_ranking(ranking)
    if k is not None:
        docs = docs[:k]
    return [query_qrels.get(d, 0) for d in docs]


def _metric(name: str, query_qrels: Mapping[str, int], ranking: Ranking, k: int | None) -> float:
    _check_k(k)
    return ranked_metrics(_grades(query_qrels, ranking, k), list(query_qrels.values()), k)[name]


def hit_at_k(query_qrels: Mapping[str, int], ranking: Ranking, k: int | None) -> float:
    """1.0 if a relevant doc (grade >= 1) is among the top ``k`` results, else 0.0.

    ``query_qrels`` is one query's ``{doc_id: grade}``; ``ranking`` is its
    ``{doc_id: score}`` or a list of doc ids in rank order.
    """
    return _metric("hit", query_qrels, ranking, k)


def mrr_at_k(query_qrels: Mapping[str, int], ranking: Ranking, k: int | None) -> float:
    """Reciprocal rank of the first relevant doc within the top ``k`` (0.0 if none)."""
    return _metric("mrr", query_qrels, ranking, k)


def recall_at_k(query_qrels: Mapping[str, int], ranking: Ranking, k: int | None) -> float:
    """Share of the query's relevant docs (from the qrels) found in the top ``k``."""
    return _metric("recall", query_qrels, ranking, k)


def precision_at_k(query_qrels: Mapping[str, int], ranking: Ranking, k: int | None) -> float:
    """Relevant docs in the top ``k`` divided by ``k`` (even if fewer than k were retrieved)."""
    return _metric("precision", query_qrels, ranking, k)


def ndcg_at_k(query_qrels: Mapping[str, int], ranking: Ranking, k: int | None) -> float:
    """trec_eval ``ndcg_cut.k``: linear gains, IDCG from the ideal ordering of all judged relevant docs."""
    return _metric("ndcg", query_qrels, ranking, k)


# --------------------------------------------------------------------------- run-level evaluation


def parse_metric(metric: str) -> tuple[str, int | None]:
    """Parse ``"ndcg@10"`` into ``("ndcg", 10)``; a bare ``"mrr"`` gives ``("mrr", None)``.

    Accepted names: ``hit``, ``mrr``, ``recall``, ``precision``, ``ndcg`` and the
    aliases ``hit_rate``/``success`` (hit), ``p`` (precision), ``rr`` (mrr),
    case-insensitive.

    Raises:
        ValueError: unknown name or a cutoff that is not a positive integer.
    """
    name, sep, cutoff = metric.strip().lower().partition("@")
    name = _METRIC_ALIASES.get(name, name)
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRIC_NAMES)} (as name@k)")
    if not sep:
        return name, None
    if not cutoff.isdigit() or int(cutoff) < 1:
        raise ValueError(f"invalid cutoff in metric {metric!r}; expected a positive integer")
    return name, int(cutoff)


def evaluate_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Ranking],
    metrics: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Per-query metric values: ``{query_id: {metric: value}}``.

    Only queries of ``qrels`` with at least one relevant doc (grade >= 1) are
    evaluated: queries without any relevant doc have undefined recall/nDCG.
    A query missing from ``run`` is evaluated as an empty ranking (all metrics
    0.0), so a retriever cannot look better by failing to answer.  Queries of
    ``run`` absent from ``qrels`` are ignored.  Metric keys are the strings
    given in ``metrics``.
    """
    parsed = [(m, *parse_metric(m)) for m in metrics]
    cutoffs = {k for _, _, k in parsed}
    out: dict[str, dict[str, float]] = {}
    for qid, query_qrels in qrels.items():
        relevant = [g for g in query_qrels.values() if g >= 1]
        if not relevant:
            continue
        docs = _as_ranking(run.get(qid, {}))
        grades = [query_qrels.get(d, 0) for d in docs]
        by_k = {k: ranked_metrics(grades, relevant, k) for k in cutoffs}
        out[qid] = {m: by_k[k][name] for m, name, k in parsed}
    return out


def evaluate(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Ranking],
    metrics: Sequence[str],
) -> dict[str, float]:
    """Mean of each metric over the evaluable queries, e.g. ``{"ndcg@10": 0.53, ...}``.

    ``metrics`` are strings such as ``["ndcg@10", "recall@100", "mrr@10", "hit@1"]``
    (see :func:`parse_metric`). The mean is taken over the queries of ``qrels``
    that have at least one relevant doc; queries missing from ``run`` count as 0
    (see :func:`evaluate_per_query`). With no evaluable query every mean is 0.0.
    """
    per_query = evaluate_per_query(qrels, run, metrics)
    return {m: mean(scores[m] for scores in per_query.values()) for m in metrics}


# --------------------------------------------------------------------------- answer metrics (SQuAD v1.1)

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lowercase, remove ASCII punctuation, articles (a/an/the) and extra whitespace.

    Identical to ``normalize_answer`` of the official SQuAD v1.1 evaluation
    script (same steps, same order), so EM/F1 are comparable with published
    numbers. Note that punctuation is deleted, not replaced by a space:
    ``"U.S."`` -> ``"us"``, ``"e-mail"`` -> ``"email"``.
    """
    text = s.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def _as_golds(golds: str | Sequence[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else list(golds)


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    ``golds`` may be a single string or a list of acceptable answers (max over
    golds, as in SQuAD). No gold answers gives 0.0.
    """
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(g) for g in _as_golds(golds)) else 0.0


def _f1_single(prediction_tokens: list[str], gold: str) -> float:
    gold_tokens = normalize_answer(gold).split()
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: str | Sequence[str]) -> float:
    """SQuAD v1.1 bag-of-tokens F1 between normalised prediction and gold, max over golds.

    Token overlap is counted with multiplicity. As in the official v1.1 script,
    no overlapping token (including both sides empty) gives 0.0. No gold answers
    gives 0.0.
    """
    pred_tokens = normalize_answer(prediction).split()
    return max((_f1_single(pred_tokens, g) for g in _as_golds(golds)), default=0.0)


def _normalize_loose(s: str) -> str:
    """SQuAD normalisation, except that any Unicode punctuation (curly quotes, dashes, hyphens)
    separates tokens instead of vanishing: "five-part" holds "five", "(2025–2026)”" holds "2025–2026"."""
    text = "".join(ch if ch in ".,'’‘–-" or not unicodedata.category(ch).startswith("P") else " " for ch in s)
    text = re.sub(r"[’‘]", "", text)
    text = re.sub(r"(?<=\D)[–-]|[–-](?=\D)", " ", text)
    return normalize_answer(text)


def answer_recall(text: str, golds: str | Sequence[str]) -> float:
    """1.0 if some normalised gold answer occurs in the normalised ``text`` on token boundaries.

    Unlike EM/F1 it treats Unicode punctuation and hyphens as token breaks (see `_normalize_loose`).
    The gold's tokens must appear contiguously and as whole tokens, so ``"cat"``
    is found in ``"the cat sat"`` but not in ``"concatenate"``. Useful for long,
    free-form generated answers where EM is too strict and F1 is diluted by
    extra words. Golds that normalise to nothing (e.g. ``"the"``) never match.
    """
    haystack = f" {_normalize_loose(text)} "
    for gold in _as_golds(golds):
        needle = _normalize_loose(gold)
        # Tokens contain no spaces, so a space-padded substring match is exactly a
        # contiguous token-subsequence match.
        if needle and f" {needle} " in haystack:
            return 1.0
    return 0.0


def list_recall(text: str, members: Sequence[str | Sequence[str]]) -> float:
    """Share of ``members`` present in ``text`` (each tested with :func:`answer_recall`).

    For list questions ("name the three ..."). Each member is either a string or
    a list of acceptable aliases for that member. No members gives 0.0.
    """
    return mean(answer_recall(text, member) for member in members)
