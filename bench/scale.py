"""Bi-encoder with very large label sets: per-document time, cache save/load, memory.

Label vectors: 2,000 real label names encoded by the label encoder of the ``bi_sharp`` checkpoint
(tests/support.py recipe), then tiled with small Gaussian noise up to 100k / 1M rows (encoding a
million labels on 2 CPU cores would take hours; timings do not depend on the vector values, but
the retrieval *recall* at these sizes is measured against exhaustive scoring of the same
vectors, on the first ``RECALL_DOCS`` documents; tests/inference/test_label_retrieval.py measures it on 20,000 real
labels). float16 cache, threshold 0.85, ``N_DOCS`` real CrossNER sentences (batch 8).

Target (issue #6): per-document time at 1M labels with top-k retrieval at most 3x the time at
1,024 labels; the ratio is written as ``ratio_1m_top_k_vs_1024``.

    HF_HUB_OFFLINE=1 python bench/scale.py     # writes bench/results/scale.json and scale.png
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tests"))
THRESHOLD, TOP_K, N_DOCS, RECALL_DOCS = 0.85, 1024, 32, 8


def main():
    import numpy as np
    import psutil
    from support import FAMILIES, build_reference_checkpoint, crossner_sentences, split_words
    from inference.test_label_retrieval import real_label_names
    from spacy_gliner.inference.entities import DecodeSettings, EntityExtractor
    from spacy_gliner.modeling.checkpoint import load_checkpoint
    from spacy_gliner.modeling.label_cache import LabelVectorCache

    proc = psutil.Process()
    ckpt = Path(os.environ.get("SPACY_GLINER_BENCH_CKPTS", "/tmp/spacy_gliner_bench_checkpoints")) / "bi_sharp"
    if not (ckpt / "gliner_config.json").exists():
        build_reference_checkpoint(ckpt, **FAMILIES["bi_sharp"])
    ex = EntityExtractor(load_checkpoint(ckpt), label_cache_dtype="float16")
    real = real_label_names(2000)
    t = time.perf_counter()
    ex.prepare_label_vectors(real, progress=False)
    encode_s = time.perf_counter() - t
    base = ex.label_cache.matrix().astype(np.float32)
    rng = np.random.default_rng(0)
    big = LabelVectorCache("float16")
    big.add(real, base)
    n_max = 1_000_000
    t = time.perf_counter()
    for begin in range(len(real), n_max, 100_000):
        n = min(100_000, n_max - begin)
        idx = rng.integers(0, len(real), n)
        big.add([f"{real[i]} #{begin + j}" for j, i in enumerate(idx)], base[idx] + rng.normal(0, 0.05, (n, base.shape[1])) * np.abs(base[idx]).mean())
    build_s = time.perf_counter() - t
    ex.label_cache = big
    labels_all = list(big._rows)
    docs = [split_words(s) for d in ("AI", "literature", "music", "politics") for s in crossner_sentences(d, N_DOCS // 4)]
    settings = DecodeSettings(THRESHOLD)
    runs = []

    def timed(n, top_k):
        labels = labels_all[:n]
        ex.label_top_k = top_k
        ex.extract(docs[:1], labels, settings)  # warm-up (row memo, first batch)
        rss0 = proc.memory_info().rss
        t = time.perf_counter()
        out = ex.extract(docs, labels, settings)
        s = time.perf_counter() - t
        runs.append(dict(n_labels=n, top_k=top_k, seconds_per_doc=s / len(docs), entities=sum(map(len, out)),
                         rss_mb=proc.memory_info().rss / 2**20, rss_growth_mb=(proc.memory_info().rss - rss0) / 2**20))
        print(runs[-1], flush=True)

    timed(1024, None)
    timed(100_000, None)
    timed(100_000, TOP_K)
    timed(1_000_000, TOP_K)
    per_doc = {(r["n_labels"], r["top_k"]): r["seconds_per_doc"] for r in runs}
    ratio = per_doc[(1_000_000, TOP_K)] / per_doc[(1024, None)]
    print(f"1M labels, top-{TOP_K}: {ratio:.2f}x the per-document time at 1,024 labels", flush=True)

    def candidates(n, top_k):
        """Every (doc, span, label) above the threshold, with its score (multi-label decoding)."""
        from inference.test_label_retrieval import candidates as scored

        return scored(ex, docs[:RECALL_DOCS], labels_all[:n], top_k)

    recall = {}
    for n in (100_000, 1_000_000):
        t = time.perf_counter()
        exhaustive = candidates(n, None)
        exhaustive_s = time.perf_counter() - t
        retrieved = candidates(n, TOP_K)
        changed = sum(1 for key, score in retrieved.items() if key not in exhaustive or abs(exhaustive[key] - score) > 1e-6)
        # what a user sees: flat decoding (each span's best label, no overlaps)
        decoded = {}
        for top_k in (None, TOP_K):
            ex.label_top_k = top_k
            out = ex.extract(docs[:RECALL_DOCS], labels_all[:n], settings)
            decoded[top_k] = {(d, s.start, s.end, s.label) for d, spans in enumerate(out) for s in spans}
        same = len(decoded[None] & decoded[TOP_K])
        # the synthetic rows are noisy copies "<real label> #<n>": which real label was decoded
        real_of = {k: {(d, st, en, labels_all[c].split(" #")[0]) for d, st, en, c in v} for k, v in decoded.items()}
        recall[str(n)] = dict(exhaustive_candidates=len(exhaustive), retrieved_candidates=len(retrieved),
                              recall=len(retrieved) / max(1, len(exhaustive)), invented_or_changed=changed,
                              exhaustive_seconds_per_doc=exhaustive_s / RECALL_DOCS,
                              decoded_exhaustive=len(decoded[None]), decoded_top_k=len(decoded[TOP_K]),
                              decoded_recall=same / max(1, len(decoded[None])),
                              decoded_precision=same / max(1, len(decoded[TOP_K])),
                              decoded_real_label_recall=len(real_of[None] & real_of[TOP_K]) / max(1, len(real_of[None])))
        print(n, recall[str(n)], flush=True)
    ex.label_top_k = None
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        big.to_disk(tmp)
        save_s = time.perf_counter() - t
        size_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
        rss0 = proc.memory_info().rss
        t = time.perf_counter()
        loaded = LabelVectorCache().from_disk(tmp)
        load_s = time.perf_counter() - t
        load_rss = (proc.memory_info().rss - rss0) / 2**20
        t = time.perf_counter()
        loaded.add(["one more label"], base[:1])
        add_s = time.perf_counter() - t
        t = time.perf_counter()
        loaded.to_disk(tmp)
        resave_s = time.perf_counter() - t
    # a whole pipeline with 1M labels: added with add_labels (vectors already in the cache), saved, loaded
    import spacy

    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gliner_ner", config={"model": str(ckpt), "label_cache_dtype": "float16", "label_top_k": TOP_K,
                                              "threshold": THRESHOLD})
    pipe.extractor.label_cache = big
    t = time.perf_counter()
    pipe.add_labels(labels_all, progress=False)
    add_labels_s = time.perf_counter() - t
    texts = [" ".join(words) for words in docs]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        nlp.to_disk(tmp)
        pipeline_save_s = time.perf_counter() - t
        t = time.perf_counter()
        loaded_nlp = spacy.load(tmp)
        pipeline_load_s = time.perf_counter() - t
        t = time.perf_counter()
        first = list(loaded_nlp.pipe(texts[:8]))
        first_batch_s = time.perf_counter() - t
        t = time.perf_counter()
        rest = list(loaded_nlp.pipe(texts[8:]))
        rest_per_doc_s = (time.perf_counter() - t) / max(1, len(texts) - 8)
    pipeline_1m = dict(add_labels_s=add_labels_s, save_s=pipeline_save_s, spacy_load_s=pipeline_load_s,
                       first_8_docs_s=first_batch_s, then_seconds_per_doc=rest_per_doc_s,
                       entities=sum(len(d.ents) for d in first + rest))
    print("pipeline 1M", pipeline_1m, flush=True)
    result = dict(threshold=THRESHOLD, pipeline_1m=pipeline_1m, top_k=TOP_K, n_docs=len(docs), cache_dtype="float16", real_labels_encoded=len(real),
                  real_label_encode_s=encode_s, synthetic_fill_s=build_s, runs=runs,
                  ratio_1m_top_k_vs_1024=ratio, retrieval_recall=recall, recall_docs=RECALL_DOCS,
                  cache_1m=dict(save_s=save_s, size_mb=size_mb, load_s=load_s, load_rss_growth_mb=load_rss,
                                add_one_to_mapped_s=add_s, resave_after_add_s=resave_s))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(result, indent=2))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for top_k, style in ((None, "o-"), (TOP_K, "s--")):
        pts = [(r["n_labels"], r["seconds_per_doc"]) for r in runs if r["top_k"] == top_k]
        ax.plot(*zip(*pts), style, label="exhaustive" if top_k is None else f"top-{top_k} retrieval")
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("labels"); ax.set_ylabel("s / document"); ax.grid(alpha=0.3); ax.legend()
    ax.set_title(f"bi-encoder, float16 cache, CPU; 1M top-{TOP_K} = {ratio:.1f}x the 1,024-label time")
    fig.tight_layout(); fig.savefig(RESULTS / "scale.png", dpi=110)
    print(json.dumps(result["cache_1m"]))


if __name__ == "__main__":
    main()
