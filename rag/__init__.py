"""Offline, cited question answering over a folder of documents.

    import rag
    assistant = rag.Assistant.load("index")
    print(assistant.answer("Who chaired the meeting?").text)
"""

from .answering import Answer, Citation, Passage
from .assistant import Assistant, QuestionError, answer
from .config import Settings
from .indexer import BuildSummary, build_index
from .retrieval import Hit, Reranker
from .store import IndexStoreError

__all__ = ["Answer", "Assistant", "BuildSummary", "Citation", "Hit", "IndexStoreError", "Passage",
           "QuestionError", "Reranker", "Settings", "answer", "build_index"]
