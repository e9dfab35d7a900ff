"""Two runs of bench/run_all.py side by side: each comparison's ratio in the first and in the second
run, and how the ratio moved (second / first). Used to show that a change left speed where it was.

    python bench/compare_runs.py BEFORE_DIR AFTER_DIR [--markdown out.md] [--json out.json]

Each directory holds the throughput.json that run_all.py wrote. Ratios, not docs/s, are compared:
each ratio's two sides ran in the same run on the same machine, so load on the machine cancels.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plotting import ratio_rows  # noqa: E402


def compare(before: dict, after: dict) -> list:
    first = {(what, n): ratio for what, n, _a, _b, ratio, _t in ratio_rows(before)}
    rows = []
    for what, n, _a, _b, ratio, _t in ratio_rows(after):
        if (what, n) in first:
            rows.append({"comparison": what, "labels": n, "before": first[(what, n)], "after": ratio,
                         "after_over_before": ratio / first[(what, n)]})
    return rows


def markdown(rows: list) -> str:
    lines = ["| comparison | labels | ratio before | ratio after | after / before |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['comparison']} | {r['labels']} | {r['before']:.2f}x | {r['after']:.2f}x | {r['after_over_before']:.2f} |"
              for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = compare(*(json.loads((d / "throughput.json").read_text()) for d in (args.before, args.after)))
    table = markdown(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
