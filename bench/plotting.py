"""Plots and the ratio table for bench/run_all.py (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAMES = {
    ("ours", "uni"): "ours, uni-encoder",
    ("reference", "uni"): "reference, uni-encoder",
    ("ours", "bi"): "ours, bi-encoder (cached labels)",
    ("reference", "bi"): "reference, bi-encoder (precomputed embeds)",
    ("ours-int8", "uni"): "ours int8, uni-encoder",
    ("ours-int8", "bi"): "ours int8, bi-encoder (cached labels)",
    ("gliner-spacy", "uni"): "gliner-spacy, uni-encoder (nlp.pipe)",
    ("gliner-spacy", "bi"): "gliner-spacy, bi-encoder (nlp.pipe)",
}
TARGETS = {"reference": 1.5, "gliner-spacy": 5.0, "bi/uni": 50.0}


def by_config(throughput):
    return {(r["impl"], r["encoder"], r["n_labels"]): r for r in throughput["runs"]}


def ratio_rows(throughput):
    """(what, labels, first docs/s, second docs/s, ratio, target) rows."""
    runs = by_config(throughput)
    rows = []
    pairs = [("ours", "reference", TARGETS["reference"]), ("ours", "gliner-spacy", TARGETS["gliner-spacy"]),
             ("ours-int8", "reference", None), ("ours-int8", "gliner-spacy", None)]
    for first, second, target in pairs:
        for enc in ("uni", "bi"):
            for n in sorted({k[2] for k in runs if k[1] == enc}):
                a, b = runs.get((first, enc, n)), runs.get((second, enc, n))
                if a and b:
                    rows.append((f"{first} / {second}, {enc}-encoder", n, a["docs_per_s"], b["docs_per_s"], a["docs_per_s"] / b["docs_per_s"], target))
    common = sorted({k[2] for k in runs if k[:2] == ("ours", "uni")} & {k[2] for k in runs if k[:2] == ("ours", "bi")})
    for n in common[-2:]:
        bi, uni = runs[("ours", "bi", n)], runs[("ours", "uni", n)]
        rows.append(("ours bi cached / ours uni", n, bi["docs_per_s"], uni["docs_per_s"], bi["docs_per_s"] / uni["docs_per_s"],
                     TARGETS["bi/uni"] if n == 1024 else None))
    return rows


def markdown_table(throughput, long_docs=None):
    lines = ["| comparison | labels | docs/s (first) | docs/s (second) | ratio | target |", "|---|---:|---:|---:|---:|---:|"]
    for what, n, a, b, r, target in ratio_rows(throughput):
        goal = "" if target is None else f"{target:g}x {'met' if r >= target else 'not met'}"
        lines.append(f"| {what} | {n} | {a:.2f} | {b:.2f} | **{r:.2f}x** | {goal} |")
    runs = by_config(throughput)
    lines += ["", "| run | labels | docs/s | words/s | entities | peak RSS MB | label build s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(runs, key=lambda k: (k[1], k[0], k[2])):
        r = runs[key]
        build = "" if r["label_build_s"] is None else f"{r['label_build_s']:.2f}"
        lines.append(f"| {NAMES[key[:2]]} | {key[2]} | {r['docs_per_s']:.2f} | {r['words_per_s']:.0f} | {r['entities']} | {r['rss_peak_mb']:.0f} | {build} |")
    for impl, why in (throughput.get("skipped") or {}).items():
        lines += ["", f"{impl} not timed: {why}"]
    np_ = throughput.get("n_process")
    if np_ and "error" in np_:
        lines += ["", "nlp.pipe n_process=2 run failed: " + np_["error"].splitlines()[-1]]
    elif np_:
        one, two = np_["runs"]["1"], np_["runs"]["2"]
        lines += ["", f"nlp.pipe, ours uni-encoder, {np_['n_labels']} labels, {np_['n_texts']} texts: "
                  f"n_process=1 {one['docs_per_s']:.2f} docs/s, n_process=2 {two['docs_per_s']:.2f} docs/s "
                  f"(ratio {two['docs_per_s'] / one['docs_per_s']:.2f}x)"]
    if long_docs:
        lines += ["", "| words | ours s | ours entities | beyond reference limit | reference s | reference entities | words reference never sees |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in long_docs["runs"]:
            lines.append(f"| {r['n_words']} | {r['ours_seconds']:.2f} | {r['ours_entities']} | {r['ours_entities_beyond_reference_limit']} | "
                         f"{r['reference_seconds']:.2f} | {r['reference_entities']} | {r['words_unseen_by_reference']} |")
    return "\n".join(lines)


def plot_throughput(throughput, path: Path):
    runs = by_config(throughput)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (impl, enc), name in NAMES.items():
        pts = sorted((k[2], r) for k, r in runs.items() if k[:2] == (impl, enc))
        if not pts:
            continue
        style = {"ours": "-", "ours-int8": "-."}.get(impl, "--")
        marker = "o" if enc == "uni" else "s"
        axes[0].plot([n for n, _ in pts], [r["docs_per_s"] for _, r in pts], style, marker=marker, label=name)
        axes[1].plot([n for n, _ in pts], [r["rss_peak_mb"] for _, r in pts], style, marker=marker, label=name)
    for ax, ylabel in zip(axes, ["docs / s", "peak RSS (MB)"]):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of labels")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{throughput['settings']['n_texts']} CrossNER sentences, batch {throughput['batch_size']}, CPU (shared 2 cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ratios(throughput, path: Path):
    rows = ratio_rows(throughput)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1))
    ax.axis("off")
    table = ax.table(
        cellText=[[w, str(n), f"{a:.2f}", f"{b:.2f}", f"{r:.2f}x"] for w, n, a, b, r, _ in rows],
        colLabels=["comparison", "labels", "docs/s first", "docs/s second", "ratio"], loc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(5)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
