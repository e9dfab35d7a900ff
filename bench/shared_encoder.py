"""One encoder pass for the whole pipeline: [transformer, tagger, gliner_ner] with gliner_ner
listening to the shared transformer, against the same pipeline where gliner_ner runs its own
text tower (two encoders). Documents/s and peak memory.

    HF_HUB_OFFLINE=1 python bench/shared_encoder.py [--docs 400] [--batch-size 32] [--repeats 2]

Both pipelines hold the same weights: the bi-encoder replica of tests/support.py (``bi_sharp``:
the real all-MiniLM-L6-v2 as text and label tower, seeded heads; the four CoNLL-2003 types as
labels), the `transformer` component holding its text tower (spacy-transformers), a tagger
listening to the transformer (initialised on CoNLL-2003 tags, untrained: its speed is what counts).
Input: the first ``--docs`` CoNLL-2003 test sentences as raw text (spaCy's tokenizer).

Each configuration runs in a fresh process (so its memory is its own), one torch thread,
``--repeats`` times in alternation, timing ``nlp.pipe`` after a warm-up batch: docs per second of
wall time, and docs per CPU second of the thread running it (the figure to compare on a machine
other jobs share: wall time there measures the neighbours too). The best run of each counts for
speed, the median of all runs for memory.
Memory: the resident set once loaded and warmed up, and its peak during ``nlp.pipe`` (sampled
every 10 ms); the whole process's peak (ru_maxrss) is dominated by loading (a checkpoint is read
whole before a listening gliner_ner drops its text tower), so it is recorded but not compared. The two pipelines' entities are compared document by
document (they differ only where spaCy's tokens split a wordpiece, e.g. "n't"). Writes
bench/results/shared_encoder.json and .png.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_paths import RESULTS  # noqa: E402  (sets up sys.path and the offline hub)
LABELS = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous"}
CONFIGS = {"shared": "one transformer, gliner_ner listening", "two encoders": "transformer + gliner_ner's own text tower"}


def prepare(work: Path) -> dict:
    """The checkpoint and its text tower as a Hugging Face directory (what the transformer loads)."""
    from support import FAMILIES, build_reference_checkpoint

    from spacy_gliner.modeling.checkpoint import load_checkpoint

    checkpoint = build_reference_checkpoint(work / "checkpoint", **FAMILIES["bi_sharp"])
    loaded = load_checkpoint(checkpoint)
    loaded.model.text_encoder.transformer.save_pretrained(str(work / "text_tower"))
    loaded.tokenizer.save_pretrained(str(work / "text_tower"))
    return {"checkpoint": str(checkpoint), "tower": str(work / "text_tower")}


def build_pipeline(paths: dict, shared: bool):
    import spacy
    from spacy.tokens import Doc
    from spacy.training import Example
    from support import conll2003_docs

    from spacy_gliner.components.listener import listener_config

    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3", "name": paths["tower"], "tokenizer_config": {"use_fast": True},
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}}})
    nlp.add_pipe("tagger", config={"model": {
        "@architectures": "spacy.Tagger.v2", "nO": None, "normalize": False,
        "tok2vec": listener_config(pooling="mean")}})
    ner = {"model": paths["checkpoint"], "labels": LABELS}
    if shared:
        ner["text_encoder"] = listener_config()
    nlp.add_pipe("gliner_ner", config=ner)
    gold = [Doc(nlp.vocab).from_bytes(doc.to_bytes()) for doc in conll2003_docs("train", 64)]  # its strings into nlp.vocab
    gold = [Example(nlp.make_doc(doc.text), doc) for doc in gold]
    nlp.initialize(lambda: gold)
    return nlp


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """The largest resident set seen while the block runs (sampled every 10 ms in a thread)."""

    def __enter__(self):
        import threading

        self.peak, self._stop = rss_mb(), threading.Event()

        def sample():
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def run_one(config: str, paths: dict, texts, batch_size: int) -> dict:
    """One configuration, in this (fresh) process."""
    import gc
    import resource

    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    nlp = build_pipeline(paths, config == "shared")
    load_s = time.perf_counter() - start
    list(nlp.pipe(texts[:batch_size], batch_size=batch_size))  # warm-up
    gc.collect()
    loaded = rss_mb()
    with PeakRss() as peak:
        start, cpu_start = time.perf_counter(), time.thread_time()
        docs = list(nlp.pipe(texts, batch_size=batch_size))
        seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - cpu_start
    ner_model = nlp.get_pipe("gliner_ner").extractor.model
    return {
        "config": config,
        "docs": len(texts),
        "seconds": seconds,
        "docs_per_s": len(texts) / seconds,
        "cpu_seconds": cpu_seconds,
        "docs_per_cpu_s": len(texts) / cpu_seconds,
        "load_seconds": load_s,
        "rss_after_load_mb": loaded,
        "peak_rss_during_pipe_mb": peak.peak,
        "peak_rss_whole_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters_millions": (sum(p.numel() for p in ner_model.parameters())
                                + sum(p.numel() for p in nlp.get_pipe("transformer").model.transformer.parameters())) / 1e6,
        "entities": [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs],
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(CONFIGS)
    best = {c: result["best"][c] for c in configs}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].bar(configs, [best[c]["docs_per_cpu_s"] for c in configs], color=["tab:green", "tab:gray"])
    axes[0].set_ylabel("documents / CPU second (1 thread)")
    memory = result["memory_medians_mb"]
    axes[1].bar(configs, [memory[c]["peak_rss_during_pipe_mb"] for c in configs], color=["tab:green", "tab:gray"])
    axes[1].set_ylabel("peak resident memory in nlp.pipe (MB, median)")
    for ax in axes:
        for bar in ax.patches:
            ax.annotate(f"{bar.get_height():.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    fig.suptitle(f"[transformer, tagger, gliner_ner] on {result['docs']} CoNLL-2003 sentences (MiniLM towers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def memory_medians(runs) -> dict:
    """Median resident memory per configuration over every run (memory does not depend on which
    run was fastest), and what sharing saves."""
    import statistics

    medians = {
        c: {key: statistics.median(r[key] for r in runs if r["config"] == c) for key in ("rss_after_load_mb", "peak_rss_during_pipe_mb")}
        for c in CONFIGS
    }
    medians["saved_by_sharing"] = {key: medians["two encoders"][key] - medians["shared"][key] for key in medians["shared"]}
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one configuration
    args = parser.parse_args()
    from support import conll2003_docs

    texts = [doc.text for doc in conll2003_docs("test", args.docs)]
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(run_one(job["config"], job["paths"], texts, args.batch_size)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        paths = prepare(Path(tmp))
        runs = []
        for repeat in range(args.repeats):
            for config in CONFIGS:
                job = json.dumps({"config": config, "paths": paths})
                out = subprocess.run(
                    [sys.executable, __file__, "--docs", str(args.docs), "--batch-size", str(args.batch_size), "--worker", job],
                    capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                )
                if out.returncode:
                    raise SystemExit(f"{config} failed:\n{out.stderr[-3000:]}")
                run = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{config:13s} repeat {repeat}: {run['docs_per_cpu_s']:.1f} docs/CPU s ({run['docs_per_s']:.1f}/s wall), "
                      f"{run['rss_after_load_mb']:.0f} MB loaded, "
                      f"peak {run['peak_rss_during_pipe_mb']:.0f} MB in nlp.pipe", flush=True)
                runs.append(run)
    best = {c: max((r for r in runs if r["config"] == c), key=lambda r: r["docs_per_cpu_s"]) for c in CONFIGS}
    shared, two = best["shared"], best["two encoders"]
    same = sum(a == b for a, b in zip(shared["entities"], two["entities"]))
    result = {
        "what": CONFIGS,
        "docs": args.docs,
        "batch_size": args.batch_size,
        "threads": 1,
        "command": f"HF_HUB_OFFLINE=1 python bench/shared_encoder.py --docs {args.docs} --batch-size {args.batch_size} --repeats {args.repeats}",
        "runs": [{k: v for k, v in r.items() if k != "entities"} for r in runs],
        "best": {c: {k: v for k, v in r.items() if k != "entities"} for c, r in best.items()},
        "speedup_shared_over_two_cpu": shared["docs_per_cpu_s"] / two["docs_per_cpu_s"],
        "speedup_shared_over_two_wall": shared["docs_per_s"] / two["docs_per_s"],
        "memory_medians_mb": memory_medians(runs),
        "docs_with_identical_entities": same,
        "entities": {c: sum(len(e) for e in best[c]["entities"]) for c in CONFIGS},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shared_encoder.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "shared_encoder.png")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "best")}, indent=2))


if __name__ == "__main__":
    main()
