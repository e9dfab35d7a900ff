"""Corpus formats by name: the ``format`` of ``spacy_gliner.GoldCorpus.v1`` and of the convert CLI."""

from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Tuple

from spacy.tokens import Doc

from ..label_names import CROSSNER_TO_GLINER
from .bio_columns import iter_bio, iter_conll
from .gliner_json import iter_gliner_json
from .gold_docs import PathLike, ReadStats, collect_docs
from .relation_json import iter_conll04, iter_crossre, iter_scierc

__all__ = ["FORMATS", "iter_corpus", "read_corpus"]


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
    return collect_docs(lambda p, stats, **kw: iter_corpus(fmt, p, stats, **kw), path, warn, **kwargs)
