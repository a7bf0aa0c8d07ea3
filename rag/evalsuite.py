"""`rag eval`: retrieval, answer, citation and abstention quality over a Q&A file.

The Q&A file is JSON Lines: {"id", "question", "answers": [...], "doc", "evidence"} (plus optional
"type" and "list"). A retrieved passage is relevant when it comes from `doc` (file name, with or
without extension) and overlaps the `evidence` span. Unanswerable questions have answers [] and
doc/evidence null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .answering import Answer
from .evaluation import (
    answer_recall,
    evaluate_per_query,
    exact_match,
    list_recall,
    mean,
    normalize_answer,
    spans_overlap,
    token_f1,
)

RETRIEVAL_METRICS = ["hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10"]
# metrics where lower is better (for --max and for the report's wording)
LOWER_IS_BETTER = {"answerable_wrongly_abstained"}


class EvalError(ValueError):
    """The Q&A file or its documents cannot be evaluated; the message says why."""


@dataclass
class QAItem:
    id: str
    question: str
    answers: list[str]
    doc: str | None
    evidence: str | None
    type: str = ""
    is_list: bool = False

    @property
    def answerable(self) -> bool:
        return bool(self.answers) and self.doc is not None


@dataclass
class EvalResult:
    overall: dict[str, float]
    per_question: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def read_qa(path: str | Path) -> list[QAItem]:
    """Parse and check a Q&A file; raises EvalError naming the bad line."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"no Q&A file at {path}")
    items, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
            raise EvalError(f"{path}:{n}: each line needs a non-empty \"question\"")
        answers = row.get("answers") or []
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise EvalError(f"{path}:{n}: \"answers\" must be a list of strings")
        qid = str(row.get("id", f"line{n}"))
        if qid in seen:
            raise EvalError(f"{path}:{n}: duplicate id {qid!r}")
        seen.add(qid)
        if answers and (not row.get("doc") or not row.get("evidence")):
            raise EvalError(f"{path}:{n}: an answerable question needs \"doc\" and \"evidence\"")
        items.append(QAItem(qid, row["question"], answers, row.get("doc") or None, row.get("evidence") or None,
                            str(row.get("type", "")), bool(row.get("list", False))))
    if not items:
        raise EvalError(f"{path} holds no questions")
    return items


def _find_source(doc: str, sources: list[str]) -> str | None:
    for s in sources:
        name = s.rsplit("/", 1)[-1]
        if doc in (s, name) or Path(name).stem == doc or Path(s).with_suffix("").as_posix() == doc:
            return s
    return None


def evaluate_assistant(assistant, items: list[QAItem], top_k: int = 10, mode: str | None = None,
                       progress: bool = False) -> EvalResult:
    """Ask every question and score retrieval, answers, citations and abstention."""
    store = assistant.store
    sources = list(store.documents())
    doc_cache: dict[str, str] = {}
    rows = []
    iterator = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc="Evaluating", unit="q", leave=False)
    for item in iterator:
        ans: Answer = assistant.answer(item.question, top_k=top_k, mode=mode)
        row: dict = {"id": item.id, "question": item.question, "type": item.type, "answerable": item.answerable,
                     "gold": item.answers, "answer": ans.text, "abstained": ans.abstained, "support": ans.support,
                     "short_answer": ans.short_answer.text if ans.short_answer else None,
                     "citations": [{"n": c.n, "source": c.source, "start": c.start, "end": c.end, "quote": c.quote}
                                   for c in ans.citations],
                     "ranks": []}
        if item.answerable:
            source = _find_source(item.doc, sources)
            if source is None:
                raise EvalError(f"question {item.id}: document {item.doc!r} is not in the index")
            text = doc_cache.setdefault(source, store.document(source).text)
            ev_start = text.find(item.evidence)
            if ev_start < 0:
                raise EvalError(f"question {item.id}: the evidence is not an exact substring of {source}")
            ev_end = ev_start + len(item.evidence)

            def relevant(src: str, s: int, e: int) -> bool:
                return src == source and spans_overlap(s, e, ev_start, ev_end)  # noqa: B023

            qrels = {c.id: 1 for c in store.all_chunks() if relevant(c.source, c.start, c.end)}
            ranking = [p.chunk_id for p in ans.passages]
            row["ranks"] = [p.rank for p in ans.passages if relevant(p.source, p.start, p.end)]
            metrics = RETRIEVAL_METRICS + [f"recall@{top_k}"]
            row.update(evaluate_per_query({"q": qrels}, {"q": ranking}, metrics)["q"])
            golds = item.answers
            row["answer_recall"] = list_recall(ans.text, golds) if item.is_list else answer_recall(ans.text, golds)
            row["token_f1"] = token_f1(ans.text, golds)
            row["exact_match"] = exact_match(ans.text, golds)
            row["short_answer_f1"] = token_f1(row["short_answer"] or "", golds)
            row["short_answer_em"] = exact_match(row["short_answer"] or "", golds)
            if item.is_list:
                row["list_recall"] = list_recall(ans.text, golds)
            cites = ans.citations
            row["citation_precision"] = (mean(1.0 if relevant(c.source, c.start, c.end) else 0.0 for c in cites)
                                         if cites else None)
            normalized_golds = [normalize_answer(g) for g in golds]
            row["answer_supported"] = float(any(g and g in normalize_answer(c.quote)
                                                for c in cites for g in normalized_golds))
            row["passed"] = (not ans.abstained and row["answer_recall"] >= 0.5 and row["hit@5"] == 1.0)
        else:
            row["passed"] = ans.abstained
        rows.append(row)
    return EvalResult(summarize(rows), rows, {"top_k": top_k, "mode": mode or assistant.settings.mode})


def summarize(rows: list[dict]) -> dict[str, float]:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    out: dict[str, float] = {"questions": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable)}
    keys = [k for k in (answerable[0] if answerable else {}) if "@" in k]
    for k in keys:
        out[k] = mean(r[k] for r in answerable)
    for k in ("answer_recall", "token_f1", "exact_match", "short_answer_f1", "short_answer_em", "answer_supported"):
        out[k] = mean(r[k] for r in answerable if not r["abstained"]) if k == "answer_supported" else \
            mean(r[k] for r in answerable)
    lists = [r for r in answerable if "list_recall" in r]
    if lists:
        out["list_recall"] = mean(r["list_recall"] for r in lists)
    precisions = [r["citation_precision"] for r in answerable if r["citation_precision"] is not None]
    out["citation_precision"] = mean(precisions)
    out["unanswerable_abstained"] = mean(1.0 if r["abstained"] else 0.0 for r in unanswerable)
    out["answerable_wrongly_abstained"] = mean(1.0 if r["abstained"] else 0.0 for r in answerable)
    out["passed"] = mean(1.0 if r["passed"] else 0.0 for r in rows)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def check_thresholds(overall: dict, minimums: dict[str, float], maximums: dict[str, float]) -> list[str]:
    """Human-readable failures for every threshold that is missed (unknown metrics fail too)."""
    failures = []
    for name, limit in minimums.items():
        if name not in overall:
            failures.append(f"{name}: no such metric")
        elif overall[name] < limit:
            failures.append(f"{name} = {overall[name]:.4f} < {limit}")
    for name, limit in maximums.items():
        if name not in overall:
            failures.append(f"{name}: no such metric")
        elif overall[name] > limit:
            failures.append(f"{name} = {overall[name]:.4f} > {limit}")
    return failures


def table(overall: dict) -> str:
    lines = ["| metric | value |", "|---|---:|"]
    for k, v in overall.items():
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    return "\n".join(lines)


def write_report(result: EvalResult, folder: str | Path, qa_path: str) -> Path:
    """report.md, results.json and plot.png (metric bars + rank distribution) in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(
        {"qa": qa_path, "settings": result.settings, "overall": result.overall, "questions": result.per_question},
        indent=1, ensure_ascii=False), encoding="utf-8")
    metrics = {k: v for k, v in result.overall.items() if isinstance(v, float)}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2, 1]})
    ax1.barh(list(metrics), list(metrics.values()), color="#4c72b0")
    ax1.set_xlim(0, 1)
    ax1.invert_yaxis()
    ax1.set_title("Metrics (higher is better, except answerable_wrongly_abstained)")
    for i, v in enumerate(metrics.values()):
        ax1.text(min(v + 0.01, 0.93), i, f"{v:.2f}", va="center", fontsize=8)
    first = [min(r["ranks"]) if r["ranks"] else 0 for r in result.per_question if r["answerable"]]
    labels = [str(i) for i in range(1, 11)] + ["miss"]
    counts = [sum(1 for f in first if f == i) for i in range(1, 11)] + [sum(1 for f in first if f == 0 or f > 10)]
    ax2.bar(labels, counts, color="#55a868")
    ax2.set_title("Rank of the first relevant passage")
    ax2.set_xlabel("rank")
    ax2.set_ylabel("questions")
    fig.tight_layout()
    fig.savefig(folder / "plot.png", dpi=80)
    plt.close(fig)
    failed = [r for r in result.per_question if not r["passed"]]
    md = [f"# Evaluation report\n\nQ&A file: `{qa_path}`; settings: `{json.dumps(result.settings)}`\n",
          table(result.overall), "\n![metrics](plot.png)\n", f"## Failed questions ({len(failed)})\n"]
    for r in failed:
        md.append(f"- **{r['id']}** {r['question']}\n  - gold: {r['gold'] or '(unanswerable)'}; "
                  f"abstained: {r['abstained']}; relevant ranks: {r['ranks']}\n  - answer: {r['answer'][:300]}")
    (folder / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return folder
