"""Markdown table and PNG bar chart of a zero-shot CrossNER run, next to published GLiNER-L.

    python scripts/report.py --metrics metrics/zero_shot.json [--timings metrics/timings.json] \
        --markdown metrics/zero_shot.md --plot metrics/zero_shot.png [--title "..."]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean
from typing import Dict, Mapping, Optional

from spacy_gliner.evaluation import mean_over_datasets, results_to_markdown, write_markdown

# GLiNER-L zero-shot F1 on CrossNER, Table 1 of Zaratiana et al., NAACL 2024 (arXiv:2311.08526).
PUBLISHED = {
    "GLiNER-L (published)": {"AI": 57.2, "literature": 64.4, "music": 69.6, "politics": 72.6, "science": 62.6},
}


def comparison_rows(metrics: Mapping) -> Dict[str, Dict[str, Optional[float]]]:
    """``{row name: {domain: F1 in %}}``: one row per threshold of this run, then the published rows."""
    tag = metrics.get("tag", "run")
    rows: Dict[str, Dict[str, Optional[float]]] = {}
    for t, per_domain in metrics["results"].items():
        rows[f"this model ({tag}), t={t}"] = {
            d: (None if r.get("ents_f") is None else 100 * r["ents_f"]) for d, r in per_domain.items()
        }
    rows.update({k: dict(v) for k, v in PUBLISHED.items()})
    return rows


def comparison_markdown(rows: Mapping[str, Mapping[str, Optional[float]]], domains) -> str:
    lines = ["| Model | " + " | ".join(domains) + " | Mean |", "|---|" + "---:|" * (len(domains) + 1)]
    for name, vals in rows.items():
        cells = [vals.get(d) for d in domains]
        present = [c for c in cells if c is not None]
        avg = mean(present) if len(present) == len(cells) else None
        fmt = lambda v: "n/a" if v is None else f"{v:.1f}"
        lines.append(f"| {name} | " + " | ".join(fmt(c) for c in cells) + f" | **{fmt(avg)}** |")
    return "\n".join(lines) + "\n"


def plot(rows: Mapping[str, Mapping[str, Optional[float]]], domains, path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = list(domains) + ["Mean"]
    fig = Figure(figsize=(9.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    n = len(rows)
    width = 0.8 / n
    colors = ["#4C72B0", "#55A868", "#C44E52", "#8172B2", "#CCB974"]
    for i, (name, vals) in enumerate(rows.items()):
        ys = [vals.get(d) or 0.0 for d in domains]
        ys.append(mean(ys))
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, ys, width, label=name, color=colors[i % len(colors)])
        for bar, y in zip(bars, ys):
            ax.annotate(f"{y:.1f}", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--timings", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--plot", type=Path, required=True)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)

    metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
    tag = metrics.get("tag", "run")
    domains = list(next(iter(metrics["results"].values())))
    limit = metrics.get("limit")
    scope = f"first {limit} test sentences per domain" if limit else "full test sets"
    title = args.title or f"Zero-shot CrossNER F1 ({tag} run, {scope})"
    parts = [f"## {title}\n"]
    if tag == "quick":
        parts.append("**QUICK run**: small training sample, few steps, test subsets; a pipeline check, not a quality claim.\n")
    rows = comparison_rows(metrics)
    parts.append("### F1 per domain vs published GLiNER-L\n")
    parts.append(comparison_markdown(rows, domains))
    for t, per_domain in metrics["results"].items():
        parts.append(results_to_markdown(per_domain, title=f"P / R / F1 (%) at threshold {t}", mean_label="Mean"))
    if args.timings is not None and args.timings.exists():
        timings = json.loads(args.timings.read_text(encoding="utf-8"))
        lines = ["### Wall time", "", "| step | seconds | details |", "|---|---:|---|"]
        for step, v in timings.items():
            details = ", ".join(f"{k}={w}" for k, w in v.items() if k != "seconds")
            lines.append(f"| {step} | {v['seconds']} | {details} |")
        parts.append("\n".join(lines) + "\n")
    write_markdown(args.markdown, *parts)
    plot(rows, domains, args.plot, title)
    print((args.markdown).read_text(encoding="utf-8"))
    print(f"wrote {args.markdown} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
