"""The one list of function words, shared by every stage that needs to ignore them."""

from __future__ import annotations

import re

# function words and question words: they say nothing about which sentence holds an answer or supports a
# claim, and a line ending on one is a hard-wrapped piece of a sentence, not a heading. Hand-written
# (the union of the four lists this replaces, plus sentence-opening connectives, which the LLM claim check
# must not take for names), not tuned
STOPWORDS = frozenset("""
a an the and or but nor of to in on at by for from with as into onto than then that which who whom whose
what when where why how is are was were be been has have had do does did it its their his her our your
this these those there they he she s also many much
however moreover furthermore additionally meanwhile therefore thus finally overall instead yet still so
""".split())

# the stemmed BM25 terms (rag/lexical.py's English stemmer) of words that shape a question but carry no
# topic: they never count towards a sentence's lexical support. Hand-written, not tuned
QUESTION_TERMS = frozenset("""
which what who whom whose when where why how mani much did doe do is are was were name list tell accord
articl mention say said describ kind type s
""".split())


_WORD = re.compile(r"[^\W_]+", re.U)


def content_words(text: str) -> set[str]:
    """The lower-cased words of `text` that are not STOPWORDS."""
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in STOPWORDS}
