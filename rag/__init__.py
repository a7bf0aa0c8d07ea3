"""Offline, cited question answering over a folder of documents."""

from .config import Settings
from .indexer import BuildSummary, build_index

__all__ = ["Settings", "BuildSummary", "build_index"]
