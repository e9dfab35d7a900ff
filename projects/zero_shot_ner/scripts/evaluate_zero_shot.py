"""Zero-shot NER on the five CrossNER test sets, at several thresholds.

    python scripts/evaluate_zero_shot.py --model training/full/model-last \
        --data-dir ../../../shared/data --thresholds 0.5 0.3 [--limit N] \
        --output metrics/zero_shot.json [--timings metrics/timings.json] \
        [--backends torch onnx onnx-int8 --markdown metrics/backends.md]

Protocol of the GLiNER papers: the test sentences' whitespace words, the domain's prompt labels
(``labels.json``, lower-cased), exact (start, end, type) match, micro P/R/F1 per domain over all
sentences; the benchmark figure is the plain mean of the five F1s. Gold types missing from
``labels.json`` (CrossNER_music's ``organisation``/``misc``) stay and count as misses, as in
GLiNER's evaluator. ``--limit`` scores only the first N test sentences of each domain.

``--backends`` runs the same saved model with several inference backends of ``gliner_ner``:
``torch``, ``onnx`` (fp32 ONNX Runtime) and ``onnx-int8`` (``onnx_quantize: int8``). They take
turns on every domain and threshold, so a load change on the machine hits all of them alike.
``results`` and ``mean_f`` hold the first backend's scores (what ``report.py`` reads);
``backends`` holds every backend's, and ``--markdown`` writes the comparison table: F1 per
domain, each backend's change against the second one (int8 against fp32 ONNX), and the speed-up.
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
# backend name on the command line -> gliner_ner settings that select it
BACKEND_SETTINGS = {
    "torch": {"backend": "torch"},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "onnx_quantize": "int8"},
}


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


def load_backends(model: Path, backends: Sequence[str], name: str = "gliner_ner") -> Dict[str, object]:
    """One pipeline per backend, all from the same saved model; an ONNX pipeline exports its
    encoders here (once), not inside the timed evaluation."""
    import spacy

    pipelines = {}
    for backend in backends:
        nlp = spacy.load(model, config={"components": {name: BACKEND_SETTINGS[backend]}})
        nlp.get_pipe(name).extractor.inference_model  # builds the backend's encoders now
        pipelines[backend] = nlp
    return pipelines


def evaluate(pipelines: Dict[str, object], data_dir: Path, domains: Sequence[str], thresholds: Sequence[float], limit=None, batch_size=16):
    """Scores per backend, threshold and domain (``pipelines``: backend name -> loaded pipeline)."""
    results = {backend: {str(t): {} for t in thresholds} for backend in pipelines}
    info: Dict[str, Dict] = {}
    for domain in domains:
        folder = data_dir / "gliner_ner_datasets" / f"CrossNER_{domain}"
        for backend, nlp in pipelines.items():
            gold, labels, stats = read_gliner_dataset(folder, "test", warn=False, limit=limit, vocab=nlp.vocab)
            info[domain] = {"n_docs": len(gold), "labels": labels, "notes": dict(stats.notes)}
            for t in thresholds:
                t0 = time.perf_counter()
                set_labels(nlp, labels, t)
                pred = list(nlp.pipe(blank_copies(gold, nlp.vocab), batch_size=batch_size))
                seconds = time.perf_counter() - t0
                res = score_domain(pred, gold, labels)
                res["seconds"] = round(seconds, 2)
                results[backend][str(t)][domain] = res
                print(f"  {domain:10s} {backend:9s} t={t:<4} P {100 * (res['ents_p'] or 0):5.1f} R {100 * (res['ents_r'] or 0):5.1f} "
                      f"F1 {100 * (res['ents_f'] or 0):5.1f}  ({len(gold)} sents, {seconds:.1f} s)", flush=True)
    return results, info


def backend_table(out: Dict) -> str:
    """Markdown: F1 per domain and mean for every backend and threshold, each backend's change in
    F1 points against the second backend (int8 against fp32 ONNX with ``torch onnx onnx-int8``),
    and the speed of each backend relative to the second (nlp.pipe seconds over all domains)."""
    backends = list(out["backends"])
    base = backends[1] if len(backends) > 1 else backends[0]
    domains = list(out["domains"])
    head = "| backend | threshold | " + " | ".join(domains) + " | Mean |"
    lines = [f"F1 (%), {'first ' + str(out['limit']) + ' test sentences per domain' if out['limit'] else 'full test sets'}:", "",
             head, "|---|---:|" + "---:|" * (len(domains) + 1)]

    def f1(backend, t, domain):
        return 100 * (out["backends"][backend]["results"][t][domain]["ents_f"] or 0)

    def mean(backend, t):
        return 100 * (out["backends"][backend]["mean_f"][t] or 0)

    for t in out["backends"][base]["results"]:
        for backend in backends:
            cells = [f"{f1(backend, t, d):.2f}" for d in domains] + [f"**{mean(backend, t):.2f}**"]
            lines.append(f"| {backend} | {t} | " + " | ".join(cells) + " |")
        for backend in backends:
            if backend == base:
                continue
            cells = [f"{f1(backend, t, d) - f1(base, t, d):+.2f}" for d in domains] + [f"**{mean(backend, t) - mean(base, t):+.2f}**"]
            lines.append(f"| {backend} - {base} | {t} | " + " | ".join(cells) + " |")
    lines += ["", f"| backend | nlp.pipe seconds (all domains and thresholds) | speed vs {base} |", "|---|---:|---:|"]
    for backend in backends:
        seconds = out["backends"][backend]["pipe_seconds"]
        lines.append(f"| {backend} | {seconds:.1f} | {out['backends'][base]['pipe_seconds'] / seconds:.2f}x |")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--backends", nargs="+", default=["torch"], choices=list(BACKEND_SETTINGS),
                        help="inference backends to run the model with, in turns (the first fills 'results')")
    parser.add_argument("--markdown", type=Path, default=None, help="write the backend comparison table here")
    args = parser.parse_args(argv)
    if len(set(args.backends)) != len(args.backends):
        parser.error(f"--backends lists a backend twice: {args.backends}")

    t0 = time.perf_counter()
    pipelines = load_backends(args.model, args.backends)
    results, info = evaluate(pipelines, args.data_dir, args.domains, args.thresholds, args.limit or None)
    seconds = time.perf_counter() - t0
    by_backend = {
        backend: {
            "settings": BACKEND_SETTINGS[backend],
            "results": scores,
            "mean_f": {t: mean_over_datasets(r, "f") for t, r in scores.items()},
            "pipe_seconds": round(sum(r["seconds"] for per_t in scores.values() for r in per_t.values()), 2),
        }
        for backend, scores in results.items()
    }
    first = by_backend[args.backends[0]]
    out = {
        "tag": args.tag,
        "model": str(args.model),
        "limit": args.limit or None,
        "thresholds": args.thresholds,
        "backend": args.backends[0],
        "results": first["results"],
        "mean_f": first["mean_f"],
        "backends": by_backend,
        "domains": info,
        "seconds": round(seconds, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2), encoding="utf-8")
    for backend, scores in by_backend.items():
        for t, m in scores["mean_f"].items():
            print(f"{backend}: mean F1 at {t}: {100 * (m or 0):.2f} (nlp.pipe {scores['pipe_seconds']:.1f} s)")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(backend_table(out), encoding="utf-8")
    print(f"evaluate: {seconds:.1f} s -> {args.output}")
    if args.timings is not None:
        from spacy_gliner.training.timed_train import record_timing

        record_timing(args.timings, "evaluate", seconds, limit=args.limit or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
