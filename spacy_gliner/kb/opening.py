"""Opening a knowledge base from whatever a user points at: a saved KB directory (``kb.json``
names the class that wrote it), a JSONL file of entities, or an SQLite file.

Kept apart from :mod:`.base` so the KB classes can import the protocol without a cycle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from .base import META_FILE, KnowledgeBase, PathLike, read_meta


def load_kb(path: PathLike) -> KnowledgeBase:
    """Load whichever KB class wrote ``path`` (reads ``kb.json``)."""
    kind = read_meta(path).get("format")
    if kind == "spacy_gliner.InMemoryKB":
        from .memory import InMemoryKB

        return InMemoryKB.from_disk(path)
    if kind == "spacy_gliner.SQLiteKB":
        from .sqlite import SQLiteKB

        return SQLiteKB.from_disk(path)
    raise ValueError(f"{Path(path) / META_FILE}: unknown knowledge base format {kind!r}")


def open_kb(source: Union[str, Path]):
    """A KB from a serialised KB directory (``kb.json``), a JSONL file or an SQLite file."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"knowledge base {str(path)!r} not found")
    if path.is_dir():
        return load_kb(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        from .memory import InMemoryKB

        return InMemoryKB.from_jsonl(path)
    if path.suffix.lower() in (".sqlite", ".sqlite3", ".db"):
        import sqlite3

        from .sqlite import SQLiteKB

        try:
            return SQLiteKB(path)
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{str(path)!r} is not a readable SQLite knowledge base ({err}); rebuild it with "
                             "SQLiteKB.from_jsonl(<entities.jsonl>, <path>)") from None
    raise ValueError(
        f"knowledge base {str(path)!r}: expected a KB directory (with kb.json), a .jsonl file or an .sqlite file"
    )
