"""Export linking benchmarks from shared/data as one uniform JSONL file per benchmark.

Each line: {"id", "text", "mentions": [{"start", "end", "text", "entity_id", "name", "types", "optional"}]}
with entity_id a Wikidata QID, "enwiki:<page id>" (ZELDA, AIDA-YAGO2) or null (NIL).

    python projects/linking/scripts/export_benchmarks.py --output-dir corpus/linking
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import List

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_kb import default_data_dir  # noqa: E402
from spacy_gliner.kb.linking_benchmarks import BENCHMARKS, load_benchmark  # noqa: E402

DEFAULT = ["kore50", "msnbc", "reuters-128", "rss-500", "aida-conll-test", "tweeki", "aida-yago2-testb"]


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--benchmarks", nargs="+", default=DEFAULT, choices=BENCHMARKS)
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name in tqdm(args.benchmarks, desc="Exporting benchmarks", unit="benchmark"):
        docs = load_benchmark(name, args.data_dir)
        path = args.output_dir / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for doc in docs:
                record = {"id": doc.doc_id, "text": doc.text,
                          "mentions": [{k: v for k, v in asdict(m).items() if k != "type_ids"} for m in doc.mentions]}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        linked = sum(len(d.linked_mentions) for d in docs)
        mentions = sum(len(d.mentions) for d in docs)
        tqdm.write(f"{name}: {len(docs)} docs, {mentions} mentions ({linked} linked) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
