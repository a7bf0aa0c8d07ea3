"""Shared fixtures: the real embedder (loaded once per session) and a real index of `corpus/`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.config import Settings, default_model_path
from rag.embeddings import get_embedder
from rag.indexer import build_index

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
SCIFACT = ROOT.parent / "shared" / "benchmarks" / "scifact" / "corpus.jsonl"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Plain defaults (not Settings.load(), so a developer's RAG_* variables cannot leak in)."""
    return Settings()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return default_model_path()


@pytest.fixture(scope="session")
def embedder(settings, model_dir):
    """The shared all-MiniLM-L6-v2 embedder, loaded once for the whole session."""
    emb = get_embedder(model_dir, settings.batch_size)
    _ = emb.model
    return emb


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory, settings, embedder):
    """A real index of the repo's corpus/ folder, built once: (index_dir, BuildSummary).

    Tests must not modify it; copy it with `index_copy` first.
    """
    index_dir = tmp_path_factory.mktemp("corpus-index") / "index"
    summary = build_index([CORPUS], index_dir, settings)
    return index_dir, summary


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    """A private, editable copy of corpus/."""
    folder = tmp_path / "docs"
    shutil.copytree(CORPUS, folder)
    return folder


@pytest.fixture
def index_copy(tmp_path, corpus_index) -> Path:
    """A private copy of the session's corpus index (same generation, same files)."""
    target = tmp_path / "index"
    shutil.copytree(corpus_index[0], target)
    return target


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child `rag` process: offline, no RAG_* settings from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.update(extra)
    return env


@pytest.fixture
def run_rag(tmp_path):
    """Run `python -m rag.cli ARGS...` in tmp_path (so no rag.toml is picked up); returns the result."""

    def run(*args: str | os.PathLike, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rag.cli", *map(str, args)], cwd=tmp_path,
                              env=subprocess_env(**(env or {})), capture_output=True, text=True, timeout=timeout)

    return run


# `make quick` (pytest -m "not slow") leaves these out: servers, browsers, `rag` subprocesses, the local LLM
SLOW_MODULES = {"test_app_browser.py", "test_app_api.py", "test_local_llm_runtime.py", "test_llm_gguf.py",
                "test_fuzz.py"}
SLOW_FIXTURES = {"run_rag"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
