"""Tests for rag.evaluation.

Retrieval metrics are cross-checked against pytrec_eval (trec_eval, including its
tie-breaking) and ranx on randomised graded qrels/runs; answer metrics against a
verbatim copy of the official SQuAD v1.1 evaluation functions plus hand-computed values.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter

import pytest

from rag.evaluation import (
    answer_recall,
    evaluate,
    evaluate_per_query,
    exact_match,
    hit_at_k,
    list_recall,
    mean,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    parse_metric,
    precision_at_k,
    rank_documents,
    ranked_metrics,
    recall_at_k,
    spans_overlap,
    token_f1,
)

TOL = 1e-6
N_SEEDS = 30  # x 20 queries = 600 random rankings per reference implementation

# Our metric -> pytrec_eval measure key. mrr@10 is checked separately (recip_rank has no cutoff).
PYTREC_MEASURES = {"ndcg_cut.5,10", "recall.10,100", "P.1,5,10", "success.1,3,10", "recip_rank"}
PYTREC_KEYS = {
    "ndcg@5": "ndcg_cut_5",
    "ndcg@10": "ndcg_cut_10",
    "recall@10": "recall_10",
    "recall@100": "recall_100",
    "precision@1": "P_1",
    "precision@5": "P_5",
    "precision@10": "P_10",
    "hit@1": "success_1",
    "hit@3": "success_3",
    "hit@10": "success_10",
    "mrr": "recip_rank",
}
RANX_KEYS = {
    "ndcg@10": "ndcg@10",
    "ndcg@3": "ndcg@3",
    "recall@100": "recall@100",
    "recall@5": "recall@5",
    "mrr@10": "mrr@10",
    "mrr@3": "mrr@3",
    "hit@1": "hit_rate@1",
    "hit@5": "hit_rate@5",
    "precision@5": "precision@5",
    "precision@20": "precision@20",
}


# --------------------------------------------------------------------------- random data


def random_case(seed: int, n_queries: int = 20) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Graded qrels and a run with ties, unretrieved relevant docs, short lists, missing/extra queries."""
    rng = random.Random(seed)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for qi in range(n_queries):
        qid = f"q{qi}"
        pool = [f"d{j}" for j in range(rng.randint(3, 220))]  # unpadded ids: "d10" < "d9"
        judged = rng.sample(pool, rng.randint(0, min(len(pool), 15)))
        qrels[qid] = {d: rng.choice([0, 0, 1, 1, 2, 3]) for d in judged}
        roll = rng.random()
        if roll < 0.08:
            continue  # query missing from the run
        n_ret = 0 if roll < 0.12 else rng.randint(1, min(len(pool), 150))
        retrieved = rng.sample(pool, n_ret)
        mode = rng.choice(["int", "coarse", "float", "const"])
        if mode == "int":  # heavy ties
            run[qid] = {d: float(rng.randint(0, 4)) for d in retrieved}
        elif mode == "coarse":
            run[qid] = {d: round(rng.random(), 1) for d in retrieved}
        elif mode == "float":
            run[qid] = {d: rng.random() for d in retrieved}
        else:  # everything tied: order decided by doc id alone
            run[qid] = dict.fromkeys(retrieved, 1.0)
    run["q_extra"] = {"d1": 1.0}  # not in qrels: must be ignored
    return qrels, run


def evaluable(qrels: dict[str, dict[str, int]]) -> list[str]:
    return [q for q, docs in qrels.items() if any(g >= 1 for g in docs.values())]


def trec_order(scores: dict[str, float]) -> list[str]:
    """trec_eval ordering written independently: score desc, then docno desc (strcmp)."""
    items = list(scores.items())
    items.sort(key=lambda kv: kv[0], reverse=True)  # stable sort: secondary key first
    items.sort(key=lambda kv: kv[1], reverse=True)
    return [d for d, _ in items]


# --------------------------------------------------------------------------- pytrec_eval


@pytest.mark.parametrize("seed", range(N_SEEDS))
@pytest.mark.slow
def test_matches_pytrec_eval(seed: int) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = random_case(seed)
    qids = evaluable(qrels)
    metrics = [*PYTREC_KEYS, "mrr@10"]
    ours = evaluate_per_query(qrels, run, metrics)
    assert sorted(ours) == sorted(qids)

    ref = pytrec_eval.RelevanceEvaluator(qrels, PYTREC_MEASURES).evaluate(run)
    run10 = {q: {d: run[q][d] for d in trec_order(run[q])[:10]} for q in run}
    ref10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run10)

    for qid in qids:
        for metric, key in PYTREC_KEYS.items():
            expected = ref[qid][key] if qid in ref else 0.0
            assert ours[qid][metric] == pytest.approx(expected, abs=TOL), (seed, qid, metric)
        expected = ref10[qid]["recip_rank"] if qid in ref10 else 0.0
        assert ours[qid]["mrr@10"] == pytest.approx(expected, abs=TOL), (seed, qid, "mrr@10")

    means = evaluate(qrels, run, metrics)
    for metric, key in PYTREC_KEYS.items():
        expected = sum(ref[q][key] if q in ref else 0.0 for q in qids) / len(qids)
        assert means[metric] == pytest.approx(expected, abs=TOL), (seed, metric)


def test_pytrec_eval_tie_convention() -> None:
    """pytrec_eval ranks tied docs by doc id descending; so do we."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0, "d10": 0.5, "d9": 0.5}}
    for rel in ["a", "b", "c", "d10", "d9"]:
        qrels = {"q": {rel: 1}}
        ref = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"]
        assert evaluate(qrels, run, ["mrr"])["mrr"] == pytest.approx(ref)
    assert rank_documents(run["q"]) == ["c", "b", "a", "d9", "d10"]


# --------------------------------------------------------------------------- ranx


@pytest.mark.parametrize("seed", range(N_SEEDS))
@pytest.mark.filterwarnings("ignore:unsafe cast")
@pytest.mark.slow
def test_matches_ranx(seed: int) -> None:
    """ranx's order of tied docs is unspecified (numba argsort), so feed it tie-free rescored runs."""
    ranx = pytest.importorskip("ranx")
    qrels, run = random_case(seed)
    qids = evaluable(qrels)
    metrics = list(RANX_KEYS)
    ours = evaluate(qrels, run, metrics)

    untied = {q: {d: float(len(docs) - i) for i, d in enumerate(trec_order(docs))} for q, docs in run.items() if docs}
    r_qrels = ranx.Qrels({q: qrels[q] for q in qids})
    r_run = ranx.Run(untied).make_comparable(r_qrels)  # adds missing queries as empty rankings
    ref = ranx.evaluate(r_qrels, r_run, list(RANX_KEYS.values()), return_mean=False)
    ranx_qids = list(r_run.get_query_ids())  # order of ranx's per-query arrays
    assert sorted(ranx_qids) == sorted(qids)
    per_query = evaluate_per_query(qrels, run, metrics)
    for metric, key in RANX_KEYS.items():
        for qid, value in zip(ranx_qids, ref[key], strict=True):
            assert per_query[qid][metric] == pytest.approx(float(value), abs=TOL), (seed, qid, metric)
        assert ours[metric] == pytest.approx(float(ref[key].mean()), abs=TOL), (seed, metric)
    # Same numbers whether the run is tied or rescored to our order.
    assert evaluate(qrels, untied, metrics) == pytest.approx(ours, abs=1e-12)


# --------------------------------------------------------------------------- retrieval: known values & API


QRELS_Q = {"a": 3, "b": 2, "c": 1, "d": 0, "e": 1}
RUN_Q = {"d": 0.9, "c": 0.8, "x": 0.7, "a": 0.6}  # ranks: d(0) c(1) x(0) a(3); b, e never retrieved


def test_known_values() -> None:
    assert hit_at_k(QRELS_Q, RUN_Q, 1) == 0.0
    assert hit_at_k(QRELS_Q, RUN_Q, 2) == 1.0
    assert mrr_at_k(QRELS_Q, RUN_Q, 1) == 0.0
    assert mrr_at_k(QRELS_Q, RUN_Q, 10) == 0.5
    assert recall_at_k(QRELS_Q, RUN_Q, 3) == 0.25
    assert recall_at_k(QRELS_Q, RUN_Q, 100) == 0.5
    assert precision_at_k(QRELS_Q, RUN_Q, 4) == 0.5
    assert precision_at_k(QRELS_Q, RUN_Q, 10) == pytest.approx(0.2)  # denominator is k, not 4
    dcg = 1 / math.log2(3) + 3 / math.log2(5)
    idcg4 = 3 + 2 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)  # ideal = all judged relevant docs
    assert ndcg_at_k(QRELS_Q, RUN_Q, 4) == pytest.approx(dcg / idcg4)
    assert ndcg_at_k(QRELS_Q, RUN_Q, 10) == pytest.approx(dcg / idcg4)
    assert ndcg_at_k(QRELS_Q, RUN_Q, 2) == pytest.approx((1 / math.log2(3)) / (3 + 2 / math.log2(3)))
    assert ndcg_at_k(QRELS_Q, ["a", "b", "c", "e"], 10) == pytest.approx(1.0)


def test_sequence_rankings_and_ranked_metrics() -> None:
    ranking = ["d", "c", "x", "a", "c"]  # duplicate "c" is ignored
    for k in (1, 2, 3, 4, 10, None):
        from_scores = ranked_metrics([QRELS_Q.get(d, 0) for d in rank_documents(RUN_Q)], list(QRELS_Q.values()), k)
        assert ndcg_at_k(QRELS_Q, ranking, k) == pytest.approx(from_scores["ndcg"])
        assert recall_at_k(QRELS_Q, ranking, k) == pytest.approx(from_scores["recall"])
        assert precision_at_k(QRELS_Q, ranking, k) == pytest.approx(from_scores["precision"])
        assert mrr_at_k(QRELS_Q, ranking, k) == from_scores["mrr"]
        assert hit_at_k(QRELS_Q, ranking, k) == from_scores["hit"]
    assert ranked_metrics([0, 2], [2], None) == {
        "hit": 1.0,
        "mrr": 0.5,
        "recall": 1.0,
        "precision": 0.5,
        "ndcg": pytest.approx(2 / math.log2(3) / 2),
    }
    assert ranked_metrics([], [], 5) == dict.fromkeys(("hit", "mrr", "recall", "precision", "ndcg"), 0.0)
    assert ranked_metrics([], [1], None)["precision"] == 0.0
    with pytest.raises(TypeError):
        ndcg_at_k(QRELS_Q, "abc", 3)
    with pytest.raises(ValueError):
        ndcg_at_k(QRELS_Q, RUN_Q, 0)
    with pytest.raises(ValueError):
        rank_documents({"a": float("nan")})


def test_evaluate_query_set_and_parsing() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 2}, "q3": {"c": 0}, "q4": {}}
    run = {"q1": {"a": 1.0}, "q3": {"c": 1.0}, "zz": {"a": 1.0}}
    # q2 missing from run counts as 0; q3/q4 have no relevant doc and are excluded; zz ignored.
    assert evaluate(qrels, run, ["hit@1", "MRR@10", "p@1", "hit_rate@3", "ndcg"]) == {
        "hit@1": 0.5,
        "MRR@10": 0.5,
        "p@1": 0.5,
        "hit_rate@3": 0.5,
        "ndcg": 0.5,
    }
    assert set(evaluate_per_query(qrels, run, ["ndcg@10"])) == {"q1", "q2"}
    assert evaluate({}, run, ["ndcg@10"]) == {"ndcg@10": 0.0}
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric("recall") == ("recall", None)
    assert parse_metric(" Success@5 ") == ("hit", 5)
    for bad in ["map@10", "ndcg@0", "ndcg@x", "ndcg@", "recall@-1"]:
        with pytest.raises(ValueError):
            parse_metric(bad)


# --------------------------------------------------------------------------- answers: official SQuAD v1.1


def official_normalize_answer(s):  # verbatim from SQuAD v1.1 evaluate-v1.1.py
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def official_exact_match_score(prediction, ground_truth):
    return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def official_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


WORDS = [
    "The",
    "a",
    "an",
    "cat",
    "Cat's",
    "sat",
    "on",
    "mat",
    "mat.",
    "U.S.",
    "e-mail",
    "Über",
    "café",
    "theory",
    "another",
    "—",
    "(1994)",
    "1,000",
    "A.",
    "THE",
    "\tnew",
    "York",
    "!",
    "",
    "  ",
]


def test_matches_official_squad_script() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        pred = " ".join(rng.choices(WORDS, k=rng.randint(0, 8)))
        golds = [" ".join(rng.choices(WORDS, k=rng.randint(0, 5))) for _ in range(rng.randint(1, 3))]
        assert normalize_answer(pred) == official_normalize_answer(pred)
        em = official_metric_max_over_ground_truths(official_exact_match_score, pred, golds)
        f1 = official_metric_max_over_ground_truths(official_f1_score, pred, golds)
        assert exact_match(pred, golds) == float(em)
        assert token_f1(pred, golds) == pytest.approx(f1, abs=1e-12)


def test_squad_known_values() -> None:
    assert normalize_answer("The  Cat's hat!") == "cats hat"
    assert normalize_answer("An apple a day, THE end.") == "apple day end"
    assert normalize_answer("U.S. e-mail") == "us email"
    assert normalize_answer("theory another") == "theory another"  # articles only as whole words
    assert exact_match("the Eiffel Tower.", ["Big Ben", "Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert exact_match("anything", []) == 0.0
    # pred tokens [cat, sat, on, mat], gold [cat, on, mat]: P = 3/4, R = 1 -> F1 = 6/7
    assert token_f1("The cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    assert token_f1("The cat sat on the mat", ["dog", "cat on mat", "sat"]) == pytest.approx(6 / 7)
    # multiplicity: pred [a1, a1], gold [a1]: common 1 -> P = 1/2, R = 1 -> F1 = 2/3
    assert token_f1("paris paris", "paris") == pytest.approx(2 / 3)
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("the", "a") == 0.0  # SQuAD v1.1 quirk: both empty after normalisation
    assert exact_match("the", "a") == 1.0
    assert token_f1("x", []) == 0.0


def test_answer_recall_and_list_recall() -> None:
    assert answer_recall("I like to concatenate strings", "cat") == 0.0
    assert answer_recall("The cat.", "cat") == 1.0
    assert answer_recall("She moved to New York City in 1994.", ["Boston", "new york"]) == 1.0
    assert answer_recall("She moved to York, New England", "New York") == 0.0  # must be contiguous
    assert answer_recall("born in the U.S. in 1950", "US") == 1.0
    assert answer_recall("cats and dogs", "cat") == 0.0
    assert answer_recall("anything at all", "the") == 0.0  # gold normalising to nothing never matches
    assert answer_recall("anything", []) == 0.0
    text = "The capitals are Paris, NYC and Madrid."
    assert list_recall(text, ["Paris", ["New York", "NYC"], "Rome"]) == pytest.approx(2 / 3)
    assert list_recall(text, ["paris", "madrid"]) == 1.0
    assert list_recall(text, []) == 0.0


def test_spans_overlap_and_mean() -> None:
    assert spans_overlap(0, 10, 5, 15)
    assert spans_overlap(5, 15, 0, 10)
    assert spans_overlap(0, 10, 2, 3)
    assert not spans_overlap(0, 10, 10, 20)  # half-open: touching is not overlapping
    assert not spans_overlap(0, 10, 20, 30)
    assert not spans_overlap(3, 3, 0, 10)  # empty span
    assert mean([]) == 0.0
    assert mean(x for x in [1.0, 2.0, 4.0]) == pytest.approx(7 / 3)
