"""GLiNER JSON: the evaluation bundle (character offsets) and the training format (word spans),
and the ``labels.json`` of a ``gliner_ner_datasets/<name>/`` folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..label_names import LabelMapper, squash_spaces
from .gold_docs import PathLike, ReadStats, SpanTuple, build_doc, first_items, list_reader, reading_source

__all__ = ["load_gliner_labels", "iter_gliner_json", "read_gliner_json", "read_gliner_dataset"]


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
        if name is not None and squash_spaces(str(name)) != joined[start_char:end_char]:
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
    path, vocab = reading_source(path, stats, vocab)
    mapper = LabelMapper(label_mode, label_map)
    text = path.read_text(encoding="utf-8-sig")
    try:
        records = json.loads(text)
        if isinstance(records, dict):
            records = [records]
    except json.JSONDecodeError:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for index, record in enumerate(first_items(records, limit)):
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


read_gliner_json = list_reader(iter_gliner_json)


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
