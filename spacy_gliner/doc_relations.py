"""How relations live on a spaCy ``Doc``.

One source of truth: ``doc._.gliner_relations`` holds plain data, a list of
``[head_start, head_end, tail_start, tail_end, label, score, head_start_char,
head_end_char, tail_start_char, tail_end_char]`` entries: token offsets (``end``
exclusive, like ``Span.end``) at the time the relation was stored, and the
character offsets of the same spans. Plain lists of ints, strings and floats are
stored in ``doc.user_data`` by spaCy, so they survive
``doc.to_bytes()``/``Doc.from_bytes()``, ``DocBin(store_user_data=True)`` and
``nlp.pipe(..., n_process=2)`` (which ships docs between processes as bytes).

The character offsets are the anchor. Retokenization (``merge_entities``,
``merge_noun_chunks``, ``doc.retokenize()``) renumbers tokens but never moves
characters, and spaCy updates neither ``doc.user_data`` nor span groups, so
stored token offsets go stale. Every reader therefore checks the token offsets
against the characters and, when they disagree, resolves the characters with
``doc.char_span(..., alignment_mode="expand")``: an argument merged into a
larger token becomes that token, a split one keeps covering the same text.
Entries of six fields (written before character offsets were stored) are read
by their token offsets; one that no longer fits the doc raises ``ValueError``
instead of pointing at other tokens.

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
    "StaleRelationsError",
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


class StaleRelationsError(ValueError):
    """A stored relation no longer fits its doc (e.g. legacy token-only data after retokenization)."""


def _resolve(doc: Doc, start: int, end: int, start_char: Optional[int], end_char: Optional[int], entry) -> Tuple[int, int]:
    """Current token bounds of one stored argument."""
    n = len(doc)
    fits = 0 <= start < end <= n
    if start_char is None:
        if not fits:
            raise StaleRelationsError(
                f"relation {list(entry)!r} in doc._.{STORE_ATTR} holds token offsets only and no longer fits "
                f"this Doc of {n} tokens (was it retokenized after the relations were stored?); store relations "
                "again with spacy_gliner.doc_relations.set_relations after retokenizing"
            )
        return start, end
    if fits and doc[start].idx == start_char and doc[end - 1].idx + len(doc[end - 1]) == end_char:
        return start, end
    span = doc.char_span(start_char, end_char, alignment_mode="expand") if 0 <= start_char < end_char <= len(doc.text) else None
    if span is None or len(span) == 0:
        raise StaleRelationsError(
            f"relation {list(entry)!r} in doc._.{STORE_ATTR}: characters {start_char}:{end_char} are not "
            f"inside this Doc's text ({len(doc.text)} characters); the relations belong to another text"
        )
    return span.start, span.end


def get_relation_tuples(doc: Doc) -> List[RelationTuple]:
    """The stored relations as tuples in the doc's *current* token offsets, sorted in document order.

    Follows retokenization through the stored character offsets (see the module docstring).
    Relations that become identical after a merge keep the highest score.
    """
    raw = doc._.get(STORE_ATTR)
    if not raw:
        return []
    best: Dict[Tuple[int, int, int, int, str], float] = {}
    for r in raw:
        chars = [int(c) for c in r[6:10]] if len(r) >= 10 else [None] * 4
        hs, he = _resolve(doc, int(r[0]), int(r[1]), chars[0], chars[1], r)
        ts, te = _resolve(doc, int(r[2]), int(r[3]), chars[2], chars[3], r)
        key, score = (hs, he, ts, te, str(r[4])), float(r[5])
        if key not in best or score > best[key]:
            best[key] = score
    out = [(*key, score) for key, score in best.items()]
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
    stored = [
        [*key, score, doc[key[0]].idx, doc[key[1] - 1].idx + len(doc[key[1] - 1]),
         doc[key[2]].idx, doc[key[3] - 1].idx + len(doc[key[3] - 1])]
        for key, score in best.items()
    ]
    stored.sort(key=_sort_key)
    # A fresh list of plain lists: msgpack-serialisable and never shared.
    doc._.set(STORE_ATTR, stored)


def add_relations(doc: Doc, relations: Iterable[Union[Relation, Sequence]]) -> None:
    """Add relations to those already stored on ``doc``."""
    set_relations(doc, [*get_relation_tuples(doc), *relations])


def _group_bounds(doc: Doc, spans_key: str) -> List[Tuple[int, int, str]]:
    """(start, end, label) of the spans in ``doc.spans[spans_key]``, in current token offsets.

    spaCy's retokenizer does not renumber span groups: after a merge their spans keep stale
    token offsets but also their original character offsets, which are used here to find the
    tokens they cover now. A span whose stale offsets lie past the new end of the doc cannot
    even be built (spaCy raises E035); it is skipped, so its relations lose their label but
    never take another span's.
    """
    if spans_key not in doc.spans:
        return []
    group, out = doc.spans[spans_key], []
    for i in range(len(group)):
        try:
            span = group[i]
        except IndexError:
            continue
        start, end = span.start, span.end
        if doc[start].idx != span.start_char or doc[end - 1].idx + len(doc[end - 1]) != span.end_char:
            current = doc.char_span(span.start_char, span.end_char, alignment_mode="expand")
            if current is None or len(current) == 0:
                continue
            start, end = current.start, current.end
        out.append((start, end, span.label_))
    return out


def entity_label_for(doc: Doc, start: int, end: int, spans_key: str = "sc") -> str:
    """Label of the entity with exactly these token bounds, or ``""``.

    Looks in ``doc.ents`` first, then in the span group ``spans_key``.
    """
    for ent in doc.ents:
        if ent.start == start and ent.end == end:
            return ent.label_
    for span_start, span_end, label in _group_bounds(doc, spans_key):
        if span_start == start and span_end == end:
            return label
    return ""


def _entity_labels(doc: Doc, spans_key: str = "sc") -> Dict[Tuple[int, int], str]:
    """(start, end) -> label, with :func:`entity_label_for`'s precedence, built once per call so
    that reading many relations of a doc with many entities stays linear."""
    labels: Dict[Tuple[int, int], str] = {}
    for start, end, label in reversed(_group_bounds(doc, spans_key)):
        labels[(start, end)] = label
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
                f"leaves it alone. Use spacy_gliner.doc_relations.{getter.__name__}(doc) "
                f"instead.",
                stacklevel=2,
            )


register_extensions()
