"""How relations live on a spaCy ``Doc``.

One source of truth: ``doc._.gliner_relations`` holds plain data, a list of
``[head_start, head_end, tail_start, tail_end, label, score]`` entries in
*token* offsets (``end`` exclusive, like ``Span.end``). Plain lists of ints,
strings and floats are stored in ``doc.user_data`` by spaCy, so they survive
``doc.to_bytes()``/``Doc.from_bytes()``, ``DocBin(store_user_data=True)`` and
``nlp.pipe(..., n_process=2)`` (which ships docs between processes as bytes).

Two read-only views are derived from that store:

* ``doc._.relations``: a list of :class:`Relation` (``head``/``tail`` as
  ``Span`` objects, ``label``, ``score``) in document order, sorted by
  (head start, tail start, head end, tail end, label).
* ``doc._.rel``: the dict format of spaCy's relation-extraction tutorial,
  ``{(head.start, tail.start): {label: score}}``. When two stored relations
  share the same ``(head.start, tail.start)`` key and label (possible only if
  their span ends differ) the higher score is kept.

Importing this module registers the three extensions. Registration is
idempotent: the data attribute is only added when missing, and the getters are
re-registered (``force=True``) only when the existing registration is this
module's own getter, so an unrelated ``rel`` extension that a user pipeline
defined (e.g. the tutorial's ``Doc.set_extension("rel", default={})``) is left
alone with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc, Span

__all__ = [
    "STORE_ATTR",
    "Relation",
    "RelationTuple",
    "register_extensions",
    "set_relations",
    "add_relations",
    "get_relation_tuples",
    "get_relations",
    "get_rel_dict",
    "entity_label_for",
]

#: Name of the Doc extension that holds the plain-data relation store.
STORE_ATTR = "gliner_relations"
RELATIONS_ATTR = "relations"
REL_ATTR = "rel"

#: (head_start, head_end, tail_start, tail_end, label, score), token offsets,
#: ends exclusive.
RelationTuple = Tuple[int, int, int, int, str, float]


@dataclass(frozen=True)
class Relation:
    """A directed, labelled relation between two spans of the same Doc."""

    head: Span
    tail: Span
    label: str
    score: float = 1.0

    def as_tuple(self) -> RelationTuple:
        return (
            self.head.start,
            self.head.end,
            self.tail.start,
            self.tail.end,
            self.label,
            float(self.score),
        )

    def __repr__(self) -> str:
        return (
            f"Relation({self.head.text!r}[{self.head.start}:{self.head.end}] "
            f"-{self.label}-> {self.tail.text!r}[{self.tail.start}:{self.tail.end}], "
            f"score={self.score:.4f})"
        )


def _sort_key(t: Sequence) -> tuple:
    return (t[0], t[2], t[1], t[3], t[4])


def _coerce(doc: Doc, item: Union[Relation, Sequence]) -> RelationTuple:
    """Turn a Relation, a 6-tuple or a 5-tuple (score 1.0) into a checked tuple."""
    if isinstance(item, Relation):
        if item.head.doc is not doc or item.tail.doc is not doc:
            raise ValueError(f"{item!r} has spans from another Doc")
        t = item.as_tuple()
    else:
        if len(item) == 5:
            hs, he, ts, te, label = item
            score = 1.0
        elif len(item) == 6:
            hs, he, ts, te, label, score = item
        else:
            raise ValueError(
                "a relation tuple is (head_start, head_end, tail_start, tail_end, "
                f"label[, score]); got {item!r}"
            )
        t = (int(hs), int(he), int(ts), int(te), str(label), float(score))
    hs, he, ts, te, label, _ = t
    n = len(doc)
    if not (0 <= hs < he <= n and 0 <= ts < te <= n):
        raise ValueError(f"relation {t!r} is out of range for a Doc of {n} tokens")
    if not label:
        raise ValueError(f"relation {t!r} has an empty label")
    return t


def get_relation_tuples(doc: Doc) -> List[RelationTuple]:
    """The stored relations as tuples, sorted in document order."""
    raw = doc._.get(STORE_ATTR)
    if not raw:
        return []
    out = [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4]), float(r[5])) for r in raw]
    out.sort(key=_sort_key)
    return out


def set_relations(doc: Doc, relations: Iterable[Union[Relation, Sequence]]) -> None:
    """Replace the relations of ``doc``.

    ``relations`` may mix :class:`Relation` objects and tuples
    ``(head_start, head_end, tail_start, tail_end, label[, score])`` in token
    offsets. Exact duplicates (same spans and label) keep the highest score.
    Raises ``ValueError`` on out-of-range offsets or spans of another Doc.
    """
    best: Dict[Tuple[int, int, int, int, str], float] = {}
    for item in relations:
        hs, he, ts, te, label, score = _coerce(doc, item)
        key = (hs, he, ts, te, label)
        if key not in best or score > best[key]:
            best[key] = score
    stored = [[*key, score] for key, score in best.items()]
    stored.sort(key=_sort_key)
    # A fresh list of plain lists: msgpack-serialisable and never shared.
    doc._.set(STORE_ATTR, stored)


def add_relations(doc: Doc, relations: Iterable[Union[Relation, Sequence]]) -> None:
    """Add relations to those already stored on ``doc``."""
    set_relations(doc, [*get_relation_tuples(doc), *relations])


def entity_label_for(doc: Doc, start: int, end: int, spans_key: str = "sc") -> str:
    """Label of the entity with exactly these token bounds, or ``""``.

    Looks in ``doc.ents`` first, then in the span group ``spans_key``.
    """
    for ent in doc.ents:
        if ent.start == start and ent.end == end:
            return ent.label_
    if spans_key in doc.spans:
        for span in doc.spans[spans_key]:
            if span.start == start and span.end == end:
                return span.label_
    return ""


def _entity_labels(doc: Doc, spans_key: str = "sc") -> Dict[Tuple[int, int], str]:
    """(start, end) -> label, with :func:`entity_label_for`'s precedence, built once per call so
    that reading many relations of a doc with many entities stays linear."""
    labels: Dict[Tuple[int, int], str] = {}
    if spans_key in doc.spans:
        for span in reversed(list(doc.spans[spans_key])):
            labels[(span.start, span.end)] = span.label_
    for ent in reversed(list(doc.ents)):
        labels[(ent.start, ent.end)] = ent.label_
    return labels


def get_relations(doc: Doc) -> List[Relation]:
    """Getter of ``doc._.relations``: Relation objects in document order."""
    labels = _entity_labels(doc)

    def span(start: int, end: int) -> Span:
        label = labels.get((start, end), "")
        return Span(doc, start, end, label=label) if label else doc[start:end]

    return [Relation(span(hs, he), span(ts, te), label, score) for hs, he, ts, te, label, score in get_relation_tuples(doc)]


def get_rel_dict(doc: Doc) -> Dict[Tuple[int, int], Dict[str, float]]:
    """Getter of ``doc._.rel``: ``{(head.start, tail.start): {label: score}}``."""
    out: Dict[Tuple[int, int], Dict[str, float]] = {}
    for hs, _he, ts, _te, label, score in get_relation_tuples(doc):
        scores = out.setdefault((hs, ts), {})
        if label not in scores or score > scores[label]:
            scores[label] = score
    return out


def _is_ours(name: str, getter) -> bool:
    ext = Doc.get_extension(name)
    if ext is None:
        return False
    existing_getter = ext[2]
    return existing_getter is not None and (
        getattr(existing_getter, "__module__", None) == __name__
        and getattr(existing_getter, "__name__", None) == getter.__name__
    )


def register_extensions() -> None:
    """Register ``doc._.gliner_relations``, ``doc._.relations`` and ``doc._.rel``."""
    if not Doc.has_extension(STORE_ATTR):
        # default None (not []): a mutable default would be shared by all docs.
        Doc.set_extension(STORE_ATTR, default=None)
    for name, getter in ((RELATIONS_ATTR, get_relations), (REL_ATTR, get_rel_dict)):
        if not Doc.has_extension(name):
            Doc.set_extension(name, getter=getter)
        elif _is_ours(name, getter):
            # Same getter (e.g. module reloaded): re-registering is harmless.
            Doc.set_extension(name, getter=getter, force=True)
        else:
            warnings.warn(
                f"Doc._.{name} is already registered by another package; spacy_gliner "
                f"leaves it alone. Use spacy_gliner.relations.{getter.__name__}(doc) "
                f"instead.",
                stacklevel=2,
            )


register_extensions()
