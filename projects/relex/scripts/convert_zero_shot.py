"""The zero-shot evaluation sets as DocBins: CrossRE test (six domains) and SciERC test.

    python scripts/convert_zero_shot.py --data-dir ../../../shared/data --output-dir corpus

Writes ``<output-dir>/zero_shot/crossre_<domain>.spacy`` and ``<output-dir>/zero_shot/scierc.spacy``
with :func:`spacy_gliner.training.convert.convert` (the ``crossre`` and ``scierc`` formats of
``python -m spacy_gliner.training.convert``): gold entities in ``doc.ents`` / ``doc.spans["sc"]``,
gold relations in ``doc._.gliner_relations``, label names prompt-style (CrossNER entity names,
``part-of`` -> ``part of``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spacy_gliner.training.convert import convert

CROSSRE_DOMAINS = ("ai", "literature", "music", "news", "politics", "science")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    out = args.output_dir / "zero_shot"
    jobs = [("crossre", args.data_dir / "crossre" / f"{d}-test.json", out / f"crossre_{d}.spacy") for d in CROSSRE_DOMAINS]
    jobs.append(("scierc", args.data_dir / "scierc" / "test.json", out / "scierc.spacy"))
    for fmt, source, target in jobs:
        _, stats = convert(fmt, source, target, progress=False, warn=False)
        print(f"{target}: {stats.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
