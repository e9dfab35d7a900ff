"""What an annotated document becomes in the output: a plain record (JSONL, Parquet) or the Doc
itself (DocBin), carried between processes as bytes.

A record is ``{"id", "entities": [{start, end, label, text, score, kb_id}], "relations": [{head_start,
head_end, tail_start, tail_end, label, score}]}`` with character offsets (``end`` exclusive).
``entities`` are ``doc.ents``; an entity's score is the one a span group stored for the same span
and label (gliner components keep every scored span in ``doc.spans``), None when no group scored
it (an entity from another component); ``kb_id`` is None when the pipeline links nothing.
"""
from __future__ import annotations

import json
from typing import Dict, Optional, Tuple

from spacy.tokens import Doc
from spacy.vocab import Vocab

from .. import doc_relations  # noqa: F401  (registers doc._.relations)

RECORDS = "records"
DOCS = "docs"
ID_KEY = "id"  # where a Doc written to a DocBin keeps its record id (doc.user_data)


def stored_scores(doc: Doc) -> Dict[Tuple[int, int, str], float]:
    found: Dict[Tuple[int, int, str], float] = {}
    for group in doc.spans.values():
        scores = group.attrs.get("scores")
        if isinstance(scores, list) and len(scores) == len(group):
            for span, score in zip(group, scores):
                found.setdefault((span.start, span.end, span.label_), float(score))
    return found


def doc_record(doc: Doc, record_id: str) -> dict:
    scores = stored_scores(doc)
    entities = [
        {"start": ent.start_char, "end": ent.end_char, "label": ent.label_, "text": ent.text,
         "score": scores.get((ent.start, ent.end, ent.label_)), "kb_id": ent.kb_id_ or None}
        for ent in doc.ents
    ]
    relations = [
        {"head_start": rel.head.start_char, "head_end": rel.head.end_char,
         "tail_start": rel.tail.start_char, "tail_end": rel.tail.end_char,
         "label": rel.label, "score": float(rel.score)}
        for rel in doc._.relations
    ]
    return {"id": record_id, "entities": entities, "relations": relations}


def encode(doc: Doc, record_id: str, payload: str) -> bytes:
    """The bytes an engine hands to the writer for one annotated doc: a JSON record, or the Doc
    (with its id in ``user_data``) for DocBin output."""
    if payload == RECORDS:
        return json.dumps(doc_record(doc, record_id), ensure_ascii=False).encode("utf8")
    if payload == DOCS:
        doc.user_data[ID_KEY] = record_id
        return doc.to_bytes()
    raise ValueError(f"unknown payload kind {payload!r}")


def decode_record(payload: bytes) -> dict:
    return json.loads(payload)


def decode_doc(payload: bytes, vocab: Optional[Vocab] = None) -> Doc:
    return Doc(vocab or Vocab()).from_bytes(payload)
