"""Throughput of ``gliner_ner`` vs the reference ``gliner`` package, by number of labels.

Measured on real CrossNER test sentences with real label names, on two checkpoints built with
the reference package on the real all-MiniLM-L6-v2 encoder (random, seeded heads):

* uni-encoder (``span_mode="markerV0"``, ``hidden_size=256``): ours (``nlp.pipe``) vs
  ``GLiNER.inference`` -- same checkpoint, texts, labels, batch size, threshold.
* bi-encoder (``labels_encoder=MiniLM``): ours with the label-vector cache filled before timing
  (the one-off build is timed separately) vs the reference's ``encode_labels`` +
  ``batch_predict_with_embeds``.
* ``gliner-spacy`` 0.0.11 (the existing spaCy wrapper of the reference) through ``nlp.pipe``, at
  up to 16 labels (uni-encoder) and 128 (bi-encoder). It is not installed into the environment (its factory module imports the
  reference and transformers into every ``spacy.blank``): the wheel is downloaded into the
  checkpoint cache and put on ``sys.path`` of its worker only. Two deviations from its defaults,
  both needed for it to run our checkpoints: the model is loaded with ``load_tokenizer=True``
  (0.0.11 loads a tokenizer without GLiNER's added tokens unless ONNX is used, and then finds
  nothing), and it keeps its 250-character chunking, so its entity count may differ slightly.
* ``ours-int8``: ours with ``quantize="int8"`` (dynamic int8 encoders, CPU). Faster, not
  identical: its entity count is reported next to float32's.

Before anything is timed, every configuration is run once by both sides in this process and the
number of entities found must be equal (like is compared with like). Each implementation/encoder
pair is then timed in a fresh subprocess; peak RSS is sampled (psutil, every 5 ms) during each
timed run. ``nlp.pipe(n_process=2)`` vs ``n_process=1`` is timed for ours too.

Run through ``bench/run_all.py``; standalone: ``python bench/throughput.py --quick``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
DEFAULT_CKPT_DIR = Path(os.environ.get("SPACY_GLINER_BENCH_CKPTS", "/tmp/spacy_gliner_bench_checkpoints"))
WORD_SPLIT = re.compile(r"\w+(?:[-_]\w+)*|\S")  # the reference's whitespace word splitter
DOMAINS = ["AI", "literature", "music", "politics", "science"]
ENCODERS = {"uni": "uni_markerV0", "bi": "bi_span"}
BATCH_SIZE = 8
LABEL_BUILD_BATCH = 256  # one-off label encoding, both sides (ours: LabelVectorCache.fill default)
THRESHOLD = 0.5

# n_process: 512 texts, so the worker processes' start-up (spawn, imports, model load: ~20 s here) is
# not the whole measurement
QUICK = dict(n_texts=32, uni_labels=[1, 16, 128, 1024], bi_labels=[1, 16, 128, 1024], repeats=1, nproc_labels=16, nproc_texts=512)
FULL = dict(n_texts=200, uni_labels=[1, 16, 128, 1024], bi_labels=[1, 16, 128, 1024], repeats=3, nproc_labels=16, nproc_texts=512)
# uni-encoder label counts whose prompt overflows the reference's 512-subword window: the reference then
# truncates (it found 229 entities where we find 316 on 16 sentences at 128 labels), so only ours is timed.
UNI_REFERENCE_MAX_LABELS = 16
# gliner-spacy encodes every label again for every document (no cache), and its uni-encoder prompt
# truncates like the reference beyond 16 labels: timed up to these counts
WRAPPER_MAX_LABELS = {"uni": 16, "bi": 128}
GLINER_SPACY = "gliner-spacy==0.0.11"


# -- data -----------------------------------------------------------------------------------
def split_words(text: str):
    return [m.group() for m in WORD_SPLIT.finditer(text)]


def crossner_rows(domain: str):
    return json.loads((DATA / "gliner_ner_datasets" / f"CrossNER_{domain}" / "test.json").read_text())


def benchmark_sentences(n: int):
    """Round-robin over the five CrossNER test sets, so every domain is represented."""
    per_domain = [crossner_rows(d) for d in DOMAINS]
    out, i = [], 0
    while len(out) < n:
        for rows in per_domain:
            if i < len(rows) and len(out) < n:
                out.append(rows[i]["sentence"])
        i += 1
    return out


def label_pool(n: int):
    """Real label names (CrossNER labels.json, then gner_ner_bundle label.txt files), lower-cased,
    padded with real entity strings (CrossNER/gner entity mentions, at most 4 words) if needed."""
    seen = dict()
    for d in DOMAINS:
        for lab in json.loads((DATA / "gliner_ner_datasets" / f"CrossNER_{d}" / "labels.json").read_text()):
            seen.setdefault(lab.lower().strip(), None)
    for path in sorted((DATA / "gner_ner_bundle").glob("*/label.txt")):
        for line in path.read_text().splitlines():
            lab = line.strip().replace("_", " ").lower()
            if lab:
                seen.setdefault(lab, None)
    if len(seen) < n:
        for d in DOMAINS:
            for row in crossner_rows(d):
                for ent in row["entities"]:
                    name = ent["name"].strip().lower()
                    if name and len(name.split()) <= 4 and len(name) <= 40:
                        seen.setdefault(name, None)
                if len(seen) >= n:
                    break
    labels = list(seen)
    if len(labels) < n:
        raise RuntimeError(f"only {len(labels)} distinct real labels available, {n} requested")
    return labels[:n]


# -- checkpoints ----------------------------------------------------------------------------
def build_checkpoints(ckpt_dir: Path = DEFAULT_CKPT_DIR):
    """family -> directory; built once with the recipe of tests/conftest.py, then reused."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import FAMILIES, build_reference_checkpoint  # noqa: E402

    out = {}
    for family in ENCODERS.values():
        directory = ckpt_dir / family
        if not (directory / "gliner_config.json").exists():
            directory.mkdir(parents=True, exist_ok=True)
            build_reference_checkpoint(directory, **FAMILIES[family])
        out[family] = directory
    return out


# -- runners --------------------------------------------------------------------------------
class Ours:
    def __init__(self, ckpt, labels):
        import spacy
        from spacy.tokens import Doc

        self.nlp = spacy.blank("en")
        self.pipe = self.nlp.add_pipe(
            "gliner_ner", config={"model": str(ckpt), "labels": labels, "threshold": THRESHOLD, "batch_size": BATCH_SIZE}
        )
        self._Doc = Doc
        self.bi = self.pipe.extractor.config.bi_encoder

    def build_labels(self) -> float:
        """Bi-encoder: fill the label-vector cache (what a user with a fixed label set does once)."""
        t = time.perf_counter()
        if self.bi:
            self.pipe.extractor.prepare_label_vectors(self.pipe.label_texts, progress=False)
        return time.perf_counter() - t

    def docs(self, texts):
        return [self._Doc(self.nlp.vocab, words=split_words(t)) for t in texts]

    def run(self, docs) -> int:
        return sum(len(d.spans["sc"]) for d in self.nlp.pipe(docs, batch_size=128))


class OursInt8(Ours):
    def __init__(self, ckpt, labels):
        super().__init__(ckpt, labels)
        self.pipe.extractor.accelerate(quantize="int8")


class GlinerSpacy(Ours):
    """gliner-spacy's ``gliner_spacy`` factory in a blank pipeline (see the module docstring)."""

    def __init__(self, ckpt, labels):
        import spacy
        from spacy.tokens import Doc

        import gliner_spacy.pipeline  # noqa: F401  registers the factory
        from gliner import GLiNER

        self.nlp = spacy.blank("en")
        self.pipe = self.nlp.add_pipe(
            "gliner_spacy", config={"gliner_model": str(ckpt), "labels": labels, "threshold": THRESHOLD, "chunk_size": 250}
        )
        self.pipe.model = GLiNER.from_pretrained(str(ckpt), load_tokenizer=True)
        self.pipe.model.eval()
        self._Doc = Doc
        self.bi = False  # nothing to build: it encodes labels per document

    def build_labels(self) -> float:
        return 0.0

    def docs(self, texts):
        return list(texts)

    def run(self, texts) -> int:
        import torch

        with torch.inference_mode():
            return sum(len(d.ents) for d in self.nlp.pipe(texts, batch_size=128))


def fetch_gliner_spacy(cache_dir: Path) -> Path:
    """Directory holding the unpacked gliner-spacy wheel (downloaded once, never installed)."""
    import zipfile

    target = cache_dir / "gliner_spacy_pkg"
    if (target / "gliner_spacy" / "pipeline.py").exists():
        return target
    wheels = cache_dir / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), GLINER_SPACY], check=True)
    wheel = next(wheels.glob("gliner_spacy-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


class Reference:
    def __init__(self, ckpt, labels):
        from gliner import GLiNER

        self.model = GLiNER.from_pretrained(str(ckpt), load_tokenizer=True)
        self.model.eval()
        self.labels = labels
        self.bi = bool(getattr(self.model.config, "labels_encoder", None))
        self.embeds = None

    def build_labels(self) -> float:
        import torch

        t = time.perf_counter()
        if self.bi:
            with torch.inference_mode():
                self.embeds = self.model.encode_labels(self.labels, batch_size=LABEL_BUILD_BATCH)
        return time.perf_counter() - t

    def docs(self, texts):
        return list(texts)

    def run(self, texts) -> int:
        if self.bi:
            out = self.model.batch_predict_with_embeds(
                texts, self.embeds, self.labels, flat_ner=True, threshold=THRESHOLD, batch_size=BATCH_SIZE
            )
        else:
            out = self.model.inference(texts, self.labels, flat_ner=True, threshold=THRESHOLD, batch_size=BATCH_SIZE)
        return sum(len(o) for o in out)


RUNNERS = {"ours": Ours, "reference": Reference}
# timed only: their entity counts are not required to equal the reference's
EXTRA_RUNNERS = {"ours-int8": OursInt8, "gliner-spacy": GlinerSpacy}
ALL_RUNNERS = {**RUNNERS, **EXTRA_RUNNERS}


class PeakRSS:
    """Samples this process's RSS every ``interval`` seconds while active."""

    def __init__(self, interval=0.005):
        import psutil

        self.proc, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


# -- verification (in-process, before timing) ------------------------------------------------
def verify(ckpts, texts, plan, progress=True):
    """Both sides, every configuration: same number of entities, or AssertionError."""
    from tqdm.auto import tqdm

    counts = {}
    configs = [(enc, n) for enc, ns in plan.items() for n in ns]
    for enc, n in tqdm(configs, desc="verify ours == reference", disable=not progress):
        labels = label_pool(n)
        got = {}
        if enc == "uni" and n > UNI_REFERENCE_MAX_LABELS:
            counts[f"{enc}/{n}"] = None  # ours only: the reference truncates its prompt here
            continue
        for impl, cls in RUNNERS.items():
            runner = cls(ckpts[ENCODERS[enc]], labels)
            runner.build_labels()
            got[impl] = runner.run(runner.docs(texts))
            del runner
        assert got["ours"] == got["reference"], (
            f"{enc}-encoder, {n} labels: ours found {got['ours']} entities, the reference {got['reference']}; "
            "the timing would not compare like with like"
        )
        counts[f"{enc}/{n}"] = got["ours"]
    return counts


# -- worker (fresh subprocess per implementation x encoder) ---------------------------------
def worker(args):
    import torch

    if args.impl == "gliner-spacy":
        sys.path.insert(0, args.wrapper_dir)
    texts = benchmark_sentences(args.n_texts)
    n_words = sum(len(split_words(t)) for t in texts)
    ckpt = Path(args.ckpt)
    for n in args.labels:
        labels = label_pool(n)
        runner = ALL_RUNNERS[args.impl](ckpt, labels)
        label_build_s = runner.build_labels()
        docs = runner.docs(texts)
        runner.run(runner.docs(texts[: min(8, len(texts))]))  # warm-up
        times, entities = [], None
        with PeakRSS() as mem:
            for _ in range(args.repeats):
                t = time.perf_counter()
                entities = runner.run(docs)
                times.append(time.perf_counter() - t)
                docs = runner.docs(texts)  # fresh Docs: spaCy annotations are not reused
        seconds = statistics.median(times)
        print(
            "RESULT "
            + json.dumps(
                dict(
                    impl=args.impl, encoder=args.encoder, n_labels=n, n_texts=len(texts), n_words=n_words,
                    seconds=seconds, all_seconds=times, docs_per_s=len(texts) / seconds, words_per_s=n_words / seconds,
                    entities=entities, label_build_s=label_build_s if runner.bi else None,
                    rss_before_mb=mem.start / 2**20, rss_peak_mb=mem.peak / 2**20, torch_threads=torch.get_num_threads(),
                )
            ),
            flush=True,
        )
        del runner, docs


def nproc_worker(args):
    """ours, uni-encoder: nlp.pipe(texts, n_process=1) vs n_process=2 on the same raw texts."""
    import spacy

    texts = benchmark_sentences(args.n_texts)
    labels = label_pool(args.labels[0])

    def fresh():
        nlp = spacy.blank("en")
        nlp.add_pipe("gliner_ner", config={"model": args.ckpt, "labels": labels, "threshold": THRESHOLD, "batch_size": BATCH_SIZE})
        return nlp

    # Worker processes are *spawned*, not forked: forking a process in which torch has already run
    # (its OpenMP / intra-op thread pool started) deadlocks the children; our first full run hung
    # here. With spawn, each child unpickles the (not yet loaded) pipeline and loads the model
    # itself; that load is inside the n_process=2 timing (stated in the README). n_process=1 runs
    # on another fresh pipeline, so both timings include one model load.
    import multiprocessing

    multiprocessing.set_start_method("spawn", force=True)
    # each spawned child reads OMP_NUM_THREADS when it imports torch: split the cores between them
    # instead of letting two torch thread pools oversubscribe them
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // 2))
    out = {}
    for n_process in (2, 1):
        nlp = fresh()
        t = time.perf_counter()
        docs = list(nlp.pipe(texts, n_process=n_process, batch_size=max(1, len(texts) // (2 * n_process))))
        seconds = time.perf_counter() - t
        out[n_process] = dict(seconds=seconds, docs_per_s=len(texts) / seconds, entities=sum(len(d.spans["sc"]) for d in docs))
    assert out[1]["entities"] == out[2]["entities"], out
    print("RESULT " + json.dumps(dict(kind="n_process", start_method="spawn", child_omp_threads=int(os.environ["OMP_NUM_THREADS"]),
                                      n_labels=len(labels), n_texts=len(texts), runs=out)), flush=True)


def spawn(cmd, on_result, timeout=None):
    """Run a worker, feed its RESULT lines to ``on_result``. On timeout the worker's whole process
    group is killed: killing only the worker would leave its multiprocessing children holding the
    stdout pipe open, and reading it would then never end."""
    import signal

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            start_new_session=True)
    stderr_lines = []
    t = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    t.start()
    timed_out = threading.Event()

    def kill_group():
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill_group) if timeout else None
    if timer:
        timer.start()
    try:
        for line in proc.stdout:
            if line.startswith("RESULT "):
                on_result(json.loads(line[len("RESULT "):]))
        proc.wait()
    finally:
        if timer:
            timer.cancel()
    t.join(timeout=10)
    if timed_out.is_set():
        raise RuntimeError(f"worker killed after the {timeout} s limit ({' '.join(cmd)}):\n{''.join(stderr_lines[-20:])}")
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({' '.join(cmd)}):\n{''.join(stderr_lines[-40:])}")


# -- driver ---------------------------------------------------------------------------------
def run(settings, ckpt_dir=DEFAULT_CKPT_DIR, progress=True):
    from tqdm.auto import tqdm

    ckpts = build_checkpoints(ckpt_dir)
    texts = benchmark_sentences(settings["n_texts"])
    plan = {"uni": settings["uni_labels"], "bi": settings["bi_labels"]}
    t0 = time.perf_counter()
    verified = verify(ckpts, texts, plan, progress)
    verify_s = time.perf_counter() - t0

    rows, skipped = [], {}
    try:
        wrapper_dir = fetch_gliner_spacy(Path(ckpt_dir))
    except Exception as error:  # no registry access: report it, time the rest
        wrapper_dir, skipped["gliner-spacy"] = None, f"could not fetch {GLINER_SPACY}: {error}"

    def labels_for(enc, impl):
        ns = plan[enc]
        if impl == "gliner-spacy":
            return [n for n in ns if n <= WRAPPER_MAX_LABELS[enc]] if wrapper_dir else []
        if impl == "ours-int8":
            return ns
        return [n for n in ns if impl == "ours" or enc == "bi" or n <= UNI_REFERENCE_MAX_LABELS]

    total = sum(len(labels_for(e, i)) for e in plan for i in ALL_RUNNERS) + 1
    bar = tqdm(total=total, desc="throughput configs", disable=not progress)

    def collect(row):
        if row.get("impl") in RUNNERS:
            key = f"{row['encoder']}/{row['n_labels']}"
            assert verified[key] is None or row["entities"] == verified[key], (row, verified[key])
        rows.append(row)
        bar.set_postfix_str(f"{row.get('impl', 'n_process')} {row.get('encoder', '')} {row['n_labels']}")
        bar.update(1)

    for enc in plan:
        for impl in ALL_RUNNERS:
            ns = labels_for(enc, impl)
            if not ns:
                continue
            cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--encoder", enc, "--ckpt", str(ckpts[ENCODERS[enc]]),
                   "--n-texts", str(settings["n_texts"]), "--repeats", str(settings["repeats"]), "--labels", *map(str, ns),
                   "--wrapper-dir", str(wrapper_dir or "")]
            spawn(cmd, collect)
    nproc = []
    try:
        spawn([sys.executable, __file__, "--nproc-worker", "--ckpt", str(ckpts[ENCODERS["uni"]]), "--n-texts",
           str(settings.get("nproc_texts", settings["n_texts"])), "--labels", str(settings["nproc_labels"])],
              lambda r: (nproc.append(r), collect(r)), timeout=600)
    except Exception as error:  # report, keep the rest of the results
        nproc.append(dict(kind="n_process", error=str(error)[-2000:]))
    bar.close()
    return dict(
        settings=settings, batch_size=BATCH_SIZE, threshold=THRESHOLD, verified_entity_counts=verified,
        verify_seconds=verify_s, cpu_count=os.cpu_count(), runs=[r for r in rows if "impl" in r],
        n_process=nproc[0] if nproc else None, skipped=skipped,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="default: 32 sentences, 1/16/128/1024 labels")
    p.add_argument("--full", action="store_true", help="200 sentences, uni and bi up to 1024 labels, 3 repeats")
    p.add_argument("--ckpt-dir", default=str(DEFAULT_CKPT_DIR))
    p.add_argument("--out", default=str(RESULTS / "throughput.json"))
    # worker-only options
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--nproc-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl")
    p.add_argument("--encoder")
    p.add_argument("--ckpt")
    p.add_argument("--n-texts", type=int)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--labels", type=int, nargs="*")
    p.add_argument("--wrapper-dir", default="")
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.nproc_worker:
        return nproc_worker(args)
    result = run(FULL if args.full else QUICK, Path(args.ckpt_dir))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
