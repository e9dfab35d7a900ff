"""A knowledge base held entirely in Python dicts: simple and fast for small KBs."""
from __future__ import annotations

import shutil
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
from .entities import Entity, entities_from_spacy_kb, load_entities_jsonl, write_entities_jsonl
from .normalize import normalize_mention

ENTITIES_FILE = "entities.jsonl"


class InMemoryKB:
    """All entities and the alias table in memory. See ``base.KnowledgeBase``.

    Memory grows with the KB (roughly 1 KB per entity with a short
    description); use :class:`~spacy_gliner.kb.sqlite.SQLiteKB` beyond a few
    hundred thousand entities.
    """

    def __init__(self, entities: Iterable[Entity] = ()) -> None:
        self._entities: List[Entity] = []
        self._row_by_id: Dict[str, int] = {}
        self._rows_by_alias: Dict[str, List[int]] = {}
        self._content_hash = EMPTY_CONTENT_HASH
        self.add_entities(entities)

    # -- construction ---------------------------------------------------- #
    @classmethod
    def from_jsonl(cls, path: PathLike) -> "InMemoryKB":
        """Load a validated JSONL file (see ``entities.py`` for the format)."""
        return cls(load_entities_jsonl(path))

    @classmethod
    def from_spacy_kb(cls, spacy_kb, descriptions=None, names=None) -> "InMemoryKB":
        """Import a spaCy ``InMemoryLookupKB`` (see ``entities_from_spacy_kb``)."""
        return cls(entities_from_spacy_kb(spacy_kb, descriptions, names))

    def add_entities(self, entities: Iterable[Entity]) -> None:
        batch = list(entities)
        # Check the whole batch first so a bad batch leaves the KB unchanged.
        seen: Dict[str, int] = {}
        for position, entity in enumerate(batch):
            if entity.id in self._row_by_id:
                raise ValueError(f"Entity id '{entity.id}' is already in the knowledge base "
                                 f"(row {self._row_by_id[entity.id]}); ids must be unique")
            if entity.id in seen:
                raise ValueError(f"Duplicate entity id '{entity.id}' in the added batch "
                                 f"(positions {seen[entity.id]} and {position})")
            seen[entity.id] = position
        for entity in batch:
            row = len(self._entities)
            self._entities.append(entity)
            self._row_by_id[entity.id] = row
            for alias in entity.all_aliases():
                self._rows_by_alias.setdefault(normalize_mention(alias), []).append(row)
            self._content_hash = chain_content_hash(self._content_hash, entity)

    # -- KnowledgeBase protocol ------------------------------------------ #
    def __len__(self) -> int:
        return len(self._entities)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._row_by_id

    @property
    def is_empty(self) -> bool:
        return not self._entities

    @property
    def content_hash(self) -> str:
        return self._content_hash

    def get(self, entity_id: str) -> Entity:
        row = self._row_by_id.get(entity_id)
        if row is None:
            raise unknown_ids_error([entity_id], len(self))
        return self._entities[row]

    def get_many(self, entity_ids: Sequence[str]) -> List[Entity]:
        missing = [eid for eid in entity_ids if eid not in self._row_by_id]
        if missing:
            raise unknown_ids_error(missing, len(self))
        return [self._entities[self._row_by_id[eid]] for eid in entity_ids]

    def ids(self) -> Iterator[str]:
        return (entity.id for entity in self._entities)

    def row_of(self, entity_id: str) -> int:
        if entity_id not in self._row_by_id:
            raise unknown_ids_error([entity_id], len(self))
        return self._row_by_id[entity_id]

    def ids_at(self, rows: Sequence[int]) -> List[str]:
        return [self._entities[int(row)].id for row in rows]

    def iter_entities(self) -> Iterator[Entity]:
        return iter(list(self._entities))

    def iter_alias_rows(self) -> Iterator[Tuple[str, int]]:
        for alias, rows in self._rows_by_alias.items():
            for row in rows:
                yield alias, row

    def lookup_alias(self, alias: str) -> List[Tuple[str, float]]:
        key = normalize_mention(alias)
        rows = self._rows_by_alias.get(key, [])
        return normalise_priors(
            [(row, self._entities[row].id, self._entities[row].alias_weight(key)) for row in rows]
        )

    # -- serialisation ---------------------------------------------------- #
    def to_disk(self, path: PathLike) -> None:
        """Write ``entities.jsonl`` and ``kb.json`` into directory ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (ENTITIES_FILE + ".partial")
        write_entities_jsonl(self._entities, tmp)
        shutil.move(str(tmp), str(path / ENTITIES_FILE))
        write_meta(path, "spacy_gliner.InMemoryKB", self)

    @classmethod
    def from_disk(cls, path: PathLike) -> "InMemoryKB":
        return open_saved_kb(path, ENTITIES_FILE, cls.from_jsonl)
