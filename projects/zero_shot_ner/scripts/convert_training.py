"""Convert the GNER-bundle training sets (minus ``crossner_*``) into a folder of DocBins.

    python scripts/convert_training.py --data-dir ../../../shared/data \
        --train-dir corpus/train --dev-output corpus/dev.spacy [--limit N] [--dev-limit M]

One ``<set>.spacy`` per training set goes into ``--train-dir`` (``spacy.Corpus.v1`` reads the
whole folder); each doc records its set name as its corpus, so training samples negative labels
from the example's own set only. Sets that ship no ``train.txt`` in the bundle (MultiNERD,
WikiNeural) are trained on their ``dev.txt`` and left out of the dev mix. ``--dev-output`` is a
small mix: the first ``--dev-limit`` sentences of every other set's ``dev.txt``. The CrossNER sets
are excluded everywhere: they are the zero-shot test domains.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from spacy.tokens import DocBin

from spacy_gliner.training.convert import convert

EXCLUDE_PREFIXES = ("crossner_",)


def training_sets(bundle: Path):
    """(name, train file, dev file or None) of every usable set, sorted by name."""
    out = []
    for folder in sorted(p for p in bundle.iterdir() if p.is_dir()):
        if folder.name.lower().startswith(EXCLUDE_PREFIXES):
            continue
        train, dev = folder / "train.txt", folder / "dev.txt"
        if train.is_file():
            out.append((folder.name, train, dev if dev.is_file() else None))
        elif dev.is_file():
            out.append((folder.name, dev, None))  # no train split shipped: train on dev, keep it out of the dev mix
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--train-dir", type=Path, required=True)
    parser.add_argument("--dev-output", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="sentences per training set (0 = all)")
    parser.add_argument("--dev-limit", type=int, default=50, help="dev sentences per set in the dev mix")
    parser.add_argument("--timings", type=Path, default=None, help="record the wall time here (JSON)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    bundle = args.data_dir / "gner_ner_bundle"
    sets = training_sets(bundle)
    if not sets:
        print(f"no training sets under {bundle}", file=sys.stderr)
        return 1
    args.train_dir.mkdir(parents=True, exist_ok=True)
    for old in args.train_dir.glob("*.spacy"):
        old.unlink()  # a smaller re-run must not keep sets from a bigger one
    limit = args.limit or None
    summary = {}
    dev = DocBin(store_user_data=True)
    for name, train_file, dev_file in sets:
        db, stats = convert("bio", train_file, args.train_dir / f"{name}.spacy", limit=limit, corpus=name, progress=False, warn=False)
        summary[name] = {"train_file": str(train_file.relative_to(args.data_dir)), "train_docs": len(db), "labels": sorted(stats.labels)}
        if dev_file is not None and args.dev_limit > 0:
            ddb, _ = convert("bio", dev_file, None, limit=args.dev_limit, corpus=name, progress=False, warn=False)
            dev.merge(ddb)
            summary[name]["dev_docs"] = len(ddb)
        print(f"  {name:22s} train {len(db):6d} docs  dev {summary[name].get('dev_docs', 0):4d}  from {train_file.name}")
    args.dev_output.parent.mkdir(parents=True, exist_ok=True)
    dev.to_disk(args.dev_output)
    n_train = sum(s["train_docs"] for s in summary.values())
    (args.train_dir / "sets.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"{len(sets)} sets, {n_train} training docs in {args.train_dir}, {len(dev)} dev docs in {args.dev_output} "
          f"({time.perf_counter() - t0:.1f} s)")
    if args.timings is not None:
        from spacy_gliner.training.timed_train import record_timing

        record_timing(args.timings, "convert", time.perf_counter() - t0, train_docs=n_train, dev_docs=len(dev))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
