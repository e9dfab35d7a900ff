"""Documents/s of ``annotate`` on one machine: the local engine with 1 and 2 processes, and the Ray
engine with 1 and 2 workers, on the same input; and a capacity plan for a 100M-document corpus.

    HF_HUB_OFFLINE=1 python bench/annotate_throughput.py [--docs 400] [--batch-size 8]

Input: the first ``--docs`` CrossNER test sentences (five domains, in turn) as one JSONL file, cut
into two shards (the local engine's ``--n-process`` workers, like Ray's actors, load the pipeline
once per run). Pipeline: ``gliner_ner`` with three labels on the MiniLM
uni-encoder of tests/support.py (real encoder, seeded heads). Each configuration writes a fresh
output folder; ``seconds`` is the whole ``annotate`` call (pipeline loads and Ray actor start-up
included; the Ray instance itself is started before the clock, as a cluster would be), and
``load_seconds`` the one-process ``spacy.load`` time, so ``docs / (seconds - load_seconds)``
approximates the steady rate of a one-process run (Ray's start-up costs more). Every worker runs one
torch thread, so every configuration must write the same records (checked). Writes bench/results/annotate_throughput.json and .png.

The capacity plan is arithmetic on the measured best per-worker CPU rate: it is a projection, not
a measurement. No GPU was available, so it has no GPU figures.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench_paths import RESULTS  # noqa: E402  (sets up sys.path and the offline hub)
LABELS = ["person", "organisation", "location"]
DOMAINS = ["AI", "literature", "music", "politics", "science"]
CORPUS_DOCS = 100_000_000


def sentences(count: int):
    from support import crossner_sentences

    per_domain = [crossner_sentences(domain, count) for domain in DOMAINS]
    mixed = [text for group in zip(*per_domain) for text in group]
    if len(mixed) < count:
        raise SystemExit(f"only {len(mixed)} CrossNER test sentences available")
    return mixed[:count]


def build_pipeline(directory: Path) -> Path:
    import spacy
    from support import FAMILIES, build_reference_checkpoint

    checkpoint = build_reference_checkpoint(directory / "checkpoint", **FAMILIES["uni_sharp"])
    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoint), "labels": LABELS})
    nlp.to_disk(directory / "pipeline")
    return directory / "pipeline"


def timed_run(pipeline, corpus, output, batch_size, shard_size, **engine):
    from spacy_gliner.annotate import annotate

    start = time.perf_counter()
    summary = annotate(pipeline, corpus, output, batch_size=batch_size, shard_size=shard_size, threads=1,
                       show_progress=False, **engine)
    return time.perf_counter() - start, summary.records


def records(folder: Path):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl")) if not p.name.startswith("annotate-")}


def capacity_plan(rate_per_worker: float):
    worker_hours = CORPUS_DOCS / rate_per_worker / 3600
    return {
        "kind": "projection from the measured per-worker CPU rate (not measured at this scale)",
        "corpus_docs": CORPUS_DOCS,
        "rate_per_worker_docs_s": rate_per_worker,
        "worker_hours": worker_hours,
        "workers_for_24h": worker_hours / 24,
        "workers_for_7_days": worker_hours / (24 * 7),
        "gpu": "not measured: no GPU was available; run this script on a GPU node with --gpus-per-worker to add it",
    }


def plot(result, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [run["name"] for run in result["runs"]]
    figure, axis = plt.subplots(figsize=(6, 3.2))
    axis.bar(names, [run["docs_per_s"] for run in result["runs"]], color="#4c72b0", label="whole run")
    axis.scatter(names, [run["steady_docs_per_s"] for run in result["runs"]], color="#dd8452", zorder=3,
                 label="excluding one pipeline load")
    axis.set_ylabel("documents / s")
    axis.set_title(f"annotate, {result['docs']} CrossNER sentences, {result['cpus']} CPUs")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "annotate_throughput.json")
    args = parser.parse_args()

    import ray
    import spacy

    work = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    try:
        pipeline = build_pipeline(work)
        start = time.perf_counter()
        spacy.load(pipeline)
        load_seconds = time.perf_counter() - start
        corpus = work / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(sentences(args.docs))))
        shard_size = (args.docs + 1) // 2
        configurations = [("local, 1 process", dict(engine="local", n_process=1)),
                          ("local, --n-process 2", dict(engine="local", n_process=2)),
                          ("ray, 1 worker", dict(engine="ray", workers=1)),
                          ("ray, 2 workers", dict(engine="ray", workers=2))]
        runs, outputs = [], []
        for name, engine in configurations:
            if engine["engine"] == "ray" and not ray.is_initialized():
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            output = work / f"out-{len(runs)}"
            seconds, count = timed_run(pipeline, corpus, output, args.batch_size, shard_size, **engine)
            outputs.append(records(output))
            runs.append({"name": name, **engine, "docs": count, "seconds": seconds, "docs_per_s": count / seconds,
                         "steady_docs_per_s": count / max(seconds - load_seconds, 1e-9)})
            print(f"{name}: {count} docs in {seconds:.1f} s = {count / seconds:.2f} docs/s", flush=True)
        if ray.is_initialized():
            ray.shutdown()
        same = all(output == outputs[0] for output in outputs)
        per_worker = max(run["steady_docs_per_s"] / run.get("workers", run.get("n_process", 1)) for run in runs)
        result = {"docs": args.docs, "batch_size": args.batch_size, "shard_size": shard_size, "cpus": os.cpu_count(),
                  "load_seconds": load_seconds, "same_records_in_every_run": same, "runs": runs,
                  "capacity_plan_100M": capacity_plan(per_worker),
                  "note": "CPU only; measured on a shared 2-core machine, other jobs running: compare ratios"}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, args.out.with_suffix(".png"))
        print(json.dumps(result["capacity_plan_100M"], indent=2))
        if not same:
            raise SystemExit("the configurations wrote different records")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
