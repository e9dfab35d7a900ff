"""CPU speed of ``backend: onnx`` against our torch path and every peer's ONNX path, side by side.

Same checkpoints (the throughput benchmark's uni- and bi-encoder, real all-MiniLM-L6-v2 encoder),
same CrossNER test sentences, same labels (1 and 16), all through ``nlp.pipe`` except the
reference's own runtime:

* ``ours-torch``: ``gliner_ner``, backend torch (float32)
* ``ours-onnx``: ``gliner_ner``, ``backend: onnx`` (float32); must find the same entities as ours-torch
* ``ours-onnx-int8``: ``backend: onnx``, ``onnx_quantize: int8``
* ``gliner-spacy``: gliner-spacy 0.0.11's ``gliner_spacy`` pipe, torch (as in bench/throughput.py:
  the wheel is put on ``sys.path``, the model loaded with ``load_tokenizer=True``)
* ``gliner-spacy-onnx``: the same pipe with its ONNX mode (``load_onnx_model``), on the reference's export
* ``reference-onnx``: gliner 0.2.29's ``export_to_onnx`` + ``GLiNER.from_pretrained(load_onnx_model=True)``,
  ``model.inference`` (batch size 8, as ours)
* ``encoder-only``: not an implementation but the ceiling: ONLY our exported fp32 text encoder's ORT
  session, run over the very batches ours-onnx feeds it (captured once, then replayed). No
  tokenisation, pooling, span head, decoding or Doc writing: the docs/s that any implementation
  running this encoder in fp32 on one thread cannot beat, so encoder-only / gliner-spacy is the
  largest ratio to gliner-spacy reachable in fp32 here

Everything runs in one process on one thread (torch and every ONNX Runtime session), and the
implementations take turns on every repeat, so a load change on the machine hits all of them
alike; the median of the repeats is reported. Bi-encoders: ours fills its label cache before
timing (once per label set); the peers encode labels as they always do.

Also measured: where our time goes (text encoder vs the rest, ``encoder_share``), int8's
agreement with fp32 (span F1 of int8 against fp32 on the same sentences; random-head checkpoints,
so this is no accuracy figure), and the one-off export time.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/onnx_speed.py [--quick]
    # -> bench/results/onnx_speed[_quick].json, .png and .md (tables)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import throughput as tp  # noqa: E402

QUICK = dict(n_texts=64, labels=[1, 16], repeats=3)
FULL = dict(n_texts=200, labels=[1, 16], repeats=3)
IMPLS = ["ours-torch", "ours-onnx", "ours-onnx-int8", "gliner-spacy", "gliner-spacy-onnx", "reference-onnx", "encoder-only"]
REFERENCE_ONNX_DIR = "reference_onnx"  # inside each checkpoint directory


def log(message: str) -> None:
    print(f"[onnx_speed {time.strftime('%H:%M:%S')}] {message}", flush=True)


def one_thread_session_options():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return options


def reference_onnx_dir(ckpt: Path) -> Path:
    """The reference's own export of the checkpoint (made once, reused)."""
    target = ckpt / REFERENCE_ONNX_DIR
    if not (target / "model.onnx").exists():
        from gliner import GLiNER

        model = GLiNER.from_pretrained(str(ckpt), load_tokenizer=True)
        model.eval()
        started = time.perf_counter()
        model.export_to_onnx(str(target))
        log(f"reference export_to_onnx of {ckpt.name}: {time.perf_counter() - started:.1f} s")
    return target


class OursBackend(tp.Ours):
    SETTINGS: dict = {}

    def __init__(self, ckpt, labels):
        import spacy
        from spacy.tokens import Doc

        self.nlp = spacy.blank("en")
        self.pipe = self.nlp.add_pipe("gliner_ner", config={
            "model": str(ckpt), "labels": labels, "threshold": tp.THRESHOLD, "batch_size": tp.BATCH_SIZE, **self.SETTINGS})
        self._Doc = Doc
        started = time.perf_counter()
        self.bi = self.pipe.extractor.config.bi_encoder  # loads the model (and exports, for onnx)
        self.load_s = time.perf_counter() - started

    def spans(self, docs):
        """Per document: (start, end, label) -> score."""
        return [{(s.start, s.end, s.label_): score for s, score in zip(d.spans["sc"], d.spans["sc"].attrs["scores"])}
                for d in self.nlp.pipe(docs, batch_size=128)]


class OursOnnx(OursBackend):
    SETTINGS = {"backend": "onnx"}


class OursOnnxInt8(OursBackend):
    SETTINGS = {"backend": "onnx", "onnx_quantize": "int8"}


class GlinerSpacyOnnx(tp.GlinerSpacy):
    """gliner-spacy with ``load_onnx_model: true`` on the reference's export; its session is
    reopened on one thread like everyone else's (gliner-spacy passes no session options)."""

    def __init__(self, ckpt, labels):
        import spacy

        import gliner_spacy.pipeline  # noqa: F401  registers the factory
        from gliner import GLiNER

        onnx_dir = reference_onnx_dir(Path(ckpt))
        self.nlp = spacy.blank("en")
        self.pipe = self.nlp.add_pipe("gliner_spacy", config={
            "gliner_model": str(onnx_dir), "labels": labels, "threshold": tp.THRESHOLD, "chunk_size": 250,
            "load_onnx_model": True, "onnx_model_file": "model.onnx"})
        self.pipe.model = GLiNER.from_pretrained(str(onnx_dir), load_onnx_model=True, load_tokenizer=True,
                                                 session_options=one_thread_session_options())
        self.bi = False


class ReferenceOnnx(tp.Reference):
    def __init__(self, ckpt, labels):
        from gliner import GLiNER

        self.model = GLiNER.from_pretrained(str(reference_onnx_dir(Path(ckpt))), load_onnx_model=True, load_tokenizer=True,
                                            session_options=one_thread_session_options())
        self.labels = labels
        self.bi = False  # its ONNX graph holds the label tower: labels are encoded with every batch
        self.embeds = None


class EncoderOnly:
    """The fp32 text encoder's ORT session alone, replaying the batches ours-onnx gave it (``capture``)."""

    def __init__(self, ckpt, labels):
        self.bi = False
        self.session = None
        self.feeds = []

    def capture(self, ours_onnx: OursOnnx, texts) -> None:
        """Run ours-onnx once on ``texts``, keeping every (input_ids, attention_mask) its text encoder got."""
        module = ours_onnx.pipe.extractor.inference_model.text_encoder
        self.session, forward, feeds = module.session, module.forward, []

        def recording(input_ids, attention_mask):
            feeds.append({"input_ids": input_ids.numpy().copy(), "attention_mask": attention_mask.to(input_ids.dtype).numpy().copy()})
            return forward(input_ids, attention_mask)

        module.forward = recording
        try:
            ours_onnx.run(ours_onnx.docs(texts))
        finally:
            del module.forward
        self.feeds = feeds

    def build_labels(self) -> float:
        return 0.0

    def docs(self, texts):
        return texts

    def run(self, docs) -> int:
        for feed in self.feeds:
            self.session.run(None, feed)
        return 0


RUNNERS = {
    "ours-torch": OursBackend, "ours-onnx": OursOnnx, "ours-onnx-int8": OursOnnxInt8,
    "gliner-spacy": tp.GlinerSpacy, "gliner-spacy-onnx": GlinerSpacyOnnx, "reference-onnx": ReferenceOnnx,
    "encoder-only": EncoderOnly,
}


def encoder_share(runner, texts):
    """Seconds per document in the text encoder (torch module or ORT session) and in total."""
    module = runner.pipe.extractor.inference_model.text_encoder
    forward, spent = module.forward, [0.0]

    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = forward(*args, **kwargs)
        spent[0] += time.perf_counter() - started
        return result

    module.forward = timed
    try:
        docs = runner.docs(texts)
        started = time.perf_counter()
        runner.run(docs)
        total = time.perf_counter() - started
    finally:
        del module.forward
    return dict(ms_per_doc=1000 * total / len(texts), encoder_ms_per_doc=1000 * spent[0] / len(texts), encoder_share=spent[0] / total)


def compare_spans(expected, found):
    """Spans both found, the largest score difference among them, and spans only one side found
    (a near-tie in greedy selection or a score within float noise of the threshold)."""
    shared = [(e[key], f[key]) for e, f in zip(expected, found) for key in e.keys() & f.keys()]
    only = sum(len(e.keys() ^ f.keys()) for e, f in zip(expected, found))
    return dict(spans=sum(map(len, expected)), shared=len(shared), only_one_side=only,
                max_score_difference=max((abs(a - b) for a, b in shared), default=0.0))


def span_f1(gold, predicted):
    hits = sum(len(g.keys() & p.keys()) for g, p in zip(gold, predicted))
    n_gold, n_pred = sum(map(len, gold)), sum(map(len, predicted))
    precision, recall = hits / max(n_pred, 1), hits / max(n_gold, 1)
    return 2 * precision * recall / max(precision + recall, 1e-12)


def measure(settings, gliner_spacy_dir: Path):
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(gliner_spacy_dir))
    checkpoints = tp.build_checkpoints()
    texts = tp.benchmark_sentences(settings["n_texts"])
    n_words = sum(len(tp.split_words(t)) for t in texts)
    runs, shares, agreement, load, parity = [], [], [], [], []
    for encoder, family in tp.ENCODERS.items():
        ckpt = checkpoints[family]
        reference_onnx_dir(ckpt)
        for n_labels in settings["labels"]:
            labels = tp.label_pool(n_labels)
            log(f"{encoder}-encoder, {n_labels} label(s): loading {len(IMPLS)} implementations")
            runners = {}
            for impl in IMPLS:
                runners[impl] = RUNNERS[impl](ckpt, labels)
                runners[impl].build_labels()
                if hasattr(runners[impl], "load_s"):
                    load.append(dict(impl=impl, encoder=encoder, n_labels=n_labels, load_and_export_s=runners[impl].load_s))
                if impl == "encoder-only":
                    runners[impl].capture(runners["ours-onnx"], texts)
                runners[impl].run(runners[impl].docs(texts[:8]))  # warm-up
            entities = {impl: runner.run(runner.docs(texts)) for impl, runner in runners.items()}
            torch_spans, onnx_spans, int8_spans = (runners[i].spans(runners[i].docs(texts)) for i in ("ours-torch", "ours-onnx", "ours-onnx-int8"))
            parity.append(dict(encoder=encoder, n_labels=n_labels, **compare_spans(torch_spans, onnx_spans)))
            assert parity[-1]["max_score_difference"] <= 1e-4, f"{encoder}/{n_labels}: backend onnx scores differ from torch: {parity[-1]}"
            agreement.append(dict(encoder=encoder, n_labels=n_labels, int8_vs_fp32_span_f1=span_f1(onnx_spans, int8_spans),
                                  fp32_spans=sum(map(len, onnx_spans)), int8_spans=sum(map(len, int8_spans))))
            times = {impl: [] for impl in IMPLS}
            for repeat in range(settings["repeats"]):
                for impl in IMPLS:  # take turns: a load change on the machine hits every implementation alike
                    docs = runners[impl].docs(texts)
                    started = time.perf_counter()
                    runners[impl].run(docs)
                    times[impl].append(time.perf_counter() - started)
                log(f"  repeat {repeat + 1}/{settings['repeats']}: " + ", ".join(f"{i} {len(texts) / times[i][-1]:.0f}/s" for i in IMPLS))
            for impl in IMPLS:
                seconds = statistics.median(times[impl])
                runs.append(dict(impl=impl, encoder=encoder, n_labels=n_labels, n_texts=len(texts), n_words=n_words,
                                 seconds=seconds, all_seconds=times[impl], docs_per_s=len(texts) / seconds,
                                 words_per_s=n_words / seconds, entities=entities[impl]))
            if n_labels == settings["labels"][0]:
                for impl in ("ours-torch", "ours-onnx", "ours-onnx-int8"):
                    shares.append(dict(impl=impl, encoder=encoder, n_labels=n_labels, **encoder_share(runners[impl], texts)))
            del runners
    return dict(runs=runs, onnx_vs_torch=parity, encoder_share=shares, int8_agreement=agreement, load=load)


RATIOS = [
    ("ours-onnx", "gliner-spacy", 5.0), ("encoder-only", "gliner-spacy", 5.0), ("ours-onnx", "encoder-only", None), ("ours-onnx", "reference-onnx", 1.5), ("ours-onnx", "gliner-spacy-onnx", 1.5),
    ("ours-onnx", "ours-torch", None), ("ours-onnx-int8", "ours-onnx", None), ("ours-onnx-int8", "gliner-spacy", None),
    ("ours-torch", "gliner-spacy", None),
]


def ratio_rows(runs):
    by = {(r["impl"], r["encoder"], r["n_labels"]): r for r in runs}
    rows = []
    for first, second, target in RATIOS:
        for encoder in tp.ENCODERS:
            for n in sorted({r["n_labels"] for r in runs}):
                a, b = by.get((first, encoder, n)), by.get((second, encoder, n))
                if a and b:
                    rows.append(dict(first=first, second=second, encoder=encoder, n_labels=n, ratio=a["docs_per_s"] / b["docs_per_s"], target=target))
    return rows


def plot(result, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    configs = sorted({(r["encoder"], r["n_labels"]) for r in runs}, key=lambda c: (c[0] != "uni", c[1]))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(IMPLS)
    for i, impl in enumerate(IMPLS):
        values = [next(r["docs_per_s"] for r in runs if (r["impl"], r["encoder"], r["n_labels"]) == (impl, *c)) for c in configs]
        ax.bar([x + i * width for x in range(len(configs))], values, width, label=impl)
    ax.set_xticks([x + width * (len(IMPLS) - 1) / 2 for x in range(len(configs))])
    ax.set_xticklabels([f"{enc}-encoder, {n} label{'s' if n > 1 else ''}" for enc, n in configs])
    ax.set_ylabel("documents / s (1 thread, nlp.pipe)")
    ax.set_title("ONNX Runtime backend vs torch and peers (CrossNER sentences, MiniLM checkpoints)")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(result) -> str:
    """The tables bench/README.md shows: docs/s, ratios, encoder share, parity, int8 agreement."""
    runs = result["runs"]
    configs = sorted({(r["encoder"], r["n_labels"]) for r in runs}, key=lambda c: (c[0] != "uni", c[1]))
    by = {(r["impl"], r["encoder"], r["n_labels"]): r for r in runs}
    lines = ["| docs/s (1 thread) | " + " | ".join(f"{e}, {n} label{'s' if n > 1 else ''}" for e, n in configs) + " |",
             "|---|" + "---:|" * len(configs)]
    for impl in IMPLS:
        lines.append(f"| {impl} | " + " | ".join(f"{by[(impl, *c)]['docs_per_s']:.1f}" for c in configs) + " |")
    lines += ["", "| ratio | " + " | ".join(f"{e}, {n}" for e, n in configs) + " | target |", "|---|" + "---:|" * (len(configs) + 1)]
    ratios = {(r["first"], r["second"], r["encoder"], r["n_labels"]): r["ratio"] for r in result["ratios"]}
    for first, second, target in RATIOS:
        cells = [f"{ratios[(first, second, *c)]:.2f}x" if (first, second, *c) in ratios else "" for c in configs]
        lines.append(f"| {first} / {second} | " + " | ".join(cells) + f" | {f'{target}x' if target else ''} |")
    lines += ["", "| where the time goes (1 label) | ms/doc | text encoder ms/doc | encoder share |", "|---|---:|---:|---:|"]
    for row in result["encoder_share"]:
        lines.append(f"| {row['impl']}, {row['encoder']} | {row['ms_per_doc']:.1f} | {row['encoder_ms_per_doc']:.1f} | {row['encoder_share']:.0%} |")
    lines += ["", "| onnx fp32 vs torch | spans | same spans | only one side | max score difference | int8 vs fp32 span F1 |",
              "|---|---:|---:|---:|---:|---:|"]
    for parity, agreement in zip(result["onnx_vs_torch"], result["int8_agreement"]):
        lines.append(f"| {parity['encoder']}, {parity['n_labels']} | {parity['spans']} | {parity['shared']} | {parity['only_one_side']} | "
                     f"{parity['max_score_difference']:.1e} | {agreement['int8_vs_fp32_span_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 sentences, 3 repeats (a few minutes)")
    parser.add_argument("--tables", metavar="JSON", help="only write the markdown tables of an earlier run's JSON")
    args = parser.parse_args(argv)
    if args.tables:
        path = Path(args.tables)
        path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
        return
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    gliner_spacy_dir = tp.fetch_gliner_spacy(tp.DEFAULT_CKPT_DIR)
    result = measure(settings, gliner_spacy_dir)
    import onnxruntime
    import torch

    result.update(settings=settings, ratios=ratio_rows(result["runs"]), threads=1, cpu_count=os.cpu_count(),
                  torch=torch.__version__, onnxruntime=onnxruntime.__version__, wall_s=time.perf_counter() - started,
                  command=f"HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/onnx_speed.py{' --quick' if args.quick else ''}")
    tp.RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "onnx_speed_quick" if args.quick else "onnx_speed"
    (tp.RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(result, tp.RESULTS / f"{stem}.png")
    (tp.RESULTS / f"{stem}.md").write_text(markdown(result))
    for row in result["ratios"]:
        target = f" (target {row['target']}x)" if row["target"] else ""
        log(f"{row['first']} / {row['second']}, {row['encoder']}, {row['n_labels']} labels: {row['ratio']:.2f}x{target}")
    for row in result["encoder_share"]:
        log(f"{row['impl']} {row['encoder']}: {row['ms_per_doc']:.2f} ms/doc, encoder {row['encoder_share']:.0%}")
    for row in result["onnx_vs_torch"]:
        log(f"onnx vs torch, {row['encoder']}, {row['n_labels']} labels: {row}")
    for row in result["int8_agreement"]:
        log(f"int8 vs fp32 span F1, {row['encoder']}, {row['n_labels']} labels: {row['int8_vs_fp32_span_f1']:.3f}")
    log(f"wrote {tp.RESULTS / stem}.json/.png in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
