"""Measure candidate recall and lookup latency of the KB layer on real benchmarks.

For every linked gold mention of each benchmark, ask the exact-alias, fuzzy and
merged generators for candidates and count how often the gold id is among
them (recall@k). Mentions whose gold entity is not in the KB are counted
separately (they cannot be recalled by any generator).

    python projects/linking/scripts/candidate_recall.py --kb kb.jsonl --benchmarks kore50 msnbc
    python projects/linking/scripts/candidate_recall.py --kb kb.jsonl --sqlite /tmp/kb.sqlite ...
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from spacy_gliner.kb.candidates import ExactAliasCandidates, FuzzyCandidates, MergedCandidates  # noqa: E402
from spacy_gliner.kb.linking_benchmarks import load_benchmark  # noqa: E402
from spacy_gliner.kb.fuzzy import FuzzyIndex  # noqa: E402
from spacy_gliner.kb.memory import InMemoryKB  # noqa: E402
from spacy_gliner.kb.sqlite import SQLiteKB  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_kb import default_data_dir  # noqa: E402


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", type=Path, required=True, help="KB JSONL (from build_kb.py)")
    parser.add_argument("--sqlite", type=Path, default=None,
                        help="use an SQLiteKB at this path (built from --kb if missing) instead of InMemoryKB")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--benchmarks", nargs="+", default=["kore50", "msnbc", "reuters-128", "rss-500",
                                                            "aida-conll-test", "tweeki"])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--min-score", type=float, default=0.3)
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.sqlite:
        kb = SQLiteKB(args.sqlite) if args.sqlite.exists() else SQLiteKB.from_jsonl(args.kb, args.sqlite)
    else:
        kb = InMemoryKB.from_jsonl(args.kb)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    index = FuzzyIndex.build(kb)
    index_s = time.perf_counter() - start
    exact = ExactAliasCandidates(kb, k=args.k)
    fuzzy = FuzzyCandidates(kb, index=index, k=args.k, min_score=args.min_score)
    merged = MergedCandidates([exact, fuzzy], k=args.k)
    results: Dict[str, object] = {"kb_entities": len(kb), "kb_kind": type(kb).__name__, "kb_load_s": round(load_s, 2),
                                  "fuzzy_index_build_s": round(index_s, 2), "k": args.k,
                                  "fuzzy_min_score": args.min_score, "benchmarks": {}}
    for name in args.benchmarks:
        mentions = [m for doc in load_benchmark(name, args.data_dir) for m in doc.linked_mentions]
        in_kb = [m for m in mentions if m.entity_id in kb]
        hits = {"exact": 0, "fuzzy": 0, "merged": 0}
        no_candidates = 0
        seconds = {"exact": 0.0, "fuzzy": 0.0, "merged": 0.0}
        for mention in in_kb:
            for label, generator in (("exact", exact), ("fuzzy", fuzzy), ("merged", merged)):
                t0 = time.perf_counter()
                found = generator(mention.text)
                seconds[label] += time.perf_counter() - t0
                hits[label] += any(c.entity_id == mention.entity_id for c in found)
                if label == "merged" and not found:
                    no_candidates += 1
        n = max(len(in_kb), 1)
        results["benchmarks"][name] = {
            "linked_mentions": len(mentions),
            "gold_in_kb": len(in_kb),
            **{f"recall@{args.k}_{label}": round(hits[label] / n, 4) for label in hits},
            "mentions_without_candidates": no_candidates,
            **{f"ms_per_mention_{label}": round(1000 * seconds[label] / n, 3) for label in seconds},
        }
    print(json.dumps(results, indent=2))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
