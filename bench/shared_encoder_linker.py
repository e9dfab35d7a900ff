"""One text-tower pass for NER and linking: [transformer, gliner_ner, gliner_linker] with both
gliner components listening to the shared transformer (``to-listener --labels ... --kb ...``),
against [gliner_ner, gliner_linker] where each runs its own copy of the text tower. Documents per
CPU second and whether both give the same entities and links.

    HF_HUB_OFFLINE=1 python bench/shared_encoder_linker.py [--documents 40] [--repeats 3]

Both pipelines hold the same weights: the bi-encoder replica of tests/support.py (``bi_sharp``:
the real all-MiniLM-L6-v2 as text and label tower, seeded heads; the four CoNLL-2003 types as
labels), and the same KB: every entity linked in the first ``--documents`` AIDA CoNLL-YAGO
training documents. Input: those documents' sentences as raw text (spaCy's tokenizer). One torch
thread, both pipelines in this process, timed in alternation (``nlp.pipe`` after a warm-up batch,
CPU time of the thread running it: the figure to compare on a machine other jobs share); the
best run of each counts. Writes bench/results/shared_encoder_linker.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_paths import RESULTS  # noqa: E402  (sets up sys.path and the offline hub)
LABELS = ["person", "organization", "location", "miscellaneous"]


def aida_texts_and_kb(documents: int, kb: Path):
    import spacy

    from spacy_gliner.kb.entities import write_entities_jsonl
    from spacy_gliner.kb.linking_benchmarks import entities_from_documents, load_benchmark
    from spacy_gliner.training.convert_linking import linked_docs
    from support import DATA

    read = load_benchmark("aida-yago2-train", DATA)[:documents]
    write_entities_jsonl(entities_from_documents(read, read), kb)
    return [doc.text for doc in linked_docs(read, spacy.blank("en"), by="line") if doc.text.strip()]


def pipelines(checkpoint: Path, kb: Path):
    import spacy

    from spacy_gliner.components.listener import build_listener_pipeline

    linker = {"threshold": 0.0}
    shared = build_listener_pipeline(str(checkpoint), LABELS, kb=str(kb), linker_settings=linker)
    alone = spacy.blank("en")
    alone.add_pipe("gliner_ner", config={"model": str(checkpoint), "labels": LABELS})
    alone.add_pipe("gliner_linker", config={"model": str(checkpoint), "kb": str(kb), **linker})
    alone.initialize()
    return {"shared": shared, "own towers": alone}


def timed(nlp, texts, batch_size: int):
    start, cpu_start = time.perf_counter(), time.thread_time()
    docs = list(nlp.pipe(texts, batch_size=batch_size))
    return docs, time.perf_counter() - start, time.thread_time() - cpu_start


def links(doc):
    return [(e.start_char, e.end_char, e.label_, e.kb_id_) for e in doc.ents]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    from support import FAMILIES, build_reference_checkpoint

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_reference_checkpoint(Path(tmp) / "checkpoint", **FAMILIES["bi_sharp"])
        texts = aida_texts_and_kb(args.documents, Path(tmp) / "kb.jsonl")
        nlps = pipelines(checkpoint, Path(tmp) / "kb.jsonl")
        for nlp in nlps.values():
            list(nlp.pipe(texts[: args.batch_size], batch_size=args.batch_size))  # warm-up
        runs, outputs = [], {}
        for repeat in range(args.repeats):
            for name, nlp in nlps.items():
                docs, seconds, cpu_seconds = timed(nlp, texts, args.batch_size)
                outputs[name] = [links(doc) for doc in docs]
                runs.append({"config": name, "seconds": seconds, "cpu_seconds": cpu_seconds,
                             "docs_per_s": len(texts) / seconds, "docs_per_cpu_s": len(texts) / cpu_seconds})
                print(f"{name:10s} repeat {repeat}: {runs[-1]['docs_per_cpu_s']:.1f} docs/CPU s "
                      f"({runs[-1]['docs_per_s']:.1f}/s wall)", flush=True)
    best = {name: max((r for r in runs if r["config"] == name), key=lambda r: r["docs_per_cpu_s"]) for name in nlps}
    same = sum(a == b for a, b in zip(outputs["shared"], outputs["own towers"]))
    result = {
        "what": {"shared": "[transformer, gliner_ner, gliner_linker], both listening",
                 "own towers": "[gliner_ner, gliner_linker], each with its own text tower"},
        "documents": args.documents,
        "sentences": len(texts),
        "batch_size": args.batch_size,
        "threads": 1,
        "command": f"HF_HUB_OFFLINE=1 python bench/shared_encoder_linker.py --documents {args.documents} "
                   f"--repeats {args.repeats}",
        "runs": runs,
        "best": best,
        "speedup_shared_cpu": best["shared"]["docs_per_cpu_s"] / best["own towers"]["docs_per_cpu_s"],
        "sentences_with_identical_entities_and_links": same,
        "entities": {name: sum(len(d) for d in found) for name, found in outputs.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shared_encoder_linker.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "best")}, indent=2))


if __name__ == "__main__":
    main()
