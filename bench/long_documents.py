"""Long documents: ours (windowed over the whole document) vs the reference (truncates to max_len).

Documents of 1k and 10k words (100k with ``--full``) are made by concatenating real CrossNER test
sentences. For each we record wall time and entities found by both sides, how many words the
reference never sees (everything past its ``max_len`` words) and how many of our entities lie
beyond that limit. Uni-encoder checkpoint, 4 real CrossNER labels, threshold 0.5.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from throughput import (
    DEFAULT_CKPT_DIR, DOMAINS, ENCODERS, RESULTS, THRESHOLD, BATCH_SIZE, build_checkpoints, crossner_rows,
    split_words, Ours, Reference,
)

LABELS = ["person", "organization", "location", "country"]


def long_text(n_words: int) -> str:
    sentences = [row["sentence"] for d in DOMAINS for row in crossner_rows(d)]
    out, count, i = [], 0, 0
    while count < n_words:
        words = split_words(sentences[i % len(sentences)])
        words = words[: n_words - count]
        out.append(" ".join(words))
        count += len(words)
        i += 1
    return " ".join(out)


def run(sizes, ckpt_dir=DEFAULT_CKPT_DIR, progress=True):
    from tqdm.auto import tqdm

    ckpt = build_checkpoints(ckpt_dir)[ENCODERS["uni"]]
    ours, ref = Ours(ckpt, LABELS), Reference(ckpt, LABELS)
    max_len = ref.model.config.max_len
    ours.run(ours.docs([long_text(200)]))  # warm-up
    ref.run([long_text(200)])
    rows = []
    for n in tqdm(sizes, desc="long documents", disable=not progress):
        text = long_text(n)
        n_words = len(split_words(text))
        doc = ours.docs([text])[0]
        t = time.perf_counter()
        [doc] = list(ours.nlp.pipe([doc]))
        ours_s = time.perf_counter() - t
        spans = list(doc.spans["sc"])
        t = time.perf_counter()
        ref_out = ref.model.inference([text], LABELS, flat_ner=True, threshold=THRESHOLD, batch_size=BATCH_SIZE)[0]
        ref_s = time.perf_counter() - t
        within = [s for s in spans if s.end <= max_len]
        rows.append(dict(
            n_words=n_words, reference_max_len=max_len,
            words_unseen_by_reference=max(0, n_words - max_len),
            ours_seconds=ours_s, ours_words_per_s=n_words / ours_s, ours_entities=len(spans),
            ours_entities_beyond_reference_limit=len(spans) - len(within),
            ours_entities_within_reference_limit=len(within),
            reference_seconds=ref_s, reference_entities=len(ref_out),
        ))
    return dict(labels=LABELS, encoder="uni (markerV0)", threshold=THRESHOLD, batch_size=BATCH_SIZE, runs=rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="1k and 10k words (default)")
    p.add_argument("--full", action="store_true", help="1k, 10k and 100k words")
    p.add_argument("--ckpt-dir", default=str(DEFAULT_CKPT_DIR))
    p.add_argument("--out", default=str(RESULTS / "long_documents.json"))
    args = p.parse_args(argv)
    result = run([1_000, 10_000, 100_000] if args.full else [1_000, 10_000], Path(args.ckpt_dir))
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
