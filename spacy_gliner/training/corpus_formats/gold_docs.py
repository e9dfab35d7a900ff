"""The gold ``Doc`` every corpus reader builds, and what the readers count while building it.

Every reader builds each ``Doc`` from the corpus's own words
(``Doc(vocab, words=words, spaces=[True, ..., True, False])``), i.e. the
whitespace-word protocol of the GLiNER papers: token ``i`` of the Doc is word
``i`` of the corpus and ``doc.text == " ".join(words)``.

Gold entities are written twice:

* ``doc.spans["sc"]`` (:data:`~spacy_gliner.training.doc_keys.SPANS_KEY`): every valid gold
  span, nested and overlapping ones included, sorted by (start, end, label);
* ``doc.ents``: the largest non-overlapping subset (spaCy's ``filter_spans``:
  longest first, then earliest). Every token outside an entity is set to ``O``
  so ``doc.has_annotation("ENT_IOB")`` holds even for sentences without
  entities (spaCy's scorer would otherwise skip them and hide false positives).

Gold relations (CoNLL04, CrossRE, SciERC) are stored with
:func:`spacy_gliner.doc_relations.set_relations` (score 1.0).

Bad data never stops a reader: each problem is counted in
:class:`ReadStats` under a reason (see :data:`SKIP_REASONS`), reported once in
a warning at the end of ``read_*`` and returned to the caller.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc, Span
from spacy.util import filter_spans
from spacy.vocab import Vocab

from ...doc_relations import set_relations
from ..doc_keys import META_KEY, SPANS_KEY

__all__ = [
    "SKIP_REASONS",
    "ReadStats",
    "SpanTuple",
    "RelTuple",
    "PathLike",
    "build_doc",
    "reading_source",
    "collect_docs",
    "list_reader",
    "first_items",
]

PathLike = Union[str, Path]

_WHITESPACE = re.compile(r"\s+")
_HAS_SPACE = re.compile(r"\s")

#: Reasons under which items are skipped (the item named first is what is
#: dropped; the rest of its document is kept unless the item is a document).
SKIP_REASONS: Dict[str, str] = {
    "empty_document": "document: no words",
    "bad_token": "document: a word is empty or only whitespace (a word with edge whitespace is stripped, inner whitespace becomes '_', counted in notes['token_whitespace_fixed'])",
    "malformed_record": "document: record lacks the fields of its format",
    "malformed_line": "document: a BIO/CoNLL line without a tag column",
    "unknown_bio_tag": "document: a tag that is not O/B-/I-/E-/S-/L-/U- or whose type is not in label.txt",
    "span_out_of_range": "entity: start/end outside the document or start >= end",
    "misaligned_char_span": "entity: character offsets not on word boundaries",
    "name_mismatch": "entity: text at the offsets differs from the given name",
    "empty_label": "entity or relation: empty label",
    "duplicate_span": "entity: same (start, end, label) twice",
    "overlapping_span": "entity: overlaps a longer/earlier gold span, left out of doc.ents (kept in doc.spans['sc'])",
    "relation_out_of_range": "relation: argument outside the document",
    "relation_bad_entity_index": "relation: head/tail index not in the entity list",
    "duplicate_relation": "relation: same (head, tail, label) twice",
}


@dataclass
class ReadStats:
    """What a reader produced and what it skipped, per reason."""

    source: str = ""
    docs: int = 0
    entities: int = 0  # gold spans in doc.spans["sc"]
    ents: int = 0  # gold spans in doc.ents
    relations: int = 0
    tokens: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    relation_labels: Counter = field(default_factory=Counter)

    def skip(self, reason: str, n: int = 1) -> None:
        if reason not in SKIP_REASONS:
            raise KeyError(f"unknown skip reason {reason!r}")
        self.skipped[reason] += n

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def merge(self, other: "ReadStats") -> "ReadStats":
        self.docs += other.docs
        self.entities += other.entities
        self.ents += other.ents
        self.relations += other.relations
        self.tokens += other.tokens
        self.skipped.update(other.skipped)
        self.notes.update(other.notes)
        self.labels.update(other.labels)
        self.relation_labels.update(other.relation_labels)
        return self

    def to_dict(self) -> Dict[str, object]:
        return {
            "source": self.source,
            "docs": self.docs,
            "tokens": self.tokens,
            "entities": self.entities,
            "ents": self.ents,
            "relations": self.relations,
            "skipped": dict(sorted(self.skipped.items())),
            "notes": dict(sorted(self.notes.items())),
            "labels": dict(self.labels.most_common()),
            "relation_labels": dict(self.relation_labels.most_common()),
        }

    def summary(self) -> str:
        head = (
            f"{self.source or 'corpus'}: {self.docs} docs, {self.tokens} tokens, "
            f"{self.entities} gold spans ({self.ents} in doc.ents)"
        )
        if self.relations or self.relation_labels:
            head += f", {self.relations} relations"
        parts = [head]
        if self.skipped:
            parts.append(
                "skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
            )
        if self.notes:
            parts.append("notes: " + ", ".join(f"{k}={v}" for k, v in sorted(self.notes.items())))
        return "; ".join(parts)

    def warn(self) -> None:
        """Emit one warning with counts per reason if anything was skipped."""
        if self.skipped:
            warnings.warn(
                f"{self.source or 'corpus'}: skipped "
                + ", ".join(f"{v} x {k}" for k, v in sorted(self.skipped.items())),
                UserWarning,
                stacklevel=4,
            )


SpanTuple = Tuple[int, int, str]  # token start, token end (exclusive), label
RelTuple = Tuple[int, int, int, int, str]  # head start/end, tail start/end, label


def build_doc(
    vocab: Vocab,
    words: Sequence[str],
    spans: Iterable[SpanTuple],
    stats: ReadStats,
    *,
    relations: Optional[Iterable[RelTuple]] = None,
    meta: Optional[Dict[str, object]] = None,
    sent_starts: Optional[Sequence[int]] = None,
) -> Optional[Doc]:
    """Build one gold Doc; returns ``None`` (and counts why) if the document
    itself is unusable. Spans and relations use exclusive token ends."""
    words = list(words)
    if not words:
        stats.skip("empty_document")
        return None
    if any(not w or w != w.strip() or _HAS_SPACE.search(w) for w in words):
        fixed = []
        for w in words:
            clean = _WHITESPACE.sub("_", w.strip())
            if not clean:
                stats.skip("bad_token")
                return None
            if clean != w:
                stats.notes["token_whitespace_fixed"] += 1
            fixed.append(clean)
        words = fixed
    n = len(words)
    doc = Doc(vocab, words=words, spaces=[True] * (n - 1) + [False])
    if sent_starts is not None:
        starts = set(sent_starts)
        for i, token in enumerate(doc):
            token.is_sent_start = i in starts
    seen = set()
    good: List[Span] = []
    for start, end, label in spans:
        if not label:
            stats.skip("empty_label")
            continue
        if not (0 <= start < end <= n):
            stats.skip("span_out_of_range")
            continue
        key = (start, end, label)
        if key in seen:
            stats.skip("duplicate_span")
            continue
        seen.add(key)
        good.append(Span(doc, start, end, label=label))
    good.sort(key=lambda s: (s.start, s.end, s.label_))
    flat = filter_spans(good)
    if len(flat) < len(good):
        stats.skip("overlapping_span", len(good) - len(flat))
    doc.set_ents(flat, default="outside")
    doc.spans[SPANS_KEY] = good
    if relations is not None:
        rels = []
        rel_seen = set()
        bounds = {(s.start, s.end) for s in good}
        for hs, he, ts, te, label in relations:
            if not label:
                stats.skip("empty_label")
                continue
            if not (0 <= hs < he <= n and 0 <= ts < te <= n):
                stats.skip("relation_out_of_range")
                continue
            key5 = (hs, he, ts, te, label)
            if key5 in rel_seen:
                stats.skip("duplicate_relation")
                continue
            rel_seen.add(key5)
            if (hs, he) not in bounds or (ts, te) not in bounds:
                stats.notes["relation_argument_not_a_gold_entity"] += 1
            rels.append((hs, he, ts, te, label, 1.0))
        set_relations(doc, rels)
        stats.relations += len(rels)
        stats.relation_labels.update(r[4] for r in rels)
    if meta:
        doc.user_data[META_KEY] = dict(meta)
    stats.docs += 1
    stats.tokens += n
    stats.entities += len(good)
    stats.ents += len(flat)
    stats.labels.update(s.label_ for s in good)
    return doc


def reading_source(path: PathLike, stats: ReadStats, vocab: Optional[Vocab]) -> Tuple[Path, Vocab]:
    """The file as a ``Path`` and the vocab to build with (a new one when none is given); names
    ``stats`` after the file unless it already has a source."""
    path = Path(path)
    stats.source = stats.source or str(path)
    return path, (vocab if vocab is not None else Vocab())


def collect_docs(iterate: Callable[..., Iterator[Doc]], path: PathLike, warn: bool, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """Every ``read_*``: run its ``iter_*`` to the end, then report what was skipped."""
    stats = ReadStats(source=str(path))
    docs = list(iterate(path, stats, **kwargs))
    if warn:
        stats.warn()
    return docs, stats


def list_reader(iterate: Callable[..., Iterator[Doc]]) -> Callable[..., Tuple[List[Doc], ReadStats]]:
    """The ``read_*`` of an ``iter_*``: ``read(path, *, warn=True, **kwargs) -> (docs, stats)``."""

    def read(path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
        return collect_docs(iterate, path, warn, **kwargs)

    read.__name__ = read.__qualname__ = iterate.__name__.replace("iter_", "read_", 1)
    read.__doc__ = f":func:`{iterate.__name__}` collected into a list, plus its stats."
    return read


def first_items(it: Iterable, limit: Optional[int]) -> Iterator:
    """The first ``limit`` items of ``it`` (all of them when ``limit`` is ``None``)."""
    for i, item in enumerate(it):
        if limit is not None and i >= limit:
            return
        yield item
