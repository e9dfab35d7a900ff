"""Joint training on one shared transformer: `spacy train` with
component_configs/gliner_ner_listener_train.cfg ([transformer, tagger, gliner_ner], a new GLiNER
bi-encoder whose text tower is the shared MiniLM transformer) on CoNLL-2003 POS tags and entities.

    HF_HUB_OFFLINE=1 python bench/listener_training.py [--train 1000] [--dev 200] [--steps 600]

Records every evaluation spaCy's training loop makes (tag accuracy, entity F1, the losses since
the previous one) into bench/results/listener_training.json: both components' dev scores and
losses as training goes, with gliner_ner's gradients reaching the transformer the tagger reads.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench_paths import RESULTS, ROOT  # noqa: E402  (sets up sys.path and the offline hub)
CONFIG = ROOT / "component_configs" / "gliner_ner_listener_train.cfg"
LABELS = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous"}
RECORDED = []


def record_scores():
    """A spaCy logger keeping each evaluation's step, scores and losses."""
    def setup(nlp, stdout=sys.stdout, stderr=sys.stderr):
        start = time.perf_counter()

        def log_step(info):
            if info is None:
                return
            row = {"step": info["step"], "seconds": time.perf_counter() - start,
                   "losses": {k: float(v) for k, v in info["losses"].items()},
                   "tag_acc": info["other_scores"].get("tag_acc"), "ents_f": info["other_scores"].get("ents_f"),
                   "ents_p": info["other_scores"].get("ents_p"), "ents_r": info["other_scores"].get("ents_r")}
            RECORDED.append(row)
            print(json.dumps(row), flush=True)

        return log_step, lambda: None

    return setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--learn-rate", type=float, default=2e-4, help="spaCy's optimizer: transformer and tagger")
    args = parser.parse_args()
    import torch
    from spacy.cli.train import train
    from spacy.tokens import DocBin
    from spacy.util import registry
    from support import conll2003_docs, minilm_dir

    torch.set_num_threads(1)
    registry.loggers.register("bench.record_scores.v1", func=record_scores)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        DocBin(docs=conll2003_docs("train", args.train)).to_disk(tmp / "train.spacy")
        DocBin(docs=conll2003_docs("valid", args.dev)).to_disk(tmp / "dev.spacy")
        overrides = {
            "paths.train": str(tmp / "train.spacy"), "paths.dev": str(tmp / "dev.spacy"), "paths.encoder": minilm_dir(),
            "initialize.components": {"gliner_ner": {"labels": LABELS}},
            "training.max_steps": args.steps, "training.eval_frequency": args.eval_every,
            "training.optimizer.learn_rate": args.learn_rate,
            "training.logger": {"@loggers": "bench.record_scores.v1"},
        }
        start = time.perf_counter()
        train(CONFIG, tmp / "out", overrides=overrides)
        seconds = time.perf_counter() - start
    first, last = RECORDED[0], RECORDED[-1]
    result = {
        "command": f"HF_HUB_OFFLINE=1 python bench/listener_training.py --train {args.train} --dev {args.dev} "
                   f"--steps {args.steps} --eval-every {args.eval_every} --learn-rate {args.learn_rate}",
        "config": str(CONFIG.relative_to(ROOT)),
        "train_sentences": args.train, "dev_sentences": args.dev, "threads": 1, "seconds": seconds,
        "evaluations": RECORDED,
        "tag_acc": [first["tag_acc"], last["tag_acc"]],
        "ents_f": [first["ents_f"], last["ents_f"]],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "listener_training.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("tag_acc", "ents_f", "seconds")}))


if __name__ == "__main__":
    main()
