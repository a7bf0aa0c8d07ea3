"""Shared helpers for the benchmarks: an Embeddings wrapper for the LangChain peer, percentiles, load, threads."""

from __future__ import annotations

import os
import warnings

import numpy as np
from langchain_core.embeddings import Embeddings

# langchain_community warns on import that it is being sunset; the peer is measured as shipped
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*deprecated.*")


class EmbedderEmbeddings(Embeddings):
    """A LangChain Embeddings over our Embedder: same model, same normalisation, same batch size."""

    def __init__(self, embedder):
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text).tolist()


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def metric_rows(qrels: dict, runs: dict, metrics: list[str]) -> list[list[str]]:
    """One row per named run: its name, then each metric to 4 decimals."""
    from rag.evaluation import evaluate

    return [[name, *(f"{m[k]:.4f}" for k in metrics)] for name, run in runs.items()
            for m in [evaluate(qrels, run, metrics)]]


def percentiles(ms: list[float]) -> tuple[float, float]:
    """(p50, p95) of a list of milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def load() -> str:
    """The 1/5/15-minute load averages, for the report (other jobs share this machine)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(n: int | None) -> str:
    """Set torch's intra-op threads (None keeps torch's default); returns the count in use, for the report."""
    import torch

    if n:
        torch.set_num_threads(n)
    return str(torch.get_num_threads())


def add_set_option(ap) -> None:
    """`--set NAME=VALUE` (repeatable): override any setting of `rag.config.Settings` for this run."""
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override any setting, e.g. --set span_weight=0.5 (repeatable)")


def apply_sets(settings, items: list[str], ap):
    """`settings` with the `--set NAME=VALUE` overrides applied; a bad one is a usage error."""
    from rag.config import coerce_setting

    try:
        overrides = dict(item.split("=", 1) for item in items)
        return settings.replace(**{k: coerce_setting(k, v) for k, v in overrides.items()})
    except (ValueError, TypeError) as e:
        ap.error(f"--set NAME=VALUE: {e}")
