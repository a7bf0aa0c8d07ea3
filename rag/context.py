"""Document-aware index text: a chunk is embedded and BM25-indexed with its document's title and the
nearest section heading above it in front, e.g.

    PEP 664 – Python 3.11 Release Schedule
    Release schedule
    <chunk text>

so a question naming one document among near-identical siblings ("the Shanghai regulation", "the
2024 draft") can prefer the right one. Only the *indexed* text gets the prefix: the stored chunk
text and its offsets are untouched (`document.text[chunk.start:chunk.end] == chunk.text`), so
citations still point into the document.

Headings are Markdown ATX (`## Release schedule`) and setext (underlined) headings; a document
with none of those gets plain-text detection instead: a short, title-like line (no final sentence
punctuation, e.g. "Article 12 Data security", "3.11 Lifespan", "Chapter II General Provisions")
that stands alone on its line (after a blank line, a finished sentence or another heading) and is
followed by body text. The title is left out when the chunk already begins with it, the heading
when the chunk already contains it, and the whole prefix is capped at PREFIX_WORDPIECES so that
chunk + prefix fit the embedder's window (the indexer reserves that much when chunking).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .stopwords import STOPWORDS

# the prefix budget, in word-pieces: a title plus a heading is 10-25 pieces in the corpora measured
# (PEPs, news, SciFact titles: 95th percentile 27), and 256 - 32 still leaves room for a 200-token chunk
PREFIX_WORDPIECES = 32
CONTEXT_VERSION = 2  # recorded in the manifest; bump when the prefix rules change (forces a re-embed)

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_FINAL_PUNCT = tuple(".!?;:,…。！？；：，、")  # a line ending so is a sentence or a lead-in, not a heading
_CLOSERS = "\"'”’»)]"
_SENTENCE_END = tuple(".!?…。！？")  # a line ending so (before closing quotes) finished its sentence
_BODY_END = _SENTENCE_END + tuple(":;：；")  # ... or leads into what follows: running text either way
_NOT_HEADING_START = tuple("-*+•·>|=([{\"'“‘`~_/\\")  # list items, quotes, tables, rules
MAX_HEADING_WORDS = 12
MAX_HEADING_CHARS = 100


@dataclass(frozen=True)
class Heading:
    start: int  # char offset of the heading line in the document text
    end: int
    text: str  # without Markdown marks
    level: int = 1  # 1-6 for Markdown (# count; setext: = is 1, - is 2); plain-text headings are all 1


def _lines(text: str) -> list[tuple[int, int, str]]:
    """(start, end, line) for each line, without its newline."""
    out, pos = [], 0
    for line in text.split("\n"):
        out.append((pos, pos + len(line), line))
        pos += len(line) + 1
    return out


def _markdown_headings(lines) -> list[Heading]:
    found, fenced = [], False
    for i, (s, e, line) in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        m = _ATX.match(line)
        if m:
            found.append(Heading(s, e, m.group(2).strip(), len(m.group(1))))
            continue
        nxt = lines[i + 1][2] if i + 1 < len(lines) else ""
        if (_SETEXT.match(nxt) and len(nxt.strip()) >= 3 and _title_like(line)
                and (i == 0 or not lines[i - 1][2].strip())):
            found.append(Heading(s, e, line.strip(), 1 if nxt.strip()[0] == "=" else 2))
    return found


def _title_like(line: str) -> bool:
    """Short, starts like a title, and does not end like a sentence, a lead-in or a wrapped line."""
    t = line.strip()
    if (not t or len(t) > MAX_HEADING_CHARS or t.rstrip(_CLOSERS).endswith(_FINAL_PUNCT)
            or t.startswith(_NOT_HEADING_START)):
        return False
    words = t.split()
    if len(words) > MAX_HEADING_WORDS or sum(c.isalpha() for c in t) < 2:
        return False
    if t[0].isalpha() and t[0].islower():
        return False  # a sentence fragment
    return len(words) == 1 or words[-1].lower() not in STOPWORDS  # a hard-wrapped sentence piece


def _body_like(line: str) -> bool:
    """Running text: a finished sentence, or a line too long to be a heading."""
    t = line.strip()
    return bool(t) and (t.rstrip(_CLOSERS).endswith(_BODY_END) or len(t) > MAX_HEADING_CHARS
                        or len(t.split()) > MAX_HEADING_WORDS)


def _plain_headings(lines) -> list[Heading]:
    """Title-like lines that stand alone and are followed by body text.

    A line stands alone when the line before it is blank, ends a sentence or is title-like itself
    (otherwise it is the tail of a hard-wrapped sentence). Adjacent title-like lines form a run: a
    run of one or two lines followed by body text is a heading block ("Chapter II General
    Provisions" / "Article 1 Purpose"); longer runs are lists or metadata blocks, not headings. A
    one-line run followed by a heading block is a heading too (a chapter line over an article).
    """
    n = len(lines)
    cand = [False] * n
    for i, (_, _, line) in enumerate(lines):
        if _title_like(line):
            prev = lines[i - 1][2].strip() if i else ""
            cand[i] = not prev or prev.rstrip(_CLOSERS).endswith(_SENTENCE_END) or _title_like(prev)
    runs = []  # (first line, last line, first non-blank line after the run)
    i = 0
    while i < n:
        if not cand[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and cand[j + 1]:
            j += 1
        k = j + 1
        while k < n and not lines[k][2].strip():
            k += 1
        runs.append((i, j, k))
        i = j + 1
    heads: set[int] = set()
    head_runs: set[int] = set()  # first lines of runs that are headings
    for i, j, k in reversed(runs):
        if j - i > 1 or k >= n:
            continue
        if (not cand[k] and _body_like(lines[k][2])) or (i == j and k in head_runs and k - 1 > j):
            heads.update(range(i, j + 1))
            head_runs.add(i)
    return [Heading(lines[i][0], lines[i][1], lines[i][2].strip()) for i in sorted(heads)]


@lru_cache(maxsize=256)
def headings(text: str) -> tuple[Heading, ...]:
    """The section headings of a document's text, in order (Markdown ones when it has any)."""
    lines = _lines(text)
    marked = _markdown_headings(lines)
    return tuple(marked if marked else _plain_headings(lines))


@lru_cache(maxsize=256)
def _starts(text: str) -> list[int]:
    return [h.start for h in headings(text)]


def heading_path(text: str, start: int) -> list[Heading]:
    """The headings whose sections contain offset `start`, innermost first (the nearest heading at or
    above `start`, then its parents by Markdown level)."""
    hs = headings(text)
    i = bisect.bisect_right(_starts(text), start) - 1
    path: list[Heading] = []
    while i >= 0:
        if not path or hs[i].level < path[-1].level:
            path.append(hs[i])
            if hs[i].level <= 1:
                break
        i -= 1
    return path


def _norm(s: str) -> str:
    return " ".join(s.replace("#", " ").split()).casefold()


class _Tokenizer:
    """The embedder's word-piece tokenizer, used to cap the prefix (no special tokens counted)."""

    def __init__(self, model_dir: str):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids) if text else 0

    def cut(self, text: str, budget: int) -> str:
        """`text` cut to at most `budget` word-pieces (at a space when one is near)."""
        if budget <= 0:
            return ""
        enc = self._tok.encode(text, add_special_tokens=False)
        if len(enc.ids) <= budget:
            return text
        end = enc.offsets[budget - 1][1]
        nxt = enc.offsets[budget][0]
        if nxt < end or (end < len(text) and not text[end].isspace() and nxt == end):
            space = text.rfind(" ", 0, end)  # the budget ends inside a word: drop that word
            if space > 0:
                end = space
        return text[:end].rstrip()


@lru_cache(maxsize=4)
def _tokenizer(model_dir: str | None) -> _Tokenizer:
    if model_dir is None:
        from .config import default_model_path

        model_dir = str(default_model_path())
    return _Tokenizer(model_dir)


@lru_cache(maxsize=4096)
def _capped(title: str, heading: str, model_dir: str | None, budget: int) -> str:
    tok = _tokenizer(model_dir)
    n_title, n_heading = tok.count(title), tok.count(heading)
    if n_title + n_heading > budget:
        # the heading keeps up to half the budget; the title gets the rest (and gives back what it
        # does not use)
        heading_share = min(n_heading, budget // 2) if title else budget
        title = tok.cut(title, budget - heading_share)
        heading = tok.cut(heading, budget - tok.count(title))
    return "\n".join(p for p in (title, heading) if p)


def context_prefix(title: str, text: str, start: int, end: int, model_dir: str | Path | None = None,
                   budget: int = PREFIX_WORDPIECES) -> str:
    """The title and nearest heading to put in front of the chunk text[start:end] ("" if none).

    The heading is the innermost one whose section holds the chunk's start and that the chunk does not
    already contain (a chunk opening with "### Bugfix releases" gets its parent "## Release Schedule").
    """
    title = " ".join((title or "").split())
    if sum(c.isalpha() for c in title) < 2 or _norm(text[start:start + 2 * len(title) + 8]).startswith(_norm(title)):
        title = ""  # no words in it (a numeric file name), or the chunk opens with it already
    norm_title = _norm(title)
    heading = ""
    for h in heading_path(text, start):
        norm = _norm(h.text)
        if h.start >= start:
            continue  # the chunk holds this heading line already
        if norm != norm_title:
            heading = " ".join(h.text.split())
        break  # the innermost heading not in the chunk (or one that only repeats the title)
    if not title and not heading:
        return ""
    return _capped(title, heading, None if model_dir is None else str(model_dir), budget)


def index_text(title: str, text: str, start: int, end: int, model_dir: str | Path | None = None,
               budget: int = PREFIX_WORDPIECES) -> str:
    """What to embed and BM25-index for the chunk text[start:end] of a document with this title:
    the context prefix, a newline, then the chunk text."""
    prefix = context_prefix(title, text, start, end, model_dir, budget)
    return f"{prefix}\n{text[start:end]}" if prefix else text[start:end]


def index_texts(chunks: Iterable, documents: Mapping[str, tuple[str, str]], enabled: bool = True,
                model_dir: str | Path | None = None) -> list[str]:
    """The indexed text of each chunk (anything with doc_id/start/end/text); `documents` maps a
    doc_id to its (title, full text). With `enabled` False: the chunk texts themselves."""
    if not enabled:
        return [c.text for c in chunks]
    out = []
    for c in chunks:
        title, text = documents[c.doc_id]
        out.append(index_text(title, text, c.start, c.end, model_dir))
    return out


def manifest_entry() -> dict:
    """What the manifest's "chunking" dict records under "context" when the prefix is on."""
    return {"version": CONTEXT_VERSION, "prefix_wordpieces": PREFIX_WORDPIECES}


def enabled_in(manifest: dict) -> bool:
    """Whether the index described by this manifest was built with the context prefix."""
    return bool((manifest.get("chunking") or {}).get("context"))


__all__ = ["PREFIX_WORDPIECES", "Heading", "context_prefix", "enabled_in", "heading_path", "headings",
           "index_text", "index_texts", "manifest_entry"]
