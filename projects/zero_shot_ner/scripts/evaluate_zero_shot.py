"""Zero-shot NER on the five CrossNER test sets, at several thresholds.

    python scripts/evaluate_zero_shot.py --model training/full/model-last \
        --data-dir ../../../shared/data --thresholds 0.5 0.3 [--limit N] \
        --output metrics/zero_shot.json [--timings metrics/timings.json]

Protocol of the GLiNER papers: the test sentences' whitespace words, the domain's prompt labels
(``labels.json``, lower-cased), exact (start, end, type) match, micro P/R/F1 per domain over all
sentences; the benchmark figure is the plain mean of the five F1s. Gold types missing from
``labels.json`` (CrossNER_music's ``organisation``/``misc``) stay and count as misses, as in
GLiNER's evaluator. ``--limit`` scores only the first N test sentences of each domain.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from spacy.tokens import Doc

from spacy_gliner.evaluation import evaluate_ner, make_examples, mean_over_datasets
from spacy_gliner.training.corpus_formats.gliner_json import read_gliner_dataset

DOMAINS = ("AI", "literature", "music", "politics", "science")


def blank_copies(gold_docs: Iterable[Doc], vocab) -> List[Doc]:
    """Unannotated Docs with the gold Docs' words (what the model sees)."""
    return [Doc(vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g]) for g in gold_docs]


def score_domain(pred_docs: Sequence[Doc], gold_docs: Sequence[Doc], labels: Sequence[str]) -> Dict:
    """Exact-match micro scores of ``pred_docs`` (entities in ``doc.ents``) against ``gold_docs``
    (gold in ``doc.spans["sc"]``, else ``doc.ents``). The docs may have different vocabs:
    predicted labels are added to each gold doc's StringStore, where aligned spans are built."""
    for pred, gold in zip(pred_docs, gold_docs):
        if pred.vocab is not gold.vocab:
            for span in pred.ents:
                gold.vocab.strings.add(span.label_)
    return evaluate_ner(make_examples(pred_docs, gold_docs), gold_key="sc", labels=labels)


def set_labels(nlp, labels: Sequence[str], threshold: float, name: str = "gliner_ner") -> None:
    """Prompt the loaded component with a new label set and threshold (label vectors are
    computed for the new labels; the trained weights are unchanged)."""
    pipe = nlp.get_pipe(name)
    pipe.initialize(labels=list(labels))
    pipe.cfg["threshold"] = float(threshold)


def evaluate(nlp, data_dir: Path, domains: Sequence[str], thresholds: Sequence[float], limit=None, batch_size=16):
    results: Dict[str, Dict[str, Dict]] = {str(t): {} for t in thresholds}
    info: Dict[str, Dict] = {}
    for domain in domains:
        folder = data_dir / "gliner_ner_datasets" / f"CrossNER_{domain}"
        gold, labels, stats = read_gliner_dataset(folder, "test", warn=False, limit=limit, vocab=nlp.vocab)
        info[domain] = {"n_docs": len(gold), "labels": labels, "notes": dict(stats.notes)}
        for t in thresholds:
            t0 = time.perf_counter()
            set_labels(nlp, labels, t)
            pred = list(nlp.pipe(blank_copies(gold, nlp.vocab), batch_size=batch_size))
            seconds = time.perf_counter() - t0
            res = score_domain(pred, gold, labels)
            res["seconds"] = round(seconds, 2)
            results[str(t)][domain] = res
            print(f"  {domain:10s} t={t:<4} P {100 * (res['ents_p'] or 0):5.1f} R {100 * (res['ents_r'] or 0):5.1f} "
                  f"F1 {100 * (res['ents_f'] or 0):5.1f}  ({len(gold)} sents, {seconds:.1f} s)", flush=True)
    return results, info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS))
    parser.add_argument("--limit", type=int, default=0, help="first N test sentences per domain (0 = all)")
    parser.add_argument("--tag", default="full", help="run name stored in the metrics (e.g. quick)")
    parser.add_argument("--timings", type=Path, default=None)
    args = parser.parse_args(argv)

    import spacy

    t0 = time.perf_counter()
    nlp = spacy.load(args.model)
    results, info = evaluate(nlp, args.data_dir, args.domains, args.thresholds, args.limit or None)
    seconds = time.perf_counter() - t0
    out = {
        "tag": args.tag,
        "model": str(args.model),
        "limit": args.limit or None,
        "thresholds": args.thresholds,
        "results": results,
        "mean_f": {t: mean_over_datasets(r, "f") for t, r in results.items()},
        "domains": info,
        "seconds": round(seconds, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2), encoding="utf-8")
    for t, m in out["mean_f"].items():
        print(f"mean F1 at {t}: {100 * (m or 0):.1f}")
    print(f"evaluate: {seconds:.1f} s -> {args.output}")
    if args.timings is not None:
        from spacy_gliner.training.timed_train import record_timing

        record_timing(args.timings, "evaluate", seconds, limit=args.limit or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
