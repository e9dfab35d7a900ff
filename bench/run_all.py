"""Run the whole benchmark: throughput vs labels, long documents, plots and the ratio table.

    HF_HUB_OFFLINE=1 python bench/run_all.py --quick    # about 15 minutes on 2 CPU cores
    HF_HUB_OFFLINE=1 python bench/run_all.py --full     # 200 sentences, 3 repeats

Writes bench/results/throughput.json, long_documents.json, throughput.png, ratios.png, ratios.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import long_documents  # noqa: E402
import plotting  # noqa: E402
import throughput  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the default sizes")
    p.add_argument("--full", action="store_true")
    p.add_argument("--ckpt-dir", default=str(throughput.DEFAULT_CKPT_DIR))
    p.add_argument("--out-dir", default=str(throughput.RESULTS))
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tp = throughput.run(throughput.FULL if args.full else throughput.QUICK, Path(args.ckpt_dir))
    tp["mode"] = "full" if args.full else "quick"
    (out / "throughput.json").write_text(json.dumps(tp, indent=2))
    ld = long_documents.run([1_000, 10_000, 100_000], Path(args.ckpt_dir))
    (out / "long_documents.json").write_text(json.dumps(ld, indent=2))
    plotting.plot_throughput(tp, out / "throughput.png")
    plotting.plot_ratios(tp, out / "ratios.png")
    table = plotting.markdown_table(tp, ld)
    (out / "ratios.md").write_text(table + "\n")
    print(table)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
