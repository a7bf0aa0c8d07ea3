"""Answers with citations: an extractive answerer (default, cannot invent text) and an optional LLM one.

Every answer sentence carries `[n]`; `citations[n-1]` names the file, the char span in that file's
text and the exact quote (`document.text[start:end] == quote`). When the passages do not support an
answer, the assistant abstains and still returns the closest passages.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .anchors import about, anchors, cover
from .chunking import sentence_spans
from .config import Settings, default_model_path
from .context import heading_path
from .embeddings import Embedder
from .reader import Reader, get_reader
from .retrieval import Hit, Retriever
from .span_reader import SpanReader
from .stopwords import QUESTION_TERMS, STOPWORDS, content_words

NOT_IN_CORPUS = "The corpus does not say."


@dataclass
class Citation:
    """A quoted span: `document(source).text[start:end] == quote`."""

    n: int
    source: str
    title: str
    chunk_id: str
    start: int
    end: int
    quote: str
    score: float


@dataclass
class ShortAnswer:
    """The span that answers the question, inside citation `n`'s quote: `document(source).text[start:end] == text`."""

    text: str
    n: int
    source: str
    start: int
    end: int
    score: float = 0.0  # the span reader's margin over "no answer"


@dataclass
class Passage:
    """A retrieved chunk as shown to the user."""

    rank: int
    source: str
    title: str
    chunk_id: str
    start: int
    end: int
    text: str
    score: float


@dataclass
class Answer:
    """An answer, its citations, whether it abstained, and the passages it was drawn from."""

    question: str
    text: str
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False
    passages: list[Passage] = field(default_factory=list)
    support: float = 0.0
    query: str = ""  # the retrieval query (a follow-up resolved against the history)
    flagged: list[str] = field(default_factory=list)  # LLM sentences dropped as unsupported
    short_answer: ShortAnswer | None = None
    span_margin: float | None = None  # the span reader's best margin over "no answer" (None: not read)
    typed_margin: float | None = None  # the same over spans of the kind asked for (NO_SPAN: none found)
    parts: list[Answer] = field(default_factory=list)  # a multi-part question's answer to each part

    def to_dict(self) -> dict:
        """The JSON shape of `rag ask --json` (see README)."""
        short = self.short_answer
        return {
            "question": self.question,
            "answer": self.text,
            "short_answer": None if short is None else {k: getattr(short, k) for k in ("text", "n", "source",
                                                                                        "start", "end")},
            "abstained": self.abstained,
            "citations": [{k: v for k, v in asdict(c).items() if k != "chunk_id"} for c in self.citations],
            "passages": [{k: v for k, v in asdict(p).items() if k != "chunk_id"} for p in self.passages],
            **({"parts": [{"question": p.question, "answer": p.text, "abstained": p.abstained} for p in self.parts]}
               if self.parts else {}),
        }


def passages_of(hits: list[Hit]) -> list[Passage]:
    return [Passage(h.rank, h.chunk.source, h.chunk.title, h.chunk.id, h.chunk.start, h.chunk.end,
                    h.chunk.text, round(h.score, 4)) for h in hits]


@dataclass
class Candidate:
    hit: Hit
    start: int  # char offsets in the document
    end: int
    text: str
    score: float = 0.0
    cosine: float = 0.0
    overlap: float = 0.0
    alignment: float = 0.0
    support: float = 0.0  # the score without alignment: what the abstention threshold is measured on
    reader: float = 0.0  # the reader's probability that this sentence holds the answer
    typed: bool = True  # holds the kind of answer the question asks for
    span: float = 0.0  # the span reader's probability that the answer starts in this unit
    spans: list[ShortAnswer] = field(default_factory=list)  # its best spans here, doc offsets, best first
    body_start: int | None = None  # where the unit's own text starts after the headings joined to it (doc offset)
    context: str = ""  # its document's title and the headings above it (what it is about, for `rag.anchors`)
    anchored: float = 1.0  # how much of what the question names it is about (`rag.anchors.cover`)
    lead: str = ""  # read with the unit but not quoted: a table row's header row ("| Candidate | Votes |")

    @property
    def read(self) -> str:
        """What the scores read: the unit, after its lead."""
        return f"{self.lead}\n{self.text}" if self.lead else self.text

    @property
    def cited(self) -> tuple[int, int, str]:
        """(start, end, text) of what is quoted: the unit with its headings, unless they only repeat words
        of the unit ("Pellworth orchard" over "The Pellworth orchard grows ..."). The headings are always
        scored with the unit (they say what it is about)."""
        body = self.start if self.body_start is None else self.body_start
        if body > self.start and content_words(self.text[: body - self.start]) - \
                content_words(self.text[body - self.start:]):
            body = self.start  # the heading says something the body does not ("5-Point Action Plan")
        return body, self.end, self.text[body - self.start:]


_LIST_ITEM = re.compile(r"\s*(?:[-*•–·▪]\s|\(?\d{1,3}[.)](?!\d)|\(?[a-zA-Z][.)]\s|\(?[ivxlcIVXLC]{1,6}[.)]\s|"
                        r"（[\d一二三四五六七八九十]+）|\d{1,3}(?:\.\d{1,3})+\.?\s)")
NO_SPAN = -99.0  # the margin recorded when no span of the asked kind was found (below any threshold tried)
PASSAGES_READ = 6  # the best passages whose sentences are candidates (and which the span reader reads)
LIST_LOOKAHEAD_CHARS = 1500  # how far past a passage's end the items of a list it introduces are followed
HEADING_LOOKBACK_CHARS = 4000  # how far before a passage its headings are looked for (a few sections' worth)
MAX_LIST_ITEMS = 12  # items joined to the line that introduces them (longer lists are cut: a quote stays readable)
HEADED_ITEM_WORDS = 8  # a list right under a heading is one unit when no item is longer (names, roles, fields)
INTRO_LEAD_SENTENCES = 2  # sentences of its paragraph joined before a list's intro line (not tuned: a short lead)
MAX_UNIT_CHARS = 1500  # an intro and its items stop growing here (about a 200-token passage's worth of text)
_FINAL = re.compile(r"[.!?;。！？；][\"'”’)\]]*$")  # sentence-final punctuation
PROBE_CHARS = 400  # about two sentences (~90 word-pieces): the SQuAD sentences the readers learnt on are shorter
# the sentence score (ExtractiveAnswerer._score): weights chosen on SQuAD dev samples, checked on eval/qa.jsonl
PASSAGE_COSINE_WEIGHT = 0.2  # the passage's similarity to the question (context)
TERM_OVERLAP_WEIGHT = 0.3  # the IDF-weighted share of question terms the sentence holds
SENTENCE_COSINE_WEIGHT = 0.25  # the sentence's own similarity to the question
ALIGNMENT_WEIGHT = 0.5  # word-by-word alignment of question and sentence word-pieces
HEADING_PENALTY = 0.1  # a title-like line names a topic; it rarely answers
RANK_PRIOR_WEIGHT = 0.1  # preselection only: a better-ranked passage's sentences are read first
SUPPORT_COSINE_WEIGHT = 0.5  # support (abstention) uses the pooled cosine instead of alignment
UNTYPED_PENALTY = 0.15  # a best sentence without the asked-for kind of answer (number, date...) loses this
UNTYPED_SUPPORT_FACTOR = 0.5  # ... and its support is scaled by this: the corpus likely lacks the fact
PROBE_BATCH = 4  # sentences per embedding batch: short ones are not padded to a long one (faster, measured)
MIN_UNIT_WORDS = 3  # shorter units ("Article 5.", "Notes") are never answers (not tuned)
TITLE_LINE_WORDS = 10  # a line this short without sentence punctuation is title-like (not tuned)
HEADING_MAX_WORDS = 12  # a line this short with no sentence punctuation names a section rather than states a fact


_FAMILIES = [("(1)", r"[(（]\d+[)）]"), ("1)", r"\d+\)"), ("1.1", r"\d+(?:\.\d+)+"), ("1.", r"\d+\."),
             ("(a)", r"\([a-zA-Z]\)"), ("a)", r"[a-zA-Z][.)]"), ("(i)", r"\(?[ivxlcIVXLC]+[.)]"), ("-", r"[-*•–·▪]"),
             ("（一）", r"（[一二三四五六七八九十]+）")]


def _family(line: str) -> str | None:
    """The kind of marker a list item starts with ("(1)", "1.", "a)", "-", ...): items of one list share it."""
    line = line.lstrip()
    return next((name for name, pattern in _FAMILIES if re.match(pattern + r"\s", line)), None)


# a "Key: value" line (front matter, a form, a header block: "Author: Hugo van Kemenade", "Replaces: 291")
# states a fact; it is not a heading. The key is at most FIELD_KEY_WORDS words (not tuned)
FIELD_KEY_WORDS = 4
_FIELD_KEY = re.compile(r"\s*([^:：\n]{1,40})[:：]\s+\S")
_SECTION_KEY = re.compile(r"(?:\S+\s+)?(?:\d+[\w.]*|[IVXLC]+\.?)$|#", re.I)  # "Chapter 3", "Part IV", "## Scope"


# a title holds no citation markers, links or markup: such a short line is text (a fake "[1] Sources:" line
# planted before a fact must not be joined to it as its heading)
_NOT_TITLE = re.compile(r"\[\d+\]|://|<[a-zA-Z/!]|\]\(")


def _is_field(unit: str) -> bool:
    """A "Key: value" line, and not a numbered heading with a subtitle ("Chapter 3: Scope")."""
    m = _FIELD_KEY.match(unit)
    return m is not None and len(m.group(1).split()) <= FIELD_KEY_WORDS and not _SECTION_KEY.match(m.group(1).strip())


def _kind(text: str, s: int, e: int) -> str:
    """'item' (a list item), 'heading' (a title-like line of its own) or 'text'."""
    unit = text[s:e]
    whole_line = (s == 0 or text[:s].rstrip(" \t").endswith("\n")) and (e == len(text) or text[e:].lstrip(" \t")[:1]
                                                                         in ("\n", ""))
    title_like = whole_line and len(unit.split()) <= HEADING_MAX_WORDS and not unit.startswith("|") \
        and not re.search(r"[.!?。！？;；:：,，][\"'”’)\]]*$", unit) and not _is_field(unit) \
        and not _NOT_TITLE.search(unit)
    if _LIST_ITEM.match(unit):
        # a numbered title line ("4. Build a Thriving Ecosystem") over body text heads a section
        after = text[e:].lstrip()
        if title_like and _family(unit) in ("1.", "1.1", "(i)") and after and not _LIST_ITEM.match(after):
            return "heading"
        return "item"
    if whole_line and (unit.startswith("#") or title_like):
        return "heading"
    return "text"


def answer_units(text: str, limit: int | None = None) -> list[tuple[int, int, int]]:
    """The answer units of `text` that start before `limit`, as (start, end, body start): each sentence or
    line; a heading joined to what follows it (a heading never stands alone; the body starts after it); a
    line that ends with ':' or leads into list items joined with its items (and each item also on its own),
    together with the sentences before it in its paragraph ("The council has broad authority ... For
    example, they can:"); a list right under a heading joined with it ("## Release crew" over "- Manager:
    ..."); a question joined to its answer ("The mission? To ...")."""
    sentences = sentence_spans(text)
    spans = [(s, e) for s, e, _ in sentences]
    ends = [e for _, e in spans]
    kinds = [_kind(text, s, e) for s, e in spans]
    limit = len(text) if limit is None else limit

    def list_end(i: int, start: int) -> int:
        """The end of the list whose first item is spans[i + 1] (spans[i] leads into it)."""
        j, end = i + 1, spans[i][1]
        first, nested = _family(text[spans[j][0]:]), None
        while j < len(spans) and kinds[j] == "item" and j - i <= MAX_LIST_ITEMS \
                and spans[j][1] - start <= MAX_UNIT_CHARS:
            family = _family(text[spans[j][0]:])
            if family != first:  # a nested list: only right under an item that leads into it
                if nested != family and not text[spans[j - 1][0]:spans[j - 1][1]].rstrip().endswith(":"):
                    break
                nested = family
            else:
                nested = None
            end = spans[j][1]
            j += 1
        return end

    def headed(i: int) -> int:
        """The first of the headings right above spans[i] (i itself when there are none)."""
        while i > 0 and kinds[i - 1] == "heading":
            i -= 1
        return i

    out = []
    for i, (s, e) in enumerate(spans):
        if s >= limit:
            break
        if kinds[i] == "heading":
            continue
        k = headed(i)
        start, end, body, j = spans[k][0], e, s, i + 1
        unit = text[s:e].rstrip()
        if unit.endswith(("?", "？")) and j < len(spans) and kinds[j] == "text":
            end = spans[j][1]
        elif j < len(spans) and kinds[j] == "item" and (
                unit.endswith((":", "：")) or (not _FINAL.search(unit) and (
                    kinds[i] != "item" or _family(text[s:e]) != _family(text[spans[j][0]:])))):
            # the intro's paragraph leads into the list with it: up to INTRO_LEAD_SENTENCES before it
            p = i
            while p > 0 and i - p < INTRO_LEAD_SENTENCES and not sentences[p][2] and kinds[p - 1] == "text" \
                    and "\n" not in text[spans[p - 1][1]:spans[p][0]]:  # on its line: a line is a statement
                p -= 1
            if p < i:
                body, start = spans[p][0], spans[headed(p)][0]
            end = list_end(i, start)
        elif k < i and kinds[i] == "item" and j < len(spans) and kinds[j] == "item" \
                and _family(text[s:e]) == _family(text[spans[j][0]:]):
            # a list of short items (names, roles, fields) right under a heading: the heading says what they
            # are. A list of sentences under one ("Key Points", "Changelog") is a summary that would match
            # any question, so it is not joined
            last = list_end(i, start)
            items = spans[i:bisect.bisect_right(ends, last)]
            if max(len(text[a:b].split()) for a, b in items) <= HEADED_ITEM_WORDS:
                out.append((start, end, s))  # the first item under the heading on its own, and the list:
                end = last
        out.append((start, end, body))
    return out


def answer_candidates(hits: list[Hit], max_hits: int, text_spans=None) -> list[Candidate]:
    """The answer units (`answer_units`) of the best hits, deduplicated across overlapping chunks. With
    `text_spans([(source, start, end), ...])` (the documents' text, `IndexStore.text_spans`), a list that
    a passage introduces is followed past the passage's end, and each unit's `context` holds the headings
    above it (read up to HEADING_LOOKBACK_CHARS before the passage) after its document's title."""
    seen: set[tuple[str, int, int]] = set()
    out: list[Candidate] = []
    hits = hits[:max_hits]
    before = [0 if text_spans is None else min(h.chunk.start, HEADING_LOOKBACK_CHARS) for h in hits]
    windows = ([h.chunk.text for h in hits] if text_spans is None else
               text_spans([(h.chunk.source, h.chunk.start - b, h.chunk.end + LIST_LOOKAHEAD_CHARS)
                           for h, b in zip(hits, before, strict=True)]))
    for hit, window, b in zip(hits, windows, before, strict=True):
        c = hit.chunk
        if not window[b:].startswith(c.text):
            window, b = c.text, 0
        text = window[b:]
        for s, e, body in answer_units(text, limit=len(c.text)):
            key = (c.source, c.start + s, c.start + e)
            if key not in seen and len(text[body:e].split()) >= MIN_UNIT_WORDS:
                seen.add(key)
                heads = [h.text for h in reversed(heading_path(window, b + s))]
                out.append(Candidate(hit, c.start + s, c.start + e, text[s:e], body_start=c.start + body,
                                     context="\n".join([c.title or "", *heads]), lead=table_header(window, b + s)))
    return out


_TABLE_RULE = re.compile(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")  # | --- | :---: |


def table_header(text: str, at: int) -> str:
    """The header row of the Markdown/pipe table whose body row starts at `at` ("" if `at` starts no
    such row): a row's cells mean what its header says ("| Emily Morehouse | 52 |" under "| Candidate |
    Votes Received |")."""
    line_start = text.rfind("\n", 0, at) + 1
    if text[line_start:at].strip() or not text[at:].startswith("|"):
        return ""
    lines, pos = [], line_start
    while pos > 0:
        prev = text.rfind("\n", 0, pos - 1) + 1
        line = text[prev:pos - 1].strip()
        if not line.startswith("|"):
            break
        lines.append(line)
        pos = prev
    # lines run upwards from the row above: the header is the one right above the top rule
    for i, line in enumerate(lines):
        if _TABLE_RULE.match(line):
            return lines[i + 1] if i + 1 < len(lines) and not _TABLE_RULE.match(lines[i + 1]) else ""
    return ""


# What kind of answer a question asks for, and how to spot it in a sentence.
_NUMBER_Q = re.compile(r"\b(how (many|much|large|big|long|old|far|often)|what (number|percentage|share|amount|"
                       r"proportion)|(budget|cost|price|salary|revenue|population|headcount)s?\b)", re.I)
_COUNT_Q = re.compile(r"\b(how (many|much)|what (number|percentage|share|amount|proportion))\b", re.I)
_MONEY_Q = re.compile(r"\bhow much (money|funding|cash|capital)\b|\bhow much (\w+ ){0,6}(cost|costs|spent|spend|"
                      r"paid|pay|invest|invested|raise|raised|earn|earned|worth|budget|fund|funds|funding|fine|"
                      r"fined|charged?|fee)\b|\b(what|which) (\w+ ){0,2}(fine|penalty|fee|price|budget|salary)s?\b",
                      re.I)
_PERCENT_Q = re.compile(r"\b(what|which|by how much|how much) (\w+ ){0,2}(percentage|percent|per cent|share|"
                        r"proportion)\b|\bhow many percent", re.I)
_PERCENT_A = re.compile(r"\d(?:[\d.,]*\d)?\s?(?:%|percent\b|per cent\b|percentage points?\b)|"
                        r"\b(?:half|a third|a quarter|one[- ](?:third|quarter|fifth|tenth))\b", re.I)
_DATE_Q = re.compile(r"\b(when|what (year|date|month|day|time)|which (year|date|month|day))\b", re.I)
_YEAR_Q = re.compile(r"\b(what|which) year\b|\byear (was|did|were|is|does)\b", re.I)
_CALENDAR_Q = re.compile(r"\b(what|which|exact|precise|specific) (calendar )?date\b", re.I)
_WEEKDAY_Q = re.compile(r"\b(day of the week|(what|which) (week)?day)\b(?! of the (month|year))", re.I)
_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
                 "thousand|million|billion|trillion|dozen|half")
_NUMBER_A = re.compile(rf"\d[\d,.]*\d|\d|\b({_NUMBER_WORDS}|double|twice)s?\b", re.I)
# a count ("how many"): as _NUMBER_A without "double"/"twice", which are rarely counts ("Double down on R&D")
_COUNT_A = re.compile(rf"\d[\d,.]*\d|\d|\b({_NUMBER_WORDS})s?\b", re.I)
_MONTHS = (r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
           r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\.?")
_WEEKDAYS = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_YEAR = r"(?<![\d,.])(?:1\d{3}|20\d\d)(?!,?\d)"
_DATE_A = re.compile(rf"{_YEAR}|\b(?:{_MONTHS}|{_WEEKDAYS}|\d0s|yesterday|today|tomorrow|(?:last|this|next) "
                     r"(?:year|month|week)|century|decade)\b", re.I)
_YEAR_A = re.compile(rf"{_YEAR}|\b\d0s\b", re.I)
_CALENDAR_A = re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?\b|"
                         rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}|"
                         r"\b\d{4}-\d\d-\d\d\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b", re.I)
_WEEKDAY_A = re.compile(rf"\b{_WEEKDAYS}\b", re.I)
_MONEY_A = re.compile(r"[$€£¥₹]\s?\d|\b(?:US\$|USD|EUR|GBP|RMB|CNY|JPY|yuan|dollars?|euros?|pounds?|cents?|yen|"
                      r"rupees?|francs?)\b|\d\s*(?:thousand|million|billion|trillion|bn)\b", re.I)
_YEARLIKE = re.compile(r"^(1[5-9]\d\d|20\d\d)$")

_NAME_Q = re.compile(r"^\s*(who|whom|whose)\b|\b(which|what) (person|people|official|company|companies|firm|"
                     r"organi[sz]ation|agency|minister|newspaper|university|city|country|countries)\b", re.I)
_NAME_A = re.compile(r"[A-Z][\w’'&.-]*[\w]|[\u3400-\u9fff]+")
_NOT_NAMES = {"the", "a", "an", "in", "on", "at", "it", "its", "this", "that", "these", "those", "for", "with",
              "by", "from", "and", "but", "as", "their", "his", "her", "he", "she", "they", "we", "i", "if", "of",
              "to", "after", "before", "when", "while", "there", "here", "some", "all", "most", "many", "one"}
_PATTERNS = {"date": _DATE_A, "year": _YEAR_A, "calendar date": _CALENDAR_A, "weekday": _WEEKDAY_A,
             "money": _MONEY_A, "percentage": _PERCENT_A, "number": _NUMBER_A, "count": _COUNT_A}


# first match wins: the narrower kinds come before the broader ones they overlap with
_QUESTION_KINDS = [("weekday", _WEEKDAY_Q), ("calendar date", _CALENDAR_Q), ("year", _YEAR_Q), ("date", _DATE_Q),
                   ("percentage", _PERCENT_Q), ("money", _MONEY_Q), ("count", _COUNT_Q), ("number", _NUMBER_Q),
                   ("name", _NAME_Q)]


def answer_type(question: str) -> str | None:
    """The kind of answer asked for: 'weekday', 'calendar date' (a day of a month), 'year', 'date' (any
    time), 'percentage', 'money' (also a fine, fee, price or budget), 'count' (how many / how much: a
    number that is not a year), 'number', 'name', or None (any answer)."""
    return next((kind for kind, pattern in _QUESTION_KINDS if pattern.search(question)), None)


_LINK_TARGET = re.compile(r"\]\([^)\s]*\)|<?\b(?:https?|ftp)://[^\s>)\]]*>?|\b[\w.+-]+@[\w-]+\.[\w.]+")


def has_type(text: str, kind: str | None, question: str = "") -> bool:
    """Whether text holds an answer of that kind that the question itself does not already state (the
    targets of links, URLs and e-mail addresses do not count: "…/t/71732" is not a count)."""
    if kind is None:
        return True
    text = _LINK_TARGET.sub(" ", text)
    if kind == "name":
        asked = {w.lower() for w in re.findall(r"\w+", question)}
        return any(m.group(0).lower() not in asked and m.group(0).lower() not in _NOT_NAMES
                   and not _DATE_A.fullmatch(m.group(0)) for m in _NAME_A.finditer(text))
    pattern = _PATTERNS[kind]
    asked = {m.group(0).lower() for m in pattern.finditer(question)}
    return any(m.group(0).lower() not in asked and not (kind == "count" and _YEARLIKE.match(m.group(0)))
               for m in pattern.finditer(text))



def alignment(question_tokens: np.ndarray, sentence_tokens: np.ndarray, weights: np.ndarray | None = None) -> float:
    """How well a sentence covers the question word by word: for each question word-piece, its best
    cosine with any word-piece of the sentence (contextual embeddings), averaged (weighted by `weights`,
    e.g. IDF). Unlike the cosine of pooled vectors, a sentence scores high only if every part of the
    question is matched in it, by the same word or a close paraphrase (ColBERT's late interaction, with
    the embedder's own tokens)."""
    if not len(question_tokens) or not len(sentence_tokens):
        return 0.0
    best = (question_tokens @ sentence_tokens.T).max(axis=1)
    if weights is None:
        return float(best.mean())
    return float((best * weights).sum() / max(float(weights.sum()), 1e-12))


def _is_heading(text: str) -> bool:
    """A title-like line (short, no sentence punctuation) names a topic rather than stating a fact."""
    return ("\n" not in text and len(text.split()) <= TITLE_LINE_WORDS
            and not re.search(r"[.!?。！？][\"'”’)\]]*$", text))


class ExtractiveAnswerer:
    """Picks the best-supported sentences of the retrieved passages; abstains when support is low."""

    def __init__(self, embedder: Embedder, retriever: Retriever, settings: Settings, reader: Reader | None = None):
        self.embedder = embedder
        self.retriever = retriever
        self.settings = settings
        self._reader = reader
        self._span_reader: SpanReader | None = None

    @property
    def reader(self) -> Reader | None:
        """The answer-sentence reader (`rag.reader`), loaded on first use; None when settings.reader is off."""
        if self._reader is None and self.settings.reader:
            self._reader = get_reader(default_model_path())
        return self._reader

    @property
    def span_reader(self) -> SpanReader | None:
        """The span reader (`rag.span_reader`), loaded on first use; None when settings.span_reader is off."""
        if self._span_reader is None and self.settings.span_reader:
            self._span_reader = get_reader(default_model_path(), kind=SpanReader)
        return self._span_reader

    def score(self, question: str, qv: np.ndarray, hits: list[Hit],
              question_tokens: tuple[np.ndarray, list[str]] | None = None
              ) -> tuple[list[Candidate], float, tuple[float, float] | None]:
        """Candidates best first, the support of the best one (0..1) and the span reader's margins over
        "no answer" (`_read_spans`; None when the span reader is off).

        A sentence scores by its word-by-word alignment with the question (0.5), its own similarity to
        it (0.25), its passage's similarity (0.2, context) and the IDF-weighted share of question terms
        it contains (0.3), plus 0.75 × the reader's probability that it holds the answer (`rag.reader`, a
        cross-encoder that reads question and sentence together). Support additionally requires the kind
        of answer asked for (a number for "how many", a year for "what year", an amount for "how much
        money") to be present. At most `answer_candidates` sentences (the most promising by the cheap
        signals) are embedded and read. The weights were chosen on SQuAD dev samples (the reader's on the
        articles it was not trained on: first citation holds the answer 0.750 → 0.772 on 491 questions)
        and checked on eval/qa.jsonl.
        """
        cands = answer_candidates(hits, max_hits=PASSAGES_READ, text_spans=self.retriever.text_spans)
        if not cands:
            return [], 0.0, None
        index = self.retriever
        q_terms = [t for t in dict.fromkeys(index.query_terms(question)) if t not in QUESTION_TERMS]
        weights = dict(zip(q_terms, index.idf(q_terms), strict=True))
        total = sum(weights.values()) or 1.0
        kind = answer_type(question)
        passage_cos = {h.chunk.id: float(self.retriever.dense_score(h.chunk.row, qv)) for h in hits}
        n_hits = max(len(hits), 1)
        named = anchors(question)
        titled = bool(named) and any(cover(named, h.chunk.title) == 1.0 for h in hits[:PASSAGES_READ])
        cand_terms = index.terms_of([c.read for c in cands])
        for c, terms in zip(cands, cand_terms, strict=True):
            c.overlap = sum(w for t, w in weights.items() if t in terms) / total
            c.typed = has_type(c.text, kind, question)
            c.anchored = about(named, c.hit.chunk.title, f"{c.context}\n{c.text}", c.hit.chunk.text, titled)
            c.score = (PASSAGE_COSINE_WEIGHT * passage_cos[c.hit.chunk.id] + TERM_OVERLAP_WEIGHT * c.overlap
                       - (HEADING_PENALTY if _is_heading(c.text) else 0.0)
                       - self.settings.anchor_penalty * (1.0 - c.anchored))
        # embedding and reading sentences are the expensive steps: at most `answer_candidates`, the most
        # promising by the cheap signals (answer kind, passage similarity, term overlap, passage rank).
        # The default (64) keeps every sentence of the six best 200-token passages: keeping only 12 lost
        # the evidence sentence for 18% of eval/qa.jsonl's answerable questions (8% with 24).
        cands.sort(key=lambda c: (not c.typed, -(c.score + RANK_PRIOR_WEIGHT * (1 - (c.hit.rank - 1) / n_hits)),
                                  c.start))
        cands = cands[: self.settings.answer_candidates]
        # small batches: short sentences are not padded to the longest one
        probes = [_probe(c.read) for c in cands]
        vecs, sent_tokens = self.embedder.embed_tokens_cached(probes, batch_size=PROBE_BATCH)
        q_tokens, q_weights = self._question_tokens(question, question_tokens)
        for c, cs, st in zip(cands, vecs @ qv, sent_tokens, strict=True):
            c.cosine = float(cs)
            c.alignment = alignment(q_tokens, st, q_weights)
            # support (is the answer here at all?) keeps the pooled cosine: alignment has a high floor
            # (unrelated word-pieces still have cosines around 0.3), which made off-topic questions look
            # supported (SQuAD questions asked of corpus/: 96.0% abstained instead of 99.7%)
            c.support = c.score + SUPPORT_COSINE_WEIGHT * c.cosine
            c.score += SENTENCE_COSINE_WEIGHT * c.cosine + ALIGNMENT_WEIGHT * c.alignment
        # support: the best score once a missing answer kind costs UNTYPED_PENALTY, scaled by
        # UNTYPED_SUPPORT_FACTOR if even that best lacks it.
        # It is taken before the reader adds its term: the reader's probabilities did not separate
        # answerable from unanswerable questions better on SQuAD, and worse on eval/qa.jsonl (README).
        top = max(cands, key=lambda c: c.score - (0.0 if c.typed else UNTYPED_PENALTY))
        support = top.support if top.typed else (top.support - UNTYPED_PENALTY) * UNTYPED_SUPPORT_FACTOR
        if top.anchored < 1.0:  # not about what the question names (another version, year, article)
            support *= self.settings.anchor_support_factor
        if named and max(c.anchored for c in cands) == 0.0:
            support = 0.0  # nothing read names it at all: the corpus does not have the thing asked about
        reader = self.reader
        if reader is not None:
            for c, p in zip(cands, reader.scores(question, probes), strict=True):
                c.reader = float(p)
                c.score += self.settings.reader_weight * c.reader
        margin = self._read_spans(question, hits[:PASSAGES_READ], cands)
        # a sentence holding the kind of answer asked for (a number, a date, a name) outranks any that
        # does not: a restatement of the question, however similar, is not an answer
        cands.sort(key=lambda c: (not c.typed, -c.score, c.hit.rank, c.start))
        return cands, float(support), margin

    def _read_spans(self, question: str, hits: list[Hit], cands: list[Candidate]
                    ) -> tuple[float, float] | None:
        """Read the passages with the span reader: each candidate gets its answer-start probability
        (weighted into its score) and its best spans. Returns the best margin over "no answer" in any
        passage, and the best among the candidates' spans that hold the kind of answer asked for
        (NO_SPAN if none does; the plain margin when the question asks for no kind)."""
        reader = self.span_reader
        if reader is None or not hits:
            return None
        kind = answer_type(question)
        by_hit: dict[str, list[Candidate]] = {h.chunk.id: [] for h in hits}
        for c in cands:
            if c.hit.chunk.id in by_hit:
                by_hit[c.hit.chunk.id].append(c)
        ranges = [[(c.start - h.chunk.start, min(c.end, h.chunk.end) - h.chunk.start) for c in by_hit[h.chunk.id]]
                  for h in hits]
        readings = reader.read(question, [h.chunk.text for h in hits], ranges)
        typed = NO_SPAN
        for h, r in zip(hits, readings, strict=True):
            base = h.chunk.start
            for c, mass, spans in zip(by_hit[h.chunk.id], r.mass, r.spans, strict=True):
                c.span = mass
                c.spans = [ShortAnswer(sp.text, 0, h.chunk.source, base + sp.start, base + sp.end,
                                       round(sp.score - r.null, 4)) for sp in spans]
                c.score += self.settings.span_weight * mass
                typed = max([typed] + [sp.score for sp in c.spans if has_type(sp.text, kind, question)])
        margin = max(max(r.margin for r in readings), NO_SPAN)
        return margin, (margin if kind is None else typed)

    def short_answer(self, question: str, chosen: list[Candidate]) -> ShortAnswer | None:
        """The best span inside the chosen sentences (citation n = position + 1) that holds the kind of
        answer asked for, if the span reader prefers it to "no answer" by `short_answer_margin`."""
        kind = answer_type(question)
        best = None
        for n, c in enumerate(chosen, start=1):
            body = c.cited[0]
            span = next((sp for sp in c.spans if sp.start >= body and has_type(sp.text, kind, question)), None)
            if span is not None and (best is None or span.score > best.score):
                best = replace(span, n=n)
        return best if best is not None and best.score >= self.settings.short_answer_margin else None

    def _question_tokens(self, question: str, encoded: tuple[np.ndarray, list[str]] | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The question's contextual word-piece embeddings without question words and punctuation, and
        each one's weight: the IDF in this index of the word it belongs to (a word the index has never
        seen weighs most), so that "Cambricon" counts for more than "plan" or "AI"."""
        if encoded is None:
            _, tokens_of, pieces_of = self.embedder.embed_tokens([question])
            encoded = (tokens_of[0], pieces_of[0])
        tokens, pieces = encoded
        words, owner = [], []
        for p in pieces:
            if p.startswith("##") and words:
                words[-1] += p[2:]
            else:
                words.append(p)
            owner.append(len(words) - 1)
        keep = [i for i, p in enumerate(pieces) if re.search(r"\w", p) and p.lower() not in STOPWORDS]
        if not keep:
            return tokens, np.ones(len(tokens), dtype=np.float32)
        index = self.retriever
        kept_words = sorted({owner[i] for i in keep})
        idf = {w: max(index.idf(sorted(stems)), default=0.0)
               for w, stems in zip(kept_words, index.terms_of([words[w] for w in kept_words]), strict=True)}
        weights = np.array([idf[owner[i]] for i in keep], dtype=np.float32)
        if weights.sum() <= 0:
            weights = np.ones_like(weights)
        return tokens[keep], weights

    def select(self, cands: list[Candidate]) -> list[Candidate]:
        """The best sentence plus up to two more that score nearly as well, hold the kind of answer asked
        for as it does and are as much about what the question names (`rag.anchors`), in reading order."""
        chosen = [cands[0]]
        for c in cands[1:]:
            if len(chosen) >= self.settings.max_sentences or c.score < cands[0].score - self.settings.answer_margin \
                    or c.typed != cands[0].typed or c.anchored < cands[0].anchored:
                break
            if any(c.hit.chunk.source == o.hit.chunk.source and c.start < o.end and o.start < c.end
                   for o in chosen):
                continue
            chosen.append(c)
        order = {h: i for i, h in enumerate(dict.fromkeys(c.hit.chunk.source for c in chosen))}
        return sorted(chosen, key=lambda c: (order[c.hit.chunk.source], c.start))

    def answer(self, question: str, hits: list[Hit], qv: np.ndarray, query: str | None = None,
               query_tokens: tuple[np.ndarray, list[str]] | None = None) -> Answer:
        """`query_tokens`: the query's word-piece embeddings and strings, if already computed
        (`Embedder.embed_tokens`); otherwise they are computed here."""
        query = query or question
        cands, support, margins = self.score(query, qv, hits, query_tokens)
        passages = passages_of(hits)
        margin, typed = (None, None) if margins is None else (round(margins[0], 4), round(margins[1], 4))
        if not cands or support < self.settings.abstain_threshold or \
                (typed is not None and typed < self.settings.span_abstain_margin):
            return Answer(question, NOT_IN_CORPUS, [], True, passages, round(support, 4), query, span_margin=margin,
                          typed_margin=typed)
        citations, parts = [], []
        chosen = self.select(cands)
        for n, c in enumerate(chosen, start=1):
            start, end, text = c.cited
            citations.append(Citation(n, c.hit.chunk.source, c.hit.chunk.title, c.hit.chunk.id, start, end,
                                      text, round(c.score, 4)))
            parts.append(f"{one_line(text)} [{n}]")
        return Answer(question, " ".join(parts), citations, False, passages, round(support, 4), query,
                      short_answer=self.short_answer(query, chosen), span_margin=margin,
                      typed_margin=typed)


def _probe(text: str) -> str:
    """What the embedder and the sentence reader see of a unit: a long one (a heading, an intro and its
    items) is cut at PROBE_CHARS, since reading whole lists made an answer several times slower."""
    return text if len(text) <= PROBE_CHARS else text[:PROBE_CHARS]


def one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text).strip()


_FOLLOW_UP = re.compile(r"^\s*(and|but|also|so|then|what about|how about|and what about|and how about)\b", re.I)
_ABOUT = re.compile(r"^\s*(?:and\s+|but\s+)?(?:what|how)\s+about\s+(.+?)\s*\??\s*$", re.I)
_PRONOUN = re.compile(r"\b(it|its|they|them|their|he|him|his|she|her|this|that|these|those|there)\b", re.I)


def resolve_follow_up(question: str, history: list | None) -> str:
    """Rewrite a follow-up ("and what about Beijing?") into a standalone retrieval query using
    the previous user question; standalone questions are returned unchanged."""
    previous = _last_user_question(history)
    if not previous:
        return question
    about = _ABOUT.match(question)
    if about:
        subject = about.group(1)
        names = list(re.finditer(r"(?<!^)(?<![.?!]\s)\b[A-Z][\w’'-]+(?:\s+[A-Z][\w’'-]+)*", previous))
        if names:
            m = names[-1]
            return previous[:m.start()] + subject + previous[m.end():]
        return f"{previous.rstrip(' ?')} {subject}?"
    words = re.findall(r"\w+", question)
    if _FOLLOW_UP.match(question) or (_PRONOUN.search(question) and len(words) <= 8) or len(words) <= 3:
        return f"{question} ({previous})"
    return question


def _last_user_question(history: list | None) -> str | None:
    for turn in reversed(history or []):
        if isinstance(turn, dict):
            if turn.get("role") == "user" and str(turn.get("content", "")).strip():
                return str(turn["content"])
        elif isinstance(turn, (list, tuple)) and turn and turn[0]:
            return str(turn[0])
    return None


def stream_text(answer: Answer) -> Iterator[str]:
    """The answer text sentence by sentence (what `stream()` yields for the extractive answerer): one
    piece per citation marker, split only at the markers, so the pieces join to exactly `answer.text`."""
    text, pos = answer.text, 0
    for c in answer.citations:
        m = re.compile(rf"\s\[{c.n}\](?=\s|$)").search(text, pos)
        if m is None:
            break
        yield text[pos:m.end()]
        pos = m.end()
    if pos < len(text) or not text:
        yield text[pos:]


_WH = r"(?:what|who|whom|whose|which|when|where|why|how|is|are|was|were|does|do|did|can|could|will|has|have)"
_PART_BREAK = re.compile(rf"(?:\?\s+|[,;]?\s+and\s+(?={_WH}\b)|;\s+(?={_WH}\b))", re.I)
MIN_PART_WORDS = 3  # each part of a split question must still be a question ("and when?" is not split off)


def split_question(question: str) -> list[str]:
    """The asks of a question that coordinates several ("Who chaired the meeting and what are the five
    points?" → two questions), each ending with '?'; a single ask is returned alone."""
    pieces = [p.strip(" ,;?") for p in _PART_BREAK.split(question)]
    pieces = [p for p in pieces if p]
    if len(pieces) < 2 or any(len(p.split()) < MIN_PART_WORDS for p in pieces) \
            or not all(re.match(rf"{_WH}\b", p, re.I) for p in pieces[1:]):
        return [question]
    return [p[0].upper() + p[1:] + "?" for p in pieces]


def combine_answers(question: str, parts: list[Answer], query: str = "") -> Answer:
    """One answer from the answers to each part: citations renumbered in order, a part that abstains
    says so on its own, and the whole abstains only when every part does."""
    texts, citations, passages, seen = [], [], [], set()
    short = None
    for part in parts:
        if part.abstained:
            texts.append(f"({part.question} {NOT_IN_CORPUS})")
        else:
            offset = len(citations)
            texts.append(re.sub(r"\[(\d+)\]", lambda m, k=offset: f"[{int(m.group(1)) + k}]", part.text))
            citations += [replace(c, n=c.n + offset) for c in part.citations]
            if short is None and part.short_answer is not None:
                short = replace(part.short_answer, n=part.short_answer.n + offset)
        for p in part.passages:
            if p.chunk_id not in seen:
                seen.add(p.chunk_id)
                passages.append(replace(p, rank=len(passages) + 1))
    if all(p.abstained for p in parts):
        return Answer(question, NOT_IN_CORPUS, [], True, passages, min(p.support for p in parts), query,
                      parts=parts)
    return Answer(question, " ".join(texts), citations, False, passages, min(p.support for p in parts), query,
                  short_answer=short, parts=parts)
