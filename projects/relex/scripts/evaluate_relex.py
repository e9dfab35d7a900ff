"""Entity and relation scores of a trained gliner_relex pipeline: CoNLL04 test (the labels it was
trained on) and zero-shot CrossRE / SciERC test (each set's own label names as prompts).

    python scripts/evaluate_relex.py --model training/full/model-best --corpus-dir corpus \
        --thresholds 0.5 0.3 [--limit N] --tag full --output metrics/relex.json [--timings ...]

Entities: exact (start, end, type) micro P/R/F1 against gold ``doc.spans["sc"]``
(:func:`spacy_gliner.evaluation.evaluate_ner`). Relations
(:func:`spacy_gliner.evaluation.evaluate_relations`): ``strict`` = head span + tail span +
relation label; ``typed`` = strict plus both entity labels (the "strict" of SpERT); per set, at
each threshold (entity, adjacency and relation thresholds all set to it). ``--limit`` scores the
first N sentences of each set.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from spacy.tokens import Doc, DocBin

from spacy_gliner.evaluation import evaluate_ner, evaluate_relations, make_examples
from spacy_gliner.doc_relations import get_relation_tuples


def gold_label_sets(docs):
    entities = sorted({s.label_ for d in docs for s in (d.spans["sc"] if "sc" in d.spans else d.ents)})
    relations = sorted({r[4] for d in docs for r in get_relation_tuples(d)})
    return entities, relations


def score_set(nlp, gold, name: str, threshold: float, entity_labels, relation_labels, component="gliner_relex"):
    pipe = nlp.get_pipe(component)
    pipe.initialize(labels=entity_labels, relations=relation_labels)
    pipe.cfg.update(threshold=threshold, adjacency_threshold=threshold, relation_threshold=threshold)
    t0 = time.perf_counter()
    blank = [Doc(nlp.vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g]) for g in gold]
    pred = list(nlp.pipe(blank, batch_size=16))
    seconds = time.perf_counter() - t0
    examples = make_examples(pred, gold)
    ents = evaluate_ner(examples, gold_key="sc", labels=entity_labels)
    rels = evaluate_relations(examples, modes=("strict", "typed"))
    print(f"  {name:20s} t={threshold:<4} entities P/R/F1 {100 * (ents['ents_p'] or 0):5.1f} {100 * (ents['ents_r'] or 0):5.1f} "
          f"{100 * (ents['ents_f'] or 0):5.1f} | relations strict {100 * rels['strict']['p']:5.1f} {100 * rels['strict']['r']:5.1f} "
          f"{100 * rels['strict']['f']:5.1f} ({len(gold)} sents, {rels['n_gold']} gold / {rels['n_pred']} predicted relations, {seconds:.1f} s)",
          flush=True)
    return {"entities": ents, "relations": rels, "seconds": round(seconds, 2), "n_docs": len(gold),
            "entity_labels": list(entity_labels), "relation_labels": list(relation_labels)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--corpus-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument("--limit", type=int, default=0, help="first N sentences per set (0 = all)")
    parser.add_argument("--tag", default="full")
    parser.add_argument("--timings", type=Path, default=None)
    args = parser.parse_args(argv)

    import spacy

    t0 = time.perf_counter()
    nlp = spacy.load(args.model)
    trained_entities = list(nlp.get_pipe("gliner_relex").labels)
    trained_relations = list(nlp.get_pipe("gliner_relex").relation_labels)
    sets = [("conll04", args.corpus_dir / "conll04_test.spacy", "supervised")]
    sets += [(p.stem, p, "zero-shot") for p in sorted((args.corpus_dir / "zero_shot").glob("*.spacy"))]
    results = {}
    for name, path, kind in sets:
        gold = list(DocBin().from_disk(path).get_docs(nlp.vocab))
        if args.limit:
            gold = gold[: args.limit]
        entity_labels, relation_labels = gold_label_sets(gold)
        if kind == "supervised":
            entity_labels, relation_labels = trained_entities, trained_relations
        results[name] = {"kind": kind, "by_threshold": {}}
        for t in args.thresholds:
            results[name]["by_threshold"][str(t)] = score_set(nlp, gold, name, t, entity_labels, relation_labels)
    seconds = time.perf_counter() - t0
    out = {"tag": args.tag, "model": str(args.model), "limit": args.limit or None, "thresholds": args.thresholds,
           "trained_entity_labels": trained_entities, "trained_relation_labels": trained_relations,
           "results": results, "seconds": round(seconds, 1)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"evaluate: {seconds:.1f} s -> {args.output}")
    if args.timings is not None:
        from spacy_gliner.training.timed_train import record_timing

        record_timing(args.timings, "evaluate", seconds, limit=args.limit or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
