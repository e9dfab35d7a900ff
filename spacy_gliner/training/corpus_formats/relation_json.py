"""Relation corpora in JSON: CoNLL04 (SpERT format), CrossRE and SciERC (DyGIE format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..label_names import LabelMapper, normalize_relation_label
from .gold_docs import PathLike, ReadStats, RelTuple, SpanTuple, build_doc, first_items, list_reader, reading_source

__all__ = ["iter_conll04", "read_conll04", "iter_crossre", "read_crossre", "iter_scierc", "read_scierc"]


def _relation_mapper(normalize_relations: bool) -> Callable[[str], str]:
    return normalize_relation_label if normalize_relations else (lambda label: label)


def _json_records(path: Path) -> Iterator[object]:
    """A JSON list file or a JSON-lines file, record by record."""
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from json.loads(text)
        return
    for line in text.splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield None


#: A record read: its words, entity spans, relations and provenance.
ParsedRecord = Tuple[List[str], List[SpanTuple], List[RelTuple], Dict[str, object]]


def _one_doc_per_record(
    path: Path, vocab: Vocab, stats: ReadStats, parse: Callable[[object, int], Optional[ParsedRecord]],
    limit: Optional[int],
) -> Iterator[Doc]:
    """The gold Doc of each of the first ``limit`` records that ``parse`` can read."""
    for index, record in enumerate(first_items(_json_records(path), limit)):
        parsed = parse(record, index)
        if parsed is None:
            continue
        words, spans, rels, meta = parsed
        doc = build_doc(vocab, words, spans, stats, relations=rels, meta=meta)
        if doc is not None:
            yield doc


def iter_conll04(
    path: PathLike,
    stats: ReadStats,
    *,
    vocab: Optional[Vocab] = None,
    label_mode: str = "table",
    label_map: Union[None, str, Mapping[str, str]] = None,
    normalize_relations: bool = True,
    limit: Optional[int] = None,
) -> Iterator[Doc]:
    """Docs from SpERT-format JSON (CoNLL04): ``{"tokens", "entities":
    [{"type", "start", "end" (exclusive)}], "relations": [{"type", "head",
    "tail"}]}`` with head/tail indexing ``entities``."""
    path, vocab = reading_source(path, stats, vocab)
    mapper = LabelMapper(label_mode, label_map)
    rel_mapper = _relation_mapper(normalize_relations)

    def parse(record, index: int) -> Optional[ParsedRecord]:
        try:
            words = [str(t) for t in record["tokens"]]
            ents = [(int(e["start"]), int(e["end"]), str(e["type"])) for e in record["entities"]]
            raw_rels = [(int(r["head"]), int(r["tail"]), str(r["type"])) for r in record["relations"]]
        except (KeyError, TypeError, ValueError):
            stats.skip("malformed_record")
            return None
        spans = [(s, e, mapper(t)) for s, e, t in ents]
        rels: List[RelTuple] = []
        for h, t, label in raw_rels:
            if not (0 <= h < len(ents) and 0 <= t < len(ents)):
                stats.skip("relation_bad_entity_index")
                continue
            rels.append((ents[h][0], ents[h][1], ents[t][0], ents[t][1], rel_mapper(label)))
        meta = {"source": path.name, "index": index}
        if "orig_id" in record:
            meta["orig_id"] = record["orig_id"]
        return words, spans, rels, meta

    yield from _one_doc_per_record(path, vocab, stats, parse, limit)


read_conll04 = list_reader(iter_conll04)


def iter_crossre(
    path: PathLike,
    stats: ReadStats,
    *,
    vocab: Optional[Vocab] = None,
    label_mode: str = "lower",
    label_map: Union[None, str, Mapping[str, str]] = "crossner",
    normalize_relations: bool = True,
    limit: Optional[int] = None,
) -> Iterator[Doc]:
    """Docs from CrossRE JSON lines: ``{"doc_key", "sentence", "ner":
    [[start, end_inclusive, type]], "relations": [[hs, he, ts, te, type, ...]]}``
    (inclusive ends). Entity labels default to GLiNER's CrossNER names
    (:data:`CROSSNER_TO_GLINER`, the same sentences); relation labels are
    normalised (``general-affiliation`` -> ``general affiliation``)."""
    path, vocab = reading_source(path, stats, vocab)
    mapper = LabelMapper(label_mode, label_map)
    rel_mapper = _relation_mapper(normalize_relations)

    def parse(record, index: int) -> Optional[ParsedRecord]:
        try:
            words = [str(t) for t in record["sentence"]]
            spans = [(int(s), int(e) + 1, mapper(str(t))) for s, e, t, *_ in record["ner"]]
            rels = [
                (int(r[0]), int(r[1]) + 1, int(r[2]), int(r[3]) + 1, rel_mapper(str(r[4])))
                for r in record["relations"]
            ]
        except (KeyError, TypeError, ValueError, IndexError):
            stats.skip("malformed_record")
            return None
        return words, spans, rels, {"source": path.name, "index": index, "doc_key": record.get("doc_key")}

    yield from _one_doc_per_record(path, vocab, stats, parse, limit)


read_crossre = list_reader(iter_crossre)


def iter_scierc(
    path: PathLike,
    stats: ReadStats,
    *,
    vocab: Optional[Vocab] = None,
    label_mode: str = "table",
    label_map: Union[None, str, Mapping[str, str]] = None,
    normalize_relations: bool = True,
    by: str = "sentence",
    limit: Optional[int] = None,
) -> Iterator[Doc]:
    """Docs from SciERC (DyGIE JSON lines; document-level inclusive token
    offsets). ``by="sentence"`` (default) yields one Doc per sentence with
    offsets shifted into it; ``by="document"`` one Doc per abstract with
    sentence boundaries set. ``limit`` counts yielded units."""
    if by not in ("sentence", "document"):
        raise ValueError(f"by must be 'sentence' or 'document', not {by!r}")
    path, vocab = reading_source(path, stats, vocab)
    mapper = LabelMapper(label_mode, label_map)
    rel_mapper = _relation_mapper(normalize_relations)
    produced = 0
    for index, record in enumerate(_json_records(path)):
        try:
            sentences = [[str(t) for t in s] for s in record["sentences"]]
            ner = record["ner"]
            rel = record["relations"]
            if len(ner) != len(sentences) or len(rel) != len(sentences):
                raise ValueError("per-sentence lists differ in length")
            ner = [[(int(s), int(e) + 1, mapper(str(t))) for s, e, t in sent] for sent in ner]
            rel = [
                [(int(r[0]), int(r[1]) + 1, int(r[2]), int(r[3]) + 1, rel_mapper(str(r[4]))) for r in sent]
                for sent in rel
            ]
        except (KeyError, TypeError, ValueError, IndexError):
            stats.skip("malformed_record")
            continue
        doc_key = record.get("doc_key")
        if by == "document":
            if limit is not None and produced >= limit:
                return
            words = [w for s in sentences for w in s]
            starts, off = [], 0
            for s in sentences:
                starts.append(off)
                off += len(s)
            doc = build_doc(
                vocab,
                words,
                [sp for sent in ner for sp in sent],
                stats,
                relations=[r for sent in rel for r in sent],
                meta={"source": path.name, "index": index, "doc_key": doc_key},
                sent_starts=starts,
            )
            if doc is not None:
                produced += 1
                yield doc
            continue
        off = 0
        for s_i, (words, s_ner, s_rel) in enumerate(zip(sentences, ner, rel)):
            if limit is not None and produced >= limit:
                return
            spans = [(s - off, e - off, t) for s, e, t in s_ner]
            rels = [(a - off, b - off, c - off, d - off, t) for a, b, c, d, t in s_rel]
            meta = {
                "source": path.name,
                "index": index,
                "doc_key": doc_key,
                "sentence": s_i,
                "document_token_offset": off,
            }
            off += len(words)
            doc = build_doc(vocab, words, spans, stats, relations=rels, meta=meta)
            if doc is not None:
                produced += 1
                yield doc


read_scierc = list_reader(iter_scierc)
