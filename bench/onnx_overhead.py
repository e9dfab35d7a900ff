"""``backend: onnx`` with 1 label: our time outside the text encoder, two source trees side by side.

Each tree (a checkout of spacy-gliner, e.g. the commit before a change and the working tree) gets
one worker process (``PYTHONPATH=<tree>``) holding ``gliner_ner`` with ``backend: onnx`` on the
throughput benchmark's uni- and bi-encoder checkpoints, 1 label, batch size 8, one thread. The
workers take turns on every repeat, so a load change on the machine hits both alike; reported are
the medians of ms per document in ``nlp.pipe``, in the text encoder (the ORT session) and outside
it. Both trees must find the same spans, with scores within 1e-4 (the ONNX backend's parity
tolerance; a reordered sum moves a score by about 1e-6), checked on every repeat: a cut of our
overhead may not change the output.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/onnx_overhead.py --before /tmp/before --after . \\
        [--texts 200] [--repeats 5] [--json out.json]
    # a tree of an earlier commit: git worktree add /tmp/before <commit>  (or git archive | tar -x)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENCODERS = ("uni", "bi")
SCORE_TOLERANCE = 1e-4


def same_output(first: dict, second: dict) -> str:
    """'' when both runs found the same spans with scores within SCORE_TOLERANCE, else what differs."""
    a = {tuple(span[:4]): span[4] for span in first["spans"]}
    b = {tuple(span[:4]): span[4] for span in second["spans"]}
    if a.keys() != b.keys():
        return f"{len(a.keys() ^ b.keys())} spans found by one tree only"
    gap = max((abs(a[key] - b[key]) for key in a), default=0.0)
    return f"scores differ by up to {gap:.1e}" if gap > SCORE_TOLERANCE else ""


def worker(n_texts: int) -> None:
    """Serve ``run <encoder>`` lines on stdin with one JSON line each on stdout."""
    sys.path.insert(0, str(HERE))
    import torch

    import throughput as tp
    from onnx_speed import OursOnnx, encoder_share

    torch.set_num_threads(1)
    texts = tp.benchmark_sentences(n_texts)
    checkpoints = tp.build_checkpoints()
    runners = {}
    for encoder in ENCODERS:
        runner = OursOnnx(checkpoints[tp.ENCODERS[encoder]], tp.label_pool(1))
        runner.build_labels()
        runner.run(runner.docs(texts[:8]))  # warm-up: opens the ORT session
        runners[encoder] = runner
    print(json.dumps({"ready": True, "source": str(Path(sys.modules["spacy_gliner"].__file__).parent)}), flush=True)
    for line in sys.stdin:
        encoder = line.split()[1]
        runner = runners[encoder]
        timing = encoder_share(runner, texts)
        spans = runner.spans(runner.docs(texts))
        found = [[doc, s, e, label, score] for doc, by_span in enumerate(spans) for (s, e, label), score in by_span.items()]
        print(json.dumps(dict(timing, n_spans=len(found), spans=found)), flush=True)


def start_worker(tree: Path, n_texts: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", "--texts", str(n_texts)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    ready = json.loads(process.stdout.readline())
    if Path(ready["source"]).resolve() != (tree / "spacy_gliner").resolve():
        raise RuntimeError(f"the worker for {tree} imported spacy_gliner from {ready['source']}")
    return process


def ask(process: subprocess.Popen, encoder: str) -> dict:
    process.stdin.write(f"run {encoder}\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path)
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.texts)
        return 0
    if args.before is None:
        parser.error("--before TREE is required")
    trees = {"before": args.before, "after": args.after}
    workers = {name: start_worker(tree, args.texts) for name, tree in trees.items()}
    runs = {(name, encoder): [] for name in trees for encoder in ENCODERS}
    for repeat in range(args.repeats):
        for encoder in ENCODERS:
            for name, process in workers.items():  # take turns
                runs[(name, encoder)].append(ask(process, encoder))
            problem = same_output(*(runs[(name, encoder)][-1] for name in trees))
            if problem:
                raise SystemExit(f"{encoder}: the trees' outputs differ: {problem}")
            for name in trees:
                del runs[(name, encoder)][-1]["spans"]
        print(f"[onnx_overhead {time.strftime('%H:%M:%S')}] repeat {repeat + 1}/{args.repeats} done", flush=True)
    for process in workers.values():
        process.stdin.close()
        process.wait()
    rows = []
    for encoder in ENCODERS:
        for name in trees:
            done = runs[(name, encoder)]
            total = statistics.median(r["ms_per_doc"] for r in done)
            inside = statistics.median(r["encoder_ms_per_doc"] for r in done)
            outside = statistics.median(r["ms_per_doc"] - r["encoder_ms_per_doc"] for r in done)
            rows.append(dict(tree=name, path=str(trees[name]), encoder=encoder, ms_per_doc=total, encoder_ms_per_doc=inside,
                             outside_encoder_ms_per_doc=outside, n_spans=done[-1]["n_spans"], repeats=len(done)))
    print("| encoder | tree | ms/doc | text encoder ms/doc | outside the encoder ms/doc | spans (same in both) |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['encoder']} | {row['tree']} | {row['ms_per_doc']:.2f} | {row['encoder_ms_per_doc']:.2f} | "
              f"{row['outside_encoder_ms_per_doc']:.2f} | {row['n_spans']} |")
    for encoder in ENCODERS:
        before, after = (next(r for r in rows if (r["tree"], r["encoder"]) == (name, encoder)) for name in trees)
        print(f"{encoder}: outside the encoder {before['outside_encoder_ms_per_doc']:.2f} -> {after['outside_encoder_ms_per_doc']:.2f} ms/doc "
              f"({after['outside_encoder_ms_per_doc'] / before['outside_encoder_ms_per_doc']:.2f}x), "
              f"total {before['ms_per_doc'] / after['ms_per_doc']:.2f}x faster")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows, texts=args.texts, repeats=args.repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
