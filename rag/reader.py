"""The answer-sentence reader: does this sentence answer this question? A cross-encoder.

The question and one sentence are read together, as one input ([CLS] question [SEP] sentence [SEP]),
so every word of the question attends to every word of the sentence. The embedder cannot do this: it
encodes them apart. The reader is the shipped all-MiniLM-L6-v2 with its upper layers fine-tuned and a
one-unit head on the mean of its outputs. It was trained by `benchmarks/train_reader.py` on half of the
SQuAD v1.1 dev articles. Only what training changed ships, in `rag/reader/reader.safetensors`: for
each trained weight matrix, the difference from the base model as two rank-64 float16 factors (the
differences are small and nearly low-rank: the truncation changes the held-out answer-sentence choice
for 1 question in 482), and the trained vectors and head whole. They are added to the base model,
whose hash `reader.json` records.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from .embeddings import offline_env
from .hashing import file_sha256

READER_DIR = Path(__file__).resolve().parent / "reader"
WEIGHTS = "reader.safetensors"
CONFIG = "reader.json"
DELTA_RANK = 64
DELTA_U, DELTA_V = ".delta_u", ".delta_v"  # a matrix's change from the base model is DELTA_U @ DELTA_V


class ReaderError(Exception):
    """The reader's weights are missing or do not fit the base model."""


class Reader:
    """Scores (question, sentence) pairs: the probability that the sentence holds the answer."""

    weights_file = WEIGHTS
    config_file = CONFIG
    config_extra = {"pooling": "mean"}

    def __init__(self, model, tokenizer, frozen: int, max_length: int = 256, base_sha256: str = "",
                 base_dir: Path | None = None):
        self.model = model
        self.base_dir = base_dir
        self.tokenizer = tokenizer
        self.frozen = frozen
        self.max_length = max_length
        self.base_sha256 = base_sha256
        # a fast tokenizer is not safe to call from several threads at once (the web app's workers)
        self._tokenize_lock = threading.Lock()

    @classmethod
    def untrained(cls, base_dir: str | Path, frozen: int = 2) -> Reader:
        """The base model with a fresh head; the embeddings and the lower `frozen` layers do not train."""
        import torch

        offline_env()
        from transformers import AutoModel, AutoTokenizer

        base_dir = Path(base_dir)
        encoder = AutoModel.from_pretrained(str(base_dir), local_files_only=True)
        model = cls._module(encoder)
        for name, p in model.named_parameters():
            p.requires_grad = _trains(name, frozen)
        torch.nn.init.normal_(model.head.weight, std=0.02)
        torch.nn.init.zeros_(model.head.bias)
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
        return cls(model, tokenizer, frozen, base_sha256=file_sha256(base_dir / "model.safetensors"),
                   base_dir=base_dir)

    @classmethod
    def load(cls, base_dir: str | Path, reader_dir: str | Path = READER_DIR) -> Reader:
        """The trained reader: the base model with the saved layers and head put over it."""
        from safetensors.torch import load_file

        reader_dir, base_dir = Path(reader_dir), Path(base_dir)
        try:
            config = json.loads((reader_dir / cls.config_file).read_text(encoding="utf-8"))
            weights = load_file(str(reader_dir / cls.weights_file))
        except (OSError, ValueError) as e:
            raise ReaderError(f"cannot read the reader in {reader_dir}: {e}") from None
        reader = cls.untrained(base_dir, frozen=int(config["frozen"]))
        if config.get("base_sha256") != reader.base_sha256:
            raise ReaderError(f"the reader in {reader_dir} was trained on another base model than {base_dir}")
        state = reader.model.state_dict()
        missing = [k for k in weights if k.removesuffix(DELTA_U).removesuffix(DELTA_V) not in state]
        if missing:
            raise ReaderError(f"the reader in {reader_dir} has weights the base model lacks: {missing[:3]}")
        new = {k: v.float() for k, v in weights.items() if not k.endswith((DELTA_U, DELTA_V))}
        try:
            for k in weights:
                if k.endswith(DELTA_U):
                    name = k.removesuffix(DELTA_U)
                    new[name] = state[name] + weights[k].float() @ weights[name + DELTA_V].float()
            reader.model.load_state_dict(new, strict=False)
        except (KeyError, RuntimeError) as e:
            raise ReaderError(f"the reader in {reader_dir} does not fit the base model: {e}") from None
        reader.max_length = int(config.get("max_length", reader.max_length))
        reader.model.eval()
        for p in reader.model.parameters():
            p.requires_grad = False
        return reader

    def save(self, out_dir: str | Path, meta: dict | None = None, rank: int = DELTA_RANK) -> None:
        """What training changed, in float16, and the settings needed to rebuild the reader.

        A trained matrix is stored as its difference from the base model truncated to `rank` (two
        factors, by SVD), unless that is not smaller than the matrix; `rank=0` stores every tensor whole.
        """
        import torch
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        base = type(self).untrained(self.base_dir, self.frozen).model.state_dict() if rank else {}
        trained = {}
        for name, p in self.model.named_parameters():
            if not _trains(name, self.frozen):
                continue
            w = p.detach().float()
            if rank and w.dim() == 2 and rank * sum(w.shape) < w.numel():
                u, s, vh = torch.linalg.svd(w - base[name], full_matrices=False)
                trained[name + DELTA_U] = (u[:, :rank] * s[:rank]).to(torch.float16).contiguous()
                trained[name + DELTA_V] = vh[:rank].to(torch.float16).contiguous()
            else:
                trained[name] = w.to(torch.float16).contiguous()
        save_file(trained, str(out_dir / self.weights_file))
        config = {"frozen": self.frozen, "max_length": self.max_length, "base_sha256": self.base_sha256,
                  "delta_rank": rank, **self.config_extra, **(meta or {})}
        (out_dir / self.config_file).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def _module(encoder):
        """The trainable network over the encoder: here a one-unit head on the mean of its outputs."""
        return head_class(1, pooled=True)(encoder)

    def logits(self, questions: list[str], sentences: list[str]):
        """One logit per pair (a torch tensor; gradients flow when the model trains)."""
        with self._tokenize_lock:
            batch = self.tokenizer(questions, sentences, padding=True, truncation="longest_first",
                                   max_length=self.max_length, return_tensors="pt")
        return self.model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))

    def scores(self, question: str, sentences: list[str], batch_size: int = 16) -> np.ndarray:
        """The probability, for each sentence, that it holds the answer to the question."""
        import torch

        if not sentences:
            return np.zeros(0, dtype=np.float32)
        out = []
        with torch.inference_mode():
            # sorted by length: each batch is padded only to its own longest pair
            order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                out.append((idx, torch.sigmoid(self.logits([question] * len(idx), [sentences[j] for j in idx]))))
        probs = np.zeros(len(sentences), dtype=np.float32)
        for idx, p in out:
            probs[idx] = p.numpy()
        return probs


def _trains(name: str, frozen: int) -> bool:
    """Whether a parameter trains: the head and the transformer layers from number `frozen` up."""
    prefix = "encoder.encoder.layer."
    if name.startswith(prefix):
        return int(name[len(prefix):].split(".")[0]) >= frozen
    return name.startswith("head.")


def head_class(outputs: int, pooled: bool):
    """A torch module: the encoder with a linear head of `outputs` units, over the mask-weighted mean of
    its token outputs (`pooled`, one score per pair) or over each token (e.g. start/end logits)."""
    import torch

    class EncoderHead(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, outputs)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            if pooled:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).squeeze(-1)
            logits = self.head(hidden)
            return tuple(logits[..., i] for i in range(outputs))

    return EncoderHead


_cache: dict[str, Reader] = {}
_lock = threading.Lock()


def get_reader(base_dir: str | Path, reader_dir: str | Path = READER_DIR, kind: type[Reader] = Reader) -> Reader:
    """One shared reader of each kind per process (loading takes about a second)."""
    key = f"{kind.__name__}|{Path(base_dir).resolve()}|{Path(reader_dir).resolve()}"
    with _lock:
        if key not in _cache:
            _cache[key] = kind.load(base_dir, reader_dir)
        return _cache[key]
