"""Relations of gliner_relex vs the reference on dense windows, and our peak memory there.

The relex checkpoint is the one of ``tests/components/test_relex.py`` (reference package, real
all-MiniLM-L6-v2 encoder, ``relations_layer="mlp"``, random heads seeded 7). Two cases:

* ``conll04_40``: the first 40 CoNLL04 test sentences, flat entities, thresholds placed like the
  test does (5% of spans are relation arguments, 95% of their pairs candidates; one sentence then
  has over 10,000 candidate pairs). At threshold 0.5 random heads make every span an argument
  (~650 in a 60-word sentence, ~3.5 million pairs over the 40): hours of pair projection for the
  three runs on one core, so not run here.
* ``dense``: three CoNLL04 sentences joined (~80 words, one window), nested entities, thresholds
  placed like the test does (about 260 relation arguments, half their pairs candidates).

Caps are left at their defaults (none) for ``ours``.

Each run is its own process, so its peak RSS (``ru_maxrss``) is its own. Runs are: ``ours`` (this
tree), ``ours_capped`` (``max_pairs: 10000, max_entities: 500``, the former defaults) and
``reference`` (``GLiNER.inference``, batch size 1: batches of 8 pad every text to the batch's
largest pair count, which is what pushed it past 22 GB). A run over ``--limit-gb`` of address
space fails instead of taking the machine down; it is reported as such.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/relex_dense.py   # -> bench/results/relex_dense.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

ENTITY_LABELS = ["Peop", "Org", "Loc", "Other"]
CONLL04 = ROOT.parent / "shared" / "data" / "conll04" / "conll04_test.json"


def build_checkpoint(directory: Path) -> Path:
    if (directory / "gliner_config.json").exists():
        return directory
    import torch
    from gliner import GLiNER
    from support import minilm_dir

    torch.manual_seed(7)
    model = GLiNER.from_config(dict(model_name=minilm_dir(), max_width=12, span_mode="markerV0", hidden_size=256,
                                    relations_layer="mlp"))
    model.save_pretrained(str(directory))
    return directory


def cases(checkpoint: Path):
    from support import relex_thresholds, split_words

    data = json.loads(CONLL04.read_text())
    relations = sorted({r["type"] for d in data for r in d["relations"]})
    first40 = [" ".join(d["tokens"]) for d in data[:40]]
    dense = " ".join(w for d in [d for d in data if 24 <= len(d["tokens"]) <= 30][:3] for w in d["tokens"])
    import spacy

    import spacy_gliner.components.relex  # noqa: F401

    nlp = spacy.blank("en")
    component = nlp.add_pipe("gliner_relex", config={"model": str(checkpoint), "labels": ENTITY_LABELS,
                                                     "relations": relations})
    n = len(split_words(dense))
    spans = sum(min(12, n - start) for start in range(n))
    t_ent, t_adj, t_rel, pairs = relex_thresholds(component.extractor, [split_words(dense)], ENTITY_LABELS, relations,
                                                  260 / spans, 0.5, 0.2)
    c_ent, c_adj, c_rel, c_pairs = relex_thresholds(component.extractor, [split_words(t) for t in first40],
                                                    ENTITY_LABELS, relations, 0.05, 0.95, 0.2)
    return {
        "conll04_40": dict(texts=first40, relations=relations, threshold=c_ent, adjacency_threshold=c_adj,
                           relation_threshold=c_rel, nested=False, candidate_pairs=c_pairs),
        "dense": dict(texts=[dense], relations=relations, threshold=t_ent, adjacency_threshold=t_adj,
                      relation_threshold=t_rel, nested=True, candidate_pairs=pairs),
    }


def run_one(mode: str, checkpoint: str, case: dict) -> dict:
    """One run in this process: relations as [head start, head end, tail start, tail end, label, score]
    (word offsets, end exclusive) per text."""
    from support import WORD_SPLIT, split_words

    texts, relations = case["texts"], case["relations"]
    start = time.perf_counter()
    out = []
    if mode == "reference":
        from gliner import GLiNER

        model = GLiNER.from_pretrained(checkpoint, load_tokenizer=True)
        model.eval()
        t = case["threshold"]
        entities, found = model.inference(
            texts, ENTITY_LABELS, relations=relations, threshold=t,
            adjacency_threshold=t if case["adjacency_threshold"] is None else case["adjacency_threshold"],
            relation_threshold=t if case["relation_threshold"] is None else case["relation_threshold"],
            flat_ner=not case["nested"], batch_size=1,
        )
        for text, ents, rels in zip(texts, entities, found):
            starts = [m.start() for m in WORD_SPLIT.finditer(text)]
            word_at = {c: i for i, c in enumerate(starts)}
            spans = [(word_at[e["start"]], len(split_words(text[: e["end"]]))) for e in ents]
            out.append([[*spans[r["head"]["entity_idx"]], *spans[r["tail"]["entity_idx"]], r["relation"], r["score"]]
                        for r in rels])
    else:
        import warnings

        import spacy
        from spacy.tokens import Doc

        import spacy_gliner.components.relex  # noqa: F401

        config = {"model": checkpoint, "labels": ENTITY_LABELS, "relations": relations, "threshold": case["threshold"],
                  "adjacency_threshold": case["adjacency_threshold"], "relation_threshold": case["relation_threshold"],
                  "nested": case["nested"]}
        if mode == "ours_capped":
            config.update(max_pairs=10_000, max_entities=500)
        nlp = spacy.blank("en")
        nlp.add_pipe("gliner_relex", config=config)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            docs = list(nlp.pipe(Doc(nlp.vocab, words=split_words(text)) for text in texts))
        for doc in docs:
            out.append([[r.head.start, r.head.end, r.tail.start, r.tail.end, r.label, r.score] for r in doc._.relations])
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"relations": out, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb)}
    if mode != "reference":
        result["warnings"] = sorted({str(w.message)[:120] for w in caught})
    return result


def compare(ours, reference) -> dict:
    worst, same = 0.0, True
    for mine, theirs in zip(ours, reference):
        a = {tuple(r[:5]): r[5] for r in mine}
        b = {tuple(r[:5]): r[5] for r in theirs}
        same &= set(a) == set(b)
        worst = max([worst] + [abs(a[k] - b[k]) for k in set(a) & set(b)])
    return {"identical_relations": same, "max_score_diff": worst}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt-dir", default="/tmp/spacy_gliner_bench_checkpoints/relex_mlp_seed7")
    parser.add_argument("--limit-gb", type=float, default=14.0)
    parser.add_argument("--only", nargs="*", default=None, help="case names")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CHECKPOINT", "CASE_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, checkpoint, case_file = args.child
        case = json.loads(Path(case_file).read_text())
        print(json.dumps(run_one(mode, checkpoint, case)))
        return
    checkpoint = build_checkpoint(Path(args.ckpt_dir))
    results = {}
    for name, case in cases(checkpoint).items():
        if args.only and name not in args.only:
            continue
        case_file = Path(args.ckpt_dir).parent / f"relex_dense_{name}.json"
        case_file.write_text(json.dumps(case))
        row = {k: v for k, v in case.items() if k not in ("texts", "relations")}
        runs = {}
        for mode in ("ours", "ours_capped", "reference"):
            limit = int(args.limit_gb * 2**30)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(checkpoint), str(case_file)],
                capture_output=True, text=True,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
            )
            if proc.returncode != 0:
                runs[mode] = {"failed": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
            else:
                runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            summary = {k: v for k, v in runs[mode].items() if k != "relations"}
            if "relations" in runs[mode]:
                summary["relations"] = sum(len(r) for r in runs[mode]["relations"])
            row[mode] = summary
            print(name, mode, summary, flush=True)
        for mode in ("ours", "ours_capped"):
            if "relations" in runs[mode] and "relations" in runs["reference"]:
                row[mode].update(compare(runs[mode]["relations"], runs["reference"]["relations"]))
        results[name] = row
    out = HERE / "results" / "relex_dense.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
