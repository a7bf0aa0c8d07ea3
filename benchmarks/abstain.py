"""When does the extractive answerer say "the corpus does not say"? Both abstention thresholds swept.

    .venv/bin/python benchmarks/abstain.py [--squad N]

The answerer abstains when the best sentence's support is below `abstain_threshold`, or when the span
reader's best span in any passage read beats "no answer" by less than `span_abstain_margin` (for a
question that asks for a kind of answer, an amount, a date, a name: its best span of that kind). One pass
records both values for every question (answered with both thresholds off), then the pair is swept
without re-asking, over five question sets:

* `eval/qa.jsonl` over corpus/ (news on AI policy): unanswerable (on-topic) abstained, answerable
  wrongly abstained;
* `eval/qa2.jsonl` over eval/corpus2/ (Python Enhancement Proposals): the same two shares;
* off-topic: N SQuAD v1.1 dev questions asked of the corpus/ index (all should abstain);
* SQuAD answerable: N questions of the held-out (odd-numbered) articles asked of the SQuAD paragraph
  index (wrongly abstained);
* SQuAD gold removed: the same N questions with their gold paragraph taken out of the results, so the
  rest of the article is still there (on-topic, answer absent: abstained).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_data import REPO, cache_dir, doc_of
from bench_common import add_set_option, apply_sets, markdown_table
from squad import SQUAD_DEV, _slug, read_squad, squad_index
from train_reader import held_out_titles

from rag.assistant import Assistant
from rag.config import Settings
from rag.evalsuite import read_qa
from rag.indexer import build_index
from rag.store import IndexStore

SUPPORT = [0.25, 0.3, 0.35]
MARGINS = [-99.0, -12.0, -10.0, -8.0, -6.0, -4.0, -2.0, 0.0]
NEVER = -1e9  # a threshold that never abstains: used while recording


def record(answer) -> tuple[float, float, float]:
    """(support, span margin, margin of the best span of the kind asked for)."""
    def value(m):
        return m if m is not None else float("inf")
    return answer.support, value(answer.span_margin), value(answer.typed_margin)


def share(values: list[tuple[float, float, float]], support: float, margin: float, typed: bool = True) -> float:
    return sum(s < support or (t if typed else m) < margin for s, m, t in values) / max(len(values), 1)


def eval_set(settings: Settings, qa: Path, corpus: Path, name: str):
    index = cache_dir(f"abstain-{name}")
    build_index([corpus], index, settings)
    assistant = Assistant(IndexStore.open(index), settings)
    items = read_qa(qa)
    return (assistant, [record(assistant.answer(i.question)) for i in items if not i.answerable],
            [record(assistant.answer(i.question)) for i in items if i.answerable])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--squad", type=int, default=300, help="SQuAD questions asked (held-out articles, spread out)")
    add_set_option(ap)
    args = ap.parse_args()
    defaults = apply_sets(Settings(), args.set, ap)
    settings = defaults.replace(abstain_threshold=NEVER, span_abstain_margin=NEVER)
    on_corpus, qa_un, qa_ans = eval_set(settings, REPO / "eval" / "qa.jsonl", REPO / "corpus", "corpus")
    _, qa2_un, qa2_ans = eval_set(settings, REPO / "eval" / "qa2.jsonl", REPO / "eval" / "corpus2", "corpus2")

    paragraphs, squad = read_squad(SQUAD_DEV)
    held = {_slug(t) for t in held_out_titles(SQUAD_DEV)}
    squad = [q for q in squad if q[2].rsplit("-", 1)[0] in held]
    sample = squad[:: max(len(squad) // args.squad, 1)][: args.squad]
    offtopic = [record(on_corpus.answer(q)) for _, q, _, _ in sample]
    on_squad = Assistant(IndexStore.open(squad_index(paragraphs, settings)[0]), settings)
    answerable, removed = [], []
    for _, q, pid, _ in sample:
        answerable.append(record(on_squad.answer(q)))
        vectors, tokens, pieces = on_squad.embedder.embed_tokens([q])
        hits = on_squad.retriever.search(q, top_k=defaults.top_k + 4, query_vector=vectors[0])
        hits = [h for h in hits if doc_of(h.chunk.source) != pid][: defaults.top_k]
        removed.append(record(on_squad.extractive.answer(q, hits, vectors[0], query_tokens=(tokens[0], pieces[0]))))

    print(f"\n{len(qa_un) + len(qa_ans)} eval/qa.jsonl, {len(qa2_un) + len(qa2_ans)} eval/qa2.jsonl and "
          f"{len(sample)} held-out SQuAD dev questions; defaults: abstain_threshold {defaults.abstain_threshold}, "
          f"span_abstain_margin {defaults.span_abstain_margin}\n")
    for typed in (True, False):
        rows = []
        for t in SUPPORT:
            for m in MARGINS:
                default = typed and abs(t - defaults.abstain_threshold) < 1e-9 \
                    and abs(m - defaults.span_abstain_margin) < 1e-9
                rows.append([f"{t} / {m}" + (" (default)" if default else ""),
                             *(f"{share(v, t, m, typed):.3f}" for v in (qa_un, qa_ans, qa2_un, qa2_ans, offtopic,
                                                                         removed, answerable))])
        print("\nspan margin: " + ("of the best span of the kind asked for (what the answerer uses)" if typed
                                    else "of the best span of any kind (for comparison)") + "\n")
        print(markdown_table(["support / span margin", "qa: unanswerable abstained", "qa: answerable wrongly",
                              "qa2: unanswerable abstained", "qa2: answerable wrongly", "off-topic abstained",
                              "SQuAD gold removed abstained", "SQuAD answerable wrongly"], rows))


if __name__ == "__main__":
    main()
