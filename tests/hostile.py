"""A folder of hostile and careless files beside two good ones, for tests and benchmarks/faults.py.

`write_hostile_folder(folder)` writes it and returns what each file must end as: a list of the
sources that must be indexed, and {source: words its skip reason must hold} for the rest. With
`full=True` the files are as large as the issue describes (a 100 MB .txt, a 45 MB .txt that chunks
past the per-file limit, a 3,000-page PDF, HTML nested 50,000 deep); without it they are smaller
versions that still cross the default limits, so the test suite stays fast.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from test_loaders import make_pdf
from test_safety import docx_bytes

GOOD_MD = """---
title: Harbour operations
---
# Harbour operations

The harbour opened in 1987 and handles forty ships a day.
Pilots board every ship over 120 metres at the outer buoy.
"""

GOOD_TXT = "Lock keeping\n\nThe canal lock is staffed from 6 am to 10 pm, and boats wait at the blue bollards.\n"

WORDS = ("harbour ship pilot buoy tide berth crane cargo lock canal quay ferry tug anchor river bridge "
         "timber grain coal salt net rope mast sail deck hull keel").split()


def _varied_text(n_bytes: int, seed: int = 7) -> str:
    """Readable, varied paragraphs of about n_bytes (so BM25 and the chunker do real work)."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_bytes:
        para = " ".join(rng.choice(WORDS) for _ in range(60)) + "."
        parts.append(para)
        size += len(para) + 2
    return "\n\n".join(parts)


def write_hostile_folder(folder: Path, full: bool = False, outside: Path | None = None) -> tuple[list[str], dict]:
    """Write the folder; return (sources that must be indexed, {source: words the skip reason holds})."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "harbour.md").write_text(GOOD_MD, encoding="utf-8")
    (folder / "lock.txt").write_text(GOOD_TXT, encoding="utf-8")
    # a docx of padding: 9 MB of spaces in 10s of KB; it loads, squeezed to its few real words
    (folder / "padding.docx").write_bytes(docx_bytes(9 * 2**20))
    # a damaged cross-reference table: pypdf rebuilds it, so the text is read
    good_pdf = make_pdf([["The tug Ada tows grain barges upriver."]], title="Tug log")
    (folder / "brokenxref.pdf").write_bytes(good_pdf.replace(b"startxref\n", b"startxref\n9"))
    indexed = ["harbour.md", "lock.txt", "padding.docx", "brokenxref.pdf"]

    expected: dict[str, tuple[str, ...]] = {}

    def bad(name: str, data: bytes | str, *words: str) -> None:
        path = folder / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        expected[name] = words

    # a zip bomb: a small .docx whose document.xml unpacks past max_unzipped_mb (200 MB)
    bad("bomb.docx", docx_bytes(210 * 2**20), "max_unzipped_mb")
    bad("pages.pdf", make_pdf([["Page of the harbour ledger."]] * (3000 if full else 2100)), "max_pages")
    depth = 50_000 if full else 5_000
    bad("deep.html", "<html><body>" + "<div>" * depth + "<p>Deep text.</p>" + "</div>" * depth + "</body></html>",
        "HTML")
    bad("random.pdf", random.Random(3).randbytes(20_000), "PDF")
    bad("random.docx", random.Random(4).randbytes(20_000), "DOCX")
    bad("latin1.txt", "Caf\xe9 au lait at the quay.".encode("latin-1"), "UTF-8")
    bad("nul.txt", b"text\x00with\x00NUL bytes" * 100, "NUL")
    bad("empty.md", b"   \n\n", "empty")
    bad("badyaml.md", "---\ntitle: [unclosed\n---\nBody text here.\n", "YAML")
    # over max_file_mb (50): skipped from its size alone, never read
    with open(folder / "huge.txt", "wb") as f:
        f.truncate((100 if full else 51) * 2**20)
    expected["huge.txt"] = ("max_file_mb",)
    # under max_file_mb but past max_chunks_per_file: chunked, never embedded
    bad("long.txt", _varied_text((45 if full else 6) * 2**20), "max_chunks_per_file")
    if outside is not None:
        outside.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
        os.symlink(outside, folder / "passwd.txt")
        expected["passwd.txt"] = ("outside",)
    return indexed, expected
