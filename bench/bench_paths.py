"""What the benchmark scripts share before they import anything of ours: the repository and the
tests (for their corpus readers) on ``sys.path``, the hub offline, and where results go.
Importing it sets these up: ``from bench_paths import ROOT, RESULTS`` (bench/ is the script's folder)."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

for path in (ROOT, ROOT / "tests"):  # tests first on the path, as the scripts had it
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
