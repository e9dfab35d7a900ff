"""Markdown report of ``evaluate_relex.py``'s metrics, with published supervised CoNLL04 figures
for context.

    python scripts/report.py --metrics metrics/relex.json --timings metrics/timings.json \
        --markdown metrics/relex.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

# Published supervised CoNLL04 results (SpERT split and metric: a relation is correct when its label
# and both entities (boundaries and types) are correct, i.e. our "typed" column; micro F1).
PUBLISHED = [
    ("SpERT (Eberts & Ulges, ECAI 2020), BERT-base", 88.94, 71.47),
]


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def table(results, threshold: str) -> str:
    lines = [
        "| set | kind | sents | entity P | entity R | entity F1 | rel strict P | rel strict R | rel strict F1 | rel typed F1 | gold / predicted relations |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in results.items():
        r = entry["by_threshold"][threshold]
        e, rel = r["entities"], r["relations"]
        lines.append(
            f"| {name} | {entry['kind']} | {r['n_docs']} | {pct(e['ents_p'])} | {pct(e['ents_r'])} | {pct(e['ents_f'])} | "
            f"{pct(rel['strict']['p'])} | {pct(rel['strict']['r'])} | **{pct(rel['strict']['f'])}** | {pct(rel['typed']['f'])} | "
            f"{rel['n_gold']} / {rel['n_pred']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--timings", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, required=True)
    args = parser.parse_args(argv)
    data = json.loads(args.metrics.read_text(encoding="utf-8"))
    timings = json.loads(args.timings.read_text(encoding="utf-8")) if args.timings and args.timings.exists() else {}
    out = [f"# gliner_relex: CoNLL04 (supervised), CrossRE and SciERC (zero-shot) — run `{data['tag']}`", ""]
    if data["tag"] == "quick":
        out += ["**Quick run**: a pipeline check on small samples and few training steps, not a quality claim.", ""]
    out += [
        f"Model `{data['model']}`; trained entity labels {', '.join(data['trained_entity_labels'])}; "
        f"relation labels {', '.join(data['trained_relation_labels'])}."
        + (f" First {data['limit']} sentences of each set." if data.get("limit") else ""),
        "",
        "Entities: exact (start, end, type). Relations strict: head span + tail span + relation label; "
        "typed: strict plus both entity types (the SpERT metric). Zero-shot sets are prompted with their own "
        "label names.",
        "",
    ]
    for threshold in data["thresholds"]:
        out += [f"## threshold {threshold} (entity, adjacency and relation)", "", table(data["results"], str(threshold)), ""]
    out += ["## Published supervised CoNLL04 figures (for context; other encoders, full training)", "",
            "| system | entity F1 | relation F1 (typed) |", "|---|---:|---:|"]
    out += [f"| {name} | {ent:.2f} | {rel:.2f} |" for name, ent, rel in PUBLISHED]
    if timings:
        out += ["", "## Timings", ""] + [f"- {k}: {v['seconds']} s" for k, v in timings.items()]
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text("\n".join(out) + "\n", encoding="utf-8")
    print(args.markdown.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
