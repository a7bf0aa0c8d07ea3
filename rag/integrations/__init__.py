"""Adapters to other frameworks. Each module imports its framework; nothing else in `rag` does."""
