"""Readers that turn the public NER / relation corpora into spaCy ``Doc`` objects.

Every reader builds each ``Doc`` from the corpus's own words
(``Doc(vocab, words=words, spaces=[True, ..., True, False])``), i.e. the
whitespace-word protocol of the GLiNER papers: token ``i`` of the Doc is word
``i`` of the corpus and ``doc.text == " ".join(words)``.

Gold entities are written twice:

* ``doc.spans["sc"]`` (:data:`SPANS_KEY`): every valid gold span, nested and
  overlapping ones included, sorted by (start, end, label);
* ``doc.ents``: the largest non-overlapping subset (spaCy's ``filter_spans``:
  longest first, then earliest). Every token outside an entity is set to ``O``
  so ``doc.has_annotation("ENT_IOB")`` holds even for sentences without
  entities (spaCy's scorer would otherwise skip them and hide false positives).

Gold relations (CoNLL04, CrossRE, SciERC) are stored with
:func:`spacy_gliner.doc_relations.set_relations` (score 1.0).

Bad data never stops a reader: each problem is counted in
:class:`ReadStats` under a reason (see :data:`SKIP_REASONS`), reported once in
a warning at the end of ``read_*`` and returned to the caller.

Label names are normalised the way the GLiNER papers prompt them (lower-case
natural language), see :data:`LABEL_TABLE`, :data:`CROSSNER_TO_GLINER` and
:func:`normalize_label`.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from spacy.tokens import Doc, Span
from spacy.util import filter_spans, registry
from spacy.vocab import Vocab

from .. import doc_relations as _relations

__all__ = [
    "SPANS_KEY",
    "META_KEY",
    "LABEL_TABLE",
    "CROSSNER_TO_GLINER",
    "RELATION_LABEL_TABLE",
    "LABEL_MAP_PRESETS",
    "SKIP_REASONS",
    "FORMATS",
    "ReadStats",
    "LabelMapper",
    "normalize_label",
    "normalize_relation_label",
    "load_label_map",
    "build_doc",
    "load_gliner_labels",
    "iter_gliner_json",
    "read_gliner_json",
    "read_gliner_dataset",
    "iter_bio",
    "read_bio",
    "read_crossner_bio",
    "iter_conll",
    "read_conll",
    "iter_conll04",
    "read_conll04",
    "iter_crossre",
    "read_crossre",
    "iter_scierc",
    "read_scierc",
    "iter_corpus",
    "read_corpus",
    "create_gliner_corpus_reader",
]

PathLike = Union[str, Path]

#: Span group that holds every gold span (nested / overlapping included).
SPANS_KEY = "sc"
#: ``doc.user_data`` key with provenance: source file, record index, and for
#: CoNLL files the document index and the sentence's token offset inside it.
META_KEY = "spacy_gliner.meta"

# ---------------------------------------------------------------------------
# Label normalisation
# ---------------------------------------------------------------------------

#: Raw corpus label -> prompt label, matched case-insensitively. Labels not in
#: the table are lower-cased, ``_`` becomes a space and runs of spaces collapse
#: (``Anatomical_system`` -> ``anatomical system``).
#:
#: ============================ ======================================= =========================
#: raw label(s)                 prompt label                            corpora
#: ============================ ======================================= =========================
#: PER, PERSON, Peop            person                                  CoNLL, WikiANN, CoNLL04
#: LOC, Loc                     location                                CoNLL, CoNLL04
#: ORG, Org, organisation       organization                            CoNLL, CrossNER, CoNLL04
#: MISC, misc                   miscellaneous                           CoNLL, CrossNER
#: GPE                          geopolitical entity                     (OntoNotes style)
#: programlang                  programming language                    CrossNER ai
#: musicalartist ...            musical artist, music genre, ...        CrossNER (glued words)
#: creative-work, creative_work creative work                           WNUT-17, TweetNER7
#: OtherScientificTerm          other scientific term                   SciERC
#: MATE, MANP, ... (FabNER)     material, manufacturing process, ...    FabNER (UniNER names)
#: ANIM, BIO, CEL, ... (MultiNERD) animal, biological entity, ...       MultiNERD
#: ============================ ======================================= =========================
LABEL_TABLE: Dict[str, str] = {
    # CoNLL-2003 / WikiANN / WikiNeural / Broad Twitter / MultiNERD core
    "per": "person",
    "person": "person",
    "peop": "person",
    "loc": "location",
    "org": "organization",
    "organisation": "organization",
    "misc": "miscellaneous",
    "gpe": "geopolitical entity",
    # CrossNER glued names
    "programlang": "programming language",
    "musicalartist": "musical artist",
    "musicalinstrument": "musical instrument",
    "musicgenre": "music genre",
    "literarygenre": "literary genre",
    "politicalparty": "political party",
    "astronomicalobject": "astronomical object",
    "chemicalcompound": "chemical compound",
    "chemicalelement": "chemical element",
    "academicjournal": "academic journal",
    # WNUT-17 / TweetNER7
    "creative-work": "creative work",
    "creative_work": "creative work",
    # SciERC
    "otherscientificterm": "other scientific term",
    # FabNER codes (names as in the UniNER / InstructUIE prompts)
    "mate": "material",
    "manp": "manufacturing process",
    "maceq": "machine or equipment",
    "appl": "application",
    "feat": "engineering feature",
    "pro": "mechanical property",
    "char": "process characterization",
    "para": "process parameter",
    "enat": "enabling technology",
    "conpri": "concept or principle",
    "mans": "manufacturing standard",
    "biop": "biomedical",
    # MultiNERD codes
    "anim": "animal",
    "bio": "biological entity",
    "cel": "celestial body",
    "dis": "disease",
    "eve": "event",
    "inst": "instrument",
    "myth": "mythological entity",
    "vehi": "vehicle",
}

#: CrossNER / CrossRE raw labels -> the names in GLiNER's CrossNER
#: ``labels.json`` (lower-cased). Labels not listed are kept lower-cased.
#: With this map, reading ``crossner/<domain>/test.txt`` yields exactly the
#: label set of ``gliner_ner_datasets/CrossNER_<domain>/labels.json``.
CROSSNER_TO_GLINER: Dict[str, str] = {
    "misc": "else",
    "organisation": "organization",
    "programlang": "program language",
    "musicalartist": "musical artist",
    "musicalinstrument": "musical instrument",
    "musicgenre": "music genre",
    "literarygenre": "literary genre",
    "politicalparty": "political party",
    "astronomicalobject": "astronomical object",
    "chemicalcompound": "chemical compound",
    "chemicalelement": "chemical element",
    "academicjournal": "academic journal",
}

#: Relation labels: matched case-insensitively; otherwise lower-case with
#: ``_`` and ``-`` turned into spaces (``USED-FOR`` -> ``used for``,
#: ``general-affiliation`` -> ``general affiliation``, ``Live_In`` -> ``live in``).
RELATION_LABEL_TABLE: Dict[str, str] = {
    "orgbased_in": "organization based in",  # CoNLL04 (SpERT verbose name)
}

#: Named label maps usable as ``label_map=`` or ``--label-map``.
LABEL_MAP_PRESETS: Dict[str, Dict[str, str]] = {
    "crossner": CROSSNER_TO_GLINER,
    "table": LABEL_TABLE,
}

_SPACES = re.compile(r"\s+")
_HAS_SPACE = re.compile(r"\s")


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def normalize_label(label: str, table: Mapping[str, str] = LABEL_TABLE) -> str:
    """Prompt-style name of a raw entity label (see :data:`LABEL_TABLE`)."""
    key = label.strip().lower()
    if key in table:
        return table[key]
    return _squash(key.replace("_", " "))


def normalize_relation_label(label: str) -> str:
    """Prompt-style name of a raw relation label (see :data:`RELATION_LABEL_TABLE`)."""
    key = label.strip().lower()
    if key in RELATION_LABEL_TABLE:
        return RELATION_LABEL_TABLE[key]
    return _squash(key.replace("_", " ").replace("-", " "))


def load_label_map(spec: Union[None, str, Mapping[str, str]]) -> Optional[Dict[str, str]]:
    """Parse a label map given as a dict, a preset name (:data:`LABEL_MAP_PRESETS`),
    a path to a JSON object file, or inline ``"PER=person,LOC=location"``."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    if spec in LABEL_MAP_PRESETS:
        return dict(LABEL_MAP_PRESETS[spec])
    path = Path(spec)
    if path.suffix == ".json" and path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"label map file {path} must hold a JSON object")
        return {str(k): str(v) for k, v in data.items()}
    out: Dict[str, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(
                f"cannot read label map {spec!r}: expected a preset "
                f"({', '.join(LABEL_MAP_PRESETS)}), a .json file or 'RAW=name,...'"
            )
        raw, new = part.split("=", 1)
        out[raw.strip()] = new.strip()
    return out


class LabelMapper:
    """Callable raw label -> final label.

    ``label_map`` (exact key first, then case-insensitive) wins; otherwise
    ``mode`` decides: ``"table"`` -> :func:`normalize_label`, ``"lower"`` ->
    lower-case only (GLiNER's own evaluator), ``"raw"`` -> unchanged.
    """

    MODES = ("table", "lower", "raw")

    def __init__(self, mode: str = "table", label_map: Union[None, str, Mapping[str, str]] = None):
        if mode not in self.MODES:
            raise ValueError(f"label mode must be one of {self.MODES}, not {mode!r}")
        self.mode = mode
        self.label_map = load_label_map(label_map) or {}
        self._lower_map = {k.lower(): v for k, v in self.label_map.items()}
        self._cache: Dict[str, str] = {}

    def __call__(self, label: str) -> str:
        if label in self._cache:
            return self._cache[label]
        if label in self.label_map:
            out = self.label_map[label]
        elif label.lower() in self._lower_map:
            out = self._lower_map[label.lower()]
        elif self.mode == "table":
            out = normalize_label(label)
        elif self.mode == "lower":
            out = label.lower()
        else:
            out = label
        self._cache[label] = out
        return out


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Doc construction
# ---------------------------------------------------------------------------

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
            clean = _SPACES.sub("_", w.strip())
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
        _relations.set_relations(doc, rels)
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


def _vocab(vocab: Optional[Vocab]) -> Vocab:
    return vocab if vocab is not None else Vocab()


def _collect(iterate: Callable[..., Iterator[Doc]], path: PathLike, warn: bool, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """Every ``read_*``: run its ``iter_*`` to the end, then report what was skipped."""
    stats = ReadStats(source=str(path))
    docs = list(iterate(path, stats, **kwargs))
    if warn:
        stats.warn()
    return docs, stats


def _limit(it: Iterable, limit: Optional[int]) -> Iterator:
    for i, item in enumerate(it):
        if limit is not None and i >= limit:
            return
        yield item


# ---------------------------------------------------------------------------
# GLiNER JSON (evaluation bundle and training format)
# ---------------------------------------------------------------------------


def load_gliner_labels(path: PathLike) -> List[str]:
    """The prompt labels of a GLiNER dataset folder (``labels.json``),
    lower-cased as GLiNER's evaluator does."""
    path = Path(path)
    if path.is_dir():
        path = path / "labels.json"
    return [str(label).lower() for label in json.loads(path.read_text(encoding="utf-8"))]


def _char_record_to_spans(
    record: Mapping, stats: ReadStats, mapper: Callable[[str], str]
) -> Optional[Tuple[List[str], List[SpanTuple]]]:
    sentence = record.get("sentence")
    entities = record.get("entities", [])
    if not isinstance(sentence, str) or not isinstance(entities, list):
        stats.skip("malformed_record")
        return None
    words = sentence.split()
    # Character offsets of each word in the single-space-joined sentence, the
    # same arithmetic as GLiNER's evaluate_ner.process().
    starts: Dict[int, int] = {}
    ends: Dict[int, int] = {}
    offset = 0
    for i, word in enumerate(words):
        starts[offset] = i
        ends[offset + len(word)] = i
        offset += len(word) + 1
    joined = " ".join(words)
    spans: List[SpanTuple] = []
    for ent in entities:
        try:
            start_char, end_char = (int(x) for x in ent["pos"])
            label = str(ent["type"])
        except (KeyError, TypeError, ValueError):
            stats.skip("malformed_record")
            continue
        if start_char < 0 or end_char > len(joined) or start_char >= end_char:
            stats.skip("span_out_of_range")
            continue
        if start_char not in starts or end_char not in ends:
            stats.skip("misaligned_char_span")
            continue
        name = ent.get("name")
        if name is not None and _squash(str(name)) != joined[start_char:end_char]:
            stats.skip("name_mismatch")
            continue
        spans.append((starts[start_char], ends[end_char] + 1, mapper(label)))
    return words, spans


def _token_record_to_spans(
    record: Mapping, stats: ReadStats, mapper: Callable[[str], str]
) -> Optional[Tuple[List[str], List[SpanTuple]]]:
    words = record.get("tokenized_text")
    ner = record.get("ner", [])
    if not isinstance(words, list) or not isinstance(ner, list):
        stats.skip("malformed_record")
        return None
    spans: List[SpanTuple] = []
    for item in ner:
        try:
            start, end_incl, label = int(item[0]), int(item[1]), str(item[2])
        except (IndexError, TypeError, ValueError):
            stats.skip("malformed_record")
            continue
        spans.append((start, end_incl + 1, mapper(label)))  # end inclusive -> exclusive
    return [str(w) for w in words], spans


def iter_gliner_json(
    path: PathLike,
    stats: ReadStats,
    *,
    vocab: Optional[Vocab] = None,
    label_mode: str = "lower",
    label_map: Union[None, str, Mapping[str, str]] = None,
    limit: Optional[int] = None,
) -> Iterator[Doc]:
    """Docs from a GLiNER JSON file: a list of either
    ``{"sentence", "entities": [{"name", "type", "pos": [c0, c1)}]}`` (evaluation
    bundle) or ``{"tokenized_text", "ner": [[start, end_inclusive, label]]}``
    (training format); the format is detected per record. Labels are
    lower-cased (GLiNER's evaluator) unless ``label_mode``/``label_map`` say
    otherwise. A file with one JSON object per line is accepted too."""
    path = Path(path)
    vocab = _vocab(vocab)
    stats.source = stats.source or str(path)
    mapper = LabelMapper(label_mode, label_map)
    text = path.read_text(encoding="utf-8-sig")
    try:
        records = json.loads(text)
        if isinstance(records, dict):
            records = [records]
    except json.JSONDecodeError:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for index, record in enumerate(_limit(records, limit)):
        if not isinstance(record, Mapping):
            stats.skip("malformed_record")
            continue
        if "tokenized_text" in record:
            parsed = _token_record_to_spans(record, stats, mapper)
        else:
            parsed = _char_record_to_spans(record, stats, mapper)
        if parsed is None:
            continue
        words, spans = parsed
        doc = build_doc(vocab, words, spans, stats, meta={"source": path.name, "index": index})
        if doc is not None:
            yield doc


def read_gliner_json(path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """:func:`iter_gliner_json` collected into a list, plus its stats."""
    return _collect(iter_gliner_json, path, warn, **kwargs)


def read_gliner_dataset(
    folder: PathLike, split: str = "test", *, warn: bool = True, **kwargs
) -> Tuple[List[Doc], List[str], ReadStats]:
    """One split of a ``gliner_ner_datasets/<name>/`` folder with its prompt
    labels (``labels.json`` lower-cased): ``(docs, labels, stats)``. Gold
    labels are lower-cased but not otherwise renamed, so a gold type missing
    from ``labels.json`` (CrossNER_music has ``organisation`` and ``misc``)
    stays as it is; it is counted under ``notes["gold_label_not_in_labels_json"]``."""
    folder = Path(folder)
    labels = load_gliner_labels(folder)
    docs, stats = read_gliner_json(folder / f"{split}.json", warn=warn, **kwargs)
    label_set = set(labels)
    missing = sum(c for lab, c in stats.labels.items() if lab not in label_set)
    if missing:
        stats.notes["gold_label_not_in_labels_json"] += missing
    return docs, labels, stats


# ---------------------------------------------------------------------------
# BIO / CoNLL columns
# ---------------------------------------------------------------------------

_DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"^([BIESLU])-(.+)$")


def _iter_column_sentences(
    path: Path, stats: ReadStats
) -> Iterator[Tuple[Optional[List[str]], List[str], int, int]]:
    """(words or None if malformed, tags, document index, first line number)."""
    words: List[str] = []
    tags: List[str] = []
    malformed = False
    doc_index = 0
    seen_docstart = False
    first_line = 0
    with path.open(encoding="utf-8-sig") as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if words or malformed:
                    yield (None if malformed else words), tags, doc_index, first_line
                words, tags, malformed = [], [], False
                continue
            if line.startswith(_DOCSTART):
                if words or malformed:
                    yield (None if malformed else words), tags, doc_index, first_line
                    words, tags, malformed = [], [], False
                if seen_docstart:
                    doc_index += 1
                seen_docstart = True
                continue
            if not words and not malformed:
                first_line = line_no
            cols = line.split("\t") if "\t" in line else line.split()
            if len(cols) < 2:
                malformed = True
                continue
            words.append(cols[0])
            tags.append(cols[-1].strip())
    if words or malformed:
        yield (None if malformed else words), tags, doc_index, first_line


def _tags_to_spans(
    tags: Sequence[str], stats: ReadStats, allowed: Optional[set]
) -> Optional[List[SpanTuple]]:
    """Decode BIO / IOB2 / BIOES / BILOU tags into (start, end, raw label) spans.

    An ``I-``/``E-``/``L-`` that does not continue an entity of the same type
    starts a new entity (the conlleval convention); counted in
    ``notes["bio_inside_without_begin"]``. Returns ``None`` on an unknown tag."""
    spans: List[SpanTuple] = []
    start: Optional[int] = None
    cur: Optional[str] = None

    def close(end: int) -> None:
        nonlocal start, cur
        if start is not None and cur is not None:
            spans.append((start, end, cur))
        start, cur = None, None

    for i, tag in enumerate(tags):
        if tag == "O":
            close(i)
            continue
        m = _TAG.match(tag)
        if m is None or "," in tag:  # multi-label columns (WNUT-17 emerging.test.conll) are not BIO
            return None
        prefix, label = m.group(1), m.group(2).strip()
        if not label:
            return None
        if allowed is not None and label not in allowed:
            return None
        if prefix in "BSU":
            close(i)
            start, cur = i, label
            if prefix in "SU":
                close(i + 1)
        else:  # I, E, L
            if cur != label:
                close(i)
                stats.notes["bio_inside_without_begin"] += 1
                start, cur = i, label
            if prefix in "EL":
                close(i + 1)
    close(len(tags))
    return spans


def _find_label_file(path: Path) -> Optional[Path]:
    candidate = path.parent / "label.txt"
    return candidate if candidate.exists() else None


def _read_label_file(path: Path) -> set:
    return {line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()}


def iter_bio(
    path: PathLike,
    stats: ReadStats,
    *,
    vocab: Optional[Vocab] = None,
    label_mode: str = "table",
    label_map: Union[None, str, Mapping[str, str]] = None,
    label_file: Union[None, bool, PathLike] = None,
    limit: Optional[int] = None,
) -> Iterator[Doc]:
    """Docs from a BIO file: one ``token<TAB>tag`` (or whitespace columns, tag
    last) per line, blank line between sentences, ``-DOCSTART-`` lines as
    document boundaries. IOB2, BIOES and BILOU prefixes are decoded.

    ``label_file``: path to a ``label.txt``; ``None`` uses ``label.txt`` next to
    the file when it exists; ``False`` disables the check. A sentence with a
    tag whose type is not in that list is skipped as ``unknown_bio_tag``."""
    path = Path(path)
    vocab = _vocab(vocab)
    stats.source = stats.source or str(path)
    mapper = LabelMapper(label_mode, label_map)
    if label_file is None:
        found = _find_label_file(path)
        allowed = _read_label_file(found) if found else None
    elif label_file is False:
        allowed = None
    else:
        allowed = _read_label_file(Path(label_file))
    sent_in_doc: Counter = Counter()
    tok_in_doc: Counter = Counter()
    index = -1
    for words, tags, doc_index, line_no in _iter_column_sentences(path, stats):
        index += 1
        if limit is not None and index >= limit:
            return
        if words is None:
            stats.skip("malformed_line")
            continue
        meta = {
            "source": path.name,
            "index": index,
            "line": line_no,
            "document": doc_index,
            "sentence_in_document": sent_in_doc[doc_index],
            "document_token_offset": tok_in_doc[doc_index],
        }
        sent_in_doc[doc_index] += 1
        tok_in_doc[doc_index] += len(words)
        raw_spans = _tags_to_spans(tags, stats, allowed)
        if raw_spans is None:
            stats.skip("unknown_bio_tag")
            continue
        spans = [(s, e, mapper(lab)) for s, e, lab in raw_spans]
        doc = build_doc(vocab, words, spans, stats, meta=meta)
        if doc is not None:
            yield doc


def read_bio(path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """:func:`iter_bio` collected into a list, plus its stats."""
    return _collect(iter_bio, path, warn, **kwargs)


def read_crossner_bio(path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """A ``crossner/<domain>/*.txt`` file with labels renamed to GLiNER's
    CrossNER ``labels.json`` names (:data:`CROSSNER_TO_GLINER`)."""
    kwargs.setdefault("label_mode", "lower")
    kwargs.setdefault("label_map", CROSSNER_TO_GLINER)
    return read_bio(path, warn=warn, **kwargs)


def iter_conll(path: PathLike, stats: ReadStats, **kwargs) -> Iterator[Doc]:
    """Docs from CoNLL column files (CoNLL-2003 ``token POS chunk NER``,
    WNUT-17 ``token<TAB>tag``): the last column is the IOB2 tag, one Doc per
    sentence; ``doc.user_data[META_KEY]`` keeps the document index and the
    sentence's token offset inside its document (AIDA offsets count those)."""
    kwargs.setdefault("label_file", False)
    return iter_bio(path, stats, **kwargs)


def read_conll(path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """:func:`iter_conll` collected into a list, plus its stats."""
    return _collect(iter_conll, path, warn, **kwargs)


# ---------------------------------------------------------------------------
# Relation corpora
# ---------------------------------------------------------------------------


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
    path = Path(path)
    vocab = _vocab(vocab)
    stats.source = stats.source or str(path)
    mapper = LabelMapper(label_mode, label_map)
    rel_mapper = normalize_relation_label if normalize_relations else (lambda x: x)
    for index, record in enumerate(_limit(_json_records(path), limit)):
        try:
            words = [str(t) for t in record["tokens"]]
            ents = [(int(e["start"]), int(e["end"]), str(e["type"])) for e in record["entities"]]
            raw_rels = [(int(r["head"]), int(r["tail"]), str(r["type"])) for r in record["relations"]]
        except (KeyError, TypeError, ValueError):
            stats.skip("malformed_record")
            continue
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
        doc = build_doc(vocab, words, spans, stats, relations=rels, meta=meta)
        if doc is not None:
            yield doc


def read_conll04(path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """:func:`iter_conll04` collected into a list, plus its stats."""
    return _collect(iter_conll04, path, warn, **kwargs)


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
    path = Path(path)
    vocab = _vocab(vocab)
    stats.source = stats.source or str(path)
    mapper = LabelMapper(label_mode, label_map)
    rel_mapper = normalize_relation_label if normalize_relations else (lambda x: x)
    for index, record in enumerate(_limit(_json_records(path), limit)):
        try:
            words = [str(t) for t in record["sentence"]]
            spans = [(int(s), int(e) + 1, mapper(str(t))) for s, e, t, *_ in record["ner"]]
            rels = [
                (int(r[0]), int(r[1]) + 1, int(r[2]), int(r[3]) + 1, rel_mapper(str(r[4])))
                for r in record["relations"]
            ]
        except (KeyError, TypeError, ValueError, IndexError):
            stats.skip("malformed_record")
            continue
        meta = {"source": path.name, "index": index, "doc_key": record.get("doc_key")}
        doc = build_doc(vocab, words, spans, stats, relations=rels, meta=meta)
        if doc is not None:
            yield doc


def read_crossre(path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """:func:`iter_crossre` collected into a list, plus its stats."""
    return _collect(iter_crossre, path, warn, **kwargs)


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
    path = Path(path)
    vocab = _vocab(vocab)
    stats.source = stats.source or str(path)
    mapper = LabelMapper(label_mode, label_map)
    rel_mapper = normalize_relation_label if normalize_relations else (lambda x: x)
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


def read_scierc(path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """:func:`iter_scierc` collected into a list, plus its stats."""
    return _collect(iter_scierc, path, warn, **kwargs)


# ---------------------------------------------------------------------------
# Dispatch by format name, spaCy corpus reader
# ---------------------------------------------------------------------------

#: Format name -> iterator function.
FORMATS: Dict[str, Callable[..., Iterator[Doc]]] = {
    "gliner-json": iter_gliner_json,
    "bio": iter_bio,
    "crossner": lambda path, stats, **kw: iter_bio(
        path, stats, **{"label_mode": "lower", "label_map": CROSSNER_TO_GLINER, **kw}
    ),
    "conll": iter_conll,
    "conll04": iter_conll04,
    "crossre": iter_crossre,
    "scierc": iter_scierc,
}


def iter_corpus(fmt: str, path: PathLike, stats: ReadStats, **kwargs) -> Iterator[Doc]:
    """Docs from ``path`` read as format ``fmt`` (a key of :data:`FORMATS`).
    ``label_map=None`` keeps each format's default map."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    kwargs = {k: v for k, v in kwargs.items() if not (k == "label_map" and v is None)}
    return FORMATS[fmt](path, stats, **kwargs)


def read_corpus(fmt: str, path: PathLike, *, warn: bool = True, **kwargs) -> Tuple[List[Doc], ReadStats]:
    """:func:`iter_corpus` collected into a list, plus its stats."""
    return _collect(lambda p, stats, **kw: iter_corpus(fmt, p, stats, **kw), path, warn, **kwargs)


@registry.readers("spacy_gliner.GoldCorpus.v1")
def create_gliner_corpus_reader(
    path: str,
    format: str,
    limit: int = 0,
    label_map: Optional[str] = None,
) -> Callable:
    """spaCy corpus reader: ``[corpora.dev] @readers = "spacy_gliner.GoldCorpus.v1"``, ``path``,
    ``format`` (a key of :data:`FORMATS`), optional ``limit`` (0 = all) and ``label_map``.
    Yields Examples whose predicted Doc has the same words (no annotation) and whose reference
    is the gold Doc."""
    from spacy.training import Example

    def read(nlp) -> Iterator[Example]:
        stats = ReadStats(source=str(path))
        for gold in iter_corpus(format, path, stats, vocab=nlp.vocab, label_map=label_map, limit=limit or None):
            words = [t.text for t in gold]
            pred = Doc(nlp.vocab, words=words, spaces=[bool(t.whitespace_) for t in gold])
            yield Example(pred, gold)
        stats.warn()

    return read
