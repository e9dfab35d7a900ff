"""BIO / CoNLL column files: one ``token ... tag`` line per word, blank lines between sentences,
``-DOCSTART-`` between documents (IOB2, BIOES and BILOU tags are decoded)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..label_names import CROSSNER_TO_GLINER, LabelMapper
from .gold_docs import PathLike, ReadStats, SpanTuple, build_doc, list_reader, reading_source

__all__ = ["iter_bio", "read_bio", "read_crossner_bio", "iter_conll", "read_conll"]


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
    path, vocab = reading_source(path, stats, vocab)
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


read_bio = list_reader(iter_bio)


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


read_conll = list_reader(iter_conll)
