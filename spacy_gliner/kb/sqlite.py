"""A knowledge base in one SQLite file: for KBs too large to keep in memory.

Only the alias table is indexed; entity records are fetched on demand, so the
process's memory does not grow with the number of entities (SQLite's page
cache is bounded). Uses the standard-library ``sqlite3`` module only.

Schema::

    entities(row INTEGER PRIMARY KEY, id TEXT UNIQUE, record TEXT)   -- record = entity JSON
    aliases(alias TEXT, row INTEGER, weight REAL, PRIMARY KEY(alias, row)) WITHOUT ROWID
    meta(key TEXT PRIMARY KEY, value TEXT)                           -- content_hash
"""
from __future__ import annotations

import json
from array import array
import os
import sqlite3
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

from .base import (
    EMPTY_CONTENT_HASH,
    PathLike,
    chain_content_hash,
    normalise_priors,
    open_saved_kb,
    unknown_ids_error,
    write_meta,
)
from .entities import Entity, entities_from_spacy_kb, entity_from_record, iter_entities_jsonl
from .normalize import normalize_mention

DB_FILE = "kb.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities(row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aliases(alias TEXT NOT NULL, row INTEGER NOT NULL, weight REAL NOT NULL,
                                   PRIMARY KEY(alias, row)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# SQLite limits bound parameters per statement; stay well below the default.
_MAX_PARAMS = 500


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SQLiteKB:
    """Knowledge base stored in ``db_path``. See ``base.KnowledgeBase``."""

    def __init__(self, db_path: PathLike) -> None:
        """Open (or create, when the file does not exist) the database at ``db_path``."""
        self.db_path = Path(db_path)
        writable = not self.db_path.exists() or os.access(self.db_path, os.W_OK)
        if writable:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so that a
            # whole add is one transaction.
            self._conn = sqlite3.connect(str(self.db_path), check_same_thread=False, isolation_level=None)
            self._conn.executescript(_SCHEMA)
        else:
            # e.g. a model installed read-only as a package: open read-only.
            uri = f"file:{self.db_path.resolve()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self._size = self._count_rows()
        row = self._conn.execute("SELECT value FROM meta WHERE key='content_hash'").fetchone()
        self._content_hash = row[0] if row else EMPTY_CONTENT_HASH

    def close(self) -> None:
        self._conn.close()

    def _count_rows(self) -> int:
        # Rows are contiguous from 0, so MAX(row)+1 is the count (an O(log n) lookup).
        (max_row,) = self._conn.execute("SELECT MAX(row) FROM entities").fetchone()
        return 0 if max_row is None else int(max_row) + 1

    # -- construction ---------------------------------------------------- #
    @classmethod
    def create(cls, db_path: PathLike, entities: Iterable[Entity] = (), batch_size: int = 10_000) -> "SQLiteKB":
        """Build a new database at ``db_path`` from ``entities`` (streamed).

        The database is written to ``<db_path>.partial`` and renamed only on
        success, so a failure (e.g. a duplicate id) never leaves a half-built KB.
        """
        return cls._build(db_path, enumerate(entities, start=1), "entities passed to SQLiteKB.create", batch_size,
                          unit="item")

    @classmethod
    def from_jsonl(cls, jsonl_path: PathLike, db_path: PathLike, batch_size: int = 10_000) -> "SQLiteKB":
        """Stream a JSONL entity file into a new database (validated line by line;
        duplicate ids are reported with both line numbers)."""
        return cls._build(db_path, iter_entities_jsonl(jsonl_path), str(jsonl_path), batch_size)

    @classmethod
    def from_spacy_kb(cls, spacy_kb, db_path: PathLike, descriptions=None, names=None) -> "SQLiteKB":
        return cls.create(db_path, entities_from_spacy_kb(spacy_kb, descriptions, names))

    @classmethod
    def _build(cls, db_path: PathLike, numbered: Iterable[Tuple[int, Entity]], source: str,
               batch_size: int, unit: str = "line") -> "SQLiteKB":
        db_path = Path(db_path)
        if db_path.exists():
            raise FileExistsError(f"{db_path} already exists; delete it or open it with SQLiteKB({str(db_path)!r})")
        db_path.parent.mkdir(parents=True, exist_ok=True)
        partial = db_path.with_name(db_path.name + ".partial")
        if partial.exists():
            partial.unlink()
        kb = cls(partial)
        try:
            kb._insert(numbered, source, batch_size, unit)
        except BaseException:
            kb.close()
            partial.unlink(missing_ok=True)
            raise
        kb.close()
        os.replace(partial, db_path)
        return cls(db_path)

    def add_entities(self, entities: Iterable[Entity]) -> None:
        """Append entities in one transaction (all or nothing)."""
        self._insert(enumerate(entities, start=1), "entities passed to add_entities", 10_000, "item")

    def _insert(self, numbered: Iterable[Tuple[int, Entity]], source: str, batch_size: int,
                unit: str = "line") -> None:
        conn = self._conn
        row = self._size
        content_hash = self._content_hash
        # Source line of each row inserted now (4 bytes a row), to name both
        # lines of a duplicate id.
        first_row = row
        line_of_row = array("l")
        entity_rows: List[Tuple[int, str, str]] = []
        alias_rows: Dict[Tuple[str, int], float] = {}

        def flush() -> None:
            try:
                conn.executemany("INSERT INTO entities(row, id, record) VALUES (?, ?, ?)", entity_rows)
            except sqlite3.IntegrityError:
                self._raise_duplicate(entity_rows, line_of_row, first_row, source, unit)
            conn.executemany("INSERT INTO aliases(alias, row, weight) VALUES (?, ?, ?)",
                             [(a, r, w) for (a, r), w in alias_rows.items()])
            entity_rows.clear()
            alias_rows.clear()

        try:
            conn.execute("BEGIN")
            for line_no, entity in numbered:
                line_of_row.append(line_no)
                entity_rows.append((row, entity.id, json.dumps(entity.to_json(), ensure_ascii=False)))
                for alias in entity.all_aliases():
                    key = normalize_mention(alias)
                    alias_rows[(key, row)] = entity.alias_weight(key)
                content_hash = chain_content_hash(content_hash, entity)
                row += 1
                if len(entity_rows) >= batch_size:
                    flush()
            flush()
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('content_hash', ?)", (content_hash,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._size = row
        self._content_hash = content_hash

    def _raise_duplicate(self, batch: List[Tuple[int, str, str]], line_of_row: "array[int]",
                         first_row: int, source: str, unit: str) -> None:
        """Find the offending id of a failed batch and raise a ValueError naming both lines."""

        def line(row: int) -> int:
            return line_of_row[row - first_row] if row >= first_row else 0

        first_in_batch: Dict[str, int] = {}
        for row, entity_id, _ in batch:
            # Rows of this batch before the failing one are already inserted
            # (inside the open transaction): ignore a match on the row itself.
            earlier = self._conn.execute("SELECT row FROM entities WHERE id=?", (entity_id,)).fetchone()
            first = earlier[0] if earlier and earlier[0] != row else first_in_batch.get(entity_id)
            if first is not None:
                where = f"{source}, {unit} {line(row)}"
                first_where = f"{unit} {line(first)}" if line(first) else f"row {first} of the existing KB"
                raise ValueError(f"{where}: duplicate id '{entity_id}' (first defined on {first_where}). "
                                 "Fix: give every entity a unique id, or merge the two records") from None
            first_in_batch[entity_id] = row
        raise ValueError(f"{source}: SQLite rejected a batch of entities for an unknown integrity reason")

    # -- KnowledgeBase protocol ------------------------------------------ #
    def __len__(self) -> int:
        return self._size

    def __contains__(self, entity_id: object) -> bool:
        if not isinstance(entity_id, str):
            return False
        return self._conn.execute("SELECT 1 FROM entities WHERE id=?", (entity_id,)).fetchone() is not None

    @property
    def is_empty(self) -> bool:
        return self._size == 0

    @property
    def content_hash(self) -> str:
        return self._content_hash

    def get(self, entity_id: str) -> Entity:
        found = self._conn.execute("SELECT record FROM entities WHERE id=?", (entity_id,)).fetchone()
        if found is None:
            raise unknown_ids_error([entity_id], len(self))
        return entity_from_record(json.loads(found[0]), str(self.db_path))

    def get_many(self, entity_ids: Sequence[str]) -> List[Entity]:
        records: Dict[str, str] = {}
        unique = list(dict.fromkeys(entity_ids))
        for chunk in _chunks(unique, _MAX_PARAMS):
            marks = ",".join("?" * len(chunk))
            for eid, record in self._conn.execute(f"SELECT id, record FROM entities WHERE id IN ({marks})", chunk):
                records[eid] = record
        missing = [eid for eid in unique if eid not in records]
        if missing:
            raise unknown_ids_error(missing, len(self))
        parsed = {eid: entity_from_record(json.loads(rec), str(self.db_path)) for eid, rec in records.items()}
        return [parsed[eid] for eid in entity_ids]

    def ids(self) -> Iterator[str]:
        cursor = self._conn.execute("SELECT id FROM entities ORDER BY row")
        for (entity_id,) in cursor:
            yield entity_id

    def row_of(self, entity_id: str) -> int:
        found = self._conn.execute("SELECT row FROM entities WHERE id=?", (entity_id,)).fetchone()
        if found is None:
            raise unknown_ids_error([entity_id], len(self))
        return int(found[0])

    def ids_at(self, rows: Sequence[int]) -> List[str]:
        wanted = [int(r) for r in rows]
        by_row: Dict[int, str] = {}
        for chunk in _chunks(list(dict.fromkeys(wanted)), _MAX_PARAMS):
            marks = ",".join("?" * len(chunk))
            for row, eid in self._conn.execute(f"SELECT row, id FROM entities WHERE row IN ({marks})", chunk):
                by_row[row] = eid
        missing = [r for r in wanted if r not in by_row]
        if missing:
            raise IndexError(f"Row(s) {missing[:5]} out of range for a knowledge base of {len(self)} entities")
        return [by_row[r] for r in wanted]

    def iter_entities(self) -> Iterator[Entity]:
        cursor = self._conn.execute("SELECT record FROM entities ORDER BY row")
        for (record,) in cursor:
            yield entity_from_record(json.loads(record), str(self.db_path))

    def iter_alias_rows(self) -> Iterator[Tuple[str, int]]:
        cursor = self._conn.execute("SELECT alias, row FROM aliases")
        for alias, row in cursor:
            yield alias, int(row)

    def lookup_alias(self, alias: str) -> List[Tuple[str, float]]:
        key = normalize_mention(alias)
        if not key:
            return []
        found = self._conn.execute(
            "SELECT a.row, e.id, a.weight FROM aliases a JOIN entities e ON e.row = a.row WHERE a.alias=?",
            (key,),
        ).fetchall()
        return normalise_priors([(int(r), eid, float(w)) for r, eid, w in found])

    # -- serialisation ---------------------------------------------------- #
    def to_disk(self, path: PathLike) -> None:
        """Copy the database into directory ``path`` (as ``kb.sqlite``) with ``kb.json``.

        Uses SQLite's online backup so the copy is consistent; a no-op copy
        when the KB already lives there.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        target = path / DB_FILE
        if not (target.exists() and target.resolve() == self.db_path.resolve()):
            partial = path / (DB_FILE + ".partial")
            partial.unlink(missing_ok=True)
            with sqlite3.connect(str(partial)) as dest:
                self._conn.backup(dest)
            dest.close()
            os.replace(partial, target)
        write_meta(path, "spacy_gliner.SQLiteKB", self)

    @classmethod
    def from_disk(cls, path: PathLike) -> "SQLiteKB":
        return open_saved_kb(path, DB_FILE, cls)

    def __repr__(self) -> str:
        return f"SQLiteKB({str(self.db_path)!r}, entities={len(self)})"

    def __del__(self) -> None:
        try:
            self._conn.close()
        except Exception:  # interpreter shutdown: nothing useful to do
            pass
