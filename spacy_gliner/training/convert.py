"""Convert a public corpus file into a spaCy ``DocBin``.

Command line::

    python -m spacy_gliner.training.convert <format> <input path> <output.spacy>
        [--limit N] [--label-map PRESET|FILE.json|RAW=name,...]
        [--label-mode table|lower|raw] [--by sentence|document] [--quiet]

Formats (see :data:`spacy_gliner.training.corpus_formats.dispatch.FORMATS`):

=============  ==============================================================
``gliner-json`` GLiNER evaluation JSON (``{sentence, entities}``) or training
                JSON (``{tokenized_text, ner}``); labels lower-cased
``bio``         ``token<TAB>tag`` BIO/BIOES files (GNER bundle, with
                ``label.txt`` checked when present); labels via the table
``crossner``    ``crossner/<domain>/*.txt`` BIO with GLiNER's CrossNER label
                names (``misc`` -> ``else``, ``programlang`` -> ``program language``)
``conll``       CoNLL columns (CoNLL-2003, WNUT-17); tag in the last column
``conll04``     SpERT JSON (CoNLL04), entities + relations
``crossre``     CrossRE JSON lines, entities + relations
``scierc``      SciERC DyGIE JSON lines, entities + relations
=============  ==============================================================

A directory as input converts every data file of that format in it (sorted;
``label.txt``/``labels.json``/``*.md`` are skipped). The output is a
``DocBin(store_user_data=True)``: gold entities in ``doc.ents`` and
``doc.spans["sc"]``, gold relations in ``doc._.gliner_relations``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from spacy.tokens import DocBin
from spacy.vocab import Vocab

from .corpus_formats.dispatch import FORMATS, iter_corpus
from .corpus_formats.gold_docs import ReadStats
from .doc_keys import META_KEY

__all__ = ["input_files", "convert", "docs_to_docbin", "main"]

_SKIP_NAMES = {"label.txt", "labels.json", "source.txt"}
_SUFFIXES = {
    "gliner-json": {".json", ".jsonl"},
    "bio": {".txt", ".bio", ".conll", ".tsv"},
    "crossner": {".txt"},
    "conll": {".txt", ".conll", ".annotated", ".tsv"},
    "conll04": {".json"},
    "crossre": {".json", ".jsonl"},
    "scierc": {".json", ".jsonl"},
}


def input_files(fmt: str, path: Union[str, Path]) -> List[Path]:
    """``path`` itself, or the data files of format ``fmt`` in a directory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    if path.is_file():
        return [path]
    files = [
        p
        for p in sorted(path.iterdir())
        if p.is_file()
        and p.name not in _SKIP_NAMES
        and p.suffix.lower() in _SUFFIXES[fmt]
        and not (fmt == "conll04" and p.name.endswith("_types.json"))
    ]
    if not files:
        raise FileNotFoundError(f"no {fmt} files in {path}")
    return files


def docs_to_docbin(docs: Iterable, *, store_user_data: bool = True) -> DocBin:
    """Gold Docs into a DocBin that keeps span groups and user data."""
    db = DocBin(store_user_data=store_user_data)
    for doc in docs:
        db.add(doc)
    return db


def convert(
    fmt: str,
    input_path: Union[str, Path],
    output_path: Optional[Union[str, Path]] = None,
    *,
    limit: Optional[int] = None,
    label_map: Union[None, str, Dict[str, str]] = None,
    label_mode: Optional[str] = None,
    by: Optional[str] = None,
    corpus: Optional[str] = None,
    progress: bool = True,
    warn: bool = True,
) -> tuple:
    """Read ``input_path`` as ``fmt`` and (if ``output_path``) write a DocBin.

    Returns ``(docbin, stats)``; ``stats`` merges all input files.
    ``limit`` caps the number of Docs over all files. Every Doc records ``corpus`` (default: the
    folder the data sits in, e.g. ``AnatEM``) in its metadata: training samples negative labels
    only from the label set of the example's own corpus.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    kwargs: Dict[str, object] = {}
    if label_map is not None:
        kwargs["label_map"] = label_map
    if label_mode is not None:
        kwargs["label_mode"] = label_mode
    if by is not None:
        if fmt != "scierc":
            raise ValueError("--by applies to the scierc format only")
        kwargs["by"] = by
    vocab = Vocab()
    db = DocBin(store_user_data=True)
    total = ReadStats(source=str(input_path))
    files = input_files(fmt, input_path)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=limit, unit="doc", desc=f"{fmt} -> DocBin", file=sys.stderr)
    try:
        for file in files:
            remaining = None if limit is None else limit - len(db)
            if remaining is not None and remaining <= 0:
                break
            stats = ReadStats(source=str(file))
            name = corpus or (Path(input_path).name if Path(input_path).is_dir() else Path(file).parent.name)
            for doc in iter_corpus(fmt, file, stats, vocab=vocab, limit=remaining, **kwargs):
                doc.user_data.setdefault(META_KEY, {})["corpus"] = name
                db.add(doc)
                if bar is not None:
                    bar.update(1)
            total.merge(stats)
    finally:
        if bar is not None:
            bar.close()
    if warn:
        total.warn()
    if output_path is not None:
        output_path = Path(output_path)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        db.to_disk(output_path)
    return db, total


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_gliner.training.convert",
        description="Convert an NER / relation corpus into a spaCy DocBin (.spacy).",
    )
    parser.add_argument("format", choices=sorted(FORMATS), help="input format")
    parser.add_argument("input", type=Path, help="input file or directory")
    parser.add_argument("output", type=Path, help="output .spacy file")
    parser.add_argument("--limit", type=int, default=None, help="convert at most N docs")
    parser.add_argument(
        "--label-map",
        default=None,
        help="preset (crossner, table), a JSON object file, or 'RAW=name,RAW2=name2'",
    )
    parser.add_argument(
        "--label-mode",
        choices=["table", "lower", "raw"],
        default=None,
        help="how labels without a map entry are named (default: per format)",
    )
    parser.add_argument("--by", choices=["sentence", "document"], default=None, help="scierc unit")
    parser.add_argument("--stats-json", type=Path, default=None, help="also write the stats here")
    parser.add_argument("--corpus", default=None, help="corpus name stored on each doc (default: the data folder name)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("--limit must be >= 1", file=sys.stderr)
        return 2
    _, stats = convert(
        args.format,
        args.input,
        args.output,
        limit=args.limit,
        label_map=args.label_map,
        label_mode=args.label_mode,
        by=args.by,
        corpus=args.corpus,
        progress=not args.quiet,
        warn=False,
    )
    print(f"wrote {args.output}: {stats.summary()}")
    if stats.skipped:
        print("skipped items by reason:")
        for reason, count in sorted(stats.skipped.items()):
            print(f"  {reason}: {count}")
    if args.stats_json is not None:
        args.stats_json.parent.mkdir(parents=True, exist_ok=True)
        args.stats_json.write_text(json.dumps(stats.to_dict(), indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
