"""When does the extractive answerer say "the corpus does not say"? The abstention threshold swept.

    .venv/bin/python benchmarks/abstain.py [--offtopic N]

One pass computes each question's support (the answerer abstains when support < abstain_threshold),
then the threshold is swept without re-asking:

* `eval/qa.jsonl` over corpus/ (indexed into .cache/bench/abstain-corpus): the share of its
  unanswerable (on-topic) questions abstained, and of its answerable questions wrongly abstained;
* off-topic: N SQuAD v1.1 dev questions (every k-th, about Wikipedia topics) asked of the same
  corpus/ index, where every one should abstain;
* SQuAD answerable: N SQuAD questions asked of the SQuAD paragraph index (.cache/bench/squad-v1.1-dev-*),
  where the gold paragraph is in the corpus; the share wrongly abstained.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_data import REPO, cache_dir  # noqa: E402
from bench_common import markdown_table  # noqa: E402
from squad import SQUAD_DEV, read_squad, squad_index  # noqa: E402

from rag.assistant import Assistant  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.evalsuite import read_qa  # noqa: E402
from rag.indexer import build_index  # noqa: E402
from rag.store import IndexStore  # noqa: E402

THRESHOLDS = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]


def supports(assistant: Assistant, questions: list[str]) -> list[float]:
    """Each question's support (0 when no sentence is a candidate at all: it abstains at any threshold)."""
    return [assistant.answer(q).support for q in questions]


def share_below(values: list[float], threshold: float) -> float:
    return sum(v < threshold for v in values) / max(len(values), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offtopic", type=int, default=500, help="SQuAD questions asked (off-topic and answerable)")
    args = ap.parse_args()
    settings = Settings()
    corpus_index = cache_dir("abstain-corpus")
    build_index([REPO / "corpus"], corpus_index, settings)
    on_corpus = Assistant(IndexStore.open(corpus_index), settings)
    items = read_qa(REPO / "eval" / "qa.jsonl")
    unanswerable = supports(on_corpus, [i.question for i in items if not i.answerable])
    answerable = supports(on_corpus, [i.question for i in items if i.answerable])

    paragraphs, squad = read_squad(SQUAD_DEV)
    sample = squad[:: max(len(squad) // args.offtopic, 1)][: args.offtopic]
    offtopic = supports(on_corpus, [q for _, q, _, _ in sample])
    on_squad = Assistant(IndexStore.open(squad_index(paragraphs, settings)[0]), settings)
    squad_answerable = supports(on_squad, [q for _, q, _, _ in sample])

    print(f"\nsupport of {len(items)} eval/qa.jsonl questions and {len(sample)} SQuAD dev questions; "
          f"the default abstain_threshold is {settings.abstain_threshold}\n")
    rows = []
    for t in THRESHOLDS:
        name = f"{t}" + (" (default)" if abs(t - settings.abstain_threshold) < 1e-9 else "")
        rows.append([name, f"{share_below(unanswerable, t):.3f}", f"{share_below(answerable, t):.3f}",
                     f"{share_below(offtopic, t):.3f}", f"{share_below(squad_answerable, t):.3f}"])
    print(markdown_table(["abstain_threshold", "eval: unanswerable abstained",
                          "eval: answerable wrongly abstained", "off-topic (SQuAD asked of corpus/) abstained",
                          "SQuAD answerable wrongly abstained"], rows))


if __name__ == "__main__":
    main()
