"""How much of our per-document time is the text encoder itself, and what that bounds.

Against ``gliner-spacy`` both sides run the same float32 encoder over the same tokens, so even if
everything around the encoder cost nothing, ours could be at most
``gliner-spacy ms/doc / our encoder ms/doc`` times faster. This times ``text_encoder.forward``
inside our pipeline (the throughput benchmark's checkpoints, sentences and batch size, 1 label)
and divides the ``gliner-spacy`` times of ``bench/results/throughput.json`` by it.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/encoder_share.py   # -> bench/results/encoder_share.json
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import throughput as tp  # noqa: E402

N_TEXTS, N_LABELS = 256, 1


def gliner_spacy_ms_per_doc(encoder: str):
    rows = json.loads((HERE / "results" / "throughput.json").read_text())["runs"]
    for row in rows:
        if row.get("impl") == "gliner-spacy" and row.get("encoder") == encoder and row.get("n_labels") == N_LABELS:
            return 1000.0 / row["docs_per_s"]
    return None


def main():
    checkpoints = tp.build_checkpoints()
    texts = tp.benchmark_sentences(N_TEXTS)
    out = {}
    for encoder, family in tp.ENCODERS.items():
        runner = tp.Ours(checkpoints[family], tp.label_pool(N_LABELS))
        runner.build_labels()
        runner.run(runner.docs(texts[:16]))  # warm-up
        module = runner.pipe.extractor.model.text_encoder
        forward, spent = module.forward, [0.0]

        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = forward(*args, **kwargs)
            spent[0] += time.perf_counter() - start
            return result

        module.forward = timed
        docs = runner.docs(texts)
        start = time.perf_counter()
        runner.run(docs)
        total = time.perf_counter() - start
        module.forward = forward
        ours_ms, encoder_ms = 1000 * total / len(docs), 1000 * spent[0] / len(docs)
        theirs = gliner_spacy_ms_per_doc(encoder)
        out[encoder] = {
            "ours_ms_per_doc": ours_ms, "text_encoder_ms_per_doc": encoder_ms, "encoder_share": encoder_ms / ours_ms,
            "gliner_spacy_ms_per_doc": theirs,
            "best_possible_ratio_vs_gliner_spacy": theirs / encoder_ms if theirs else None,
        }
        print(encoder, {k: round(v, 3) if isinstance(v, float) else v for k, v in out[encoder].items()}, flush=True)
    (HERE / "results" / "encoder_share.json").write_text(json.dumps({"n_labels": N_LABELS, "n_texts": N_TEXTS, **out}, indent=2))


if __name__ == "__main__":
    main()
