"""Scores for zero-shot NER and relation extraction, as plain dicts.

NER follows the GLiNER papers' protocol: whitespace words, a predicted entity
is correct only if (start, end, type) equals a gold entity exactly, micro
precision / recall / F1 per dataset over all sentences (sentences without
gold entities count their false positives), the zero-shot benchmark figure is
the plain mean of the per-dataset F1. Counting is done with spaCy's
``PRFScore`` over sets of ``(label, start, end - 1)`` per document with the
predicted spans aligned onto the gold tokens, i.e. exactly what
``spacy.scorer.Scorer.score_spans`` does, so ``ents_p/ents_r/ents_f`` equal
spaCy's figures (as fractions in [0, 1]); the dicts add the raw counts.

Gold spans come from ``doc.spans["sc"]`` when the gold Doc has that group (the
readers in :mod:`spacy_gliner.training.corpus_formats` write it; it keeps nested gold
that ``doc.ents`` cannot hold), otherwise from ``doc.ents``. Predictions come
from ``doc.ents`` unless ``pred_key`` names a span group.

Relations (stored with :mod:`spacy_gliner.doc_relations`) are scored three ways:

* ``strict``: head span + tail span + relation label (the figure asked for by
  most zero-shot RE papers);
* ``boundaries``: head span + tail span, relation label ignored;
* ``typed``: ``strict`` plus the entity labels of head and tail (the "strict"
  of SpERT / Taillé et al. 2020), where the entity label is that of the
  entity with the same bounds in ``doc.ents`` / ``doc.spans["sc"]``.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from spacy.scorer import PRFScore
from spacy.tokens import Doc, Span
from spacy.training import Example

from . import doc_relations as _relations

__all__ = [
    "make_examples",
    "evaluate_ner",
    "evaluate_relations",
    "prf_dict",
    "mean_over_datasets",
    "results_to_markdown",
    "per_type_markdown",
    "write_markdown",
    "plot_f1_bars",
]

RELATION_MODES = ("strict", "boundaries", "typed")


def prf_dict(score: PRFScore) -> Dict[str, Any]:
    """A PRFScore as ``{p, r, f, tp, fp, fn, support}`` (support = tp + fn)."""
    return {
        "p": score.precision,
        "r": score.recall,
        "f": score.fscore,
        "tp": int(score.tp),
        "fp": int(score.fp),
        "fn": int(score.fn),
        "support": int(score.tp + score.fn),
    }


def make_examples(pred_docs: Iterable[Doc], gold_docs: Iterable[Doc]) -> List[Example]:
    """Pair predicted and gold Docs into Examples (same number of docs, and
    the same text once whitespace is removed, else ``ValueError``)."""
    pred_docs, gold_docs = list(pred_docs), list(gold_docs)
    if len(pred_docs) != len(gold_docs):
        raise ValueError(f"{len(pred_docs)} predicted docs but {len(gold_docs)} gold docs")
    out = []
    for i, (pred, gold) in enumerate(zip(pred_docs, gold_docs)):
        if "".join(pred.text.split()) != "".join(gold.text.split()):
            raise ValueError(f"doc {i}: predicted and gold texts differ")
        out.append(Example(pred, gold))
    return out


def _gold_spans(doc: Doc, gold_key: Optional[str]) -> Sequence[Span]:
    if gold_key is not None and gold_key in doc.spans:
        return list(doc.spans[gold_key])
    return list(doc.ents)


def _pred_spans(doc: Doc, pred_key: Optional[str]) -> Sequence[Span]:
    if pred_key is None:
        return list(doc.ents)
    return list(doc.spans[pred_key]) if pred_key in doc.spans else []


def evaluate_ner(
    examples: Iterable[Example],
    *,
    gold_key: Optional[str] = "sc",
    pred_key: Optional[str] = None,
    labels: Optional[Iterable[str]] = None,
    allow_overlap: bool = True,
) -> Dict[str, Any]:
    """Exact-match micro P/R/F1 of predicted entities, plus per type.

    ``labels`` adds these types to ``ents_per_type`` even when they have no
    gold and no predicted span (gold of other types is still counted, as
    GLiNER's evaluator does). Returns::

        {"ents_p", "ents_r", "ents_f",        # spaCy's keys, fractions; None if no spans at all
         "tp", "fp", "fn", "n_docs", "n_gold", "n_pred",
         "ents_per_type": {label: {"p", "r", "f", "tp", "fp", "fn", "support"}}}
    """
    total = PRFScore()
    per_type: Dict[str, PRFScore] = {label: PRFScore() for label in (labels or [])}
    n_docs = n_gold = n_pred = 0
    for eg in examples:
        n_docs += 1
        gold = {(s.label_, s.start, s.end - 1) for s in _gold_spans(eg.reference, gold_key)}
        aligned = eg.get_aligned_spans_x2y(_pred_spans(eg.predicted, pred_key), allow_overlap)
        pred = {(s.label_, s.start, s.end - 1) for s in aligned}
        n_gold += len(gold)
        n_pred += len(pred)
        total.score_set(pred, gold)
        for label in {k[0] for k in gold} | {k[0] for k in pred}:
            per_type.setdefault(label, PRFScore()).score_set(
                {k for k in pred if k[0] == label}, {k for k in gold if k[0] == label}
            )
    has_spans = len(total) > 0
    return {
        "ents_p": total.precision if has_spans else None,
        "ents_r": total.recall if has_spans else None,
        "ents_f": total.fscore if has_spans else None,
        "tp": int(total.tp),
        "fp": int(total.fp),
        "fn": int(total.fn),
        "n_docs": n_docs,
        "n_gold": n_gold,
        "n_pred": n_pred,
        "ents_per_type": {k: prf_dict(v) for k, v in sorted(per_type.items())},
    }


def _same_tokens(eg: Example) -> bool:
    return len(eg.predicted) == len(eg.reference) and all(
        a.text == b.text for a, b in zip(eg.predicted, eg.reference)
    )


def _aligned_bounds(eg: Example, start: int, end: int) -> Optional[Tuple[int, int]]:
    """Token bounds in the gold Doc of predicted tokens [start, end)."""
    spans = eg.get_aligned_spans_x2y([eg.predicted[start:end]], allow_overlap=True)
    return (spans[0].start, spans[0].end) if spans else None


def _relation_keys(
    doc: Doc,
    tuples: Sequence[_relations.RelationTuple],
    mode: str,
    symmetric: Set[str],
    bounds: Callable[[int, int], Optional[Tuple[int, int]]],
    tag: str,
) -> Set[tuple]:
    keys = set()
    for i, (hs, he, ts, te, label, _score) in enumerate(tuples):
        head, tail = bounds(hs, he), bounds(ts, te)
        if head is None or tail is None:
            keys.add(("__unaligned__", tag, i, label))  # a prediction that can match nothing
            continue
        if mode == "typed":
            h = (*head, _relations.entity_label_for(doc, hs, he))
            t = (*tail, _relations.entity_label_for(doc, ts, te))
        else:
            h, t = head, tail
        if label in symmetric and t < h:
            h, t = t, h
        keys.add((h, t) if mode == "boundaries" else (h, t, label))
    return keys


def evaluate_relations(
    examples: Iterable[Example],
    *,
    modes: Sequence[str] = RELATION_MODES,
    symmetric_labels: Iterable[str] = (),
    threshold: Optional[float] = None,
) -> Dict[str, Any]:
    """Micro P/R/F1 of predicted relations (``doc._.gliner_relations`` of
    ``eg.predicted``) against gold (same store on ``eg.reference``).

    ``symmetric_labels``: relation labels whose direction is ignored.
    ``threshold``: drop predicted relations scoring below it first.
    Returns ``{mode: {p, r, f, tp, fp, fn, support}, "per_label": {label:
    strict scores}, "n_docs", "n_gold", "n_pred"}``.
    """
    for mode in modes:
        if mode not in RELATION_MODES:
            raise ValueError(f"unknown relation mode {mode!r}; use {RELATION_MODES}")
    symmetric = set(symmetric_labels)
    scores = {mode: PRFScore() for mode in modes}
    per_label: Dict[str, PRFScore] = {}
    n_docs = n_gold = n_pred = 0
    for eg in examples:
        n_docs += 1
        gold_t = _relations.get_relation_tuples(eg.reference)
        pred_t = _relations.get_relation_tuples(eg.predicted)
        if threshold is not None:
            pred_t = [t for t in pred_t if t[5] >= threshold]
        n_gold += len(gold_t)
        n_pred += len(pred_t)

        def ident(s: int, e: int) -> Tuple[int, int]:
            return s, e

        if _same_tokens(eg):
            align: Callable[[int, int], Optional[Tuple[int, int]]] = ident
        else:

            def align(s: int, e: int, _eg=eg) -> Optional[Tuple[int, int]]:
                return _aligned_bounds(_eg, s, e)

        for mode in modes:
            # Typed mode reads entity labels from each side's own Doc.
            gold_k = _relation_keys(eg.reference, gold_t, mode, symmetric, ident, "gold")
            pred_k = _relation_keys(eg.predicted, pred_t, mode, symmetric, align, "pred")
            scores[mode].score_set(pred_k, gold_k)
        gold_s = _relation_keys(eg.reference, gold_t, "strict", symmetric, ident, "gold")
        pred_s = _relation_keys(eg.predicted, pred_t, "strict", symmetric, align, "pred")
        labels = {k[-1] for k in gold_s} | {k[-1] for k in pred_s}
        for label in labels:
            per_label.setdefault(label, PRFScore()).score_set(
                {k for k in pred_s if k[-1] == label}, {k for k in gold_s if k[-1] == label}
            )
    out: Dict[str, Any] = {mode: prf_dict(score) for mode, score in scores.items()}
    out["per_label"] = {k: prf_dict(v) for k, v in sorted(per_label.items())}
    out["n_docs"], out["n_gold"], out["n_pred"] = n_docs, n_gold, n_pred
    return out


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------

_PRF_KEYS = {"p": ("ents_p", "p"), "r": ("ents_r", "r"), "f": ("ents_f", "f")}


def _get(result: Mapping[str, Any], what: str) -> Optional[float]:
    for key in _PRF_KEYS[what]:
        if key in result:
            return result[key]
    return None


def mean_over_datasets(results: Mapping[str, Mapping[str, Any]], what: str = "f") -> Optional[float]:
    """Plain mean of one metric (``p``, ``r`` or ``f``) over datasets; ``None``
    if no dataset has it. Accepts :func:`evaluate_ner` dicts or ``{p, r, f}``."""
    values = [v for v in (_get(r, what) for r in results.values()) if v is not None]
    return mean(values) if values else None


def _pct(value: Optional[float], digits: int) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def results_to_markdown(
    results: Mapping[str, Mapping[str, Any]],
    *,
    title: Optional[str] = None,
    digits: int = 1,
    mean_label: str = "Average",
    counts: bool = True,
) -> str:
    """Markdown table, one row per dataset (P / R / F1 in %, and tp/fp/fn when
    ``counts``), with a final row holding the plain means."""
    header = ["Dataset", "P", "R", "F1"]
    if counts:
        header += ["TP", "FP", "FN"]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for name, res in results.items():
        row = [str(name), _pct(_get(res, "p"), digits), _pct(_get(res, "r"), digits), _pct(_get(res, "f"), digits)]
        if counts:
            row += [str(res.get("tp", "")), str(res.get("fp", "")), str(res.get("fn", ""))]
        lines.append("| " + " | ".join(row) + " |")
    if results:
        row = [
            f"**{mean_label}**",
            _pct(mean_over_datasets(results, "p"), digits),
            _pct(mean_over_datasets(results, "r"), digits),
            f"**{_pct(mean_over_datasets(results, 'f'), digits)}**",
        ]
        if counts:
            row += ["", "", ""]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def per_type_markdown(result: Mapping[str, Any], *, digits: int = 1, title: Optional[str] = None) -> str:
    """Markdown table of ``ents_per_type`` (or ``per_label``), sorted by support."""
    per_type = result.get("ents_per_type", result.get("per_label", {}))
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| Type | P | R | F1 | Support |")
    lines.append("|---|---:|---:|---:|---:|")
    for label, s in sorted(per_type.items(), key=lambda kv: (-kv[1].get("support", 0), kv[0])):
        lines.append(
            f"| {label} | {_pct(s['p'], digits)} | {_pct(s['r'], digits)} | "
            f"{_pct(s['f'], digits)} | {s.get('support', '')} |"
        )
    return "\n".join(lines) + "\n"


def write_markdown(path: Union[str, Path], *parts: str) -> Path:
    """Write markdown ``parts`` (separated by blank lines) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(p.rstrip("\n") + "\n" for p in parts), encoding="utf-8")
    return path


def plot_f1_bars(
    results: Mapping[str, Mapping[str, Any]],
    path: Union[str, Path],
    *,
    title: str = "Zero-shot NER F1 per domain",
    mean_label: str = "Average",
) -> Path:
    """PNG bar chart of F1 (%) per dataset with a final mean bar and a dashed
    mean line. matplotlib is imported here only (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results)
    values = [100 * (_get(results[n], "f") or 0.0) for n in names]
    avg = mean_over_datasets(results, "f")
    avg_pct = 100 * avg if avg is not None else 0.0
    fig = Figure(figsize=(max(5.0, 1.1 * (len(names) + 1) + 1.5), 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(names) + 1))
    colors = ["#4C72B0"] * len(names) + ["#DD8452"]
    bars = ax.bar(xs, values + [avg_pct], color=colors)
    ax.axhline(avg_pct, color="#DD8452", linestyle="--", linewidth=1)
    for bar, value in zip(bars, values + [avg_pct]):
        ax.annotate(
            f"{value:.1f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(xs)
    ax.set_xticklabels(names + [mean_label], rotation=30, ha="right")
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, max(100.0, max(values + [avg_pct]) * 1.1))
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
