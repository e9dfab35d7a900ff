"""What a generative label decoder adds: CrossNER with the generic prompt ["entity"] (the decoder
names each span) against the same model classifying with the domain's real labels.

    python scripts/evaluate_decoder.py --model training/quick_decoder/model-last \
        --data-dir ../../../shared/data --threshold 0.5 [--limit N] --tag quick \
        --output metrics/quick_decoder.json --markdown metrics/quick_decoder.md

Per domain and in total (micro, over the domains' sentences):
- span P/R/F1, type-agnostic: a predicted span counts when its (start, end) is a gold span's;
- on the gold spans found, how often the label equals the gold type (case-insensitive), and how
  often it contains it (the generated "football club" contains the type "club"). With ["entity"]
  the label read is the decoder's first generated one; with the real labels, the classified one.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence

from spacy.tokens import Doc

from spacy_gliner.training.corpus_formats.gliner_json import read_gliner_dataset

DOMAINS = ("AI", "literature", "music", "politics", "science")
GENERIC_PROMPT = ["entity"]


def blank_copies(gold_docs, vocab) -> List[Doc]:
    return [Doc(vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g]) for g in gold_docs]


def gold_spans(doc: Doc) -> Dict[tuple, str]:
    spans = doc.spans["sc"] if "sc" in doc.spans else doc.ents
    return {(s.start, s.end): s.label_.lower() for s in spans}


def predicted(doc: Doc, generated: bool) -> Dict[tuple, str]:
    group = doc.spans["sc"]
    if generated:
        names = [(g[0] if g else "") for g in group.attrs["generated_labels"]]
    else:
        names = [s.label_ for s in group]
    return {(s.start, s.end): name.lower() for s, name in zip(group, names)}


def common_labels(pred_docs: Sequence[Doc], generated: bool, top: int = 5) -> List[List]:
    """The labels most often given to predicted spans, with their counts."""
    counts = Counter(name for doc in pred_docs for name in predicted(doc, generated).values())
    return [[name, n] for name, n in counts.most_common(top)]


def tally(pred_docs: Sequence[Doc], gold_docs: Sequence[Doc], generated: bool) -> Dict[str, int]:
    counts = dict(tp=0, fp=0, fn=0, equal=0, contains=0)
    for pred, gold in zip(pred_docs, gold_docs):
        ours, truth = predicted(pred, generated), gold_spans(gold)
        found = set(ours) & set(truth)
        counts["tp"] += len(found)
        counts["fp"] += len(set(ours) - found)
        counts["fn"] += len(set(truth) - found)
        for key in found:
            counts["equal"] += ours[key] == truth[key]
            counts["contains"] += bool(truth[key]) and truth[key] in ours[key]
    return counts


def scores(counts: Dict[str, int]) -> Dict[str, float]:
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        **counts,
        "span_p": p, "span_r": r, "span_f": 2 * p * r / (p + r) if p + r else 0.0,
        "label_equal": counts["equal"] / tp if tp else 0.0,
        "label_contains": counts["contains"] / tp if tp else 0.0,
    }


def run(nlp, gold, labels, threshold: float, decoder_mode: str, batch_size: int = 16) -> List[Doc]:
    pipe = nlp.get_pipe("gliner_ner")
    pipe.initialize(labels=list(labels))
    pipe.cfg.update(threshold=float(threshold), decoder_mode=decoder_mode, nested=False)
    return list(nlp.pipe(blank_copies(gold, nlp.vocab), batch_size=batch_size))


def evaluate(nlp, data_dir: Path, domains, threshold: float, limit=None) -> Dict:
    settings = {"generic": (GENERIC_PROMPT, True), "classified": (None, False)}
    per_domain: Dict[str, Dict] = {}
    totals = {name: dict(tp=0, fp=0, fn=0, equal=0, contains=0) for name in settings}
    for domain in domains:
        gold, labels, _ = read_gliner_dataset(data_dir / "gliner_ner_datasets" / f"CrossNER_{domain}", "test",
                                              warn=False, limit=limit, vocab=nlp.vocab)
        per_domain[domain] = {"n_docs": len(gold)}
        for name, (prompt, generated) in settings.items():
            t0 = time.perf_counter()
            pred = run(nlp, gold, prompt or labels, threshold, "span")
            counts = tally(pred, gold, generated)
            for key, value in counts.items():
                totals[name][key] += value
            result = scores(counts)
            result["common_labels"] = common_labels(pred, generated)
            result["seconds"] = round(time.perf_counter() - t0, 1)
            per_domain[domain][name] = result
            print(f"  {domain:10s} {name:10s} span F1 {100 * result['span_f']:5.1f}  label = gold {100 * result['label_equal']:5.1f}%"
                  f"  contains gold {100 * result['label_contains']:5.1f}%  ({result['seconds']} s)  {result['common_labels']}", flush=True)
    return {"domains": per_domain, "total": {name: scores(c) for name, c in totals.items()}}


def markdown(out: Dict) -> str:
    lines = []
    if out["tag"] == "quick":
        lines.append("**QUICK run: a pipeline check on small samples, not a measurement of the method.**\n")
    lines.append(f"Model `{out['model']}`, threshold {out['threshold']}, "
                 f"{'first ' + str(out['limit']) + ' ' if out['limit'] else 'all '}test sentences per domain.\n")
    lines.append("| domain | prompt | span P | span R | span F1 | label = gold type | label contains gold type |")
    lines.append("|---|---|---|---|---|---|---|")
    rows = list(out["results"]["domains"].items()) + [("total (micro)", out["results"]["total"])]
    for domain, result in rows:
        for name, prompt in (("generic", '["entity"] + generated label'), ("classified", "real labels")):
            r = result[name]
            lines.append(f"| {domain} | {prompt} | {100 * r['span_p']:.1f} | {100 * r['span_r']:.1f} | {100 * r['span_f']:.1f} "
                         f"| {100 * r['label_equal']:.1f}% | {100 * r['label_contains']:.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS))
    parser.add_argument("--limit", type=int, default=0, help="first N test sentences per domain (0 = all)")
    parser.add_argument("--tag", default="full")
    args = parser.parse_args(argv)

    import spacy

    t0 = time.perf_counter()
    nlp = spacy.load(args.model)
    results = evaluate(nlp, args.data_dir, args.domains, args.threshold, args.limit or None)
    out = {"tag": args.tag, "model": str(args.model), "threshold": args.threshold, "limit": args.limit or None,
           "results": results, "seconds": round(time.perf_counter() - t0, 1)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2), encoding="utf-8")
    args.markdown.write_text(markdown(out), encoding="utf-8")
    print(markdown(out))
    print(f"evaluate: {out['seconds']} s -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
