"""Convert an entity-linking corpus into a spaCy ``DocBin`` with gold ``kb_id``s.

Command line::

    python -m spacy_gliner.training.convert_linking <corpus> <output.spacy>
        [--data-dir shared/data] [--by document|line] [--limit N] [--quiet]

``<corpus>`` is a benchmark name of :data:`spacy_gliner.kb.linking_benchmarks.BENCHMARKS` read from
``--data-dir`` (e.g. ``aida-yago2-train``, the AIDA CoNLL-YAGO training split; ``kore50``), or
the path of a file in one of the readers' formats (``--format elevant|tweeki|zelda``).

Every gold mention becomes an entity of ``doc.ents``: label = its first type ("person",
"organization", ...; ``ENT`` when the corpus gives none), ``kb_id`` = the gold entity id, or
``"NIL"`` for a mention the corpus links to no entity (NIL, no mapping, dates, quantities).
Mentions marked optional (ELEVANT) are left out; overlapping mentions are resolved with
``filter_spans`` (longest first), and the number dropped is reported. ``--by line`` makes one
Doc per text line (AIDA texts are one sentence per line) and drops lines without mentions: short
training texts, cheaper to encode than whole articles. Each Doc records its corpus and document
id in ``doc.user_data["spacy_gliner.meta"]``.

For ``spacy train``, the reader ``spacy_gliner.LinkingCorpus.v1`` (``path`` = such a DocBin)
yields Examples whose predicted Doc already carries the gold mentions as entities without
``kb_id``: the linker disambiguates given mentions (it links ``doc.ents``, it does not find
them), so the dev scores of training are linking scores on gold mentions.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc, DocBin, Span
from spacy.util import filter_spans, registry

from ..kb.base import NIL
from ..kb.linking_benchmarks import BENCHMARKS, LinkedDocument, load_benchmark, read_elevant, read_tweeki, read_zelda
from .doc_keys import META_KEY

READERS = {"elevant": read_elevant, "tweeki": read_tweeki, "zelda": read_zelda}


def _pieces(document: LinkedDocument, by: str) -> Iterator[Tuple[str, str, list]]:
    """(piece id, text, mentions with offsets in that text) for a document or each of its lines."""
    mentions = [m for m in document.mentions if not m.optional]
    if by == "document":
        yield document.doc_id, document.text, [(m.start, m.end, m) for m in mentions]
        return
    start = 0
    for number, line in enumerate(document.text.split("\n")):
        end = start + len(line)
        inside = [(m.start - start, m.end - start, m) for m in mentions if start <= m.start and m.end <= end]
        if inside:
            yield f"{document.doc_id}:{number}", line, inside
        start = end + 1


def linked_docs(documents: Iterable[LinkedDocument], nlp, *, by: str = "document", corpus: str = "",
                stats: Optional[Counter] = None) -> Iterator[Doc]:
    """Gold Docs (``doc.ents`` with ``kb_id``) from :class:`LinkedDocument` objects."""
    if by not in ("document", "line"):
        raise ValueError(f"by must be 'document' or 'line', got {by!r}")
    stats = Counter() if stats is None else stats
    for document in documents:
        for piece_id, text, mentions in _pieces(document, by):
            doc = nlp.make_doc(text)
            spans = []
            for start, end, mention in mentions:
                label = mention.types[0] if mention.types else "ENT"
                span = doc.char_span(start, end, label=label, kb_id=mention.entity_id or NIL, alignment_mode="expand")
                if span is None or not span.text.strip():
                    stats["mentions not aligned to tokens"] += 1
                    continue
                spans.append(span)
            kept = filter_spans(spans)
            stats["overlapping mentions dropped"] += len(spans) - len(kept)
            doc.ents = kept
            stats["docs"] += 1
            stats["linked mentions"] += sum(span.kb_id_ != NIL for span in kept)
            stats["NIL mentions"] += sum(span.kb_id_ == NIL for span in kept)
            doc.user_data[META_KEY] = {"corpus": corpus, "doc_id": piece_id}
            yield doc


def convert_linking(source: Union[str, Path], output: Optional[Union[str, Path]] = None, *,
                    data_dir: Optional[Union[str, Path]] = None, fmt: Optional[str] = None, by: str = "document",
                    limit: Optional[int] = None, nlp=None) -> Tuple[DocBin, Counter]:
    """Read a linking corpus (benchmark name or file) and (if ``output``) write a DocBin."""
    import spacy

    nlp = nlp or spacy.blank("en")
    if fmt is None:
        if str(source) not in BENCHMARKS:
            raise ValueError(f"unknown linking corpus {str(source)!r}: give a benchmark name ({', '.join(BENCHMARKS)}) "
                             f"or a file with --format ({', '.join(READERS)})")
        if data_dir is None:
            raise ValueError("a benchmark name needs --data-dir (the shared/data folder)")
        documents: Sequence[LinkedDocument] = load_benchmark(str(source), data_dir)
        corpus = str(source)
    else:
        if fmt not in READERS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(READERS)}")
        if not Path(source).is_file():
            raise FileNotFoundError(f"{source} is not a file")
        documents = list(READERS[fmt](source))
        corpus = Path(source).stem
    stats: Counter = Counter()
    db = DocBin(store_user_data=True)
    for doc in linked_docs(documents, nlp, by=by, corpus=corpus, stats=stats):
        if limit is not None and len(db) >= limit:
            break
        db.add(doc)
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        db.to_disk(output)
    stats["docs written"] = len(db)
    return db, stats


def mention_example(gold: Doc):
    """An Example for linking on given mentions: the predicted Doc has the same tokens and the
    gold entities' offsets and labels, without their kb_ids."""
    from spacy.training import Example

    predicted = Doc(gold.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])
    predicted.ents = [Span(predicted, e.start, e.end, label=e.label_) for e in gold.ents]
    return Example(predicted, gold)


@registry.readers("spacy_gliner.LinkingCorpus.v1")
def create_linking_corpus_reader(path: str, limit: int = 0) -> Callable:
    """spaCy corpus reader: ``[corpora.train] @readers = "spacy_gliner.LinkingCorpus.v1"``,
    ``path`` (a DocBin from this converter), optional ``limit`` (0 = all)."""

    def read(nlp) -> Iterator:
        if not Path(path).is_file():
            raise FileNotFoundError(f"spacy_gliner.LinkingCorpus.v1: {path} not found; make it with "
                                    "`python -m spacy_gliner.training.convert_linking`")
        for count, gold in enumerate(DocBin().from_disk(path).get_docs(nlp.vocab)):
            if limit and count >= limit:
                break
            yield mention_example(gold)

    return read


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spacy_gliner.training.convert_linking",
                                     description="Convert an entity-linking corpus into a DocBin with gold kb_ids.")
    parser.add_argument("source", help="benchmark name (with --data-dir) or a corpus file (with --format)")
    parser.add_argument("output", type=Path, help="output .spacy file")
    parser.add_argument("--data-dir", type=Path, default=None, help="the shared/data folder")
    parser.add_argument("--format", choices=sorted(READERS), default=None, help="format of a corpus file")
    parser.add_argument("--by", choices=["document", "line"], default="document", help="one Doc per document or per text line")
    parser.add_argument("--limit", type=int, default=None, help="write at most N docs")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    try:
        _, stats = convert_linking(args.source, args.output, data_dir=args.data_dir, fmt=args.format, by=args.by,
                                   limit=args.limit)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"wrote {args.output}: " + ", ".join(f"{n} {what}" for what, n in sorted(stats.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
