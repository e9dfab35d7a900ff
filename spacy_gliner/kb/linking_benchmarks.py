"""Readers for the entity-linking corpora in ``shared/data`` (read in place).

Every reader yields :class:`LinkedDocument` objects: the document text and its
gold mentions with character offsets, the gold entity id, and the entity's
name and types where the corpus gives them. Entity ids are Wikidata QIDs
("Q90") where the corpus has them (ELEVANT, Tweeki) and ``"enwiki:<page id>"``
where it only has Wikipedia pages (ZELDA, AIDA CoNLL-YAGO); ``None`` marks a
mention with no KB entity (NIL / no mapping / date or quantity).

Types are natural-language labels ("person", "organization"), mapped from
ELEVANT's coarse Wikidata type QIDs or from CoNLL tags; the raw codes are kept
in ``type_ids``.
"""
from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Tuple, Union

if TYPE_CHECKING:  # only for annotations; keeps this module importable on its own
    from .entities import Entity

PathLike = Union[str, Path]

# English labels of the coarse Wikidata types ELEVANT assigns (its type whitelist).
# Only labels we are sure of are listed; other QIDs stay in ``type_ids`` only.
WIKIDATA_TYPE_LABELS: Dict[str, str] = {
    "Q215627": "person",
    "Q43229": "organization",
    "Q27096213": "geographic entity",
    "Q2424752": "product",
    "Q4164871": "position",
    "Q12737077": "occupation",
    "Q17537576": "creative work",
    "Q1656682": "event",
    "Q16521": "taxon",
    "Q483394": "genre",
    "Q618779": "award",
    "Q11862829": "academic discipline",
    "Q349": "sport",
    "Q1075": "color",
    "Q431289": "brand",
    "Q7257": "ideology",
    "Q9174": "religion",
    "Q12136": "disease",
    "Q729": "animal",
    "Q43460564": "chemical entity",
    "Q4936952": "anatomical structure",
    "Q17376908": "languoid",
}

# CoNLL-2003 / Tweeki NER tags.
CONLL_TYPE_LABELS: Dict[str, str] = {
    "PER": "person",
    "ORG": "organization",
    "LOC": "location",
    "MISC": "miscellaneous",
}

_QID = re.compile(r"^Q[1-9][0-9]*$")


@dataclass(frozen=True)
class GoldMention:
    start: int
    end: int
    text: str
    entity_id: Optional[str]
    name: Optional[str] = None
    types: Tuple[str, ...] = ()
    type_ids: Tuple[str, ...] = ()
    optional: bool = False


@dataclass
class LinkedDocument:
    doc_id: str
    text: str
    mentions: List[GoldMention] = field(default_factory=list)

    @property
    def linked_mentions(self) -> List[GoldMention]:
        """Mentions with a KB entity (NIL and date/quantity mentions dropped)."""
        return [m for m in self.mentions if m.entity_id is not None]


def _span_ok(path: Path, doc_id: str, text: str, start: int, end: int) -> bool:
    """False (with a warning) for a span outside the text: an upstream data error
    (e.g. one ZELDA shadowlinks-tail mention) that must not abort a whole benchmark."""
    if 0 <= start < end <= len(text):
        return True
    warnings.warn(f"{path}: document {doc_id!r}: skipping mention span [{start}, {end}) outside the "
                  f"text (length {len(text)})", stacklevel=3)
    return False


# --------------------------------------------------------------------------- #
# ELEVANT benchmarks (KORE50, MSNBC, Reuters-128, RSS-500, AIDA-CoNLL, ...)
# --------------------------------------------------------------------------- #


def read_elevant(path: PathLike) -> Iterator[LinkedDocument]:
    """Read an ELEVANT ``*.benchmark.jsonl`` file.

    ``entity_id`` is the QID, or None for ``<NIL>``, ``<NO_MAPPING>``,
    DATETIME/QUANTITY and other non-QID labels. Mentions flagged
    ``optional`` are kept with ``optional=True``. In the AIDA-CoNLL files the
    non-entity words are masked with ``*`` (licence), but mention text is intact.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            text = record["text"]
            doc_id = str(record.get("id", line_no))
            mentions = []
            for label in record["labels"]:
                start, end = label["span"]
                if not _span_ok(path, doc_id, text, start, end):
                    continue
                raw_id = label.get("entity_id", "")
                entity_id = raw_id if _QID.match(raw_id or "") else None
                type_ids = tuple(t for t in str(label.get("type", "")).split("|") if t)
                name = label.get("name")
                mentions.append(GoldMention(
                    start=start, end=end, text=text[start:end], entity_id=entity_id,
                    name=name if entity_id and name and name != "Unknown" else None,
                    types=tuple(WIKIDATA_TYPE_LABELS[t] for t in type_ids if t in WIKIDATA_TYPE_LABELS),
                    type_ids=type_ids, optional=bool(label.get("optional", False)),
                ))
            yield LinkedDocument(doc_id=doc_id, text=text, mentions=mentions)


# --------------------------------------------------------------------------- #
# Tweeki gold
# --------------------------------------------------------------------------- #


def _tweeki_token_types(conll_path: Path) -> List[Dict[int, str]]:
    """Per tweet (file order), char start of each B- token -> NER tag."""
    tweets: List[Dict[int, str]] = []
    offset = 0
    current: Optional[Dict[int, str]] = None
    with conll_path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("# tweet_id"):
                current = {}
                tweets.append(current)
                offset = 0
                continue
            if not line or line.startswith("#") or current is None:
                continue
            parts = line.split("\t")
            token, tag = parts[1], parts[2]
            if tag.startswith("B-"):
                current[offset] = tag[2:]
            offset += len(token) + 1
    return tweets


def read_tweeki(path: PathLike) -> Iterator[LinkedDocument]:
    """Read ``Tweeki_gold.jsonl`` (links are ``"Wikipedia title|QID"``).

    Types come from the CoNLL-style twin file ``Tweeki_gold`` next to it (same
    tweets, same order) when present; the malformed non-QID link gets
    ``entity_id=None``.
    """
    path = Path(path)
    twin = path.with_suffix("")
    token_types = _tweeki_token_types(twin) if twin.exists() else []
    with path.open(encoding="utf-8") as handle:
        for position, line in enumerate(handle):
            if not line.strip():
                continue
            record = json.loads(line)
            text = record["sentence"]
            doc_id = str(record["id"])
            types_at = token_types[position] if position < len(token_types) else {}
            mentions = []
            for (start, end), link in zip(record["index"], record["link"]):
                if not _span_ok(path, doc_id, text, start, end):
                    continue
                title, _, qid = link.rpartition("|")
                qid = qid.strip()  # three upstream links carry a trailing space
                entity_id = qid if _QID.match(qid) else None
                tag = types_at.get(start)
                mentions.append(GoldMention(
                    start=start, end=end, text=text[start:end], entity_id=entity_id,
                    name=title if entity_id and title else None,
                    types=(CONLL_TYPE_LABELS[tag],) if tag in CONLL_TYPE_LABELS else (),
                    type_ids=(tag,) if tag else (),
                ))
            yield LinkedDocument(doc_id=doc_id, text=text, mentions=mentions)


# --------------------------------------------------------------------------- #
# ZELDA test splits
# --------------------------------------------------------------------------- #


def read_zelda(path: PathLike) -> Iterator[LinkedDocument]:
    """Read a ZELDA ``test_*.jsonl`` split: ids are ``enwiki:<page id>``, names are page titles."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            text = record["text"]
            doc_id = str(record["id"])
            mentions = []
            for (start, end), page_id, title in zip(record["index"], record["wikipedia_ids"],
                                                     record["wikipedia_titles"]):
                if not _span_ok(path, doc_id, text, start, end):
                    continue
                mentions.append(GoldMention(start=start, end=end, text=text[start:end],
                                            entity_id=f"enwiki:{page_id}", name=title))
            yield LinkedDocument(doc_id=doc_id, text=text, mentions=mentions)


# --------------------------------------------------------------------------- #
# AIDA CoNLL-YAGO (annotation file joined onto CoNLL-2003)
# --------------------------------------------------------------------------- #

AIDA_SPLIT_FILES = ("train.txt", "valid.txt", "test.txt")


def _read_conll_documents(conll_dir: Path) -> List[List[List[Tuple[str, str]]]]:
    """All CoNLL-2003 documents in train, valid, test order: docs -> sentences -> (token, tag)."""
    docs: List[List[List[Tuple[str, str]]]] = []
    for name in AIDA_SPLIT_FILES:
        sentence: List[Tuple[str, str]] = []
        with (conll_dir / name).open(encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if not parts:
                    if sentence and docs:
                        docs[-1].append(sentence)
                    sentence = []
                    continue
                if parts[0] == "-DOCSTART-":
                    docs.append([])
                    continue
                sentence.append((parts[0], parts[-1]))
            if sentence and docs:
                docs[-1].append(sentence)
    return docs


def read_aida_yago2(annotations: PathLike, conll_dir: PathLike, split: str = "testb") -> Iterator[LinkedDocument]:
    """Join ``AIDA-YAGO2-annotations.tsv`` onto ``conll2003/`` and yield one split.

    ``split`` is "train", "testa" or "testb". The text is the CoNLL tokens
    joined by spaces, one sentence per line. A mention runs from the annotated
    ``B-`` token over its ``I-`` continuation; ``--NME--`` mentions get
    ``entity_id=None``. Ids are ``enwiki:<page id>``, names the Wikipedia title.
    """
    if split not in {"train", "testa", "testb"}:
        raise ValueError(f"split must be 'train', 'testa' or 'testb', got {split!r}")
    annotations = Path(annotations)
    docs = _read_conll_documents(Path(conll_dir))
    doc_index = -1
    per_doc: List[Tuple[str, List[List[str]]]] = []
    with annotations.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("-DOCSTART-"):
                doc_index += 1
                label = line[len("-DOCSTART- ("):].split(" ", 1)[0]
                per_doc.append((label, []))
            elif line.strip():
                per_doc[-1][1].append(line.split("\t"))
    if len(per_doc) != len(docs):
        raise ValueError(f"{annotations} has {len(per_doc)} documents but {conll_dir} has {len(docs)}; "
                         "they must be the same CoNLL-2003 release")
    for (label, rows), sentences in zip(per_doc, docs):
        doc_split = "testa" if label.endswith("testa") else "testb" if label.endswith("testb") else "train"
        if doc_split != split:
            continue
        tokens: List[Tuple[str, str, int]] = []  # (token, tag, char start)
        lines = []
        offset = 0
        for sentence in sentences:
            for token, tag in sentence:
                tokens.append((token, tag, offset))
                offset += len(token) + 1
            lines.append(" ".join(t for t, _ in sentence))
        text = "\n".join(lines)
        mentions = []
        for row in rows:
            position = int(row[0])
            token, tag, start = tokens[position]
            last = position
            while last + 1 < len(tokens) and tokens[last + 1][1] == "I-" + tag[2:]:
                last += 1
            end = tokens[last][2] + len(tokens[last][0])
            linked = len(row) >= 4 and row[1] != "--NME--"
            mentions.append(GoldMention(
                start=start, end=end, text=text[start:end],
                entity_id=f"enwiki:{row[3]}" if linked else None,
                name=row[1].replace("_", " ") if linked else None,
                types=(CONLL_TYPE_LABELS[tag[2:]],) if tag[2:] in CONLL_TYPE_LABELS else (),
                type_ids=(tag[2:],) if tag != "O" else (),
            ))
        yield LinkedDocument(doc_id=label, text=text, mentions=mentions)


# --------------------------------------------------------------------------- #
# Named benchmarks
# --------------------------------------------------------------------------- #

ELEVANT_BENCHMARKS = {
    "kore50": "kore50.benchmark.jsonl",
    "msnbc": "msnbc.benchmark.jsonl",
    "reuters-128": "reuters-128.benchmark.jsonl",
    "rss-500": "rss-500.benchmark.jsonl",
    "aida-conll-test": "aida-conll-test.benchmark.jsonl",
}
ZELDA_SPLITS = ("aida-b", "cweb", "reddit-comments", "reddit-posts", "shadowlinks-shadow",
                "shadowlinks-tail", "shadowlinks-top", "tweeki", "wned-wiki")
AIDA_YAGO2_SPLITS = ("train", "testa", "testb")
BENCHMARKS = (tuple(ELEVANT_BENCHMARKS) + ("tweeki",) + tuple(f"aida-yago2-{s}" for s in AIDA_YAGO2_SPLITS)
              + tuple(f"zelda-{s}" for s in ZELDA_SPLITS))


def load_benchmark(name: str, data_dir: PathLike) -> List[LinkedDocument]:
    """Load a benchmark by name (see ``BENCHMARKS``) from the ``shared/data`` directory.

    ``aida-yago2-train`` (CoNLL-2003 train documents 1-946 with their AIDA links) is the
    training split; ``aida-yago2-testa`` the development split; the rest are evaluation sets."""
    data_dir = Path(data_dir)
    if name in ELEVANT_BENCHMARKS:
        return list(read_elevant(data_dir / "elevant_el_benchmarks" / ELEVANT_BENCHMARKS[name]))
    if name == "tweeki":
        return list(read_tweeki(data_dir / "tweeki_gold" / "Tweeki_gold.jsonl"))
    if name.startswith("aida-yago2-") and name[len("aida-yago2-"):] in AIDA_YAGO2_SPLITS:
        return list(read_aida_yago2(data_dir / "aida_yago2_annotations" / "AIDA-YAGO2-annotations.tsv",
                                    data_dir / "conll2003", name[len("aida-yago2-"):]))
    if name.startswith("zelda-") and name[len("zelda-"):] in ZELDA_SPLITS:
        return list(read_zelda(data_dir / "zelda_test" / f"test_{name[len('zelda-'):]}.jsonl"))
    raise ValueError(f"Unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")


def read_bio_entities(path: PathLike, sep: Optional[str] = None) -> Iterator[Tuple[str, str]]:
    """``(entity string, type tag)`` for every BIO-tagged mention in a CoNLL-like file.

    Token is the first column, tag the last; ``-DOCSTART-`` lines and blank
    lines end a mention. Used to draw real distractor names from NER corpora.
    """
    words: List[str] = []
    kind: Optional[str] = None
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split(sep) if line.strip() else []
            tag = parts[-1] if len(parts) >= 2 and parts[0] != "-DOCSTART-" else "O"
            if tag.startswith("I-") and kind == tag[2:]:
                words.append(parts[0])
                continue
            if words and kind:
                yield " ".join(words), kind
            words, kind = [], None
            if tag.startswith("B-") or tag.startswith("I-"):
                words, kind = [parts[0]], tag[2:]
        if words and kind:
            yield " ".join(words), kind


# --------------------------------------------------------------------------- #
# From gold annotations to KB entities
# --------------------------------------------------------------------------- #


def entities_from_documents(docs: Iterable[LinkedDocument],
                            alias_docs: Iterable[LinkedDocument] = ()) -> List["Entity"]:
    """One :class:`~spacy_gliner.kb.entities.Entity` per gold entity id in ``docs``.

    * name: the most frequent gold name given for the id (ties: first seen);
      entities whose corpus gives no name are skipped (nothing to read);
    * types: every type label seen for the id, in first-seen order;
    * aliases, ``alias_priors`` and ``prior``: only from ``alias_docs``, the
      mention surface forms linked to the id and their counts. Keep
      evaluation documents out of ``alias_docs``: otherwise the KB would
      contain the test mentions and exact-match recall would be inflated.
    * description: None (these corpora carry none), so the model reads
      ``"name (types)"`` (see ``entity_text``).
    """
    from .entities import Entity

    names: Dict[str, Counter] = {}
    types: Dict[str, Dict[str, None]] = {}
    for doc in docs:
        for mention in doc.linked_mentions:
            if mention.name:
                names.setdefault(mention.entity_id, Counter())[mention.name] += 1
                bucket = types.setdefault(mention.entity_id, {})
                for label in mention.types:
                    bucket.setdefault(label, None)
    surface_counts: Dict[str, Counter] = {}
    for doc in alias_docs:
        for mention in doc.linked_mentions:
            if mention.entity_id in names:
                surface_counts.setdefault(mention.entity_id, Counter())[" ".join(mention.text.split())] += 1
    entities = []
    for entity_id, counter in names.items():
        name = counter.most_common(1)[0][0]
        surfaces = surface_counts.get(entity_id, Counter())
        entities.append(Entity(
            id=entity_id,
            name=name,
            aliases=tuple(s for s in surfaces if s != name),
            types=tuple(types.get(entity_id, {})),
            prior=float(sum(surfaces.values())),
            alias_priors={s: float(c) for s, c in surfaces.items()},
        ))
    return entities
