"""Reading words from Docs and writing decoded spans back, shared by every gliner component.

Words are the doc's non-whitespace tokens, so each decoded word span maps to exact token offsets.
"""
from __future__ import annotations

import warnings

from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span, SpanGroup


def doc_words(doc: Doc) -> Tuple[List[str], List[int]]:
    """The words the model reads and, for each, its token index in the doc."""
    token_ids = [token.i for token in doc if not token.is_space]
    return [doc[i].text for i in token_ids], token_ids


def word_index(doc: Doc) -> Tuple[List[str], Dict[int, int]]:
    """The words the model reads and token index -> word index (whitespace tokens have none)."""
    words, token_ids = doc_words(doc)
    return words, {token: i for i, token in enumerate(token_ids)}


def word_span(word_of: Mapping[int, int], tokens: Iterable[int]) -> Optional[Tuple[int, int]]:
    """The word span (start, end) a run of tokens covers, from :func:`word_index`'s map; None when
    every token is whitespace or outside the doc the map was made from."""
    inside = [word_of[t] for t in tokens if t in word_of]
    return (inside[0], inside[-1] + 1) if inside else None


def to_doc_span(doc: Doc, token_ids: Sequence[int], start: int, end: int, label: str) -> Span:
    return Span(doc, token_ids[start], token_ids[end - 1] + 1, label=label)


# attrs key marking a span group a gliner component wrote, with the component's name as value:
# how a re-run recognises its own earlier output (it survives doc.to_bytes with the group).
OWNER_ATTR = "spacy_gliner_component"


def write_span_group(
    doc: Doc, key: str, spans: Sequence[Span], scores: Sequence[float], owner: str, overwrite: bool,
    aligned: Optional[Mapping[str, Sequence]] = None,
) -> None:
    """Put spans and their scores in ``doc.spans[key]`` as a group marked as ``owner``'s.

    ``aligned``: more ``attrs`` lists with one entry per span (e.g. ``generated_labels``), kept
    in the group's span order as the scores are.

    The group a previous run of the same component wrote is replaced, so running a doc again
    gives the same group. A group someone else wrote under ``key`` is never merged into: it is
    replaced only when ``overwrite`` (the component's ``overwrite_ents``) asks for it, else the
    call raises before changing the doc.
    """
    if key in doc.spans and not overwrite:
        existing = doc.spans[key]
        if existing.attrs.get(OWNER_ATTR) != owner:
            raise ValueError(
                f"{owner}: doc.spans[{key!r}] already holds a span group this component did not write "
                f"({len(existing)} spans). It is kept as it is; set this component's 'spans_key' to another key, "
                "or 'overwrite_ents' = true to replace it."
            )
    order = sorted(range(len(spans)), key=lambda i: (spans[i].start, spans[i].end))
    group = SpanGroup(doc, name=key, spans=[spans[i] for i in order])
    group.attrs["scores"] = [float(scores[i]) for i in order]
    for name, values in (aligned or {}).items():
        group.attrs[name] = [values[i] for i in order]
    group.attrs[OWNER_ATTR] = owner
    doc.spans[key] = group


def merge_entities(doc: Doc, ents: Sequence[Span], overwrite: bool) -> None:
    """Set ``doc.ents``: ours replace everything when ``overwrite``; else existing ones win overlaps."""
    if overwrite:
        doc.set_ents(list(ents), default="outside")
        return
    taken = set()
    kept: List[Span] = list(doc.ents)
    for ent in kept:
        taken.update(range(ent.start, ent.end))
    for ent in ents:
        if not taken.intersection(range(ent.start, ent.end)):
            kept.append(ent)
            taken.update(range(ent.start, ent.end))
    doc.set_ents(sorted(kept, key=lambda span: span.start))


def write_entities(
    doc: Doc, spans, label_names: Sequence[str], spans_key: str, overwrite_ents: bool, owner: str,
    label_of: Optional[Callable[[Any], str]] = None, aligned: Optional[Mapping[str, Sequence]] = None,
) -> List[Span]:
    """Decoded spans -> ``doc.spans[spans_key]`` (all, with scores; see :func:`write_span_group`)
    and ``doc.ents`` (the best non-overlapping ones, merged). The one way every gliner component
    writes entities; returns the doc spans in the order of ``spans``. ``label_of(span)`` names a
    span (default: its classified label); ``aligned`` attrs lists follow ``spans``' order."""
    from ..inference.decoding import best_non_overlapping

    _, token_ids = doc_words(doc)
    label_of = label_of or (lambda span: label_names[span.label])
    by_span = {s: to_doc_span(doc, token_ids, s.start, s.end, label_of(s)) for s in spans}
    write_span_group(doc, spans_key, list(by_span.values()), [s.score for s in spans], owner, overwrite_ents, aligned)
    merge_entities(doc, [by_span[s] for s in best_non_overlapping(spans)], overwrite_ents)
    return [by_span[s] for s in spans]


def normalize_labels(labels, what: str = "labels") -> Tuple[List[str], List[str]]:
    """(names, texts the model reads) from a list of labels or a dict label -> description."""
    if isinstance(labels, str):
        raise ValueError(f"{what} must be a list of strings or a dict label -> description, not the string {labels!r}.")
    if isinstance(labels, dict):
        names, texts = list(labels.keys()), list(labels.values())
    else:
        try:
            names = list(labels)
        except TypeError:
            raise ValueError(f"{what} must be a list of strings or a dict label -> description, got {type(labels).__name__}.") from None
        texts = list(names)
    for name, text in zip(names, texts):
        if not isinstance(name, str):
            raise ValueError(f"{what}: every label must be a string, got {name!r} ({type(name).__name__}).")
        if not isinstance(text, str):
            raise ValueError(f"{what}: the description of {name!r} must be a string, got {type(text).__name__}.")
        if not name.strip() or not text.strip():
            raise ValueError(f"{what}: empty label or description for {name!r}; every label needs text the model can read.")
    seen: Dict[str, int] = {}
    for name in names:
        if name in seen:
            raise ValueError(f"{what}: {name!r} is given twice; labels must be unique.")
        seen[name] = 1
    return names, texts


def optional_int(value: Optional[int], name: str, minimum: int) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} or null, got {value!r}.")
    return value


def warn_counts(name: str, what: str, counts) -> None:
    """One warning listing what a component skipped in its data, by reason (nothing if none)."""
    counts = {reason: n for reason, n in counts.items() if n}
    if counts:
        details = "; ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
        warnings.warn(f"{name}: in the {what}, skipped {details}.", stacklevel=3)
