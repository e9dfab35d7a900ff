"""The spaCy corpus reader ``spacy_gliner.GoldCorpus.v1`` over every format of
:data:`~spacy_gliner.training.corpus_formats.dispatch.FORMATS`."""

from __future__ import annotations

from typing import Callable, Iterator, Optional

from spacy.tokens import Doc
from spacy.util import registry

from .corpus_formats.dispatch import iter_corpus
from .corpus_formats.gold_docs import ReadStats

__all__ = ["create_gliner_corpus_reader"]


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
