"""The storage interface every knowledge base implements, plus shared helpers.

Two implementations exist: :class:`~spacy_gliner.kb.memory.InMemoryKB` (a few
hundred thousand entities, everything in dicts) and
:class:`~spacy_gliner.kb.sqlite.SQLiteKB` (millions, rows read on demand).
Candidate generators, the embedding store and the linker only use the methods
below, so either can be swapped in.

Rows: every entity has a stable integer row (0..len-1) in insertion order.
Embedding matrices and n-gram indexes are indexed by row, so rows never change
once assigned; KBs are append-only.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Protocol, Sequence, Tuple, TypeVar, Union, runtime_checkable

from .entities import Entity

PathLike = Union[str, Path]
KB = TypeVar("KB", bound="KnowledgeBase")

# Written into every serialised KB directory so load_kb() can pick the class.
META_FILE = "kb.json"
EMPTY_CONTENT_HASH = hashlib.sha256(b"spacy_gliner.kb.v1").hexdigest()
#: The kb_id of a mention that links to no entity of the KB (as spaCy's EntityLinker writes it).
NIL = "NIL"


@runtime_checkable
class KnowledgeBase(Protocol):
    """What the linker and the candidate generators need from a KB."""

    def __len__(self) -> int: ...

    def __contains__(self, entity_id: object) -> bool: ...

    @property
    def is_empty(self) -> bool: ...

    @property
    def content_hash(self) -> str:
        """Changes whenever entities are added; lets derived indexes detect staleness cheaply."""
        ...

    def get(self, entity_id: str) -> Entity:
        """The entity with this id; KeyError naming the id if unknown."""
        ...

    def get_many(self, entity_ids: Sequence[str]) -> List[Entity]:
        """Entities in the order asked; KeyError naming the unknown ids."""
        ...

    def ids(self) -> Iterator[str]:
        """All ids in row order."""
        ...

    def row_of(self, entity_id: str) -> int: ...

    def ids_at(self, rows: Sequence[int]) -> List[str]: ...

    def iter_entities(self) -> Iterator[Entity]:
        """All entities in row order (streamed for large KBs)."""
        ...

    def iter_alias_rows(self) -> Iterator[Tuple[str, int]]:
        """Every (normalised alias, row) pair; used to build fuzzy indexes."""
        ...

    def lookup_alias(self, alias: str) -> List[Tuple[str, float]]:
        """Entities whose normalised alias equals ``normalize_mention(alias)``,
        as ``(id, prior)`` sorted by prior (descending) then row. Priors are
        per-alias weights normalised to sum to 1 (uniform if all weights are 0)."""
        ...

    def add_entities(self, entities: Iterable[Entity]) -> None:
        """Append new entities (ValueError on an id already present)."""
        ...

    def to_disk(self, path: PathLike) -> None: ...


def unknown_ids_error(missing: Sequence[str], kb_size: int) -> KeyError:
    shown = ", ".join(repr(m) for m in list(missing)[:5])
    more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
    return KeyError(f"Unknown entity id(s) {shown}{more}: not in this knowledge base ({kb_size} entities)")


def normalise_priors(weighted: List[Tuple[int, str, float]]) -> List[Tuple[str, float]]:
    """(row, id, weight) triples -> (id, prior) sorted best first; see lookup_alias."""
    if not weighted:
        return []
    total = sum(w for _, _, w in weighted)
    if total > 0:
        scored = [(row, eid, w / total) for row, eid, w in weighted]
    else:
        scored = [(row, eid, 1.0 / len(weighted)) for row, eid, _ in weighted]
    scored.sort(key=lambda item: (-item[2], item[0]))
    return [(eid, prior) for _, eid, prior in scored]


def entity_digest(entity: Entity) -> bytes:
    """Stable digest of a whole record (key order fixed)."""
    payload = json.dumps(entity.to_json(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).digest()


def chain_content_hash(previous: str, entity: Entity) -> str:
    """Fold one appended entity into a KB content hash.

    The hash is a chain over records in row order, so appending updates it in
    O(1) and any change to an earlier record changes it.
    """
    return hashlib.sha256(bytes.fromhex(previous) + entity_digest(entity)).hexdigest()


def ensure_not_empty(kb: KnowledgeBase, what: str = "the entity linker") -> None:
    """Raise a clear ValueError if ``kb`` has no entities (call before linking)."""
    if kb.is_empty:
        raise ValueError(
            f"The knowledge base used by {what} is empty: nothing can be linked. "
            "Load entities first, e.g. InMemoryKB.from_jsonl(path) or SQLiteKB.from_jsonl(path, db_path)."
        )


def write_meta(path: Path, kind: str, kb: KnowledgeBase) -> None:
    meta = {"format": kind, "version": 1, "entities": len(kb), "content_hash": kb.content_hash}
    (path / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def read_meta(path: PathLike) -> dict:
    meta_path = Path(path) / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{meta_path} not found: {path} is not a serialised knowledge base directory "
            "(expected one written by InMemoryKB.to_disk or SQLiteKB.to_disk)"
        )
    return json.loads(meta_path.read_text(encoding="utf-8"))


def open_saved_kb(path: PathLike, data_file: str, open_data: Callable[[Path], KB]) -> KB:
    """The KB that ``to_disk`` wrote into directory ``path``: ``open_data`` opens its ``data_file``,
    which must still hold what ``kb.json`` recorded (a file edited or swapped by hand is refused)."""
    meta = read_meta(path)
    kb = open_data(Path(path) / data_file)
    if meta.get("content_hash") not in (None, kb.content_hash):
        raise ValueError(f"{path}: {data_file} does not match kb.json (edited by hand?); "
                         "re-save the knowledge base with to_disk()")
    return kb
