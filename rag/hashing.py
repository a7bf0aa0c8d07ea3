"""Content hashes shared by the stages (index files, shipped reader weights)."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK_BYTES = 1 << 20  # read files in 1 MB blocks: bounded memory, no measurable cost


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(BLOCK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
